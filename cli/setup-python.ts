/**
 * `npm run setup:python [-- train|promptflow|sdk ...]`: create or reuse the project's Python
 * environments (see cli/lib/python-env.ts), all of them by default, in parallel. `npm test`
 * runs it first, so `npm ci && npm test` is the whole set-up on a fresh machine.
 * Exit codes (lib/cli.ts): 0 ready, 1 an environment could not be created, 2 bad usage.
 */
import { EXIT, UsageError, helpText, parseCommandLine, reportError, runAsMain, suggestion, type CommandSpec } from "../lib/cli";
import { ensurePythonEnv, PYTHON_ENVS, type PythonEnvName } from "./lib/python-env";

const KNOWN = Object.keys(PYTHON_ENVS) as PythonEnvName[];

/** The command line of setup:python. */
export const SETUP_PYTHON_COMMAND: CommandSpec = {
  name: "setup:python",
  usage: "npm run setup:python --",
  summary: "Creates (first run) or reuses the project's Python environments under .venv/, in parallel.",
  options: {},
  positionals: { value: `[${KNOWN.join("|")} ...]`, max: KNOWN.length, description: "environments to set up (default: all)" },
};

/** Runs the command; resolves to the exit code. */
export async function main(argv: string[]): Promise<number> {
  let names: PythonEnvName[];
  try {
    const { positionals, help } = parseCommandLine(SETUP_PYTHON_COMMAND, argv);
    if (help) {
      console.log(helpText(SETUP_PYTHON_COMMAND));
      return EXIT.OK;
    }
    const unknown = positionals.filter((p) => !KNOWN.includes(p as PythonEnvName));
    if (unknown.length) throw new UsageError(`unknown environment ${unknown.join(", ")}${suggestion(unknown[0], KNOWN)}; known: ${KNOWN.join(", ")}`);
    names = positionals.length ? (positionals as PythonEnvName[]) : KNOWN;
  } catch (e) {
    return reportError(SETUP_PYTHON_COMMAND, e, (l) => console.error(l));
  }
  const log = (line: string) => console.error(line);
  try {
    const pythons = await Promise.all(names.map((n) => ensurePythonEnv(n, log)));
    names.forEach((n, i) => console.error(`python env ${n}: ${pythons[i]}`));
    return EXIT.OK;
  } catch (e) {
    console.error(`setup:python: ${(e as Error).message}`);
    return EXIT.FAILED;
  }
}

if (require.main === module) runAsMain("setup:python", () => main(process.argv.slice(2)), "exit");
