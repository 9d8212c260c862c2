/**
 * Runs a program of jobs/ or cli/ as `pulumi up` does: its own Node process (`node --import tsx`,
 * what `npx tsx` does in one process), with only the environment given (plus PATH, HOME and the
 * test certificate), and reports how and when it ended. A safety timer kills it (by its pid)
 * if it outlives `killAfterMs`, so a regression fails the test instead of hanging it.
 */
import { spawn } from "node:child_process";
import path from "node:path";
import { ROOT } from "./stack";

/**
 * Every program `pulumi up` runs (each file of jobs/, with the argument that picks its mode),
 * named as the fault table and the secret sweep name their rows: the one list both tests run
 * over, so a new job cannot be covered by one and forgotten by the other.
 */
export const JOB_PROGRAMS = {
  preflight: ["jobs/preflight.ts", []],
  "preflight storage-reach": ["jobs/preflight.ts", []],
  "submit-job": ["jobs/submit-job.ts", []],
  "wait-for-job": ["jobs/wait-for-job.ts", []],
  "set-traffic apply": ["jobs/set-traffic.ts", ["apply"]],
  "set-traffic release": ["jobs/set-traffic.ts", ["release"]],
  "upload-blobs": ["jobs/upload-blobs.ts", []],
  "deployment-capacity": ["jobs/deployment-capacity.ts", []],
  "quality-gate": ["jobs/quality-gate.ts", []],
  "smoke-test deployment": ["jobs/smoke-test.ts", ["deployment"]],
  "smoke-test endpoint": ["jobs/smoke-test.ts", ["endpoint"]],
} as const satisfies Record<string, readonly [string, readonly string[]]>;

/** A row name of {@link JOB_PROGRAMS}. */
export type JobProgram = keyof typeof JOB_PROGRAMS;

/** How a program run ended. */
export interface ProgramExit {
  /** Exit code; `null` when it had to be killed. */
  code: number | null;
  /** Whether the safety timer killed it. */
  killed: boolean;
  stdout: string;
  stderr: string;
  /** Epoch ms of the spawn and of the exit. */
  startedAt: number;
  exitedAt: number;
}

/**
 * Spawns `node --import tsx <file> ...args` in the project folder.
 *
 * @param file - project-relative path, e.g. `jobs/wait-for-job.ts`.
 * @param env - the program's environment (nothing of the test process's leaks in but PATH, HOME, NODE_EXTRA_CA_CERTS).
 * @param killAfterMs - safety bound; default 60000.
 */
export function spawnProgram(file: string, args: readonly string[], env: Record<string, string | undefined>, killAfterMs = 60_000): Promise<ProgramExit> {
  const startedAt = Date.now();
  const child = spawn(process.execPath, ["--import", "tsx", path.join(ROOT, file), ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, NODE_EXTRA_CA_CERTS: process.env.NODE_EXTRA_CA_CERTS, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (c: Buffer) => (stdout += c.toString("utf8")));
  child.stderr.on("data", (c: Buffer) => (stderr += c.toString("utf8")));
  let killed = false;
  const safety = setTimeout(() => {
    killed = true;
    child.kill("SIGKILL");
  }, killAfterMs);
  return new Promise((resolve, reject) => {
    child.on("error", (e) => {
      clearTimeout(safety);
      reject(e);
    });
    let exitedAt = 0;
    child.on("exit", () => (exitedAt = Date.now()));
    child.on("close", (code) => {
      clearTimeout(safety);
      resolve({ code, killed, stdout, stderr, startedAt, exitedAt: exitedAt || Date.now() });
    });
  });
}
