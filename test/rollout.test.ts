/**
 * Safe rollout (issue 22): the quality gate (jobs/quality-gate.ts), the smoke tests
 * (jobs/smoke-test.ts) and the roll-back after the traffic step, against a fake Azure ML
 * (test/helpers/fake-arm.ts) that serves ARM, the workspace's MLflow tracking API and the
 * endpoint's scoring route, and records every request. `up` is replayed in the order Pulumi runs
 * the steps (infra/training.ts, infra/serving.ts; the dependency test below checks that order):
 * gate → [provider] model version PUT → [provider] deployment PUT → smoke of the deployment →
 * traffic step → smoke through the endpoint (roll-back). A step that exits non-zero stops
 * everything after it, as it stops `pulumi up`.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createTrackingClient, getRun } from "../lib/mlflow";
import { smokeTest } from "../jobs/smoke-test";
import { AML_API_VERSION, createArmClient, withApiVersion, workspacePath } from "../lib/arm";
import { evaluateGate, runQualityGateFromEnv } from "../jobs/quality-gate";
import { answerText, judgeAnswer, runSmokeTestFromEnv, smokePayload, TEMPLATE_TOKEN } from "../jobs/smoke-test";
import { buildPayload, parseAnswer } from "../cli/chat";
import { runSetTrafficFromEnv } from "../jobs/set-traffic";
import { parseTrafficRecord, trafficRecordLine } from "../lib/traffic-record";
import { containsSecret } from "../lib/secrets";
import { fakeCredential, startFakeArm, type FakeArm, type FakeCredential } from "./helpers/fake-arm";

const WS = { subscriptionId: "00000000-0000-0000-0000-0000000000aa", resourceGroup: "rg-1", workspace: "ws-1" };
const WS_PATH = workspacePath(WS);
const EP = "phi3-ep-x1";
const EP_PATH = `${WS_PATH}/onlineEndpoints/${EP}`;
const KEY = "endpoint-key-Zx81Qm5vT0pLw2Rk";
const MLFLOW = "/mlflow/v1.0" + WS_PATH;
const PROMPTS = ["What is a readiness probe?", "Why does a GPU deployment take several minutes to create?"];

type Behaviour = "ok" | "500" | "empty" | "template" | "slow" | "endpoint-500";

/** The fake's Azure: endpoint traffic, deployments (model id, how they answer), model versions, MLflow runs. */
interface Azure {
  traffic: Record<string, number>;
  mirrorTraffic: Record<string, number>;
  deployments: Record<string, { model: string; behaviour: Behaviour }>;
  models: Record<string, { jobName?: string }>;
  runs: Record<string, { metrics: Record<string, number>; experiment?: string; parent?: string }>;
  trackingDown?: boolean;
  scored: { deployment: string | undefined; header: string | undefined; auth: string | undefined }[];
}

let fake: FakeArm;
let cred: FakeCredential;
let azure: Azure;
let out: string[];
let err: string[];

const modelId = (name: string, version: string) => `${WS_PATH}/models/${name}/versions/${version}`;

function route(f: FakeArm): void {
  const endpointBody = () => ({
    id: EP_PATH,
    name: EP,
    location: "eastus2",
    identity: { type: "SystemAssigned" },
    properties: {
      authMode: "Key",
      provisioningState: "Succeeded",
      scoringUri: `${f.baseUrl}/score`,
      traffic: { ...azure.traffic },
      mirrorTraffic: { ...azure.mirrorTraffic },
    },
  });
  f.route("GET", EP_PATH, () => ({ body: endpointBody() }));
  f.route("PUT", EP_PATH, (req) => {
    const p = (req.body as { properties: { traffic?: Record<string, number>; mirrorTraffic?: Record<string, number> } }).properties;
    azure.traffic = Object.fromEntries(Object.entries(p.traffic ?? {}).filter(([, v]) => v > 0));
    azure.mirrorTraffic = Object.fromEntries(Object.entries(p.mirrorTraffic ?? {}).filter(([, v]) => v > 0));
    return { status: 200, body: endpointBody() };
  });
  f.route("POST", `${EP_PATH}/listKeys`, () => ({ body: { primaryKey: KEY, secondaryKey: "second-key-abcdef123456" } }));
  f.route("GET", new RegExp(`^${EP_PATH}/deployments/[^/]+$`), (req) => {
    const name = req.path.split("/").pop()!;
    const d = azure.deployments[name];
    if (!d) return { status: 404, body: { error: { code: "ResourceNotFound", message: `no deployment ${name}` } } };
    return { body: { name, properties: { model: d.model, provisioningState: "Succeeded" } } };
  });
  // What the azure-native provider sends when Pulumi creates these resources (replayed by `up` below).
  f.route("PUT", new RegExp(`^${EP_PATH}/deployments/[^/]+$`), (req) => {
    const name = req.path.split("/").pop()!;
    const body = req.body as { properties: { model: string }; tags?: { behaviour?: Behaviour } };
    azure.deployments[name] = { model: body.properties.model, behaviour: body.tags?.behaviour ?? "ok" };
    return { status: 200, body: { name, properties: { ...body.properties, provisioningState: "Succeeded" } } };
  });
  f.route("PUT", new RegExp(`^${WS_PATH}/models/[^/]+/versions/[^/]+$`), (req) => {
    const parts = req.path.split("/");
    azure.models[modelId(parts[parts.length - 3], parts[parts.length - 1])] = { jobName: (req.body as { properties: { jobName?: string } }).properties.jobName };
    return { status: 200, body: req.body };
  });
  f.route("GET", new RegExp(`^${WS_PATH}/models/[^/]+/versions/[^/]+$`), (req) => {
    const m = azure.models[req.path];
    return m ? { body: { properties: { modelType: "mlflow_model", jobName: m.jobName } } } : { status: 404, body: { error: { code: "ResourceNotFound", message: "no such model version" } } };
  });
  // The workspace's MLflow tracking API (https + bearer token, as on Azure).
  const run = (id: string) => ({
    info: { run_id: id, experiment_id: azure.runs[id].experiment ?? "1", status: "FINISHED" },
    data: { metrics: Object.entries(azure.runs[id].metrics).map(([key, value]) => ({ key, value, timestamp: 1, step: 10 })), tags: [] },
  });
  f.route("GET", `${MLFLOW}/api/2.0/mlflow/runs/get`, (req) => {
    if (azure.trackingDown) return { status: 503, body: { error_code: "TEMPORARILY_UNAVAILABLE", message: "down" } };
    const id = req.query.run_id;
    if (!azure.runs[id]) return { status: 404, body: { error_code: "RESOURCE_DOES_NOT_EXIST", message: `Run '${id}' not found` } };
    return { body: { run: run(id) } };
  });
  f.route("POST", `${MLFLOW}/api/2.0/mlflow/runs/search`, (req) => {
    const parent = /parentRunId = '([^']+)'/.exec(String((req.body as { filter?: string }).filter))?.[1];
    return { body: { runs: Object.keys(azure.runs).filter((id) => azure.runs[id].parent === parent).map(run) } };
  });
  // The scoring route: the header picks a deployment (404 for an unknown one, as Azure), else the split does.
  f.route("POST", "/score", async (req) => {
    const header = req.headers["azureml-model-deployment"];
    const routed = Object.entries(azure.traffic).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))[0]?.[0];
    const name = header ?? routed;
    azure.scored.push({ deployment: name, header, auth: req.headers.authorization });
    if (req.headers.authorization !== `Bearer ${KEY}`) return { status: 401, body: { message: "key_auth_access_denied" } };
    const d = name ? azure.deployments[name] : undefined;
    if (!d) return { status: 404, body: { message: `deployment ${name} not found` } };
    switch (d.behaviour) {
      case "500":
        return { status: 500, body: { message: `worker crashed (auth was Bearer ${KEY})` } };
      case "empty":
        return { body: [""] };
      case "template":
        return { body: ["<|assistant|> <|end|>"] };
      case "slow":
        await new Promise((r) => setTimeout(r, 1500));
        return { body: ["A periodic check."] };
      case "endpoint-500":
        return header ? { body: ["A periodic check."] } : { status: 502, body: { message: "upstream failed" } };
      default:
        return { body: ["A periodic check that tells the endpoint when an instance can take requests."] };
    }
  });
}

beforeEach(async () => {
  fake = await startFakeArm();
  cred = fakeCredential();
  out = [];
  err = [];
  azure = { traffic: {}, mirrorTraffic: {}, deployments: {}, models: {}, runs: {}, scored: [] };
  route(fake);
});
afterEach(async () => {
  await fake.close();
  // The key is never printed, in any form, whatever the deployment answered.
  for (const line of [...out, ...err]) expect(containsSecret(line, KEY), line).toBe(false);
});

const deps = () => ({ log: (l: string) => out.push(l), error: (l: string) => err.push(l), credential: cred, sleep: async () => undefined, backoffBaseMs: 1, maxRetries: 1 });
const baseEnv = () => ({ AZURE_SUBSCRIPTION_ID: WS.subscriptionId, AZURE_RESOURCE_GROUP: WS.resourceGroup, AZUREML_WORKSPACE: WS.workspace, ARM_ENDPOINT: fake.baseUrl });

/** A serving model: run → model version → deployment with the given split. */
function serving(job: string, evalLoss: number, deployment: string, version = "1"): void {
  azure.runs[job] = { metrics: { eval_loss: evalLoss, loss: evalLoss + 0.1 } };
  azure.models[modelId("phi3-finetuned", version)] = { jobName: job };
  azure.deployments[deployment] = { model: modelId("phi3-finetuned", version), behaviour: "ok" };
}

interface UpResult {
  exits: { gate?: number; smoke?: number; traffic?: number; verify?: number };
}

/**
 * Replays `pulumi up` for a new run `job` that Pulumi would register as version `version` and
 * deploy as `deployment` with the target split `traffic`.
 */
async function up(o: { job: string; version: string; deployment: string; behaviour?: Behaviour; traffic: Record<string, number>; gate?: Record<string, string> }): Promise<UpResult> {
  const exits: UpResult["exits"] = {};
  exits.gate = await runQualityGateFromEnv(
    { ...baseEnv(), AZUREML_JOB_NAME: o.job, MLFLOW_TRACKING_URI: `${fake.baseUrl}${MLFLOW}`, AZUREML_ENDPOINT: EP, ...(o.gate ?? { GATE_MAX_REGRESSION_PERCENT: "10" }) },
    deps(),
  );
  if (exits.gate !== 0) return { exits };
  // The provider: the model version (depends on the gate), then the deployment serving it.
  const provider = createArmClient({ baseUrl: fake.baseUrl, credential: cred, maxRetries: 0 });
  await provider.put(withApiVersion(`${WS_PATH}/models/phi3-finetuned/versions/${o.version}`, AML_API_VERSION), { properties: { modelType: "mlflow_model", jobName: o.job } });
  await provider.put(withApiVersion(`${EP_PATH}/deployments/${o.deployment}`, AML_API_VERSION), {
    properties: { model: modelId("phi3-finetuned", o.version) },
    tags: { behaviour: o.behaviour ?? "ok" },
  });
  const smokeEnv = { ...baseEnv(), AZUREML_ENDPOINT: EP, SMOKE_PROMPTS: JSON.stringify(PROMPTS), SMOKE_MAX_SECONDS: "1" };
  exits.smoke = await runSmokeTestFromEnv("deployment", { ...smokeEnv, SMOKE_DEPLOYMENT: o.deployment }, deps());
  if (exits.smoke !== 0) return { exits };
  const trafficOut: string[] = [];
  exits.traffic = await runSetTrafficFromEnv("apply", { ...baseEnv(), AZUREML_ENDPOINT: EP, TRAFFIC: JSON.stringify(o.traffic), TRAFFIC_POLL_SECONDS: "1" }, { ...deps(), log: (l) => trafficOut.push(l) });
  out.push(...trafficOut);
  if (exits.traffic !== 0) return { exits };
  // The traffic step's stdout is the verify step's input (infra/serving.ts).
  exits.verify = await runSmokeTestFromEnv("endpoint", { ...smokeEnv, TRAFFIC_LOG: trafficOut.join("\n"), TRAFFIC_POLL_SECONDS: "1" }, deps());
  return { exits };
}

const putsTo = (re: RegExp) => fake.requests.filter((r) => r.method === "PUT" && re.test(r.path)).length;
const modelPuts = () => putsTo(/\/models\/[^/]+\/versions\//);
const deploymentPuts = () => putsTo(/\/deployments\/[^/]+$/);
const endpointPuts = () => putsTo(new RegExp(`${EP_PATH}$`));

describe("two runs through the quality gate", () => {
  it("a good run passes the gate, is registered and deployed, and its deployment gets the traffic", async () => {
    serving("phi3ft-ft-run1", 1.0, "blue-11111111");
    azure.traffic = { "blue-11111111": 100 };
    azure.runs["phi3ft-ft-run2"] = { metrics: { eval_loss: 1.05 } };
    const r = await up({ job: "phi3ft-ft-run2", version: "2", deployment: "blue-22222222", traffic: { "blue-22222222": 100 } });
    expect(r.exits).toEqual({ gate: 0, smoke: 0, traffic: 0, verify: 0 });
    expect([modelPuts(), deploymentPuts(), endpointPuts()]).toEqual([1, 1, 1]);
    expect(azure.traffic).toEqual({ "blue-22222222": 100 });
    expect(out.join("\n")).toMatch(/eval_loss 1\.05 is 5% worse than 1 of the serving model phi3-finetuned:1 \(job phi3ft-ft-run1, deployment blue-11111111 at 100%\); training\.gate\.maxRegressionPercent 10: passed/);
    // The tracking API was called with an Entra token for ARM (the scope Azure ML's MLflow takes).
    const runsGet = fake.requestsTo("GET", `${MLFLOW}/api/2.0/mlflow/runs/get`);
    expect(runsGet.map((q) => q.query.run_id)).toEqual(["phi3ft-ft-run2", "phi3ft-ft-run1"]);
    expect(runsGet.every((q) => q.headers.authorization === `Bearer ${cred.token}`)).toBe(true);
    expect(cred.scopes).toContain("https://management.azure.com/.default");
    // Before traffic, each prompt went to the new deployment only; after, through the endpoint.
    expect(azure.scored.map((s) => s.header)).toEqual(["blue-22222222", "blue-22222222", undefined, undefined]);
  });

  it.each([
    ["eval_loss above maxEvalLoss", { GATE_MAX_EVAL_LOSS: "1.2" }, { eval_loss: 1.3 }, /eval_loss 1\.3 > training\.gate\.maxEvalLoss 1\.2: REFUSED/],
    ["eval_loss too far above the serving model's", { GATE_MAX_REGRESSION_PERCENT: "10" }, { eval_loss: 1.25 }, /eval_loss 1\.25 is 25% worse than 1 of the serving model phi3-finetuned:1 .*maxRegressionPercent 10: REFUSED/],
    ["no eval_loss in the run (fails closed)", { GATE_MAX_EVAL_LOSS: "5" }, { loss: 0.5 }, /refused \(fails closed\): job phi3ft-ft-bad: run phi3ft-ft-bad has no metric eval_loss/],
  ])("%s: refused, nothing registered, no deployment or traffic changes", async (_what, gate, metrics, message) => {
    serving("phi3ft-ft-run1", 1.0, "blue-11111111");
    azure.traffic = { "blue-11111111": 100 };
    azure.runs["phi3ft-ft-bad"] = { metrics };
    const r = await up({ job: "phi3ft-ft-bad", version: "3", deployment: "blue-33333333", traffic: { "blue-33333333": 100 }, gate });
    expect(r.exits).toEqual({ gate: 1 });
    expect([modelPuts(), deploymentPuts(), endpointPuts()]).toEqual([0, 0, 0]);
    expect(azure.traffic).toEqual({ "blue-11111111": 100 });
    expect(err.join("\n")).toMatch(message);
    expect(err.join("\n")).toMatch(/nothing is registered and no deployment or traffic changes|fails closed/);
  });

  it.each([
    ["the run does not exist", () => undefined, 1, /the tracking server has no run phi3ft-ft-x/],
    ["the tracking server is down", () => { azure.trackingDown = true; }, 4, /could not read the metrics, refused \(fails closed\).*HTTP 503/],
    ["the serving model names no job", () => { azure.models[modelId("phi3-finetuned", "1")] = {}; azure.runs["phi3ft-ft-x"] = { metrics: { eval_loss: 0.5 } }; }, 1, /model phi3-finetuned:1 serving on deployment blue-11111111 names no job/],
  ])("fails closed when %s, with nothing registered", async (_what, setup, code, message) => {
    serving("phi3ft-ft-run1", 1.0, "blue-11111111");
    azure.traffic = { "blue-11111111": 100 };
    setup();
    const r = await up({ job: "phi3ft-ft-x", version: "4", deployment: "blue-44444444", traffic: { "blue-44444444": 100 } });
    expect(r.exits).toEqual({ gate: code });
    expect([modelPuts(), deploymentPuts(), endpointPuts()]).toEqual([0, 0, 0]);
    expect(err.join("\n")).toMatch(message);
  });

  it("reads eval_loss from a child run (a pipeline job's step) and compares with nothing on a first deployment", async () => {
    azure.runs["phi3ft-ft-pipe"] = { metrics: {}, experiment: "7" };
    azure.runs["step-1"] = { metrics: { eval_loss: 0.9 }, experiment: "7", parent: "phi3ft-ft-pipe" };
    const r = await up({ job: "phi3ft-ft-pipe", version: "5", deployment: "blue-55555555", traffic: { "blue-55555555": 100 }, gate: { GATE_MAX_EVAL_LOSS: "1", GATE_MAX_REGRESSION_PERCENT: "10" } });
    expect(r.exits).toEqual({ gate: 0, smoke: 0, traffic: 0, verify: 0 });
    expect(out.join("\n")).toMatch(/eval_loss 0\.9 <= training\.gate\.maxEvalLoss 1: passed/);
    expect(out.join("\n")).toMatch(/no model serves on the endpoint yet/);
  });
});

describe("smoke test before traffic", () => {
  it.each([
    ["500", /HTTP 500: .*worker crashed \(auth was Bearer \*\*\*\)/],
    ["empty", /an empty answer/],
    ["template", /template token <\|assistant\|> in the answer/],
    ["slow", /took \d+\.\d s, more than serving\.smoke\.maxSeconds 1/],
  ] as const)("a deployment answering %s never gets traffic", async (behaviour, message) => {
    serving("phi3ft-ft-run1", 1.0, "blue-11111111");
    azure.traffic = { "blue-11111111": 90 };
    serving("phi3ft-ft-run0", 1.0, "green-00000000", "0");
    azure.traffic["green-00000000"] = 10;
    azure.runs["phi3ft-ft-run2"] = { metrics: { eval_loss: 1.0 } };
    const r = await up({ job: "phi3ft-ft-run2", version: "2", deployment: "blue-22222222", behaviour, traffic: { "blue-22222222": 100 } });
    expect(r.exits).toEqual({ gate: 0, smoke: 1 });
    expect([modelPuts(), deploymentPuts(), endpointPuts()]).toEqual([1, 1, 0]);
    expect(azure.traffic).toEqual({ "blue-11111111": 90, "green-00000000": 10 });
    const text = err.join("\n");
    expect(text).toMatch(new RegExp(`smoke-test of deployment blue-22222222 of endpoint ${EP} failed: prompt "What is a readiness probe\\?" → `));
    expect(text).toMatch(message);
    expect(text).toMatch(/blue-22222222 gets no traffic: the traffic step does not run/);
    // Only the new deployment was asked, by name.
    expect(new Set(azure.scored.map((s) => s.header))).toEqual(new Set(["blue-22222222"]));
  });

  it("an unknown deployment name is a 404 from the endpoint, reported as such", async () => {
    const code = await runSmokeTestFromEnv("deployment", { ...baseEnv(), AZUREML_ENDPOINT: EP, SMOKE_PROMPTS: JSON.stringify(["hi"]), SMOKE_DEPLOYMENT: "nope-12345678" }, deps());
    expect(code).toBe(1);
    expect(err.join("\n")).toMatch(/prompt "hi" → HTTP 404: .*deployment nope-12345678 not found/);
  });

  it.each([
    [{ SMOKE_PROMPTS: "[]" }, /SMOKE_PROMPTS must be a non-empty JSON list/],
    [{ SMOKE_PROMPTS: "not json" }, /SMOKE_PROMPTS is not valid JSON/],
    [{ SMOKE_DEPLOYMENT: "" }, /missing environment variable\(s\): SMOKE_DEPLOYMENT/],
    [{ SMOKE_PAYLOAD_SHAPE: "chat" }, /SMOKE_PAYLOAD_SHAPE must be prompt-list or chat-list/],
  ])("bad configuration %j exits 2 before any request", async (extra, message) => {
    const code = await runSmokeTestFromEnv("deployment", { ...baseEnv(), AZUREML_ENDPOINT: EP, SMOKE_PROMPTS: JSON.stringify(["hi"]), SMOKE_DEPLOYMENT: "blue-1", ...extra }, deps());
    expect(code).toBe(2);
    expect(err.join("\n")).toMatch(message);
    expect(fake.requests).toHaveLength(0);
  });
});

describe("roll-back after the traffic step", () => {
  it("a failure through the endpoint restores the previous split exactly, mirror included, and fails", async () => {
    serving("phi3ft-ft-run1", 1.0, "blue-11111111");
    serving("phi3ft-ft-run0", 1.1, "green-00000000", "0");
    serving("phi3ft-ft-runm", 1.2, "shadow-00000000", "9");
    azure.traffic = { "blue-11111111": 70, "green-00000000": 30 };
    azure.mirrorTraffic = { "shadow-00000000": 20 };
    azure.runs["phi3ft-ft-run2"] = { metrics: { eval_loss: 1.0 } };
    const r = await up({ job: "phi3ft-ft-run2", version: "2", deployment: "blue-22222222", behaviour: "endpoint-500", traffic: { "blue-22222222": 100 } });
    expect(r.exits).toEqual({ gate: 0, smoke: 0, traffic: 0, verify: 1 });
    // One PUT moved the traffic, one put it back.
    expect([modelPuts(), deploymentPuts(), endpointPuts()]).toEqual([1, 1, 2]);
    expect(azure.traffic).toEqual({ "blue-11111111": 70, "green-00000000": 30 });
    expect(azure.mirrorTraffic).toEqual({ "shadow-00000000": 20 });
    expect(err.join("\n")).toMatch(/smoke-test of endpoint phi3-ep-x1 failed: prompt "What is a readiness probe\?" → HTTP 502/);
    expect(err.join("\n")).toMatch(/endpoint phi3-ep-x1 is back on blue-11111111=70, green-00000000=30; the rollout failed/);
  });

  it("without a record of the split (or with rollback false) nothing is restored, and it fails naming why", async () => {
    serving("phi3ft-ft-run1", 1.0, "blue-11111111");
    azure.deployments["blue-11111111"].behaviour = "endpoint-500";
    azure.traffic = { "blue-11111111": 100 };
    const env = { ...baseEnv(), AZUREML_ENDPOINT: EP, SMOKE_PROMPTS: JSON.stringify(["hi"]) };
    expect(await runSmokeTestFromEnv("endpoint", { ...env, TRAFFIC_LOG: "nothing recorded" }, deps())).toBe(1);
    expect(await runSmokeTestFromEnv("endpoint", { ...env, ROLLBACK: "false", TRAFFIC_LOG: trafficRecordLine({ endpoint: EP, traffic: { x: 100 }, mirrorTraffic: {} }) }, deps())).toBe(1);
    expect(endpointPuts()).toBe(0);
    expect(err.join("\n")).toMatch(/no record of the split before the traffic step/);
    expect(err.join("\n")).toMatch(/serving\.smoke\.rollback is false/);
  });
});

describe("plain http on a loopback host (a local mlflow server, serve:local)", () => {
  it("is allowed without a token for the tracking API and the scoring route; elsewhere refused", async () => {
    const seen: { url: string; auth: string | undefined }[] = [];
    const server = http.createServer((req, res) => {
      seen.push({ url: req.url ?? "", auth: req.headers.authorization });
      res.writeHead(200, { "content-type": "application/json" });
      res.end(req.url?.startsWith("/api/") ? JSON.stringify({ run: { info: { run_id: "r1", experiment_id: "0" }, data: { metrics: [{ key: "eval_loss", value: 0.5 }] } } }) : '["ok"]');
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const tracking = createTrackingClient({ uri: base, credential: cred });
      expect((await getRun(tracking, "r1")).metrics).toEqual({ eval_loss: 0.5 });
      const results = await smokeTest({ scoringUri: `${base}/score`, key: KEY, prompts: ["hi"], maxSeconds: 30, maxNewTokens: 4, shape: "prompt-list" }, { log: (l) => out.push(l) });
      expect(results.map((r) => r.ok)).toEqual([true]);
      expect(seen.map((s) => s.auth)).toEqual([undefined, `Bearer ${KEY}`]);
      expect(cred.calls).toBe(0);
      expect(() => createTrackingClient({ uri: "http://10.1.2.3:5000", credential: cred })).toThrow(/must be an https URL/);
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });
});

describe("pure parts", () => {
  it.each([
    [1.0, {}, undefined, true, /no rule set/],
    [1.0, { maxEvalLoss: 1.0 }, undefined, true, /<= training\.gate\.maxEvalLoss 1: passed/],
    [1.01, { maxEvalLoss: 1.0 }, undefined, false, /> training\.gate\.maxEvalLoss 1: REFUSED/],
    [1.1, { maxRegressionPercent: 10 }, { value: 1.0, what: "m" }, true, /10% worse than 1 of the serving m; .* 10: passed/],
    [1.11, { maxRegressionPercent: 10 }, { value: 1.0, what: "m" }, false, /11% worse .* REFUSED/],
    [0.9, { maxRegressionPercent: 0 }, { value: 1.0, what: "m" }, true, /10% better than 1/],
    [2.0, { maxRegressionPercent: 0 }, undefined, true, /no model serves on the endpoint yet/],
  ])("evaluateGate(%s, %j, %j) passes=%s", (value, rules, baseline, passed, line) => {
    const v = evaluateGate(value, rules, baseline);
    expect(v.passed).toBe(passed);
    expect(v.lines.join("\n")).toMatch(line);
    expect(v.refusals.length === 0).toBe(passed);
  });

  it.each([
    [200, '["fine"]', 0.1, undefined],
    [200, '["  "]', 0.1, /empty answer/],
    [200, '["hello <|end|>"]', 0.1, /template token <\|end\|>/],
    [200, '["<|endoftext|>"]', 0.1, /template token <\|endoftext\|>/],
    [200, '{"output": 1}', 0.1, /another shape/],
    [503, "upstream", 0.1, /HTTP 503: "upstream"/],
    [200, '["fine"]', 2.5, /took 2\.5 s, more than serving\.smoke\.maxSeconds 2/],
  ])("judgeAnswer(%i, %s, %s s)", (status, body, seconds, problem) => {
    const r = judgeAnswer(status, body, seconds, 2, "prompt-list");
    if (problem) expect(r.problem).toMatch(problem);
    else expect(r.problem).toBeUndefined();
  });

  it.each(["prompt-list", "chat-list"] as const)("the smoke sends and reads %s exactly as npm run chat does", (shape) => {
    expect(smokePayload(shape, "Hi there", 17)).toEqual(buildPayload(shape, [{ role: "user", content: "Hi there" }], { temperature: 0, maxNewTokens: 17 }));
    for (const body of ['["a"]', '[{"0": "b"}]', '[{"generated_text": "c"}]', '"[\\"d\\"]"', '{"output": "e"}', '{"x": 1}', "[]", "[1]"]) {
      let want: string | Error;
      try {
        want = parseAnswer(shape, body);
      } catch (e) {
        want = e as Error;
      }
      if (want instanceof Error) expect(() => answerText(shape, body), body).toThrow();
      else expect(answerText(shape, body), body).toBe(want);
    }
  });

  it("template tokens are Phi-3's markers, not any angle brackets", () => {
    expect(["<|user|>", "<|end|>", "<|system|>", "<|placeholder1|>"].every((t) => TEMPLATE_TOKEN.test(t))).toBe(true);
    expect(["a < b | c > d", "<b>", "|x|", "<||>"].some((t) => TEMPLATE_TOKEN.test(t))).toBe(false);
  });

  it("the traffic record round-trips; the last record counts; garbage is no record", () => {
    const a = { endpoint: EP, traffic: { a: 60, b: 40 }, mirrorTraffic: { c: 10 } };
    const b = { endpoint: EP, traffic: { a: 100 }, mirrorTraffic: {} };
    expect(parseTrafficRecord(["x", trafficRecordLine(a), "y", trafficRecordLine(b), "z"].join("\n"))).toEqual(b);
    expect(parseTrafficRecord("traffic before this step: {broken")).toBeUndefined();
    expect(parseTrafficRecord('traffic before this step: {"endpoint":"e","traffic":{"a":"x"},"mirrorTraffic":{}}')).toBeUndefined();
  });
});
