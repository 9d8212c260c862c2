/**
 * Submits an Azure ML command or pipeline job under a fixed (content-hash) name, once, then waits for it.
 * Run by `@pulumi/command` from the Training component (`npx tsx jobs/submit-job.ts`).
 *
 * Why a script and not `machinelearningservices.Job`: Pulumi's language SDKs drop a resource
 * input named `id` (pulumi/pulumi#13781), and `id` is the job name in azure-native, so the
 * resource cannot carry a deterministic name. This script PUTs
 * `{workspace}/jobs/{name}?api-version=2025-12-01` with the body the program computed.
 * Jobs are immutable: when a job of that name exists it is never resubmitted, only waited
 * for, so re-running `pulumi up` is idempotent. Then it waits like `jobs/wait-for-job.ts`.
 *
 * Env: AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP, AZUREML_WORKSPACE, AZUREML_JOB_NAME,
 * AZUREML_JOB_BODY (JSON `{"properties": {...}}`), plus wait-for-job's WAIT_DEADLINE_SECONDS
 * (one deadline for submitting and waiting), WAIT_POLL_SECONDS, ARM_ENDPOINT. Submission is
 * verified ({@link submitJob}): a lost answer is settled by GET, a different job under the same
 * name is refused. Exit codes: 0 Completed, 1 job failed or a different job holds the name,
 * 2 bad environment, 3 deadline, 4 ARM error.
 */
import {
  EXIT_ARM,
  EXIT_CONFIG,
  EXIT_DEADLINE,
  EXIT_FAILED,
  ArmClient,
  ArmError,
  DeadlineError,
  armClientFromEnv,
  isArmNotFound,
  withApiVersion,
  workspacePath,
  type Env,
  type ScriptDeps,
} from "../lib/arm";
import { jobMain, runJobAsMain, type JobSpec } from "../lib/cli";
import { CredentialConfigError } from "../lib/credential";
import { parseWaitEnv, waitWithClient } from "./wait-for-job";

/** What {@link submitJob} did. */
export type SubmitOutcome = { submitted: true; confirmedByGet?: boolean } | { submitted: false; status: string };

/** A job of that name exists with another body: a different job under the same name. */
export class JobConflictError extends Error {
  /** The fields that differ, e.g. `command`, `inputs.train_file.uri`. */
  readonly fields: string[];
  /**
   * @param jobName - the job's name.
   * @param fields - dotted paths of the differing fields.
   */
  constructor(jobName: string, fields: string[]) {
    super(
      `job ${jobName} already exists in the workspace with another body (differs in ${fields.join(", ")}). ` +
        `Jobs are immutable and the name is a hash of what defines the job, so this is a different job under the same name ` +
        `(for example one submitted by hand). Nothing was submitted. Way out: set phi3-finetune:training.attempt to the next number ` +
        `(pulumi config set --path 'phi3-finetune:training.attempt' <n>) so the job gets a new name, then run pulumi up again.`,
    );
    this.name = "JobConflictError";
    this.fields = fields;
  }
}

/** Fields Azure ML lets change after submission (REST 2025-12-01 JobBase): not part of what makes a job that job. */
const MUTABLE_JOB_FIELDS = new Set(["displayName", "description", "tags", "properties", "isArchived"]);

const sameValue = (a: unknown, b: unknown): boolean =>
  typeof a === "string" && typeof b === "string" && a.startsWith("/subscriptions/")
    ? a.toLowerCase() === b.toLowerCase() // ARM ids compare without case
    : JSON.stringify(a) === JSON.stringify(b);

/**
 * The fields of the body this program sends that an existing job has with another value (or
 * lacks). Only what was sent is compared (Azure adds status, services, defaults), minus the
 * fields Azure ML lets change after submission; ARM ids are compared without case.
 *
 * @param sent - the `properties` this program PUTs.
 * @param existing - the job resource as GET returns it.
 * @returns dotted paths, empty when it is the same job.
 */
export function jobDifferences(sent: Record<string, unknown>, existing: unknown): string[] {
  const props = (existing as { properties?: Record<string, unknown> } | undefined)?.properties ?? {};
  const out: string[] = [];
  const walk = (a: unknown, b: unknown, path: string) => {
    if (a && typeof a === "object" && !Array.isArray(a)) {
      for (const [k, v] of Object.entries(a)) walk(v, b && typeof b === "object" ? (b as Record<string, unknown>)[k] : undefined, path ? `${path}.${k}` : k);
      return;
    }
    if (!sameValue(a, b)) out.push(path);
  };
  for (const [k, v] of Object.entries(sent)) if (!MUTABLE_JOB_FIELDS.has(k)) walk(v, props[k], k);
  return out;
}

/**
 * Submits the job once, verified:
 * - GET first: an existing job with the same body is only waited for (never resubmitted:
 *   jobs are immutable); with another body it is a {@link JobConflictError} (nothing is sent);
 *   ARM's own 404 means "not submitted yet" (a proxy's 404 page or any answer that is not JSON
 *   is an error, never a reason to PUT);
 * - PUT; when its answer is lost or refused (a reset connection retried into 409 Conflict, a
 *   5xx, a timeout), a GET decides: the job exists with the same body → submitted; with
 *   another body → conflict; absent → the PUT's error.
 *
 * @throws ArmError, JobConflictError, DeadlineError.
 */
export async function submitJob(
  client: ArmClient,
  coords: { subscriptionId: string; resourceGroup: string; workspace: string; jobName: string },
  body: { properties: Record<string, unknown> },
  log: (line: string) => void,
): Promise<SubmitOutcome> {
  const path = withApiVersion(`${workspacePath(coords)}/jobs/${encodeURIComponent(coords.jobName)}`);
  const existing = async (): Promise<unknown | undefined> => {
    try {
      return (await client.get(path)).body;
    } catch (e) {
      if (isArmNotFound(e)) return undefined;
      throw e;
    }
  };
  const verify = (job: unknown): string => {
    const differences = jobDifferences(body.properties, job);
    if (differences.length > 0) throw new JobConflictError(coords.jobName, differences);
    return String((job as { properties?: { status?: unknown } })?.properties?.status ?? "unknown");
  };

  const before = await existing();
  if (before !== undefined) {
    const status = verify(before);
    log(`Job ${coords.jobName} already exists (status ${status}) with the same body; jobs are immutable, not resubmitting.`);
    return { submitted: false, status };
  }
  try {
    await client.put(path, body);
  } catch (e) {
    if (!(e instanceof ArmError) || (e.status >= 400 && e.status < 500 && e.status !== 409 && e.status !== 408 && e.status !== 429)) throw e;
    // The PUT may have landed although its answer was lost: ask.
    log(`The answer to the PUT of job ${coords.jobName} was lost or refused (${e.status ? `HTTP ${e.status} ${e.code}` : e.code}); checking whether the job exists.`);
    const after = await existing();
    if (after === undefined) throw e;
    verify(after);
    log(`Submitted job ${coords.jobName} (confirmed by GET: it exists with this body).`);
    return { submitted: true, confirmedByGet: true };
  }
  log(`Submitted job ${coords.jobName} (${String(body.properties.displayName ?? body.properties.jobType ?? "job")}).`);
  return { submitted: true };
}

/** Job types the stack submits: command jobs (prep, script fine-tune) and the managed mode's pipeline job. */
export const SUBMITTED_JOB_TYPES = ["Command", "Pipeline"];

/** Parse the body env var; returns an error message instead of throwing. */
export function parseJobBody(raw: string | undefined): { properties: Record<string, unknown> } | string {
  if (!raw || raw.trim() === "") return "missing environment variable AZUREML_JOB_BODY";
  try {
    const parsed = JSON.parse(raw);
    if (!parsed || typeof parsed.properties !== "object" || !SUBMITTED_JOB_TYPES.includes(parsed.properties.jobType)) {
      return 'AZUREML_JOB_BODY must be {"properties": {"jobType": "Command" or "Pipeline", ...}}';
    }
    return parsed;
  } catch (e) {
    return `AZUREML_JOB_BODY is not valid JSON: ${(e as Error).message}`;
  }
}

/**
 * Submit (if needed) and wait, all within one deadline (`WAIT_DEADLINE_SECONDS` from the
 * start); returns the exit code. Every variable is checked before anything is sent. Never throws.
 */
export async function runSubmitJobFromEnv(env: Env, deps: ScriptDeps): Promise<number> {
  const error = deps.error ?? deps.log;
  const wait = parseWaitEnv(env);
  if (typeof wait === "string") {
    error(`submit-job: ${wait}`);
    return EXIT_CONFIG;
  }
  const body = parseJobBody(env.AZUREML_JOB_BODY);
  if (typeof body === "string") {
    error(`submit-job: ${body}`);
    return EXIT_CONFIG;
  }
  const now = deps.now ?? Date.now;
  const deadlineAt = now() + wait.deadlineMs;
  let client;
  try {
    client = armClientFromEnv(env, deps, "phi3-finetune/submit-job", deadlineAt);
    await submitJob(client, wait, body, deps.log);
  } catch (e) {
    if (e instanceof DeadlineError) {
      error(`submit-job: the deadline (${wait.deadlineMs / 1000} s) passed before job ${wait.jobName} could be submitted: ${e.message}`);
      return EXIT_DEADLINE;
    }
    if (e instanceof CredentialConfigError) {
      error(`submit-job: ${e.message}`);
      return EXIT_CONFIG;
    }
    error(`submit-job: could not submit Azure ML job ${wait.jobName}: ${(e as Error).message}`);
    return e instanceof JobConflictError ? EXIT_FAILED : EXIT_ARM;
  }
  return waitWithClient(client, { ...wait, deadlineMs: Math.max(0, deadlineAt - now()) }, deps, "submit-job");
}

/** The command line of submit-job: configured by its environment (lib/cli.ts style). */
export const SUBMIT_JOB_COMMAND: JobSpec = {
  name: "submit-job",
  usage: "npx tsx jobs/submit-job.ts",
  summary: "Submits an Azure ML job under its content-hash name once (an existing job is never resubmitted), then waits for it.\nRun by `pulumi up` (infra/training.ts); configured by environment variables.",
  options: {},
  details:
    "Environment: AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP, AZUREML_WORKSPACE, AZUREML_JOB_NAME, AZUREML_JOB_BODY (required);\n" +
    "WAIT_DEADLINE_SECONDS (default 86400), WAIT_POLL_SECONDS (default 30), ARM_ENDPOINT (https).",
  deadline: { variable: "WAIT_DEADLINE_SECONDS", defaultSeconds: 86_400 },
};

if (require.main === module) runJobAsMain(SUBMIT_JOB_COMMAND, jobMain(SUBMIT_JOB_COMMAND, (_, env, out) => runSubmitJobFromEnv(env, out)));
