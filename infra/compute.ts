import * as pulumi from "@pulumi/pulumi";
import * as ml from "@pulumi/azure-native/machinelearningservices";
import type { ClusterConfig } from "./config";

export { IMAGE_BUILD_CLUSTER, imageBuildCluster } from "./security";
import { isoSeconds } from "./naming";
import type { Tags } from "./secrets";

/** Arguments of {@link ComputeClusters}. */
export interface ComputeClustersArgs {
  location: string;
  resourceGroupName: pulumi.Input<string>;
  workspaceName: pulumi.Input<string>;
  /** ARM id of the user-assigned identity the nodes run as. */
  identityId: pulumi.Input<string>;
  /** The fine-tuning cluster (seed: Standard_NC24ads_A100_v4, dedicated, 0..1 nodes, 120 s idle). */
  training: ClusterConfig;
  /** Optional CPU cluster for the data preparation job. */
  prep?: ClusterConfig;
  /** Optional CPU cluster only for image builds (`private` without a prep cluster; see `imageBuildCluster` in infra/security.ts). */
  imageBuild?: ClusterConfig;
  /** Resource tags (values may be secrets). */
  tags: Tags;
}

/**
 * Declare one AmlCompute cluster (Azure ML REST 2025-12-01 `Compute`, computeType
 * `AmlCompute`). `idleSeconds` is seconds, sent as the ISO-8601 duration `PT<n>S`.
 * A changed VM size, priority or name replaces the cluster: Azure silently ignores some
 * in-place updates of AmlCompute properties (shared/REFERENCE.md).
 */
export function amlCluster(
  logicalName: string,
  cluster: ClusterConfig,
  args: Omit<ComputeClustersArgs, "training" | "prep" | "imageBuild">,
  opts: pulumi.CustomResourceOptions,
): ml.Compute {
  return new ml.Compute(
    logicalName,
    {
      computeName: cluster.name,
      resourceGroupName: args.resourceGroupName,
      workspaceName: args.workspaceName,
      location: args.location,
      identity: { type: "UserAssigned", userAssignedIdentities: [args.identityId] },
      properties: {
        computeType: "AmlCompute",
        description: `${cluster.vmSize}, ${cluster.minNodes}..${cluster.maxNodes} nodes`,
        properties: {
          vmSize: cluster.vmSize,
          vmPriority: cluster.vmPriority,
          osType: "Linux",
          scaleSettings: {
            minNodeCount: cluster.minNodes,
            maxNodeCount: cluster.maxNodes,
            nodeIdleTimeBeforeScaleDown: isoSeconds(cluster.idleSeconds),
          },
        },
      },
      tags: args.tags,
    },
    {
      ...opts,
      // Azure ignores some in-place AmlCompute updates: force a new cluster instead (REFERENCE.md).
      replaceOnChanges: ["properties.properties.vmSize", "properties.properties.vmPriority"],
      // The compute name is fixed by config, so the old cluster must go before the new one exists.
      deleteBeforeReplace: true,
    },
  );
}

/**
 * The stack's compute clusters: the GPU training cluster and, when the data comes from
 * ultrachat_200k, a small CPU cluster that runs the preparation job; in `private` without a prep
 * cluster, a small CPU cluster for image builds. All run as the user-assigned identity so jobs
 * can read the assets container.
 */
export class ComputeClusters extends pulumi.ComponentResource {
  /** ARM id of the training cluster. */
  public readonly trainingClusterId: pulumi.Output<string>;
  /** ARM id of the preparation cluster (undefined without one). */
  public readonly prepClusterId?: pulumi.Output<string>;
  /** The image-build cluster (`private` without a prep cluster): jobs wait for it, as Azure ML builds their images there. */
  public readonly imageBuildCluster?: ml.Compute;

  constructor(name: string, args: ComputeClustersArgs, opts?: pulumi.ComponentResourceOptions) {
    super("phi3:infra:Compute", name, {}, opts);
    this.trainingClusterId = amlCluster(`${name}-training`, args.training, args, { parent: this }).id;
    if (args.prep) this.prepClusterId = amlCluster(`${name}-prep`, args.prep, args, { parent: this }).id;
    if (args.imageBuild) this.imageBuildCluster = amlCluster(`${name}-image-build`, args.imageBuild, args, { parent: this });
    this.registerOutputs({ trainingClusterId: this.trainingClusterId, prepClusterId: this.prepClusterId });
  }
}
