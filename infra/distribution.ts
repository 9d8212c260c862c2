/**
 * Multi-GPU and multi-node training through Azure ML's PyTorch distribution (REST 2025-12-01,
 * `CommandJob.resources.instanceCount` and `distribution: {distributionType: "PyTorch",
 * processCountPerInstance}`): the config keys, their plan-time rules and the job-body parts.
 * Pure: no Pulumi, no network. The GPU count of each size comes from `infra/vm-sizes.ts`.
 *
 * Under the PyTorch distribution Azure ML starts `processCountPerInstance` copies of the job's
 * command on each of `instanceCount` nodes and sets `RANK`, `LOCAL_RANK`, `WORLD_SIZE`,
 * `MASTER_ADDR` and `MASTER_PORT` (learn.microsoft.com/azure/machine-learning/how-to-train-distributed-gpu,
 * "PyTorch"): `fine_tune.py` then trains its shard in every process and only rank 0 logs to MLflow
 * and writes the model, so the command itself does not change.
 */
import { int } from "./config-values";
import { hasInfiniBand, INFINIBAND_GPU_SIZES, recordedVmSize } from "./vm-sizes";

/** Nodes and processes of one training job: what `training.instanceCount` / `processesPerInstance` declare. */
export interface Distribution {
  /** Nodes of the training cluster the job runs on (REST `resources.instanceCount`). */
  instanceCount: number;
  /** Processes per node, normally one per GPU (REST `distribution.processCountPerInstance`). */
  processesPerInstance: number;
}

/** Today's behaviour (and the default): one process on one node, no `distribution` block. */
export const SINGLE_PROCESS: Distribution = { instanceCount: 1, processesPerInstance: 1 };

const count = (max: number) => int(1, max);

/**
 * The keys `training.instanceCount` (nodes, 1..100, default 1: must be <= `trainingCluster.maxNodes`)
 * and `training.processesPerInstance` (processes per node, 1..96, default 1: at most the GPUs of
 * the cluster's size, or its vCPUs on a CPU size), spread into the `training` schema.
 */
export const distributionKeys = {
  /** Nodes the fine-tune job runs on (seed: 1); at most `trainingCluster.maxNodes`. */
  instanceCount: count(100).default(1),
  /** Processes per node, one per GPU (seed: 1); at most the GPUs of `trainingCluster.vmSize`. */
  processesPerInstance: count(96).default(1),
};

/** Processes of the whole job: nodes × processes per node. */
export function worldSize(d: Distribution): number {
  return d.instanceCount * d.processesPerInstance;
}

/** Whether the job is distributed at all (more than one process). */
export function isDistributed(d: Distribution): boolean {
  return worldSize(d) > 1;
}

/**
 * Samples per optimizer step across the job: `perDeviceBatchSize` × world size (DDP sums the
 * gradients of every process; `fine_tune.py` uses no gradient accumulation).
 */
export function effectiveBatchSize(perDeviceBatchSize: number, d: Distribution): number {
  return perDeviceBatchSize * worldSize(d);
}

/** A rule violation with its path under the stack config (e.g. `["training", "instanceCount"]`). */
export interface DistributionIssue {
  path: (string | number)[];
  input: unknown;
  message: string;
}

/**
 * Plan-time rules of a distributed job on an AmlCompute cluster:
 * - `instanceCount` <= `trainingCluster.maxNodes` (the job waits forever for nodes the cluster
 *   cannot have);
 * - `processesPerInstance` <= GPUs per node of a recorded GPU size (`infra/vm-sizes.ts`, e.g.
 *   Standard_NC24ads_A100_v4 = 1, NC48 = 2, NC96 = 4, ND96asr_v4 = 8): NCCL gives each process
 *   its own GPU; on a recorded CPU size at most its vCPUs (gloo processes).
 * Sizes missing from the recorded list are not checked here ({@link distributionWarnings} says so).
 * Returns every problem, empty when valid.
 */
export function distributionIssues(d: Distribution, cluster: { vmSize: string; maxNodes: number }): DistributionIssue[] {
  const issues: DistributionIssue[] = [];
  if (d.instanceCount > cluster.maxNodes) {
    issues.push({
      path: ["training", "instanceCount"],
      input: d.instanceCount,
      message: `asks for ${d.instanceCount} nodes but trainingCluster.maxNodes is ${cluster.maxNodes}; raise maxNodes or lower instanceCount`,
    });
  }
  const size = recordedVmSize(cluster.vmSize);
  if (size && size.gpus > 0 && d.processesPerInstance > size.gpus) {
    issues.push({
      path: ["training", "processesPerInstance"],
      input: d.processesPerInstance,
      message: `asks for ${d.processesPerInstance} processes per node but ${size.name} has ${size.gpus} GPU${size.gpus === 1 ? "" : "s"} (one process per GPU); use at most ${size.gpus} or a larger size such as Standard_NC96ads_A100_v4 (4 GPUs) or Standard_ND96asr_v4 (8)`,
    });
  }
  if (size && size.gpus === 0 && d.processesPerInstance > size.vCPUs) {
    issues.push({
      path: ["training", "processesPerInstance"],
      input: d.processesPerInstance,
      message: `asks for ${d.processesPerInstance} processes per node but the CPU size ${size.name} has ${size.vCPUs} vCPUs`,
    });
  }
  return issues;
}

/**
 * Warnings that do not block: more than one node of a size without InfiniBand (naming the
 * InfiniBand sizes), a size the recorded list does not know (its GPUs cannot be checked), and a
 * GPU node left partly idle (fewer processes than GPUs: billed for all of them).
 */
export function distributionWarnings(d: Distribution, vmSize: string): string[] {
  const warnings: string[] = [];
  // More than one node on a size without InfiniBand: gradients cross nodes over Ethernet, which
  // is much slower than NVLink inside a node (how-to-train-distributed-gpu; infra/vm-sizes.ts hasInfiniBand).
  if (d.instanceCount > 1 && !hasInfiniBand(vmSize)) {
    warnings.push(
      `phi3-finetune:training.instanceCount: ${d.instanceCount} nodes of ${vmSize}, which has no InfiniBand: the processes exchange gradients ` +
        `between nodes over Ethernet, far slower than within a node. Use an InfiniBand size (an "r" in the name): ` +
        `${INFINIBAND_GPU_SIZES.join(", ")} (8 GPUs each; one node of 8 GPUs often replaces two smaller nodes), or one node.`,
    );
  }
  const size = recordedVmSize(vmSize);
  if (!size) {
    if (isDistributed(d)) {
      warnings.push(`phi3-finetune:training.processesPerInstance: ${vmSize} is not in infra/vm-sizes.ts, so its GPU count cannot be checked against ${d.processesPerInstance} processes per node`);
    }
    return warnings;
  }
  if (size.gpus > d.processesPerInstance) {
    warnings.push(
      `phi3-finetune:training.processesPerInstance: ${d.processesPerInstance} of the ${size.gpus} GPUs of ${size.name} train; the node bills for all ${size.gpus} (set processesPerInstance: ${size.gpus})`,
    );
  }
  return warnings;
}

/**
 * The job-body parts of a distribution, in the shape of the 2025-12-01 `CommandJob`
 * (`JobResourceConfiguration.instanceCount`, `PyTorch.processCountPerInstance`; the azure-native
 * types `JobResourceConfigurationArgs` and `PyTorchArgs`). A single process gives
 * `resources: {instanceCount: 1}` and no `distribution`, exactly today's body.
 */
export function distributionBody(d: Distribution): {
  resources: { instanceCount: number };
  distribution?: { distributionType: "PyTorch"; processCountPerInstance: number };
} {
  return {
    resources: { instanceCount: d.instanceCount },
    ...(isDistributed(d) ? { distribution: { distributionType: "PyTorch" as const, processCountPerInstance: d.processesPerInstance } } : {}),
  };
}

/**
 * What the distribution adds to the fine-tune job's content hash: nothing for a single
 * process (existing stacks keep their job names), else nodes and processes per node.
 */
export function distributionHashPart(d: Distribution): { distribution?: Distribution } {
  return isDistributed(d) ? { distribution: { instanceCount: d.instanceCount, processesPerInstance: d.processesPerInstance } } : {};
}

/** One line for the plan: `2 nodes × 4 processes (world size 8, effective batch 32)`. */
export function describeDistribution(d: Distribution, perDeviceBatchSize: number): string {
  return `${d.instanceCount} node${d.instanceCount === 1 ? "" : "s"} × ${d.processesPerInstance} process${d.processesPerInstance === 1 ? "" : "es"} (world size ${worldSize(d)}, effective batch ${effectiveBatchSize(perDeviceBatchSize, d)})`;
}
