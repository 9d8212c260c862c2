/**
 * `npm run serve:local -- --model DIR [--port 5001] [--key-file F] [--trace F]`
 *
 * Serves an MLflow model (what `npm run train:local` writes, or a downloaded job output) on
 * 127.0.0.1 behind cli/local/score_server.py, which speaks an Azure ML managed online
 * endpoint's contract: `POST /score` with `Authorization: Bearer <key>` and
 * `{"input_data": ..., "params": ...}`. Then, in another terminal:
 *
 *   ENDPOINT_URI=http://127.0.0.1:5001/score ENDPOINT_KEY=$(cat .venv/serve-local.key) npm run chat
 *
 * The key comes from `$ENDPOINT_KEY`, else from `--key-file` (default `.venv/serve-local.key`,
 * created with a random key and mode 0600 on first use). The key is never printed.
 * Exit codes: 2 bad usage; otherwise the server's.
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, statSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import * as path from "node:path";
import { EXIT, UsageError, helpText, parseCommandLine, reportError, runAsMain, type CommandSpec } from "../lib/cli";
import { ensurePythonEnv, PROJECT_ROOT } from "./lib/python-env";

/** The command line of serve:local (lib/cli.ts style). */
export const SERVE_LOCAL_COMMAND: CommandSpec = {
  name: "serve:local",
  usage: "npm run serve:local -- --model DIR",
  summary:
    "Serves an MLflow model on http://127.0.0.1:<port>/score like an Azure ML online endpoint\n" +
    '(key auth, {"input_data": ..., "params": ...}). The key: $ENDPOINT_KEY, else --key-file\n' +
    "(default .venv/serve-local.key, created on first use).",
  options: {
    model: { type: "string", value: "DIR", description: "MLflow model folder (from npm run train:local)" },
    port: { type: "string", value: "<port>", description: "port on 127.0.0.1 (default 5001; 0 picks a free one, printed when listening)" },
    "key-file": { type: "string", value: "F", description: "file holding the key (default .venv/serve-local.key)" },
    trace: { type: "string", value: "F", description: "append every request and answer to F (JSON lines)" },
    deployment: { type: "string", value: "<name>", description: "serve as this deployment: another name in the azureml-model-deployment header answers 404, as Azure does" },
  },
};

/** The help text. */
export const USAGE = helpText(SERVE_LOCAL_COMMAND);

/** Default key file, created with a random key on first use. */
export const DEFAULT_KEY_FILE = path.join(PROJECT_ROOT, ".venv", "serve-local.key");

/** Creates `file` with a random key (mode 0600) unless it exists. */
export function ensureKeyFile(file: string): void {
  if (existsSync(file)) return;
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, randomBytes(24).toString("base64url") + "\n", { mode: 0o600 });
}

/**
 * Whether `port` on 127.0.0.1 can be listened on now (port 0 always can). Checked before the
 * Python environment and the model load (tens of seconds), so a busy port is one line at once.
 * @returns undefined when free, else why not (e.g. `EADDRINUSE`).
 */
export function portProblem(port: number): Promise<string | undefined> {
  if (port === 0) return Promise.resolve(undefined);
  return new Promise((resolve) => {
    const probe = createServer();
    probe.once("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    probe.listen(port, "127.0.0.1", () => probe.close(() => resolve(undefined)));
  });
}

/** Runs the command; resolves to the exit code. */
export async function main(argv: string[]): Promise<number> {
  let values: Record<string, string | undefined>;
  try {
    const parsed = parseCommandLine(SERVE_LOCAL_COMMAND, argv);
    if (parsed.help) {
      process.stdout.write(`${USAGE}\n`);
      return EXIT.OK;
    }
    values = { port: "5001", ...(parsed.values as Record<string, string | undefined>) };
    if (!values.model) throw new UsageError("missing --model");
    if (!/^\d+$/.test(values.port!) || Number(values.port) > 65535) throw new UsageError(`--port must be a port number (0-65535; 0 picks a free one), got ${JSON.stringify(values.port)}`);
    if (!existsSync(values.model) || !statSync(values.model).isDirectory()) throw new UsageError(`--model ${values.model}: no such folder (an MLflow model from npm run train:local)`);
    const busy = await portProblem(Number(values.port));
    if (busy) throw new UsageError(`port ${values.port} on 127.0.0.1 is not free (${busy === "EADDRINUSE" ? "in use by another program" : busy}): pick another with --port <port>, or --port 0 for any free one`);
  } catch (e) {
    return reportError(SERVE_LOCAL_COMMAND, e, (l) => process.stderr.write(`${l}\n`));
  }
  const keyFile = values["key-file"] ?? DEFAULT_KEY_FILE;
  if (!process.env.ENDPOINT_KEY) {
    ensureKeyFile(keyFile);
    process.stderr.write(`serve:local: key in ${path.relative(process.cwd(), keyFile) || keyFile} (export ENDPOINT_KEY=$(cat ${keyFile}))\n`);
  }
  const python = await ensurePythonEnv("train", (line) => process.stderr.write(`${line}\n`));
  const args = [path.join(PROJECT_ROOT, "cli", "local", "score_server.py"), "--model", path.resolve(values.model), "--port", values.port!, "--key-file", keyFile];
  if (values.trace) args.push("--trace", path.resolve(values.trace));
  if (values.deployment) args.push("--deployment", values.deployment);
  const child = spawn(python, args, { stdio: "inherit" });
  for (const signal of ["SIGINT", "SIGTERM"] as const) process.on(signal, () => child.kill(signal));
  return new Promise((resolve) => child.on("close", (code) => resolve(code ?? 0)));
}

if (require.main === module) {
  runAsMain("serve:local", () => main(process.argv.slice(2)), "exit");
}
