/**
 * The request bodies this project sends to Azure ML for one stack, read from the real program
 * (index.ts) run under Pulumi mocks (lib/mock-runtime.ts), plus what the SDK side
 * (test/conformance/sdk_bodies.py) needs to build the same entities from the same stack config.
 *
 * - Asset versions, endpoint and deployments: the ARM PUT body azure-native sends for the
 *   resource (REST 2025-12-01): the resource inputs without the path parameters, with a
 *   user-assigned identity list turned into the map ARM takes (`{<id>: {}}`), as the provider does.
 * - Jobs: the body `jobs/submit-job.ts` PUTs (`AZUREML_JOB_BODY` of the submit command).
 * - Traffic: the body `jobs/set-traffic.ts` PUTs (`endpointPutBody`) after reading the endpoint
 *   back: the GET answer is the endpoint's PUT body plus the fields Azure sets (id, name,
 *   provisioning state, scoring URI, identity principal ids), given to the SDK too.
 *
 * Secrets are unwrapped: these bodies stay in memory and in a temporary file of the test.
 */
import { parseConfig, rawProjectConfig, type StackConfig } from "../../infra/config";
import { endpointPutBody } from "../../jobs/set-traffic";
import { AML_API_VERSION } from "../../lib/arm";
import { MOCK_TENANT_ID, unwrapSecrets, type ProgramRun, type Registration } from "../../lib/mock-runtime";
import { commandEnv, ofType, runStack, stackConfig } from "../helpers/stack";

/** The example stacks (Pulumi.<name>.yaml). */
export const EXAMPLE_STACKS = ["dev", "bluegreen", "cpu", "local-data", "managed", "private", "scale"] as const;

/** What one stack sends, and what the SDK side needs to build the same entities. */
export interface StackBodies {
  stack: string;
  /** The validated stack config (defaults applied), as the program sees it. */
  config: StackConfig;
  /**
   * Names and ids Azure or the program's content hashes decide (not request bodies): the SDK
   * side takes them as given, as a user of the SDK would read them from the workspace.
   */
  context: {
    location: string;
    subscriptionId: string;
    resourceGroup: string;
    workspace: string;
    apiVersion: string;
    endpointName: string;
    identityId: string;
    identityClientId: string;
    computeIds: Record<string, string>;
    /** Asset versions by entity key (`code`, `environment:training`, ...): name, version, ARM id. */
    assets: Record<string, { name: string; version: string; id: string }>;
    /** Job names by entity key (`job:prep`, `job:finetune`). */
    jobs: Record<string, string>;
    /** Deployment Azure names by config name. */
    deployments: Record<string, string>;
    /** The traffic step's environment: live and mirror split by Azure deployment name. */
    traffic: Record<string, number>;
    mirrorTraffic: Record<string, number>;
    /**
     * Where the uploads landed (the code folder's blob URL, each data file's long-form datastore
     * URI): the SDK learns them from its upload, so the oracle takes them as given.
     */
    uploads: Record<string, string>;
    /** The endpoint as GET returns it after creation (the traffic step's starting point). */
    endpointGet: Record<string, unknown>;
  };
  /** Request bodies by entity key. */
  bodies: Record<string, Record<string, unknown>>;
}

const ML = "azure-native:machinelearningservices:";

/** Resource inputs that go into the URL, not the body (azure-native path parameters). */
const PATH_PARAMS = ["resourceGroupName", "workspaceName", "name", "version", "endpointName", "deploymentName"];

/** The ARM body azure-native sends for a resource: inputs less path parameters, identity list as map. */
export function armBody(r: Registration): Record<string, unknown> {
  const inputs = unwrapSecrets(r.inputs) as Record<string, unknown>;
  const body: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(inputs)) if (!PATH_PARAMS.includes(k)) body[k] = v;
  const identity = body.identity as { userAssignedIdentities?: unknown } | undefined;
  if (identity && Array.isArray(identity.userAssignedIdentities)) {
    body.identity = { ...identity, userAssignedIdentities: Object.fromEntries(identity.userAssignedIdentities.map((id: string) => [id, {}])) };
  }
  return body;
}

function one(run: ProgramRun, type: string, pick: (r: Registration) => boolean = () => true): Registration {
  const found = ofType(run, type).filter(pick);
  if (found.length !== 1) throw new Error(`expected one ${type}, found ${found.length}`);
  return found[0];
}

/** Runs the stack's program under mocks and collects its request bodies. */
export async function stackBodies(stack: string): Promise<StackBodies> {
  const { config: qualified } = stackConfig(stack);
  const config = parseConfig(rawProjectConfig(qualified)).config;
  const run = await runStack({ stack });
  const bodies: StackBodies["bodies"] = {};
  const assets: StackBodies["context"]["assets"] = {};

  const asset = (key: string, r: Registration) => {
    bodies[key] = armBody(r);
    assets[key] = { name: r.inputs.name, version: r.inputs.version, id: r.id };
  };
  asset("code", one(run, `${ML}CodeVersion`));
  for (const r of ofType(run, `${ML}EnvironmentVersion`)) asset(r.name.endsWith("-prep-environment") ? "environment:prep" : "environment:training", r);
  for (const r of ofType(run, `${ML}DataVersion`)) asset(r.name.endsWith("-train-data") ? "data:train" : "data:test", r);
  asset("model", one(run, `${ML}ModelVersion`));

  const jobs: Record<string, string> = {};
  for (const r of ofType(run, "command:local:Command").filter((c) => commandEnv(c).AZUREML_JOB_BODY)) {
    const env = unwrapSecrets(commandEnv(r)) as Record<string, string>;
    const key = r.name.endsWith("-prep-job") ? "job:prep" : "job:finetune";
    jobs[key] = env.AZUREML_JOB_NAME;
    bodies[key] = JSON.parse(env.AZUREML_JOB_BODY);
  }

  const endpoint = one(run, `${ML}OnlineEndpoint`);
  bodies.endpoint = armBody(endpoint);
  const deployments: Record<string, string> = {};
  for (const r of ofType(run, `${ML}OnlineDeployment`)) {
    const configName = config.serving.deployments.find((d) => r.inputs.deploymentName.startsWith(`${d.name}-`))!.name;
    deployments[configName] = r.inputs.deploymentName;
    bodies[`deployment:${configName}`] = armBody(r);
  }

  const identity = ofType(run, "azure-native:managedidentity:UserAssignedIdentity").find((r) => r.id === Object.keys((bodies.endpoint.identity as any).userAssignedIdentities)[0])!;
  const trafficEnv = unwrapSecrets(commandEnv(one(run, "command:local:Command", (c) => c.name.endsWith("-traffic")))) as Record<string, string>;
  const traffic = JSON.parse(trafficEnv.TRAFFIC) as Record<string, number>;
  const mirrorTraffic = JSON.parse(trafficEnv.MIRROR_TRAFFIC ?? "{}") as Record<string, number>;
  // The endpoint as Azure returns it once created: what we sent plus the fields Azure sets.
  const endpointGet = {
    ...bodies.endpoint,
    id: endpoint.id,
    name: endpoint.inputs.endpointName,
    type: "Microsoft.MachineLearningServices/workspaces/onlineEndpoints",
    systemData: { createdAt: "2026-01-01T00:00:00Z", createdBy: "deployer", createdByType: "User", lastModifiedAt: "2026-01-01T00:00:00Z", lastModifiedBy: "deployer", lastModifiedByType: "User" },
    identity: {
      ...(bodies.endpoint.identity as object),
      tenantId: MOCK_TENANT_ID,
      userAssignedIdentities: { [identity.id]: { principalId: identity.state.principalId, clientId: identity.state.clientId } },
    },
    properties: {
      ...(bodies.endpoint.properties as object),
      // Azure answers with a (server-written) property bag; empty here, so nothing is sent back from it.
      properties: {},
      provisioningState: "Succeeded",
      scoringUri: `https://${endpoint.inputs.endpointName}.${config.location}.inference.ml.azure.com/score`,
      swaggerUri: `https://${endpoint.inputs.endpointName}.${config.location}.inference.ml.azure.com/swagger.json`,
      traffic: {},
      mirrorTraffic: {},
      publicNetworkAccess: (bodies.endpoint.properties as any).publicNetworkAccess ?? "Enabled",
    },
  };
  bodies.traffic = endpointPutBody(endpointGet, { traffic, mirrorTraffic });

  const uploads: Record<string, string> = { code: (bodies.code.properties as { codeUri: string }).codeUri };
  for (const key of ["data:train", "data:test"]) if (bodies[key]) uploads[key] = (bodies[key].properties as { dataUri: string }).dataUri;
  const code = one(run, `${ML}CodeVersion`);
  const workspace = one(run, `${ML}Workspace`, (r) => r.inputs.workspaceName === code.inputs.workspaceName);
  return {
    stack,
    config,
    context: {
      location: config.location,
      subscriptionId: workspace.id.split("/")[2],
      resourceGroup: workspace.inputs.resourceGroupName,
      workspace: workspace.inputs.workspaceName,
      apiVersion: AML_API_VERSION,
      endpointName: endpoint.inputs.endpointName,
      identityId: identity.id,
      identityClientId: identity.state.clientId,
      computeIds: Object.fromEntries(ofType(run, `${ML}Compute`).map((r) => [r.inputs.computeName, r.id])),
      assets,
      jobs,
      deployments,
      traffic,
      mirrorTraffic,
      uploads,
      endpointGet,
    },
    bodies,
  };
}
