/**
 * `npm run bench:test`: the whole test run as a fresh machine does it, timed part by part.
 *
 * Creates the Python environments from scratch in a temporary folder (`PHI3_VENV_ROOT`, so the
 * project's own `.venv/` is left alone; pip's download cache is used if the machine has one),
 * then runs vitest and the Python tests against them, and prints the time of each part, the
 * total and the target: the whole run under 10 minutes on 2 cores (issue 15). Exit 0 when
 * every part passed and the total is within the target, 1 otherwise.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { EXIT, helpText, parseCommandLine, reportError, runAsMain, type CommandSpec } from "../lib/cli";
import { PROJECT_ROOT } from "./lib/python-env";

/** The command line of bench:test (no options besides --help). */
export const BENCH_TEST_COMMAND: CommandSpec = {
  name: "bench:test",
  usage: "npm run bench:test --",
  summary: "Times the whole test run from fresh Python environments: install, vitest, Python tests (target: 10 minutes).",
  options: {},
};

/** Target of the whole run, seconds. */
export const TARGET_SECONDS = 600;

function timed(label: string, command: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ label: string; seconds: number; ok: boolean }> {
  const started = Date.now();
  return new Promise((resolve) => {
    const child = spawn(command, args, { cwd: PROJECT_ROOT, env, stdio: ["ignore", "ignore", "pipe"] });
    let tail = "";
    child.stderr.on("data", (d: Buffer) => (tail = (tail + d.toString()).slice(-2000)));
    child.on("close", (code) => {
      const seconds = (Date.now() - started) / 1000;
      if (code !== 0) process.stderr.write(`${label} failed (exit ${code}):\n${tail}\n`);
      resolve({ label, seconds, ok: code === 0 });
    });
  });
}

/** Runs the benchmark; resolves to the exit code. */
export async function main(argv: string[]): Promise<number> {
  try {
    if (parseCommandLine(BENCH_TEST_COMMAND, argv).help) {
      console.log(helpText(BENCH_TEST_COMMAND));
      return EXIT.OK;
    }
  } catch (e) {
    return reportError(BENCH_TEST_COMMAND, e, (l) => console.error(l));
  }
  const venvRoot = mkdtempSync(path.join(tmpdir(), "phi3-bench-venv-"));
  const env = { ...process.env, PHI3_VENV_ROOT: venvRoot };
  try {
    const parts = [
      await timed("Python environments (first install)", "npx", ["--no-install", "tsx", "cli/setup-python.ts"], env),
      await timed("vitest", "npx", ["--no-install", "vitest", "run"], env),
      await timed("Python tests", "bash", ["test/python/run.sh"], env),
    ];
    const total = parts.reduce((s, p) => s + p.seconds, 0);
    for (const p of parts) console.log(`${p.label.padEnd(40)} ${p.seconds.toFixed(0).padStart(5)} s${p.ok ? "" : "  FAILED"}`);
    console.log(`${"total".padEnd(40)} ${total.toFixed(0).padStart(5)} s   target ${TARGET_SECONDS} s (${total <= TARGET_SECONDS ? "met" : "MISSED"})`);
    return parts.every((p) => p.ok) && total <= TARGET_SECONDS ? EXIT.OK : EXIT.FAILED;
  } finally {
    rmSync(venvRoot, { recursive: true, force: true });
  }
}

if (require.main === module) runAsMain("bench:test", () => main(process.argv.slice(2)), "exit");
