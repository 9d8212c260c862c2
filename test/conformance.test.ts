/**
 * Conformance with Azure's own Python SDK (issue 19, part 1): for every example stack, the
 * request bodies this project sends (the program under mocks, test/conformance/bodies.ts) are
 * compared with the bodies azure-ai-ml builds for the same entities from the same stack config
 * (test/conformance/sdk_bodies.py, one Python process for all stacks, in .venv/sdk), after the
 * normalisation of test/conformance/compare.ts. Every remaining difference must be a row of
 * test/conformance/differences.yaml with its reason, and every row must still match a difference.
 */
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import * as YAML from "yaml";
import { requirePython } from "../cli/lib/python-env";
import { AML_API_VERSION } from "../lib/arm";
import { EXAMPLE_STACKS, stackBodies, type StackBodies } from "./conformance/bodies";
import {
  ABSENT,
  ANY,
  asRow,
  canonicalDuration,
  checkAgainstTable,
  normalize,
  rowMatches,
  stackDifferences,
  tableProblems,
  type Difference,
  type TableRow,
} from "./conformance/compare";
import { ROOT } from "./helpers/stack";

const TABLE_FILE = path.join(ROOT, "test/conformance/differences.yaml");
const table = (YAML.parse(fs.readFileSync(TABLE_FILE, "utf8")) as { differences: TableRow[] }).differences;

let ours: StackBodies[] = [];
let sdk: { apiVersion: string; stacks: Record<string, Record<string, unknown>> };

beforeAll(async () => {
  // The SDK process starts first, so its imports (a few seconds) overlap the program runs; it
  // reads every stack from stdin, then answers for all of them at once.
  const child = spawn(requirePython("sdk"), [path.join(ROOT, "test/conformance/sdk_bodies.py")], { stdio: ["pipe", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr = (stderr + chunk).slice(-4000)));
  const exited = new Promise<number | null>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", resolve);
  });
  // Awaited below; this handler only keeps a spawn failure during the program runs from being
  // reported as unhandled before then. A Python that died early (EPIPE on stdin) is reported by its exit status.
  exited.catch(() => undefined);
  child.stdin.on("error", () => undefined);
  try {
    // Sequential: each run resets the modules and Pulumi's runtime state of this process.
    for (const stack of EXAMPLE_STACKS) ours.push(await stackBodies(stack));
  } finally {
    child.stdin.end(JSON.stringify(ours));
  }
  const status = await exited;
  if (status !== 0) throw new Error(`sdk_bodies.py exited with ${status}: ${stderr}`);
  sdk = JSON.parse(stdout);
}, 180_000);

describe("the difference table", () => {
  it("has a reason on every row, none unexplained, only known stacks", () => {
    expect(tableProblems(table, EXAMPLE_STACKS)).toEqual([]);
  });

  it("says when the SDK's REST client is older than the API version we follow", () => {
    const diffs: Difference[] = sdk.apiVersion === AML_API_VERSION ? [] : [{ entity: "client", path: "api-version", ours: AML_API_VERSION, sdk: sdk.apiVersion }];
    for (const stack of EXAMPLE_STACKS) {
      const rows = table.filter((r) => r.entity === "client");
      expect(diffs.filter((d) => !rows.some((r) => rowMatches(r, d))), stack).toEqual([]);
      expect(rows.filter((r) => !diffs.some((d) => rowMatches(r, d))), stack).toEqual([]);
    }
  });
});

describe.each(EXAMPLE_STACKS)("stack %s: our request bodies = azure-ai-ml's", (stack) => {
  it("sends the same entities with the same bodies, up to the rows of differences.yaml", () => {
    const mine = ours.find((s) => s.stack === stack)!;
    const diffs = stackDifferences(mine.bodies, sdk.stacks[stack]);
    const { unexplained, stale } = checkAgainstTable(stack, diffs, table.filter((r) => r.entity !== "client"));
    // An unexplained difference prints as a row to add (with its reason) once understood.
    expect(unexplained.map((d) => asRow(stack, d)).join(""), "differences not in differences.yaml").toBe("");
    expect(stale, "rows of differences.yaml that match no difference (remove them)").toEqual([]);
  });
});

describe("the oracle builds what the config asks for (so equality means something)", () => {
  it.each(EXAMPLE_STACKS)("%s: the SDK's fine-tune job has the config's nodes, processes and job type", (stack) => {
    const c = ours.find((s) => s.stack === stack)!.config;
    const job = (sdk.stacks[stack]["job:finetune"] as { properties: Record<string, any> }).properties;
    if (c.training.mode === "managed") {
      expect(job.jobType).toBe("Pipeline");
      expect(job.jobs.finetune.componentId).toBe(`azureml://registries/${c.training.managed.component.registry}/components/${c.training.managed.component.name}/versions/${c.training.managed.component.version}`);
      expect(job.jobs.finetune.inputs.num_nodes_finetune.value).toBe(String(c.training.instanceCount));
      return;
    }
    expect(job.jobType).toBe("Command");
    expect(job.resources.instanceCount).toBe(c.training.instanceCount);
    const world = c.training.instanceCount * c.training.processesPerInstance;
    expect(job.distribution).toEqual(world > 1 ? { distributionType: "PyTorch", processCountPerInstance: c.training.processesPerInstance } : undefined);
  });

  it.each(EXAMPLE_STACKS)("%s: one SDK deployment per configured deployment, with its instance type and count", (stack) => {
    const c = ours.find((s) => s.stack === stack)!.config;
    for (const d of c.serving.deployments) {
      const body = sdk.stacks[stack][`deployment:${d.name}`] as { sku: { capacity: number }; properties: { instanceType: string } };
      expect([body.properties.instanceType, body.sku.capacity]).toEqual([d.instanceType, d.instanceCount]);
    }
    expect(Object.keys(sdk.stacks[stack]).filter((k) => k.startsWith("deployment:"))).toHaveLength(c.serving.deployments.length);
  });
});

describe("the comparison can fail", () => {
  const devBodies = () => structuredClone(ours.find((s) => s.stack === "dev")!.bodies) as Record<string, any>;
  const devTable = () => table.filter((r) => r.entity !== "client");

  // Each mutation is a defect the oracle must catch: it must show as an unexplained difference at that path.
  it.each<[string, string, (b: Record<string, any>) => void, string]>([
    ["a wrong node count", "job:finetune", (b) => (b["job:finetune"].properties.resources.instanceCount = 2), "properties.resources.instanceCount"],
    ["a distribution the config does not ask for", "job:finetune", (b) => (b["job:finetune"].properties.distribution = { distributionType: "PyTorch", processCountPerInstance: 2 }), "properties.distribution"],
    ["another output mode", "job:prep", (b) => (b["job:prep"].properties.outputs.train.mode = "Upload"), "properties.outputs.train.mode"],
    ["a hyperparameter off by one", "job:finetune", (b) => (b["job:finetune"].properties.command = b["job:finetune"].properties.command.replace("--epochs 3", "--epochs 4")), "properties.command.11"],
    ["a job without identity", "job:finetune", (b) => delete b["job:finetune"].properties.identity, "properties.identity"],
    ["the wrong auth mode", "endpoint", (b) => (b.endpoint.properties.authMode = "AMLToken"), "properties.authMode"],
    ["a probe period in minutes instead of seconds", "deployment:blue", (b) => (b["deployment:blue"].properties.livenessProbe.period = "PT100M"), "properties.livenessProbe.period"],
    ["a missing environment variable", "deployment:blue", (b) => delete b["deployment:blue"].properties.environmentVariables.UAI_CLIENT_ID, "properties.environmentVariables.UAI_CLIENT_ID"],
    ["a traffic split sent with a zero entry for a new deployment", "traffic", (b) => (b.traffic.properties.traffic.green = 0), "properties.traffic.green"],
    ["a model of another type", "model", (b) => (b.model.properties.modelType = "custom_model"), "properties.modelType"],
  ])("catches %s", (_what, entity, mutate, at) => {
    const bodies = devBodies();
    mutate(bodies);
    const { unexplained } = checkAgainstTable("dev", stackDifferences(bodies, sdk.stacks.dev), devTable());
    expect(unexplained.map((d) => `${d.entity} ${d.path}`)).toEqual([`${entity} ${at}`]);
  });

  it("reports an entity sent by one side only", () => {
    const bodies = devBodies();
    delete bodies["job:prep"];
    expect(checkAgainstTable("dev", stackDifferences(bodies, sdk.stacks.dev), devTable()).unexplained).toEqual([{ entity: "job:prep", path: "", ours: ABSENT, sdk: "(sent)" }]);
  });

  it("reports a row that matches no difference as stale", () => {
    const extra: TableRow = { stacks: ["dev"], entity: "endpoint", path: "properties.authMode", ours: "Key", sdk: "AADToken", reason: "a row for a difference that does not exist" };
    const { stale } = checkAgainstTable("dev", stackDifferences(devBodies(), sdk.stacks.dev), [...devTable(), extra]);
    expect(stale).toEqual([extra]);
  });

  it.each<[string, TableRow, string[]]>([
    ["no reason", { stacks: "all", entity: "code", path: "p", ours: 1, sdk: 2, reason: "" }, ["differences.yaml row 1 (code p): needs a reason"]],
    ["unexplained", { stacks: "all", entity: "code", path: "p", ours: 1, sdk: 2, reason: "unexplained for now" }, ["differences.yaml row 1 (code p): marked unexplained"]],
    ["an unknown stack", { stacks: ["prod"], entity: "code", path: "p", ours: 1, sdk: 2, reason: "a reason long enough" }, [`differences.yaml row 1 (code p): stacks must be "all" or a list of ${EXAMPLE_STACKS.join(", ")}`]],
  ])("refuses a table row with %s", (_what, row, problems) => {
    expect(tableProblems([row], EXAMPLE_STACKS)).toEqual(problems);
  });

  it("matches * to any present value, never to an absent one", () => {
    const row: TableRow = { stacks: "all", entity: "deployment:*", path: "x", ours: ANY, sdk: ABSENT, reason: "r" };
    expect(rowMatches(row, { entity: "deployment:green", path: "x", ours: "v", sdk: ABSENT })).toBe(true);
    expect(rowMatches(row, { entity: "deployment:green", path: "x", ours: ABSENT, sdk: ABSENT })).toBe(false);
    expect(rowMatches(row, { entity: "endpoint", path: "x", ours: "v", sdk: ABSENT })).toBe(false);
  });
});

describe("normalisation: only spellings of the same value are made equal", () => {
  it.each([
    ["PT100S", "PT100S"],
    ["PT1M40S", "PT100S"],
    ["PT8M20S", "PT500S"],
    ["PT2.5S", "PT2.5S"],
    ["P1DT1H", "PT90000S"],
    ["Standard_NC4as_T4_v3", "Standard_NC4as_T4_v3"],
    ["P", "P"],
  ])("duration %s → %s", (input, expected) => {
    expect(canonicalDuration(input)).toBe(expected);
  });

  it("drops empty maps and the false defaults, keeps false elsewhere and every other value", () => {
    expect(normalize({ a: {}, isArchived: false, isAnonymous: false, appInsightsEnabled: false, n: 0, s: "", t: { x: {} } })).toEqual({ appInsightsEnabled: false, n: 0, s: "" });
    expect(normalize({ isArchived: true })).toEqual({ isArchived: true });
  });

  it("compares commands by shell words and conda files by their YAML", () => {
    expect(normalize({ command: "python x.py --split 'a b'" })).toEqual({ command: ["python", "x.py", "--split", "a b"] });
    expect(normalize({ condaFile: "# c\nname: e\ndependencies: [python=3.10]\n" })).toEqual({ condaFile: { name: "e", dependencies: ["python=3.10"] } });
  });
});
