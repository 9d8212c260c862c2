/**
 * Config validation: defaults equal the seeds' values, Pulumi.yaml agrees with the schema,
 * and invalid values fail before any resource is registered, naming key, value and rule.
 */
import * as fs from "fs";
import * as path from "path";
import { parse as parseYaml } from "yaml";
import { describe, expect, it } from "vitest";
import { configSchema, configWarnings, parseConfig, RawConfig, validateDataFiles, validateTraffic } from "../infra/config";
import { PULUMI_TEXT_RULE } from "../infra/config-values";
import { configProblems } from "./helpers/config";
import { runStack, ROOT } from "./helpers/stack";

const base: RawConfig = { location: "eastus2" };
const json = (v: unknown) => JSON.stringify(v);

const problems = configProblems;

describe("defaults", () => {
  it("equal the seeds' values", () => {
    const { config: c } = parseConfig(base);
    expect(c.trainingCluster).toEqual({ name: "a100-train", vmSize: "Standard_NC24ads_A100_v4", vmPriority: "Dedicated", minNodes: 0, maxNodes: 1, idleSeconds: 120 });
    expect(c.baseModel).toBe("microsoft/Phi-3-mini-4k-instruct");
    expect(c.hyperparameters).toEqual({ epochs: 3, learningRate: 5e-6, perDeviceBatchSize: 4, maxSeqLength: 2048, warmupRatio: 0.2, lrScheduler: "cosine", seed: 0 });
    expect(c.data).toMatchObject({ source: "ultrachat", dataset: "HuggingFaceH4/ultrachat_200k", split: "train_sft[:1%]", testSize: 0.2 });
    expect(c.serving.deployments).toHaveLength(1);
    expect(c.serving.deployments[0]).toMatchObject({
      name: "blue",
      instanceType: "Standard_NC6s_v3",
      instanceCount: 1,
      requestSettings: { maxConcurrentRequestsPerInstance: 3, requestTimeoutMs: 180000, maxQueueWaitMs: 120000 },
      probes: { failureThreshold: 30, successThreshold: 1, periodSeconds: 100, initialDelaySeconds: 500 },
    });
    expect(c.serving.traffic).toEqual({ blue: 100 });
    expect(c.training.image).toBe("mcr.microsoft.com/azureml/curated/acft-hf-nlp-gpu:59");
    expect(c.promptFlow).toEqual({ enabled: true, connectionName: "phi3-endpoint" });
  });

  it("Pulumi.yaml's typed scalar defaults equal the schema's", () => {
    const project = parseYaml(fs.readFileSync(path.join(ROOT, "Pulumi.yaml"), "utf8"));
    const { config: c } = parseConfig(base);
    for (const [key, spec] of Object.entries<any>(project.config)) {
      expect(["string", "integer"], key).toContain(spec.type);
      expect(spec.description, key).toBeTruthy();
      expect(spec.default, key).toBe((c as any)[key]);
    }
  });

  it("accepts structured values as JSON strings, as Pulumi passes them", () => {
    const { config: c } = parseConfig({ ...base, hyperparameters: json({ epochs: 1 }), trainingCluster: json({ maxNodes: 2 }) });
    expect(c.hyperparameters.epochs).toBe(1);
    expect(c.hyperparameters.learningRate).toBe(5e-6);
    expect(c.trainingCluster.maxNodes).toBe(2);
  });
});

describe("warnings", () => {
  it("warn that Standard_NC6s_v3 is retired and name the replacements", () => {
    const { warnings } = parseConfig(base);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain("phi3-finetune:serving.deployments[0].instanceType");
    expect(warnings[0]).toContain("Standard_NC6s_v3 was retired");
    for (const s of ["Standard_NC4as_T4_v3", "Standard_NC24ads_A100_v4", "Standard_NV36ads_A10_v5", "Standard_NC40ads_H100_v5"]) expect(warnings[0]).toContain(s);
  });

  it.each(["Standard_NC24ads_A100_v4", "Standard_NC4as_T4_v3", "Standard_NV36ads_A10_v5", "Standard_NC40ads_H100_v5"])("plan %s cleanly", (size) => {
    const { config } = parseConfig({ ...base, serving: json({ deployments: [{ name: "blue", instanceType: size }] }) });
    expect(configWarnings(config)).toEqual([]);
  });
});

describe("invalid config is rejected with the key, the value and the rule", () => {
  const cases: [string, RawConfig, string, RegExp][] = [
    ["missing location", { location: undefined }, "azure-native:location", /required/],
    ["location with spaces", { location: "East US 2" }, "azure-native:location", /region name/],
    ["prefix with capitals", { namePrefix: "Phi3" }, "phi3-finetune:namePrefix", /lowercase.*got "Phi3"/],
    ["prefix too long", { namePrefix: "phi3finetune" }, "phi3-finetune:namePrefix", /2-8/],
    ["unknown top-level key", { trainingClustr: json({}) }, "phi3-finetune:trainingClustr", /unknown key/],
    ["unknown nested key", { trainingCluster: json({ maxNode: 2 }) }, "phi3-finetune:trainingCluster.maxNode", /unknown key/],
    ["negative max nodes", { trainingCluster: json({ maxNodes: -1 }) }, "phi3-finetune:trainingCluster.maxNodes", />= 1.*got -1/],
    ["min above max", { trainingCluster: json({ minNodes: 2, maxNodes: 1 }) }, "phi3-finetune:trainingCluster.minNodes", /<= maxNodes/],
    ["idle below a minute", { trainingCluster: json({ idleSeconds: 5 }) }, "phi3-finetune:trainingCluster.idleSeconds", />= 60/],
    ["bad VM size", { trainingCluster: json({ vmSize: "NC24ads" }) }, "phi3-finetune:trainingCluster.vmSize", /Azure VM size/],
    ["fractional epochs", { hyperparameters: json({ epochs: 2.5 }) }, "phi3-finetune:hyperparameters.epochs", /integer.*got 2.5/],
    ["learning rate as text", { hyperparameters: json({ learningRate: "high" }) }, "phi3-finetune:hyperparameters.learningRate", /number.*got "high"/],
    ["warmup above 1", { hyperparameters: json({ warmupRatio: 1.5 }) }, "phi3-finetune:hyperparameters.warmupRatio", /1\.5/],
    ["unknown scheduler", { hyperparameters: json({ lrScheduler: "cyclic" }) }, "phi3-finetune:hyperparameters.lrScheduler", /cosine/],
    ["unsupported base model", { baseModel: "meta/llama" }, "phi3-finetune:baseModel", /Phi-3-mini-4k-instruct/],
    ["bad split", { data: json({ source: "ultrachat", split: "train[:1%]" }) }, "phi3-finetune:data.split", /train_sft\[:1%\]/],
    ["test size 1", { data: json({ source: "ultrachat", testSize: 1 }) }, "phi3-finetune:data.testSize", /got 1/],
    ["unknown data source", { data: json({ source: "s3" }) }, "phi3-finetune:data.source", /ultrachat|jsonl/],
    ["jsonl without files", { data: json({ source: "jsonl" }) }, "phi3-finetune:data.trainFile", /./],
    ["traffic to undeclared deployment", { serving: json({ deployments: [{ name: "blue" }], traffic: { green: 100 } }) }, "phi3-finetune:serving.traffic.green", /not declared/],
    ["traffic not summing to 100", { serving: json({ deployments: [{ name: "blue" }, { name: "green" }], traffic: { blue: 60, green: 30 } }) }, "phi3-finetune:serving.traffic", /sums to 90/],
    ["fractional traffic", { serving: json({ deployments: [{ name: "blue" }, { name: "green" }], traffic: { blue: 99.5, green: 0.5 } }) }, "phi3-finetune:serving.traffic.blue", /integer percent/],
    ["mirror above 50", { serving: json({ deployments: [{ name: "blue" }, { name: "green" }], traffic: { blue: 100 }, mirrorTraffic: { green: 60 } }) }, "phi3-finetune:serving.mirrorTraffic.green", /0 to 50/],
    ["mirror to a live deployment", { serving: json({ deployments: [{ name: "blue" }], traffic: { blue: 100 }, mirrorTraffic: { blue: 10 } }) }, "phi3-finetune:serving.mirrorTraffic.blue", /live traffic/],
    ["duplicate deployment", { serving: json({ deployments: [{ name: "blue" }, { name: "blue" }], traffic: { blue: 100 } }) }, "phi3-finetune:serving.deployments[1].name", /duplicate/],
    ["request timeout above Azure's max", { serving: json({ deployments: [{ name: "blue", requestSettings: { requestTimeoutMs: 300000 } }] }) }, "phi3-finetune:serving.deployments[0].requestSettings.requestTimeoutMs", /<= 180000/],
    ["bf16 weights on a T4", { training: json({ servedDtype: "bfloat16" }), serving: json({ deployments: [{ name: "blue", instanceType: "Standard_NC4as_T4_v3" }] }) }, "phi3-finetune:serving.deployments[0].instanceType", /bf16/],
    ["training on V100s (no native bf16)", { trainingCluster: json({ vmSize: "Standard_NC6s_v3" }) }, "phi3-finetune:trainingCluster.vmSize", /native bf16.*NC24ads_A100_v4/],
    ["training on a T4 (no native bf16)", { trainingCluster: json({ vmSize: "Standard_NC4as_T4_v3" }) }, "phi3-finetune:trainingCluster.vmSize", /native bf16/],
    ["invalid JSON", { hyperparameters: "{epochs: 3" }, "phi3-finetune:hyperparameters", /not valid JSON/],
    ["connection name with spaces", { promptFlow: json({ connectionName: "my conn" }) }, "phi3-finetune:promptFlow.connectionName", /3-33/],
  ];

  it.each(cases)("%s", (_label, raw, key, message) => {
    const found = problems(raw);
    const line = found.find((p) => p.startsWith(`${key}:`));
    expect(line, `issues: ${found.join(" | ")}`).toBeDefined();
    expect(line).toMatch(message);
  });

  it("reports every problem at once", () => {
    const found = problems({ namePrefix: "X", hyperparameters: json({ epochs: 0, seed: -1 }), trainingCluster: json({ maxNodes: 0 }) });
    expect(found.length).toBeGreaterThanOrEqual(4);
  });

  it("fails the program before any resource is registered", async () => {
    const error = await runStack({ overrides: { trainingCluster: { maxNodes: -1 } } }).catch((e) => e);
    expect(error).toBeInstanceOf(Error);
    expect(error.message).toContain("phi3-finetune:trainingCluster.maxNodes");
    expect(error.registrations).toEqual([]);
  });
});

describe("validateDataFiles: a split must fill one packed sequence", () => {
  const data = (maxSeqLength: number) =>
    parseConfig({
      ...base,
      data: json({ source: "jsonl", trainFile: "test/fixtures/data/train.jsonl", testFile: "test/fixtures/data/test.jsonl" }),
      hyperparameters: json({ maxSeqLength }),
      // A 128k-context model, so long sequences pass the context check and reach the data check.
      baseModel: "microsoft/Phi-3-mini-128k-instruct",
    }).config;

  it("passes the example data at 512 tokens", () => {
    expect(validateDataFiles(data(512), ROOT)).toEqual({ problems: [], warnings: [] });
  });

  it("warns when the test split likely cannot fill 2048 tokens", () => {
    const { problems: found, warnings } = validateDataFiles(data(2048), ROOT);
    expect(found).toEqual([]);
    expect(warnings).toEqual([expect.stringMatching(/^phi3-finetune:data\.testFile: test\/fixtures\/data\/test\.jsonl renders to about/)]);
  });

  it("refuses a split that certainly cannot fill one sequence, naming the key and file", () => {
    const { problems: found } = validateDataFiles(data(32768), ROOT);
    expect(found).toHaveLength(2);
    expect(found[1]).toMatch(/^phi3-finetune:data\.testFile: test\/fixtures\/data\/test\.jsonl renders to at most \d+ tokens.*maxSeqLength = 32768/);
  });
});

describe("validateTraffic", () => {
  it("accepts 90/10 with a mirror to a third deployment", () => {
    expect(validateTraffic(["blue", "green", "shadow"], { blue: 90, green: 10 }, { shadow: 20 })).toEqual([]);
  });
  it("accepts an empty split without deployments", () => {
    expect(validateTraffic([], {}, {})).toEqual([]);
  });
  it("rejects traffic when there are no deployments", () => {
    expect(validateTraffic([], { blue: 100 }, {}).map((i) => i.message).join()).toMatch(/not declared/);
  });
  it("rejects mirroring to two deployments", () => {
    expect(validateTraffic(["a", "b", "c"], { a: 100 }, { b: 10, c: 10 }).map((i) => i.message).join()).toMatch(/one deployment only/);
  });
});

describe("one rule for numbers and booleans given as text (infra/config-values.ts)", () => {
  type Def = { type: string; innerType?: unknown; in?: unknown; out?: unknown; shape?: Record<string, unknown>; element?: unknown; keyType?: unknown; valueType?: unknown; options?: unknown[] };
  const defOf = (s: unknown): Def => (s as { _zod: { def: Def } })._zod.def;
  /** Paths of every number or boolean schema in the config schema, and whether it follows the rule. */
  function leaves(s: unknown, at: string, out: [string, boolean][] = [], seen = new Set<unknown>()): [string, boolean][] {
    if (!s || seen.has(s)) return out;
    seen.add(s);
    const d = defOf(s);
    if (d.type === "number" || d.type === "boolean") out.push([at, (s as Record<symbol, boolean>)[PULUMI_TEXT_RULE] === true]);
    for (const inner of [d.innerType, d.in, d.out, d.element, d.keyType, d.valueType]) if (inner) leaves(inner, at, out, seen);
    for (const [k, v] of Object.entries(d.shape ?? {})) leaves(v, `${at}.${k}`, out, seen);
    for (const o of d.options ?? []) leaves(o, at, out, seen);
    return out;
  }

  it("every number and boolean of the schema, nested ones included, accepts its text form", () => {
    const found = leaves(configSchema, "config");
    expect(found.length).toBeGreaterThan(40);
    for (const key of ["security.lock", "training.instanceCount", "quota", "autoscale.minInstances", "promptFlow.enabled", "hyperparameters.epochs"]) {
      expect(found.some(([p]) => p.includes(key)), key).toBe(true);
    }
    expect(found.filter(([, ok]) => !ok).map(([p]) => p)).toEqual([]);
  });

  it.each([
    ["security", { lock: "true", cookbookRoles: "false" }],
    ["training", { instanceCount: "1", attempt: "2" }],
    ["quota", { standardNCADSA100v4Family: "96" }],
    ["promptFlow", { enabled: "false" }],
    ["serving", { deployments: [{ name: "blue", instanceType: "Standard_NC4as_T4_v3", instanceCount: "2", autoscale: { minInstances: "1", maxInstances: "3" } }] }],
  ])("%s with numbers and booleans as text is accepted and typed", (key, value) => {
    const { config } = parseConfig({ location: "eastus2", [key]: JSON.stringify(value) });
    const typed = JSON.stringify(config[key as keyof typeof config]);
    expect(typed).not.toMatch(/:"(true|false|\d+)"/);
  });

  it("text stays text where the value is text (a tag value \"true\"), and text that spells no number is refused by key", () => {
    expect(parseConfig({ location: "eastus2", tags: JSON.stringify({ flag: "true", n: "3" }) }).config.tags).toEqual({ flag: "true", n: "3" });
    expect(configProblems({ security: JSON.stringify({ lock: "yes" }) }).join("\n")).toContain("phi3-finetune:security.lock: must be true or false");
    expect(configProblems({ training: JSON.stringify({ instanceCount: "two" }) }).join("\n")).toContain("phi3-finetune:training.instanceCount: must be a number");
  });
});
