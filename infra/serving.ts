import * as pulumi from "@pulumi/pulumi";
import { COMMAND_SECRET_OUTPUTS } from "./shell";
import * as local from "@pulumi/command/local";
import * as ml from "@pulumi/azure-native/machinelearningservices";
import * as monitor from "@pulumi/azure-native/monitor";
import { autoscaleProfile } from "./autoscale";
import type * as inputs from "@pulumi/azure-native/types/input";
import { DeploymentConfig, programCredentialEnv, StackConfig } from "./config";
import { canonicalJson, isoMillis, isoSeconds, sha256 } from "./naming";
import { SecretMarks, secretEnvironment, Tags } from "./secrets";
import { publicNetworkAccess, SecurityConfig } from "./security";
import { diagnosticSetting } from "./workspace";
import { chatDefaults } from "./generation";
import { smokePrompts } from "./rollout";

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

/**
 * Content hash of an endpoint's declared inputs (canonical JSON, SHA-256): equal inputs give
 * the same hash, any change of tags, description, identity, auth mode, name or location another.
 */
export function endpointInputsHash(endpointArgs: ml.OnlineEndpointArgs): pulumi.Output<string> {
  return pulumi.output(endpointArgs).apply((resolved) => sha256(canonicalJson(resolved)));
}

/** Payload shape of requests through the endpoint: that of the deployment with the most traffic (infra/generation.ts). */
function chatShape(c: StackConfig): string {
  return chatDefaults(c).payloadShape;
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
  /** The wait for that identity's role assignments to take effect (AcrPull, Blob Data Reader): the endpoint and every deployment wait for it. */
  rolesInEffect: pulumi.Resource;
  /** The model version this stack trains. */
  trainedModel: { name: string; version: string; id: pulumi.Input<string> };
  /** The user's tags (values may be secrets; `secretTags`). */
  tags: Tags;
  /** Which config values are secrets: environment variable values are wrapped with `pulumi.secret` when marked. */
  secrets: SecretMarks;
  /** The `security` setting: `private` disables the endpoint's public network access. */
  security: SecurityConfig;
  /** ARM id of the stack's Log Analytics workspace (the endpoint's diagnostic setting). */
  logAnalyticsId: pulumi.Input<string>;
}

/**
 * Serving (Azure ML REST 2025-12-01): the managed online endpoint (key auth, the
 * user-assigned identity), one managed online deployment per configured deployment (instance
 * type and count, request settings and probes as ISO-8601 durations, environment variables
 * SUBSCRIPTION_ID / RESOURCE_GROUP_NAME / UAI_CLIENT_ID), and the traffic step:
 * `jobs/set-traffic.ts` run by `@pulumi/command` after the deployments exist (the endpoint
 * cannot name a deployment that does not exist yet), and again after any update of the
 * endpoint (a PUT without traffic resets the split); its delete step sets the managed
 * deployments' traffic to 0 before Pulumi deletes them. The endpoint and every deployment wait
 * until the identity's role assignments are in effect. Exposes the scoring URI and the
 * primary key as a secret. A deployment with `autoscale` also gets an Azure Monitor autoscale
 * setting (`monitor.AutoscaleSetting`, infra/autoscale.ts) targeting it, between its min and max
 * instances, and Pulumi leaves its instance count to that setting after creation: an update
 * sends the live count, read just before by `jobs/deployment-capacity.ts` (see `liveCapacity`).
 * Safe rollout (issue 22, `serving.smoke`): each deployment is smoke-tested alone
 * (`jobs/smoke-test.ts deployment`, header `azureml-model-deployment`) before the traffic step
 * runs, and the endpoint again after it (`jobs/smoke-test.ts endpoint`), which restores the split
 * the traffic step recorded before changing it when the smoke fails.
 */
/**
 * The instance count an autoscaled deployment is sent: a number printed by `jobs/deployment-capacity.ts`
 * (the live `sku.capacity`, or `instanceCount` before the deployment exists); `fallback` when the
 * output holds no positive integer (e.g. under test mocks, where commands do not run).
 */
export function parseCapacity(stdout: string | undefined, fallback: number): number {
  const last = (stdout ?? "").trim().split(/\r?\n/).pop() ?? "";
  const n = Number(last);
  return /^\d+$/.test(last) && Number.isInteger(n) && n >= 1 ? n : fallback;
}

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
    const tags = args.tags;

    const endpointArgs: ml.OnlineEndpointArgs = {
      ...ws,
      endpointName: args.endpointName,
      location: args.location,
      identity: { type: "UserAssigned", userAssignedIdentities: [args.identity.id] },
      properties: {
        authMode: "Key",
        description: "Fine-tuned Phi-3 (phi3-finetune stack)",
        // private: scoring only through the workspace's private endpoint (a client inside the network).
        ...(publicNetworkAccess(args.security) === "Disabled" ? { publicNetworkAccess: "Disabled" } : {}),
      },
      tags,
    };
    const endpoint = new ml.OnlineEndpoint(
      `${name}-endpoint`,
      endpointArgs,
      {
        parent: this,
        // A user-assigned identity gets no roles by itself; without AcrPull in effect the deployment
        // fails with "Endpoint identity does not have pull permission on the registry" (REFERENCE.md).
        dependsOn: [args.rolesInEffect],
        // Traffic is owned by the traffic step (jobs/set-traffic.ts), so previews stay quiet.
        ignoreChanges: ["properties.traffic", "properties.mirrorTraffic"],
      },
    );

    diagnosticSetting(`${name}-endpoint-diagnostics`, endpoint.id, args.logAnalyticsId, { parent: this });

    this.deploymentNames = {};
    const deployments = c.serving.deployments.map((d) => {
      const azureName = deploymentAzureName(d, args.trainedModel);
      this.deploymentNames[d.name] = azureName;
      const servesTrained = d.model === "trained" || (d.model.name === args.trainedModel.name && d.model.version === args.trainedModel.version);
      const modelId =
        servesTrained || d.model === "trained"
          ? args.trainedModel.id
          : pulumi.interpolate`/subscriptions/${args.subscriptionId}/resourceGroups/${args.resourceGroupName}/providers/Microsoft.MachineLearningServices/workspaces/${args.workspaceName}/models/${d.model.name}/versions/${d.model.version}`;
      // Everything the deployment is sent but its instance count.
      const body = {
        ...ws,
        endpointName: endpoint.name,
        deploymentName: azureName,
        location: args.location,
        properties: {
          endpointComputeType: "Managed",
          instanceType: d.instanceType,
          model: modelId,
          appInsightsEnabled: true,
          environmentVariables: {
            ...secretEnvironment(d.environmentVariables, args.secrets),
            SUBSCRIPTION_ID: args.subscriptionId,
            RESOURCE_GROUP_NAME: args.resourceGroupName,
            UAI_CLIENT_ID: args.identity.clientId,
          },
          requestSettings: {
            maxConcurrentRequestsPerInstance: d.requestSettings.maxConcurrentRequestsPerInstance,
            requestTimeout: isoMillis(d.requestSettings.requestTimeoutMs),
            // Deprecated for managed online endpoints (2025-12-01 types): kept so deployed stacks see no
            // change; the queue wait is bounded by requestTimeout (infra/config.ts maxQueueWaitMs).
            maxQueueWait: isoMillis(d.requestSettings.maxQueueWaitMs),
          },
          livenessProbe: probeSettings(d.probes),
          readinessProbe: probeSettings(d.probes),
        },
        tags,
      } satisfies Omit<ml.OnlineDeploymentArgs, "sku">;
      const deployment = new ml.OnlineDeployment(
        `${name}-deployment-${d.name}`,
        { ...body, sku: { name: "Default", capacity: d.autoscale ? this.liveCapacity(name, d, azureName, body, endpoint, args) : d.instanceCount } },
        {
          parent: this,
          // Microsoft documents that the endpoint identity must hold its roles before a deployment is
          // created; a pinned-model deployment waits on nothing else, so it waits here explicitly.
          dependsOn: [args.rolesInEffect],
        },
      );
      if (d.autoscale) {
        // Azure Monitor autoscale targeting the deployment (learn.microsoft.com/azure/machine-learning/
        // how-to-autoscale-endpoints); named after the deployment's Azure name, so a new model version
        // gets a new setting with its new deployment, and the old one goes before the old deployment.
        new monitor.AutoscaleSetting(
          `${name}-autoscale-${d.name}`,
          {
            resourceGroupName: args.resourceGroupName,
            autoscaleSettingName: pulumi.interpolate`${endpoint.name}-${azureName}-autoscale`,
            location: args.location,
            enabled: true,
            targetResourceUri: deployment.id,
            targetResourceLocation: args.location,
            profiles: [autoscaleProfile(d.autoscale, { instanceType: d.instanceType, instanceCount: d.instanceCount, id: deployment.id })],
            tags,
          },
          { parent: this },
        );
      }
      return deployment;
    });

    // Smoke test of each deployment before the traffic step (issue 22): the prompts go to that
    // deployment only (header azureml-model-deployment); a failure stops `up` before any traffic moves.
    const smoke = c.serving.smoke;
    const prompts = smoke.enabled ? JSON.stringify(smokePrompts(c).prompts) : "";
    const shapeOf = (d: DeploymentConfig) => (d.model === "trained" && c.training.mode === "managed" ? "chat-list" : "prompt-list");
    const smokeEnv = {
      AZURE_SUBSCRIPTION_ID: args.subscriptionId,
      AZURE_RESOURCE_GROUP: args.resourceGroupName,
      AZUREML_WORKSPACE: args.workspaceName,
      AZUREML_ENDPOINT: endpoint.name,
      SMOKE_PROMPTS: prompts,
      SMOKE_MAX_SECONDS: String(smoke.maxSeconds),
      SMOKE_MAX_NEW_TOKENS: String(smoke.maxNewTokens),
      ...programCredentialEnv(),
    };
    const smokes = smoke.enabled
      ? c.serving.deployments.map(
          (d, i) =>
            new local.Command(
              `${name}-smoke-${d.name}`,
              {
                create: "npx --no-install tsx jobs/smoke-test.ts deployment",
                update: "npx --no-install tsx jobs/smoke-test.ts deployment",
                environment: {
                  ...smokeEnv,
                  SMOKE_DEPLOYMENT: this.deploymentNames[d.name],
                  SMOKE_PAYLOAD_SHAPE: shapeOf(d),
                  // Any change of the deployment's config (an in-place update) runs the smoke again.
                  DEPLOYMENT_CONFIG: sha256(canonicalJson(d)),
                },
                logging: "stdoutAndStderr",
              },
              // Only a Succeeded deployment can answer: the deployment resource is created when it is.
              { parent: this, dependsOn: [deployments[i]], additionalSecretOutputs: [...COMMAND_SECRET_OUTPUTS] },
            ),
        )
      : [];

    const toAzure = (split: Record<string, number>) =>
      Object.fromEntries(Object.entries(split).map(([k, v]) => [this.deploymentNames[k], v]));
    const traffic = new local.Command(
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
          // Any change of the endpoint's inputs makes azure-native PUT the endpoint without traffic
          // (ignored above), which resets the split: this hash changes with them, so the step runs
          // `update` (apply) again right after the endpoint update and the split is never lost.
          ENDPOINT_INPUTS: endpointInputsHash(endpointArgs),
          ...programCredentialEnv(),
        },
        logging: "stdoutAndStderr",
      },
      // Traffic may only name deployments that exist: run after all of them are created, and
      // (issue 22) after each passed its smoke test, so a broken deployment never gets traffic.
      { parent: this, dependsOn: [...deployments, ...smokes], additionalSecretOutputs: [...COMMAND_SECRET_OUTPUTS] },
    );

    // After the traffic step: the same smoke through the endpoint; on failure the split the
    // traffic step recorded before changing it (its stdout) is put back and `up` fails.
    if (smoke.enabled && Object.values(c.serving.traffic).some((p) => p > 0)) {
      new local.Command(
        `${name}-verify`,
        {
          create: "npx --no-install tsx jobs/smoke-test.ts endpoint",
          update: "npx --no-install tsx jobs/smoke-test.ts endpoint",
          environment: {
            ...smokeEnv,
            SMOKE_PAYLOAD_SHAPE: chatShape(c),
            TRAFFIC_LOG: traffic.stdout,
            ROLLBACK: String(smoke.rollback),
          },
          logging: "stdoutAndStderr",
        },
        // Runs whenever the traffic step ran (its output is an input here).
        { parent: this, dependsOn: [traffic], additionalSecretOutputs: [...COMMAND_SECRET_OUTPUTS] },
      );
    }

    const keys = ml.listOnlineEndpointKeysOutput({ ...ws, endpointName: endpoint.name }, { parent: this });
    this.primaryKey = pulumi.secret(keys.apply((k) => k.primaryKey ?? ""));
    this.endpointName = endpoint.name;
    this.scoringUri = endpoint.properties.apply((p) => p.scoringUri ?? "");
    this.registerOutputs({ endpointName: this.endpointName, scoringUri: this.scoringUri, primaryKey: this.primaryKey });
  }

  /**
   * The capacity of an autoscaled deployment, read live before Pulumi sends it (issue 19). An
   * update of an online deployment is a PUT of the whole body: with `ignoreChanges: ["sku.capacity"]`
   * Pulumi filled the field from its state (the capacity it created the deployment with) and so
   * undid Azure Monitor's scale-out whenever the deployment changed for another reason. Instead
   * `jobs/deployment-capacity.ts` (run by `@pulumi/command` once the endpoint exists) reads the
   * live `sku.capacity` and the deployment is sent that. Its environment carries a digest of the
   * rest of the body, so Pulumi runs it again exactly when the deployment is about to be updated;
   * otherwise its stored output, the capacity last sent, leaves the deployment without a diff.
   * Before the deployment exists it prints `instanceCount`. A scale-out between the read and the
   * PUT (seconds) can still be undone once; Azure Monitor then scales out again.
   */
  private liveCapacity(
    name: string,
    d: DeploymentConfig,
    azureName: string,
    body: Omit<ml.OnlineDeploymentArgs, "sku">,
    endpoint: ml.OnlineEndpoint,
    args: ServingArgs,
  ): pulumi.Output<number> {
    const program = "npx --no-install tsx jobs/deployment-capacity.ts";
    const read = new local.Command(
      `${name}-capacity-${d.name}`,
      {
        create: program,
        update: program,
        environment: {
          AZURE_SUBSCRIPTION_ID: args.subscriptionId,
          AZURE_RESOURCE_GROUP: args.resourceGroupName,
          AZUREML_WORKSPACE: args.workspaceName,
          AZUREML_ENDPOINT: endpoint.name,
          AZUREML_DEPLOYMENT: azureName,
          CAPACITY_FALLBACK: String(d.instanceCount),
          DEPLOYMENT_DIGEST: pulumi.jsonStringify(pulumi.output(body)).apply((j) => sha256(j)),
          ...programCredentialEnv(),
        },
        // stdout is the number; the program's explanation goes to stderr, which is logged.
        logging: "stderr",
      },
      // Reads the deployment of this endpoint: only once the endpoint exists. stderr (what the
      // program explains) is kept secret in the state like every command's output; stdout is only
      // the instance count, which the deployment's sku needs as a plain number.
      { parent: this, dependsOn: [endpoint], additionalSecretOutputs: ["stderr"] },
    );
    return read.stdout.apply((out) => parseCapacity(out, d.instanceCount));
  }
}
