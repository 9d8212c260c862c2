/**
 * Runs the real program (index.ts) under Pulumi mocks for tests: the dev stack's config from
 * Pulumi.yaml + Pulumi.dev.yaml, overlaid with per-test overrides, in preview or up mode.
 */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { vi } from "vitest";
import { ProgramRun, readStackConfig, Registration, runProgram } from "../../lib/mock-runtime";

export const ROOT = path.resolve(__dirname, "../..");

/** Config overrides: key without namespace (or `ns:key`) → value (objects as objects); `undefined` removes the key. */
export type Overrides = Record<string, unknown>;

/** Fully qualified config of a stack file with overrides applied. */
export function stackConfig(stack: string, overrides: Overrides = {}): { project: string; config: Record<string, string> } {
  const { project, config } = readStackConfig(ROOT, stack);
  for (const [k, v] of Object.entries(overrides)) {
    const key = k.includes(":") ? k : `${project}:${k}`;
    if (v === undefined) delete config[key];
    else config[key] = typeof v === "string" ? v : JSON.stringify(v);
  }
  return { project, config };
}

/** Run the program fresh (modules reset) and return the registrations and outputs. */
export async function runStack(
  opts: {
    preview?: boolean;
    stack?: string;
    overrides?: Overrides;
    subscriptionId?: string;
    cwd?: string;
    secretKeys?: string[];
    /** Outputs of command resources as if they had run (see RunOptions.commandOutputs). */
    commandOutputs?: (name: string, inputs: Record<string, any>) => Record<string, unknown> | undefined;
  } = {},
): Promise<ProgramRun> {
  const stack = opts.stack ?? "dev";
  const { project, config } = stackConfig(stack, opts.overrides);
  vi.resetModules();
  const cwd = process.cwd();
  // `cwd`: a copy of the project (see projectCopy) whose files a test changed; the program reads files relative to it.
  process.chdir(opts.cwd ?? ROOT);
  try {
    return await runProgram({
      project,
      stack,
      config,
      secretKeys: opts.secretKeys,
      preview: opts.preview ?? false,
      subscriptionId: opts.subscriptionId,
      commandOutputs: opts.commandOutputs,
      load: async () => (await import("../../index.js")) as Record<string, unknown>,
    });
  } finally {
    process.chdir(cwd);
  }
}

/** The registrations of one type (token like `azure-native:machinelearningservices:Compute`). */
export function ofType(run: ProgramRun, type: string): Registration[] {
  return run.registrations.filter((r) => r.type === type);
}

/** The one registration with this logical name; throws when absent or ambiguous. */
export function byName(run: ProgramRun, name: string): Registration {
  const found = run.registrations.filter((r) => r.name === name);
  if (found.length !== 1) throw new Error(`expected one resource named ${name}, found ${found.length}`);
  return found[0];
}

/** Environment of a command resource (secrets unwrapped). */
export function commandEnv(r: Registration): Record<string, string> {
  return r.inputs.environment as Record<string, string>;
}

/**
 * A throwaway copy of what the program reads from disk (finetuning_dir/, test/fixtures/data/),
 * for tests that change those files without touching the repository. Returns its path.
 */
export function projectCopy(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "phi3-project-"));
  for (const sub of ["finetuning_dir", "test/fixtures/data"]) fs.cpSync(path.join(ROOT, sub), path.join(dir, sub), { recursive: true });
  return dir;
}
