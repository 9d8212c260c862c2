import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it, vi } from "vitest";
import { parseConfig } from "../infra/config";
import { fineTuneArguments } from "../infra/training";
import { checkData, localFineTuneArgs, main, parseTrainLocalArgs, resolveJsonl, UsageError } from "../cli/train-local";
import { ROOT } from "./helpers/stack";

const FIX = join(ROOT, "test", "fixtures", "data");
const work = mkdtempSync(join(tmpdir(), "train-local-test-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe("train:local command line", () => {
  it("needs the three paths; defaults to the dev stack, 1 epoch, 256 tokens", () => {
    expect(parseTrainLocalArgs(["--train-file", "a", "--eval-file", "b", "--output", "o"])).toEqual({
      trainFile: "a", evalFile: "b", output: "o", baseModel: undefined, stack: "dev", epochs: 1, maxSeqLength: 256,
    });
    expect(parseTrainLocalArgs(["--help"])).toBeUndefined();
  });

  it.each([
    [[], /missing --train-file, --eval-file, --output/],
    [["--train-file", "a", "--eval-file", "b"], /missing --output/],
    [["--train-file", "a", "--eval-file", "b", "--output", "o", "--epochs", "0"], /--epochs must be an integer >= 1/],
    [["--train-file", "a", "--eval-file", "b", "--output", "o", "--max-seq-length", "x"], /--max-seq-length must be/],
    [["--train-file", "a", "--eval-file", "b", "--output", "o", "--bogus"], /bogus/],
  ])("%j is a usage error", (argv, message) => {
    expect(() => parseTrainLocalArgs(argv as string[])).toThrow(UsageError);
    expect(() => parseTrainLocalArgs(argv as string[])).toThrow(message);
  });
});

describe("train:local data checks (the plan's)", () => {
  it("takes a file, or a folder holding exactly one .jsonl, as fine_tune.py does", () => {
    const folder = join(work, "one");
    mkdirSync(folder);
    writeFileSync(join(folder, "train.jsonl"), "{}\n");
    writeFileSync(join(folder, ".hidden.jsonl"), "{}\n");
    expect(resolveJsonl(folder)).toBe(join(folder, "train.jsonl"));
    writeFileSync(join(folder, "more.jsonl"), "{}\n");
    expect(() => resolveJsonl(folder)).toThrow(/exactly one \.jsonl file, found 2/);
    expect(() => resolveJsonl(join(work, "nope"))).toThrow(/no such file or folder/);
  });

  it("reports bad lines as file:line and splits too short to fill one sequence", () => {
    const bad = join(FIX, "bad", "mixed.jsonl");
    const r = checkData({ trainFile: bad, evalFile: join(FIX, "test.jsonl"), maxSeqLength: 256 });
    expect(r.problems[0]).toBe(`${bad}:3: invalid JSON: ${r.problems[0].split("invalid JSON: ")[1]}`);
    const short = checkData({ trainFile: join(FIX, "train.jsonl"), evalFile: join(FIX, "test.jsonl"), maxSeqLength: 32768 });
    expect(short.problems).toEqual([
      expect.stringMatching(/^--train-file .*train\.jsonl renders to at most \d+ tokens.*--max-seq-length = 32768/),
      expect.stringMatching(/^--eval-file .*test\.jsonl renders to at most/),
    ]);
    expect(checkData({ trainFile: join(FIX, "train.jsonl"), evalFile: join(FIX, "test.jsonl"), maxSeqLength: 256 })).toMatchObject({ problems: [], warnings: [] });
  });

  it("runs fine_tune.py with the job's arguments, changed only where a CPU needs it", () => {
    const c = parseConfig({ location: "eastus2" }).config;
    const args = localFineTuneArgs(fineTuneArguments(c), { trainFile: "t", evalFile: "e", output: "/o", stack: "dev", epochs: 1, maxSeqLength: 256 }, ["/t.jsonl", "/e.jsonl"], "/base");
    const job = Object.fromEntries(fineTuneArguments(c));
    const local = Object.fromEntries(args.slice(0, -3).reduce<[string, string][]>((pairs, v, i, all) => (i % 2 ? pairs : [...pairs, [v, all[i + 1]]]), []));
    expect(Object.keys(local)).toEqual(Object.keys(job));
    const changed = Object.keys(job).filter((k) => job[k] !== local[k]);
    expect(changed).toEqual(["--train-file", "--eval-file", "--model-output", "--base-model", "--epochs", "--max-seq-length", "--serving-dtype"]);
    expect(local["--serving-dtype"]).toBe("float32");
    expect(args.slice(-3)).toEqual(["--logging-steps", "1", "--no-log-model-to-run"]);
  });

  it("invalid JSONL exits 1 naming file and line, before any Python environment or training", async () => {
    const venvs = join(work, "venvs");
    mkdirSync(venvs);
    vi.stubEnv("PHI3_VENV_ROOT", venvs);
    const err = vi.spyOn(process.stderr, "write").mockImplementation(() => true);
    try {
      const bad = join(FIX, "bad", "mixed.jsonl");
      const code = await main(["--train-file", bad, "--eval-file", join(FIX, "test.jsonl"), "--output", join(work, "model")]);
      expect(code).toBe(1);
      const text = err.mock.calls.map((c) => String(c[0])).join("");
      expect(text).toContain(`${bad}:3: invalid JSON`);
      expect(text).toContain("nothing was trained");
      expect(readdirSync(venvs)).toEqual([]);
      expect(existsSync(join(work, "model"))).toBe(false);
    } finally {
      err.mockRestore();
      vi.unstubAllEnvs();
    }
  });

  it("an unknown stack is a usage error (exit 2) naming the file", async () => {
    const err = vi.spyOn(process.stderr, "write").mockImplementation(() => true);
    try {
      expect(await main(["--train-file", "a", "--eval-file", "b", "--output", "o", "--stack", "nope"])).toBe(2);
      expect(err.mock.calls.map((c) => String(c[0])).join("")).toContain("Pulumi.nope.yaml not found");
    } finally {
      err.mockRestore();
    }
  });
});
