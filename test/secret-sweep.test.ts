/**
 * The secret sweep (issue 18, point 4): every program of jobs/, `npm run doctor` and
 * `npm run chat`, each spawned as its own process with every secret kind in its environment
 * (lib/secrets.ts SECRET_ENV_VARS), against servers that echo each secret kind in each of the
 * five encodings (plain, base64, base64url, URL-encoded, JSON-escaped) in their bodies and
 * headers: the token service (client secret; GitHub OIDC with the fetched assertion), Azure
 * Resource Manager and Blob Storage (the bearer token they were sent; an error, and a 200 that
 * is not JSON), the scoring endpoint (the key, across the 300-character cut of a quoted body).
 * None may appear in any output, in any form. Then the stack's Commands, whose recorded
 * `stdout`/`stderr` would hold whatever a program printed, are checked in the state the mocks
 * record: no secret in plain text. The Prompt flow tool's masking is tested in Python against
 * the same table of forms (test/fixtures/secret-forms.json, checked here against lib/secrets.ts).
 */
import { spawn } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import type { AddressInfo } from "node:net";
import { describe, expect, it } from "vitest";
import { parseConfig, rawProjectConfig } from "../infra/config";
import { COMMAND_SECRET_OUTPUTS } from "../infra/shell";
import { recordedState, unwrapSecrets } from "../lib/mock-runtime";
import { preflightInput } from "../lib/preflight";
import { containsSecret, secretForms } from "../lib/secrets";
import { readStackConfig } from "../lib/stack-config";
import { trafficRecordLine } from "../lib/traffic-record";
import { startFakeArm, type FakeArm } from "./helpers/fake-arm";
import { startFakeEntra, type FakeEntra } from "./helpers/fake-entra";
import { echoHeaders, echoText, encodings, LISTED_ENDPOINT_KEY, SWEEP_SECRETS } from "./helpers/secret-sweep";
import { JOB_PROGRAMS, spawnProgram, type JobProgram, type ProgramExit } from "./helpers/spawn-program";
import { ROOT, runStack } from "./helpers/stack";

const SUB = "11111111-2222-3333-4444-555555555555";
const TENANT = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";
const WS = { subscriptionId: SUB, resourceGroup: "rg-1", workspace: "ws-1" };
const UPLOAD_DIR = fs.mkdtempSync(path.join(os.tmpdir(), "phi3-sweep-upload-"));
fs.writeFileSync(path.join(UPLOAD_DIR, "a.jsonl"), '{"messages": []}\n');

type Program = JobProgram | "doctor";
const PROGRAMS: Record<Program, readonly [string, readonly string[]]> = {
  ...JOB_PROGRAMS,
  doctor: ["cli/doctor.ts", ["--stack", "bluegreen", "--subscription", SUB]],
};

/** Where the echo comes from. */
type Echo = "token service (client secret)" | "token service (GitHub OIDC assertion)" | "Azure, an error" | "Azure, a 200 that is not JSON" | "scoring endpoint (the key from listKeys)";
const ECHOES: Echo[] = ["token service (client secret)", "token service (GitHub OIDC assertion)", "Azure, an error", "Azure, a 200 that is not JSON"];
/** The smoke tests also meet a scoring endpoint that echoes the key they read with listKeys (and, through the endpoint, a roll-back whose ARM errors echo it). */
const SMOKES: Program[] = ["smoke-test deployment", "smoke-test endpoint"];
/** The key listKeys hands the smoke: in no environment, so only the program's own registration masks it. */
const LISTED_KEY = LISTED_ENDPOINT_KEY;
const EP = "phi3ft-abc123";
const EP_PATH = `/subscriptions/${SUB}/resourceGroups/${WS.resourceGroup}/providers/Microsoft.MachineLearningServices/workspaces/${WS.workspace}/onlineEndpoints/${EP}`;

function programEnv(program: Program, arm: FakeArm): Record<string, string> {
  const ws = { AZURE_SUBSCRIPTION_ID: SUB, AZURE_RESOURCE_GROUP: WS.resourceGroup, AZUREML_WORKSPACE: WS.workspace, ARM_ENDPOINT: arm.baseUrl };
  const deadlines = {
    WAIT_DEADLINE_SECONDS: "20",
    TRAFFIC_DEADLINE_SECONDS: "20",
    PREFLIGHT_DEADLINE_SECONDS: "20",
    UPLOAD_DEADLINE_SECONDS: "20",
    CAPACITY_DEADLINE_SECONDS: "20",
    GATE_DEADLINE_SECONDS: "20",
    SMOKE_DEADLINE_SECONDS: "20",
    WAIT_POLL_SECONDS: "1",
    TRAFFIC_POLL_SECONDS: "1",
  };
  const smoke = { ...ws, ...deadlines, AZUREML_ENDPOINT: EP, SMOKE_PROMPTS: JSON.stringify(["Say hello."]), SMOKE_MAX_SECONDS: "10" };
  switch (program) {
    case "submit-job":
      return { ...ws, ...deadlines, AZUREML_JOB_NAME: "phi3ft-ft-0123456789abcdef", AZUREML_JOB_BODY: JSON.stringify({ properties: { jobType: "Command", command: "python x.py" } }) };
    case "wait-for-job":
      return { ...ws, ...deadlines, AZUREML_JOB_NAME: "phi3ft-ft-0123456789abcdef" };
    case "set-traffic apply":
      return { ...ws, ...deadlines, AZUREML_ENDPOINT: "phi3ft-abc123", TRAFFIC: JSON.stringify({ "blue-1": 100 }) };
    case "set-traffic release":
      return { ...ws, ...deadlines, AZUREML_ENDPOINT: "phi3ft-abc123", MANAGED_DEPLOYMENTS: JSON.stringify(["blue-1"]) };
    case "preflight": {
      const cfg = parseConfig(rawProjectConfig(readStackConfig(ROOT, "bluegreen").config)).config;
      return { ...deadlines, AZURE_SUBSCRIPTION_ID: SUB, PULUMI_STACK: "bluegreen", PREFLIGHT_INPUT: JSON.stringify(preflightInput(cfg)), ARM_ENDPOINT: arm.baseUrl };
    }
    case "preflight storage-reach":
      return { ...deadlines, PREFLIGHT_STORAGE_URL: `${arm.baseUrl}/stx/c` };
    case "upload-blobs":
      return { ...deadlines, BLOB_CONTAINER_URL: `${arm.baseUrl}/stx/c`, UPLOADS: JSON.stringify([{ file: path.join(UPLOAD_DIR, "a.jsonl"), blob: "LocalUpload/0a/a.jsonl" }]) };
    case "deployment-capacity":
      return { ...ws, ...deadlines, AZUREML_ENDPOINT: EP, AZUREML_DEPLOYMENT: "blue-1", CAPACITY_FALLBACK: "1" };
    case "quality-gate":
      return { ...ws, ...deadlines, AZUREML_JOB_NAME: "phi3ft-ft-0123456789abcdef", MLFLOW_TRACKING_URI: `${arm.baseUrl}/mlflow/v1.0${EP_PATH.split("/onlineEndpoints/")[0]}`, GATE_MAX_EVAL_LOSS: "2" };
    case "smoke-test deployment":
      return { ...smoke, SMOKE_DEPLOYMENT: "blue-1" };
    case "smoke-test endpoint":
      return { ...smoke, TRAFFIC_LOG: trafficRecordLine({ endpoint: EP, traffic: { "green-0": 100 }, mirrorTraffic: {} }) };
    case "doctor":
      return { ARM_ENDPOINT: arm.baseUrl };
  }
}

/** The credential variables of a run: every secret kind in the environment, and how the token is had. */
function credentialEnv(echo: Echo, entra: FakeEntra): Record<string, string> {
  const common = {
    ARM_TENANT_ID: TENANT,
    ARM_CLIENT_ID: "bbbbbbbb-0000-0000-0000-000000000001",
    AZURE_AUTHORITY_HOST: entra.authorityHost,
    ARM_CLIENT_CERTIFICATE_PASSWORD: SWEEP_SECRETS.ARM_CLIENT_CERTIFICATE_PASSWORD,
    ENDPOINT_KEY: SWEEP_SECRETS.ENDPOINT_KEY,
  };
  if (echo === "token service (GitHub OIDC assertion)") {
    // ARM_OIDC_TOKEN would be chosen before GitHub's endpoint (lib/credential.ts): left out here.
    return { ...common, ARM_USE_OIDC: "true", ACTIONS_ID_TOKEN_REQUEST_URL: entra.githubOidcUrl, ACTIONS_ID_TOKEN_REQUEST_TOKEN: SWEEP_SECRETS.ACTIONS_ID_TOKEN_REQUEST_TOKEN };
  }
  return { ...common, ARM_CLIENT_SECRET: SWEEP_SECRETS.ARM_CLIENT_SECRET, ARM_OIDC_TOKEN: SWEEP_SECRETS.ARM_OIDC_TOKEN, ACTIONS_ID_TOKEN_REQUEST_TOKEN: SWEEP_SECRETS.ACTIONS_ID_TOKEN_REQUEST_TOKEN };
}

/** Secrets a run knows: those in its environment, and the tokens it was handed (the ones the servers echo). */
function knownSecrets(env: Record<string, string>, entra: FakeEntra, listed: string[] = []): string[] {
  const fromEnv = Object.entries(SWEEP_SECRETS).filter(([k]) => env[k] !== undefined).map(([, v]) => v);
  return [...fromEnv, ...listed, ...entra.issued.map((t) => t.token), ...entra.githubTokens];
}

/**
 * A healthy endpoint whose listKeys hands out {@link LISTED_KEY}, and a scoring URI that echoes
 * the key it was sent (and every other secret) in every encoding, in its body (across the
 * 300-character cut of a quoted body) and headers: a 401 to one deployment, a 200 that is not JSON
 * through the endpoint. Through the endpoint the smoke fails and the roll-back's ARM calls are
 * answered with errors that echo the bearer token and the key.
 */
function routeEchoingScoring(program: Program, arm: FakeArm, fromEnv: string[]): void {
  const bearerOf = (req: { headers: Record<string, string> }) => (req.headers.authorization ?? "").replace(/^Bearer\s+/i, "");
  const armError = (req: { headers: Record<string, string> }) => {
    const all = [bearerOf(req), LISTED_KEY, ...fromEnv];
    return { status: 400, headers: echoHeaders(all), body: { error: { code: "BadRequest", message: `rejected ${echoText(all)}` } } };
  };
  for (const method of ["GET", "PUT", "POST", "PATCH", "DELETE"]) arm.route(method, /./, armError);
  arm.route("GET", EP_PATH, (_r, fk) => ({ body: { name: EP, properties: { authMode: "Key", traffic: { "blue-1": 100 }, mirrorTraffic: {}, provisioningState: "Succeeded", scoringUri: `${fk.baseUrl}/score` } } }));
  arm.route("POST", `${EP_PATH}/listKeys`, { body: { primaryKey: LISTED_KEY, secondaryKey: `${LISTED_KEY}-secondary` } });
  arm.route("POST", "/score", (req) => {
    const all = [bearerOf(req), LISTED_KEY, ...fromEnv];
    // The key starts 16 characters before the 300-character cut of the line that quotes the body
    // (`HTTP 401: "{\"error\":\"xx…`: 25 characters before the x's).
    const text = (xs: number) => `${"x".repeat(xs)}${LISTED_KEY} ${echoText(all)} ${req.headers.authorization}`;
    return program === "smoke-test deployment"
      ? { status: 401, headers: echoHeaders(all), body: `{"error":"${text(284 - 25)}"}` }
      : { status: 200, headers: { ...echoHeaders(all), "content-type": "text/html" }, body: `<html>${text(284 - 6)}</html>` };
  });
}

/** At most this many programs at once (each is a Node process loading the Azure SDK). */
let free = 3;
const queue: (() => void)[] = [];
async function slot<T>(run: () => Promise<T>): Promise<T> {
  if (free > 0) free--;
  else await new Promise<void>((ok) => queue.push(ok));
  try {
    return await run();
  } finally {
    const next = queue.shift();
    if (next) next();
    else free++;
  }
}

/** Captured output of each program's runs, for the state check below. */
const printed = new Map<Program, string[]>();

async function sweep(program: Program, echo: Echo): Promise<{ r: ProgramExit; secrets: string[]; env: Record<string, string> }> {
  const arm = await startFakeArm();
  const entra = await startFakeEntra({ clientSecret: SWEEP_SECRETS.ARM_CLIENT_SECRET, githubRequestToken: SWEEP_SECRETS.ACTIONS_ID_TOKEN_REQUEST_TOKEN });
  try {
    const env = { ...programEnv(program, arm), ...credentialEnv(echo, entra) };
    const fromEnv = Object.values(SWEEP_SECRETS).filter((v) => Object.values(env).includes(v));
    if (echo === "scoring endpoint (the key from listKeys)") {
      routeEchoingScoring(program, arm, fromEnv);
    } else if (echo.startsWith("token service")) {
      entra.refuse = (req) => {
        const form = new URLSearchParams(req.body);
        const sent = [form.get("client_secret"), form.get("client_assertion")].filter((v): v is string => !!v);
        const all = [...sent, ...fromEnv];
        return { status: 401, headers: echoHeaders(all), body: JSON.stringify({ error: "invalid_client", error_description: `AADSTS7000215: rejected ${echoText(all)}` }) };
      };
    } else {
      const answer = (req: { headers: Record<string, string> }) => {
        const bearer = (req.headers.authorization ?? "").replace(/^Bearer\s+/i, "");
        const all = [bearer, ...fromEnv];
        if (echo === "Azure, an error") {
          const blob = program === "upload-blobs" || program === "preflight storage-reach";
          const body = blob ? `<?xml version="1.0"?><Error><Code>${echoText(all)}</Code><Message>${echoText(all)}</Message></Error>` : { error: { code: "BadRequest", message: `rejected ${echoText(all)}` } };
          return { status: blob ? 403 : 400, headers: echoHeaders(all), body };
        }
        return { status: 200, headers: { ...echoHeaders(all), "content-type": "text/html" }, body: `<html>${echoText(all)}</html>` };
      };
      for (const method of ["GET", "PUT", "POST", "PATCH", "DELETE"]) arm.route(method, /./, answer);
    }
    const [file, args] = PROGRAMS[program];
    const r = await slot(() => spawnProgram(file, args, env));
    printed.set(program, [...(printed.get(program) ?? []), r.stdout, r.stderr]);
    return { r, secrets: knownSecrets(env, entra, SMOKES.includes(program) ? [LISTED_KEY] : []), env };
  } finally {
    await arm.close();
    await entra.close();
  }
}

describe("no secret in any output: every program against servers that echo every secret in every encoding", () => {
  it("the sweep's secrets differ in all five encodings", () => {
    for (const s of Object.values(SWEEP_SECRETS)) expect(new Set(Object.values(encodings(s))).size, s).toBe(5);
  });

  describe.concurrent("programs", () => {
    const runs = (Object.keys(PROGRAMS) as Program[]).flatMap((p) => [...ECHOES, ...(SMOKES.includes(p) ? (["scoring endpoint (the key from listKeys)"] as const) : [])].map((e) => [p, e] as const));
    it.each(runs)("%s, echoed by the %s", async (program, echo) => {
      const { r, secrets } = await sweep(program, echo);
      const output = `${r.stdout}\n${r.stderr}`;
      expect(r.killed, output).toBe(false);
      // It failed (nothing it was told was true; Put Blob and Get Container Properties read nothing from a 2xx) and said so, in its own words.
      if ((program === "upload-blobs" || program === "preflight storage-reach") && echo === "Azure, a 200 that is not JSON") expect(r.code, output).toBe(0);
      else expect(r.code, output).not.toBe(0);
      expect(output.trim()).not.toBe("");
      expect(secrets.length).toBeGreaterThanOrEqual(4);
      for (const s of secrets) {
        for (const [enc, form] of Object.entries(encodings(s))) expect(output.includes(form), `${enc} form of a secret in the output:\n${output}`).toBe(false);
        expect(containsSecret(output, s), `a secret in the output:\n${output}`).toBe(false);
      }
      // Mask first, then cut: not even most of the listed key survives next to a cut.
      if (echo === "scoring endpoint (the key from listKeys)") {
        expect(output).not.toContain(LISTED_KEY.slice(0, 12));
        expect(output, "the smoke failed on the echoing answer").toMatch(program === "smoke-test deployment" ? /HTTP 401/ : /ROLL-BACK FAILED|no record/);
      }
    }, 180_000);
  });
});

describe("no secret in any output: npm run chat", () => {
  const KEY = SWEEP_SECRETS.ENDPOINT_KEY;
  const answers: [string, number, string, Record<string, string>][] = [
    ["401 echoing the key", 401, echoText([KEY]), echoHeaders([KEY])],
    // Cut at 300 characters before masking, 16 characters of the key would be left (issue 18).
    ["500 with the key across the 300-character cut", 500, `${"x".repeat(284)}${KEY} ${echoText([KEY])}`, echoHeaders([KEY])],
    ["400 echoing the key", 400, JSON.stringify({ error: echoText([KEY]) }), echoHeaders([KEY])],
    ["200 that is not JSON, the key across the cut", 200, `<html>${"y".repeat(278)}${KEY} ${echoText([KEY])}</html>`, echoHeaders([KEY])],
  ];
  it.each(answers)("%s", async (_name, status, body, headers) => {
    const server = http.createServer((req, res) => {
      req.resume();
      req.on("end", () => {
        res.writeHead(status, { "content-type": "application/json", ...headers });
        res.end(body);
      });
    });
    await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/score`;
      const r = await slot(() => spawnProgram("cli/chat.ts", ["--retries", "0", "hi"], { ENDPOINT_URI: url, ENDPOINT_KEY: KEY }));
      const output = `${r.stdout}\n${r.stderr}`;
      expect(r.code, output).toBe(1);
      expect(output).toMatch(/HTTP|not JSON|rejected the key|unexpected answer/);
      for (const [enc, form] of Object.entries(encodings(KEY))) expect(output.includes(form), `${enc} form of the key:\n${output}`).toBe(false);
      expect(containsSecret(output, KEY), output).toBe(false);
      // Mask first, then cut: not even most of the key survives next to the cut.
      expect(output).not.toContain(KEY.slice(0, 12));
    } finally {
      server.closeAllConnections();
      await new Promise((ok) => server.close(ok));
    }
  }, 180_000);
});

describe("no secret in any output: the Prompt flow tool (promptflow/call_endpoint.py)", () => {
  // The tool imports only the standard library at module level (promptflow guarded), so any
  // python3 runs it; its own unit tests run with the real promptflow (test/python/promptflow).
  const SCRIPT = [
    "import os, sys",
    "sys.path.insert(0, 'promptflow')",
    "import call_endpoint",
    "base, key = os.environ['ECHO_BASE'], os.environ['ENDPOINT_KEY']",
    "for status in (400, 401, 500, 200):",
    "    try:",
    "        print(call_endpoint.ask_phi3({'endpoint': f'{base}/echo/{status}', 'key': key}, 'hi'))",
    "    except Exception as e:",
    "        print(f'{status}: {type(e).__name__}: {e}')",
  ].join("\n");

  it("errors of 400/401/500 and a 200 that is not JSON, each echoing the key in every encoding in body and headers", async () => {
    const KEY = SWEEP_SECRETS.ENDPOINT_KEY;
    const server = http.createServer((req, res) => {
      req.resume();
      req.on("end", () => {
        const status = Number(/\/echo\/(\d+)/.exec(req.url ?? "")?.[1] ?? 404);
        res.writeHead(status, { "content-type": "application/json", ...echoHeaders([KEY]) });
        res.end(`${"z".repeat(290)}${KEY} ${echoText([KEY])} ${req.headers.authorization}`);
      });
    });
    await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
    try {
      const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const r = await slot(
        () =>
          new Promise<{ code: number | null; out: string }>((resolve, reject) => {
            const child = spawn("python3", ["-c", SCRIPT], { cwd: ROOT, env: { PATH: process.env.PATH, HOME: process.env.HOME, ECHO_BASE: base, ENDPOINT_KEY: KEY }, stdio: ["ignore", "pipe", "pipe"] });
            let out = "";
            child.stdout.on("data", (c: Buffer) => (out += c.toString("utf8")));
            child.stderr.on("data", (c: Buffer) => (out += c.toString("utf8")));
            child.on("error", reject);
            child.on("close", (code) => resolve({ code, out }));
          }),
      );
      expect(r.code, r.out).toBe(0);
      for (const status of [400, 401, 500]) expect(r.out).toMatch(new RegExp(`${status}: EndpointError: .*HTTP ${status}`));
      expect(r.out).toMatch(/200: ValueError: endpoint response is not JSON/);
      for (const [enc, form] of Object.entries(encodings(KEY))) expect(r.out.includes(form), `${enc} form of the key:\n${r.out}`).toBe(false);
      expect(containsSecret(r.out, KEY), r.out).toBe(false);
      expect(r.out).not.toContain(KEY.slice(0, 10));
    } finally {
      server.closeAllConnections();
      await new Promise((ok) => server.close(ok));
    }
  }, 120_000);
});

describe("no secret in the state: the Commands' recorded output", () => {
  it("every command:local:Command keeps stdout and stderr secret, and the state holds no secret even when a program echoes one unmasked", async () => {
    const secret = SWEEP_SECRETS.ARM_CLIENT_SECRET;
    // What a program might print that no masking foresaw (the raw echo), plus what the sweep captured.
    const raw = `echo ${echoText(Object.values(SWEEP_SECRETS))}`;
    for (const stack of ["bluegreen", "private"]) {
      const run = await runStack({
        stack,
        overrides: { "azure-native:clientId": "bbbbbbbb-0000-0000-0000-000000000001", "azure-native:tenantId": TENANT, "azure-native:clientSecret": secret },
        secretKeys: ["azure-native:clientSecret"],
        commandOutputs: (name) => ({ stdout: `${raw}\n${(printed.get("preflight") ?? []).join("\n")}`, stderr: `${name}: ${raw}` }),
      });
      const commands = run.registrations.filter((r) => r.type === "command:local:Command");
      expect(commands.length, stack).toBeGreaterThanOrEqual(stack === "private" ? 3 : 2);
      if (stack === "private") expect(commands.some((c) => /upload-blobs/.test(String(unwrapSecrets(c.inputs).create)))).toBe(true);
      for (const c of commands) {
        expect(c.additionalSecretOutputs, c.name).toEqual(expect.arrayContaining([...COMMAND_SECRET_OUTPUTS]));
        // The mocks recorded the raw echo as the command's output ...
        expect(String(c.state.stdout)).toContain(secret);
        // ... and the state as Pulumi writes it holds none of it, in any form.
        const state = JSON.stringify(recordedState(c));
        for (const s of Object.values(SWEEP_SECRETS)) expect(containsSecret(state, s), `${c.name}: a secret in the state`).toBe(false);
        for (const form of secretForms(secret)) expect(state).not.toContain(form);
      }
    }
  });
});

/** The table of forms the Prompt flow tool's own masking is tested against (test/python/promptflow). */
const FORMS_FIXTURE = path.join(ROOT, "test/fixtures/secret-forms.json");
function secretFormsTable(): { secret: string; encodings: Record<string, string>; forms: string[] }[] {
  return [...Object.values(SWEEP_SECRETS), "plain-key-without-specials-0123", "key with spaces & ünïcode/+="].map((secret) => ({ secret, encodings: encodings(secret), forms: secretForms(secret) }));
}

describe("one table of forms for both clients", () => {
  it("test/fixtures/secret-forms.json is what lib/secrets.ts makes (regenerate: PHI3_WRITE_FIXTURES=1)", () => {
    const table = secretFormsTable();
    if (process.env.PHI3_WRITE_FIXTURES === "1") fs.writeFileSync(FORMS_FIXTURE, `${JSON.stringify(table, null, 2)}\n`);
    expect(JSON.parse(fs.readFileSync(FORMS_FIXTURE, "utf8"))).toEqual(table);
    // Every encoding of the sweep is among the forms masked.
    for (const row of table) for (const [enc, v] of Object.entries(row.encodings)) expect(containsSecret(`x${v}y`, row.secret), `${enc} of ${row.secret}`).toBe(true);
  });
});
