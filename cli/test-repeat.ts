/**
 * `npm run test:repeat -- [--runs N] [--load] [--command "<shell command>"]`: runs the test
 * command N times in a row (default: the README's `npm test`, 5 runs), optionally while a
 * second CPU-heavy process keeps one core busy (`--load`: a `node` child spinning in a loop,
 * so timing-dependent tests meet the load CI may have), and prints one closing line
 * `repeat: N passed, M failed`. It stops at the first failed run (the output of that run is
 * kept in a temporary file whose path it prints). Exit 0 when every run passed, 1 otherwise,
 * 2 on bad usage (lib/cli.ts).
 *
 * This is the proof issue 18 asks for ("`npm test` passes 5 runs in a row here under load");
 * run it under each Node version the project supports.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { EXIT, UsageError, helpText, parseCommandLine, reportError, runAsMain, type CommandSpec } from "../lib/cli";

/** The command line of test:repeat. */
export const TEST_REPEAT_COMMAND: CommandSpec = {
  name: "test:repeat",
  usage: "npm run test:repeat --",
  summary: "Runs the test command several times in a row, optionally beside a CPU-heavy process; prints 'repeat: N passed, M failed'.",
  options: {
    runs: { type: "string", value: "<n>", description: "how many runs (1-50; default 5)" },
    load: { type: "boolean", description: "keep a second process busy on the CPU during the runs" },
    command: { type: "string", value: "<shell command>", description: "what to run (default: npm test)" },
  },
};

/**
 * The busy loop of `--load`: one process, one core, until it is killed. Its command line names
 * the process that started it (`phi3-test-repeat-load <pid>`), so a run of the suite under an
 * outer `test:repeat --load` tells its own companion from the outer one.
 */
export function loadScript(ownerPid: number = process.pid): string {
  return `/* phi3-test-repeat-load ${ownerPid} */ let x = 0; for (;;) { x = (x * 1103515245 + 12345) % 2147483647; }`;
}

/** Starts the CPU-heavy companion process (killed by the caller). */
export function startLoad(): ChildProcess {
  return spawn(process.execPath, ["-e", loadScript()], { stdio: "ignore" });
}

function runOnce(command: string, log: string): Promise<number> {
  return new Promise((resolve) => {
    const out = createWriteStream(log);
    const child = spawn("bash", ["-c", command], { stdio: ["ignore", "pipe", "pipe"], env: process.env });
    child.stdout.pipe(out, { end: false });
    child.stderr.pipe(out, { end: false });
    child.on("close", (code) => out.end(() => resolve(code ?? 1)));
  });
}

/**
 * Runs the command line; resolves to the exit code.
 *
 * @param argv - the arguments after the script.
 * @param print - where the progress and closing lines go (stdout).
 */
export async function main(argv: string[], print: (line: string) => void = (l) => console.log(l)): Promise<number> {
  let runs = 5;
  let command = "npm test";
  let load = false;
  try {
    const { values, help } = parseCommandLine(TEST_REPEAT_COMMAND, argv);
    if (help) {
      print(helpText(TEST_REPEAT_COMMAND));
      return EXIT.OK;
    }
    if (values.runs !== undefined) {
      runs = Number(values.runs);
      if (!Number.isInteger(runs) || runs < 1 || runs > 50) throw new UsageError(`--runs '${values.runs}' is not a whole number from 1 to 50`);
    }
    if (typeof values.command === "string") command = values.command;
    load = values.load === true;
  } catch (e) {
    return reportError(TEST_REPEAT_COMMAND, e, (l) => console.error(l));
  }
  const logs = mkdtempSync(path.join(tmpdir(), "phi3-test-repeat-"));
  const companion = load ? startLoad() : undefined;
  let passed = 0;
  let failed = 0;
  try {
    print(`test:repeat: ${runs} run(s) of '${command}' under node ${process.version}${load ? ", beside a CPU-heavy process" : ""}`);
    for (let i = 1; i <= runs; i++) {
      const log = path.join(logs, `run-${i}.log`);
      const started = Date.now();
      const code = await runOnce(command, log);
      const seconds = Math.round((Date.now() - started) / 1000);
      if (code === 0) {
        passed++;
        print(`run ${i}/${runs}: passed in ${seconds} s`);
      } else {
        failed++;
        print(`run ${i}/${runs}: FAILED (exit ${code}) after ${seconds} s; its output: ${log}`);
        break;
      }
    }
  } finally {
    if (companion && companion.exitCode === null) {
      const gone = new Promise((resolve) => companion.once("exit", resolve));
      companion.kill("SIGKILL");
      await gone;
    }
  }
  print(`repeat: ${passed} passed, ${failed} failed`);
  return failed === 0 ? EXIT.OK : EXIT.FAILED;
}

if (require.main === module) runAsMain("test:repeat", () => main(process.argv.slice(2)), "exit");
