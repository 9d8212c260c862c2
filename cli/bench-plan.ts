/**
 * Benchmark of the offline plan: `npm run bench -- [--runs <n>] [--stack <name>] [--json]`
 * runs `cli/plan.ts` on every stack file (or one) `runs` times (default 3) in fresh processes
 * and reports per stack the median wall time, the peak resident memory, and the median time
 * the same process took to load `@pulumi/pulumi` and the azure-native ML module, with the
 * ratio of the two, against the targets below. Exit 1 when a target is missed or a plan
 * fails (one line per failure, never a stack trace). Not part of `npm test`: timings belong
 * here, not in tests.
 */
import { spawnSync } from "child_process";
import * as path from "path";
import { EXIT, JSON_OPTION, STACK_OPTION, UsageError, checkStackName, helpText, parseCommandLine, reportError, runAsMain, type CommandSpec } from "../lib/cli";

/**
 * Targets on the 2-core CI machine: a plan stays well inside a PR check's budget, and within 2x
 * the time to load Pulumi and the ML module; `--help` of a command answers within 1 s of tsx's
 * own start (a process that only starts tsx), i.e. it loads nothing heavy.
 */
export const TARGETS = { medianWallMs: 10_000, maxRssMb: 1024, maxLoadRatio: 2, maxHelpOverTsxMs: 1000 };

/** The commands whose `--help` is timed (the slowest before issue 21: plan 6 s, doctor 8 s). */
const HELP_TIMED = ["cli/plan.ts", "cli/doctor.ts", "cli/train-local.ts", "cli/chat.ts"];

/** Median wall time of `node --import tsx <args>` over `runs` runs, ms. */
function medianStartMs(args: string[], runs: number): number {
  const times = Array.from({ length: runs }, () => {
    const started = performance.now();
    spawnSync(process.execPath, ["--import", "tsx", ...args], { cwd: ROOT, encoding: "utf8" });
    return performance.now() - started;
  });
  return Math.round(median(times));
}

/** `--help` time of each timed command minus tsx's own start, against {@link TARGETS}. */
export function benchHelp(runs: number): { tsxMs: number; commands: { file: string; ms: number; overTsxMs: number; pass: boolean }[] } {
  const tsxMs = medianStartMs(["-e", "0"], runs);
  return {
    tsxMs,
    commands: HELP_TIMED.map((file) => {
      const ms = medianStartMs([file, "--help"], runs);
      return { file, ms, overTsxMs: ms - tsxMs, pass: ms - tsxMs <= TARGETS.maxHelpOverTsxMs };
    }),
  };
}

const ROOT = path.resolve(__dirname, "..");

/** The command line of the benchmark. */
export const BENCH_COMMAND: CommandSpec = {
  name: "bench",
  usage: "npm run bench --",
  summary:
    "Times the offline plan of every stack (or --stack) in fresh processes: median wall time, peak\n" +
    "memory, and the ratio to the time the same process took to load @pulumi/pulumi and the\n" +
    `azure-native ML module (target <= ${TARGETS.maxLoadRatio}); and --help of the slowest commands\n` +
    `against tsx's own start (target <= ${TARGETS.maxHelpOverTsxMs} ms over it).`,
  options: {
    runs: { type: "string", value: "<n>", description: "plans per stack (default 3)" },
    stack: { ...STACK_OPTION, description: "benchmark this stack only (default: every Pulumi.<stack>.yaml)" },
    json: JSON_OPTION,
  },
};

/** One plan run's numbers. */
interface Sample {
  wallMs: number;
  loadMs: number;
  rssMb: number;
}

/** Result per stack. */
export interface BenchResult {
  stack: string;
  runs: number;
  medianWallMs?: number;
  medianLoadMs?: number;
  loadRatio?: number;
  peakRssMb?: number;
  pass: boolean;
  error?: string;
}

function runOnce(stack: string): Sample {
  const r = spawnSync(path.join(ROOT, "node_modules/.bin/tsx"), ["cli/plan.ts", "--stack", stack, "--json"], {
    cwd: ROOT,
    encoding: "utf8",
    maxBuffer: 64 * 1024 * 1024,
    env: { ...process.env, PLAN_STATS: "1" },
  });
  const m = /plan-stats: wall_ms=(\d+) max_rss_kb=(\d+) load_ms=(\d+)/.exec(r.stderr ?? "");
  if (r.status !== 0 || !m) {
    const line = (r.stderr ?? "").split("\n").find((l) => l.startsWith("plan:")) ?? (r.stderr ?? "").trim().split("\n")[0] ?? "";
    throw new Error(`plan of ${stack} failed (exit ${r.status}): ${line}`);
  }
  return { wallMs: Number(m[1]), rssMb: Number(m[2]) / 1024, loadMs: Number(m[3]) };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Benchmarks one stack; a failing plan is a result with `error`, never a throw. */
export function benchStack(stack: string, runs: number): BenchResult {
  try {
    const samples = Array.from({ length: runs }, () => runOnce(stack));
    const medianWallMs = median(samples.map((s) => s.wallMs));
    const medianLoadMs = median(samples.map((s) => s.loadMs));
    const peakRssMb = Math.round(Math.max(...samples.map((s) => s.rssMb)));
    const loadRatio = Math.round((medianWallMs / medianLoadMs) * 100) / 100;
    const pass = medianWallMs <= TARGETS.medianWallMs && peakRssMb <= TARGETS.maxRssMb && loadRatio <= TARGETS.maxLoadRatio;
    return { stack, runs, medianWallMs, medianLoadMs, loadRatio, peakRssMb, pass };
  } catch (e) {
    return { stack, runs, pass: false, error: (e as Error).message };
  }
}

/** Runs the benchmark; resolves to the exit code. */
export async function main(argv: string[]): Promise<number> {
  let runs = 3;
  let stacks: string[];
  let json = false;
  try {
    const { values, help } = parseCommandLine(BENCH_COMMAND, argv);
    if (help) {
      console.log(helpText(BENCH_COMMAND));
      return EXIT.OK;
    }
    if (values.runs !== undefined) {
      runs = Number(values.runs);
      if (!Number.isInteger(runs) || runs < 1 || runs > 50) throw new UsageError(`--runs must be an integer from 1 to 50, got ${JSON.stringify(values.runs)}`);
    }
    const all = (await import("../lib/stack-config.js")).listStacks(ROOT);
    if (values.stack !== undefined) {
      const stack = checkStackName(values.stack as string);
      if (!all.includes(stack)) throw new UsageError(`--stack '${stack}': Pulumi.${stack}.yaml not found; stacks here: ${all.join(", ")}`);
      stacks = [stack];
    } else {
      stacks = all;
    }
    json = values.json === true;
  } catch (e) {
    return reportError(BENCH_COMMAND, e, (l) => console.error(l));
  }
  const results = stacks.map((s) => benchStack(s, runs));
  const help = benchHelp(runs);
  if (json) {
    console.log(JSON.stringify({ targets: TARGETS, results, help }, null, 2));
  } else {
    for (const r of results) {
      if (r.error) {
        console.log(`FAIL ${r.stack.padEnd(12)} ${r.error}`);
        continue;
      }
      console.log(
        `${r.pass ? "ok  " : "MISS"} ${r.stack.padEnd(12)} median ${r.medianWallMs} ms (target ${TARGETS.medianWallMs}), peak RSS ${r.peakRssMb} MB (target ${TARGETS.maxRssMb}), ` +
          `load of @pulumi/pulumi + azure-native ML ${r.medianLoadMs} ms: plan/load ${r.loadRatio} (target <= ${TARGETS.maxLoadRatio}), ${r.runs} runs`,
      );
    }
    for (const c of help.commands) {
      console.log(`${c.pass ? "ok  " : "MISS"} ${`${c.file} --help`.padEnd(28)} ${c.ms} ms, ${c.overTsxMs} ms over tsx's own start (${help.tsxMs} ms; target <= ${TARGETS.maxHelpOverTsxMs})`);
    }
  }
  return results.every((r) => r.pass) && help.commands.every((c) => c.pass) ? EXIT.OK : EXIT.FAILED;
}

if (require.main === module) runAsMain("bench", () => main(process.argv.slice(2)), "exit");
