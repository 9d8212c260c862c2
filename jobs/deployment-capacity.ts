/**
 * Reads the live instance count of an autoscaled online deployment, so that `pulumi up` sends
 * it back unchanged when it updates the deployment for another reason (issue 19).
 *
 * Why: azure-native updates an online deployment with a PUT of the whole body. With
 * `ignoreChanges: ["sku.capacity"]` Pulumi fills the ignored field from its state, i.e. the
 * capacity it sent when it created the deployment, so any other update (a new request timeout,
 * an environment variable) reset a deployment Azure Monitor had scaled out to 3 back to 1.
 * infra/serving.ts instead takes the capacity from this program's output: it runs right before
 * such an update (its environment carries a digest of everything else the deployment is sent,
 * so Pulumi runs it again exactly when that changes), reads the deployment
 * (`GET .../onlineEndpoints/{endpoint}/deployments/{deployment}`, Azure ML REST 2025-12-01) and
 * prints `sku.capacity`; when the deployment does not exist yet (first `up`, or a new model
 * version's deployment) it prints CAPACITY_FALLBACK, the configured `instanceCount`.
 *
 * Environment: AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP, AZUREML_WORKSPACE, AZUREML_ENDPOINT,
 * AZUREML_DEPLOYMENT, CAPACITY_FALLBACK (required); CAPACITY_DEADLINE_SECONDS (default
 * {@link CAPACITY_DEADLINE_SECONDS}: one deadline for all it does, token requests included;
 * the process ends at it whatever is pending, lib/cli.ts `runAsMain`), DEPLOYMENT_DIGEST (not
 * read: it only makes Pulumi run this again), ARM_ENDPOINT (https). Credentials:
 * lib/credential.ts (the azure-native provider's).
 * Standard output: one line, the capacity (an integer >= 1); everything else goes to stderr.
 * Exit codes: 0 printed, 2 bad environment, 3 deadline passed, 4 ARM or credential error.
 */
import {
  AML_API_VERSION,
  DeadlineError,
  EXIT_ARM,
  EXIT_CONFIG,
  EXIT_DEADLINE,
  EXIT_OK,
  armClientFromEnv,
  deadlineSecondsFromEnv,
  isArmNotFound,
  missingEnv,
  withApiVersion,
  workspacePath,
  type Env,
  type ScriptDeps,
} from "../lib/arm";
import { jobMain, runJobAsMain, type JobSpec } from "../lib/cli";
import { CredentialConfigError } from "../lib/credential";

/**
 * Default of CAPACITY_DEADLINE_SECONDS: one GET (with its retries and a token) takes seconds;
 * five minutes leave room for throttling without holding `pulumi up` long.
 */
export const CAPACITY_DEADLINE_SECONDS = 300;

/**
 * The capacity to send: the live `sku.capacity` of the deployment, or `fallback` when it does
 * not exist. Throws the ARM error for any other answer, and an Error when the live
 * deployment carries no positive integer capacity.
 */
export async function liveCapacity(
  client: { get<T = unknown>(path: string): Promise<{ body: T }> },
  where: { subscriptionId: string; resourceGroup: string; workspace: string; endpoint: string; deployment: string },
  fallback: number,
): Promise<{ capacity: number; source: "live" | "fallback" }> {
  const path = `${workspacePath(where)}/onlineEndpoints/${encodeURIComponent(where.endpoint)}/deployments/${encodeURIComponent(where.deployment)}`;
  try {
    const { body } = await client.get<{ sku?: { capacity?: unknown } }>(withApiVersion(path, AML_API_VERSION));
    const capacity = body?.sku?.capacity;
    if (typeof capacity !== "number" || !Number.isInteger(capacity) || capacity < 1) {
      throw new Error(`deployment ${where.deployment} has no usable sku.capacity (got ${JSON.stringify(capacity)})`);
    }
    return { capacity, source: "live" };
  } catch (err) {
    if (isArmNotFound(err)) return { capacity: fallback, source: "fallback" };
    throw err;
  }
}

/** Read the environment, print the capacity; returns the exit code. Never throws. */
export async function runDeploymentCapacityFromEnv(env: Env, deps: ScriptDeps): Promise<number> {
  const error = deps.error ?? deps.log;
  const missing = missingEnv(env, ["AZURE_SUBSCRIPTION_ID", "AZURE_RESOURCE_GROUP", "AZUREML_WORKSPACE", "AZUREML_ENDPOINT", "AZUREML_DEPLOYMENT", "CAPACITY_FALLBACK"]);
  if (missing.length) {
    error(`deployment-capacity: missing environment variable(s): ${missing.join(", ")}`);
    return EXIT_CONFIG;
  }
  const fallback = Number(env.CAPACITY_FALLBACK);
  if (!Number.isInteger(fallback) || fallback < 1) {
    error(`deployment-capacity: CAPACITY_FALLBACK must be an integer >= 1 (got ${JSON.stringify(env.CAPACITY_FALLBACK)})`);
    return EXIT_CONFIG;
  }
  let deadlineMs: number;
  try {
    deadlineMs = deadlineSecondsFromEnv(env, DEPLOYMENT_CAPACITY_COMMAND.deadline) * 1000;
  } catch (e) {
    error(`deployment-capacity: ${(e as Error).message}`);
    return EXIT_CONFIG;
  }
  const where = {
    subscriptionId: env.AZURE_SUBSCRIPTION_ID!.trim(),
    resourceGroup: env.AZURE_RESOURCE_GROUP!.trim(),
    workspace: env.AZUREML_WORKSPACE!.trim(),
    endpoint: env.AZUREML_ENDPOINT!.trim(),
    deployment: env.AZUREML_DEPLOYMENT!.trim(),
  };
  try {
    // Every request and token request runs under the deadline (lib/arm.ts).
    const client = armClientFromEnv(env, deps, "phi3-finetune/deployment-capacity", (deps.now ?? Date.now)() + deadlineMs);
    const { capacity, source } = await liveCapacity(client, where, fallback);
    error(
      source === "live"
        ? `deployment-capacity: ${where.deployment} runs ${capacity} instance(s) now (Azure Monitor autoscale); the update keeps them`
        : `deployment-capacity: ${where.deployment} does not exist yet; it starts with instanceCount ${capacity}`,
    );
    deps.log(String(capacity));
    return EXIT_OK;
  } catch (err) {
    const what = `deployment-capacity: reading ${where.endpoint}/${where.deployment}`;
    error(`${what} failed: ${(err as Error)?.message ?? String(err)}`);
    if (err instanceof DeadlineError) return EXIT_DEADLINE;
    if (err instanceof CredentialConfigError) return EXIT_CONFIG;
    return EXIT_ARM;
  }
}

/** The command line of deployment-capacity: configured by its environment (lib/cli.ts style). */
export const DEPLOYMENT_CAPACITY_COMMAND: JobSpec = {
  name: "deployment-capacity",
  usage: "npx tsx jobs/deployment-capacity.ts",
  summary: "Prints the live instance count of an autoscaled online deployment (or CAPACITY_FALLBACK when it does not exist).\nRun by `pulumi up` (infra/serving.ts); configured by environment variables.",
  options: {},
  details:
    "Environment: AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP, AZUREML_WORKSPACE, AZUREML_ENDPOINT, AZUREML_DEPLOYMENT,\n" +
    `CAPACITY_FALLBACK (required); CAPACITY_DEADLINE_SECONDS (default ${CAPACITY_DEADLINE_SECONDS}), DEPLOYMENT_DIGEST (only triggers a new read), ARM_ENDPOINT (https).`,
  deadline: { variable: "CAPACITY_DEADLINE_SECONDS", defaultSeconds: CAPACITY_DEADLINE_SECONDS },
};

if (require.main === module) runJobAsMain(DEPLOYMENT_CAPACITY_COMMAND, jobMain(DEPLOYMENT_CAPACITY_COMMAND, (_, env, out) => runDeploymentCapacityFromEnv(env, out)));
