/**
 * `npm run train:local -- --train-file F --eval-file F --output DIR [--base-model PATH]
 *   [--stack dev] [--epochs 1] [--max-seq-length 256]`
 *
 * The smoke run to do before paying for an A100 hour: validates the chat JSONL exactly as the
 * plan does (infra/jsonl.ts, line by line, and whether each split fills one packed sequence),
 * then runs the real `finetuning_dir/fine_tune.py` in the project's Python environment
 * (`.venv/train`, created on first use, the job's pins with the CPU build of torch) with the
 * arguments the Azure ML job gets for the stack (`fineTuneArguments`), overridden for a CPU:
 * 1 epoch, a short maximum sequence length, float32 weights, a progress line every step. It
 * writes an MLflow model to DIR that `npm run serve:local -- --model DIR` serves.
 *
 * `--train-file` / `--eval-file` take a JSONL file or a folder holding exactly one `.jsonl`
 * (what `prepare_data.py` writes). Without `--base-model`, a tiny Phi-3 with random weights
 * and a tokenizer trained on the training file is built first (cli/local/tiny_phi3.py), so
 * nothing is downloaded; `--base-model` takes a local folder or a Hugging Face id.
 *
 * Exit codes: 0 model written; 1 invalid data, output folder not empty, or training failed;
 * 2 bad usage or stack config.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import type { StackConfig } from "../infra/config";
import { formatJsonlIssues, packingCheck, validateChatJsonlFile } from "../infra/jsonl";
import { EXIT, STACK_OPTION, UsageError, checkStackName, helpText, parseCommandLine, reportError, runAsMain, type CommandSpec } from "../lib/cli";
import { ensurePythonEnv, PROJECT_ROOT } from "./lib/python-env";

/** The command line of train:local (lib/cli.ts style). */
export const TRAIN_LOCAL_COMMAND: CommandSpec = {
  name: "train:local",
  usage: "npm run train:local -- --train-file F --eval-file F --output DIR",
  summary:
    "Fine-tunes with the real finetuning_dir/fine_tune.py on this machine's CPU and writes an MLflow\n" +
    "model to DIR: the check to run before an A100 hour is spent.",
  options: {
    "train-file": { type: "string", value: "F", description: "training chat JSONL, or a folder with exactly one .jsonl" },
    "eval-file": { type: "string", value: "F", description: "evaluation chat JSONL, or a folder with exactly one .jsonl" },
    output: { type: "string", value: "DIR", description: "new or empty folder for the MLflow model" },
    "base-model": { type: "string", value: "PATH", description: "base model folder or Hugging Face id (default: a tiny random Phi-3 built on the fly, nothing downloaded)" },
    stack: { ...STACK_OPTION, description: "stack whose hyperparameters the job gets (default dev)" },
    epochs: { type: "string", value: "N", description: "epochs (default 1)" },
    "max-seq-length": { type: "string", value: "N", description: "packed sequence length in tokens (default 256)" },
  },
};

/** The help text. */
export const USAGE = helpText(TRAIN_LOCAL_COMMAND);

/** Parsed command line. */
export interface TrainLocalArgs {
  trainFile: string;
  evalFile: string;
  output: string;
  baseModel?: string;
  stack: string;
  epochs: number;
  maxSeqLength: number;
}

export { UsageError } from "../lib/cli";

function positiveInt(name: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`--${name} must be an integer >= 1, got ${JSON.stringify(text)}`);
  return n;
}

/** Parses the command line (without node and script). Returns undefined for --help. @throws {UsageError} */
export function parseTrainLocalArgs(argv: string[]): TrainLocalArgs | undefined {
  const { values, help } = parseCommandLine(TRAIN_LOCAL_COMMAND, argv);
  if (help) return undefined;
  const v = values as Record<string, string | undefined>;
  const missing = (["train-file", "eval-file", "output"] as const).filter((k) => !v[k]);
  if (missing.length) throw new UsageError(`missing ${missing.map((k) => `--${k}`).join(", ")}`);
  return {
    trainFile: v["train-file"]!,
    evalFile: v["eval-file"]!,
    output: v.output!,
    baseModel: v["base-model"],
    stack: checkStackName(v.stack ?? "dev"),
    epochs: positiveInt("epochs", v.epochs, 1),
    maxSeqLength: positiveInt("max-seq-length", v["max-seq-length"], 256),
  };
}

/**
 * The JSONL file a data argument designates: the file itself, or the only `.jsonl` at the top
 * of a folder (hidden files ignored), as fine_tune.py's `resolve_jsonl` does.
 * @throws {Error} naming the path when nothing or several candidates are there.
 */
export function resolveJsonl(p: string): string {
  if (!existsSync(p)) throw new Error(`${p}: no such file or folder`);
  if (!statSync(p).isDirectory()) return p;
  const found = readdirSync(p).filter((n) => !n.startsWith(".") && n.toLowerCase().endsWith(".jsonl") && statSync(path.join(p, n)).isFile());
  if (found.length !== 1) throw new Error(`${p}: a data folder must hold exactly one .jsonl file, found ${found.length}`);
  return path.join(p, found[0]);
}

/**
 * Everything wrong with the data before training, as the plan reports it: each file validated
 * line by line (`file:line: message`), then whether each split fills one packed sequence of
 * `maxSeqLength` tokens (refused when it certainly cannot). Returns the resolved files and the
 * problems (empty when fine) and warnings.
 */
export function checkData(args: Pick<TrainLocalArgs, "trainFile" | "evalFile" | "maxSeqLength">): {
  files: [string, string];
  problems: string[];
  warnings: string[];
} {
  const problems: string[] = [];
  const warnings: string[] = [];
  const files: string[] = [];
  for (const [flag, given] of [["--train-file", args.trainFile], ["--eval-file", args.evalFile]] as const) {
    let file: string;
    try {
      file = resolveJsonl(given);
    } catch (e) {
      problems.push(`${flag}: ${(e as Error).message}`);
      files.push(given);
      continue;
    }
    files.push(file);
    const result = validateChatJsonlFile(file);
    if (result.errors.length) {
      problems.push(...formatJsonlIssues(result.errors).split("\n"));
      continue;
    }
    const packing = packingCheck(`${flag} ${file}`, result.tokens, args.maxSeqLength);
    if (packing.error) problems.push(packing.error.replace("hyperparameters.maxSeqLength", "--max-seq-length"));
    if (packing.warning) warnings.push(packing.warning.replace("hyperparameters.maxSeqLength", "--max-seq-length"));
  }
  return { files: files as [string, string], problems, warnings };
}

/**
 * The fine_tune.py arguments for a local run: the Azure ML job's (`fineTuneArguments`) with
 * the bindings replaced by local paths and the CPU overrides (epochs, max sequence length,
 * float32 serving weights, a progress line every step, no second copy of the model in MLflow).
 *
 * @param jobArgs - infra/training.ts `fineTuneArguments(config)` (loaded by main after the
 *   command line: it brings Pulumi, which `--help` should not wait for).
 */
export function localFineTuneArgs(jobArgs: readonly (readonly [string, string])[], a: TrainLocalArgs, files: [string, string], baseModel: string): string[] {
  const overrides: Record<string, string> = {
    "--train-file": files[0],
    "--eval-file": files[1],
    "--model-output": a.output,
    "--base-model": baseModel,
    "--epochs": String(a.epochs),
    "--max-seq-length": String(a.maxSeqLength),
    "--serving-dtype": "float32",
  };
  const args = jobArgs.flatMap(([flag, value]) => [flag, overrides[flag] ?? value]);
  return [...args, "--logging-steps", "1", "--no-log-model-to-run"];
}

function runPython(python: string, script: string, args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(python, [script, ...args], { cwd: path.dirname(script), stdio: ["ignore", "inherit", "inherit"], env });
    child.on("error", reject);
    child.on("close", (code) => resolve(code ?? 1));
  });
}

function outputProblem(dir: string): string | undefined {
  if (!existsSync(dir)) return undefined;
  if (!statSync(dir).isDirectory()) return `--output ${dir}: exists and is not a folder`;
  if (readdirSync(dir).length) return `--output ${dir}: not empty (the MLflow model needs a new or empty folder)`;
  return undefined;
}

/** Runs the command; resolves to the exit code. Never throws. */
export async function main(argv: string[] = process.argv.slice(2)): Promise<number> {
  const started = Date.now();
  const err = (line: string) => process.stderr.write(`${line}\n`);
  let args: TrainLocalArgs | undefined;
  let config: StackConfig;
  try {
    args = parseTrainLocalArgs(argv);
    if (!args) {
      process.stdout.write(`${USAGE}\n`);
      return EXIT.OK;
    }
    // Loaded after the command line: the stack config brings Pulumi and zod.
    config = (await import("../lib/stack-config.js")).loadStackConfig(PROJECT_ROOT, args.stack).config;
  } catch (e) {
    return reportError(TRAIN_LOCAL_COMMAND, e, err);
  }
  const data = checkData(args);
  const outProblem = outputProblem(args.output);
  const problems = [...data.problems, ...(outProblem ? [outProblem] : [])];
  for (const w of data.warnings) err(`train:local: warning: ${w}`);
  if (problems.length) {
    err(`train:local: nothing was trained (${problems.length} problem${problems.length === 1 ? "" : "s"}):`);
    for (const p of problems) err(`  - ${p}`);
    return 1;
  }

  const python = await ensurePythonEnv("train", (line) => err(line));
  const scratch = mkdtempSync(path.join(tmpdir(), "phi3-train-local-"));
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    MLFLOW_TRACKING_URI: process.env.MLFLOW_TRACKING_URI ?? `file://${path.join(scratch, "mlruns")}`,
    TOKENIZERS_PARALLELISM: "false",
    // fine_tune.py silences the warnings every local run prints, saying once why (EXPECTED_LOCAL_WARNINGS).
    PHI3_LOCAL_RUN: "1",
    HF_DATASETS_OFFLINE: args.baseModel ? process.env.HF_DATASETS_OFFLINE : "1",
  };
  try {
    let baseModel = args.baseModel;
    if (!baseModel) {
      baseModel = path.join(scratch, "tiny-phi3");
      err("train:local: building a tiny Phi-3 (random weights, tokenizer trained on the training file)");
      const code = await runPython(python, path.join(PROJECT_ROOT, "cli", "local", "tiny_phi3.py"), ["--output", baseModel, "--corpus", path.resolve(data.files[0])], env);
      if (code !== 0) return 1;
    }
    const { fineTuneArguments } = await import("../infra/training.js");
    const ftArgs = localFineTuneArgs(fineTuneArguments(config), { ...args, output: path.resolve(args.output) }, [path.resolve(data.files[0]), path.resolve(data.files[1])], baseModel);
    err(`train:local: python fine_tune.py ${ftArgs.join(" ")}`);
    const code = await runPython(python, path.join(PROJECT_ROOT, "finetuning_dir", "fine_tune.py"), ftArgs, env);
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    if (code !== 0) {
      err(`train:local: fine_tune.py failed (exit ${code}) after ${seconds} s`);
      return 1;
    }
    err(`train:local: MLflow model written to ${args.output} in ${seconds} s. Next: npm run serve:local -- --model ${args.output}`);
    return 0;
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

if (require.main === module) {
  runAsMain("train:local", () => main(), "exit");
}
