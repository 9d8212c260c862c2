/**
 * What the preflight of `pulumi up` (jobs/preflight.ts) and `npm run doctor` check, taken from
 * the stack config. A module of its own, without the HTTP libraries of lib/preflight.ts, so the
 * Pulumi program (infra/preflight.ts) and the offline plan load nothing they do not use.
 */
import type { StackConfig } from "../infra/config";
import { imageBuildCluster } from "../infra/security";

export type ClusterLike = { name?: string; vmSize: string; maxNodes: number; vmPriority?: "Dedicated" | "LowPriority" };

/** The parts of the stack config quota depends on (a {@link StackConfig} fits). */
export interface QuotaInput {
  trainingCluster: ClusterLike;
  data?: { source: string; prepCluster?: ClusterLike };
  /** The `private` profile's image-build cluster, when it adds one (infra/security.ts `imageBuildCluster`). */
  imageBuildCluster?: ClusterLike;
  /** `maxInstances`: an autoscaled deployment's ceiling (`autoscale.maxInstances`), which the quota must cover. */
  serving: { deployments: { name: string; instanceType: string; instanceCount: number; maxInstances?: number }[] };
}

/** A deployment's model: the trained one, or a pinned version of the stack's workspace. */
type ModelRef = "trained" | { name: string; version: string; existing?: boolean };

/**
 * What the preflight checks, taken from the stack config by {@link preflightInput} (a
 * {@link StackConfig} fits too). `pulumi up` hands it to jobs/preflight.ts as JSON, so the step
 * runs again exactly when one of these values changes.
 */
export interface PreflightInput extends QuotaInput {
  /** `azure-native:location`. */
  location: string;
  namePrefix: string;
  /** Generation of the globally unique names (config `nameGeneration`). */
  nameGeneration: number;
  /** Existing resource group ("" = the stack creates `rg-<prefix>-<stack>`). */
  resourceGroupName: string;
  serving: { deployments: { name: string; instanceType: string; instanceCount: number; maxInstances?: number; model: ModelRef }[] };
  promptFlow: { enabled: boolean };
}

/** The {@link PreflightInput} of a validated stack config (only the keys the checks read). */
export function preflightInput(c: StackConfig): PreflightInput {
  const cluster = (k: ClusterLike): ClusterLike => ({ name: k.name, vmSize: k.vmSize, maxNodes: k.maxNodes, vmPriority: k.vmPriority });
  const imageBuild = imageBuildCluster(c)?.add;
  return {
    location: c.location,
    namePrefix: c.namePrefix,
    nameGeneration: c.nameGeneration,
    resourceGroupName: c.resourceGroupName,
    trainingCluster: cluster(c.trainingCluster),
    data: c.data.source === "ultrachat" ? { source: c.data.source, prepCluster: cluster(c.data.prepCluster) } : { source: c.data.source },
    // Only when the profile adds one, so the input (and so the step) of other stacks stays the same.
    ...(imageBuild ? { imageBuildCluster: cluster(imageBuild) } : {}),
    serving: {
      deployments: c.serving.deployments.map((d) => ({
        name: d.name,
        instanceType: d.instanceType,
        instanceCount: d.instanceCount,
        // Only when autoscaled, so the input (and so the step) of existing stacks stays the same.
        ...(d.autoscale ? { maxInstances: d.autoscale.maxInstances } : {}),
        model: d.model,
      })),
    },
    promptFlow: { enabled: c.promptFlow.enabled },
  };
}

