/**
 * The project's Python environments, created under `.venv/` on first use and reused after.
 *
 * - `train` (`.venv/train`, from `cli/local/requirements.txt`): the fine-tune job's pins
 *   (finetuning_dir/conda.yml) with the CPU build of torch; runs `fine_tune.py`,
 *   `prepare_data.py`, the local scoring server and the real-library tests.
 * - `promptflow` (`.venv/promptflow`, from `cli/local/requirements-promptflow.txt`): the
 *   `promptflow` package for `pf flow test` (kept apart: it needs protobuf 6, mlflow 2.16.2 refuses it).
 * - `sdk` (`.venv/sdk`, from `cli/local/requirements-sdk.txt`): Azure's Python SDK `azure-ai-ml`,
 *   the oracle of the conformance test (test/conformance.test.ts): the REST bodies the SDK builds
 *   for the same entities, compared with the bodies this project sends.
 *
 * An environment is reused while a stamp file in it holds the SHA-256 of its requirements file
 * and of the interpreter's version; otherwise it is deleted and created again
 * (`python -m venv`, then `pip install -r`). The interpreter is `$PYTHON` or `python3`.
 */
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import * as path from "node:path";

/** Project root (this file is `cli/lib/python-env.ts`). */
export const PROJECT_ROOT = path.resolve(__dirname, "..", "..");

/** The environments and their requirements files (project-relative). */
export const PYTHON_ENVS = {
  train: "cli/local/requirements.txt",
  promptflow: "cli/local/requirements-promptflow.txt",
  sdk: "cli/local/requirements-sdk.txt",
} as const;

export type PythonEnvName = keyof typeof PYTHON_ENVS;

const STAMP = ".requirements.sha256";

/** Folder of an environment (`.venv/<name>` under the project, or `$PHI3_VENV_ROOT/<name>`). */
export function envDir(name: PythonEnvName): string {
  return path.join(process.env.PHI3_VENV_ROOT ?? path.join(PROJECT_ROOT, ".venv"), name);
}

/** Path of an environment's interpreter (it may not exist yet). */
export function envPython(name: PythonEnvName): string {
  return path.join(envDir(name), "bin", "python");
}

function basePython(): string {
  return process.env.PYTHON ?? "python3";
}

/**
 * Stamp of an environment: SHA-256 of its requirements file and of the base interpreter's
 * version. Throws when the interpreter cannot be run.
 */
export function envStamp(name: PythonEnvName): string {
  const requirements = readFileSync(path.join(PROJECT_ROOT, PYTHON_ENVS[name]));
  const version = spawnSync(basePython(), ["--version"], { encoding: "utf8" });
  if (version.status !== 0) throw new Error(`cannot run ${basePython()} (set PYTHON to a Python 3.10-3.12 interpreter)`);
  return createHash("sha256").update(requirements).update(version.stdout + version.stderr).digest("hex");
}

/** True when the environment exists and was built from the current requirements. */
export function envIsReady(name: PythonEnvName): boolean {
  const stampFile = path.join(envDir(name), STAMP);
  return existsSync(envPython(name)) && existsSync(stampFile) && readFileSync(stampFile, "utf8").trim() === envStamp(name);
}

function run(command: string, args: string[], log: (line: string) => void, onLine?: (line: string) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: PROJECT_ROOT, stdio: ["ignore", "pipe", "pipe"] });
    let tail = "";
    let partial = "";
    const keep = (chunk: Buffer) => {
      tail = (tail + chunk.toString()).slice(-4000);
    };
    child.stdout.on("data", (chunk: Buffer) => {
      keep(chunk);
      if (!onLine) return;
      const lines = (partial + chunk.toString()).split("\n");
      partial = lines.pop() ?? "";
      lines.forEach(onLine);
    });
    child.stderr.on("data", keep);
    child.on("error", reject);
    child.on("close", (code) => {
      if (code === 0) return resolve();
      log(tail);
      reject(new Error(`${path.basename(command)} ${args.slice(0, 3).join(" ")} ... exited with ${code}`));
    });
  });
}

/** Seconds between two progress lines while pip works. */
export const PROGRESS_EVERY_SECONDS = 15;

/**
 * Progress of a `pip install` from its output lines ("Collecting x", "Installing collected
 * packages: ..."): a line when installing starts, and at most one every
 * {@link PROGRESS_EVERY_SECONDS} while packages are being collected, so a first run that takes
 * minutes is never silent. `now` is injectable for tests.
 */
export function pipProgress(name: string, log: (line: string) => void, now: () => number = Date.now): (line: string) => void {
  const started = now();
  let last = started;
  let collected = 0;
  return (line) => {
    if (/^Collecting \S/.test(line)) {
      collected++;
      if (now() - last >= PROGRESS_EVERY_SECONDS * 1000) {
        last = now();
        log(`python env ${name}: ${collected} packages resolved (${Math.round((last - started) / 1000)} s)`);
      }
      return;
    }
    const installing = /^Installing collected packages: (.*)$/.exec(line);
    if (installing) log(`python env ${name}: installing ${installing[1].split(",").length} packages (${Math.round((now() - started) / 1000)} s)`);
  };
}

/**
 * Make sure the environment exists and matches its requirements; returns its interpreter path.
 * Creating it takes about two minutes for `train` (pip resolves and installs the pins, torch
 * from the CPU wheel), about one for `promptflow`, about 20 s for `sdk`; all are created in parallel by
 * `npm run setup:python`. `--no-compile`: Python compiles on first import only what is used,
 * instead of pip byte-compiling every installed file (torch alone has thousands). `log` receives progress lines.
 * @throws Error naming the step that failed, with the tail of pip's output logged.
 */
export async function ensurePythonEnv(name: PythonEnvName, log: (line: string) => void = () => {}): Promise<string> {
  if (envIsReady(name)) return envPython(name);
  const dir = envDir(name);
  const started = Date.now();
  log(`python env ${name}: creating ${path.relative(PROJECT_ROOT, dir)} from ${PYTHON_ENVS[name]} (first run only)`);
  rmSync(dir, { recursive: true, force: true });
  await run(basePython(), ["-m", "venv", dir], log);
  await run(
    envPython(name),
    ["-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--progress-bar", "off", "--no-compile", "-r", path.join(PROJECT_ROOT, PYTHON_ENVS[name])],
    log,
    pipProgress(name, log),
  );
  writeFileSync(path.join(dir, STAMP), envStamp(name) + "\n");
  log(`python env ${name}: ready in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  return envPython(name);
}

/** Interpreter of an environment that must already exist (tests); throws with the fix named. */
export function requirePython(name: PythonEnvName): string {
  if (!envIsReady(name)) {
    throw new Error(`Python environment '${name}' is missing or outdated: run \`npm run setup:python\` (npm test does it first)`);
  }
  return envPython(name);
}
