/**
 * The whole stack under Pulumi mocks with the dev stack's real config: resource by resource,
 * the values the seeds ask for, in both `pulumi up` (preview=false) and `pulumi preview` mode.
 */
import * as fs from "fs";
import * as path from "path";
import { beforeAll, describe, expect, it } from "vitest";
import { BUILT_IN_ROLES, customRoleGuid, roleAssignmentName, TRAINING_JOB_ACTIONS } from "../infra/identity";
import { MOCK_SUBSCRIPTION_ID, ProgramRun, Registration, isSecretValue, unwrapSecrets } from "../lib/mock-runtime";
import { byName, commandEnv, ofType, projectCopy, ROOT, runStack } from "./helpers/stack";

const ML = "azure-native:machinelearningservices";
const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

const plain = (r: Registration) => unwrapSecrets(r.inputs);
const jobBody = (r: Registration) => JSON.parse(commandEnv(r).AZUREML_JOB_BODY).properties;

describe.each([false, true])("dev stack (preview=%s)", (preview) => {
  let run: ProgramRun;
  beforeAll(async () => {
    run = await runStack({ preview });
  });

  it("declares each workspace dependency once, with secure settings", () => {
    const counts = (t: string) => ofType(run, t).length;
    expect(counts("azure-native:resources:ResourceGroup")).toBe(1);
    expect(counts("azure-native:storage:StorageAccount")).toBe(1);
    expect(counts("azure-native:keyvault:Vault")).toBe(1);
    expect(counts("azure-native:operationalinsights:Workspace")).toBe(1);
    expect(counts("azure-native:applicationinsights:Component")).toBe(1);
    expect(counts("azure-native:containerregistry:Registry")).toBe(1);
    const account = plain(byName(run, "phi3-storage"));
    expect(account).toMatchObject({ allowBlobPublicAccess: false, minimumTlsVersion: "TLS1_2", kind: "StorageV2" });
    expect(plain(byName(run, "phi3-keyvault")).properties).toMatchObject({ enableRbacAuthorization: true, enableSoftDelete: true });
    expect(plain(byName(run, "phi3-registry")).adminUserEnabled).toBe(false);
    const appi = plain(byName(run, "phi3-appinsights"));
    expect(appi.workspaceResourceId).toBe(byName(run, "phi3-logs").id);
  });

  it("links the workspace to storage, key vault, insights and registry", () => {
    const ws = plain(byName(run, "phi3-workspace"));
    expect(ws.kind).toBe("Default");
    expect(ws.location).toBe("eastus2");
    expect(ws.storageAccount).toBe(byName(run, "phi3-storage").id);
    expect(ws.keyVault).toBe(byName(run, "phi3-keyvault").id);
    expect(ws.applicationInsights).toBe(byName(run, "phi3-appinsights").id);
    expect(ws.containerRegistry).toBe(byName(run, "phi3-registry").id);
  });

  it("grants each identity its least-privilege roles, with deterministic GUID names", () => {
    const principal = (n: string) => byName(run, n).state.principalId as string;
    const assignments = ofType(run, "azure-native:authorization:RoleAssignment").map(plain);
    const container = `${byName(run, "phi3-storage").id}/blobServices/default/containers/azureml-blobstore-${byName(run, "phi3-workspace").state.workspaceId}`;
    // The compute identity's role on the workspace is the stack's own (UUID v5 of the resource group).
    const jobRole = customRoleGuid(byName(run, "phi3-rg").id);
    const guidOf = (role: string) => (BUILT_IN_ROLES as Record<string, string>)[role] ?? role;
    const expected: [string, string, string][] = [
      ["phi3-identity-uai", "AcrPull", byName(run, "phi3-registry").id],
      ["phi3-identity-uai", "Storage Blob Data Reader", byName(run, "phi3-storage").id],
      ["phi3-identity-compute-uai", "AcrPull", byName(run, "phi3-registry").id],
      ["phi3-identity-compute-uai", jobRole, byName(run, "phi3-workspace").id],
      ["phi3-identity-compute-uai", "Storage Blob Data Contributor", container],
    ];
    expect(assignments).toHaveLength(expected.length);
    for (const [who, role, scope] of expected) {
      const a = assignments.find((x) => x.principalId === principal(who) && x.roleDefinitionId.endsWith(guidOf(role)));
      expect(a, `${who} ${role}`).toBeDefined();
      expect(a.roleDefinitionId).toBe(`/subscriptions/${MOCK_SUBSCRIPTION_ID}/providers/Microsoft.Authorization/roleDefinitions/${guidOf(role)}`);
      expect(a.scope).toBe(scope);
      expect(a.principalType).toBe("ServicePrincipal");
      expect(a.roleAssignmentName).toMatch(GUID);
      expect(a.roleAssignmentName).toBe(roleAssignmentName(scope, principal(who), role));
    }
  });

  it("declares the compute identity's custom role: a deterministic GUID, the resource group as its only assignable scope, exactly the listed actions", () => {
    const def = byName(run, "phi3-identity-training-job-role");
    const rg = byName(run, "phi3-rg").id;
    const i = plain(def);
    expect(i.roleDefinitionId).toBe(customRoleGuid(rg));
    expect(i.roleDefinitionId).toMatch(GUID);
    expect(i.roleName).toBe(`phi3-finetune training job ${customRoleGuid(rg)}`);
    expect(i).toMatchObject({ scope: rg, assignableScopes: [rg], roleType: "CustomRole" });
    expect(i.permissions).toEqual([{ actions: TRAINING_JOB_ACTIONS.map((a) => a.action), notActions: [], dataActions: [], notDataActions: [] }]);
    const assignment = ofType(run, "azure-native:authorization:RoleAssignment").find((r) => plain(r).roleDefinitionId.endsWith(customRoleGuid(rg)));
    expect(assignment?.dependencies).toContain(def.urn);
  });

  it("declares the A100 training cluster (dedicated, 0..1 nodes, 120 s idle) running as the identity", () => {
    const c = plain(byName(run, "phi3-compute-training"));
    expect(c.properties.computeType).toBe("AmlCompute");
    expect(c.properties.properties).toMatchObject({
      vmSize: "Standard_NC24ads_A100_v4",
      vmPriority: "Dedicated",
      scaleSettings: { minNodeCount: 0, maxNodeCount: 1, nodeIdleTimeBeforeScaleDown: "PT120S" },
    });
    expect(c.identity).toEqual({ type: "UserAssigned", userAssignedIdentities: [byName(run, "phi3-identity-compute-uai").id] });
    expect(byName(run, "phi3-compute-training").replaceOnChanges).toContain("properties.properties.vmSize");
  });

  it("builds the environment from the curated image and finetuning_dir/conda.yml", () => {
    const env = plain(byName(run, "phi3-training-environment"));
    expect(env.properties.image).toBe("mcr.microsoft.com/azureml/curated/acft-hf-nlp-gpu:59");
    expect(env.properties.condaFile).toBe(fs.readFileSync(path.join(ROOT, "finetuning_dir/conda.yml"), "utf8"));
  });

  it("uploads every file of finetuning_dir where the SDK does: workspaceblobstore, LocalUpload/<hash>/finetuning_dir", () => {
    const code = plain(byName(run, "phi3-training-code"));
    const blobs = ofType(run, "azure-native:storage:Blob").map(plain);
    const files = fs.readdirSync(path.join(ROOT, "finetuning_dir")).filter((f) => !f.startsWith("__")).sort();
    const folder = `LocalUpload/${code.version}`;
    const uploaded = blobs.filter((b) => b.blobName.startsWith(folder));
    expect(uploaded.map((b) => b.blobName.replace(/^LocalUpload\/[0-9a-f]{32}\/finetuning_dir\//, "")).sort()).toEqual(files);
    // The container of the workspace's default datastore: azureml-blobstore-<workspace GUID>.
    const guid = byName(run, "phi3-workspace").state.workspaceId;
    expect(guid).toMatch(/^[0-9a-f-]{36}$/);
    for (const b of uploaded) expect(b.containerName).toBe(`azureml-blobstore-${guid}`);
    expect(code.properties.codeUri).toMatch(new RegExp(`^https://st[a-z0-9]+\\.blob\\.core\\.windows\\.net/azureml-blobstore-${guid}/LocalUpload/${code.version}[0-9a-f]{20}/finetuning_dir$`));
    expect(ofType(run, "azure-native:machinelearningservices:Datastore")).toEqual([]);
    expect(ofType(run, "azure-native:storage:BlobContainer")).toEqual([]);
  });

  it("prepares ultrachat_200k (1%, 80/20) in a job whose outputs feed the fine-tune job", () => {
    const prep = byName(run, "phi3-training-prep-job");
    const prepName = commandEnv(prep).AZUREML_JOB_NAME;
    const body = jobBody(prep);
    expect(body.command).toContain("--split 'train_sft[:1%]'");
    expect(body.command).toContain("--test-size 0.2");
    expect(body.computeId).toBe(byName(run, "phi3-compute-prep").id);
    const ft = byName(run, "phi3-training-finetune-job");
    const ftBody = jobBody(ft);
    expect(ftBody.inputs.train_file).toEqual({ jobInputType: "uri_folder", uri: `azureml://jobs/${prepName}/outputs/train` });
    expect(ftBody.inputs.eval_file).toEqual({ jobInputType: "uri_folder", uri: `azureml://jobs/${prepName}/outputs/test` });
    expect(ft.dependencies).toContain(prep.urn);
  });

  it("runs the preparation job in its own light CPU environment (python + datasets), the fine-tune job in the GPU one", () => {
    const prepEnv = byName(run, "phi3-training-prep-environment");
    const trainEnv = byName(run, "phi3-training-environment");
    expect(prepEnv.inputs.name).toBe("phi3-prep-env");
    expect(prepEnv.inputs.properties.image).toBe("mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest");
    const conda = fs.readFileSync(path.join(ROOT, "finetuning_dir", "conda-prep.yml"), "utf8");
    expect(prepEnv.inputs.properties.condaFile).toBe(conda);
    expect(conda).toMatch(/- datasets==2\.21\.0/);
    const deps = conda.split("\n").filter((l) => /^\s*- /.test(l)).map((l) => l.trim());
    expect(deps).toEqual(["- conda-forge", "- python=3.10", "- pip", "- pip:", "- datasets==2.21.0"]);
    expect(jobBody(byName(run, "phi3-training-prep-job")).environmentId).toBe(prepEnv.id);
    expect(jobBody(byName(run, "phi3-training-finetune-job")).environmentId).toBe(trainEnv.id);
    expect(trainEnv.inputs.properties.image).toMatch(/acft-hf-nlp-gpu/);
    expect(prepEnv.inputs.version).not.toBe(trainEnv.inputs.version);
  });

  it("submits the fine-tune command job with the seed's hyperparameters on the A100 cluster", () => {
    const ft = byName(run, "phi3-training-finetune-job");
    const body = jobBody(ft);
    expect(body.jobType).toBe("Command");
    expect(body.command).toMatch(/^python fine_tune\.py /);
    for (const arg of [
      "--train-file ${{inputs.train_file}}",
      "--eval-file ${{inputs.eval_file}}",
      "--model-output ${{outputs.model_output}}",
      "--base-model microsoft/Phi-3-mini-4k-instruct",
      "--epochs 3",
      "--learning-rate 0.000005",
      "--per-device-batch-size 4",
      "--max-seq-length 2048",
      "--warmup-ratio 0.2",
      "--lr-scheduler cosine",
      "--seed 0",
    ]) {
      expect(body.command).toContain(arg);
    }
    expect(body.computeId).toBe(byName(run, "phi3-compute-training").id);
    expect(body.codeId).toBe(byName(run, "phi3-training-code").id);
    expect(body.environmentId).toBe(byName(run, "phi3-training-environment").id);
    expect(body.outputs.model_output.jobOutputType).toBe("mlflow_model");
    expect(commandEnv(ft).AZUREML_JOB_NAME).toMatch(/^phi3ft-ft-[0-9a-f]{16}$/);
    // The job waits until the cluster identity's roles are in effect (it reads the datastore as that identity).
    expect(ft.dependencies).toContain(byName(run, "phi3-identity-roles-in-effect").urn);
  });

  it("registers the MLflow model version from the job output, only after the job step", () => {
    const ft = byName(run, "phi3-training-finetune-job");
    const jobName = commandEnv(ft).AZUREML_JOB_NAME;
    const model = byName(run, "phi3-training-model");
    expect(plain(model).properties).toMatchObject({ modelType: "mlflow_model", modelUri: `azureml://jobs/${jobName}/outputs/model_output`, jobName });
    expect(plain(model).version).toMatch(/^[1-9]\d{0,9}$/);
    expect(model.dependencies).toContain(ft.urn);
  });

  it("waits a bounded time after the role assignments (time.Sleep, re-run when an assignment is recreated)", () => {
    const sleep = byName(run, "phi3-identity-roles-in-effect");
    expect(sleep.type).toBe("time:index/sleep:Sleep");
    expect(sleep.inputs.createDuration).toBe("600s");
    const assignments = ofType(run, "azure-native:authorization:RoleAssignment");
    for (const ra of assignments) expect(sleep.dependencies).toContain(ra.urn);
    expect(Object.keys(sleep.inputs.triggers).sort()).toEqual([
      "acrpull-registry",
      "blob-reader-storage",
      "compute-acrpull-registry",
      "compute-blob-contributor-datastore",
      "compute-trainingjob-workspace",
    ]);
  });

  it("creates the endpoint with key auth and the identity, once the roles are in effect, ignoring traffic drift", () => {
    const ep = byName(run, "phi3-serving-endpoint");
    expect(plain(ep).properties.authMode).toBe("Key");
    expect(plain(ep).identity).toEqual({ type: "UserAssigned", userAssignedIdentities: [byName(run, "phi3-identity-uai").id] });
    expect(ep.dependencies).toContain(byName(run, "phi3-identity-roles-in-effect").urn);
    expect(ep.ignoreChanges).toEqual(expect.arrayContaining(["properties.traffic", "properties.mirrorTraffic"]));
    expect(plain(ep).properties.traffic).toBeUndefined();
  });

  it("deploys the model on Standard_NC6s_v3 with the seed's request settings, probes and variables", () => {
    const deployments = ofType(run, `${ML}:OnlineDeployment`);
    expect(deployments).toHaveLength(1);
    const d = plain(deployments[0]);
    expect(d.sku).toEqual({ name: "Default", capacity: 1 });
    expect(d.properties.instanceType).toBe("Standard_NC6s_v3");
    expect(d.properties.model).toBe(byName(run, "phi3-training-model").id);
    expect(d.properties.requestSettings).toEqual({ maxConcurrentRequestsPerInstance: 3, requestTimeout: "PT180S", maxQueueWait: "PT120S" });
    const probe = { failureThreshold: 30, successThreshold: 1, period: "PT100S", initialDelay: "PT500S", timeout: "PT2S" };
    expect(d.properties.livenessProbe).toEqual(probe);
    expect(d.properties.readinessProbe).toEqual(probe);
    expect(d.properties.environmentVariables).toEqual({
      SUBSCRIPTION_ID: MOCK_SUBSCRIPTION_ID,
      RESOURCE_GROUP_NAME: "rg-phi3ft-dev",
      UAI_CLIENT_ID: byName(run, "phi3-identity-uai").state.clientId,
    });
    expect(d.endpointName).toBe(plain(byName(run, "phi3-serving-endpoint")).endpointName);
  });

  it("sends 100% of traffic to the deployment in a step after it exists", () => {
    const traffic = byName(run, "phi3-serving-traffic");
    const deployment = ofType(run, `${ML}:OnlineDeployment`)[0];
    const env = commandEnv(traffic);
    expect(JSON.parse(env.TRAFFIC)).toEqual({ [plain(deployment).deploymentName]: 100 });
    expect(JSON.parse(env.MANAGED_DEPLOYMENTS)).toEqual([plain(deployment).deploymentName]);
    expect(traffic.dependencies).toContain(deployment.urn);
    expect(plain(traffic).delete).toContain("set-traffic.ts release");
  });

  it("exports the scoring URI and the endpoint key, the key as a secret", () => {
    const endpoint = plain(byName(run, "phi3-serving-endpoint"));
    expect(run.outputs.scoringUri).toBe(`https://${endpoint.endpointName}.eastus2.inference.ml.azure.com/score`);
    expect(run.secretOutputs).toContain("endpointKey");
    expect(run.secretOutputs).not.toContain("scoringUri");
    expect(String(run.outputs.endpointKey)).toMatch(/^mock-primary-/);
    // The key never appears in a non-secret input of any resource.
    const key = String(run.outputs.endpointKey);
    for (const r of run.registrations) {
      const visible = JSON.stringify(unwrapSecrets(r.inputs, "[secret]"));
      expect(visible, r.name).not.toContain(key);
    }
  });

  it("declares the Prompt flow hub, project (in the hub) and a CustomKeys connection holding endpoint and key", async () => {
    const hub = byName(run, "phi3-promptflow-hub");
    const project = plain(byName(run, "phi3-promptflow-project"));
    expect(plain(hub).kind).toBe("Hub");
    expect(plain(hub).storageAccount).toBe(byName(run, "phi3-storage").id);
    expect(project.kind).toBe("Project");
    expect(project.hubResourceId).toBe(hub.id);
    const conn = byName(run, "phi3-promptflow-connection");
    expect(conn.inputs.workspaceName).toBe(project.workspaceName);
    const props = plain(conn).properties;
    expect(props).toMatchObject({ category: "CustomKeys", authType: "CustomKeys" });
    expect(props.credentials.keys).toEqual({ endpoint: run.outputs.scoringUri, key: run.outputs.endpointKey });
    expect(isSecretValue(conn.inputs.properties) || isSecretValue(conn.inputs.properties?.credentials?.keys)).toBe(true);
    expect(conn.additionalSecretOutputs).toContain("properties");
    expect(run.outputs.promptFlowConnection).toBe("phi3-endpoint");
  });

  it("parents every resource to a component and names Azure resources validly", () => {
    const components = run.registrations.filter((r) => !r.custom && r.type.startsWith("phi3:infra:"));
    expect(components.map((c) => c.type).sort()).toEqual(
      ["phi3:infra:Compute", "phi3:infra:Identity", "phi3:infra:Preflight", "phi3:infra:PromptFlow", "phi3:infra:Serving", "phi3:infra:Training", "phi3:infra:Workspace"],
    );
    const urns = new Set(components.map((c) => c.urn));
    for (const r of run.registrations.filter((x) => x.custom)) expect(urns.has(r.parent), r.name).toBe(true);
    const sa = plain(byName(run, "phi3-storage")).accountName;
    expect(sa).toMatch(/^[a-z0-9]{3,24}$/);
    expect(plain(byName(run, "phi3-keyvault")).vaultName).toMatch(/^[a-zA-Z][a-zA-Z0-9-]{1,22}[a-zA-Z0-9]$/);
  });
});

describe("determinism and change isolation", () => {
  const inputsOf = (run: ProgramRun) => JSON.stringify(run.registrations.map((r) => [r.type, r.name, unwrapSecrets(r.inputs)]));

  it("gives byte-identical resource inputs on two runs", async () => {
    const a = await runStack();
    const b = await runStack();
    expect(a.registrations.length).toBeGreaterThan(25);
    expect(inputsOf(b)).toBe(inputsOf(a));
  });

  it("keeps the job name when only serving settings or tags change, and changes it with a hyperparameter", async () => {
    const jobName = (run: ProgramRun) => commandEnv(byName(run, "phi3-training-finetune-job")).AZUREML_JOB_NAME;
    const base = await runStack();
    const servingChanged = await runStack({
      overrides: {
        tags: { team: "ml-platform" },
        serving: { deployments: [{ name: "blue", instanceType: "Standard_NC24ads_A100_v4", instanceCount: 2 }] },
      },
    });
    expect(jobName(servingChanged)).toBe(jobName(base));
    expect(plain(ofType(servingChanged, `${ML}:OnlineDeployment`)[0]).sku.capacity).toBe(2);
    const retrained = await runStack({ overrides: { hyperparameters: { epochs: 2 } } });
    expect(jobName(retrained)).not.toBe(jobName(base));
  });

  it("uses another subscription's names when the subscription differs (globally unique names)", async () => {
    const a = await runStack();
    const b = await runStack({ subscriptionId: "11111111-2222-3333-4444-555555555555" });
    expect(plain(byName(b, "phi3-storage")).accountName).not.toBe(plain(byName(a, "phi3-storage")).accountName);
    expect(plain(byName(b, "phi3-rg")).resourceGroupName).toBe(plain(byName(a, "phi3-rg")).resourceGroupName);
  });
});

describe("data file names that need URL-encoding reach Azure under a URL-safe blob name (issue 18)", () => {
  it.each(["tr#ain.jsonl", "te?st.jsonl", "a%2e%2e.jsonl", "my data.jsonl"])("%s: the data asset's dataUri, the job input and the upload agree, without encoding", async (name) => {
    const dir = projectCopy();
    try {
      fs.copyFileSync(path.join(ROOT, "test/fixtures/data/train.jsonl"), path.join(dir, "test/fixtures/data", name));
      const run = await runStack({
        stack: "local-data",
        cwd: dir,
        overrides: { data: { source: "jsonl", trainFile: `test/fixtures/data/${name}`, testFile: "test/fixtures/data/test.jsonl" } },
      });
      const data = plain(byName(run, "phi3-training-train-data")).properties.dataUri as string;
      expect(data).toMatch(/\/paths\/LocalUpload\/[0-9a-f]{32}\/[A-Za-z0-9._-]+$/);
      expect(decodeURIComponent(data)).toBe(data);
      const job = JSON.stringify(unwrapSecrets(byName(run, "phi3-training-finetune-job").inputs));
      expect(job).toContain(data);
      expect(job).not.toContain(name);
      const blob = unwrapSecrets(byName(run, "phi3-training-train-blob").inputs);
      expect(data.endsWith(`/paths/${blob.blobName}`)).toBe(true);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
