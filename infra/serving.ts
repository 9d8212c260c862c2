import * as pulumi from "@pulumi/pulumi";
import * as local from "@pulumi/command/local";
import * as ml from "@pulumi/azure-native/machinelearningservices";
import type * as inputs from "@pulumi/azure-native/types/input";
import { DeploymentConfig, StackConfig } from "./config";
import { isoMillis, isoSeconds, sha256 } from "./naming";

/**
 * Azure name of a deployment: the config name plus 8 hex of the model version it serves, so
 * a new model version gives a new deployment (created before the old one is deleted).
 */
export function deploymentAzureName(d: DeploymentConfig, trainedModel: { name: string; version: string }): string {
  const ref = d.model === "trained" ? trainedModel : d.model;
  return `${d.name}-${sha256(ref.name, ref.version).slice(0, 8)}`;
}

/** Probe settings in Azure's shape: counts as numbers, durations as ISO-8601 strings. */
export function probeSettings(p: DeploymentConfig["probes"]): inputs.machinelearningservices.ProbeSettingsArgs {
  return {
    failureThreshold: p.failureThreshold,
    successThreshold: p.successThreshold,
    period: isoSeconds(p.periodSeconds),
    initialDelay: isoSeconds(p.initialDelaySeconds),
    timeout: isoSeconds(p.timeoutSeconds),
  };
}

/** Arguments of {@link Serving}. */
export interface ServingArgs {
  config: StackConfig;
  location: string;
  subscriptionId: pulumi.Input<string>;
  resourceGroupName: pulumi.Input<string>;
  workspaceName: pulumi.Input<string>;
  endpointName: pulumi.Input<string>;
  /** User-assigned identity of the endpoint (cannot be changed after creation). */
  identity: { id: pulumi.Input<string>; clientId: pulumi.Input<string> };
  /** Role assignments of that identity: the endpoint waits for them (AcrPull propagation). */
  roleAssignments: pulumi.Resource[];
  /** The model version this stack trains. */
  trainedModel: { name: string; version: string; id: pulumi.Input<string> };
}

/**
 * Serving (Azure ML REST 2025-12-01): the managed online endpoint (key auth, the
 * user-assigned identity), one managed online deployment per configured deployment (instance
 * type and count, request settings and probes as ISO-8601 durations, environment variables
 * SUBSCRIPTION_ID / RESOURCE_GROUP_NAME / UAI_CLIENT_ID), and the traffic step:
 * `jobs/set-traffic.ts` run by `@pulumi/command` after the deployments exist (the endpoint
 * cannot name a deployment that does not exist yet); its delete step sets the managed
 * deployments' traffic to 0 before Pulumi deletes them. Exposes the scoring URI and the
 * primary key as a secret.
 */
export class Serving extends pulumi.ComponentResource {
  public readonly endpointName: pulumi.Output<string>;
  public readonly scoringUri: pulumi.Output<string>;
  /** Primary endpoint key; always a secret. */
  public readonly primaryKey: pulumi.Output<string>;
  /** Azure deployment names by config name. */
  public readonly deploymentNames: Record<string, string>;

  constructor(name: string, args: ServingArgs, opts?: pulumi.ComponentResourceOptions) {
    super("phi3:infra:Serving", name, {}, opts);
    const { config: c } = args;
    const ws = { resourceGroupName: args.resourceGroupName, workspaceName: args.workspaceName };
    const tags = c.tags;

    const endpoint = new ml.OnlineEndpoint(
      `${name}-endpoint`,
      {
        ...ws,
        endpointName: args.endpointName,
        location: args.location,
        identity: { type: "UserAssigned", userAssignedIdentities: [args.identity.id] },
        properties: { authMode: "Key", description: "Fine-tuned Phi-3 (phi3-finetune stack)" },
        tags,
      },
      {
        parent: this,
        // A user-assigned identity gets no roles by itself; without AcrPull the deployment fails
        // with "Endpoint identity does not have pull permission on the registry" (REFERENCE.md).
        dependsOn: args.roleAssignments,
        // Traffic is owned by the traffic step (jobs/set-traffic.ts), so previews stay quiet.
        ignoreChanges: ["properties.traffic", "properties.mirrorTraffic"],
      },
    );

    this.deploymentNames = {};
    const deployments = c.serving.deployments.map((d) => {
      const azureName = deploymentAzureName(d, args.trainedModel);
      this.deploymentNames[d.name] = azureName;
      const modelId =
        d.model === "trained"
          ? args.trainedModel.id
          : pulumi.interpolate`/subscriptions/${args.subscriptionId}/resourceGroups/${args.resourceGroupName}/providers/Microsoft.MachineLearningServices/workspaces/${args.workspaceName}/models/${d.model.name}/versions/${d.model.version}`;
      return new ml.OnlineDeployment(
        `${name}-deployment-${d.name}`,
        {
          ...ws,
          endpointName: endpoint.name,
          deploymentName: azureName,
          location: args.location,
          sku: { name: "Default", capacity: d.instanceCount },
          properties: {
            endpointComputeType: "Managed",
            instanceType: d.instanceType,
            model: modelId,
            appInsightsEnabled: true,
            environmentVariables: {
              ...d.environmentVariables,
              SUBSCRIPTION_ID: args.subscriptionId,
              RESOURCE_GROUP_NAME: args.resourceGroupName,
              UAI_CLIENT_ID: args.identity.clientId,
            },
            requestSettings: {
              maxConcurrentRequestsPerInstance: d.requestSettings.maxConcurrentRequestsPerInstance,
              requestTimeout: isoMillis(d.requestSettings.requestTimeoutMs),
              maxQueueWait: isoMillis(d.requestSettings.maxQueueWaitMs),
            },
            livenessProbe: probeSettings(d.probes),
            readinessProbe: probeSettings(d.probes),
          },
          tags,
        },
        { parent: this },
      );
    });

    const toAzure = (split: Record<string, number>) =>
      Object.fromEntries(Object.entries(split).map(([k, v]) => [this.deploymentNames[k], v]));
    new local.Command(
      `${name}-traffic`,
      {
        create: "npx --no-install tsx jobs/set-traffic.ts apply",
        update: "npx --no-install tsx jobs/set-traffic.ts apply",
        delete: "npx --no-install tsx jobs/set-traffic.ts release",
        environment: {
          AZURE_SUBSCRIPTION_ID: args.subscriptionId,
          AZURE_RESOURCE_GROUP: args.resourceGroupName,
          AZUREML_WORKSPACE: args.workspaceName,
          AZUREML_ENDPOINT: endpoint.name,
          TRAFFIC: JSON.stringify(toAzure(c.serving.traffic)),
          MIRROR_TRAFFIC: JSON.stringify(toAzure(c.serving.mirrorTraffic)),
          MANAGED_DEPLOYMENTS: JSON.stringify(Object.values(this.deploymentNames)),
        },
        logging: "stdoutAndStderr",
      },
      // Traffic may only name deployments that exist: run after all of them are created.
      { parent: this, dependsOn: deployments },
    );

    const keys = ml.listOnlineEndpointKeysOutput({ ...ws, endpointName: endpoint.name }, { parent: this });
    this.primaryKey = pulumi.secret(keys.apply((k) => k.primaryKey ?? ""));
    this.endpointName = endpoint.name;
    this.scoringUri = endpoint.properties.apply((p) => p.scoringUri ?? "");
    this.registerOutputs({ endpointName: this.endpointName, scoringUri: this.scoringUri, primaryKey: this.primaryKey });
  }
}
