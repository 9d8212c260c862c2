/**
 * Benchmark of the offline plan: `npx tsx cli/bench-plan.ts [runs]` runs `cli/plan.ts` on
 * every stack file `runs` times (default 3) in fresh processes and reports the median wall
 * time and the peak resident memory per stack, against the targets below. Exit 1 when a
 * target is missed. Not part of `npm test`: timings belong here, not in tests.
 */
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";

/** Targets on the 2-core CI machine: a plan must stay well inside a PR check's budget. */
export const TARGETS = { medianWallMs: 10_000, maxRssMb: 1024 };

const ROOT = path.resolve(__dirname, "..");

function runOnce(stack: string): { wallMs: number; rssMb: number } {
  const r = spawnSync(path.join(ROOT, "node_modules/.bin/tsx"), ["cli/plan.ts", "--stack", stack, "--json"], {
    cwd: ROOT,
    encoding: "utf8",
    env: { ...process.env, PLAN_STATS: "1" },
  });
  const m = /plan-stats: wall_ms=(\d+) max_rss_kb=(\d+)/.exec(r.stderr ?? "");
  if (r.status !== 0 || !m) throw new Error(`plan of ${stack} failed (exit ${r.status}): ${r.stderr}`);
  return { wallMs: Number(m[1]), rssMb: Number(m[2]) / 1024 };
}

function main(): number {
  const runs = Number(process.argv[2] ?? 3);
  const stacks = fs.readdirSync(ROOT).flatMap((f) => /^Pulumi\.(.+)\.yaml$/.exec(f)?.[1] ?? []).sort();
  let ok = true;
  for (const stack of stacks) {
    const samples = Array.from({ length: runs }, () => runOnce(stack));
    const walls = samples.map((s) => s.wallMs).sort((a, b) => a - b);
    const median = walls[Math.floor(walls.length / 2)];
    const rss = Math.max(...samples.map((s) => s.rssMb));
    const pass = median <= TARGETS.medianWallMs && rss <= TARGETS.maxRssMb;
    ok &&= pass;
    console.log(`${pass ? "ok  " : "MISS"} ${stack.padEnd(12)} median ${median} ms (target ${TARGETS.medianWallMs}), peak RSS ${rss.toFixed(0)} MB (target ${TARGETS.maxRssMb}), ${runs} runs`);
  }
  return ok ? 0 : 1;
}

if (require.main === module) process.exit(main());
