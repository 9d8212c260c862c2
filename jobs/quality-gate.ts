/**
 * The quality gate between the fine-tune job and the model version. `@pulumi/command` runs it
 * after the job completed (infra/training.ts); the model version depends on it, so a refusal
 * registers nothing and changes no deployment or traffic:
 *
 *   npx tsx jobs/quality-gate.ts
 *
 * It reads the job's MLflow run (the run id is the job name on Azure ML) through the MLflow REST
 * API (`/api/2.0/mlflow/runs/get`, lib/mlflow.ts) and checks its `eval_loss` against
 * `training.gate`: `maxEvalLoss` (absolute) and `maxRegressionPercent` against the model serving
 * now (the deployments with live traffic on the endpoint → their model versions → the versions'
 * `jobName` → those runs' `eval_loss`; the best of them is the baseline). A gate that cannot read
 * a metric it needs fails closed, with the reason.
 *
 * Environment: AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP, AZUREML_WORKSPACE, AZUREML_JOB_NAME,
 * MLFLOW_TRACKING_URI (required; https, or http on 127.0.0.1 for a local `mlflow server`);
 * GATE_MAX_EVAL_LOSS, GATE_MAX_REGRESSION_PERCENT (rules; unset = not checked), AZUREML_ENDPOINT
 * (where the serving model is looked up; needed by the regression rule), GATE_DEADLINE_SECONDS
 * (default {@link GATE_DEADLINE_SECONDS}: one deadline for all it does, every ARM and tracking
 * request and token request included; the process ends at it whatever is pending, lib/cli.ts
 * `runAsMain`), ARM_ENDPOINT. Credentials: lib/credential.ts (the azure-native provider's).
 *
 * Exit codes (lib/cli.ts): 0 passed; 1 refused (a rule failed, or a metric it needs is missing);
 * 2 bad configuration; 3 deadline passed; 4 Azure, tracking server or credential error.
 *
 * Follows Azure ML REST API 2025-12-01 (onlineEndpoints, deployments, model versions).
 */
import {
  AML_API_VERSION,
  ArmError,
  DeadlineError,
  EXIT_ARM,
  EXIT_CONFIG,
  EXIT_DEADLINE,
  EXIT_FAILED,
  EXIT_OK,
  armClientFromEnv,
  deadlineSecondsFromEnv,
  armEndpointFromEnv,
  defaultCredential,
  isArmNotFound,
  missingEnv,
  withApiVersion,
  workspacePath,
  type ArmClient,
  type Env,
  type ScriptDeps,
} from "../lib/arm";
import { jobMain, runJobAsMain, type JobSpec } from "../lib/cli";
import { CredentialConfigError } from "../lib/credential";
import { checkTrackingUri, createTrackingClient, runMetric } from "../lib/mlflow";

/** Default of GATE_DEADLINE_SECONDS: a few reads (with retries and tokens) fit easily in 10 minutes. */
export const GATE_DEADLINE_SECONDS = 600;

/** The metric the gate reads (fine_tune.py logs it at every evaluation; the last value counts). */
export const GATE_METRIC = "eval_loss";

/** The rules of `training.gate` (undefined = not checked). */
export interface GateRules {
  maxEvalLoss?: number;
  maxRegressionPercent?: number;
}

/** The model serving now, as the regression rule compares with it. */
export interface Baseline {
  /** `eval_loss` of its run. */
  value: number;
  /** e.g. `model phi3-finetuned:123 (job phi3ft-ft-…, deployment blue-1a2b3c4d at 100%)`. */
  what: string;
}

/** The verdict of {@link evaluateGate}. */
export interface GateVerdict {
  passed: boolean;
  /** One line per rule: what was checked and how it went. */
  lines: string[];
  /** The lines of the rules that failed (empty when passed). */
  refusals: string[];
}

const fmt = (n: number) => (Number.isInteger(n) ? String(n) : n.toPrecision(6).replace(/\.?0+$/, ""));

/**
 * Applies the rules to a run's `eval_loss`. Pure.
 *
 * @param value - the candidate run's `eval_loss`.
 * @param rules - `maxEvalLoss`, `maxRegressionPercent` (percent).
 * @param baseline - the serving model's `eval_loss`, or undefined when nothing serves yet.
 */
export function evaluateGate(value: number, rules: GateRules, baseline: Baseline | undefined): GateVerdict {
  const lines: string[] = [];
  const refusals: string[] = [];
  if (rules.maxEvalLoss !== undefined) {
    const ok = value <= rules.maxEvalLoss;
    const line = `${GATE_METRIC} ${fmt(value)} ${ok ? "<=" : ">"} training.gate.maxEvalLoss ${fmt(rules.maxEvalLoss)}: ${ok ? "passed" : "REFUSED"}`;
    lines.push(line);
    if (!ok) refusals.push(line);
  }
  if (rules.maxRegressionPercent !== undefined) {
    if (!baseline) {
      lines.push(`training.gate.maxRegressionPercent ${fmt(rules.maxRegressionPercent)}: no model serves on the endpoint yet, nothing to compare with`);
    } else {
      // Rounded to 1e-6 %: 1.1 against 1.0 is 10 %, not the 10.000000000000009 of binary floating point.
      const raw = baseline.value === 0 ? (value > 0 ? Infinity : 0) : ((value - baseline.value) / Math.abs(baseline.value)) * 100;
      const percent = Number.isFinite(raw) ? Math.round(raw * 1e6) / 1e6 : raw;
      const ok = percent <= rules.maxRegressionPercent;
      const change = percent >= 0 ? `${fmt(Number(percent.toFixed(3)))}% worse than` : `${fmt(Number((-percent).toFixed(3)))}% better than`;
      const line =
        `${GATE_METRIC} ${fmt(value)} is ${change} ${fmt(baseline.value)} of the serving ${baseline.what}; ` +
        `training.gate.maxRegressionPercent ${fmt(rules.maxRegressionPercent)}: ${ok ? "passed" : "REFUSED"}`;
      lines.push(line);
      if (!ok) refusals.push(line);
    }
  }
  if (lines.length === 0) lines.push(`no rule set in training.gate: ${GATE_METRIC} ${fmt(value)} recorded, nothing checked`);
  return { passed: refusals.length === 0, lines, refusals };
}

/** A metric the gate needs cannot be read: the gate fails closed (exit 1). */
export class GateError extends Error {
  /** @param message - what could not be read, and why. */
  constructor(message: string) {
    super(message);
    this.name = "GateError";
  }
}

/** Coordinates and rules of {@link runGate}. */
export interface GateOptions {
  subscriptionId: string;
  resourceGroup: string;
  workspace: string;
  jobName: string;
  endpoint?: string;
  rules: GateRules;
}

/** Clients of {@link runGate}: ARM (endpoint, deployments, model versions) and the tracking server. */
export interface GateDeps {
  arm: ArmClient;
  tracking: ArmClient;
  log: (line: string) => void;
}

/** The percent of live traffic by deployment (>0 only) of an endpoint GET answer. */
function liveTraffic(endpoint: unknown): [string, number][] {
  const t = (endpoint as { properties?: { traffic?: Record<string, unknown> } } | undefined)?.properties?.traffic ?? {};
  return Object.entries(t)
    .filter((e): e is [string, number] => typeof e[1] === "number" && e[1] > 0)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

async function metricOf(deps: GateDeps, runId: string, whose: string): Promise<number> {
  let found;
  try {
    found = await runMetric(deps.tracking, runId, GATE_METRIC);
  } catch (e) {
    if (e instanceof ArmError && e.status === 404) throw new GateError(`${whose}: the tracking server has no run ${runId} (${e.code}); ${GATE_METRIC} cannot be read`);
    throw e;
  }
  if (!found) throw new GateError(`${whose}: run ${runId} has no metric ${GATE_METRIC} (nor any child run of it); the gate cannot judge it`);
  return found.value;
}

/**
 * The serving model's `eval_loss`: the endpoint's deployments with live traffic → each
 * deployment's `properties.model` (a model version ARM id) → the version's `properties.jobName`
 * → that run's `eval_loss`; the lowest one (the best model serving). Undefined when the
 * endpoint does not exist or sends no live traffic. A serving model whose job or metric cannot
 * be found is a {@link GateError} (fail closed).
 */
export async function serviceBaseline(o: GateOptions, deps: GateDeps): Promise<Baseline | undefined> {
  if (!o.endpoint) return undefined;
  const endpointPath = `${workspacePath(o)}/onlineEndpoints/${encodeURIComponent(o.endpoint)}`;
  let endpoint: unknown;
  try {
    endpoint = (await deps.arm.get(withApiVersion(endpointPath, AML_API_VERSION))).body;
  } catch (e) {
    if (isArmNotFound(e)) return undefined;
    throw e;
  }
  let best: Baseline | undefined;
  for (const [deployment, percent] of liveTraffic(endpoint)) {
    const d = (await deps.arm.get(withApiVersion(`${endpointPath}/deployments/${encodeURIComponent(deployment)}`, AML_API_VERSION))).body as { properties?: { model?: unknown } };
    const modelId = d?.properties?.model;
    if (typeof modelId !== "string" || !/\/models\/[^/]+\/versions\/[^/]+$/i.test(modelId)) {
      throw new GateError(`deployment ${deployment} (${percent}% of live traffic) serves ${JSON.stringify(modelId ?? null)}, not a model version of a workspace; its ${GATE_METRIC} is unknown`);
    }
    const [, name, version] = /\/models\/([^/]+)\/versions\/([^/]+)$/i.exec(modelId)!;
    const model = (await deps.arm.get(withApiVersion(modelId, AML_API_VERSION))).body as { properties?: { jobName?: unknown } };
    const job = model?.properties?.jobName;
    if (typeof job !== "string" || job === "") {
      throw new GateError(`model ${name}:${version} serving on deployment ${deployment} names no job (properties.jobName), so its ${GATE_METRIC} is unknown`);
    }
    if (job === o.jobName) continue; // the candidate itself serves already (the gate runs again)
    const value = await metricOf(deps, job, `the serving model ${name}:${version}`);
    if (!best || value < best.value) best = { value, what: `model ${name}:${version} (job ${job}, deployment ${deployment} at ${percent}%)` };
  }
  return best;
}

/**
 * Reads the candidate run and the serving model's run, applies the rules and logs one line per
 * rule. Returns the verdict.
 *
 * @throws GateError (a metric is missing: fail closed), ArmError, DeadlineError.
 */
export async function runGate(o: GateOptions, deps: GateDeps): Promise<GateVerdict> {
  deps.log(`quality gate of job ${o.jobName}: reading ${GATE_METRIC} from the tracking server ${deps.tracking.baseUrl}`);
  const value = await metricOf(deps, o.jobName, `job ${o.jobName}`);
  const baseline = o.rules.maxRegressionPercent !== undefined ? await serviceBaseline(o, deps) : undefined;
  const verdict = evaluateGate(value, o.rules, baseline);
  for (const line of verdict.lines) deps.log(`  ${line}`);
  return verdict;
}

function optionalNumber(env: Env, name: string, min: number): number | undefined {
  const raw = env[name];
  if (raw === undefined || raw.trim() === "") return undefined;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < min) throw new Error(`${name} must be a number >= ${min} (got "${raw}")`);
  return n;
}

/**
 * Reads the configuration from `env`, runs the gate and returns the exit code. Never throws.
 *
 * @returns 0 passed, 1 refused or a metric missing, 2 configuration, 3 deadline, 4 Azure /
 *   tracking server / credential error.
 */
export async function runQualityGateFromEnv(env: Env, deps: ScriptDeps): Promise<number> {
  const error = deps.error ?? deps.log;
  let o: GateOptions;
  let trackingUri: string;
  let deadlineMs: number;
  try {
    const missing = missingEnv(env, ["AZURE_SUBSCRIPTION_ID", "AZURE_RESOURCE_GROUP", "AZUREML_WORKSPACE", "AZUREML_JOB_NAME", "MLFLOW_TRACKING_URI"]);
    if (missing.length) throw new Error(`missing environment variable(s): ${missing.join(", ")}`);
    trackingUri = checkTrackingUri(env.MLFLOW_TRACKING_URI!.trim());
    deadlineMs = deadlineSecondsFromEnv(env, QUALITY_GATE_COMMAND.deadline) * 1000;
    armEndpointFromEnv(env);
    o = {
      subscriptionId: env.AZURE_SUBSCRIPTION_ID!.trim(),
      resourceGroup: env.AZURE_RESOURCE_GROUP!.trim(),
      workspace: env.AZUREML_WORKSPACE!.trim(),
      jobName: env.AZUREML_JOB_NAME!.trim(),
      endpoint: env.AZUREML_ENDPOINT?.trim() || undefined,
      rules: { maxEvalLoss: optionalNumber(env, "GATE_MAX_EVAL_LOSS", Number.MIN_VALUE), maxRegressionPercent: optionalNumber(env, "GATE_MAX_REGRESSION_PERCENT", 0) },
    };
    if (o.rules.maxRegressionPercent !== undefined && !o.endpoint) throw new Error("GATE_MAX_REGRESSION_PERCENT needs AZUREML_ENDPOINT (where the serving model is looked up)");
  } catch (e) {
    error(`quality-gate: ${(e as Error).message}`);
    return EXIT_CONFIG;
  }
  const what = `quality-gate of job ${o.jobName}`;
  try {
    const now = deps.now ?? Date.now;
    const deadlineAt = now() + deadlineMs;
    const arm = armClientFromEnv(env, deps, "phi3-finetune/quality-gate", deadlineAt);
    const tracking = createTrackingClient({
      uri: trackingUri,
      credential: deps.credential ?? defaultCredential(env),
      httpClient: deps.httpClient,
      now,
      deadlineAt,
      maxRetries: deps.maxRetries,
      backoffBaseMs: deps.backoffBaseMs,
      onRetry: (line) => error(line),
    });
    const verdict = await runGate(o, { arm, tracking, log: deps.log });
    if (verdict.passed) {
      deps.log(`${what}: passed; the model version is registered next`);
      return EXIT_OK;
    }
    for (const r of verdict.refusals) error(`${what}: refused: ${r}`);
    error(`${what}: nothing is registered and no deployment or traffic changes (README, "Safe rollout")`);
    return EXIT_FAILED;
  } catch (e) {
    if (e instanceof GateError) {
      error(`${what}: refused (fails closed): ${e.message}`);
      return EXIT_FAILED;
    }
    if (e instanceof CredentialConfigError) {
      error(`${what}: ${e.message}`);
      return EXIT_CONFIG;
    }
    if (e instanceof DeadlineError) {
      error(`${what}: ${e.message}; refused (fails closed)`);
      return EXIT_DEADLINE;
    }
    if (e instanceof ArmError) {
      error(`${what}: could not read the metrics, refused (fails closed): ${e.message}`);
      return EXIT_ARM;
    }
    error(`${what}: unexpected error, refused (fails closed): ${(e as Error)?.message ?? String(e)}`);
    return EXIT_FAILED;
  }
}

/** The command line of quality-gate: configured by its environment (lib/cli.ts style). */
export const QUALITY_GATE_COMMAND: JobSpec = {
  name: "quality-gate",
  usage: "npx tsx jobs/quality-gate.ts",
  summary: "Checks the fine-tune job's MLflow run (eval_loss) against training.gate before the model is registered.\nRun by `pulumi up` (infra/training.ts); configured by environment variables.",
  options: {},
  details:
    "Environment: AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP, AZUREML_WORKSPACE, AZUREML_JOB_NAME, MLFLOW_TRACKING_URI (required);\n" +
    `GATE_MAX_EVAL_LOSS, GATE_MAX_REGRESSION_PERCENT, AZUREML_ENDPOINT, GATE_DEADLINE_SECONDS (default ${GATE_DEADLINE_SECONDS}), ARM_ENDPOINT (https).`,
  deadline: { variable: "GATE_DEADLINE_SECONDS", defaultSeconds: GATE_DEADLINE_SECONDS },
};

/** Entry point: reads `process.argv` (only --help) and `process.env`; resolves to the exit code. */
export const main = jobMain(QUALITY_GATE_COMMAND, (_, env, out) => runQualityGateFromEnv(env, out));

if (require.main === module) runJobAsMain(QUALITY_GATE_COMMAND, main);
