/**
 * Config fuzzing, in-process: a seeded generator mutates the real stack files into at least
 * 300 stack files, each of a class whose verdict is known (valid, or invalid naming a key or
 * the file), and runs them through the config loader the plan and the program use
 * (lib/stack-config.ts `loadStackConfig`: stack file, schema, data files, Azure names).
 * For every case: valid → accepted; invalid → rejected by a config, stack-file or usage error
 * whose message names the key (or the file), says more than zod's "Invalid input", and carries
 * no stack trace; no case takes long (a hang would show as a case far over its budget).
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parse, stringify } from "yaml";
import { loadStackConfig } from "../lib/stack-config";
import { prng } from "./helpers/prng";
import { ROOT } from "./helpers/stack";


const SEED = 20261123;
const CASES = 400;
const BASES = ["dev", "bluegreen", "cpu", "local-data"].map((s) => ({ stack: s, text: fs.readFileSync(path.join(ROOT, `Pulumi.${s}.yaml`), "utf8") }));

type Config = Record<string, any>;
interface Case {
  id: number;
  cls: string;
  base: string;
  text: string;
  /** `undefined` = valid; otherwise what the message must mention. */
  invalid?: string;
}

const P = "phi3-finetune";
const dump = (c: Config) => stringify({ config: c });
const isUltrachat = (c: Config) => (c[`${P}:data`]?.source ?? "ultrachat") === "ultrachat";
const pick = <T>(r: () => number, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];
const int = (r: () => number, lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1));
const obj = (c: Config, key: string): Config => (c[`${P}:${key}`] ??= {});

/** Mutation classes: each edits a copy of a base config (or its text) and says what it expects. */
const CLASSES: Record<string, (c: Config, r: () => number, text: string) => { text?: string; invalid?: string } | undefined | void> = {
  // ---- valid ----
  "valid: epochs in range": (c, r) => void (obj(c, "hyperparameters").epochs = int(r, 1, 100)),
  "valid: numbers as Pulumi's --path strings": (c, r) => {
    const h = obj(c, "hyperparameters");
    h.epochs = String(int(r, 1, 10));
    h.learningRate = pick(r, ["1e-5", "0.0001", "5.0e-6", "2E-5"]);
    h.warmupRatio = String(pick(r, [0, 0.1, 0.5, 1]));
  },
  "valid: a tag": (c, r) => void (c[`${P}:tags`] = { team: `t${int(r, 0, 999)}`, "cost-center": "ml" }),
  "valid: name generation": (c, r) => void (c[`${P}:nameGeneration`] = int(r, 0, 999)),
  "valid: Prompt flow off as text": (c, r) => void (obj(c, "promptFlow").enabled = pick(r, ["false", false, "true", true])),
  "valid: a secure environment variable": (c) => {
    const s = obj(c, "serving");
    const d = (s.deployments ??= [{ name: "blue" }]);
    d[0].environmentVariables = { HF_TOKEN: { secure: "v1:Zm9vYmFy" } };
  },
  "valid: wait timeout in range": (c, r) => void (obj(c, "training").waitTimeoutHours = pick(r, [1 / 60, 0.5, 24, 168, "2"])),
  "valid: max sequence length within the context": (c, r) => (isUltrachat(c) ? void (obj(c, "hyperparameters").maxSeqLength = int(r, 128, 4096)) : void 0),
  "valid: another name prefix": (c, r) => void (c[`${P}:namePrefix`] = "p" + Array.from({ length: int(r, 1, 7) }, () => pick(r, "abcdefghijklmnopqrstuvwxyz0123456789".split(""))).join("")),
  "valid: comments and key order": (_c, r, text) => ({
    text: text
      .split("\n")
      .map((l) => (l.trim() && r() < 0.3 ? `${l}  # note` : l))
      .join("\n"),
  }),
  "valid: cluster nodes": (c, r) => {
    const t = obj(c, "trainingCluster");
    t.maxNodes = int(r, 1, 10);
    t.minNodes = int(r, 0, t.maxNodes);
  },
  // ---- invalid ----
  "invalid: wrong type in a nested number": (c, r) => {
    obj(c, "hyperparameters").epochs = pick(r, [{ n: 3 }, [3], true, "three"]);
    return { invalid: `${P}:hyperparameters.epochs` };
  },
  "invalid: out of range": (c, r) => {
    const [k, v, key] = pick(r, [
      ["hyperparameters", { epochs: 0 }, "hyperparameters.epochs"],
      ["hyperparameters", { learningRate: 2 }, "hyperparameters.learningRate"],
      ["trainingCluster", { idleSeconds: 59 }, "trainingCluster.idleSeconds"],
      ["training", { attempt: 0 }, "training.attempt"],
    ] as const);
    Object.assign(obj(c, k), v);
    return { invalid: `${P}:${key}` };
  },
  "invalid: misspelled nested key": (c) => {
    const h = obj(c, "hyperparameters");
    h.epoch = 2;
    return { invalid: `${P}:hyperparameters.epoch` };
  },
  "invalid: misspelled project key": (c) => {
    c[`${P}:namePrefx`] = "abc";
    return { invalid: `${P}:namePrefx` };
  },
  "invalid: unknown namespace": (c, r) => {
    const ns = pick(r, ["phi3-finetun", "phi3finetune", "azure-nativ"]);
    c[`${ns}:namePrefix`] = "abc";
    return { invalid: `${ns}:namePrefix` };
  },
  "invalid: project key shadowing the provider's": (c) => {
    c[`${P}:location`] = "westus2";
    return { invalid: `${P}:location` };
  },
  "invalid: __proto__ or constructor key": (c, r) => {
    const k = pick(r, ["__proto__", "constructor"]);
    Object.defineProperty(obj(c, "hyperparameters"), k, { value: { epochs: 5 }, enumerable: true, configurable: true, writable: true });
    return { invalid: k };
  },
  "invalid: duplicate key": (_c, _r, text) => ({ text: text.replace(/^(  azure-native:location: .*)$/m, "$1\n$1"), invalid: "a key appears twice" }),
  "invalid: null value": (c) => {
    c["azure-native:location"] = null;
    return { invalid: "azure-native:location" };
  },
  "invalid: YAML syntax": (_c, r, text) => ({
    text: pick(r, [
      text.replace(/^config:\n/m, "config:\n  phi3-finetune:tags: [a, b\n"),
      text.replace(/^(  azure-native:location:)/m, "\t$1"),
      `${text}\n  - stray: [\n`,
    ]),
    invalid: "Pulumi.fz",
  }),
  "invalid: empty file": () => ({ text: "", invalid: "azure-native:location" }),
  "invalid: location missing": (c) => {
    delete c["azure-native:location"];
    return { invalid: "azure-native:location" };
  },
  "invalid: VM size typo": (c, r) => {
    obj(c, "trainingCluster").vmSize = pick(r, ["Standard_NC24ads_A100", "Standard_NC24ads_A100v4", "NC24ads_A100_v4"]);
    return { invalid: `${P}:trainingCluster.vmSize` };
  },
  "invalid: region typo": (c, r) => {
    c["azure-native:location"] = pick(r, ["eastus3", "east-us-2", "EastUS 2"]);
    return { invalid: "azure-native:location" };
  },
  "invalid: sequence longer than the context": (c) => {
    c[`${P}:baseModel`] = "microsoft/Phi-3-mini-4k-instruct";
    obj(c, "hyperparameters").maxSeqLength = 8192;
    return { invalid: `${P}:hyperparameters.maxSeqLength` };
  },
  "invalid: wait shorter than a minute": (c, r) => {
    obj(c, "training").waitTimeoutHours = pick(r, [0.00001, 0.001, 0]);
    return { invalid: `${P}:training.waitTimeoutHours` };
  },
  "invalid: name prefix of the wrong type or length": (c, r) => {
    c[`${P}:namePrefix`] = pick(r, [true, 12345, "averylongprefix", "Phi3"]);
    return { invalid: `${P}:namePrefix` };
  },
  "invalid: data path outside the project": (c, r) => {
    const bad = pick(r, ["../outside.jsonl", "/etc/passwd", "/dev/stdin", "test/fixtures/data/../../../x.jsonl"]);
    c[`${P}:data`] = { source: "jsonl", trainFile: bad, testFile: "test/fixtures/data/test.jsonl" };
    return { invalid: `${P}:data.trainFile` };
  },
  "invalid: traffic that does not sum to 100": (c, r) => {
    const s = obj(c, "serving");
    const names = (s.deployments ?? [{ name: "blue" }]).map((d: { name: string }) => d.name);
    s.traffic = Object.fromEntries(names.map((n: string) => [n, int(r, 1, 40)]));
    return { invalid: `${P}:serving.traffic` };
  },
  "invalid: deployment name with capitals": (c) => {
    const s = obj(c, "serving");
    s.deployments = [{ name: "Blue" }];
    s.traffic = { Blue: 100 };
    return { invalid: `${P}:serving.deployments[0].name` };
  },
  "invalid: misspelled top-level section": (_c, _r, text) => ({ text: text.replace(/^config:/m, "confg:"), invalid: "'confg' is not a key of a stack file" }),
  "invalid: pinned model without a name": (c) => {
    const s = obj(c, "serving");
    s.deployments = [{ name: "blue", model: { version: "3", existing: true } }];
    s.traffic = { blue: 100 };
    return { invalid: `${P}:serving.deployments[0].model` };
  },
  "invalid: data without a source": (c) => {
    c[`${P}:data`] = { trainFile: "test/fixtures/data/train.jsonl", testFile: "test/fixtures/data/test.jsonl" };
    return { invalid: `${P}:data` };
  },
  "invalid: structured key given as text": (c, r) => {
    const k = pick(r, ["hyperparameters", "serving", "trainingCluster"]);
    c[`${P}:${k}`] = "fast";
    return { invalid: `${P}:${k}` };
  },
};

function generate(): Case[] {
  const r = prng(SEED);
  const names = Object.keys(CLASSES);
  const cases: Case[] = [];
  for (let id = 0; cases.length < CASES; id++) {
    const cls = names[id % names.length];
    const base = pick(r, BASES);
    const config = structuredClone(parse(base.text).config) as Config;
    const result = CLASSES[cls](config, r, base.text);
    const text = result?.text ?? dump(config);
    cases.push({ id, cls, base: base.stack, text, invalid: result?.invalid });
  }
  return cases;
}

const root = fs.mkdtempSync(path.join(os.tmpdir(), "phi3-fuzz-"));
fs.copyFileSync(path.join(ROOT, "Pulumi.yaml"), path.join(root, "Pulumi.yaml"));
fs.cpSync(path.join(ROOT, "test/fixtures/data"), path.join(root, "test/fixtures/data"), { recursive: true });
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const cases = generate();
const timings: number[] = [];

describe(`config fuzzing: ${CASES} seeded stack files (seed ${SEED}) through the config loader`, () => {
  it("covers every class, valid and invalid, many times", () => {
    expect(cases.length).toBeGreaterThanOrEqual(300);
    const per = new Map<string, number>();
    for (const c of cases) per.set(c.cls, (per.get(c.cls) ?? 0) + 1);
    expect(per.size).toBe(Object.keys(CLASSES).length);
    expect(Math.min(...per.values())).toBeGreaterThanOrEqual(8);
    expect(cases.filter((c) => !c.invalid).length).toBeGreaterThanOrEqual(100);
  });

  it.each(cases.map((c) => [c.id, c.cls, c.base, c] as const))("#%i %s (%s)", (_id, _cls, _base, c) => {
    const stack = `fz${c.id}`;
    fs.writeFileSync(path.join(root, `Pulumi.${stack}.yaml`), c.text);
    const started = performance.now();
    let error: unknown;
    try {
      loadStackConfig(root, stack);
    } catch (e) {
      error = e;
    }
    timings.push(performance.now() - started);
    if (!c.invalid) {
      expect(error === undefined ? "accepted" : String((error as Error).message)).toBe("accepted");
      return;
    }
    expect(error, "an invalid config was accepted").toBeInstanceOf(Error);
    const err = error as Error;
    expect(["ConfigError", "StackFileError", "UsageError"]).toContain(err.name);
    expect(err.message).toContain(c.invalid.replace(/^Pulumi\.fz$/, `Pulumi.${stack}.yaml`));
    expect(err.message).not.toMatch(/Invalid input|expected \w+, received/);
    expect(err.message).not.toMatch(/\n\s+at .+:\d+:\d+/);
  });

  it("no case came near a hang", () => {
    expect(timings).toHaveLength(cases.length);
    expect(Math.max(...timings)).toBeLessThan(2000);
  });
});
