/**
 * Waits for an Azure ML command job to finish. `@pulumi/command` runs it after the Job resource
 * has been submitted (creating the Job resource only submits it):
 *
 *   npx tsx jobs/wait-for-job.ts
 *
 * Environment: AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP, AZUREML_WORKSPACE, AZUREML_JOB_NAME
 * (required); WAIT_DEADLINE_SECONDS (default 86400), WAIT_POLL_SECONDS (default 30),
 * ARM_ENDPOINT (default https://management.azure.com). Credentials: DefaultAzureCredential.
 *
 * Exit codes: 0 Completed; 1 the job ended Failed / Canceled / NotResponding; 2 bad or missing
 * configuration; 3 deadline passed (the job may still be running); 4 ARM or credential error
 * (e.g. 401/403, job not found).
 *
 * Follows Azure ML REST API 2025-12-01: `GET {workspace}/jobs/{name}` → `properties.status`.
 */
import {
  AML_API_VERSION,
  ArmError,
  DeadlineError,
  isArmNotFound,
  EXIT_ARM,
  EXIT_CONFIG,
  EXIT_DEADLINE,
  EXIT_FAILED,
  EXIT_OK,
  armClientFromEnv,
  deadlineSecondsFromEnv,
  armEndpointFromEnv,
  missingEnv,
  positiveSecondsFromEnv,
  realSleep,
  withApiVersion,
  workspacePath,
  type ArmClient,
  type Env,
  type ScriptDeps,
} from "../lib/arm";
import { jobMain, runJobAsMain, type JobSpec } from "../lib/cli";

export { EXIT_OK, EXIT_CONFIG, EXIT_DEADLINE, EXIT_ARM } from "../lib/arm";
/** Exit code: the job ended Failed, Canceled or NotResponding. */
export const EXIT_JOB_FAILED = EXIT_FAILED;

/** Job statuses after which the job never changes again (Azure ML JobStatus). */
export const TERMINAL_STATUSES = ["Completed", "Failed", "Canceled", "NotResponding"] as const;

/** Job coordinates and timing of {@link waitForJob}. */
export interface WaitForJobOptions {
  subscriptionId: string;
  resourceGroup: string;
  workspace: string;
  /** Job name (the `id` input of the azure-native Job resource). */
  jobName: string;
  /** Milliseconds between polls. */
  pollIntervalMs: number;
  /** Milliseconds after the start at which to give up. */
  deadlineMs: number;
  /** Milliseconds during which a 404 on the job is tolerated (ARM replication lag); default 300000. */
  notFoundGraceMs?: number;
  /**
   * Milliseconds after which an unchanged status is printed again with the elapsed time and the
   * Studio URL, so a log of a training run of hours shows progress; default 600000 (10 min).
   */
  heartbeatMs?: number;
}

/** Side effects of {@link waitForJob}, injectable for tests. */
export interface WaitForJobDeps {
  /** ARM client (it retries 429/5xx itself). */
  client: ArmClient;
  /** Receives each output line. */
  log: (line: string) => void;
  /** Clock in epoch milliseconds; default `Date.now`. */
  now?: () => number;
  /** Sleep in milliseconds; default a real timer. */
  sleep?: (ms: number) => Promise<void>;
}

/** How the wait ended. */
export type WaitOutcome = "Completed" | "Failed" | "Canceled" | "NotResponding" | "DeadlineExceeded";

/** Result of {@link waitForJob}. */
export interface WaitForJobResult {
  outcome: WaitOutcome;
  /** Last status read from Azure (`""` if none was read). */
  status: string;
  /** Process exit code matching the outcome (see EXIT_*). */
  exitCode: number;
  /** Milliseconds from the start of the wait to the end. */
  elapsedMs: number;
  /** Azure ML Studio URL of the job. */
  studioUrl: string;
  /** The job's own error text when it did not complete and Azure returned one. */
  errorMessage?: string;
}

/**
 * Formats a duration as `HH:MM:SS` (hours may exceed 24).
 *
 * @param ms - duration in milliseconds (negative values count as 0).
 */
export function formatElapsed(ms: number): string {
  const total = Math.max(0, Math.floor(ms / 1000));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${pad(h)}:${pad(m)}:${pad(s)}`;
}

/**
 * Returns the Studio URL of a job: `properties.services.Studio.endpoint` when the job resource
 * has it, else `https://ml.azure.com/runs/<name>?wsid=/subscriptions/<sub>/resourcegroups/<rg>/workspaces/<ws>`.
 *
 * @param job - the job resource as returned by ARM (any shape; may be undefined).
 * @param coords - subscription, resource group, workspace and job name.
 */
export function studioUrl(
  job: unknown,
  coords: { subscriptionId: string; resourceGroup: string; workspace: string; jobName: string },
): string {
  const endpoint = (job as { properties?: { services?: { Studio?: { endpoint?: unknown } } } } | undefined)
    ?.properties?.services?.Studio?.endpoint;
  if (typeof endpoint === "string" && /^https:\/\//.test(endpoint)) return endpoint;
  return (
    `https://ml.azure.com/runs/${encodeURIComponent(coords.jobName)}` +
    `?wsid=/subscriptions/${encodeURIComponent(coords.subscriptionId)}` +
    `/resourcegroups/${encodeURIComponent(coords.resourceGroup)}` +
    `/workspaces/${encodeURIComponent(coords.workspace)}`
  );
}

function errorText(value: unknown, depth = 0): string | undefined {
  if (depth > 3 || value === null || value === undefined) return undefined;
  if (typeof value === "string") return value.trim() === "" ? undefined : value.trim();
  if (typeof value !== "object") return undefined;
  const v = value as Record<string, unknown>;
  if (v.error !== undefined && v.error !== value) {
    const inner = errorText(v.error, depth + 1);
    if (inner) return inner;
  }
  const message = typeof v.message === "string" && v.message.trim() !== "" ? v.message.trim() : undefined;
  const code = typeof v.code === "string" && v.code.trim() !== "" ? v.code.trim() : undefined;
  let detail: string | undefined;
  if (Array.isArray(v.details)) {
    detail = v.details.map((d) => errorText(d, depth + 1)).filter((d): d is string => !!d).join("; ") || undefined;
  }
  if (!message && !code && !detail) return undefined;
  let out = [code, message].filter(Boolean).join(": ");
  if (detail && detail !== message) out = out ? `${out} (${detail})` : detail;
  return out;
}

/**
 * Extracts the job's own error message from an ARM job resource, trying (in order)
 * `properties.error` (string or `{code, message, details}`), `properties.errorMessage`,
 * `properties.statusMessage`, `properties.failureReason`, then string entries of the job's
 * `properties.properties` map whose key mentions "error". The 2025-12-01 JobBase schema has no
 * documented error field, so `undefined` is a normal answer.
 *
 * @param job - job resource body (any shape).
 * @returns the message, at most 4000 characters, or `undefined`.
 */
export function jobErrorMessage(job: unknown): string | undefined {
  const p = (job as { properties?: Record<string, unknown> } | undefined)?.properties;
  if (!p || typeof p !== "object") return undefined;
  const candidates: unknown[] = [p.error, p.errorMessage, p.statusMessage, p.failureReason];
  const bag = p.properties;
  if (bag && typeof bag === "object") {
    for (const [k, v] of Object.entries(bag as Record<string, unknown>)) {
      if (/error/i.test(k) && typeof v === "string") candidates.push(v);
    }
  }
  for (const c of candidates) {
    const t = errorText(c);
    if (t) return t.length > 4000 ? `${t.slice(0, 4000)}…` : t;
  }
  return undefined;
}

function isTransient(err: unknown): boolean {
  return err instanceof ArmError && (err.status === 0 && err.code === "NetworkError" || err.status === 429 || err.status >= 500);
}

/**
 * Polls an Azure ML job until it reaches a terminal status or the deadline passes.
 *
 * Prints (via `deps.log`) the Studio URL once, each status change once as `[HH:MM:SS] Status`
 * (elapsed since the start), an unchanged status again every `heartbeatMs` with the Studio URL
 * (`[01:10:00] still Running: https://ml.azure.com/...`, what a CI log of hours shows), and a
 * final line. Retryable ARM failures that outlast the client's
 * own retries are logged and polling continues until the deadline. A 404 is tolerated during
 * `notFoundGraceMs`.
 *
 * @param options - job coordinates, `pollIntervalMs` and `deadlineMs` (milliseconds).
 * @param deps - ARM client, `log`, and optional `now` / `sleep` (milliseconds).
 * @returns the outcome with an exit code (0 Completed, 1 Failed/Canceled/NotResponding,
 *   3 deadline).
 * @throws ArmError for non-retryable ARM errors (401, 403, 404 after the grace period, ...)
 *   and credential failures; the message never contains the token.
 */
export async function waitForJob(options: WaitForJobOptions, deps: WaitForJobDeps): Promise<WaitForJobResult> {
  const now = deps.now ?? Date.now;
  const sleep = deps.sleep ?? realSleep;
  const log = deps.log;
  const start = now();
  const deadlineAt = start + options.deadlineMs;
  const notFoundGraceMs = options.notFoundGraceMs ?? 300_000;
  const path = withApiVersion(`${workspacePath(options)}/jobs/${encodeURIComponent(options.jobName)}`, AML_API_VERSION);
  const stamp = () => `[${formatElapsed(now() - start)}]`;

  let url = studioUrl(undefined, options);
  let urlPrinted = false;
  let lastStatus = "";
  let notFoundLogged = false;
  const heartbeatMs = options.heartbeatMs ?? 600_000;
  let lastLineAt = start;
  let transientLogged = false;

  log(
    `Waiting for Azure ML job ${options.jobName} in workspace ${options.workspace} ` +
      `(deadline ${formatElapsed(options.deadlineMs)}, poll every ${Math.round(options.pollIntervalMs / 1000)} s)`,
  );

  const gaveUp = () => {
    const elapsedMs = now() - start;
    log(
      `Gave up waiting for Azure ML job ${options.jobName} after ${formatElapsed(elapsedMs)} ` +
        `(deadline ${Math.round(options.deadlineMs / 1000)} s); last status ${lastStatus || "unknown"}. ` +
        `The job itself was not canceled; see ${url}`,
    );
    return { outcome: "DeadlineExceeded" as const, status: lastStatus, exitCode: EXIT_DEADLINE, elapsedMs, studioUrl: url };
  };

  for (;;) {
    let job: unknown = undefined;
    try {
      const res = await deps.client.get(path);
      job = res.body;
      transientLogged = false;
    } catch (err) {
      // The client runs every request under the same deadline: a server that never answers ends here.
      if (err instanceof DeadlineError) return gaveUp();
      if (isArmNotFound(err) && now() - start < notFoundGraceMs) {
        if (!notFoundLogged) {
          log(`${stamp()} job ${options.jobName} not found yet (HTTP 404); retrying`);
          notFoundLogged = true;
        }
      } else if (isTransient(err)) {
        if (!transientLogged) {
          log(`${stamp()} Azure did not answer (${(err as ArmError).status || (err as ArmError).code}); still waiting`);
          transientLogged = true;
        }
      } else {
        throw err;
      }
    }

    if (job !== undefined) {
      url = studioUrl(job, options);
      if (!urlPrinted) {
        log(`Studio: ${url}`);
        urlPrinted = true;
      }
      const raw = (job as { properties?: { status?: unknown } }).properties?.status;
      const status = typeof raw === "string" && raw !== "" ? raw : "Unknown";
      if (status !== lastStatus) {
        log(`${stamp()} ${status}`);
        lastStatus = status;
        lastLineAt = now();
      } else if (now() - lastLineAt >= heartbeatMs) {
        log(`${stamp()} still ${status}: ${url}`);
        lastLineAt = now();
      }
      if ((TERMINAL_STATUSES as readonly string[]).includes(status)) {
        const elapsedMs = now() - start;
        if (status === "Completed") {
          log(`Job ${options.jobName} Completed after ${formatElapsed(elapsedMs)}.`);
          return { outcome: "Completed", status, exitCode: EXIT_OK, elapsedMs, studioUrl: url };
        }
        const errorMessage = jobErrorMessage(job);
        log(`Job ${options.jobName} ended ${status} after ${formatElapsed(elapsedMs)}.`);
        if (errorMessage) {
          log(`Job error: ${errorMessage}`);
        } else {
          log(
            `Azure returned no error text for the job; see the Studio URL above (Outputs + logs) or run ` +
              `\`az ml job stream -n ${options.jobName} -g ${options.resourceGroup} -w ${options.workspace}\`.`,
          );
        }
        log(`Studio: ${url}`);
        return { outcome: status as WaitOutcome, status, exitCode: EXIT_JOB_FAILED, elapsedMs, studioUrl: url, errorMessage };
      }
    }

    const remaining = deadlineAt - now();
    if (remaining <= 0) return gaveUp();
    await sleep(Math.min(options.pollIntervalMs, remaining));
  }
}

/** Dependencies of {@link runWaitForJobFromEnv}; everything optional except `log`. */
export type RunFromEnvDeps = ScriptDeps;

/** The job and timing a program's environment names (see {@link parseWaitEnv}). */
export interface WaitEnv {
  subscriptionId: string;
  resourceGroup: string;
  workspace: string;
  jobName: string;
  /** Milliseconds from the start to give up. */
  deadlineMs: number;
  /** Milliseconds between polls. */
  pollIntervalMs: number;
}

/**
 * Reads the job coordinates and timing of wait-for-job and submit-job from the environment.
 *
 * @returns the settings, or a one-line message naming the variable that is missing or wrong.
 */
export function parseWaitEnv(env: Env): WaitEnv | string {
  const missing = missingEnv(env, ["AZURE_SUBSCRIPTION_ID", "AZURE_RESOURCE_GROUP", "AZUREML_WORKSPACE", "AZUREML_JOB_NAME"]);
  if (missing.length > 0) return `missing environment variable(s): ${missing.join(", ")}`;
  try {
    const deadlineSeconds = deadlineSecondsFromEnv(env, WAIT_FOR_JOB_COMMAND.deadline);
    const pollSeconds = positiveSecondsFromEnv(env, "WAIT_POLL_SECONDS", 30);
    armEndpointFromEnv(env);
    return {
      subscriptionId: env.AZURE_SUBSCRIPTION_ID!.trim(),
      resourceGroup: env.AZURE_RESOURCE_GROUP!.trim(),
      workspace: env.AZUREML_WORKSPACE!.trim(),
      jobName: env.AZUREML_JOB_NAME!.trim(),
      deadlineMs: deadlineSeconds * 1000,
      pollIntervalMs: pollSeconds * 1000,
    };
  } catch (err) {
    return (err as Error).message;
  }
}

/**
 * Waits for the job with an existing client and returns the exit code; ARM and credential
 * errors are 4, never a throw.
 */
export async function waitWithClient(client: ArmClient, wait: WaitEnv, deps: RunFromEnvDeps, name = "wait-for-job"): Promise<number> {
  const error = deps.error ?? deps.log;
  try {
    const result = await waitForJob(wait, { client, log: deps.log, now: deps.now, sleep: deps.sleep });
    return result.exitCode;
  } catch (err) {
    if (err instanceof ArmError) {
      error(`${name}: could not read Azure ML job ${wait.jobName}: ${err.message}`);
    } else {
      error(`${name}: unexpected error while waiting for job ${wait.jobName}: ${(err as Error)?.message ?? String(err)}`);
    }
    return EXIT_ARM;
  }
}

/**
 * Reads the configuration from `env`, waits for the job and returns the process exit code.
 * Never throws: configuration errors return 2, ARM/credential errors 4 (message printed), the
 * deadline 3 whatever the server does (every request runs under it).
 *
 * @param env - environment (AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP, AZUREML_WORKSPACE,
 *   AZUREML_JOB_NAME, WAIT_DEADLINE_SECONDS [86400], WAIT_POLL_SECONDS [30], ARM_ENDPOINT).
 * @param deps - output functions and optional injected credential/clock.
 * @returns exit code (see EXIT_*).
 */
export async function runWaitForJobFromEnv(env: Env, deps: RunFromEnvDeps): Promise<number> {
  const error = deps.error ?? deps.log;
  const wait = parseWaitEnv(env);
  if (typeof wait === "string") {
    error(`wait-for-job: ${wait}`);
    return EXIT_CONFIG;
  }
  const now = deps.now ?? Date.now;
  let client: ArmClient;
  try {
    client = armClientFromEnv(env, deps, "phi3-finetune/wait-for-job", now() + wait.deadlineMs);
  } catch (err) {
    error(`wait-for-job: ${(err as Error).message}`);
    return EXIT_CONFIG;
  }
  return waitWithClient(client, wait, deps);
}

/** The command line of wait-for-job: configured by its environment (lib/cli.ts style). */
export const WAIT_FOR_JOB_COMMAND: JobSpec = {
  name: "wait-for-job",
  usage: "npx tsx jobs/wait-for-job.ts",
  summary: "Waits for an Azure ML job to finish, printing each status change, the elapsed time and the Studio URL.\nRun by `pulumi up` (infra/training.ts); configured by environment variables.",
  options: {},
  details:
    "Environment: AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP, AZUREML_WORKSPACE, AZUREML_JOB_NAME (required);\n" +
    "WAIT_DEADLINE_SECONDS (default 86400), WAIT_POLL_SECONDS (default 30), ARM_ENDPOINT (https).",
  deadline: { variable: "WAIT_DEADLINE_SECONDS", defaultSeconds: 86_400 },
};

/** Entry point: reads `process.argv` (only --help) and `process.env`, waits; resolves to the exit code. */
export const main = jobMain(WAIT_FOR_JOB_COMMAND, (_, env, out) => runWaitForJobFromEnv(env, out));

if (require.main === module) runJobAsMain(WAIT_FOR_JOB_COMMAND, main);
