/**
 * `npm run setup:python [-- train|promptflow ...]`: create or reuse the project's Python
 * environments (see cli/lib/python-env.ts), all of them by default, in parallel. `npm test`
 * runs it first, so `npm ci && npm test` is the whole set-up on a fresh machine.
 * Exit codes: 0 ready, 1 an environment could not be created, 2 bad usage.
 */
import { parseArgs } from "node:util";
import { ensurePythonEnv, PYTHON_ENVS, type PythonEnvName } from "./lib/python-env";

async function main(): Promise<number> {
  let names: PythonEnvName[];
  try {
    const { positionals } = parseArgs({ allowPositionals: true, options: {} });
    const known = Object.keys(PYTHON_ENVS) as PythonEnvName[];
    const unknown = positionals.filter((p) => !known.includes(p as PythonEnvName));
    if (unknown.length) throw new Error(`unknown environment ${unknown.join(", ")}; known: ${known.join(", ")}`);
    names = positionals.length ? (positionals as PythonEnvName[]) : known;
  } catch (e) {
    console.error(`setup:python: ${(e as Error).message}`);
    return 2;
  }
  const log = (line: string) => console.error(line);
  try {
    const pythons = await Promise.all(names.map((n) => ensurePythonEnv(n, log)));
    names.forEach((n, i) => console.error(`python env ${n}: ${pythons[i]}`));
    return 0;
  } catch (e) {
    console.error(`setup:python: ${(e as Error).message}`);
    return 1;
  }
}

main().then((code) => process.exit(code));
