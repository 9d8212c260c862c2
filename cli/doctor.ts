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
 * Exit codes: 0 no blocking failure (warnings do not block), 1 a check failed, 2 bad usage or
 * invalid stack config. Never prints a token.
 */
import * as path from "path";
import type { TokenCredential } from "@azure/identity";
import { parseConfig, ConfigError, rawProjectConfig, type StackConfig } from "../infra/config";
import type { HttpClient } from "@azure/core-rest-pipeline";
import { DEFAULT_ARM_ENDPOINT, defaultCredential } from "../lib/arm";
import { readStackConfig } from "../lib/mock-runtime";
import { formatReport, preflightInput, runDoctor } from "../lib/preflight";

export * from "../lib/preflight";

/** Command-line options. */
export interface DoctorArgs {
  stack: string;
  /** Explicit subscription (`--subscription`). */
  subscriptionId?: string;
  json: boolean;
  help: boolean;
}

/** Bad command-line usage (exit code 2). */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

export const USAGE = "Usage: npm run doctor -- [--stack <name>] [--subscription <id>] [--json]";

const GUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

/** Parse `--stack`, `--subscription`, `--json`, `--help`. Throws {@link UsageError}. */
export function parseDoctorArgs(argv: string[]): DoctorArgs {
  const args: DoctorArgs = { stack: "dev", json: false, help: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined || v === "" || v.startsWith("--")) throw new UsageError(`${a} needs a value. ${USAGE}`);
      return v;
    };
    if (a === "--stack" || a === "-s") args.stack = value();
    else if (a.startsWith("--stack=")) args.stack = a.slice("--stack=".length);
    else if (a === "--subscription") args.subscriptionId = value();
    else if (a.startsWith("--subscription=")) args.subscriptionId = a.slice("--subscription=".length);
    else if (a === "--json") args.json = true;
    else if (a === "--help" || a === "-h") args.help = true;
    else throw new UsageError(`unknown argument '${a}'. ${USAGE}`);
  }
  if (!/^[A-Za-z0-9._-]+$/.test(args.stack)) throw new UsageError(`--stack '${args.stack}' is not a valid stack name`);
  if (args.subscriptionId !== undefined && !GUID.test(args.subscriptionId)) {
    throw new UsageError(`--subscription '${args.subscriptionId}' is not a subscription id (a GUID)`);
  }
  return args;
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

/** Runs the doctor from the command line; resolves with the exit code (0, 1 or 2). */
export async function main(argv: string[], opts: MainOptions = {}): Promise<number> {
  const out = opts.out ?? ((s: string) => process.stdout.write(s + "\n"));
  const err = opts.err ?? ((s: string) => process.stderr.write(s + "\n"));
  const env = opts.env ?? process.env;
  const root = opts.root ?? path.resolve(__dirname, "..");

  let args: DoctorArgs;
  try {
    args = parseDoctorArgs(argv);
  } catch (e) {
    err(`error: ${(e as Error).message}`);
    return 2;
  }
  if (args.help) {
    out(USAGE);
    return 0;
  }

  let config: StackConfig;
  try {
    const { config: stackConfig } = readStackConfig(root, args.stack);
    config = parseConfig(rawProjectConfig(stackConfig)).config;
  } catch (e) {
    if (e instanceof ConfigError) err(`error: stack '${args.stack}': ${e.message}`);
    else err(`error: ${(e as Error).message}`);
    return 2;
  }

  const baseUrl = env.ARM_ENDPOINT?.trim() || DEFAULT_ARM_ENDPOINT;
  try {
    new URL(baseUrl);
  } catch {
    err(`error: ARM_ENDPOINT '${baseUrl}' is not a URL`);
    return 2;
  }

  const result = await runDoctor(
    { stack: args.stack, config: preflightInput(config), subscriptionId: args.subscriptionId },
    {
      credential: opts.credential ?? defaultCredential(),
      baseUrl,
      httpClient: opts.httpClient,
      env,
      backoffBaseMs: opts.backoffBaseMs,
      log: (l) => err(l),
    },
  );

  if (args.json) {
    out(JSON.stringify({ stack: args.stack, location: config.location, subscription: result.subscription, exitCode: result.exitCode, checks: result.checks }, null, 2));
  } else {
    const sub = result.subscription;
    out(`Doctor: stack '${args.stack}', location ${config.location}` + (sub ? `, subscription "${sub.displayName}" (${sub.subscriptionId}), tenant ${sub.tenantId}` : ""));
    out("");
    out(formatReport(result.checks));
  }
  return result.exitCode;
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e) => {
      process.stderr.write(`error: ${(e as Error).message}\n`);
      process.exit(1);
    },
  );
}
