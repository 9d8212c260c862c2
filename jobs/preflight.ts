/**
 * The preflight step of `pulumi up`: the first thing the deployment runs (infra/preflight.ts
 * declares it; every costly resource depends on it). It runs the checks `npm run doctor` runs
 * (lib/preflight.ts) against the subscription `pulumi up` deploys to and fails the step,
 * so Pulumi creates nothing that depends on it, when one fails: a retired or unoffered VM size,
 * missing quota or providers, a name held by someone else or by a soft-deleted resource, a
 * pinned model version that does not exist. Each failure names its remedy.
 *
 * Env: AZURE_SUBSCRIPTION_ID, PULUMI_STACK, PREFLIGHT_INPUT (JSON of `preflightInput(config)`),
 * ARM_ENDPOINT (optional). Credentials: DefaultAzureCredential. Exit codes: 0 passed (warnings
 * printed), 1 a check failed, 2 bad environment.
 *
 * With PREFLIGHT_STORAGE_URL (`https://<account>.blob.core.windows.net/<container>`) it runs
 * only the storage check instead ({@link runStorageReachFromEnv}): the `private` profile's step
 * before any upload (infra/training.ts), once the account exists, so that an upload path that
 * cannot reach the account stops `pulumi up` with the remedy before anything is uploaded.
 */
import type { TokenCredential } from "@azure/identity";
import { DeadlineError, EXIT_CONFIG, EXIT_DEADLINE, EXIT_FAILED, EXIT_OK, armEndpointFromEnv, defaultCredential, missingEnv, type Env, type ScriptDeps, deadlineSecondsFromEnv } from "../lib/arm";
import { jobMain, runJobAsMain, type JobSpec } from "../lib/cli";
import { checkStorageReach, DOCTOR_DEADLINE_SECONDS, formatReport, runDoctor, type PreflightInput } from "../lib/preflight";

/** Parse PREFLIGHT_INPUT; an error message instead of throwing. */
export function parsePreflightInput(raw: string | undefined): PreflightInput | string {
  try {
    const input = JSON.parse(raw ?? "");
    if (!input || typeof input.location !== "string" || !Array.isArray(input.serving?.deployments) || !input.trainingCluster) {
      return "PREFLIGHT_INPUT must be the JSON of preflightInput(config)";
    }
    return input as PreflightInput;
  } catch (e) {
    return `PREFLIGHT_INPUT is not valid JSON: ${(e as Error).message}`;
  }
}

/**
 * What both checks run under: PREFLIGHT_DEADLINE_SECONDS (seconds, default
 * {@link DOCTOR_DEADLINE_SECONDS}) and the credential (lib/credential.ts, unless `deps` gives one).
 * A bad value is printed (`preflight: …`) and gives {@link EXIT_CONFIG} instead.
 */
function deadlineAndCredential(env: Env, deps: ScriptDeps): { deadlineSeconds: number; credential: TokenCredential } | number {
  try {
    return {
      deadlineSeconds: deadlineSecondsFromEnv(env, PREFLIGHT_COMMAND.deadline),
      credential: deps.credential ?? defaultCredential(env),
    };
  } catch (e) {
    (deps.error ?? deps.log)(`preflight: ${(e as Error).message}`);
    return EXIT_CONFIG;
  }
}

/** Run the checks from the environment and print the report; returns the exit code. Never throws. */
export async function runPreflightFromEnv(env: Env, deps: ScriptDeps): Promise<number> {
  const error = deps.error ?? deps.log;
  const missing = missingEnv(env, ["AZURE_SUBSCRIPTION_ID", "PULUMI_STACK", "PREFLIGHT_INPUT"]);
  if (missing.length) {
    error(`preflight: missing environment variable(s): ${missing.join(", ")}`);
    return EXIT_CONFIG;
  }
  const input = parsePreflightInput(env.PREFLIGHT_INPUT);
  if (typeof input === "string") {
    error(`preflight: ${input}`);
    return EXIT_CONFIG;
  }
  let baseUrl: string | undefined;
  try {
    baseUrl = armEndpointFromEnv(env);
  } catch (e) {
    error(`preflight: ${(e as Error).message}`);
    return EXIT_CONFIG;
  }
  const setup = deadlineAndCredential(env, deps);
  if (typeof setup === "number") return setup;
  const { deadlineSeconds, credential } = setup;
  const now = deps.now ?? Date.now;
  const result = await runDoctor(
    { stack: env.PULUMI_STACK!.trim(), config: input, subscriptionId: env.AZURE_SUBSCRIPTION_ID!.trim() },
    {
      credential,
      baseUrl,
      httpClient: deps.httpClient,
      env,
      now,
      deadlineAt: now() + deadlineSeconds * 1000,
      tokenTimeoutMs: deps.tokenTimeoutMs,
      backoffBaseMs: deps.backoffBaseMs,
      maxRetries: deps.maxRetries,
      log: error,
    },
  );
  const report = formatReport(result.checks);
  if (result.exitCode === EXIT_DEADLINE) {
    error(`Preflight did not finish within ${deadlineSeconds} s: nothing costly was created. What was seen:`);
    error(report);
    return EXIT_DEADLINE;
  }
  if (result.exitCode !== 0) {
    error(
      `Preflight failed: nothing costly was created (no job, endpoint or deployment). Fix what is marked FAIL below, ` +
        `then run \`pulumi up\` again (\`npm run doctor -- --stack ${env.PULUMI_STACK!.trim()}\` runs the same checks).`,
    );
    error(report);
    return EXIT_FAILED;
  }
  deps.log(`Preflight passed for stack ${env.PULUMI_STACK!.trim()} in ${input.location}.`);
  deps.log(report);
  return EXIT_OK;
}

/**
 * The storage check from the environment (PREFLIGHT_STORAGE_URL; credentials as the uploads':
 * DefaultAzureCredential): prints the one-row report; returns 0 when the account answered,
 * 1 when it cannot be reached or refuses (the report names the remedy), 2 for a bad environment,
 * 3 when PREFLIGHT_DEADLINE_SECONDS passes first (token request, request and retries all run
 * under it: lib/arm.ts `createArmClient` with the storage scope). Never throws.
 */
export async function runStorageReachFromEnv(env: Env, deps: ScriptDeps): Promise<number> {
  const error = deps.error ?? deps.log;
  const containerUrl = env.PREFLIGHT_STORAGE_URL?.trim();
  if (!containerUrl) {
    error("preflight: missing environment variable(s): PREFLIGHT_STORAGE_URL");
    return EXIT_CONFIG;
  }
  const setup = deadlineAndCredential(env, deps);
  if (typeof setup === "number") return setup;
  const { deadlineSeconds, credential } = setup;
  let check;
  try {
    const now = deps.now ?? Date.now;
    check = await checkStorageReach(containerUrl, {
      credential,
      httpClient: deps.httpClient,
      maxRetries: deps.maxRetries,
      backoffBaseMs: deps.backoffBaseMs,
      deadlineAt: now() + deadlineSeconds * 1000,
      now,
      onRetry: (line) => error(`preflight: ${line}`),
    });
  } catch (e) {
    if (e instanceof DeadlineError) {
      error(`preflight: the storage check did not finish within the deadline (PREFLIGHT_DEADLINE_SECONDS): ${e.message}; nothing was uploaded`);
      return EXIT_DEADLINE;
    }
    error(`preflight: ${(e as Error)?.message ?? String(e)}`);
    return EXIT_CONFIG;
  }
  if (check.status === "FAIL") {
    error("Preflight (storage) failed: nothing was uploaded. Fix what is marked FAIL below, then run `pulumi up` again.");
    error(formatReport([check]));
    return EXIT_FAILED;
  }
  deps.log(formatReport([check]));
  return EXIT_OK;
}

/** The command line of the preflight step: configured by its environment (lib/cli.ts style). */
export const PREFLIGHT_COMMAND: JobSpec = {
  name: "preflight",
  usage: "npx tsx jobs/preflight.ts",
  summary: "The first step of `pulumi up`: the checks of `npm run doctor` against the subscription being deployed to.\nRun by `pulumi up` (infra/preflight.ts); configured by environment variables.",
  options: {},
  details:
    "Environment: AZURE_SUBSCRIPTION_ID, PULUMI_STACK, PREFLIGHT_INPUT (required); PREFLIGHT_DEADLINE_SECONDS (default 600), ARM_ENDPOINT (https).\n" +
    "With PREFLIGHT_STORAGE_URL (https://<account>.blob.core.windows.net/<container>) only the check that this machine reaches the storage account (before uploads).",
  deadline: { variable: "PREFLIGHT_DEADLINE_SECONDS", defaultSeconds: DOCTOR_DEADLINE_SECONDS },
};

if (require.main === module) {
  runJobAsMain(
    PREFLIGHT_COMMAND,
    jobMain(PREFLIGHT_COMMAND, (_, env, out) => (env.PREFLIGHT_STORAGE_URL ? runStorageReachFromEnv(env, out) : runPreflightFromEnv(env, out))),
  );
}
