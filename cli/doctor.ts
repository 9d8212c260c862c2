/**
 * Pre-flight checks of the subscription a stack deploys to:
 * `npm run doctor [-- --stack dev] [--subscription <id>] [--json]`.
 *
 * Run it before anyone spends A100 hours. Using the stack's real config (`Pulumi.yaml` +
 * `Pulumi.<stack>.yaml`), a credential from `@azure/identity` (`DefaultAzureCredential`) and
 * plain ARM REST (base URL from `ARM_ENDPOINT`, default https://management.azure.com), it checks:
 *
 *  1. the credential works, which subscription (`--subscription`, else `AZURE_SUBSCRIPTION_ID` /
 *     `ARM_SUBSCRIPTION_ID`, else the only enabled one) and tenant;
 *  2. the resource providers the stack needs are registered;
 *  3. every configured VM size (training cluster, prep cluster, each deployment) is offered by
 *     Azure ML in the region, and retired sizes (NCv3) are called out with replacements;
 *  4. the per-family vCPU quota covers the clusters' max nodes and the deployments' instances
 *     (with Azure ML's 20% reservation for online deployments, A100 v4 family exempt);
 *  5. the globally unique names (storage account, key vault, registry) are free or already
 *     this stack's, no soft-deleted key vault or workspace holds them, and the workspace names;
 *  6. every pinned model version (`existing: true`) exists in the stack's workspace.
 *
 * The checks live in lib/preflight.ts: `pulumi up` runs the same ones as its first step
 * (jobs/preflight.ts), before anything costly is created.
 *
 * Prints a table (status PASS/WARN/FAIL, check, detail, remedy for each non-pass) or JSON.
 * Exit codes (lib/cli.ts): 0 no blocking failure (warnings do not block), 1 a check failed or
 * the stack config is invalid, 2 bad usage (or an ARM_ENDPOINT that is not https), 4 no usable
 * Azure credential. Never prints a token.
 */
import * as path from "path";
import type { TokenCredential } from "@azure/identity";
import type { StackConfig } from "../infra/config";
import type { HttpClient } from "@azure/core-rest-pipeline";
import { EXIT, JSON_OPTION, STACK_OPTION, SUBSCRIPTION_OPTION, UsageError, checkStackName, checkSubscriptionId, helpText, parseCommandLine, reportError, runAsMain, type CommandSpec } from "../lib/cli";

// The checks (lib/preflight.ts), the ARM client and the stack config load Pulumi, zod and the
// Azure SDK: they are required inside main, after the command line, so `--help` and usage
// errors answer at once.
type Arm = typeof import("../lib/arm.js");
type Preflight = typeof import("../lib/preflight.js");
type Stacks = typeof import("../lib/stack-config.js");

/** The command line of the doctor. */
export const DOCTOR_COMMAND: CommandSpec = {
  name: "doctor",
  usage: "npm run doctor --",
  summary:
    "The preflight checks of `pulumi up`, against the subscription a stack deploys to: credential,\n" +
    "resource providers, VM sizes offered and not retired, vCPU quota, global names, pinned models.\n" +
    "Prints PASS/WARN/FAIL with the remedy for each problem. Credential: as the jobs of `pulumi up`\n" +
    "(README: Credentials); ARM base URL from ARM_ENDPOINT (default https://management.azure.com).",
  options: {
    stack: STACK_OPTION,
    subscription: { ...SUBSCRIPTION_OPTION, description: "subscription to check (default AZURE_SUBSCRIPTION_ID / ARM_SUBSCRIPTION_ID, else the only one)" },
    json: JSON_OPTION,
  },
};

/** Command-line options. */
export interface DoctorArgs {
  stack: string;
  /** Explicit subscription (`--subscription`). */
  subscriptionId?: string;
  json: boolean;
  help: boolean;
}

export { UsageError } from "../lib/cli";

/** The usage line (as printed after a usage error). */
export const USAGE = `Usage: ${DOCTOR_COMMAND.usage} [options]`;

/** Parse `--stack`, `--subscription`, `--json`, `--help`. Throws {@link UsageError}. */
export function parseDoctorArgs(argv: string[]): DoctorArgs {
  const { values, help } = parseCommandLine(DOCTOR_COMMAND, argv);
  return {
    stack: checkStackName((values.stack as string | undefined) ?? "dev"),
    subscriptionId: values.subscription === undefined ? undefined : checkSubscriptionId(values.subscription as string),
    json: values.json === true,
    help,
  };
}

// ---------------------------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------------------------

/** Options of {@link main} (all injectable for tests). */
export interface MainOptions {
  /** Project root holding Pulumi.yaml and the stack files; default the repository root. */
  root?: string;
  env?: Record<string, string | undefined>;
  credential?: TokenCredential;
  httpClient?: HttpClient;
  backoffBaseMs?: number;
  out?: (line: string) => void;
  err?: (line: string) => void;
}

/** Runs the doctor from the command line; resolves with the exit code (lib/cli.ts EXIT). */
export async function main(argv: string[], opts: MainOptions = {}): Promise<number> {
  const out = opts.out ?? ((s: string) => process.stdout.write(s + "\n"));
  const err = opts.err ?? ((s: string) => process.stderr.write(s + "\n"));
  const env = opts.env ?? process.env;
  const root = opts.root ?? path.resolve(__dirname, "..");

  let args: DoctorArgs;
  let config: StackConfig;
  let baseUrl: string;
  let credential: TokenCredential;
  try {
    args = parseDoctorArgs(argv);
    if (args.help) {
      out(helpText(DOCTOR_COMMAND));
      return EXIT.OK;
    }
    const { DEFAULT_ARM_ENDPOINT, armEndpointFromEnv, defaultCredential }: Arm = await import("../lib/arm.js");
    baseUrl = armEndpointFromEnv(env) ?? DEFAULT_ARM_ENDPOINT;
    credential = opts.credential ?? defaultCredential(env);
  } catch (e) {
    return reportError(DOCTOR_COMMAND, e instanceof UsageError ? e : new UsageError((e as Error).message), err);
  }
  try {
    config = ((await import("../lib/stack-config.js")) as Stacks).loadStackConfig(root, args.stack).config;
  } catch (e) {
    return reportError(DOCTOR_COMMAND, e, err, (e as Error | undefined)?.name === "ConfigError" ? `stack '${args.stack}': ` : "");
  }
  const { formatReport, preflightInput, runDoctor }: Preflight = await import("../lib/preflight.js");

  const result = await runDoctor(
    { stack: args.stack, config: preflightInput(config), subscriptionId: args.subscriptionId },
    {
      credential,
      baseUrl,
      httpClient: opts.httpClient,
      env,
      backoffBaseMs: opts.backoffBaseMs,
      log: (l) => err(l),
    },
  );

  // No usable credential is an Azure or credential error (EXIT.AZURE, the exit-code table), not a failed check.
  const exitCode = result.checks.some((c) => c.id === "credential" && c.status === "FAIL") ? EXIT.AZURE : result.exitCode;
  if (args.json) {
    out(JSON.stringify({ stack: args.stack, location: config.location, subscription: result.subscription, exitCode, checks: result.checks }, null, 2));
  } else {
    const sub = result.subscription;
    out(`Doctor: stack '${args.stack}', location ${config.location}` + (sub ? `, subscription "${sub.displayName}" (${sub.subscriptionId}), tenant ${sub.tenantId}` : ""));
    out("");
    out(formatReport(result.checks));
  }
  return exitCode;
}

if (require.main === module) {
  runAsMain("doctor", () => main(process.argv.slice(2)), "exit");
}
