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
import { PROJECT_ROOT } from "./lib/python-env";

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

async function main(): Promise<number> {
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
    return parts.every((p) => p.ok) && total <= TARGET_SECONDS ? 0 : 1;
  } finally {
    rmSync(venvRoot, { recursive: true, force: true });
  }
}

main().then((code) => process.exit(code));
