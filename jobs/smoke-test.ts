/**
 * Smoke test of an Azure ML online deployment, before and after traffic moves. `@pulumi/command`
 * runs it (infra/serving.ts):
 *
 *   npx tsx jobs/smoke-test.ts deployment   after a deployment is Succeeded, before the traffic
 *                                           step: the prompts go to that deployment only (header
 *                                           `azureml-model-deployment`, which reaches a deployment
 *                                           with 0% traffic; Azure ML docs, safe rollout)
 *   npx tsx jobs/smoke-test.ts endpoint     after the traffic step: the same prompts through the
 *                                           endpoint; on failure the split the traffic step
 *                                           recorded before changing it is put back
 *
 * Each prompt must get HTTP 200 within SMOKE_MAX_SECONDS and a non-empty answer without
 * template tokens (`<|end|>`, `<|assistant|>`, ...: a model that leaks its chat template is
 * broken). A failure names the deployment, the prompt and what came back; the endpoint key (read
 * with `listKeys`, never passed in) is masked everywhere (lib/secrets.ts).
 *
 * Environment: AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP, AZUREML_WORKSPACE, AZUREML_ENDPOINT,
 * SMOKE_PROMPTS (JSON list of strings) (required); SMOKE_DEPLOYMENT (required in `deployment`
 * mode), SMOKE_MAX_SECONDS (default 60), SMOKE_MAX_NEW_TOKENS (default 32), SMOKE_PAYLOAD_SHAPE
 * (prompt-list | chat-list, default prompt-list), SMOKE_DEADLINE_SECONDS (default
 * {@link SMOKE_DEADLINE_SECONDS}: one deadline for all it does, the roll-back included: every
 * ARM request, token request and prompt runs under it, and the process ends at it whatever is
 * pending, lib/cli.ts `runAsMain`); `endpoint` mode: TRAFFIC_LOG (the traffic step's output,
 * holding its record), ROLLBACK (default true), TRAFFIC_DEADLINE_SECONDS (3600, a bound of the
 * roll-back within SMOKE_DEADLINE_SECONDS), TRAFFIC_POLL_SECONDS (15); ARM_ENDPOINT.
 *
 * Exit codes (lib/cli.ts): 0 every prompt passed; 1 a prompt failed (in `endpoint` mode after the
 * previous split was restored, or with what to do when it could not be); 2 bad configuration;
 * 3 deadline passed; 4 Azure or credential error (endpoint or keys unreadable).
 *
 * Follows Azure ML REST API 2025-12-01 (onlineEndpoints get / listKeys).
 */
import { createDefaultHttpClient, createHttpHeaders, createPipelineRequest, type HttpClient } from "@azure/core-rest-pipeline";
import {
  AML_API_VERSION,
  ArmError,
  DeadlineError,
  EXIT_ARM,
  EXIT_CONFIG,
  EXIT_DEADLINE,
  EXIT_FAILED,
  EXIT_OK,
  LongRunningOperationError,
  armClientFromEnv,
  deadlineSecondsFromEnv,
  armEndpointFromEnv,
  missingEnv,
  positiveSecondsFromEnv,
  withApiVersion,
  workspacePath,
  type ArmClient,
  type Env,
  type ScriptDeps,
} from "../lib/arm";
import { jobMain, runJobAsMain, type JobSpec } from "../lib/cli";
import { CredentialConfigError } from "../lib/credential";
import { isLoopbackHttp } from "../lib/mlflow";
import { maskSecrets } from "../lib/secrets";
import { parseTrafficRecord, type RecordedSplit } from "../lib/traffic-record";
import { applyTraffic, formatMap, SET_TRAFFIC_COMMAND, TrafficConfigError, TrafficError } from "./set-traffic";

/**
 * Default of SMOKE_DEADLINE_SECONDS: the prompts (each at most SMOKE_MAX_SECONDS + 5 s) and, in
 * `endpoint` mode, a roll-back of the traffic (an endpoint update takes minutes).
 */
export const SMOKE_DEADLINE_SECONDS = 1800;

/**
 * The request body of one smoke prompt, greedy (`do_sample: false`, temperature 0), in the shape
 * `npm run chat` sends (cli/chat.ts `buildPayload`; jobs/ and cli/ do not import each other):
 * `prompt-list` `{"input_data": [prompt], "params": {...}}` for the script's MLflow model,
 * `chat-list` `{"input_data": {"input_string": [[messages]], "parameters": {...}}, "params": {}}`
 * for the managed mode's.
 */
export function smokePayload(shape: SmokeShape, prompt: string, maxNewTokens: number): unknown {
  const parameters = { temperature: 0, max_new_tokens: maxNewTokens, do_sample: false };
  if (shape === "chat-list") return { input_data: { input_string: [[{ role: "user", content: prompt }]], parameters }, params: {} };
  return { input_data: [prompt], params: { ...parameters, return_full_text: false } };
}

/**
 * The answer text of a scoring response, as cli/chat.ts `parseAnswer` reads it: a JSON list whose
 * first item is a string, `{"0": ...}` or `{"generated_text": ...}`, or (chat-list) `{"output": ...}`;
 * a JSON string holding JSON is decoded once.
 *
 * @throws Error quoting the start of the body when it has another shape.
 */
export function answerText(shape: SmokeShape, body: string): string {
  let v: unknown = JSON.parse(body);
  if (typeof v === "string" && /^\s*[[{]/.test(v)) {
    try {
      v = JSON.parse(v);
    } catch {
      // a plain answer that starts with a bracket
    }
  }
  if (shape === "chat-list" && v && typeof v === "object" && !Array.isArray(v) && typeof (v as { output?: unknown }).output === "string") return (v as { output: string }).output;
  if (Array.isArray(v) && v.length > 0) {
    const first = v[0] as unknown;
    if (typeof first === "string") return first;
    if (first && typeof first === "object") {
      const r = first as Record<string, unknown>;
      if (typeof r["0"] === "string") return r["0"];
      if (typeof r.generated_text === "string") return r.generated_text;
    }
  }
  throw new Error(`expected a list whose first item is a string, {"0": ...} or {"generated_text": ...}: ${snippet(body)}`);
}

const snippet = (t: string, max = 300) => (t.length > max ? `${t.slice(0, max)}...` : t);

/** Template tokens of Phi-3's chat format (`<|user|>`, `<|end|>`, `<|endoftext|>`, ...). */
export const TEMPLATE_TOKEN = /<\|[A-Za-z_][A-Za-z0-9_]{0,40}\|>/;

/** The header that sends a request to one deployment of an endpoint (Azure ML safe rollout). */
export const DEPLOYMENT_HEADER = "azureml-model-deployment";

/** Payload shapes the smoke sends (cli/chat.ts). */
export type SmokeShape = "prompt-list" | "chat-list";

/** One prompt's outcome. */
export interface PromptResult {
  prompt: string;
  ok: boolean;
  /** HTTP status (0 when no answer came). */
  status: number;
  /** Seconds the answer took. */
  seconds: number;
  /** The answer (ok) or what came back / why it failed (not ok); masked, at most 300 characters. */
  detail: string;
}

/** What {@link smokeTest} sends and where. */
export interface SmokeOptions {
  scoringUri: string;
  key: string;
  /** Deployment the header names; undefined: through the endpoint's traffic split. */
  deployment?: string;
  prompts: string[];
  maxSeconds: number;
  maxNewTokens: number;
  shape: SmokeShape;
}

/** Side effects of {@link smokeTest}. */
export interface SmokeDeps {
  httpClient?: HttpClient;
  /** Clock in milliseconds, for latency; default `performance.now`. */
  clock?: () => number;
  log: (line: string) => void;
  /** Absolute deadline (epoch ms on `now`): no prompt is sent or awaited past it. */
  deadlineAt?: number;
  /** Wall clock for `deadlineAt`; default `Date.now`. */
  now?: () => number;
}

/**
 * Judges one answer: HTTP 200, a parsable non-empty answer without template tokens, within
 * `maxSeconds`. Pure.
 *
 * @returns `undefined` when it passes, else what was wrong (with what came back).
 */
export function judgeAnswer(status: number, body: string, seconds: number, maxSeconds: number, shape: SmokeShape): { answer?: string; problem?: string } {
  if (status !== 200) return { problem: `HTTP ${status}: ${JSON.stringify(snippet(body))}` };
  let answer: string;
  try {
    answer = answerText(shape, body);
  } catch (e) {
    return { problem: `an answer of another shape: ${(e as Error).message}` };
  }
  if (answer.trim() === "") return { problem: `an empty answer: ${JSON.stringify(snippet(body))}` };
  const token = TEMPLATE_TOKEN.exec(answer);
  if (token) return { answer, problem: `template token ${token[0]} in the answer: ${JSON.stringify(snippet(answer))}` };
  if (seconds > maxSeconds) return { answer, problem: `took ${seconds.toFixed(1)} s, more than serving.smoke.maxSeconds ${maxSeconds}` };
  return { answer };
}

/**
 * Sends each prompt once (no retry: a failure is what the smoke is for) and judges the answer
 * ({@link judgeAnswer}). The key never appears in a result or a log line.
 *
 * @throws DeadlineError when `deps.deadlineAt` passes before a prompt is sent or answered (the
 *   only error it throws).
 */
export async function smokeTest(o: SmokeOptions, deps: SmokeDeps): Promise<PromptResult[]> {
  const http = deps.httpClient ?? createDefaultHttpClient();
  const clock = deps.clock ?? (() => performance.now());
  const mask = (t: string) => maskSecrets(t, [o.key]);
  const target = o.deployment ? `deployment ${o.deployment}` : "the endpoint";
  const now = deps.now ?? Date.now;
  const left = () => (deps.deadlineAt === undefined ? Infinity : deps.deadlineAt - now());
  const results: PromptResult[] = [];
  for (const prompt of o.prompts) {
    const body = smokePayload(o.shape, prompt, o.maxNewTokens);
    if (left() <= 0) throw new DeadlineError(`the deadline passed before prompt ${JSON.stringify(snippet(prompt, 80))} could be sent to ${target}`, 0);
    // A little past the limit, so a slow answer is reported with its time rather than cut; never past the deadline.
    const limit = AbortSignal.timeout(Math.ceil(o.maxSeconds * 1000) + 5000);
    const signal = Number.isFinite(left()) ? AbortSignal.any([limit, AbortSignal.timeout(Math.max(1, Math.ceil(left())))]) : limit;
    const started = clock();
    let status = 0;
    let text = "";
    try {
      const res = await http.sendRequest(
        createPipelineRequest({
          url: o.scoringUri,
          method: "POST",
          headers: createHttpHeaders({
            authorization: `Bearer ${o.key}`,
            "content-type": "application/json",
            accept: "application/json",
            ...(o.deployment ? { [DEPLOYMENT_HEADER]: o.deployment } : {}),
          }),
          body: JSON.stringify(body),
          abortSignal: signal,
          // http only on a loopback host (serve:local); Azure's scoring URIs are https.
          allowInsecureConnection: isLoopbackHttp(o.scoringUri),
        }),
      );
      status = res.status;
      // Masked before anything is judged, cut or quoted: a key across the 300-character cut
      // would otherwise leave most of its characters (issue 18).
      text = mask(res.bodyAsText ?? "");
    } catch (e) {
      if (left() <= 0) throw new DeadlineError(`the deadline passed while prompt ${JSON.stringify(snippet(prompt, 80))} awaited its answer from ${target}`, 0);
      text = mask(`no answer: ${(e as Error)?.message ?? String(e)}`);
    }
    const seconds = (clock() - started) / 1000;
    const verdict = status === 0 ? { problem: text } : judgeAnswer(status, text, seconds, o.maxSeconds, o.shape);
    const result: PromptResult = {
      prompt,
      ok: verdict.problem === undefined,
      status,
      seconds,
      detail: mask(snippet(verdict.problem ?? verdict.answer ?? "")),
    };
    results.push(result);
    deps.log(`smoke ${target}: ${JSON.stringify(snippet(prompt, 80))} → ${result.ok ? `HTTP 200 in ${seconds.toFixed(1)} s: ${JSON.stringify(snippet(result.detail, 120))}` : `FAILED: ${result.detail}`}`);
  }
  return results;
}

/** The endpoint's scoring URI (GET) and primary key (POST listKeys), Azure ML REST 2025-12-01. */
export async function endpointAccess(client: ArmClient, ws: { subscriptionId: string; resourceGroup: string; workspace: string }, endpoint: string): Promise<{ scoringUri: string; key: string }> {
  const path = `${workspacePath(ws)}/onlineEndpoints/${encodeURIComponent(endpoint)}`;
  const ep = (await client.get(withApiVersion(path, AML_API_VERSION))).body as { properties?: { scoringUri?: unknown } };
  const scoringUri = ep?.properties?.scoringUri;
  if (typeof scoringUri !== "string" || !(/^https:\/\//.test(scoringUri) || isLoopbackHttp(scoringUri))) {
    throw new SmokeError(`endpoint ${endpoint} has no https scoring URI (got ${JSON.stringify(scoringUri ?? null)})`);
  }
  const keys = (await client.post(withApiVersion(`${path}/listKeys`, AML_API_VERSION))).body as { primaryKey?: unknown };
  if (typeof keys?.primaryKey !== "string" || keys.primaryKey === "") throw new SmokeError(`endpoint ${endpoint} returned no primary key (is its auth mode Key?)`);
  return { scoringUri, key: keys.primaryKey };
}

/** The smoke cannot run (no scoring URI, no key, no record to roll back to). */
export class SmokeError extends Error {
  /** @param message - what is missing. */
  constructor(message: string) {
    super(message);
    this.name = "SmokeError";
  }
}

function parsePrompts(raw: string | undefined): string[] {
  let v: unknown;
  try {
    v = JSON.parse(raw ?? "");
  } catch {
    throw new Error("SMOKE_PROMPTS is not valid JSON (a list of prompt strings)");
  }
  if (!Array.isArray(v) || v.length === 0 || v.some((p) => typeof p !== "string" || p.trim() === "")) {
    throw new Error("SMOKE_PROMPTS must be a non-empty JSON list of non-empty strings");
  }
  return v as string[];
}

/**
 * Reads the configuration from `env`, runs the smoke (and, in `endpoint` mode, the roll-back)
 * and returns the exit code. Never throws.
 */
export async function runSmokeTestFromEnv(mode: string | undefined, env: Env, deps: ScriptDeps): Promise<number> {
  const error = deps.error ?? deps.log;
  const m = mode ?? "deployment";
  let ws: { subscriptionId: string; resourceGroup: string; workspace: string };
  let endpoint: string;
  let prompts: string[];
  let maxSeconds: number;
  let maxNewTokens: number;
  let shape: SmokeShape;
  let deadlineMs: number;
  let deployment: string | undefined;
  try {
    if (m !== "deployment" && m !== "endpoint") throw new Error(`mode must be "deployment" or "endpoint" (got "${m}")`);
    const required = ["AZURE_SUBSCRIPTION_ID", "AZURE_RESOURCE_GROUP", "AZUREML_WORKSPACE", "AZUREML_ENDPOINT", "SMOKE_PROMPTS", ...(m === "deployment" ? ["SMOKE_DEPLOYMENT"] : [])];
    const missing = missingEnv(env, required);
    if (missing.length) throw new Error(`missing environment variable(s): ${missing.join(", ")}`);
    ws = { subscriptionId: env.AZURE_SUBSCRIPTION_ID!.trim(), resourceGroup: env.AZURE_RESOURCE_GROUP!.trim(), workspace: env.AZUREML_WORKSPACE!.trim() };
    endpoint = env.AZUREML_ENDPOINT!.trim();
    deployment = m === "deployment" ? env.SMOKE_DEPLOYMENT!.trim() : undefined;
    prompts = parsePrompts(env.SMOKE_PROMPTS);
    maxSeconds = positiveSecondsFromEnv(env, "SMOKE_MAX_SECONDS", 60);
    const tokens = Number(env.SMOKE_MAX_NEW_TOKENS ?? "32");
    if (!Number.isInteger(tokens) || tokens < 1) throw new Error(`SMOKE_MAX_NEW_TOKENS must be an integer >= 1 (got "${env.SMOKE_MAX_NEW_TOKENS}")`);
    maxNewTokens = tokens;
    const s = (env.SMOKE_PAYLOAD_SHAPE ?? "prompt-list").trim();
    if (s !== "prompt-list" && s !== "chat-list") throw new Error(`SMOKE_PAYLOAD_SHAPE must be prompt-list or chat-list (got "${s}")`);
    shape = s;
    deadlineMs = deadlineSecondsFromEnv(env, SMOKE_TEST_COMMAND.deadline) * 1000;
    armEndpointFromEnv(env);
  } catch (e) {
    error(`smoke-test: ${(e as Error).message}`);
    return EXIT_CONFIG;
  }
  const target = deployment ? `deployment ${deployment} of endpoint ${endpoint}` : `endpoint ${endpoint}`;
  const now = deps.now ?? Date.now;
  let key: string | undefined;
  const deadlineAt = now() + deadlineMs;
  // Every line this program prints, its ARM clients' retry lines and the roll-back's included,
  // is masked for the key once it is known (a server may echo it anywhere, in any form). Not in
  // the process-wide registry (lib/secrets.ts registerSecret): the ARM client masks registered
  // secrets in the answers it reads, so a second listKeys in the process would read "***".
  const hide = (line: string) => maskSecrets(line, [key]);
  const log = (line: string) => deps.log(hide(line));
  const say = (line: string) => error(hide(line));
  const masked: ScriptDeps = { ...deps, log, error: say };
  try {
    const client = armClientFromEnv(env, masked, "phi3-finetune/smoke-test", deadlineAt);
    const access = await endpointAccess(client, ws, endpoint);
    key = access.key;
    const results = await smokeTest({ ...access, deployment, prompts, maxSeconds, maxNewTokens, shape }, { httpClient: deps.httpClient, log, deadlineAt, now });
    const failed = results.filter((r) => !r.ok);
    if (failed.length === 0) {
      log(`smoke-test of ${target}: ${results.length} prompt(s) passed`);
      return EXIT_OK;
    }
    for (const r of failed) say(`smoke-test of ${target} failed: prompt ${JSON.stringify(snippet(r.prompt, 200))} → ${r.detail}`);
    if (m === "deployment") {
      say(`smoke-test: ${deployment} gets no traffic: the traffic step does not run and the current split stays (README, "Safe rollout")`);
      return EXIT_FAILED;
    }
    return await rollBack(env, masked, ws, endpoint, deadlineAt);
  } catch (e) {
    const msg = maskSecrets((e as Error)?.message ?? String(e), [key]);
    if (e instanceof CredentialConfigError) {
      say(`smoke-test of ${target}: ${msg}`);
      return EXIT_CONFIG;
    }
    if (e instanceof DeadlineError) {
      say(`smoke-test of ${target}: ${msg} (deadline ${deadlineMs / 1000} s, SMOKE_DEADLINE_SECONDS)${m === "endpoint" ? "; nothing was rolled back: check the endpoint's split" : ""}`);
      return EXIT_DEADLINE;
    }
    if (e instanceof ArmError) {
      say(`smoke-test of ${target}: could not read the endpoint: ${msg}`);
      return EXIT_ARM;
    }
    say(`smoke-test of ${target} failed: ${msg}`);
    return EXIT_FAILED;
  }
}

/**
 * Puts back the split recorded by the traffic step (`TRAFFIC_LOG`) with set-traffic's
 * `applyTraffic` (which gives traffic only to Succeeded deployments), then returns 1: the
 * rollout failed either way. Without a record, or with `ROLLBACK=false`, says what to do.
 */
async function rollBack(env: Env, deps: ScriptDeps, ws: { subscriptionId: string; resourceGroup: string; workspace: string }, endpoint: string, deadlineAt: number): Promise<number> {
  const error = deps.error ?? deps.log;
  if ((env.ROLLBACK ?? "true").trim().toLowerCase() === "false") {
    error(`smoke-test: serving.smoke.rollback is false: the new split stays on endpoint ${endpoint}; fix or roll back by hand`);
    return EXIT_FAILED;
  }
  const record: RecordedSplit | undefined = parseTrafficRecord(env.TRAFFIC_LOG ?? "");
  if (!record || record.endpoint !== endpoint) {
    error(`smoke-test: no record of the split before the traffic step for endpoint ${endpoint} (TRAFFIC_LOG); nothing was rolled back: set the split by hand`);
    return EXIT_FAILED;
  }
  deps.log(`smoke-test: rolling back endpoint ${endpoint} to the split before the traffic step: ${formatMap(record.traffic)} (mirror ${formatMap(record.mirrorTraffic)})`);
  try {
    // Within the program's one deadline (SMOKE_DEADLINE_SECONDS), which the process keeps.
    const left = deadlineAt - (deps.now ?? Date.now)();
    if (left <= 0) throw new DeadlineError("the deadline passed before the roll-back could start", 0);
    const deadlineMs = Math.min(deadlineSecondsFromEnv(env, SET_TRAFFIC_COMMAND.deadline) * 1000, left);
    const pollIntervalMs = positiveSecondsFromEnv(env, "TRAFFIC_POLL_SECONDS", 15) * 1000;
    const client = armClientFromEnv(env, deps, "phi3-finetune/smoke-test-rollback", (deps.now ?? Date.now)() + deadlineMs);
    await applyTraffic(
      { ...ws, endpoint, traffic: record.traffic, mirrorTraffic: record.mirrorTraffic, deadlineMs, pollIntervalMs },
      { client, log: deps.log, now: deps.now, sleep: deps.sleep },
    );
    error(`smoke-test: endpoint ${endpoint} is back on ${formatMap(record.traffic)}; the rollout failed (README, "Safe rollout")`);
    return EXIT_FAILED;
  } catch (e) {
    const why = e instanceof TrafficConfigError || e instanceof TrafficError || e instanceof LongRunningOperationError || e instanceof ArmError || e instanceof DeadlineError ? e.message : String(e);
    error(`smoke-test: ROLL-BACK FAILED on endpoint ${endpoint} (${why}); set the split ${formatMap(record.traffic)} by hand`);
    return e instanceof DeadlineError ? EXIT_DEADLINE : e instanceof ArmError ? EXIT_ARM : EXIT_FAILED;
  }
}

/** The command line of smoke-test: the mode, the rest from the environment (lib/cli.ts style). */
export const SMOKE_TEST_COMMAND: JobSpec = {
  name: "smoke-test",
  usage: "npx tsx jobs/smoke-test.ts",
  summary:
    "Sends serving.smoke.prompts to one deployment (deployment) or through the endpoint (endpoint, rolling\n" +
    "the traffic back on failure). Run by `pulumi up` (infra/serving.ts); configured by environment variables.",
  options: {},
  positionals: { value: "deployment|endpoint", max: 1, description: "smoke one deployment before traffic (default), or the endpoint after the traffic step" },
  details:
    "Environment: AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP, AZUREML_WORKSPACE, AZUREML_ENDPOINT, SMOKE_PROMPTS (required);\n" +
    "SMOKE_DEPLOYMENT (deployment mode), SMOKE_MAX_SECONDS (60), SMOKE_MAX_NEW_TOKENS (32), SMOKE_PAYLOAD_SHAPE,\n" +
    `SMOKE_DEADLINE_SECONDS (${SMOKE_DEADLINE_SECONDS}, roll-back included); endpoint mode: TRAFFIC_LOG, ROLLBACK (true), TRAFFIC_DEADLINE_SECONDS, TRAFFIC_POLL_SECONDS.`,
  deadline: { variable: "SMOKE_DEADLINE_SECONDS", defaultSeconds: SMOKE_DEADLINE_SECONDS },
};

/** Entry point: mode from the command line, configuration from `process.env`; resolves to the exit code. */
export const main = jobMain(SMOKE_TEST_COMMAND, (positionals, env, out) => runSmokeTestFromEnv(positionals[0], env, out));

if (require.main === module) runJobAsMain(SMOKE_TEST_COMMAND, main);
