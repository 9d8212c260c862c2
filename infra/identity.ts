import * as pulumi from "@pulumi/pulumi";
import * as authorization from "@pulumi/azure-native/authorization";
import * as managedidentity from "@pulumi/azure-native/managedidentity";
import * as time from "@pulumiverse/time";
import { uuidV5 } from "./naming";
import type { Tags } from "./secrets";

/**
 * Built-in Azure role definition GUIDs this stack assigns
 * (learn.microsoft.com/azure/role-based-access-control/built-in-roles).
 */
export const BUILT_IN_ROLES = {
  Contributor: "b24988ac-6180-42a0-ab88-20f7382dd24c",
  "Storage Blob Data Reader": "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1",
  "Storage Blob Data Contributor": "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
  "Storage File Data Privileged Contributor": "69566ab7-960f-475b-8e7c-b3118f30c6bd",
  AcrPull: "7f951dda-4ed3-4680-a7ca-43fe172d538d",
  "AzureML Data Scientist": "f6c7c914-8db3-469d-8ca1-694a8f32e121",
  "Azure AI Enterprise Network Connection Approver": "b556d68e-0be0-4f35-a333-ad7ee1ce17ea",
} as const;

export type BuiltInRole = keyof typeof BUILT_IN_ROLES;

/** One action of a role definition, with why the stack needs it and the page that says so. */
export interface RoleAction {
  action: string;
  why: string;
}

/** Name of the compute identity's custom role (Azure appends nothing: {@link customRoleName} makes it tenant-unique). */
export const TRAINING_JOB_ROLE = "phi3-finetune training job";

const ML = "Microsoft.MachineLearningServices/workspaces";

/**
 * The actions of {@link TRAINING_JOB_ROLE}, the compute identity's only role on the workspace
 * (issue 18: instead of AzureML Data Scientist, whose wildcards include
 * `onlineEndpoints/listKeys/action`, `onlineEndpoints/deployments/write` and
 * `datastores/listsecrets/action`). The job code (fine_tune.py, prepare_data.py, the managed
 * mode's pipeline components) runs as this identity; the jobs themselves are submitted, and
 * their models registered, by the deployer through ARM, not by this identity. Action names from
 * learn.microsoft.com/azure/machine-learning/how-to-assign-roles ("MLflow operations", "Differences
 * between actions for V1 and V2 APIs" and the example custom roles) and the resource provider
 * operations list (learn.microsoft.com/azure/role-based-access-control/permissions/ai-machine-learning).
 * No wildcards: an action Azure adds later is not granted silently.
 */
export const TRAINING_JOB_ACTIONS: readonly RoleAction[] = [
  { action: `${ML}/read`, why: "MLflow (azureml-mlflow) reads the workspace to find its tracking and artifact endpoints (how-to-assign-roles: the MLOps example role)" },
  { action: `${ML}/experiments/read`, why: "MLflow reads the job's experiment (how-to-assign-roles, MLflow operations: experiments, V1 API)" },
  { action: `${ML}/experiments/runs/read`, why: "MLflow attaches to the job's own run (how-to-assign-roles, MLflow operations)" },
  { action: `${ML}/experiments/runs/write`, why: "fine_tune.py logs metrics and parameters to its run (how-to-assign-roles, MLflow operations)" },
  { action: `${ML}/jobs/read`, why: "the same run through the V2 API (how-to-assign-roles: experiment runs and jobs are experiments in V1, jobs in V2)" },
  { action: `${ML}/jobs/write`, why: "metrics and parameters logged through the V2 API (how-to-assign-roles, MLflow operations: jobs/* for V2)" },
  { action: `${ML}/metadata/artifacts/read`, why: "MLflow reads the run's artifacts (how-to-assign-roles: the MLOps example role)" },
  { action: `${ML}/metadata/artifacts/write`, why: "fine_tune.py uploads its outputs to the run's artifacts (how-to-assign-roles: the MLOps example role)" },
  { action: `${ML}/datastores/read`, why: "the job's data runtime resolves workspaceblobstore for its inputs and outputs; the data itself goes through Storage Blob Data Contributor on the container, never through the datastore's secrets (how-to-administrate-data-authentication)" },
];

/**
 * Operations no workload identity of this stack may perform, as the plan's access section lists
 * them: an identity "cannot" one when none of its roles allows it ({@link permits}).
 */
export const SENSITIVE_OPERATIONS: readonly { action: string; what: string }[] = [
  { action: `${ML}/onlineEndpoints/listKeys/action`, what: "read the endpoint's keys" },
  { action: `${ML}/onlineEndpoints/deployments/write`, what: "create or change deployments" },
  { action: `${ML}/onlineEndpoints/deployments/delete`, what: "delete deployments" },
  { action: `${ML}/onlineEndpoints/write`, what: "change the endpoint or its traffic" },
  { action: `${ML}/datastores/listsecrets/action`, what: "read datastore secrets (the storage account key)" },
  { action: `${ML}/listKeys/action`, what: "read the workspace's storage keys" },
  { action: `${ML}/models/versions/write`, what: "register model versions" },
  { action: "Microsoft.Authorization/roleAssignments/write", what: "grant roles" },
];

/** A role's permissions (Azure's `permissions[]` entry): action patterns with `*` wildcards. */
export interface RolePermissions {
  actions: readonly string[];
  notActions?: readonly string[];
  dataActions?: readonly string[];
}

/**
 * The permissions of the built-in roles this stack assigns or used to assign
 * (learn.microsoft.com/azure/role-based-access-control/built-in-roles, each role's JSON), for the
 * plan's "can / cannot" lines. Data actions are listed for what they grant on blobs.
 */
export const BUILT_IN_ROLE_PERMISSIONS: Record<BuiltInRole, RolePermissions> = {
  Contributor: { actions: ["*"], notActions: ["Microsoft.Authorization/*/Delete", "Microsoft.Authorization/*/Write", "Microsoft.Authorization/elevateAccess/Action"] },
  "Storage Blob Data Reader": {
    actions: ["Microsoft.Storage/storageAccounts/blobServices/containers/read", "Microsoft.Storage/storageAccounts/blobServices/generateUserDelegationKey/action"],
    dataActions: ["Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read"],
  },
  "Storage Blob Data Contributor": {
    actions: ["Microsoft.Storage/storageAccounts/blobServices/containers/delete", "Microsoft.Storage/storageAccounts/blobServices/containers/read", "Microsoft.Storage/storageAccounts/blobServices/containers/write", "Microsoft.Storage/storageAccounts/blobServices/generateUserDelegationKey/action"],
    dataActions: ["Microsoft.Storage/storageAccounts/blobServices/containers/blobs/delete", "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read", "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write", "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/move/action", "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/add/action"],
  },
  "Storage File Data Privileged Contributor": { actions: [], dataActions: ["Microsoft.Storage/storageAccounts/fileServices/fileshares/files/*"] },
  AcrPull: { actions: ["Microsoft.ContainerRegistry/registries/pull/read"] },
  "AzureML Data Scientist": {
    actions: [`${ML}/*/read`, `${ML}/*/action`, `${ML}/*/delete`, `${ML}/*/write`],
    notActions: [`${ML}/delete`, `${ML}/write`, `${ML}/computes/*/write`, `${ML}/computes/*/delete`, "Microsoft.Authorization/*", `${ML}/computes/listKeys/action`, `${ML}/listKeys/action`, `${ML}/services/aks/write`, `${ML}/services/aks/delete`, `${ML}/endpoints/pipelines/write`],
  },
  "Azure AI Enterprise Network Connection Approver": {
    actions: ["Microsoft.Network/privateEndpoints/read", "Microsoft.MachineLearningServices/workspaces/privateEndpointConnections/read", "Microsoft.MachineLearningServices/workspaces/privateEndpointConnections/write"],
  },
};

/** Whether an action pattern (Azure's: case-insensitive, `*` matches any characters) covers `action`. */
export function actionMatches(pattern: string, action: string): boolean {
  const re = new RegExp(`^${pattern.split("*").map((p) => p.replace(/[.+?^${}()|[\]\\/]/g, "\\$&")).join(".*")}$`, "i");
  return re.test(action);
}

/** Whether permissions allow an action: some action pattern covers it and no notAction does (Azure RBAC's rule). */
export function permits(p: RolePermissions, action: string): boolean {
  return p.actions.some((a) => actionMatches(a, action)) && !(p.notActions ?? []).some((n) => actionMatches(n, action));
}

/**
 * The custom role's GUID in a resource group: UUID v5 of the group's ARM id and the role's name,
 * so every `up` declares the same definition (role definition ids must be GUIDs).
 */
export function customRoleGuid(resourceGroupId: string, role: string = TRAINING_JOB_ROLE): string {
  return uuidV5(`roleDefinition|${resourceGroupId.toLowerCase()}|${role}`);
}

/** Role names are unique in a tenant: the stack's role carries its GUID. */
export function customRoleName(guid: string, role: string = TRAINING_JOB_ROLE): string {
  return `${role} ${guid}`;
}

/** ARM id of a built-in role definition in a subscription. */
export function roleDefinitionId(subscriptionId: string, role: BuiltInRole): string {
  return `/subscriptions/${subscriptionId}/providers/Microsoft.Authorization/roleDefinitions/${BUILT_IN_ROLES[role]}`;
}

/**
 * Deterministic role assignment name: UUID v5 of scope, principal and role GUID (the
 * equivalent of Bicep's `guid(scope, principal, role)`), so a rerun never duplicates it.
 * `role` is a built-in role's name or a custom role's GUID.
 */
export function roleAssignmentName(scope: string, principalId: string, role: BuiltInRole | string): string {
  const guid = (BUILT_IN_ROLES as Record<string, string>)[role] ?? role;
  return uuidV5(`${scope.toLowerCase()}|${principalId.toLowerCase()}|${guid}`);
}

/**
 * Seconds to wait after the role assignments are created before anything uses them. Azure RBAC
 * changes take up to 10 minutes to take effect (learn.microsoft.com/azure/role-based-access-control/
 * troubleshooting, "Role assignment changes are not being detected"), and an online endpoint's
 * identity must already hold AcrPull and Storage Blob Data Reader when a deployment is created
 * (learn.microsoft.com/azure/machine-learning/how-to-access-resources-from-endpoints-managed-identities).
 */
export const ROLE_PROPAGATION_SECONDS = 600;

/** Who holds a role assignment, as the plan prints it. */
export type Grantee = "endpoint identity" | "compute identity" | "workspace identity" | "hub identity" | "deployer";

/** One role assignment: logical-name suffix, role, scope (ARM id), the grantee and why (with its source). */
export interface RoleGrant {
  suffix: string;
  /** A built-in role's name, or a custom role's name with its definition in `custom`. */
  role: BuiltInRole | string;
  /** The custom role definition declared by the stack (its GUID and resource). */
  custom?: { guid: pulumi.Input<string>; definition: authorization.RoleDefinition };
  scope: pulumi.Input<string>;
  grantee: Grantee;
  /** Why this principal needs this role on this scope, with the page that says so. */
  why: string;
  /** Principal type; default `ServicePrincipal` (managed identities: no PrincipalNotFound while a new identity replicates). */
  principalType?: pulumi.Input<string>;
}

/**
 * Declare role assignments for one principal (Microsoft.Authorization/roleAssignments): the
 * name is {@link roleAssignmentName} (UUID v5 of scope, principal, role), the description says
 * `<grantee>: <role>: <why>` (the plan prints it). `principalType` defaults to ServicePrincipal
 * (managed identities: no PrincipalNotFound while a new identity replicates); the deployer's is
 * given (a user or a service principal).
 */
export function grantRoles(
  name: string,
  principalId: pulumi.Input<string>,
  subscriptionId: pulumi.Input<string>,
  grants: RoleGrant[],
  opts: pulumi.CustomResourceOptions,
): authorization.RoleAssignment[] {
  return grants.map((g) => {
    const guid = pulumi.output(g.custom ? g.custom.guid : BUILT_IN_ROLES[g.role as BuiltInRole]);
    return new authorization.RoleAssignment(
      `${name}-${g.suffix}`,
      {
        roleAssignmentName: pulumi.all([g.scope, principalId, guid]).apply(([s, p, r]) => roleAssignmentName(s, p, r)),
        scope: g.scope,
        principalId,
        principalType: g.principalType ?? "ServicePrincipal",
        roleDefinitionId: pulumi.all([subscriptionId, guid]).apply(([sub, r]) => `/subscriptions/${sub}/providers/Microsoft.Authorization/roleDefinitions/${r}`),
        description: `phi3-finetune: ${g.grantee}: ${g.role}: ${g.why}`,
      },
      // A custom role is assigned once its definition exists.
      g.custom ? { ...opts, dependsOn: [g.custom.definition] } : opts,
    );
  });
}

/** Arguments of {@link WorkloadIdentity}. */
export interface WorkloadIdentityArgs {
  /** Azure region, e.g. `eastus2`. */
  location: string;
  resourceGroupName: pulumi.Input<string>;
  /** Name of the endpoint's user-assigned identity (the stack's first identity; its name is kept). */
  identityName: pulumi.Input<string>;
  /** Name of the compute clusters' user-assigned identity. */
  computeIdentityName: pulumi.Input<string>;
  subscriptionId: pulumi.Input<string>;
  /** ARM ids of the scopes. */
  scopes: {
    resourceGroup: pulumi.Input<string>;
    storageAccount: pulumi.Input<string>;
    registry: pulumi.Input<string>;
    /** The Azure ML workspace. */
    workspace: pulumi.Input<string>;
    /** The container of `workspaceblobstore` (`.../blobServices/default/containers/azureml-blobstore-<GUID>`). */
    datastoreContainer: pulumi.Input<string>;
  };
  /** `security.cookbookRoles`: also Contributor on the resource group for both identities (the Cookbook's grant). */
  cookbookRoles: boolean;
  /**
   * The principal running `pulumi up` (object id from `getClientConfig`), when uploads go through
   * Entra ID (the `private` profile, shared key off): it gets Storage Blob Data Contributor on the
   * datastore container, inside the same wait.
   */
  deployerObjectId?: pulumi.Input<string>;
  /** Principal type of the deployer (`deployerPrincipalType` in infra/security.ts). */
  deployerPrincipalType?: pulumi.Input<string>;
  /** Resource tags (values may be secrets). */
  tags: Tags;
  /** Resources the identity waits for (the preflight). */
  after?: pulumi.Input<pulumi.Resource>[];
}

/**
 * The workload identities and their roles, least privilege (issue 14; Microsoft: "Permissions
 * needed for endpoint identity", learn.microsoft.com/azure/machine-learning/concept-endpoints-online-auth):
 *
 * Endpoint identity (`<name>-uai`, user-assigned; the endpoint's identity cannot change later):
 * - AcrPull on the registry: the deployment pulls the image Azure ML builds;
 * - Storage Blob Data Reader on the storage account: the deployment reads the model files.
 * For a system-assigned endpoint identity Azure assigns three roles itself (AcrPull, Storage Blob
 * Data Reader and AzureML Metrics Writer (preview) on the workspace; concept-endpoints-online-auth,
 * "Automatic role assignment for endpoint identity"); a user-assigned identity gets what its owner
 * grants. This stack grants the first two: the MLflow no-code deployment's scoring container needs
 * nothing else (it neither writes custom metrics to the workspace nor writes data).
 *
 * Compute identity (`<name>-compute-uai`, user-assigned, the clusters' and so the jobs' identity):
 * - the custom role {@link TRAINING_JOB_ROLE} on the workspace, declared by the stack (a
 *   `Microsoft.Authorization/roleDefinitions` in the resource group, GUID {@link customRoleGuid}):
 *   only {@link TRAINING_JOB_ACTIONS} (MLflow tracking and artifacts of its own run, reading the
 *   datastore definition). Not AzureML Data Scientist, whose wildcards let job code read the
 *   endpoint keys, change deployments and traffic, and read datastore secrets (the storage
 *   account key in the standard profile). Declaring a custom role needs
 *   `Microsoft.Authorization/roleDefinitions/write` (Owner or User Access Administrator);
 * - Storage Blob Data Contributor on the `workspaceblobstore` container only: jobs read the code
 *   and data uploaded there and write their outputs (prep data, the MLflow model) there;
 * - AcrPull on the registry: "the compute cluster uses a managed identity ... to pull Docker
 *   images from ACR" (how-to-identity-based-service-authentication; the admin user is off).
 *
 * `cookbookRoles` adds the Cookbook's Contributor on the resource group to both. Assignments
 * are named by UUID v5 of (scope, principal, role); `rolesInEffect` is a bounded wait for them
 * to propagate, which jobs, the endpoint and every deployment depend on.
 */
export class WorkloadIdentity extends pulumi.ComponentResource {
  /** ARM id of the endpoint identity. */
  public readonly id: pulumi.Output<string>;
  public readonly clientId: pulumi.Output<string>;
  public readonly principalId: pulumi.Output<string>;
  /** ARM id of the compute clusters' identity. */
  public readonly computeId: pulumi.Output<string>;
  public readonly computePrincipalId: pulumi.Output<string>;
  /** The role assignments. */
  public readonly roleAssignments: authorization.RoleAssignment[];
  /** The compute identity's custom role ({@link TRAINING_JOB_ROLE}). */
  public readonly trainingJobRole: authorization.RoleDefinition;
  /**
   * A bounded wait ({@link ROLE_PROPAGATION_SECONDS}, `@pulumiverse/time` Sleep) after the role
   * assignments: depend on this, not on the assignments, to use the roles once they are in
   * effect. It waits again whenever an assignment is recreated (its ids are the triggers).
   */
  public readonly rolesInEffect: time.Sleep;

  constructor(name: string, args: WorkloadIdentityArgs, opts?: pulumi.ComponentResourceOptions) {
    super("phi3:infra:Identity", name, {}, opts);
    // After the preflight: with an existing resource group nothing else orders them.
    const after = { parent: this, dependsOn: args.after };
    const uai = (suffix: string, resourceName: pulumi.Input<string>) =>
      new managedidentity.UserAssignedIdentity(
        `${name}-${suffix}`,
        { resourceName, resourceGroupName: args.resourceGroupName, location: args.location, tags: args.tags },
        after,
      );
    const endpoint = uai("uai", args.identityName);
    const compute = uai("compute-uai", args.computeIdentityName);
    const { scopes } = args;
    const cookbook = (grantee: Grantee, suffix: string): RoleGrant[] =>
      args.cookbookRoles
        ? [{ suffix, role: "Contributor", scope: scopes.resourceGroup, grantee, why: "the Phi-3 Cookbook's grant (security.cookbookRoles)" }]
        : [];
    const endpointGrants: RoleGrant[] = [
      ...cookbook("endpoint identity", "contributor-rg"),
      { suffix: "blob-reader-storage", role: "Storage Blob Data Reader", scope: scopes.storageAccount, grantee: "endpoint identity", why: "the deployment reads the model files (concept-endpoints-online-auth)" },
      { suffix: "acrpull-registry", role: "AcrPull", scope: scopes.registry, grantee: "endpoint identity", why: "the deployment pulls its image (concept-endpoints-online-auth)" },
    ];
    const jobRoleGuid = pulumi.output(scopes.resourceGroup).apply((rg) => customRoleGuid(rg));
    this.trainingJobRole = new authorization.RoleDefinition(
      `${name}-training-job-role`,
      {
        roleDefinitionId: jobRoleGuid,
        roleName: jobRoleGuid.apply((g) => customRoleName(g)),
        roleType: "CustomRole",
        description: "phi3-finetune: what the fine-tune and data-prep jobs need on the workspace (MLflow tracking and artifacts of their own run, the datastore definition); no keys, no secrets, no deployments",
        scope: scopes.resourceGroup,
        assignableScopes: [scopes.resourceGroup],
        permissions: [{ actions: TRAINING_JOB_ACTIONS.map((a) => a.action), notActions: [], dataActions: [], notDataActions: [] }],
      },
      after,
    );
    const computeGrants: RoleGrant[] = [
      ...cookbook("compute identity", "compute-contributor-rg"),
      { suffix: "compute-trainingjob-workspace", role: TRAINING_JOB_ROLE, custom: { guid: jobRoleGuid, definition: this.trainingJobRole }, scope: scopes.workspace, grantee: "compute identity", why: "jobs log metrics and artifacts of their own run and resolve the datastore, nothing else (custom role, infra/identity.ts TRAINING_JOB_ACTIONS)" },
      { suffix: "compute-blob-contributor-datastore", role: "Storage Blob Data Contributor", scope: scopes.datastoreContainer, grantee: "compute identity", why: "jobs read code and data and write outputs in workspaceblobstore only" },
      { suffix: "compute-acrpull-registry", role: "AcrPull", scope: scopes.registry, grantee: "compute identity", why: "clusters pull the environment image (how-to-identity-based-service-authentication)" },
    ];
    const deployerGrants: RoleGrant[] =
      args.deployerObjectId === undefined
        ? []
        : [{ suffix: "deployer-blob-contributor-datastore", role: "Storage Blob Data Contributor", scope: scopes.datastoreContainer, grantee: "deployer", why: "pulumi up uploads code and data with Entra ID (shared key is off)", principalType: args.deployerPrincipalType }];
    this.roleAssignments = [
      ...grantRoles(name, endpoint.principalId, args.subscriptionId, endpointGrants, { parent: this }),
      ...grantRoles(name, compute.principalId, args.subscriptionId, computeGrants, { parent: this }),
      ...(args.deployerObjectId === undefined ? [] : grantRoles(name, args.deployerObjectId, args.subscriptionId, deployerGrants, { parent: this })),
    ];
    const suffixes = [...endpointGrants, ...computeGrants, ...deployerGrants].map((g) => g.suffix);
    this.rolesInEffect = new time.Sleep(
      `${name}-roles-in-effect`,
      {
        createDuration: `${ROLE_PROPAGATION_SECONDS}s`,
        triggers: Object.fromEntries(suffixes.map((suffix, i) => [suffix, this.roleAssignments[i].id])),
      },
      // Starts only once every assignment exists.
      { parent: this, dependsOn: this.roleAssignments },
    );
    this.id = endpoint.id;
    this.clientId = endpoint.clientId;
    this.principalId = endpoint.principalId;
    this.computeId = compute.id;
    this.computePrincipalId = compute.principalId;
    this.registerOutputs({ id: this.id, clientId: this.clientId, principalId: this.principalId, computeId: this.computeId });
  }
}
