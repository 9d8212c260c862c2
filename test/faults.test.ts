/**
 * The fault table: every program `pulumi up` runs (jobs/) and the chat client, against servers
 * on 127.0.0.1 that misbehave the ways networks and Azure do: throttling, 5xx bursts, resets,
 * answers that are not JSON (a proxy's page), lost PUT answers, a job of the same name with
 * another body, pagination that loops, and servers that accept a request and never answer or
 * trickle bytes forever (run on the real clock with a short deadline). Each row asserts the
 * exit code, the message and the number of PUTs; every row's whole output is swept for the
 * bearer token and the endpoint key in every form a server may echo them (plain, URL-encoded,
 * base64, JSON-escaped) and finds none.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { describe, expect, it } from "vitest";
import { main as chatMain } from "../cli/chat";
import { parseConfig, rawProjectConfig } from "../infra/config";
import { RECORDED_VM_SIZES, RETIRED_SIZES } from "../infra/vm-sizes";
import { runPreflightFromEnv } from "../jobs/preflight";
import { runSetTrafficFromEnv } from "../jobs/set-traffic";
import { runSubmitJobFromEnv } from "../jobs/submit-job";
import { runWaitForJobFromEnv } from "../jobs/wait-for-job";
import { workspacePath, type ScriptDeps } from "../lib/arm";
import { preflightInput } from "../lib/preflight";
import { containsSecret } from "../lib/secrets";
import { trafficRecordLine } from "../lib/traffic-record";
import { readStackConfig } from "../lib/stack-config";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fakeClock, fakeCredential, routeHealthySubscription, startFakeArm, type FakeArm, type FakeHandler, type FakeResponse } from "./helpers/fake-arm";
import { startFakeEntra } from "./helpers/fake-entra";
import { JOB_PROGRAMS, spawnProgram, type JobProgram } from "./helpers/spawn-program";
import { ROOT } from "./helpers/stack";

const TOKEN = "eyJ0eXAiOiJKV1QifQ.fault-table-token-7f3a9c.c2lnbmF0dXJl";
const KEY = "chat-endpoint-key-5b2e8d4c1a9f0e7d6c3b";
const SUB = "11111111-2222-3333-4444-555555555555";
const WS = { subscriptionId: SUB, resourceGroup: "rg-1", workspace: "ws-1" };
const WS_PATH = workspacePath(WS);
const JOB = "phi3ft-ft-0123456789abcdef";
const JOB_PATH = `${WS_PATH}/jobs/${JOB}`;
const EP = "phi3ft-abc123";
const EP_PATH = `${WS_PATH}/onlineEndpoints/${EP}`;
const DEP = "blue-1a2b3c4d";
const DEP_PATH = `${EP_PATH}/deployments/${DEP}`;
const BODY = { properties: { jobType: "Command", command: "python fine_tune.py --epochs 3", computeId: `${WS_PATH}/computes/a100-train`, displayName: "fine-tune" } };
/** Real-clock rows: the program's deadline, and how far past it it may end. */
const DEADLINE_S = 1.5;
const SLACK_MS = 10_000;

/** Every form a server may echo a secret in. */
function echo(secret: string): string {
  return `plain=${secret} url=${encodeURIComponent(secret)} b64=${Buffer.from(`Bearer ${secret}`).toString("base64")} json=${JSON.stringify(JSON.stringify({ k: secret }))}`;
}
const tokenEcho = (status: number, code = "Echo"): FakeResponse => ({ status, body: { error: { code, message: `rejected: ${echo(TOKEN)}` } } });

const notFound: FakeResponse = { status: 404, body: { error: { code: "ResourceNotFound", message: "not found" } } };
const html = (status: number): FakeResponse => ({ status, headers: { "content-type": "text/html" }, body: "<html><body>Proxy login required</body></html>" });
const job = (status: string, props: Record<string, unknown> = {}): FakeResponse => ({ status: 200, body: { name: JOB, properties: { ...BODY.properties, status, ...props } } });
const endpoint = (traffic: Record<string, number>, state = "Succeeded"): FakeResponse => ({
  status: 200,
  body: { id: EP_PATH, name: EP, type: "Microsoft.MachineLearningServices/workspaces/onlineEndpoints", location: "eastus2", properties: { authMode: "Key", traffic, mirrorTraffic: {}, provisioningState: state, scoringUri: "https://x/score" } },
});
const deployment = (state: string): FakeResponse => ({ status: 200, body: { name: DEP, properties: { provisioningState: state } } });

type Program = "submit-job" | "wait-for-job" | "set-traffic apply" | "set-traffic release" | "preflight" | "chat";

interface Row {
  program: Program;
  name: string;
  routes: (fake: FakeArm) => void;
  env?: Record<string, string | undefined>;
  /** Runs on the real clock (servers that hang or trickle), with a deadline of {@link DEADLINE_S}. */
  realTime?: boolean;
  credential?: ScriptDeps["credential"];
  code: number;
  message: RegExp;
  puts?: number;
}

function baseEnv(program: Program, fake: FakeArm): Record<string, string> {
  const ws = { AZURE_SUBSCRIPTION_ID: SUB, AZURE_RESOURCE_GROUP: WS.resourceGroup, AZUREML_WORKSPACE: WS.workspace, ARM_ENDPOINT: fake.baseUrl };
  switch (program) {
    case "submit-job":
      return { ...ws, AZUREML_JOB_NAME: JOB, AZUREML_JOB_BODY: JSON.stringify(BODY), WAIT_POLL_SECONDS: "30" };
    case "wait-for-job":
      return { ...ws, AZUREML_JOB_NAME: JOB, WAIT_POLL_SECONDS: "30" };
    case "set-traffic apply":
      return { ...ws, AZUREML_ENDPOINT: EP, TRAFFIC: JSON.stringify({ [DEP]: 100 }), TRAFFIC_POLL_SECONDS: "15" };
    case "set-traffic release":
      return { ...ws, AZUREML_ENDPOINT: EP, MANAGED_DEPLOYMENTS: JSON.stringify([DEP]), TRAFFIC_POLL_SECONDS: "15" };
    case "preflight": {
      const cfg = parseConfig(rawProjectConfig(readStackConfig(ROOT, "bluegreen").config)).config;
      return { AZURE_SUBSCRIPTION_ID: SUB, PULUMI_STACK: "bluegreen", PREFLIGHT_INPUT: JSON.stringify(preflightInput(cfg)), ARM_ENDPOINT: fake.baseUrl };
    }
    case "chat":
      return {};
  }
}

const DEADLINE_VAR: Record<Program, string> = {
  "submit-job": "WAIT_DEADLINE_SECONDS",
  "wait-for-job": "WAIT_DEADLINE_SECONDS",
  "set-traffic apply": "TRAFFIC_DEADLINE_SECONDS",
  "set-traffic release": "TRAFFIC_DEADLINE_SECONDS",
  preflight: "PREFLIGHT_DEADLINE_SECONDS",
  chat: "",
};

const OFFERED = RECORDED_VM_SIZES.filter((s) => !RETIRED_SIZES[s.name]).map((s) => ({ ...s, lowPriorityCapable: true, supportedComputeTypes: ["AmlCompute"] }));
const USAGES = [...new Set(RECORDED_VM_SIZES.map((s) => s.family))].map((family) => ({ currentValue: 0, limit: 200, name: { value: family, localizedValue: family } }));
const ML_LOC = `/subscriptions/${SUB}/providers/Microsoft.MachineLearningServices/locations/eastus2`;
const healthy = (f: FakeArm) => routeHealthySubscription(f, { subscriptionId: SUB, tenantId: "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", location: "eastus2", vmSizes: OFFERED, usages: USAGES });

/** A job that is absent until PUT, then runs and completes. */
function submittable(f: FakeArm, put: FakeResponse[] = [{ status: 201, body: { name: JOB, properties: { ...BODY.properties, status: "NotStarted" } } }], landsOnPut = true) {
  let created = false;
  let puts = 0;
  f.route("GET", JOB_PATH, () => (created ? job("Completed") : notFound));
  f.route("PUT", JOB_PATH, () => {
    if (landsOnPut) created = true;
    return put[Math.min(puts++, put.length - 1)];
  });
}

/** An endpoint PUT that runs as a long-running operation and then reports the new split (after `conflicts` 409s). */
function trafficUpdatable(f: FakeArm, before: Record<string, number>, opStatus: FakeResponse[] = [{ status: 200, body: { status: "Succeeded" } }], conflicts = 0) {
  let traffic = before;
  f.route("GET", EP_PATH, () => endpoint(traffic));
  f.route("PUT", EP_PATH, (req, fk) => {
    if (conflicts-- > 0) return { status: 409, body: { error: { code: "Conflict", message: "operation in progress" } } };
    traffic = ((req.body as { properties: { traffic: Record<string, number> } }).properties.traffic) ?? {};
    return { status: 201, body: req.body, headers: { "azure-asyncoperation": `${fk.baseUrl}/ops/1?api-version=2025-12-01` } };
  });
  f.route("GET", "/ops/1", opStatus);
}

const hang: FakeResponse = { hang: true };
const trickle: FakeResponse = { status: 200, trickle: true };
const never: ScriptDeps["credential"] = { getToken: () => new Promise(() => undefined) };

const ROWS: Row[] = [
  // ------------------------------------------------------------------ wait-for-job
  { program: "wait-for-job", name: "running then completed", routes: (f) => f.route("GET", JOB_PATH, [job("Running"), job("Completed")]), code: 0, message: /Completed after/ },
  { program: "wait-for-job", name: "job failed, its error shown", routes: (f) => f.route("GET", JOB_PATH, [job("Running"), job("Failed", { error: { code: "UserError", message: "CUDA out of memory" } })]), code: 1, message: /CUDA out of memory/ },
  { program: "wait-for-job", name: "canceled", routes: (f) => f.route("GET", JOB_PATH, job("Canceled")), code: 1, message: /ended Canceled/ },
  { program: "wait-for-job", name: "NotResponding", routes: (f) => f.route("GET", JOB_PATH, job("NotResponding")), code: 1, message: /ended NotResponding/ },
  { program: "wait-for-job", name: "429 with Retry-After", routes: (f) => f.route("GET", JOB_PATH, [{ status: 429, headers: { "retry-after": "7" } }, job("Completed")]), code: 0, message: /HTTP 429; retry 1\/2 in 7000 ms/ },
  { program: "wait-for-job", name: "5xx burst", routes: (f) => f.route("GET", JOB_PATH, [{ status: 500 }, { status: 502 }, job("Completed")]), code: 0, message: /Completed/ },
  { program: "wait-for-job", name: "connection resets", routes: (f) => f.route("GET", JOB_PATH, [{ destroy: true }, { destroy: true }, job("Completed")]), code: 0, message: /network error/ },
  { program: "wait-for-job", name: "outage longer than the retries", routes: (f) => f.route("GET", JOB_PATH, [job("Running"), ...Array(5).fill({ status: 503 }), job("Completed")]), code: 0, message: /still waiting/ },
  { program: "wait-for-job", name: "ARM 404 during replication, then found", routes: (f) => f.route("GET", JOB_PATH, [notFound, job("Completed")]), code: 0, message: /not found yet/ },
  { program: "wait-for-job", name: "ARM 404 past the grace period", routes: (f) => f.route("GET", JOB_PATH, notFound), code: 4, message: /HTTP 404 ResourceNotFound/ },
  { program: "wait-for-job", name: "a proxy's HTML 404 is not 'not found yet'", routes: (f) => f.route("GET", JOB_PATH, html(404)), code: 4, message: /not JSON/ },
  { program: "wait-for-job", name: "a proxy's HTML 200 is not a job state", routes: (f) => f.route("GET", JOB_PATH, html(200)), code: 4, message: /NotJson: the answer is not JSON \(text\/html/ },
  { program: "wait-for-job", name: "401 echoing the token", routes: (f) => f.route("GET", JOB_PATH, tokenEcho(401, "InvalidAuthenticationToken")), code: 4, message: /HTTP 401 InvalidAuthenticationToken/ },
  { program: "wait-for-job", name: "403", routes: (f) => f.route("GET", JOB_PATH, { status: 403, body: { error: { code: "AuthorizationFailed", message: "no read" } } }), code: 4, message: /lacks permission/ },
  { program: "wait-for-job", name: "500 echoing the token until retries run out", routes: (f) => f.route("GET", JOB_PATH, [job("Running"), tokenEcho(500), tokenEcho(500), tokenEcho(500), job("Completed")]), code: 0, message: /Completed/ },
  { program: "wait-for-job", name: "deadline while running (last status shown)", routes: (f) => f.route("GET", JOB_PATH, job("Running")), env: { WAIT_DEADLINE_SECONDS: "600" }, code: 3, message: /last status Running/ },
  { program: "wait-for-job", name: "credential fails", routes: (f) => f.route("GET", JOB_PATH, job("Completed")), credential: fakeCredential({ fail: true }), code: 4, message: /CredentialUnavailable/ },
  { program: "wait-for-job", name: "missing environment", routes: () => undefined, env: { AZUREML_JOB_NAME: undefined }, code: 2, message: /missing environment variable\(s\): AZUREML_JOB_NAME/ },
  { program: "wait-for-job", name: "a deadline of 0 s", routes: () => undefined, env: { WAIT_DEADLINE_SECONDS: "0" }, code: 2, message: /WAIT_DEADLINE_SECONDS must be a positive number/ },
  { program: "wait-for-job", name: "an http:// ARM endpoint", routes: () => undefined, env: { ARM_ENDPOINT: "http://127.0.0.1:9" }, code: 2, message: /must be an https URL/ },
  { program: "wait-for-job", name: "server accepts and never answers", realTime: true, routes: (f) => f.route("GET", JOB_PATH, hang), code: 3, message: /Gave up waiting .* last status unknown/ },
  { program: "wait-for-job", name: "server trickles bytes forever", realTime: true, routes: (f) => f.route("GET", JOB_PATH, trickle), code: 3, message: /Gave up waiting/ },
  { program: "wait-for-job", name: "answers, then hangs (last status kept)", realTime: true, routes: (f) => f.route("GET", JOB_PATH, [job("Running"), hang]), env: { WAIT_POLL_SECONDS: "0.2" }, code: 3, message: /last status Running/ },
  { program: "wait-for-job", name: "the token endpoint hangs", realTime: true, routes: (f) => f.route("GET", JOB_PATH, job("Completed")), credential: never, code: 3, message: /Gave up waiting/ },

  // ------------------------------------------------------------------ submit-job
  { program: "submit-job", name: "new job: one PUT, then completed", routes: (f) => submittable(f), code: 0, message: /Submitted job/, puts: 1 },
  { program: "submit-job", name: "the same job exists: no PUT", routes: (f) => f.route("GET", JOB_PATH, job("Completed")), code: 0, message: /already exists \(status Completed\) with the same body/, puts: 0 },
  { program: "submit-job", name: "the same job with other case in its ARM ids", routes: (f) => f.route("GET", JOB_PATH, job("Completed", { computeId: BODY.properties.computeId.toUpperCase() })), code: 0, message: /with the same body/, puts: 0 },
  { program: "submit-job", name: "another job under the name: refused, no PUT", routes: (f) => f.route("GET", JOB_PATH, job("Completed", { command: "python other.py" })), code: 1, message: /another body \(differs in command\).*training\.attempt/, puts: 0 },
  { program: "submit-job", name: "only mutable fields differ (display name, tags)", routes: (f) => f.route("GET", JOB_PATH, job("Completed", { displayName: "renamed", tags: { a: "b" } })), code: 0, message: /with the same body/, puts: 0 },
  { program: "submit-job", name: "PUT lands, connection resets, retry answered 409: confirmed by GET", routes: (f) => submittable(f, [{ destroy: true }, { status: 409, body: { error: { code: "Conflict", message: "job exists" } } }]), code: 0, message: /confirmed by GET/, puts: 2 },
  { program: "submit-job", name: "PUT answered 409 although the job is absent", routes: (f) => submittable(f, [{ status: 409, body: { error: { code: "Conflict", message: "busy" } } }], false), code: 4, message: /HTTP 409 Conflict/, puts: 1 },
  {
    program: "submit-job",
    name: "PUT answer lost, and a job with another body holds the name",
    routes: (f) => {
      let created = false;
      f.route("GET", JOB_PATH, () => (created ? job("Running", { command: "python other.py" }) : notFound));
      f.route("PUT", JOB_PATH, () => ((created = true), { destroy: true }));
    },
    code: 1,
    message: /differs in command/,
    puts: 3,
  },
  { program: "submit-job", name: "PUT rejected (400)", routes: (f) => submittable(f, [{ status: 400, body: { error: { code: "UserError", message: "Compute a100-train not found" } } }], false), code: 4, message: /Compute a100-train not found/, puts: 1 },
  { program: "submit-job", name: "PUT throttled, then accepted", routes: (f) => submittable(f, [{ status: 503, headers: { "retry-after": "3" } }, { status: 201, body: { name: JOB } }]), code: 0, message: /Submitted job/, puts: 2 },
  { program: "submit-job", name: "PUT 5xx until retries run out, job absent", routes: (f) => submittable(f, [{ status: 500 }], false), code: 4, message: /HTTP 500/, puts: 3 },
  { program: "submit-job", name: "a proxy's HTML 200 on GET: no PUT", routes: (f) => f.route("GET", JOB_PATH, html(200)), code: 4, message: /not JSON/, puts: 0 },
  { program: "submit-job", name: "a proxy's HTML 404 on GET: no PUT", routes: (f) => f.route("GET", JOB_PATH, html(404)), code: 4, message: /not JSON/, puts: 0 },
  { program: "submit-job", name: "an empty 404 on GET: no PUT", routes: (f) => f.route("GET", JOB_PATH, { status: 404 }), code: 4, message: /HTTP 404/, puts: 0 },
  { program: "submit-job", name: "GET 5xx until retries run out: no PUT", routes: (f) => f.route("GET", JOB_PATH, { status: 503 }), code: 4, message: /HTTP 503/, puts: 0 },
  { program: "submit-job", name: "400 echoing the token", routes: (f) => { f.route("GET", JOB_PATH, notFound); f.route("PUT", JOB_PATH, tokenEcho(400, "BadRequest")); }, code: 4, message: /HTTP 400 BadRequest/, puts: 1 },
  { program: "submit-job", name: "a deadline of 0 s: nothing sent", routes: (f) => submittable(f), env: { WAIT_DEADLINE_SECONDS: "0" }, code: 2, message: /WAIT_DEADLINE_SECONDS/, puts: 0 },
  { program: "submit-job", name: "malformed body: nothing sent", routes: (f) => submittable(f), env: { AZUREML_JOB_BODY: "{" }, code: 2, message: /not valid JSON/, puts: 0 },
  { program: "submit-job", name: "credential fails: nothing sent", routes: (f) => submittable(f), credential: fakeCredential({ fail: true }), code: 4, message: /CredentialUnavailable/, puts: 0 },
  {
    program: "submit-job",
    name: "submitted, then the job fails",
    routes: (f) => {
      let created = false;
      f.route("GET", JOB_PATH, () => (created ? job("Failed") : notFound));
      f.route("PUT", JOB_PATH, () => ((created = true), { status: 201, body: {} }));
    },
    code: 1,
    message: /ended Failed/,
    puts: 1,
  },
  { program: "submit-job", name: "deadline while waiting", routes: (f) => f.route("GET", JOB_PATH, job("Running")), env: { WAIT_DEADLINE_SECONDS: "900" }, code: 3, message: /last status Running/, puts: 0 },
  { program: "submit-job", name: "GET never answers: no PUT", realTime: true, routes: (f) => f.route("GET", JOB_PATH, hang), code: 3, message: /deadline/, puts: 0 },
  { program: "submit-job", name: "PUT never answers", realTime: true, routes: (f) => { f.route("GET", JOB_PATH, notFound); f.route("PUT", JOB_PATH, hang); }, code: 3, message: /deadline/, puts: 1 },
  { program: "submit-job", name: "GET trickles forever: no PUT", realTime: true, routes: (f) => f.route("GET", JOB_PATH, trickle), code: 3, message: /deadline/, puts: 0 },
  { program: "submit-job", name: "the token endpoint hangs: nothing sent", realTime: true, routes: (f) => submittable(f), credential: never, code: 3, message: /deadline/, puts: 0 },

  // ------------------------------------------------------------------ set-traffic apply
  { program: "set-traffic apply", name: "already routed: no PUT", routes: (f) => { f.route("GET", DEP_PATH, deployment("Succeeded")); f.route("GET", EP_PATH, endpoint({ [DEP]: 100 })); }, code: 0, message: /nothing changes/, puts: 0 },
  { program: "set-traffic apply", name: "moves traffic: one PUT", routes: (f) => { f.route("GET", DEP_PATH, deployment("Succeeded")); trafficUpdatable(f, {}); }, code: 0, message: /traffic: \(none\) → blue-1a2b3c4d=100/, puts: 1 },
  { program: "set-traffic apply", name: "deployment still creating, then ready", routes: (f) => { f.route("GET", DEP_PATH, [deployment("Creating"), deployment("Succeeded")]); trafficUpdatable(f, {}); }, code: 0, message: /traffic:/, puts: 1 },
  { program: "set-traffic apply", name: "deployment Failed: no PUT", routes: (f) => { f.route("GET", DEP_PATH, deployment("Failed")); f.route("GET", EP_PATH, endpoint({})); }, code: 1, message: /refusing to route traffic/, puts: 0 },
  { program: "set-traffic apply", name: "endpoint missing (ARM 404)", routes: (f) => { f.route("GET", DEP_PATH, deployment("Succeeded")); f.route("GET", EP_PATH, notFound); }, code: 1, message: /does not exist/, puts: 0 },
  { program: "set-traffic apply", name: "a proxy's HTML 200 for the endpoint: no PUT", routes: (f) => { f.route("GET", DEP_PATH, deployment("Succeeded")); f.route("GET", EP_PATH, html(200)); }, code: 4, message: /not JSON/, puts: 0 },
  { program: "set-traffic apply", name: "a proxy's HTML 404 for a deployment is not 'missing'", routes: (f) => { f.route("GET", DEP_PATH, html(404)); f.route("GET", EP_PATH, endpoint({})); }, code: 4, message: /not JSON/, puts: 0 },
  { program: "set-traffic apply", name: "the operation fails", routes: (f) => { f.route("GET", DEP_PATH, deployment("Succeeded")); trafficUpdatable(f, {}, [{ status: 200, body: { status: "Failed", error: { code: "BadArgument", message: "Traffic values need to sum to 100" } } }]); }, code: 1, message: /ended Failed: BadArgument/, puts: 1 },
  { program: "set-traffic apply", name: "the operation status is a proxy page", routes: (f) => { f.route("GET", DEP_PATH, deployment("Succeeded")); trafficUpdatable(f, {}, [html(200)]); }, code: 4, message: /not JSON/, puts: 1 },
  { program: "set-traffic apply", name: "endpoint busy (409), then updated", routes: (f) => { f.route("GET", DEP_PATH, deployment("Succeeded")); trafficUpdatable(f, {}, undefined, 1); }, code: 0, message: /busy \(409/, puts: 2 },
  { program: "set-traffic apply", name: "Azure reports another split afterwards", routes: (f) => { f.route("GET", DEP_PATH, deployment("Succeeded")); f.route("GET", EP_PATH, endpoint({})); f.route("PUT", EP_PATH, { status: 200, body: {} }); }, code: 1, message: /reports traffic \(none\)/, puts: 1 },
  { program: "set-traffic apply", name: "429 then fine", routes: (f) => { f.route("GET", DEP_PATH, [{ status: 429, headers: { "retry-after": "2" } }, deployment("Succeeded")]); f.route("GET", EP_PATH, endpoint({ [DEP]: 100 })); }, code: 0, message: /HTTP 429; retry 1\/2 in 2000 ms/, puts: 0 },
  { program: "set-traffic apply", name: "resets then fine", routes: (f) => { f.route("GET", DEP_PATH, [{ destroy: true }, deployment("Succeeded")]); f.route("GET", EP_PATH, endpoint({ [DEP]: 100 })); }, code: 0, message: /network error/, puts: 0 },
  { program: "set-traffic apply", name: "401 echoing the token", routes: (f) => f.route("GET", DEP_PATH, tokenEcho(401, "InvalidAuthenticationToken")), code: 4, message: /HTTP 401/, puts: 0 },
  { program: "set-traffic apply", name: "403", routes: (f) => f.route("GET", DEP_PATH, { status: 403, body: { error: { code: "AuthorizationFailed", message: "no" } } }), code: 4, message: /HTTP 403/, puts: 0 },
  { program: "set-traffic apply", name: "deployment never ready: deadline with the last state", routes: (f) => { f.route("GET", DEP_PATH, deployment("Creating")); f.route("GET", EP_PATH, endpoint({})); }, env: { TRAFFIC_DEADLINE_SECONDS: "300" }, code: 3, message: /last seen: deployment blue-1a2b3c4d: Creating/, puts: 0 },
  { program: "set-traffic apply", name: "invalid split", routes: () => undefined, env: { TRAFFIC: JSON.stringify({ [DEP]: 90 }) }, code: 2, message: /sum to exactly 100/, puts: 0 },
  { program: "set-traffic apply", name: "a deployment GET never answers", realTime: true, routes: (f) => f.route("GET", DEP_PATH, hang), code: 3, message: /deadline.*last seen: nothing yet/, puts: 0 },
  { program: "set-traffic apply", name: "the endpoint GET trickles forever", realTime: true, routes: (f) => { f.route("GET", DEP_PATH, deployment("Succeeded")); f.route("GET", EP_PATH, trickle); }, code: 3, message: /deadline.*last seen: deployment blue-1a2b3c4d: Succeeded/, puts: 0 },
  { program: "set-traffic apply", name: "the PUT never answers", realTime: true, routes: (f) => { f.route("GET", DEP_PATH, deployment("Succeeded")); f.route("GET", EP_PATH, endpoint({})); f.route("PUT", EP_PATH, hang); }, code: 3, message: /deadline/, puts: 1 },
  { program: "set-traffic apply", name: "the token endpoint hangs", realTime: true, routes: (f) => f.route("GET", DEP_PATH, deployment("Succeeded")), credential: never, code: 3, message: /deadline/, puts: 0 },

  // ------------------------------------------------------------------ set-traffic release
  { program: "set-traffic release", name: "endpoint gone: nothing to do", routes: (f) => f.route("GET", EP_PATH, notFound), code: 0, message: /nothing to release/, puts: 0 },
  { program: "set-traffic release", name: "endpoint deleting: nothing to do", routes: (f) => f.route("GET", EP_PATH, endpoint({ [DEP]: 100 }, "Deleting")), code: 0, message: /nothing to release/, puts: 0 },
  { program: "set-traffic release", name: "no traffic on the stack's deployments: no PUT", routes: (f) => f.route("GET", EP_PATH, endpoint({ other: 100 })), code: 0, message: /take no traffic: nothing changes/, puts: 0 },
  { program: "set-traffic release", name: "releases to 0: one PUT", routes: (f) => trafficUpdatable(f, { [DEP]: 100 }), code: 0, message: /blue-1a2b3c4d=100 → \(none\)/, puts: 1 },
  { program: "set-traffic release", name: "a proxy's HTML 404 is not 'endpoint gone'", routes: (f) => f.route("GET", EP_PATH, html(404)), code: 4, message: /not JSON/, puts: 0 },
  {
    program: "set-traffic release",
    name: "5xx burst then released",
    routes: (f) => {
      trafficUpdatable(f, { [DEP]: 100 });
      let n = 0;
      const updated = f.requestsTo.bind(f);
      f.route("GET", EP_PATH, () => (n++ < 2 ? { status: n === 1 ? 502 : 500 } : endpoint(updated("PUT", EP_PATH).length ? { [DEP]: 0 } : { [DEP]: 100 })));
    },
    code: 0,
    message: /→ \(none\)/,
    puts: 1,
  },
  { program: "set-traffic release", name: "invalid MANAGED_DEPLOYMENTS", routes: () => undefined, env: { MANAGED_DEPLOYMENTS: '"blue"' }, code: 2, message: /MANAGED_DEPLOYMENTS must be a JSON array/, puts: 0 },
  { program: "set-traffic release", name: "500 echoing the token until retries run out", routes: (f) => f.route("GET", EP_PATH, tokenEcho(500)), code: 4, message: /HTTP 500/, puts: 0 },
  { program: "set-traffic release", name: "the endpoint GET never answers", realTime: true, routes: (f) => f.route("GET", EP_PATH, hang), code: 3, message: /deadline/, puts: 0 },
  { program: "set-traffic release", name: "the endpoint GET trickles forever", realTime: true, routes: (f) => f.route("GET", EP_PATH, trickle), code: 3, message: /deadline/, puts: 0 },

  // ------------------------------------------------------------------ preflight
  { program: "preflight", name: "healthy subscription", routes: healthy, code: 0, message: /Preflight passed/ },
  { program: "preflight", name: "throttled, then healthy", routes: (f) => { healthy(f); f.route("GET", `${ML_LOC}/vmSizes`, [{ status: 429, headers: { "retry-after": "1" } }, { body: { value: OFFERED } }]); }, code: 0, message: /Preflight passed/ },
  { program: "preflight", name: "a proxy's HTML 200 instead of the VM sizes", routes: (f) => { healthy(f); f.route("GET", `${ML_LOC}/vmSizes`, html(200)); }, code: 1, message: /not JSON/ },
  { program: "preflight", name: "VM size list whose nextLink loops", routes: (f) => { healthy(f); f.route("GET", `${ML_LOC}/vmSizes`, (_r, fk) => ({ body: { value: OFFERED.slice(0, 2), nextLink: `${fk.baseUrl}${ML_LOC}/vmSizes?api-version=2025-12-01` } })); }, code: 1, message: /the list loops/ },
  { program: "preflight", name: "usages list whose nextLink loops", routes: (f) => { healthy(f); f.route("GET", `${ML_LOC}/usages`, (_r, fk) => ({ body: { value: USAGES, nextLink: `${fk.baseUrl}${ML_LOC}/usages?api-version=2025-12-01&page=x` } })); }, code: 1, message: /the list loops/ },
  { program: "preflight", name: "a proxy's HTML 404 for the soft-deleted vault check is not 'none deleted'", routes: (f) => { healthy(f); f.route("GET", /deletedVaults/, html(404)); }, code: 0, message: /soft-deleted vaults could not be checked: HTTP 404/ },
  { program: "preflight", name: "credential fails", routes: healthy, credential: fakeCredential({ fail: true }), code: 1, message: /CredentialUnavailable|credential/i },
  { program: "preflight", name: "401 echoing the token", routes: (f) => { healthy(f); f.route("GET", `/subscriptions/${SUB}`, tokenEcho(401, "InvalidAuthenticationToken")); }, code: 1, message: /Preflight failed/ },
  { program: "preflight", name: "missing environment", routes: healthy, env: { PREFLIGHT_INPUT: undefined }, code: 2, message: /missing environment variable\(s\): PREFLIGHT_INPUT/ },
  { program: "preflight", name: "a deadline that is not a number", routes: healthy, env: { PREFLIGHT_DEADLINE_SECONDS: "soon" }, code: 2, message: /PREFLIGHT_DEADLINE_SECONDS must be a positive number/ },
  { program: "preflight", name: "Azure never answers", realTime: true, routes: (f) => { healthy(f); f.route("GET", `/subscriptions/${SUB}`, hang); }, code: 3, message: /did not finish within/ },
  { program: "preflight", name: "the VM size list trickles forever", realTime: true, routes: (f) => { healthy(f); f.route("GET", `${ML_LOC}/vmSizes`, trickle); }, code: 3, message: /did not finish within/ },
  { program: "preflight", name: "the token endpoint hangs", realTime: true, routes: healthy, credential: never, code: 3, message: /did not finish within/ },
];

/** The process runner itself: a `main` that never returns, or returns but leaves work running. */
const PENDING_ROWS = [
  { name: "main never returns: exit 3 at the deadline", env: { PENDING_DEADLINE_SECONDS: "1" }, code: 3, message: /Gave up waiting .*\(deadline 1 s, PENDING_DEADLINE_SECONDS\)/, boundMs: 1000 + SLACK_MS + 20_000 },
  { name: "main returns, a timer left running: exits with its code", env: { PENDING_MODE: "returns", PENDING_DEADLINE_SECONDS: "600" }, code: 0, message: /^$/, boundMs: SLACK_MS + 20_000 },
];

/** Chat rows: a scoring server on 127.0.0.1 (plain HTTP on loopback, as serve:local). */
interface ChatRow {
  name: string;
  answer: (req: http.IncomingMessage, res: http.ServerResponse, n: number) => void;
  args?: string[];
  code: number;
  message: RegExp;
}
const json = (res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
  res.writeHead(status, { "content-type": "application/json", ...headers });
  res.end(typeof body === "string" ? body : JSON.stringify(body));
};
const CHAT_ROWS: ChatRow[] = [
  { name: "answers", answer: (_q, s) => json(s, 200, ["hello"]), code: 0, message: /^$/ },
  { name: "400 echoing the key in every form", answer: (q, s) => json(s, 400, { error: `bad request ${echo(KEY)} ${q.headers.authorization}` }), code: 1, message: /HTTP 400/ },
  { name: "401 echoing the key", answer: (_q, s) => json(s, 401, echo(KEY)), code: 1, message: /rejected the key/ },
  { name: "503 without Retry-After, then answers", answer: (_q, s, n) => (n === 0 ? json(s, 503, "warming up") : json(s, 200, ["ok"])), code: 0, message: /retry 1\/4/ },
  { name: "429 echoing the key until retries run out", args: ["--retries", "1"], answer: (_q, s) => json(s, 429, echo(KEY), { "retry-after": "0" }), code: 1, message: /still busy after 2 attempts/ },
  { name: "a proxy's HTML page", answer: (_q, s) => json(s, 200, "<html>login</html>"), code: 1, message: /not JSON/ },
  { name: "never answers", args: ["--timeout", "0.5"], answer: () => undefined, code: 3, message: /no answer .* within 0\.5 s/ },
  { name: "trickles forever", args: ["--timeout", "0.5"], answer: (_q, s) => { s.writeHead(200); const t = setInterval(() => (s.destroyed ? clearInterval(t) : s.write(" ")), 100); s.on("close", () => clearInterval(t)); }, code: 3, message: /within 0\.5 s/ },
  { name: "resets the connection", answer: (q) => q.socket.destroy(), code: 1, message: /could not reach/ },
];

async function runRow(row: Row): Promise<{ code: number; output: string; puts: number; elapsedMs: number }> {
  const fake = await startFakeArm();
  row.routes(fake);
  const lines: string[] = [];
  const clock = row.realTime ? undefined : fakeClock();
  const deps: ScriptDeps = {
    log: (l) => lines.push(l),
    error: (l) => lines.push(l),
    credential: row.credential ?? fakeCredential({ token: TOKEN }),
    maxRetries: 2,
    backoffBaseMs: 1,
    maxBackoffMs: 10_000,
    ...(clock ? { now: clock.now, sleep: clock.sleep } : {}),
  };
  const env: Record<string, string | undefined> = { ...baseEnv(row.program, fake), ...(row.realTime ? { [DEADLINE_VAR[row.program]]: String(DEADLINE_S) } : {}), ...row.env };
  const started = Date.now();
  let code: number;
  try {
    switch (row.program) {
      case "submit-job":
        code = await runSubmitJobFromEnv(env, deps);
        break;
      case "wait-for-job":
        code = await runWaitForJobFromEnv(env, deps);
        break;
      case "set-traffic apply":
        code = await runSetTrafficFromEnv("apply", env, deps);
        break;
      case "set-traffic release":
        code = await runSetTrafficFromEnv("release", env, deps);
        break;
      case "preflight":
        code = await runPreflightFromEnv(env, deps);
        break;
      default:
        throw new Error(row.program);
    }
  } finally {
    await fake.close();
  }
  return { code, output: lines.join("\n"), puts: fake.requests.filter((r) => r.method === "PUT").length, elapsedMs: Date.now() - started };
}

// ---------------------------------------------------------------------------------------------
// Process rows: every program of jobs/ spawned as `pulumi up` spawns it (its own Node process,
// a real credential, ARM_CLIENT_SECRET against a fake Entra ID, the real clock), against the
// faults every program must survive. Each asserts the exit code, that the PROCESS has exited
// within its deadline + 10 s of its first network call (and was never killed), the PUTs, and
// that no secret is in its output.
// ---------------------------------------------------------------------------------------------

type ProcessProgram = JobProgram;
type Fault = "token endpoint hangs" | "first request hangs" | "first answer dropped mid-body" | "429 with Retry-After" | "persistent 5xx" | "malformed JSON";

const PROCESS_SECRET = "proc-client-secret-Zq9+/x=&%ü-0123";
const TENANT = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";
const UPLOAD_CONTAINER = "/stx/azureml-blobstore-0000";
const UPLOAD_DIR = fs.mkdtempSync(path.join(os.tmpdir(), "phi3-fault-upload-"));
fs.writeFileSync(path.join(UPLOAD_DIR, "train.jsonl"), '{"messages": []}\n');
const UPLOAD_BLOB = "LocalUpload/0123abcd/train.jsonl";
/** The quality gate's tracking server: the fake ARM under the workspace's MLflow path (lib/mlflow.ts). */
const MLFLOW = `/mlflow/v1.0${WS_PATH}`;
const RUN_WITH_LOSS: FakeResponse = { body: { run: { info: { run_id: JOB, experiment_id: "1", status: "FINISHED" }, data: { metrics: [{ key: "eval_loss", value: 0.9 }] } } } };
/** The deployment the smoke's roll-back puts the traffic back on (the split recorded before the traffic step). */
const OLD_DEP = "green-0a0b0c0d";
const smokeEndpoint = (fk: FakeArm, traffic: Record<string, number>): FakeResponse => {
  const e = endpoint(traffic).body as { properties: Record<string, unknown> };
  return { status: 200, body: { ...e, properties: { ...e.properties, scoringUri: `${fk.baseUrl}/score` } } };
};

/** `fault` answers first (in order; the last one repeats when `persistent`), then `healthy`. */
function faultThen(fault: FakeResponse[], healthy: FakeHandler | FakeResponse, persistent = false): FakeHandler {
  let n = 0;
  return (req, fk) => {
    const i = n++;
    if (i < fault.length || (persistent && fault.length)) return fault[Math.min(i, fault.length - 1)];
    return typeof healthy === "function" ? healthy(req, fk) : healthy;
  };
}

/** Routes of a healthy world for `program`, its first request answered by `fault` first. */
function processRoutes(program: ProcessProgram, f: FakeArm, fault: FakeResponse[], persistent: boolean): void {
  const first = (healthy: FakeHandler | FakeResponse) => faultThen(fault, healthy, persistent);
  switch (program) {
    case "wait-for-job":
      return f.route("GET", JOB_PATH, first(job("Completed")));
    case "submit-job": {
      let created = false;
      f.route("GET", JOB_PATH, first(() => (created ? job("Completed") : notFound)));
      f.route("PUT", JOB_PATH, () => ((created = true), { status: 201, body: { name: JOB, properties: { ...BODY.properties, status: "NotStarted" } } }));
      return;
    }
    case "set-traffic apply":
      trafficUpdatable(f, {});
      return f.route("GET", DEP_PATH, first(deployment("Succeeded")));
    case "set-traffic release":
      trafficUpdatable(f, { [DEP]: 100 });
      return f.route("GET", EP_PATH, first((_r, fk) => endpoint(fk.requestsTo("PUT", EP_PATH).length ? { [DEP]: 0 } : { [DEP]: 100 })));
    case "preflight":
      healthy(f);
      return f.route("GET", `/subscriptions/${SUB}`, first({ body: { subscriptionId: SUB, displayName: "Phi-3 dev", tenantId: TENANT, state: "Enabled" } }));
    case "upload-blobs":
      return f.route("PUT", `${UPLOAD_CONTAINER}/${UPLOAD_BLOB}`, first({ status: 201 }));
    case "preflight storage-reach":
      return f.route("GET", UPLOAD_CONTAINER, first({ status: 200 }));
    case "deployment-capacity":
      return f.route("GET", DEP_PATH, first({ body: { name: DEP, sku: { name: "Default", capacity: 3 }, properties: { provisioningState: "Succeeded" } } }));
    case "quality-gate":
      return f.route("GET", `${MLFLOW}/api/2.0/mlflow/runs/get`, first(RUN_WITH_LOSS));
    case "smoke-test deployment":
    case "smoke-test endpoint": {
      // The smoke through the endpoint gets a broken answer (a template token, and the key it was
      // sent): it fails, and the roll-back puts the recorded split back with one PUT.
      const broken = program === "smoke-test endpoint";
      let traffic: Record<string, number> = { [DEP]: 100 };
      f.route("GET", EP_PATH, first((_r, fk) => smokeEndpoint(fk, traffic)));
      f.route("POST", `${EP_PATH}/listKeys`, { body: { primaryKey: KEY, secondaryKey: `${KEY}-2` } });
      f.route("POST", "/score", broken ? { body: [`<|assistant|> ${echo(KEY)}`] } : { body: ["Hello! How can I help?"] });
      f.route("GET", `${EP_PATH}/deployments/${OLD_DEP}`, { body: { name: OLD_DEP, properties: { provisioningState: "Succeeded" } } });
      f.route("GET", DEP_PATH, deployment("Succeeded"));
      f.route("PUT", EP_PATH, (req, fk) => {
        traffic = (req.body as { properties: { traffic: Record<string, number> } }).properties.traffic ?? {};
        return { status: 201, body: req.body, headers: { "azure-asyncoperation": `${fk.baseUrl}/ops/1?api-version=2025-12-01` } };
      });
      return f.route("GET", "/ops/1", { status: 200, body: { status: "Succeeded" } });
    }
  }
}

const PROCESS_DEADLINE_VAR: Record<ProcessProgram, string> = {
  preflight: "PREFLIGHT_DEADLINE_SECONDS",
  "preflight storage-reach": "PREFLIGHT_DEADLINE_SECONDS",
  "submit-job": "WAIT_DEADLINE_SECONDS",
  "wait-for-job": "WAIT_DEADLINE_SECONDS",
  "set-traffic apply": "TRAFFIC_DEADLINE_SECONDS",
  "set-traffic release": "TRAFFIC_DEADLINE_SECONDS",
  "upload-blobs": "UPLOAD_DEADLINE_SECONDS",
  "deployment-capacity": "CAPACITY_DEADLINE_SECONDS",
  "quality-gate": "GATE_DEADLINE_SECONDS",
  "smoke-test deployment": "SMOKE_DEADLINE_SECONDS",
  "smoke-test endpoint": "SMOKE_DEADLINE_SECONDS",
};

function processEnv(program: ProcessProgram, f: FakeArm): Record<string, string | undefined> {
  if (program === "preflight storage-reach") return { PREFLIGHT_STORAGE_URL: `${f.baseUrl}${UPLOAD_CONTAINER}` };
  if (program === "upload-blobs") return { BLOB_CONTAINER_URL: `${f.baseUrl}${UPLOAD_CONTAINER}`, UPLOADS: JSON.stringify([{ file: path.join(UPLOAD_DIR, "train.jsonl"), blob: UPLOAD_BLOB }]) };
  const ws = { AZURE_SUBSCRIPTION_ID: SUB, AZURE_RESOURCE_GROUP: WS.resourceGroup, AZUREML_WORKSPACE: WS.workspace, ARM_ENDPOINT: f.baseUrl };
  if (program === "deployment-capacity") return { ...ws, AZUREML_ENDPOINT: EP, AZUREML_DEPLOYMENT: DEP, CAPACITY_FALLBACK: "1" };
  if (program === "quality-gate") return { ...ws, AZUREML_JOB_NAME: JOB, MLFLOW_TRACKING_URI: `${f.baseUrl}${MLFLOW}`, GATE_MAX_EVAL_LOSS: "2" };
  if (program === "smoke-test deployment" || program === "smoke-test endpoint") {
    const smoke = { ...ws, AZUREML_ENDPOINT: EP, SMOKE_PROMPTS: JSON.stringify(["Say hello."]), SMOKE_MAX_SECONDS: "20", TRAFFIC_POLL_SECONDS: "1" };
    if (program === "smoke-test deployment") return { ...smoke, SMOKE_DEPLOYMENT: DEP };
    return { ...smoke, TRAFFIC_LOG: `traffic: ${OLD_DEP}=100 → ${DEP}=100\n${trafficRecordLine({ endpoint: EP, traffic: { [OLD_DEP]: 100 }, mirrorTraffic: {} })}` };
  }
  return { ...baseEnv(program, f), WAIT_POLL_SECONDS: "1", TRAFFIC_POLL_SECONDS: "1" };
}

interface ProcessRow {
  program: ProcessProgram;
  fault: Fault;
  /** Deadline given to the program (seconds): short where it must pass, long where the program must finish. */
  deadline: number;
  code: number;
  message: RegExp;
  /** Exact number of PUTs, or an inclusive range where retry timing decides. */
  puts: number | [number, number];
  /** What the run says once past the fault (the rows a program gets through). */
  then?: RegExp;
}

const GAVE_UP = /Gave up waiting|deadline|did not finish within/i;
const PROGRAMS = Object.keys(JOB_PROGRAMS) as ProcessProgram[];
/** PUTs a healthy run sends: one job, one traffic update, one blob, the smoke's roll-back (its smoke through the endpoint fails). */
const HEALTHY_PUTS: Record<ProcessProgram, number> = {
  preflight: 0,
  "preflight storage-reach": 0,
  "submit-job": 1,
  "wait-for-job": 0,
  "set-traffic apply": 1,
  "set-traffic release": 1,
  "upload-blobs": 1,
  "deployment-capacity": 0,
  "quality-gate": 0,
  "smoke-test deployment": 0,
  "smoke-test endpoint": 1,
};
/** Exit code of a run that gets past the fault: 0, but the smoke through the endpoint fails by design (rolled back, exit 1). */
const HEALTHY_CODE = (p: ProcessProgram) => (p === "smoke-test endpoint" ? 1 : 0);
/** What a healthy run says last (the smoke's roll-back, the gate's verdict, ...), on top of the fault's own message. */
const HEALTHY_MESSAGE: Partial<Record<ProcessProgram, RegExp>> = {
  "preflight storage-reach": /PASS\s+Storage account reachable for uploads/,
  "deployment-capacity": /runs 3 instance\(s\) now/,
  "quality-gate": /eval_loss 0\.9 <= training\.gate\.maxEvalLoss 2: passed/,
  "smoke-test deployment": /1 prompt\(s\) passed/,
  "smoke-test endpoint": /template token <\|assistant\|>[\s\S]*is back on green-0a0b0c0d=100/,
};
const SHORT = 2;
const LONG = 40;
const isPut = (p: ProcessProgram) => p === "upload-blobs";

const FAULTS: Record<Fault, { answers: FakeResponse[]; persistent?: boolean; row: (p: ProcessProgram) => Omit<ProcessRow, "program" | "fault"> }> = {
  "token endpoint hangs": { answers: [], row: () => ({ deadline: SHORT, code: 3, message: GAVE_UP, puts: 0 }) },
  "first request hangs": { answers: [hang], row: (p) => ({ deadline: SHORT, code: 3, message: GAVE_UP, puts: isPut(p) ? 1 : 0 }) },
  "first answer dropped mid-body": {
    answers: [{ status: 200, body: { padding: "x".repeat(4096) }, drop: true }],
    row: (p) => ({ deadline: LONG, code: HEALTHY_CODE(p), message: /connection dropped while reading the answer/, puts: HEALTHY_PUTS[p] + (isPut(p) ? 1 : 0), then: HEALTHY_MESSAGE[p] }),
  },
  "429 with Retry-After": {
    answers: [{ status: 429, headers: { "retry-after": "1" }, body: { error: { code: "TooManyRequests", message: "slow down" } } }],
    row: (p) => ({ deadline: LONG, code: HEALTHY_CODE(p), message: /HTTP 429; retry 1\/\d+ in 1000 ms/, puts: HEALTHY_PUTS[p] + (isPut(p) ? 1 : 0), then: HEALTHY_MESSAGE[p] }),
  },
  "persistent 5xx": {
    answers: [{ status: 500, body: { error: { code: "InternalServerError", message: "try later" } } }],
    persistent: true,
    row: (p) => ({ deadline: SHORT, code: 3, message: GAVE_UP, puts: isPut(p) ? [1, 4] : 0 }),
  },
  "malformed JSON": {
    answers: [{ status: 200, body: '{"properties": {"status": "Runn' }],
    row: (p) =>
      p === "upload-blobs"
        ? { deadline: LONG, code: 4, message: /HTTP 400/, puts: 1 }
        : p === "preflight storage-reach"
          ? { deadline: LONG, code: 1, message: /answered HTTP 400[\s\S]*nothing was uploaded|nothing was uploaded[\s\S]*answered HTTP 400/, puts: 0 }
        : p === "preflight"
          ? { deadline: LONG, code: 1, message: /not JSON/, puts: 0 }
          : { deadline: LONG, code: 4, message: /not JSON/, puts: 0 },
  },
};
// Put Blob and Get Container Properties answer nothing on success; their malformed answer is an error whose body is cut off.
const MALFORMED_UPLOAD: FakeResponse = { status: 400, body: '<?xml version="1.0"?><Error><Code>InvalidHea' };

const PROCESS_ROWS: ProcessRow[] = PROGRAMS.flatMap((program) => (Object.keys(FAULTS) as Fault[]).map((fault) => ({ program, fault, ...FAULTS[fault].row(program) })));

/**
 * At most this many programs run at once: each is a Node process that loads the Azure SDK, and
 * on a machine shared with other work fewer at once keeps every one's deadline meaningful.
 */
const PROCESS_SLOTS = 3;
/** A row may wait for a slot, then run: a bound for the test, well above any row's own bound. */
const PROCESS_TEST_TIMEOUT_MS = 180_000;
let freeSlots = PROCESS_SLOTS;
const waiting: (() => void)[] = [];
async function inSlot<T>(run: () => Promise<T>): Promise<T> {
  if (freeSlots > 0) freeSlots--;
  else await new Promise<void>((ok) => waiting.push(ok));
  try {
    return await run();
  } finally {
    const next = waiting.shift();
    if (next) next();
    else freeSlots++;
  }
}

async function runProcessRow(row: ProcessRow) {
  return inSlot(() => runProcessRowNow(row));
}

async function runProcessRowNow(row: ProcessRow) {
  const fake = await startFakeArm();
  const entra = await startFakeEntra({ clientSecret: PROCESS_SECRET });
  try {
    const spec = FAULTS[row.fault];
    const answers = row.fault === "malformed JSON" && (row.program === "upload-blobs" || row.program === "preflight storage-reach") ? [MALFORMED_UPLOAD] : spec.answers;
    processRoutes(row.program, fake, answers, spec.persistent ?? false);
    if (row.fault === "token endpoint hangs") entra.hang = true;
    const [file, args] = JOB_PROGRAMS[row.program];
    const r = await spawnProgram(file, args, {
      ...processEnv(row.program, fake),
      [PROCESS_DEADLINE_VAR[row.program]]: String(row.deadline),
      ARM_TENANT_ID: TENANT,
      ARM_CLIENT_ID: "bbbbbbbb-0000-0000-0000-000000000001",
      ARM_CLIENT_SECRET: PROCESS_SECRET,
      AZURE_AUTHORITY_HOST: entra.authorityHost,
    });
    const puts = fake.requests.filter((q) => q.method === "PUT").length;
    const secrets = [PROCESS_SECRET, KEY, ...entra.issued.map((t) => t.token)];
    return { ...r, puts, secrets, firstCallAt: entra.firstRequestAt ?? r.startedAt };
  } finally {
    await fake.close();
    await entra.close();
  }
}

describe("the fault table", () => {
  it("has at least 120 scenarios, and every program in jobs/ meets every fault as a process", () => {
    expect(ROWS.length + CHAT_ROWS.length + PROCESS_ROWS.length + PENDING_ROWS.length).toBeGreaterThanOrEqual(120);
    const jobs = fs.readdirSync(path.join(ROOT, "jobs")).filter((f) => f.endsWith(".ts"));
    expect(new Set(PROCESS_ROWS.map((r) => JOB_PROGRAMS[r.program][0]))).toEqual(new Set(jobs.map((f) => `jobs/${f}`)));
    for (const p of PROGRAMS) expect(new Set(PROCESS_ROWS.filter((r) => r.program === p).map((r) => r.fault)), p).toEqual(new Set(Object.keys(FAULTS)));
  });

  // Spawned side by side, PROCESS_SLOTS at a time; every bound is generous.
  describe.concurrent("as processes (real clock, real credential, deadlines of 2 s where they must pass)", () => {
    it.each(PROCESS_ROWS.map((r) => [r.program, r.fault, r] as const))("%s: %s", async (_p, _f, row) => {
      const r = await runProcessRow(row);
      const output = `${r.stdout}\n${r.stderr}`;
      expect(r.killed, `still running after 60 s:\n${output}`).toBe(false);
      expect(r.code, output).toBe(row.code);
      expect(output).toMatch(row.message);
      if (row.then) expect(output).toMatch(row.then);
      expect(r.exitedAt - r.firstCallAt, output).toBeLessThan(row.deadline * 1000 + SLACK_MS);
      if (typeof row.puts === "number") expect(r.puts, output).toBe(row.puts);
      else {
        expect(r.puts, output).toBeGreaterThanOrEqual(row.puts[0]);
        expect(r.puts, output).toBeLessThanOrEqual(row.puts[1]);
      }
      for (const secret of r.secrets) expect(containsSecret(output, secret), `a secret leaked:\n${output}`).toBe(false);
      expect(output).not.toMatch(/\n\s+at .+:\d+:\d+\)?/);
    }, PROCESS_TEST_TIMEOUT_MS);

    it.each(PENDING_ROWS.map((r) => [r.name, r] as const))("runAsMain: %s", async (_n, row) => {
      const r = await inSlot(() => spawnProgram("test/fixtures/programs/pending.ts", [], row.env));
      expect(r.killed).toBe(false);
      expect(r.code, r.stderr).toBe(row.code);
      expect(r.stderr).toMatch(row.message);
      expect(r.exitedAt - r.startedAt).toBeLessThan(row.boundMs);
    }, PROCESS_TEST_TIMEOUT_MS);
  });

  it("the in-process rows cover submit-job, wait-for-job, set-traffic and preflight, each against a hanging server", () => {
    expect(new Set(ROWS.map((r) => r.program.split(" ")[0]))).toEqual(new Set(["submit-job", "wait-for-job", "set-traffic", "preflight"]));
    for (const p of ["submit-job", "wait-for-job", "set-traffic apply", "set-traffic release", "preflight"]) {
      expect(ROWS.some((r) => r.program === p && r.realTime && /never answers/.test(r.name)), `${p} has a hanging-server row`).toBe(true);
    }
  });

  const check = async (row: Row) => {
    const r = await runRow(row);
    expect(r.output).toMatch(row.message);
    expect(r.code, r.output).toBe(row.code);
    if (row.puts !== undefined) expect(r.puts).toBe(row.puts);
    if (row.realTime) expect(r.elapsedMs).toBeLessThan(DEADLINE_S * 1000 + SLACK_MS);
    expect(containsSecret(r.output, TOKEN), "the token leaked into the output").toBe(false);
    expect(r.output).not.toMatch(/\n\s+at .+:\d+:\d+\)?/);
  };

  it.each(ROWS.filter((r) => !r.realTime).map((r) => [r.program, r.name, r] as const))("%s: %s", (_p, _n, row) => check(row));

  // Real-clock rows wait for their deadline: they run side by side (none fakes the timers).
  describe.concurrent("against servers that hang or trickle (real clock, deadline 1.5 s)", () => {
    it.each(ROWS.filter((r) => r.realTime).map((r) => [r.program, r.name, r] as const))("%s: %s", (_p, _n, row) => check(row));
  });

  it.each(CHAT_ROWS.map((r) => [r.name, r] as const))("chat: %s", async (_n, row) => {
    let n = 0;
    const server = http.createServer((req, res) => {
      req.resume();
      req.on("end", () => row.answer(req, res, n++));
    });
    await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/score`;
    let out = "";
    let err = "";
    const started = Date.now();
    try {
      const code = await chatMain(["--timeout", "5", ...(row.args ?? []), "hi"], { ENDPOINT_URI: url, ENDPOINT_KEY: KEY }, {
        stdout: { write: (c: string) => (out += c) },
        stderr: { write: (c: string) => (err += c) },
        stdin: Object.assign(new (await import("node:stream")).PassThrough(), { isTTY: false }),
        backoffBaseMs: 1,
      } as never);
      expect(code, err).toBe(row.code);
      expect(err).toMatch(row.message);
      expect(Date.now() - started).toBeLessThan(5000 + SLACK_MS);
      for (const text of [out, err]) expect(containsSecret(text, KEY), "the key leaked into the output").toBe(false);
    } finally {
      server.closeAllConnections();
      await new Promise((ok) => server.close(ok));
    }
  });
});
