import * as pulumi from "@pulumi/pulumi";
import * as applicationinsights from "@pulumi/azure-native/applicationinsights";
import * as containerregistry from "@pulumi/azure-native/containerregistry";
import * as keyvault from "@pulumi/azure-native/keyvault";
import * as ml from "@pulumi/azure-native/machinelearningservices";
import * as operationalinsights from "@pulumi/azure-native/operationalinsights";
import * as resources from "@pulumi/azure-native/resources";
import * as storage from "@pulumi/azure-native/storage";
import { AzureNames } from "./naming";
import type { Tags } from "./secrets";
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
}

/**
 * The Azure ML workspace and what it needs (Azure ML REST 2025-12-01, azure-native v3):
 * a resource group (unless an existing one is named), a StorageV2 account (no public blob
 * access, TLS 1.2), a Key Vault with RBAC authorization and soft delete, Log Analytics plus a
 * workspace-based Application Insights, a Basic container registry with the admin user off,
 * and the workspace (kind `Default`, system-assigned identity) linked to all four.
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
  /** ARM id of the `workspaceblobstore` container (Azure ML creates it with the workspace): scope of the jobs' data role. */
  public readonly datastoreContainerId: pulumi.Output<string>;

  constructor(name: string, args: MlWorkspaceArgs, opts?: pulumi.ComponentResourceOptions) {
    super("phi3:infra:Workspace", name, {}, opts);
    // Every child waits for `after` (the preflight): with an existing resource group nothing else orders them.
    const parent = { parent: this, dependsOn: args.after };
    const names = pulumi.output(args.names);
    const client = pulumi.output(args.client);
    const { location, tags } = args;

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
        tags,
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
          softDeleteRetentionInDays: 7,
        },
        tags,
      },
      parent,
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
      { registryName: names.containerRegistry, resourceGroupName, location, sku: { name: "Basic" }, adminUserEnabled: false, tags },
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
        publicNetworkAccess: "Enabled",
        tags,
      },
      parent,
    );

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
