/**
 * Submits an Azure ML command job under a fixed (content-hash) name, once, then waits for it.
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
 * AZUREML_JOB_BODY (JSON `{"properties": {...}}`), plus wait-for-job's WAIT_DEADLINE_SECONDS,
 * WAIT_POLL_SECONDS, ARM_ENDPOINT. Exit codes: wait-for-job's (0 Completed, 1 job failed,
 * 2 bad environment, 3 deadline, 4 ARM error).
 */
import {
  EXIT_ARM,
  EXIT_CONFIG,
  ArmClient,
  ArmError,
  armClientFromEnv,
  missingEnv,
  withApiVersion,
  workspacePath,
  type Env,
  type ScriptDeps,
} from "../lib/arm";
import { programCommandLine, runAsMain, type CommandSpec } from "../lib/cli";
import { runWaitForJobFromEnv } from "./wait-for-job";

/** What {@link submitJob} did. */
export type SubmitOutcome = { submitted: true } | { submitted: false; status: string };

/**
 * PUT the job unless a job with that name exists (GET 200). A 404 means "not yet submitted".
 * Throws ArmError on any other ARM failure (the client already retried 429/5xx).
 */
export async function submitJob(
  client: ArmClient,
  coords: { subscriptionId: string; resourceGroup: string; workspace: string; jobName: string },
  body: { properties: Record<string, unknown> },
  log: (line: string) => void,
): Promise<SubmitOutcome> {
  const path = withApiVersion(`${workspacePath(coords)}/jobs/${encodeURIComponent(coords.jobName)}`);
  try {
    const existing = await client.get(path);
    const status = String((existing.body as any)?.properties?.status ?? "unknown");
    log(`Job ${coords.jobName} already exists (status ${status}); jobs are immutable, not resubmitting.`);
    return { submitted: false, status };
  } catch (e) {
    if (!(e instanceof ArmError) || e.status !== 404) throw e;
  }
  await client.put(path, body);
  log(`Submitted job ${coords.jobName} (${String(body.properties.displayName ?? body.properties.jobType ?? "job")}).`);
  return { submitted: true };
}

/** Parse the body env var; returns an error message instead of throwing. */
export function parseJobBody(raw: string | undefined): { properties: Record<string, unknown> } | string {
  if (!raw || raw.trim() === "") return "missing environment variable AZUREML_JOB_BODY";
  try {
    const parsed = JSON.parse(raw);
    if (!parsed || typeof parsed.properties !== "object" || parsed.properties.jobType !== "Command") {
      return 'AZUREML_JOB_BODY must be {"properties": {"jobType": "Command", ...}}';
    }
    return parsed;
  } catch (e) {
    return `AZUREML_JOB_BODY is not valid JSON: ${(e as Error).message}`;
  }
}

/** Submit (if needed) and wait; returns the exit code. Never throws. */
export async function runSubmitJobFromEnv(env: Env, deps: ScriptDeps): Promise<number> {
  const error = deps.error ?? deps.log;
  const missing = missingEnv(env, ["AZURE_SUBSCRIPTION_ID", "AZURE_RESOURCE_GROUP", "AZUREML_WORKSPACE", "AZUREML_JOB_NAME"]);
  if (missing.length) {
    error(`submit-job: missing environment variable(s): ${missing.join(", ")}`);
    return EXIT_CONFIG;
  }
  const body = parseJobBody(env.AZUREML_JOB_BODY);
  if (typeof body === "string") {
    error(`submit-job: ${body}`);
    return EXIT_CONFIG;
  }
  const coords = {
    subscriptionId: env.AZURE_SUBSCRIPTION_ID!.trim(),
    resourceGroup: env.AZURE_RESOURCE_GROUP!.trim(),
    workspace: env.AZUREML_WORKSPACE!.trim(),
    jobName: env.AZUREML_JOB_NAME!.trim(),
  };
  try {
    const client = armClientFromEnv(env, deps, "phi3-finetune/submit-job");
    await submitJob(client, coords, body, deps.log);
  } catch (e) {
    error(`submit-job: could not submit Azure ML job ${coords.jobName}: ${(e as Error).message}`);
    return EXIT_ARM;
  }
  return runWaitForJobFromEnv(env, deps);
}

/** The command line of submit-job: configured by its environment (lib/cli.ts style). */
export const SUBMIT_JOB_COMMAND: CommandSpec = {
  name: "submit-job",
  usage: "npx tsx jobs/submit-job.ts",
  summary: "Submits an Azure ML job under its content-hash name once (an existing job is never resubmitted), then waits for it.\nRun by `pulumi up` (infra/training.ts); configured by environment variables.",
  options: {},
  details:
    "Environment: AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP, AZUREML_WORKSPACE, AZUREML_JOB_NAME, AZUREML_JOB_BODY (required);\n" +
    "WAIT_DEADLINE_SECONDS (default 86400, at least 60), WAIT_POLL_SECONDS (default 30), ARM_ENDPOINT (https).",
};

if (require.main === module) {
  runAsMain("submit-job", async () => {
    const cl = programCommandLine(SUBMIT_JOB_COMMAND, process.argv.slice(2), console.log, console.error);
    if ("exit" in cl) return cl.exit;
    return runSubmitJobFromEnv(process.env, { log: (l) => console.log(l), error: (l) => console.error(l) });
  });
}
