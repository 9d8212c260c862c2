/**
 * Multi-GPU and multi-node training (issue 13, part 2): `training.instanceCount` and
 * `training.processesPerInstance` become the job's `resources.instanceCount` and Azure ML's
 * PyTorch `distribution`; impossible combinations are refused at plan time with the key named;
 * the job name changes only when the job is distributed; the cost multiplies by the nodes.
 */
import { describe, expect, it } from "vitest";
import type * as inputs from "@pulumi/azure-native/types/input";
import { parseConfig, rawProjectConfig, type RawConfig } from "../infra/config";
import { estimateCost, formatCostReport, loadPriceTable, costInputOf } from "../infra/cost";
import {
  SINGLE_PROCESS,
  distributionBody,
  distributionHashPart,
  distributionIssues,
  effectiveBatchSize,
  worldSize,
  type Distribution,
} from "../infra/distribution";
import { canonicalJson, sha256 } from "../infra/naming";
import { planTraining } from "../infra/training";
import { hasInfiniBand } from "../infra/vm-sizes";
import { unwrapSecrets, type Registration } from "../lib/mock-runtime";
import { expectRefused } from "./helpers/config";
import { byName, commandEnv, runStack, stackConfig } from "./helpers/stack";

const plain = (r: Registration) => unwrapSecrets(r.inputs) as Record<string, any>;

const json = (v: unknown) => JSON.stringify(v);
const base: RawConfig = { location: "eastus2" };


const PROCESSES = "phi3-finetune:training.processesPerInstance";
const NODES = "phi3-finetune:training.instanceCount";

describe("plan-time rules: processes per node against GPUs, nodes against maxNodes", () => {
  const refused: [string, RawConfig, string, RegExp][] = [
    ["8 processes on Standard_NC24ads_A100_v4 (1 GPU)", { training: json({ processesPerInstance: 8 }) }, PROCESSES, /Standard_NC24ads_A100_v4 has 1 GPU \(one process per GPU\).*got 8/],
    ["3 instances on a 2-node cluster", { trainingCluster: json({ vmSize: "Standard_NC96ads_A100_v4", maxNodes: 2 }), training: json({ instanceCount: 3, processesPerInstance: 4 }) }, NODES, /3 nodes but trainingCluster\.maxNodes is 2.*got 3/],
    ["2 nodes on the seed's 1-node cluster", { training: json({ instanceCount: 2 }) }, NODES, /maxNodes is 1/],
    ["3 processes on Standard_NC48ads_A100_v4 (2 GPUs)", { trainingCluster: json({ vmSize: "Standard_NC48ads_A100_v4" }), training: json({ processesPerInstance: 3 }) }, PROCESSES, /has 2 GPUs/],
    ["5 processes on Standard_NC96ads_A100_v4 (4 GPUs)", { trainingCluster: json({ vmSize: "Standard_NC96ads_A100_v4" }), training: json({ processesPerInstance: 5 }) }, PROCESSES, /has 4 GPUs/],
    ["9 processes on Standard_ND96asr_v4 (8 GPUs)", { trainingCluster: json({ vmSize: "Standard_ND96asr_v4" }), training: json({ processesPerInstance: 9 }) }, PROCESSES, /has 8 GPUs/],
    ["17 processes on the 16-vCPU CPU size", { trainingCluster: json({ vmSize: "Standard_E16s_v3" }), training: json({ processesPerInstance: 17, image: "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:latest", servedDtype: "float32" }) }, PROCESSES, /16 vCPUs/],
    ["0 nodes", { training: json({ instanceCount: 0 }) }, NODES, />= 1/],
    ["half a process", { training: json({ processesPerInstance: 1.5 }) }, PROCESSES, /integer/],
  ];
  it.each(refused)("%s is refused naming the key", (_label, raw, key, rule) => expectRefused({ ...base, ...raw }, key, rule));

  const accepted: [string, RawConfig][] = [
    ["2 nodes × 4 GPUs of Standard_NC96ads_A100_v4", { trainingCluster: json({ vmSize: "Standard_NC96ads_A100_v4", maxNodes: 2 }), training: json({ instanceCount: 2, processesPerInstance: 4 }) }],
    // 40 GB A100s: a full fine-tune with fp32 master weights (~61 GB of states) cannot fit one
    // (infra/training-memory.ts), so this node trains LoRA.
    ["1 node × 8 GPUs of Standard_ND96asr_v4", { trainingCluster: json({ vmSize: "Standard_ND96asr_v4" }), training: json({ processesPerInstance: 8, method: "lora" }) }],
    ["2 of 3 nodes", { trainingCluster: json({ maxNodes: 3 }), training: json({ instanceCount: 2 }) }],
  ];
  it.each(accepted)("%s passes", (_label, raw) => {
    expect(() => parseConfig({ ...base, ...raw })).not.toThrow();
  });

  it("warns when a multi-node job runs on a size without InfiniBand, naming the InfiniBand sizes", () => {
    const ethernet = parseConfig({ ...base, trainingCluster: json({ vmSize: "Standard_NC96ads_A100_v4", maxNodes: 2 }), training: json({ instanceCount: 2, processesPerInstance: 4 }) });
    const w = ethernet.warnings.join("\n");
    expect(w).toMatch(/training\.instanceCount: 2 nodes of Standard_NC96ads_A100_v4, which has no InfiniBand/);
    for (const alt of ["Standard_ND96asr_v4", "Standard_ND96amsr_A100_v4", "Standard_ND96isr_H100_v5"]) expect(w).toContain(alt);
    // Two InfiniBand nodes, or one node of any size: no such warning.
    const ib = parseConfig({ ...base, trainingCluster: json({ vmSize: "Standard_ND96asr_v4", maxNodes: 2 }), training: json({ instanceCount: 2, processesPerInstance: 8, precision: "bf16" }) });
    const one = parseConfig({ ...base, trainingCluster: json({ vmSize: "Standard_NC96ads_A100_v4" }), training: json({ processesPerInstance: 4 }) });
    for (const ok of [ib, one]) expect(ok.warnings.join("\n")).not.toMatch(/InfiniBand/);
  });

  const names: [string, boolean][] = [
    ["Standard_ND96asr_v4", true],
    ["Standard_ND96amsr_A100_v4", true],
    ["standard_nd96isr_h100_v5", true],
    ["Standard_HB120rs_v3", true],
    ["Standard_NC24rs_v3", true],
    ["Standard_NC96ads_A100_v4", false],
    ["Standard_NC24ads_A100_v4", false],
    ["Standard_NC4as_T4_v3", false],
    ["Standard_DS3_v2", false],
    ["not a size", false],
  ];
  it.each(names)("hasInfiniBand(%s) is %s", (name, ib) => expect(hasInfiniBand(name)).toBe(ib));

  it("warns when a GPU node is left partly idle, and when the size's GPUs are not recorded", () => {
    const partly = parseConfig({ ...base, trainingCluster: json({ vmSize: "Standard_NC96ads_A100_v4" }), training: json({ processesPerInstance: 2 }) });
    expect(partly.warnings.join("\n")).toMatch(/training\.processesPerInstance: 2 of the 4 GPUs of Standard_NC96ads_A100_v4 train/);
    const unknown = distributionIssues({ instanceCount: 1, processesPerInstance: 64 }, { vmSize: "Standard_NC999zz_v9", maxNodes: 1 });
    expect(unknown).toEqual([]);
    const warned = parseConfig({ ...base, trainingCluster: json({ vmSize: "Standard_NC999zz_v9" }), training: json({ processesPerInstance: 2 }) });
    expect(warned.warnings.join("\n")).toMatch(/not in infra\/vm-sizes\.ts, so its GPU count cannot be checked/);
  });

  it("the defaults are today's single process, with no warning", () => {
    const { config, warnings } = parseConfig(base);
    expect({ instanceCount: config.training.instanceCount, processesPerInstance: config.training.processesPerInstance }).toEqual(SINGLE_PROCESS);
    expect(warnings.join("\n")).not.toMatch(/processesPerInstance/);
  });
});

describe("the job body", () => {
  it("single process: resources.instanceCount 1 and no distribution block (today's body)", () => {
    expect(distributionBody(SINGLE_PROCESS)).toEqual({ resources: { instanceCount: 1 } });
  });

  it("distributed: the PyTorch distribution of the 2025-12-01 CommandJob, typed against azure-native", () => {
    const d: Distribution = { instanceCount: 2, processesPerInstance: 4 };
    // Compile-time: the parts must be assignable to azure-native's CommandJobArgs (REST 2025-12-01).
    const body = distributionBody(d) satisfies Pick<inputs.machinelearningservices.CommandJobArgs, "resources" | "distribution">;
    const pytorch: inputs.machinelearningservices.PyTorchArgs = body.distribution!;
    expect(pytorch).toEqual({ distributionType: "PyTorch", processCountPerInstance: 4 });
    expect(body.resources).toEqual({ instanceCount: 2 });
    expect(worldSize(d)).toBe(8);
    expect(effectiveBatchSize(4, d)).toBe(32);
  });

  // Property names of `properties` in the request body of the 2025-12-01 example
  // Azure/azure-rest-api-specs specification/machinelearningservices/resource-manager/
  // Microsoft.MachineLearningServices/stable/2025-12-01/examples/Job/CommandJob/createOrUpdate.json
  // (plus `tags`, and `outputs`/`inputs` it shows), and of its `resources` object.
  const REST_COMMAND_JOB_KEYS = [
    "description", "codeId", "command", "computeId", "displayName", "distribution", "environmentId",
    "environmentVariables", "experimentName", "identity", "inputs", "jobType", "limits", "outputs",
    "parentJobName", "properties", "resources", "services", "tags",
  ];
  const REST_RESOURCES_KEYS = ["instanceCount", "instanceType", "properties"];
  // The PyTorch discriminated type of `distribution` (azure-native 3.28 PyTorchArgs, generated from 2025-12-01).
  const REST_PYTORCH_KEYS = ["distributionType", "processCountPerInstance"];

  it("the scale stack submits 1 InfiniBand node × 8 processes in the REST shape, the dev stack none", async () => {
    const scale = await runStack({ stack: "scale" });
    const body = JSON.parse(commandEnv(byName(scale, "phi3-training-finetune-job")).AZUREML_JOB_BODY).properties;
    for (const k of Object.keys(body)) expect(REST_COMMAND_JOB_KEYS, k).toContain(k);
    for (const k of Object.keys(body.resources)) expect(REST_RESOURCES_KEYS, k).toContain(k);
    expect(Object.keys(body.distribution).sort()).toEqual(REST_PYTORCH_KEYS);
    expect(body.jobType).toBe("Command");
    expect(body.resources).toEqual({ instanceCount: 1 });
    expect(body.distribution).toEqual({ distributionType: "PyTorch", processCountPerInstance: 8 });
    expect(body.computeId).toMatch(/\/computes\/a100x8-train$/);
    expect(plain(byName(scale, "phi3-compute-training")).properties.properties.vmSize).toBe("Standard_ND96asr_v4");
    expect(hasInfiniBand("Standard_ND96asr_v4")).toBe(true);
    expect(parseConfig(rawProjectConfig(stackConfig("scale").config)).warnings.join("\n")).not.toMatch(/InfiniBand/);
    // The command is unchanged: Azure ML starts the processes and sets RANK/WORLD_SIZE.
    expect(body.command).toMatch(/^python fine_tune\.py /);
    expect(body.description).toContain("1 node × 8 processes (world size 8, effective batch 8)");
    // The prep job stays a single CPU process.
    const prep = JSON.parse(commandEnv(byName(scale, "phi3-training-prep-job")).AZUREML_JOB_BODY).properties;
    expect(prep.resources).toEqual({ instanceCount: 1 });
    expect(prep.distribution).toBeUndefined();

    const dev = await runStack();
    const devBody = JSON.parse(commandEnv(byName(dev, "phi3-training-finetune-job")).AZUREML_JOB_BODY).properties;
    expect(devBody.resources).toEqual({ instanceCount: 1 });
    expect("distribution" in devBody).toBe(false);
  });
});

describe("the job name", () => {
  const devConfig = () => parseConfig(rawProjectConfig(stackConfig("dev").config)).config;

  it("a single process hashes exactly as before the keys existed (existing stacks keep their job names)", () => {
    const c = devConfig();
    const plan = planTraining(c);
    expect(distributionHashPart(SINGLE_PROCESS)).toEqual({});
    // The formula before issue 13: no distribution in the hash.
    const before = sha256(
      canonicalJson({
        command: plan.command,
        codeHash: plan.codeHash,
        environmentHash: plan.environmentHash,
        data: plan.data.kind === "prep" ? { prep: plan.data.prepJobName } : {},
        compute: { name: c.trainingCluster.name, vmSize: c.trainingCluster.vmSize },
        experiment: c.training.experimentName,
        attempt: c.training.attempt,
      }),
    );
    expect(plan.jobHash).toBe(before);
  });

  it("more nodes or processes give a new job (jobs are immutable)", () => {
    const c = devConfig();
    const one = planTraining(c).jobName;
    const cluster = { ...c.trainingCluster, vmSize: "Standard_NC96ads_A100_v4", maxNodes: 2 };
    const names = [
      planTraining({ ...c, trainingCluster: cluster }).jobName,
      planTraining({ ...c, trainingCluster: cluster, training: { ...c.training, processesPerInstance: 4 } }).jobName,
      planTraining({ ...c, trainingCluster: cluster, training: { ...c.training, instanceCount: 2, processesPerInstance: 4 } }).jobName,
    ];
    expect(new Set([one, ...names]).size).toBe(4);
  });
});

describe("cost", () => {
  it("the job bills every node it runs on; processes do not change the price", () => {
    const prices = loadPriceTable();
    const c = parseConfig({ ...base, trainingCluster: json({ vmSize: "Standard_NC96ads_A100_v4", maxNodes: 2 }), training: json({ instanceCount: 2, processesPerInstance: 4 }) }).config;
    const e = estimateCost(costInputOf(c), prices);
    const unit = prices.hourly["Standard_NC96ads_A100_v4"]!;
    expect(e.trainingJob).toEqual({ nodes: 2, processesPerNode: 4, perHour: 2 * unit });
    expect(formatCostReport(e).join("\n")).toContain(`fine-tune job: 2 nodes × 4 processes (world size 8) = USD ${(2 * unit).toFixed(2)}/h while it runs`);
    const single = estimateCost(costInputOf(parseConfig(base).config), prices);
    expect(single.trainingJob?.perHour).toBe(prices.hourly["Standard_NC24ads_A100_v4"]);
    expect(formatCostReport(single).join("\n")).not.toContain("fine-tune job:");
  });
});
