/**
 * phi3-finetune: an Azure subscription to a fine-tuned Phi-3 model answering chat requests on
 * an Azure ML managed online endpoint, with Prompt flow. This file only composes; each concern
 * is a component in infra/. Reading order follows the seeds' architecture:
 *   config → preflight (checks the subscription first) → workspace (+ storage, key vault,
 *   insights, registry) → identity and roles
 *   → compute clusters → training (assets, jobs, model) → serving (endpoint, deployments,
 *   traffic) → Prompt flow (hub, project, connection).
 */
import * as pulumi from "@pulumi/pulumi";
import * as authorization from "@pulumi/azure-native/authorization";
import { ComputeClusters, imageBuildCluster } from "./infra/compute";
import { loadConfig } from "./infra/config";
import { secretTags } from "./infra/secrets";
import { deployerPrincipalType, isPrivate } from "./infra/security";
import { chatDefaults as chatDefaultsOf } from "./infra/generation";
import { WorkloadIdentity } from "./infra/identity";
import { azureNames } from "./infra/naming";
import { Preflight } from "./infra/preflight";
import { PromptFlow } from "./infra/promptflow";
import { Serving } from "./infra/serving";
import { planTraining, Training } from "./infra/training";
import { MlWorkspace } from "./infra/workspace";

// Validate everything (config, files, data) before the first resource is registered.
const { config, warnings, secrets } = loadConfig();
const trainingPlan = planTraining(config);
// private: the cluster Azure ML builds environment images on (the registry has no public endpoint).
const imageBuild = imageBuildCluster(config);
for (const w of warnings) pulumi.log.warn(w);

// Secret config stays secret: tag values are pulumi.secret when the tags key is (infra/secrets.ts).
const userTags = secretTags(config.tags, secrets);
const tags = { ...userTags, project: "phi3-finetune", stack: pulumi.getStack() };
const location = config.location;
const client = authorization.getClientConfigOutput();
const names = client.subscriptionId.apply((subscriptionId) =>
  azureNames({ prefix: config.namePrefix, stack: pulumi.getStack(), subscriptionId, resourceGroupName: config.resourceGroupName, generation: config.nameGeneration }),
);

// First step of `pulumi up`: check the subscription before anything costly exists.
const preflight = new Preflight("phi3-preflight", { config, subscriptionId: client.subscriptionId });

const workspace = new MlWorkspace("phi3", {
  location,
  names,
  client,
  existingResourceGroup: config.resourceGroupName,
  tags,
  after: [preflight.done],
  security: config.security,
  imageBuildCompute: imageBuild?.name,
});

const identity = new WorkloadIdentity("phi3-identity", {
  location,
  resourceGroupName: workspace.resourceGroupName,
  identityName: names.identity,
  computeIdentityName: names.computeIdentity,
  subscriptionId: client.subscriptionId,
  scopes: {
    resourceGroup: workspace.resourceGroupId,
    storageAccount: workspace.storageAccountId,
    registry: workspace.registryId,
    workspace: workspace.workspaceId,
    datastoreContainer: workspace.datastoreContainerId,
  },
  cookbookRoles: config.security.cookbookRoles,
  // private: shared key is off, so pulumi up uploads code and data with its own Entra ID identity.
  deployerObjectId: isPrivate(config.security) ? client.objectId : undefined,
  deployerPrincipalType: client.clientId.apply((id) => deployerPrincipalType(config.security, id)),
  tags,
  after: [preflight.done],
});

const ws = { resourceGroupName: workspace.resourceGroupName, workspaceName: workspace.workspaceName };

const compute = new ComputeClusters("phi3-compute", {
  location,
  ...ws,
  identityId: identity.computeId,
  training: config.trainingCluster,
  prep: config.data.source === "ultrachat" ? config.data.prepCluster : undefined,
  imageBuild: imageBuild?.add,
  tags,
});

const training = new Training("phi3-training", {
  config,
  plan: trainingPlan,
  location,
  subscriptionId: client.subscriptionId,
  ...ws,
  storageAccountName: workspace.storageAccountName,
  workspaceGuid: workspace.workspaceGuid,
  trainingClusterId: compute.trainingClusterId,
  prepClusterId: compute.prepClusterId,
  // private: Azure ML builds the jobs' images on the image-build cluster, so it must exist first.
  dependsOn: [identity.rolesInEffect, ...(compute.imageBuildCluster ? [compute.imageBuildCluster] : [])],
  secrets,
  entraIdUploads: isPrivate(config.security),
  // The quality gate compares the new run with the model serving on this endpoint.
  endpointName: names.endpoint,
});

const serving = new Serving("phi3-serving", {
  config,
  location,
  subscriptionId: client.subscriptionId,
  ...ws,
  endpointName: names.endpoint,
  identity: { id: identity.id, clientId: identity.clientId },
  rolesInEffect: identity.rolesInEffect,
  trainedModel: { name: training.modelName, version: training.modelVersion, id: training.modelVersionId },
  tags: userTags,
  secrets,
  security: config.security,
  logAnalyticsId: workspace.logAnalyticsId,
});

const promptFlow = config.promptFlow.enabled
  ? new PromptFlow("phi3-promptflow", {
      location,
      resourceGroupName: workspace.resourceGroupName,
      hubName: names.hub,
      projectName: names.project,
      storageAccountId: workspace.storageAccountId,
      keyVaultId: workspace.keyVaultId,
      appInsightsId: workspace.appInsightsId,
      registryId: workspace.registryId,
      connectionName: config.promptFlow.connectionName,
      scoringUri: serving.scoringUri,
      endpointKey: serving.primaryKey,
      chatDefaults: chatDefaultsOf(config),
      tags,
      security: config.security,
      workspaceId: workspace.workspaceId,
      subscriptionId: client.subscriptionId,
    })
  : undefined;

export const resourceGroupName = workspace.resourceGroupName;
export const workspaceName = workspace.workspaceName;
export const fineTuneJobName = training.jobName;
export const modelVersionId = training.modelVersionId;
export const endpointName = serving.endpointName;
export const deploymentNames = serving.deploymentNames;
export const scoringUri = serving.scoringUri;
/** Primary endpoint key (secret: `pulumi stack output endpointKey --show-secrets`). */
export const endpointKey = serving.primaryKey;
/** `max_new_tokens` and client timeout that fit the serving hardware (read by `npm run chat`). */
export const chatDefaults = chatDefaultsOf(config);
export const promptFlowProject = promptFlow?.projectName;
export const promptFlowConnection = promptFlow?.connectionName;
