import * as pulumi from "@pulumi/pulumi";
import * as ml from "@pulumi/azure-native/machinelearningservices";
import type { ChatDefaults } from "./generation";
import { grantRoles } from "./identity";
import type { Tags } from "./secrets";
import { isPrivate, managedNetwork, PROVISION_NETWORK_NOW, publicNetworkAccess, SecurityConfig } from "./security";

/** Arguments of {@link PromptFlow}. */
export interface PromptFlowArgs {
  location: string;
  resourceGroupName: pulumi.Input<string>;
  hubName: pulumi.Input<string>;
  projectName: pulumi.Input<string>;
  /** ARM ids reused from the ML workspace's dependencies (Azure allows sharing them). */
  storageAccountId: pulumi.Input<string>;
  keyVaultId: pulumi.Input<string>;
  appInsightsId: pulumi.Input<string>;
  registryId: pulumi.Input<string>;
  /** Name of the CustomKeys connection. */
  connectionName: string;
  /** Scoring URI of the online endpoint. */
  scoringUri: pulumi.Input<string>;
  /** Endpoint key; must be a secret. */
  endpointKey: pulumi.Output<string>;
  /** Generation defaults for the serving hardware (infra/generation.ts), put in the metadata. */
  chatDefaults: ChatDefaults;
  /** Resource tags (values may be secrets). */
  tags: Tags;
  /** The `security` setting (infra/security.ts). */
  security: SecurityConfig;
  /** ARM id of the ML workspace holding the endpoint (target of the hub's private endpoint in `private`). */
  workspaceId: pulumi.Input<string>;
  subscriptionId: pulumi.Input<string>;
}

/**
 * Prompt flow's side of the seeds (Azure ML REST 2025-12-01): an AI hub (workspace kind
 * `Hub`) reusing the stack's storage account, key vault, Application Insights and registry; a
 * project in it (kind `Project`, `hubResourceId`); and a `CustomKeys` connection on the
 * project holding `endpoint` (the scoring URI) and `key` (the endpoint key, a secret), which
 * Prompt flow exposes to the flow's tool as `connection.secrets`. The connection's metadata
 * (`connection.configs` in the tool) carries `max_new_tokens` and `timeout_seconds` sized for
 * the deployment's instance type, so a CPU deployment is not asked for more than it can answer
 * within its request timeout, and `payload_shape`, the request body the served model takes.
 * The `private` profile disables public network access on hub and project and gives the hub a
 * managed network `AllowOnlyApprovedOutbound` (projects use their hub's) whose one user rule is
 * a private endpoint to the ML workspace (`amlworkspace`), the only way a flow in the
 * hub's network reaches the endpoint once its public access is off (no FQDN rules, so no Azure
 * Firewall), provisioned at creation (`provisionNetworkNow`); the hub's identity gets the file
 * data role of identity-based datastores (Azure assigns the blob one itself) and may approve that
 * private endpoint.
 */
export class PromptFlow extends pulumi.ComponentResource {
  public readonly hubName: pulumi.Output<string>;
  public readonly projectName: pulumi.Output<string>;
  public readonly connectionName: pulumi.Output<string>;

  constructor(name: string, args: PromptFlowArgs, opts?: pulumi.ComponentResourceOptions) {
    super("phi3:infra:PromptFlow", name, {}, opts);
    // Arguments the hub and the project share.
    const common = {
      resourceGroupName: args.resourceGroupName,
      location: args.location,
      tags: args.tags,
      identity: { type: "SystemAssigned" },
      sku: { name: "Basic", tier: "Basic" },
      publicNetworkAccess: publicNetworkAccess(args.security),
    } satisfies Partial<ml.WorkspaceArgs>;
    const privateNet = isPrivate(args.security);
    const hub = new ml.Workspace(
      `${name}-hub`,
      {
        ...common,
        workspaceName: args.hubName,
        kind: "Hub",
        friendlyName: "Phi-3 Prompt flow hub",
        storageAccount: args.storageAccountId,
        keyVault: args.keyVaultId,
        applicationInsights: args.appInsightsId,
        containerRegistry: args.registryId,
        ...(privateNet
          ? {
              systemDatastoresAuthMode: "identity",
              // No FQDN rules: the hub runs no job and no image build (the flow needs no package beyond
              // its runtime, promptflow/requirements.txt), so Azure creates no firewall for it.
              managedNetwork: managedNetwork(args.security, {
                fqdnRules: false,
                extra: {
                  "ml-workspace": {
                    type: "PrivateEndpoint",
                    category: "UserDefined",
                    destination: { serviceResourceId: args.workspaceId, subresourceTarget: "amlworkspace", sparkEnabled: false },
                  },
                },
              }),
              provisionNetworkNow: PROVISION_NETWORK_NOW,
            }
          : {}),
      },
      { parent: this },
    );
    if (privateNet) {
      const hubPrincipal = hub.identity.apply((i) => i?.principalId ?? "");
      // No Storage Blob Data Contributor here: Azure assigns it to the hub's system identity when it
      // provisions the hub ("Automatically assigned the role when you provision the hub. Don't manually
      // change this role assignment": learn.microsoft.com/azure/ai-foundry/how-to/disable-local-auth),
      // and a second assignment of the same role, scope and principal fails with 409 RoleAssignmentExists.
      grantRoles(`${name}-hub`, hubPrincipal, args.subscriptionId, [
        { suffix: "file-contributor-storage", role: "Storage File Data Privileged Contributor", scope: args.storageAccountId, grantee: "hub identity", why: "identity-based system datastores (file share)" },
        // The managed network creates the private endpoint to the ML workspace; the hub's identity must
        // be allowed to approve it (learn.microsoft.com/azure/ai-foundry/how-to/configure-managed-network).
        { suffix: "pe-approver-workspace", role: "Azure AI Enterprise Network Connection Approver", scope: args.workspaceId, grantee: "hub identity", why: "approve the hub's private endpoint to the ML workspace" },
      ], { parent: this });
    }
    const project = new ml.Workspace(
      `${name}-project`,
      { ...common, workspaceName: args.projectName, kind: "Project", friendlyName: "Phi-3 Prompt flow project", hubResourceId: hub.id },
      { parent: this },
    );
    const connection = new ml.WorkspaceConnection(
      `${name}-connection`,
      {
        resourceGroupName: args.resourceGroupName,
        workspaceName: project.name,
        connectionName: args.connectionName,
        properties: {
          category: "CustomKeys",
          authType: "CustomKeys",
          target: args.scoringUri,
          credentials: { keys: pulumi.secret(pulumi.all([args.scoringUri, args.endpointKey]).apply(([endpoint, key]) => ({ endpoint, key }))) },
          metadata: {
            purpose: "Fine-tuned Phi-3 online endpoint",
            payload_shape: args.chatDefaults.payloadShape,
            max_new_tokens: String(args.chatDefaults.maxNewTokens),
            timeout_seconds: String(args.chatDefaults.timeoutSeconds),
          },
        },
      },
      // The connection's properties hold the endpoint key: keep them secret in state and outputs.
      { parent: this, additionalSecretOutputs: ["properties"] },
    );
    this.hubName = hub.name;
    this.projectName = project.name;
    this.connectionName = connection.name;
    this.registerOutputs({ hubName: this.hubName, projectName: this.projectName, connectionName: this.connectionName });
  }
}
