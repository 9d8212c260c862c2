import * as pulumi from "@pulumi/pulumi";
import * as applicationinsights from "@pulumi/azure-native/applicationinsights";
import * as containerregistry from "@pulumi/azure-native/containerregistry";
import * as authorization from "@pulumi/azure-native/authorization";
import * as keyvault from "@pulumi/azure-native/keyvault";
import * as ml from "@pulumi/azure-native/machinelearningservices";
import * as monitor from "@pulumi/azure-native/monitor";
import * as operationalinsights from "@pulumi/azure-native/operationalinsights";
import * as resources from "@pulumi/azure-native/resources";
import * as storage from "@pulumi/azure-native/storage";
import { AzureNames } from "./naming";
import type { Tags } from "./secrets";
import { grantRoles } from "./identity";
import {
  BLOB_SOFT_DELETE_DAYS,
  DIAGNOSTICS,
  isPrivate,
  KEY_VAULT_RETENTION_DAYS,
  managedNetwork,
  PROVISION_NETWORK_NOW,
  publicNetworkAccess,
  SecurityConfig,
  storageNetwork,
} from "./security";

/** The image-build compute name of a private workspace; throws when the caller gave none (a programming error). */
function requiredImageBuildCompute(name: string | undefined): string {
  if (!name) throw new Error("MlWorkspace: the private profile needs imageBuildCompute (the compute cluster Azure ML builds images on)");
  return name;
}
import { defaultDatastoreContainer } from "./training";

/** Arguments of {@link MlWorkspace}. */
export interface MlWorkspaceArgs {
  /** Azure region, e.g. `eastus2`. */
  location: string;
  /** The stack's Azure names (see `azureNames`). */
  names: pulumi.Input<AzureNames>;
  /** Subscription and tenant the stack deploys to (from `authorization.getClientConfig`). */
  client: pulumi.Input<{ subscriptionId: string; tenantId: string }>;
  /** Use this existing resource group instead of creating one (empty: create). */
  existingResourceGroup: string;
  /** Tags on every resource (values may be secrets). */
  tags: Tags;
  /** Resources every child waits for (the preflight). */
  after?: pulumi.Input<pulumi.Resource>[];
  /** The `security` setting: profile and lock (infra/security.ts). */
  security: SecurityConfig;
  /**
   * `private`: name of the compute cluster Azure ML builds environment images on
   * (`imageBuildCompute`; see `imageBuildCluster` in infra/security.ts). A name, not an id (REST
   * 2025-12-01: "The compute name for image build"), so it is set when the workspace is created,
   * before the cluster (a child of the workspace) exists, as azure-ai-ml's `Workspace(image_build_compute=...)`
   * takes it at creation; Azure ML uses it only when it builds an image, after the cluster exists.
   */
  imageBuildCompute?: string;
}

/**
 * A diagnostic setting sending every log (`allLogs`) and metric of `resourceUri` to the stack's
 * Log Analytics workspace (AVM's `diagnosticSettings` default; Azure Monitor REST 2021-05-01-preview
 * as azure-native's `monitor.DiagnosticSetting`). Pass `metricsOnly` for scopes without logs.
 */
export function diagnosticSetting(
  logicalName: string,
  resourceUri: pulumi.Input<string>,
  logAnalyticsId: pulumi.Input<string>,
  opts: pulumi.CustomResourceOptions,
  metricsOnly = false,
): monitor.DiagnosticSetting {
  return new monitor.DiagnosticSetting(
    logicalName,
    {
      name: "phi3-to-log-analytics",
      resourceUri,
      workspaceId: logAnalyticsId,
      ...(metricsOnly ? {} : { logs: [...DIAGNOSTICS.logs] }),
      metrics: [...DIAGNOSTICS.metrics],
    },
    opts,
  );
}

/**
 * The Azure ML workspace and what it needs (Azure ML REST 2025-12-01, azure-native v3):
 * a resource group (unless an existing one is named), a StorageV2 account (no public blob
 * access, TLS 1.2, infrastructure encryption, blob and container soft delete), a Key Vault with
 * RBAC authorization, purge protection and 90-day soft delete, Log Analytics plus a
 * workspace-based Application Insights, a container registry with the admin user off, and the
 * workspace (kind `Default`, system-assigned identity) linked to all four; diagnostic settings
 * of workspace, storage (account and blob service), vault and registry to Log Analytics; an
 * optional `CanNotDelete` lock on the resource group (`security.lock`).
 * The `private` profile (infra/security.ts) also turns storage shared-key access off with
 * identity-based system datastores (the workspace identity gets the data roles this needs),
 * disables public network access on vault, registry (Premium: Basic has no private link) and
 * workspace, and on storage unless `security.deployerNetwork` lists the deployer's addresses (then
 * only those reach it), and gives the workspace a managed network `AllowOnlyApprovedOutbound`
 * with the FQDN rules the jobs need (Azure adds the private endpoints to storage, vault, registry
 * and the workspace and the required service tags itself), provisioned at creation, and names the
 * compute cluster that builds environment images (`imageBuildCompute`).
 */
export class MlWorkspace extends pulumi.ComponentResource {
  public readonly resourceGroupName: pulumi.Output<string>;
  /** ARM id of the resource group (scope of the Contributor assignment). */
  public readonly resourceGroupId: pulumi.Output<string>;
  public readonly storageAccountId: pulumi.Output<string>;
  public readonly storageAccountName: pulumi.Output<string>;
  public readonly keyVaultId: pulumi.Output<string>;
  public readonly appInsightsId: pulumi.Output<string>;
  public readonly registryId: pulumi.Output<string>;
  public readonly workspaceName: pulumi.Output<string>;
  /** ARM id of the workspace. */
  public readonly workspaceId: pulumi.Output<string>;
  /** The workspace's GUID (Azure's `workspaceId` property; names the `workspaceblobstore` container). */
  public readonly workspaceGuid: pulumi.Output<string>;
  /** Principal id of the workspace's system-assigned identity. */
  public readonly workspacePrincipalId: pulumi.Output<string>;
  /** ARM id of the stack's Log Analytics workspace (diagnostic settings go there). */
  public readonly logAnalyticsId: pulumi.Output<string>;
  /** ARM id of the `workspaceblobstore` container (Azure ML creates it with the workspace): scope of the jobs' data role. */
  public readonly datastoreContainerId: pulumi.Output<string>;

  constructor(name: string, args: MlWorkspaceArgs, opts?: pulumi.ComponentResourceOptions) {
    super("phi3:infra:Workspace", name, {}, opts);
    // Every child waits for `after` (the preflight): with an existing resource group nothing else orders them.
    const parent = { parent: this, dependsOn: args.after };
    const names = pulumi.output(args.names);
    const client = pulumi.output(args.client);
    const { location, tags, security } = args;
    const privateNet = isPrivate(security);
    const access = publicNetworkAccess(security);

    if (args.existingResourceGroup) {
      this.resourceGroupName = pulumi.output(args.existingResourceGroup);
      this.resourceGroupId = pulumi.interpolate`/subscriptions/${client.subscriptionId}/resourceGroups/${args.existingResourceGroup}`;
    } else {
      const rg = new resources.ResourceGroup(`${name}-rg`, { resourceGroupName: names.resourceGroup, location, tags }, parent);
      this.resourceGroupName = rg.name;
      this.resourceGroupId = rg.id;
    }
    const resourceGroupName = this.resourceGroupName;

    const account = new storage.StorageAccount(
      `${name}-storage`,
      {
        accountName: names.storageAccount,
        resourceGroupName,
        location,
        kind: "StorageV2",
        sku: { name: "Standard_LRS" },
        allowBlobPublicAccess: false,
        minimumTlsVersion: "TLS1_2",
        enableHttpsTrafficOnly: true,
        // Second layer of encryption at rest (AVM's requireInfrastructureEncryption).
        encryption: {
          keySource: "Microsoft.Storage",
          requireInfrastructureEncryption: true,
          services: { blob: { enabled: true, keyType: "Account" }, file: { enabled: true, keyType: "Account" } },
        },
        // private: no account keys (Entra ID only). Network: infra/security.ts storageNetwork: public access
        // Disabled (private endpoints only; Azure then applies neither IP rules nor the trusted-services
        // bypass), or, with security.deployerNetwork, Enabled for those IP ranges only (defaultAction Deny),
        // where the AzureServices bypass lets trusted services such as diagnostics through.
        allowSharedKeyAccess: !privateNet,
        ...storageNetwork(security),
        tags,
      },
      {
        ...parent,
        // Azure sets infrastructure encryption only when an account is created: existing accounts keep theirs
        // (learn.microsoft.com/azure/storage/common/infrastructure-encryption-enable).
        ignoreChanges: ["encryption.requireInfrastructureEncryption"],
      },
    );
    new storage.BlobServiceProperties(
      `${name}-storage-blob-service`,
      {
        accountName: account.name,
        resourceGroupName,
        blobServicesName: "default",
        deleteRetentionPolicy: { enabled: true, days: BLOB_SOFT_DELETE_DAYS },
        containerDeleteRetentionPolicy: { enabled: true, days: BLOB_SOFT_DELETE_DAYS },
      },
      parent,
    );

    const vault = new keyvault.Vault(
      `${name}-keyvault`,
      {
        vaultName: names.keyVault,
        resourceGroupName,
        location,
        properties: {
          tenantId: client.tenantId,
          sku: { family: "A", name: "standard" },
          enableRbacAuthorization: true,
          enableSoftDelete: true,
          // AVM defaults. With purge protection a deleted vault's name stays taken for the whole
          // retention: after destroy, deploy again under the next nameGeneration (the preflight says so).
          enablePurgeProtection: true,
          softDeleteRetentionInDays: KEY_VAULT_RETENTION_DAYS,
          publicNetworkAccess: access,
          // With public access Disabled only private endpoints reach the vault; these ACLs take effect
          // only if public access is ever Enabled again (learn.microsoft.com/azure/key-vault/general/network-security).
          ...(privateNet ? { networkAcls: { defaultAction: "Deny", bypass: "AzureServices" } } : {}),
        },
        tags,
      },
      {
        ...parent,
        // Azure accepts the retention only when a vault is created ("cannot be changed once set",
        // learn.microsoft.com/azure/key-vault/general/soft-delete-overview): existing vaults keep theirs.
        ignoreChanges: ["properties.softDeleteRetentionInDays"],
      },
    );

    const logs = new operationalinsights.Workspace(
      `${name}-logs`,
      { workspaceName: names.logAnalytics, resourceGroupName, location, sku: { name: "PerGB2018" }, retentionInDays: 30, tags },
      parent,
    );

    const insights = new applicationinsights.Component(
      `${name}-appinsights`,
      {
        resourceName: names.appInsights,
        resourceGroupName,
        location,
        kind: "web",
        applicationType: "web",
        ingestionMode: "LogAnalytics",
        workspaceResourceId: logs.id,
        tags,
      },
      parent,
    );

    const registry = new containerregistry.Registry(
      `${name}-registry`,
      {
        registryName: names.containerRegistry,
        resourceGroupName,
        location,
        // Private link (and so public network access off) needs Premium (learn.microsoft.com/azure/container-registry/container-registry-private-link).
        sku: { name: privateNet ? "Premium" : "Basic" },
        adminUserEnabled: false,
        publicNetworkAccess: access,
        ...(privateNet ? { networkRuleBypassOptions: "AzureServices" } : {}),
        tags,
      },
      parent,
    );

    const workspace = new ml.Workspace(
      `${name}-workspace`,
      {
        workspaceName: names.workspace,
        resourceGroupName,
        location,
        kind: "Default",
        identity: { type: "SystemAssigned" },
        sku: { name: "Basic", tier: "Basic" },
        friendlyName: "Phi-3 fine-tuning",
        storageAccount: account.id,
        keyVault: vault.id,
        applicationInsights: insights.id,
        containerRegistry: registry.id,
        publicNetworkAccess: access,
        // private: system datastores use identities, not account keys (AVM WAF-aligned example);
        // a managed network allows only the outbound the jobs need, provisioned with the workspace
        // (PROVISION_NETWORK_NOW); and, the registry being private, Azure ML builds environment images
        // on a compute cluster of the workspace ("Configure image builds", how-to-managed-network).
        ...(privateNet
          ? {
              systemDatastoresAuthMode: "identity",
              managedNetwork: managedNetwork(security, { fqdnRules: true }),
              provisionNetworkNow: PROVISION_NETWORK_NOW,
              imageBuildCompute: requiredImageBuildCompute(args.imageBuildCompute),
            }
          : {}),
        tags,
      },
      parent,
    );
    this.workspacePrincipalId = workspace.identity.apply((i) => i?.principalId ?? "");

    if (privateNet) {
      // Identity-based system datastores: the workspace reads and writes its storage with its own identity
      // (learn.microsoft.com/azure/machine-learning/how-to-disable-local-auth-storage). Not Storage Blob Data
      // Contributor: Azure ML assigns that one to the workspace's system identity when it creates the
      // workspace ("the managed identity is automatically assigned the permissions it needs", ibid.;
      // "Automatically assigned the role when provisioned. Don't manually change this role assignment",
      // same page, "Scenarios for role assignments"); declaring it again fails with 409 RoleAssignmentExists.
      grantRoles(`${name}-workspace`, this.workspacePrincipalId, client.subscriptionId, [
        { suffix: "file-contributor-storage", role: "Storage File Data Privileged Contributor", scope: account.id, grantee: "workspace identity", why: "identity-based system datastores (file share)" },
      ], { parent: this });
    }

    const toLogs = (logical: string, uri: pulumi.Input<string>, metricsOnly = false) =>
      diagnosticSetting(`${name}-${logical}-diagnostics`, uri, logs.id, { parent: this }, metricsOnly);
    toLogs("workspace", workspace.id);
    // Storage accounts log per service: account metrics here, blob logs on the blob service.
    toLogs("storage", account.id, true);
    toLogs("storage-blob", pulumi.interpolate`${account.id}/blobServices/default`);
    toLogs("keyvault", vault.id);
    toLogs("registry", registry.id);

    if (security.lock) {
      new authorization.ManagementLockAtResourceGroupLevel(
        `${name}-rg-lock`,
        {
          lockName: "phi3-finetune-cannot-delete",
          resourceGroupName,
          level: "CanNotDelete",
          notes: "phi3-finetune security.lock: set it to false and pulumi up before destroying or replacing deployments",
        },
        parent,
      );
    }

    this.logAnalyticsId = logs.id;
    this.storageAccountId = account.id;
    this.storageAccountName = account.name;
    this.keyVaultId = vault.id;
    this.appInsightsId = insights.id;
    this.registryId = registry.id;
    this.workspaceName = workspace.name;
    this.workspaceId = workspace.id;
    this.workspaceGuid = workspace.workspaceId;
    this.datastoreContainerId = pulumi.interpolate`${account.id}/blobServices/default/containers/${workspace.workspaceId.apply(defaultDatastoreContainer)}`;
    this.registerOutputs({
      resourceGroupName: this.resourceGroupName,
      workspaceName: this.workspaceName,
      workspaceId: this.workspaceId,
    });
  }
}
