/**
 * Run by test/help-light.test.ts in a fresh process (`node --import tsx`): for every command of
 * cli/, loads the module and asks `--help` and a usage error in-process, then prints which heavy
 * packages had been loaded by then (one JSON line). `--help` must answer before any of them.
 */
import Module from "node:module";
import * as path from "node:path";

/** Packages that take seconds to load on the CI machine: a command's help must not need them. */
export const HEAVY = ["@pulumi/pulumi", "@pulumi/azure-native", "@pulumi/command", "@azure/identity", "zod"];

const seen = new Set<string>();
const original = (Module as unknown as { _load: (request: string, ...rest: unknown[]) => unknown })._load;
(Module as unknown as { _load: (request: string, ...rest: unknown[]) => unknown })._load = function (request: string, ...rest: unknown[]) {
  for (const h of HEAVY) if (request === h || request.startsWith(`${h}/`)) seen.add(h);
  return original.call(this, request, ...rest);
};

const ROOT = path.resolve(__dirname, "../..");

async function main(): Promise<void> {
  const results: Record<string, { help: number; usage: number; heavy: string[] }> = {};
  const quiet = { out: () => undefined, err: () => undefined };
  const silence = <T>(fn: () => Promise<T>): Promise<T> => {
    const [out, err, log, error] = [process.stdout.write, process.stderr.write, console.log, console.error];
    process.stdout.write = (() => true) as never;
    process.stderr.write = (() => true) as never;
    console.log = console.error = () => undefined;
    return fn().finally(() => {
      process.stdout.write = out;
      process.stderr.write = err;
      console.log = log;
      console.error = error;
    });
  };
  const commands: Record<string, (argv: string[]) => Promise<number>> = {
    plan: async (argv) => (await import(path.join(ROOT, "cli/plan.ts"))).main(argv, quiet.out, quiet.err),
    doctor: async (argv) => (await import(path.join(ROOT, "cli/doctor.ts"))).main(argv, { ...quiet, env: {} }),
    chat: async (argv) => (await import(path.join(ROOT, "cli/chat.ts"))).main(argv, {}, { stdout: { write: () => true }, stderr: { write: () => true }, stdin: process.stdin, runPulumi: async () => null }),
    "train:local": async (argv) => (await import(path.join(ROOT, "cli/train-local.ts"))).main(argv),
    "serve:local": async (argv) => (await import(path.join(ROOT, "cli/serve-local.ts"))).main(argv),
    "setup:python": async (argv) => (await import(path.join(ROOT, "cli/setup-python.ts"))).main(argv),
    bench: async (argv) => (await import(path.join(ROOT, "cli/bench-plan.ts"))).main(argv),
    "bench:test": async (argv) => (await import(path.join(ROOT, "cli/bench-tests.ts"))).main(argv),
    test: async (argv) => (await import(path.join(ROOT, "cli/checks.ts"))).main("test", argv, () => 1, quiet.out, quiet.err),
  };
  for (const [name, run] of Object.entries(commands)) {
    seen.clear();
    const help = await silence(() => run(["--help"]));
    const usage = await silence(() => run(["--no-such-option"]));
    results[name] = { help, usage, heavy: [...seen] };
  }
  process.stdout.write(`${JSON.stringify(results)}\n`);
}

main().then(
  () => process.exit(0),
  (e) => {
    process.stderr.write(`${(e as Error).stack}\n`);
    process.exit(1);
  },
);
