/**
 * Names Azure would refuse are refused at plan time (issue 9): VM sizes and regions against the
 * recorded lists with "did you mean", pinned model versions the stack cannot know exist, data
 * too short to train on. Each wrong config is rejected with the key named and no stack trace;
 * unknown but well-formed sizes only warn, naming the list's date.
 */
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { describe, expect, it } from "vitest";
import { configProblems } from "./helpers/config";
import { parseConfig, type RawConfig } from "../infra/config";
import { classifyRegion } from "../infra/regions";
import { classifyName, classifyVmSize, editDistance, RECORDED_VM_SIZES, VM_SIZES_RECORDED } from "../infra/vm-sizes";
import { estimateCost, formatCostReport, loadPriceTable } from "../infra/cost";
import { ROOT } from "./helpers/stack";

const json = (v: unknown) => JSON.stringify(v);
const deployment = (over: Record<string, unknown>) => json({ deployments: [{ name: "blue", ...over }] });
const size = (s: string) => deployment({ instanceType: s });
const pinned = (model: unknown) => deployment({ model, instanceType: "Standard_NC4as_T4_v3" });

const problems = configProblems;

const T = "phi3-finetune:trainingCluster.vmSize";
const D = "phi3-finetune:serving.deployments[0].instanceType";
const M = "phi3-finetune:serving.deployments[0].model";
const L = "azure-native:location";

/** [label, raw config, key that must be named, what the message must say]. */
const WRONG: [string, RawConfig, string, RegExp][] = [
  // Typo'd VM sizes: near misses of recorded sizes.
  ["T4 without the underscore", { serving: size("Standard_NC4as_T4v3") }, D, /did you mean Standard_NC4as_T4_v3/],
  ["A100 without its version", { trainingCluster: json({ vmSize: "Standard_NC24ads_A100" }) }, T, /did you mean Standard_NC24ads_A100_v4/],
  ["A100 serving without its version", { serving: size("Standard_NC24ads_A100") }, D, /did you mean Standard_NC24ads_A100_v4/],
  ["A100 with no underscores", { trainingCluster: json({ vmSize: "Standard_NC24adsA100v4" }) }, T, /did you mean Standard_NC24ads_A100_v4/],
  ["A10 without its version", { serving: size("Standard_NV36ads_A10") }, D, /did you mean Standard_NV36ads_A10_v5/],
  ["H100 without its version", { serving: size("Standard_NC40ads_H100") }, D, /did you mean Standard_NC40ads_H100_v5/],
  ["T4 cut short", { serving: size("Standard_NC4as_T4") }, D, /did you mean Standard_NC4as_T4_v3/],
  ["T4 with a trailing underscore", { serving: size("Standard_NC4as_T4_v3_") }, D, /did you mean Standard_NC4as_T4_v3/],
  ["NC6s without the underscore", { serving: size("Standard_NC6sv3") }, D, /did you mean Standard_NC6s_v3/],
  ["E16s without the underscore", { trainingCluster: json({ vmSize: "Standard_E16sv3" }) }, T, /did you mean Standard_E16s_v3/],
  ["E4s serving cut short", { serving: size("Standard_E4s") }, D, /did you mean Standard_E4s_v3/],
  ["prep size without the underscore", { data: json({ source: "ultrachat", prepCluster: { vmSize: "Standard_DS3v2" } }) }, "phi3-finetune:data.prepCluster.vmSize", /did you mean Standard_DS3_v2/],
  ["size without Standard_", { serving: size("NC4as_T4_v3") }, D, /Azure VM size/],
  ["size in lowercase prefix", { trainingCluster: json({ vmSize: "standard_NC24ads_A100_v4" }) }, T, /Azure VM size/],
  ["size with hyphens", { serving: size("Standard-NC4as-T4-v3") }, D, /Azure VM size/],
  ["empty size", { serving: size("") }, D, /Azure VM size/],
  // Regions.
  ["eastus3", { location: "eastus3" }, L, /did you mean eastus2/],
  ["westus4", { location: "westus4" }, L, /did you mean westus/],
  ["northeurop", { location: "northeurop" }, L, /did you mean northeurope/],
  ["uksouth2", { location: "uksouth2" }, L, /did you mean uksouth/],
  ["westeurope2", { location: "westeurope2" }, L, /did you mean westeurope/],
  ["swedencentrl", { location: "swedencentrl" }, L, /did you mean swedencentral/],
  ["a region that does not exist", { location: "mars" }, L, /not an Azure region in the list recorded on 2026-11-23/],
  ["display name", { location: "East US 2" }, L, /region name/],
  ["hyphenated region", { location: "east-us-2" }, L, /region name/],
  ["missing region", { location: undefined }, L, /required/],
  // Pinned model versions the stack cannot know exist.
  ["pinned version 1 in a new workspace", { serving: pinned({ name: "phi3-finetuned", version: "1" }) }, M, /existing: true.*preflight/],
  ["pinned version with existing: false", { serving: pinned({ name: "phi3-finetuned", version: "7", existing: false }) }, M, /pins phi3-finetuned version 7/],
  ["pinned label latest", { serving: pinned({ name: "phi3-finetuned", version: "latest", existing: true }) }, `${M}.version`, /labels such as latest/],
  ["pinned version 0", { serving: pinned({ name: "phi3-finetuned", version: "0", existing: true }) }, `${M}.version`, /version number/],
  ["pinned version as a number", { serving: pinned({ name: "phi3-finetuned", version: 3, existing: true }) }, M, /trained/],
  ["pinned model without a version", { serving: pinned({ name: "phi3-finetuned", existing: true }) }, M, /trained/],
  ["pinned model with a space in its name", { serving: pinned({ name: "phi3 finetuned", version: "2", existing: true }) }, `${M}.name`, /model name/],
  ["a registry model reference", { serving: pinned({ registry: "azureml", name: "Phi-3-mini-4k-instruct", version: "15" }) }, M, /trained/],
  ["model given as a label", { serving: pinned("latest") }, M, /"trained" or \{name, version, existing: true\}/],
  // Data too short or malformed.
  ["zero rows", { data: json({ source: "ultrachat", split: "train_sft[:0]" }) }, "phi3-finetune:data.split", /rows/],
  ["zero percent", { data: json({ source: "ultrachat", split: "train_sft[:0%]" }) }, "phi3-finetune:data.split", /1-100 percent/],
  ["no test split", { data: json({ source: "ultrachat", testSize: 0 }) }, "phi3-finetune:data.testSize", /got 0/],
  ["all rows held out", { data: json({ source: "ultrachat", testSize: 1 }) }, "phi3-finetune:data.testSize", /got 1/],
  ["sequences too short for Phi-3 chat", { hyperparameters: json({ maxSeqLength: 64 }) }, "phi3-finetune:hyperparameters.maxSeqLength", />= 128/],
  ["JSONL source without files", { data: json({ source: "jsonl", testFile: "a.jsonl" }) }, "phi3-finetune:data.trainFile", /./],
  // Other names Azure refuses.
  ["name generation below 0", { nameGeneration: "-1" }, "phi3-finetune:nameGeneration", />= 0/],
  ["name generation as text", { nameGeneration: "two" }, "phi3-finetune:nameGeneration", /whole number/],
  ["deployment name with capitals", { serving: json({ deployments: [{ name: "Blue" }] }) }, "phi3-finetune:serving.deployments[0].name", /lowercase/],
  ["compute name too long", { trainingCluster: json({ name: "a100-training-cluster" }) }, "phi3-finetune:trainingCluster.name", /2-16/],
];

describe("wrong configs are rejected at plan time with the key named", () => {
  it("the table holds at least 40 wrong configs", () => {
    expect(WRONG.length).toBeGreaterThanOrEqual(40);
  });

  it.each(WRONG)("%s", (_label, raw, key, message) => {
    const found = problems(raw);
    const line = found.find((p) => p.startsWith(`${key}:`));
    expect(line, `issues: ${found.join(" | ")}`).toBeDefined();
    expect(line).toMatch(message);
    expect(found.join("\n")).not.toMatch(/\n\s+at /);
  });

  it("the plan CLI refuses eastus3 and a pinned version: exit 1, keys named, no stack trace, nothing printed to stdout", () => {
    const file = path.join(ROOT, "Pulumi.test-wrongnames.yaml");
    fs.writeFileSync(
      file,
      "config:\n  azure-native:location: eastus3\n  phi3-finetune:serving:\n    deployments:\n      - name: blue\n        model: {name: phi3-finetuned, version: '1'}\n        instanceType: Standard_NC4as_T4v3\n",
    );
    try {
      const r = spawnSync(path.join(ROOT, "node_modules/.bin/tsx"), ["cli/plan.ts", "--stack", "test-wrongnames"], { cwd: ROOT, encoding: "utf8", timeout: 60_000 });
      expect(r.status).toBe(1);
      expect(r.stdout).toBe("");
      expect(r.stderr).toContain("azure-native:location: is not an Azure region; did you mean eastus2");
      expect(r.stderr).toContain("phi3-finetune:serving.deployments[0].model: pins phi3-finetuned version 1");
      expect(r.stderr).toContain("phi3-finetune:serving.deployments[0].instanceType: is not an Azure VM size; did you mean Standard_NC4as_T4_v3?");
      expect(r.stderr).not.toMatch(/\n\s+at /);
    } finally {
      fs.unlinkSync(file);
    }
  });
});

describe("what passes", () => {
  it("every recorded size and a case-insensitive spelling pass without a typo", () => {
    for (const s of RECORDED_VM_SIZES) expect(classifyVmSize(s.name)).toEqual({ kind: "known", canonical: s.name });
    expect(classifyVmSize("STANDARD_nc4as_t4_v3")).toEqual({ kind: "known", canonical: "Standard_NC4as_T4_v3" });
  });

  it("a well-formed size missing from the list warns, naming the list's date, and suggests sizes of the same shape", () => {
    const raw = { serving: size("Standard_NC8as_T4_v5") };
    const { config, warnings } = parseConfig({ location: "eastus2", ...raw });
    expect(config.serving.deployments[0].instanceType).toBe("Standard_NC8as_T4_v5");
    const w = warnings.find((x) => x.startsWith(D));
    expect(w).toContain(`not in the VM size list recorded on ${VM_SIZES_RECORDED}`);
    expect(w).toMatch(/did you mean Standard_NC\d+as_T4_v3/);
    // Real sizes that differ from listed ones by a letter are not refused (D4s_v5 and D4ds_v5 both exist).
    expect(classifyVmSize("Standard_D4s_v5").kind).toBe("unknown");
  });

  it("a pinned version with existing: true passes and warns that the preflight checks it", () => {
    const { warnings } = parseConfig({ location: "eastus2", serving: pinned({ name: "phi3-finetuned", version: "42", existing: true }) });
    expect(warnings).toContain(`${M}: phi3-finetuned version 42 must exist in this stack's workspace; the preflight checks it before anything is created.`);
  });

  it("every example stack's regions and sizes are known", () => {
    for (const r of ["eastus2", "westeurope", "swedencentral", "westus3"]) expect(classifyRegion(r).kind).toBe("known");
    const { warnings } = parseConfig({ location: "westeurope", serving: size("Standard_NC24ads_A100_v4") });
    expect(warnings).toEqual([]);
  });

  it("classifyName and editDistance behave on small cases", () => {
    expect(editDistance("kitten", "sitting")).toBe(3);
    expect(classifyName("abc", ["abd"], 1)).toEqual({ kind: "typo", suggestions: ["abd"] });
    expect(classifyName("abc", ["abd"]).kind).toBe("unknown");
  });
});

describe("the cost section names the region of its prices", () => {
  const input = { training: { vmSize: "Standard_NC24ads_A100_v4", minNodes: 0, maxNodes: 1 }, deployments: [{ name: "blue", instanceType: "Standard_NC4as_T4_v3", instanceCount: 1 }] };
  it("says plainly when the stack deploys elsewhere", () => {
    const lines = formatCostReport(estimateCost(input, loadPriceTable(), "westeurope")).join("\n");
    expect(lines).toContain("NOTE: these are eastus2 prices; this stack deploys to westeurope, where prices differ");
  });
  it("says nothing more in the table's own region", () => {
    expect(formatCostReport(estimateCost(input, loadPriceTable(), "eastus2")).join("\n")).not.toContain("NOTE:");
  });
});
