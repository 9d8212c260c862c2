/**
 * Runs the Pulumi program in-process under Pulumi's mock runtime (`pulumi.runtime.setMocks`),
 * with a stack's real config, and records every resource registration: type, logical name,
 * parent, inputs and the options that shape a diff (dependencies, ignoreChanges, ...).
 * Used by the offline plan (`cli/plan.ts`) and by the tests. No Azure, no Pulumi CLI.
 * Stack files are read by lib/stack-config.ts (re-exported here for the tests).
 */
import * as pulumi from "@pulumi/pulumi";
import { sha256, uuidV5 } from "../infra/naming";

/** Subscription the mocks pretend to deploy to (override with a real one to see real names). */
export const MOCK_SUBSCRIPTION_ID = "00000000-0000-0000-0000-00000000c0de";
export const MOCK_TENANT_ID = "00000000-0000-0000-0000-0000000071e1";

/** One resource registration as the mock monitor saw it. */
export interface Registration {
  urn: string;
  type: string;
  name: string;
  custom: boolean;
  /** URN of the parent resource ("" for the stack's top level). */
  parent: string;
  /** Inputs; secrets appear as `{ [sig]: secretSig, value }` wrappers (see {@link isSecretValue}). */
  inputs: Record<string, any>;
  /** URNs of every resource this one depends on (explicit dependsOn and through inputs). */
  dependencies: string[];
  ignoreChanges: string[];
  replaceOnChanges: string[];
  deleteBeforeReplace: boolean;
  /** `retainOnDelete`: Pulumi forgets the resource instead of deleting it (replacement, removal, destroy). */
  retainOnDelete: boolean;
  additionalSecretOutputs: string[];
  /** Provider id the mock returned (an ARM id for azure-native resources). */
  id: string;
  /** Outputs the mock returned. */
  state: Record<string, any>;
}

/** What Pulumi writes to the state file in place of a secret value (encrypted with the stack's key). */
export const STATE_CIPHERTEXT = "[ciphertext]";

/**
 * A registration's outputs as the state file keeps them: secret inputs (Pulumi secret wrappers)
 * and the outputs named in `additionalSecretOutputs` are ciphertext, the rest plain text.
 */
export function recordedState(reg: Registration): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(reg.state)) out[k] = reg.additionalSecretOutputs?.includes(k) ? STATE_CIPHERTEXT : unwrapSecrets(v, STATE_CIPHERTEXT);
  return out;
}

/** A finished mock run: registrations in order, stack outputs, and which outputs are secret. */
export interface ProgramRun {
  registrations: Registration[];
  outputs: Record<string, unknown>;
  secretOutputs: string[];
  invokes: { token: string; inputs: any }[];
}

// Pulumi's own markers for secret values in serialized inputs.
const { specialSigKey: SIG_KEY, specialSecretSig: SECRET_SIG } = require("@pulumi/pulumi/runtime/rpc") as {
  specialSigKey: string;
  specialSecretSig: string;
};

/** True when a recorded input value is a Pulumi secret wrapper. */
export function isSecretValue(v: unknown): boolean {
  return !!v && typeof v === "object" && (v as any)[SIG_KEY] === SECRET_SIG;
}

/** Recursively replace secret wrappers with `mask` (or their plain value when mask is undefined). */
export function unwrapSecrets(v: any, mask?: string): any {
  if (isSecretValue(v)) return mask === undefined ? unwrapSecrets(v.value) : mask;
  if (Array.isArray(v)) return v.map((x) => unwrapSecrets(x, mask));
  if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, unwrapSecrets(x, mask)]));
  return v;
}

export { readStackConfig } from "./stack-config";

const ML = "Microsoft.MachineLearningServices/workspaces";

/** ARM id the mocks give a resource, built from its inputs like Azure would. */
export function mockArmId(type: string, i: Record<string, any>, sub: string): string {
  const rg = `/subscriptions/${sub}/resourceGroups/${i.resourceGroupName}/providers`;
  const ws = `${rg}/${ML}/${i.workspaceName}`;
  switch (type) {
    case "azure-native:resources:ResourceGroup":
      return `/subscriptions/${sub}/resourceGroups/${i.resourceGroupName}`;
    case "azure-native:storage:StorageAccount":
      return `${rg}/Microsoft.Storage/storageAccounts/${i.accountName}`;
    case "azure-native:storage:BlobContainer":
      return `${rg}/Microsoft.Storage/storageAccounts/${i.accountName}/blobServices/default/containers/${i.containerName}`;
    case "azure-native:storage:BlobServiceProperties":
      return `${rg}/Microsoft.Storage/storageAccounts/${i.accountName}/blobServices/${i.blobServicesName ?? "default"}`;
    case "azure-native:monitor:DiagnosticSetting":
      return `${i.resourceUri}/providers/Microsoft.Insights/diagnosticSettings/${i.name}`;
    case "azure-native:authorization:ManagementLockAtResourceGroupLevel":
      return `/subscriptions/${sub}/resourceGroups/${i.resourceGroupName}/providers/Microsoft.Authorization/locks/${i.lockName}`;
    case "azure-native:storage:Blob":
      return `${rg}/Microsoft.Storage/storageAccounts/${i.accountName}/blobServices/default/containers/${i.containerName}/blobs/${i.blobName}`;
    case "azure-native:keyvault:Vault":
      return `${rg}/Microsoft.KeyVault/vaults/${i.vaultName}`;
    case "azure-native:operationalinsights:Workspace":
      return `${rg}/Microsoft.OperationalInsights/workspaces/${i.workspaceName}`;
    case "azure-native:applicationinsights:Component":
      return `${rg}/Microsoft.Insights/components/${i.resourceName}`;
    case "azure-native:containerregistry:Registry":
      return `${rg}/Microsoft.ContainerRegistry/registries/${i.registryName}`;
    case "azure-native:managedidentity:UserAssignedIdentity":
      return `${rg}/Microsoft.ManagedIdentity/userAssignedIdentities/${i.resourceName}`;
    case "azure-native:authorization:RoleAssignment":
      return `${i.scope}/providers/Microsoft.Authorization/roleAssignments/${i.roleAssignmentName}`;
    case "azure-native:authorization:RoleDefinition":
      return `${i.scope}/providers/Microsoft.Authorization/roleDefinitions/${i.roleDefinitionId}`;
    case "azure-native:machinelearningservices:Workspace":
      return `${rg}/${ML}/${i.workspaceName}`;
    case "azure-native:machinelearningservices:Compute":
      return `${ws}/computes/${i.computeName}`;
    case "azure-native:machinelearningservices:Datastore":
      return `${ws}/datastores/${i.name}`;
    case "azure-native:machinelearningservices:CodeVersion":
      return `${ws}/codes/${i.name}/versions/${i.version}`;
    case "azure-native:machinelearningservices:EnvironmentVersion":
      return `${ws}/environments/${i.name}/versions/${i.version}`;
    case "azure-native:machinelearningservices:DataVersion":
      return `${ws}/data/${i.name}/versions/${i.version}`;
    case "azure-native:machinelearningservices:ModelVersion":
      return `${ws}/models/${i.name}/versions/${i.version}`;
    case "azure-native:machinelearningservices:Job":
      return `${ws}/jobs/${i.id}`;
    case "azure-native:machinelearningservices:OnlineEndpoint":
      return `${ws}/onlineEndpoints/${i.endpointName}`;
    case "azure-native:machinelearningservices:OnlineDeployment":
      return `${ws}/onlineEndpoints/${i.endpointName}/deployments/${i.deploymentName}`;
    case "azure-native:machinelearningservices:WorkspaceConnection":
      return `${ws}/connections/${i.connectionName}`;
    case "azure-native:monitor:AutoscaleSetting":
      return `${rg}/Microsoft.Insights/autoscalesettings/${i.autoscaleSettingName}`;
    default:
      throw new Error(`mock runtime: no ARM id rule for ${type}; add one to lib/mock-runtime.ts`);
  }
}

/** Outputs Azure computes for a resource (ids, client ids, scoring URI), as the mocks fake them. */
function computedState(type: string, inputs: Record<string, any>, id: string): Record<string, any> {
  const plain = unwrapSecrets(inputs);
  switch (type) {
    case "azure-native:managedidentity:UserAssignedIdentity":
      return { clientId: uuidV5(`client|${id}`), principalId: uuidV5(`principal|${id}`), tenantId: MOCK_TENANT_ID };
    case "azure-native:machinelearningservices:Workspace":
      return {
        workspaceId: uuidV5(`workspace|${id}`),
        discoveryUrl: `https://${plain.location}.api.azureml.ms/discovery`,
        identity: { ...plain.identity, principalId: uuidV5(`principal|${id}`), tenantId: MOCK_TENANT_ID },
      };
    case "azure-native:storage:StorageAccount":
      return { primaryEndpoints: { blob: `https://${plain.accountName}.blob.core.windows.net/` } };
    case "azure-native:machinelearningservices:OnlineEndpoint":
      return {
        properties: {
          ...plain.properties,
          scoringUri: `https://${plain.endpointName}.${plain.location}.inference.ml.azure.com/score`,
          swaggerUri: `https://${plain.endpointName}.${plain.location}.inference.ml.azure.com/swagger.json`,
          provisioningState: "Succeeded",
        },
      };
    case "pulumi-nodejs:dynamic:Resource":
      return {};
    default:
      return {};
  }
}

/** Name output Azure gives each resource: the last segment of its ARM id. */
function azureName(id: string): string {
  return id.split("/").pop() ?? id;
}

/** Options of {@link runProgram}. */
export interface RunOptions {
  project: string;
  stack: string;
  /** Fully qualified config, e.g. from {@link readStackConfig}. */
  config: Record<string, string>;
  /** Fully qualified keys Pulumi marks secret (what `PULUMI_CONFIG_SECRET_KEYS` carries in a real run; `secure:` values of a stack file). */
  secretKeys?: string[];
  /** Mock a `pulumi preview` (true) or a `pulumi up` (false). */
  preview: boolean;
  subscriptionId?: string;
  /** Loads the program module (a fresh import) and returns its exports. */
  load: () => Promise<Record<string, unknown>>;
  /**
   * Outputs of `@pulumi/command` resources, as if their program had run (e.g. `{ stdout: "3" }`; a `pulumi up` keeps
   * `stdout`/`stderr` in the state file),
   * by logical name; undefined leaves a command's state as its inputs (commands do not run here).
   */
  commandOutputs?: (name: string, inputs: Record<string, any>) => Record<string, unknown> | undefined;
}

/**
 * Run the program under mocks and return what it registered and exported. Unknown invokes
 * throw so gaps in the mocks surface. Outputs are awaited with unknowns allowed, so a
 * preview run never hangs on values only Azure would know.
 */
export async function runProgram(opts: RunOptions): Promise<ProgramRun> {
  const sub = opts.subscriptionId ?? MOCK_SUBSCRIPTION_ID;
  const registrations: Registration[] = [];
  const invokes: ProgramRun["invokes"] = [];
  const pending = new Map<string, Partial<Registration>>();

  pulumi.runtime.setAllConfig(opts.config, opts.secretKeys);
  await pulumi.runtime.setMocks(
    {
      newResource(args) {
        const inputs = args.inputs as Record<string, any>;
        let id: string;
        if (!args.custom) id = "";
        else if (args.type.startsWith("azure-native:")) id = mockArmId(args.type, unwrapSecrets(inputs), sub);
        else id = `${args.name}-${sha256(JSON.stringify(unwrapSecrets(inputs))).slice(0, 8)}`;
        const ran = args.type === "command:local:Command" ? opts.commandOutputs?.(args.name, unwrapSecrets(inputs) as Record<string, any>) : undefined;
        const state = args.custom ? { ...inputs, name: azureName(id), ...computedState(args.type, inputs, id), ...(ran ?? {}) } : {};
        const key = `${args.type}::${args.name}`;
        const reg = { ...(pending.get(key) ?? {}), type: args.type, name: args.name, custom: !!args.custom, inputs, id, state };
        registrations.push(reg as Registration);
        return { id: id || `${args.name}_id`, state };
      },
      call(args) {
        invokes.push({ token: args.token, inputs: args.inputs });
        switch (args.token) {
          case "azure-native:authorization:getClientConfig":
            return { subscriptionId: sub, tenantId: MOCK_TENANT_ID, clientId: uuidV5("mock-client"), objectId: uuidV5("mock-object") };
          case "azure-native:machinelearningservices:listOnlineEndpointKeys":
            return { primaryKey: `mock-primary-${sha256(String(args.inputs.endpointName)).slice(0, 24)}`, secondaryKey: "mock-secondary" };
          default:
            throw new Error(`mock runtime: unmocked invoke ${args.token}; add it to lib/mock-runtime.ts`);
        }
      },
    },
    opts.project,
    opts.stack,
    opts.preview,
  );

  // Record the options of each registration that the mocks API does not pass on.
  const settings = require("@pulumi/pulumi/runtime/settings");
  const monitor = settings.getMonitor();
  const original = monitor.registerResource.bind(monitor);
  monitor.registerResource = (req: any, callback: any) => {
    const key = `${req.getType()}::${req.getName()}`;
    pending.set(key, {
      parent: req.getParent() ?? "",
      dependencies: req.getDependenciesList(),
      ignoreChanges: req.getIgnorechangesList(),
      replaceOnChanges: req.getReplaceonchangesList(),
      deleteBeforeReplace: req.getDeletebeforereplace(),
      retainOnDelete: req.getRetainondelete?.() ?? false,
      additionalSecretOutputs: req.getAdditionalsecretoutputsList(),
    });
    return original(req, (err: any, res: any) => {
      if (res) {
        const reg = registrations.find((r) => `${r.type}::${r.name}` === key && !r.urn);
        if (reg) Object.assign(reg, pending.get(key), { urn: res.getUrn() });
      }
      callback(err, res);
    });
  };

  let exports: Record<string, unknown>;
  try {
    exports = await opts.load();
  } catch (e) {
    // Let callers check that a failing program registered nothing.
    if (e && typeof e === "object") Object.assign(e, { registrations });
    throw e;
  }
  const outputs: Record<string, unknown> = {};
  const secretOutputs: string[] = [];
  for (const [k, v] of Object.entries(exports)) {
    if (pulumi.Output.isInstance(v)) {
      const o = v as any;
      outputs[k] = await o.promise(true);
      if (await o.isSecret) secretOutputs.push(k);
    } else {
      outputs[k] = v;
    }
  }
  await settings.waitForRPCs();
  return { registrations, outputs, secretOutputs, invokes };
}
