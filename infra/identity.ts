import * as pulumi from "@pulumi/pulumi";
import * as authorization from "@pulumi/azure-native/authorization";
import * as managedidentity from "@pulumi/azure-native/managedidentity";
import * as time from "@pulumiverse/time";
import { uuidV5 } from "./naming";

/**
 * Built-in Azure role definition GUIDs this stack assigns
 * (learn.microsoft.com/azure/role-based-access-control/built-in-roles).
 */
export const BUILT_IN_ROLES = {
  Contributor: "b24988ac-6180-42a0-ab88-20f7382dd24c",
  "Storage Blob Data Reader": "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1",
  AcrPull: "7f951dda-4ed3-4680-a7ca-43fe172d538d",
} as const;

export type BuiltInRole = keyof typeof BUILT_IN_ROLES;

/** ARM id of a built-in role definition in a subscription. */
export function roleDefinitionId(subscriptionId: string, role: BuiltInRole): string {
  return `/subscriptions/${subscriptionId}/providers/Microsoft.Authorization/roleDefinitions/${BUILT_IN_ROLES[role]}`;
}

/**
 * Deterministic role assignment name: UUID v5 of scope, principal and role GUID (the
 * equivalent of Bicep's `guid(scope, principal, role)`), so a rerun never duplicates it.
 */
export function roleAssignmentName(scope: string, principalId: string, role: BuiltInRole): string {
  return uuidV5(`${scope.toLowerCase()}|${principalId.toLowerCase()}|${BUILT_IN_ROLES[role]}`);
}

/**
 * Seconds to wait after the role assignments are created before anything uses them. Azure RBAC
 * changes take up to 10 minutes to take effect (learn.microsoft.com/azure/role-based-access-control/
 * troubleshooting, "Role assignment changes are not being detected"), and an online endpoint's
 * identity must already hold AcrPull and Storage Blob Data Reader when a deployment is created
 * (learn.microsoft.com/azure/machine-learning/how-to-access-resources-from-endpoints-managed-identities).
 */
export const ROLE_PROPAGATION_SECONDS = 600;

/** Arguments of {@link WorkloadIdentity}. */
export interface WorkloadIdentityArgs {
  /** Azure region, e.g. `eastus2`. */
  location: string;
  resourceGroupName: pulumi.Input<string>;
  /** Name of the user-assigned identity. */
  identityName: pulumi.Input<string>;
  subscriptionId: pulumi.Input<string>;
  /** ARM ids of the scopes: resource group, storage account, container registry. */
  scopes: {
    resourceGroup: pulumi.Input<string>;
    storageAccount: pulumi.Input<string>;
    registry: pulumi.Input<string>;
  };
  tags: Record<string, string>;
  /** Resources the identity waits for (the preflight). */
  after?: pulumi.Input<pulumi.Resource>[];
}

/**
 * The user-assigned managed identity used by the compute clusters, the jobs and the online
 * endpoint, with the seeds' three role assignments:
 * - Contributor on the resource group: the seeds' choice (the endpoint's scoring container
 *   reads workspace metadata); broad, kept because the users asked for the seed's setup;
 * - Storage Blob Data Reader on the storage account (jobs and deployments read blobs);
 * - AcrPull on the registry (deployments pull the image Azure ML builds; a user-assigned
 *   identity gets no roles automatically, unlike a system-assigned one).
 * Assignments use `principalType: ServicePrincipal` so Azure does not fail with
 * PrincipalNotFound while the new identity replicates; `rolesInEffect` is a bounded wait for
 * them to propagate, which jobs, the endpoint and every deployment depend on.
 */
export class WorkloadIdentity extends pulumi.ComponentResource {
  /** ARM id of the identity. */
  public readonly id: pulumi.Output<string>;
  public readonly clientId: pulumi.Output<string>;
  public readonly principalId: pulumi.Output<string>;
  /** The role assignments. */
  public readonly roleAssignments: authorization.RoleAssignment[];
  /**
   * A bounded wait ({@link ROLE_PROPAGATION_SECONDS}, `@pulumiverse/time` Sleep) after the role
   * assignments: depend on this, not on the assignments, to use the roles once they are in
   * effect. It waits again whenever an assignment is recreated (its ids are the triggers).
   */
  public readonly rolesInEffect: time.Sleep;

  constructor(name: string, args: WorkloadIdentityArgs, opts?: pulumi.ComponentResourceOptions) {
    super("phi3:infra:Identity", name, {}, opts);
    const identity = new managedidentity.UserAssignedIdentity(
      `${name}-uai`,
      { resourceName: args.identityName, resourceGroupName: args.resourceGroupName, location: args.location, tags: args.tags },
      // After the preflight: with an existing resource group nothing else orders it.
      { parent: this, dependsOn: args.after },
    );
    const grants: [string, BuiltInRole, pulumi.Input<string>][] = [
      ["contributor-rg", "Contributor", args.scopes.resourceGroup],
      ["blob-reader-storage", "Storage Blob Data Reader", args.scopes.storageAccount],
      ["acrpull-registry", "AcrPull", args.scopes.registry],
    ];
    this.roleAssignments = grants.map(
      ([suffix, role, scope]) =>
        new authorization.RoleAssignment(
          `${name}-${suffix}`,
          {
            roleAssignmentName: pulumi
              .all([scope, identity.principalId])
              .apply(([s, p]) => roleAssignmentName(s, p, role)),
            scope,
            principalId: identity.principalId,
            principalType: "ServicePrincipal",
            roleDefinitionId: pulumi.output(args.subscriptionId).apply((sub) => roleDefinitionId(sub, role)),
            description: `phi3-finetune: ${role} for the workload identity`,
          },
          { parent: this },
        ),
    );
    this.rolesInEffect = new time.Sleep(
      `${name}-roles-in-effect`,
      {
        createDuration: `${ROLE_PROPAGATION_SECONDS}s`,
        triggers: Object.fromEntries(grants.map(([suffix], i) => [suffix, this.roleAssignments[i].id])),
      },
      // Starts only once every assignment exists.
      { parent: this, dependsOn: this.roleAssignments },
    );
    this.id = identity.id;
    this.clientId = identity.clientId;
    this.principalId = identity.principalId;
    this.registerOutputs({ id: this.id, clientId: this.clientId, principalId: this.principalId });
  }
}
