/**
 * The offline plan: `npm run plan -- [--stack <name>] [--json] [--subscription <id>] [--base <git ref | plan.json>]`.
 *
 * Runs the real program (`index.ts`) in-process under Pulumi's mock runtime with the stack's
 * real config (`Pulumi.yaml` + `Pulumi.<stack>.yaml`) and prints what `pulumi preview` would
 * create on an empty stack: each resource's logical name, type, Azure name and key settings,
 * grouped by component; the stack outputs with secrets masked; warnings; a cost estimate.
 * With `--base`, the plan of a git ref (checked out to a temporary folder and planned by this
 * same code) or a saved `--json` plan is compared with this one resource by resource
 * (cli/lib/plan-diff.ts). Needs neither Azure nor the Pulumi CLI. Exit codes: lib/cli.ts.
 * This file is the command line only; the work is in cli/lib/plan-build.ts, loaded after parsing.
 */
import * as path from "path";
import { EXIT, JSON_OPTION, STACK_OPTION, SUBSCRIPTION_OPTION, checkStackName, checkSubscriptionId, helpText, parseCommandLine, reportError, runAsMain, type CommandSpec } from "../lib/cli";

/** The mock runtime's subscription id (lib/mock-runtime.ts, kept here so `--help` loads no Pulumi). */
const MOCK_SUBSCRIPTION_ID = "00000000-0000-0000-0000-00000000c0de";

const ROOT = path.resolve(__dirname, "..");

/** The command line of the plan. */
export const PLAN_COMMAND: CommandSpec = {
  name: "plan",
  usage: "npm run plan --",
  summary:
    "What `pulumi preview` would do, offline: runs index.ts under Pulumi's mock runtime with the stack's\n" +
    "config and prints each resource, the outputs (secrets masked), warnings and a cost estimate.\n" +
    "With --base, the diff against a git ref or a saved plan: create / update / replace / delete,\n" +
    "the properties that change, what it means (new fine-tune run and its cost, deployment roll)\n" +
    "and the change in monthly cost.",
  options: {
    stack: STACK_OPTION,
    json: JSON_OPTION,
    subscription: { ...SUBSCRIPTION_OPTION, description: "show the Azure names your subscription would get (default: a mock id)" },
    base: { type: "string", value: "<ref|file>", description: "compare with a git ref (HEAD~1, main, a commit) or a plan saved with --json" },
    root: { type: "string", value: "<dir>", description: "project folder to plan (default: this checkout; --base uses it)" },
  },
  details: "Examples: npm run plan -- --stack bluegreen --json > plan.json\n          npm run plan -- --base HEAD~1\n          npm run plan -- --base plan.json",
};

/** Command-line options of the plan. */
export interface PlanArgs {
  stack: string;
  json: boolean;
  subscriptionId: string;
  base?: string;
  root: string;
  help: boolean;
}

/** Parse the command line. @throws UsageError with one line. */
export function parsePlanArgs(argv: string[]): PlanArgs {
  const { values, help } = parseCommandLine(PLAN_COMMAND, argv);
  return {
    stack: checkStackName((values.stack as string | undefined) ?? "dev"),
    json: values.json === true,
    subscriptionId: values.subscription === undefined ? MOCK_SUBSCRIPTION_ID : checkSubscriptionId(values.subscription as string),
    base: values.base as string | undefined,
    root: path.resolve((values.root as string | undefined) ?? ROOT),
    help,
  };
}

/** When the plan's modules (with @pulumi/pulumi and the ML module) were loaded, ms since process start. */
let loadedAtMs = Number.NaN;

/** Run the plan; returns the exit code. Output goes to the given writers. */
export async function main(
  argv: string[],
  out: (line: string) => void = (s) => void process.stdout.write(s + "\n"),
  err: (line: string) => void = (s) => void process.stderr.write(s + "\n"),
): Promise<number> {
  let args: PlanArgs;
  try {
    args = parsePlanArgs(argv);
  } catch (e) {
    return reportError(PLAN_COMMAND, e, err);
  }
  if (args.help) {
    out(helpText(PLAN_COMMAND));
    return EXIT.OK;
  }
  try {
    // Pulumi records where each resource was declared from `new Error().stack`; with source maps on
    // (tsx turns them on) every such stack is mapped back to TypeScript, about 15% of a plan's
    // time (node --cpu-prof). The plan prints no stack, so it does without (PHI3_DEBUG=1 keeps them).
    if (process.env.PHI3_DEBUG !== "1") process.setSourceMapsEnabled(false);
    // The heavy part (Pulumi, azure-native, the program) loads only now: --help and usage errors answer first.
    const { LOADED_AT_MS, loadBasePlan, planStack, formatPlan } = await import("./lib/plan-build.js");
    loadedAtMs = LOADED_AT_MS;
    const { diffPlans, formatDiff } = await import("./lib/plan-diff.js");
    const base = args.base === undefined ? undefined : loadBasePlan(args.base, args);
    const plan = await planStack(args.root, args.stack, args.subscriptionId);
    if (base) {
      const diff = diffPlans(base, plan, { base: args.base!, head: "working tree" });
      if (args.json) out(JSON.stringify(diff, null, 2));
      else formatDiff(diff).forEach((l) => out(l));
    } else if (args.json) {
      out(JSON.stringify(plan, null, 2));
    } else {
      formatPlan(plan).forEach((l) => out(l));
    }
    return EXIT.OK;
  } catch (e) {
    return reportError(PLAN_COMMAND, e, err, (e as Error | undefined)?.name === "ConfigError" ? `stack '${args.stack}': ` : "");
  }
}

if (require.main === module) {
  runAsMain("plan", async () => {
    const code = await main(process.argv.slice(2));
    // For cli/bench-plan.ts: wall time since process start and peak resident memory.
    if (process.env.PLAN_STATS === "1") {
      process.stderr.write(`plan-stats: wall_ms=${Math.round(performance.now())} max_rss_kb=${process.resourceUsage().maxRSS} load_ms=${Math.round(loadedAtMs)}\n`);
    }
    return code;
  }, "exit");
}
