import * as fs from "fs";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import * as local from "@pulumi/command/local";
import * as ml from "@pulumi/azure-native/machinelearningservices";
import * as storage from "@pulumi/azure-native/storage";
import type * as inputs from "@pulumi/azure-native/types/input";
import { hashFile, hashFolder, listFolder, short } from "./assets";
import { programCredentialEnv, StackConfig } from "./config";
import { blobFileName, canonicalJson, sha256 } from "./naming";
import { plainTags, SecretMarks } from "./secrets";
import { commandLine, COMMAND_SECRET_OUTPUTS } from "./shell";
import { describeDistribution, distributionBody, distributionHashPart, isDistributed } from "./distribution";
import { componentId, managedJobHash, managedPipelineJob, type ManagedData } from "./managed-finetune";
import { gateRuleEnv } from "./rollout";

/** Folder uploaded as the code asset (fine_tune.py, phi3_serving.py, prepare_data.py, cli_types.py, conda.yml). */
export const FINETUNING_DIR = "finetuning_dir";
/** Conda file of the data preparation job's light CPU environment (python + datasets). */
export const PREP_CONDA_FILE = "conda-prep.yml";
/**
 * Where the SDK and `az ml` upload local code and data: the workspace's default datastore
 * `workspaceblobstore`, whose container Azure ML creates as `azureml-blobstore-<workspace GUID>`,
 * under `LocalUpload/<content hash>/` (azure-ai-ml `_artifact_utilities.upload_artifact`).
 */
export const DEFAULT_DATASTORE = "workspaceblobstore";
/** Folder of local uploads in {@link DEFAULT_DATASTORE}. */
export const LOCAL_UPLOAD = "LocalUpload";

/** Container of `workspaceblobstore`: `azureml-blobstore-<workspace GUID>` (the workspace's `workspaceId` output). */
export function defaultDatastoreContainer(workspaceGuid: string): string {
  return `azureml-blobstore-${workspaceGuid}`;
}

/**
 * Long-form datastore URI, as the SDK writes asset paths (`LONG_URI_FORMAT` of azure-ai-ml):
 * `azureml://subscriptions/<sub>/resourcegroups/<rg>/workspaces/<ws>/datastores/<ds>/paths/<path>`.
 */
export function datastoreUri(ws: { subscriptionId: string; resourceGroupName: string; workspaceName: string }, datastore: string, blobPath: string): string {
  return `azureml://subscriptions/${ws.subscriptionId}/resourcegroups/${ws.resourceGroupName}/workspaces/${ws.workspaceName}/datastores/${datastore}/paths/${blobPath}`;
}

/**
 * Options of every immutable history record (code, environment, data and model versions):
 * Azure ML archives asset versions instead of deleting them, so a DELETE from a replacement or
 * `destroy` can fail `up` (azure-cli#21957), and a version is run history anyway. Pulumi drops
 * the version from its state and leaves it in the workspace (archive it in Studio or with
 * `az ml <asset> archive`); `destroy` removes the workspace and everything in it.
 */
const HISTORY: pulumi.CustomResourceOptions = { retainOnDelete: true };

/** Project-relative path (stable across checkouts, unlike an absolute path). */
function rel(p: string): string {
  return path.relative(process.cwd(), path.resolve(p)).split(path.sep).join("/");
}

/** Where the training data comes from, as the fine-tune job sees it. */
export type DataPlan =
  | {
      kind: "prep";
      prepJobName: string;
      prepCommand: string;
      prepHash: string;
      /** The preparation job's own light CPU environment: image + finetuning_dir/conda-prep.yml. */
      prepEnvironmentHash: string;
      prepCondaFile: string;
    }
  | { kind: "jsonl"; trainHash: string; testHash: string; trainFile: string; testFile: string };

/** Everything that defines the training jobs, computed without Azure: hashes and names. */
export interface TrainingPlan {
  /** `script` (fine_tune.py as a command job) or `managed` (the registry's chat_completion_pipeline as a pipeline job). */
  mode: StackConfig["training"]["mode"];
  codeHash: string;
  environmentHash: string;
  condaFile: string;
  data: DataPlan;
  /** The fine-tune command (hyperparameters inlined as literal arguments); script mode only. */
  command: string;
  /** Hash of everything that defines the fine-tune job. */
  jobHash: string;
  jobName: string;
  /** Integer model version (MLflow clients expect integers), derived from {@link jobHash}. */
  modelVersion: string;
}

/**
 * The fine-tune job's arguments after `python fine_tune.py`, as `[flag, value]` pairs. Every
 * hyperparameter is an argument of `fine_tune.py`; inputs and outputs use Azure ML's
 * `${{inputs.x}}` / `${{outputs.x}}` bindings. `npm run train:local` runs the script with the
 * same pairs (bindings replaced by local paths, CPU overrides applied).
 */
export function fineTuneArguments(c: StackConfig): [string, string][] {
  const h = c.hyperparameters;
  return [
    ["--train-file", "${{inputs.train_file}}"],
    ["--eval-file", "${{inputs.eval_file}}"],
    ["--model-output", "${{outputs.model_output}}"],
    ["--base-model", c.baseModel],
    ["--epochs", String(h.epochs)],
    ["--learning-rate", String(h.learningRate)],
    ["--per-device-batch-size", String(h.perDeviceBatchSize)],
    ["--max-seq-length", String(h.maxSeqLength)],
    ["--warmup-ratio", String(h.warmupRatio)],
    ["--lr-scheduler", h.lrScheduler],
    ["--seed", String(h.seed)],
    ["--serving-dtype", c.training.servedDtype],
    ["--precision", c.training.precision],
    ["--method", c.training.method],
    ["--lora-rank", String(c.training.loraRank)],
  ];
}

/**
 * Flags the Azure ML job adds after {@link fineTuneArguments}. `--no-log-model-to-run`: the
 * stack registers the job's `model_output` (infra/serving.ts), so a second upload of the same
 * ~7.6 GB folder to the run's artifacts would only cost time and, failing after hours of
 * training, fail the job (issue 20 item 8). fine_tune.py defaults to it too; the job says it
 * explicitly so the command alone shows it.
 */
export const FINE_TUNE_JOB_FLAGS = ["--no-log-model-to-run"] as const;

/**
 * The fine-tune command line of the Azure ML job: {@link fineTuneArguments} after the script,
 * every value shell-quoted (infra/shell.ts; bindings stay bare for Azure ML's substitution),
 * then {@link FINE_TUNE_JOB_FLAGS}. The values are raw in {@link fineTuneArguments}, so local
 * runs (argv, no shell) use them as is.
 */
export function fineTuneCommand(c: StackConfig): string {
  return [commandLine(["python", "fine_tune.py"], fineTuneArguments(c)), ...FINE_TUNE_JOB_FLAGS].join(" ");
}

/** prepare_data.py's arguments (raw values, as `[flag, value]` pairs), outputs as Azure ML bindings. */
export function prepArguments(d: Extract<StackConfig["data"], { source: "ultrachat" }>): [string, string][] {
  return [
    ["--dataset", d.dataset],
    ["--split", d.split],
    ["--test-size", String(d.testSize)],
    ["--seed", String(d.seed)],
    ["--train-output", "${{outputs.train}}"],
    ["--test-output", "${{outputs.test}}"],
  ];
}

/** The data preparation command (ultrachat_200k slice → train/test JSONL outputs), values shell-quoted. */
export function prepCommand(d: Extract<StackConfig["data"], { source: "ultrachat" }>): string {
  return commandLine(["python", "prepare_data.py"], prepArguments(d));
}

/**
 * Compute hashes and names of the training assets and jobs from the config and the files on
 * disk. Pure apart from reading `finetuning_dir/` and the JSONL files. The fine-tune job's
 * name hashes code, environment, data, base model, hyperparameters, compute and command (and,
 * only when the job is distributed, its nodes and processes per node), and nothing else: serving settings and tags never produce a new job (jobs are immutable in
 * Azure ML and cannot be deleted). Throws when a file is missing.
 */
export function planTraining(c: StackConfig, root = "."): TrainingPlan {
  const dir = path.join(root, FINETUNING_DIR);
  const codeHash = hashFolder(dir);
  const condaFile = fs.readFileSync(path.join(dir, "conda.yml"), "utf8");
  const environmentHash = sha256(c.training.image, condaFile);
  const p = c.namePrefix;
  let data: DataPlan;
  if (c.data.source === "ultrachat") {
    const command = prepCommand(c.data);
    const prepCondaFile = fs.readFileSync(path.join(dir, PREP_CONDA_FILE), "utf8");
    const prepEnvironmentHash = sha256(c.data.prepImage, prepCondaFile);
    const prepHash = sha256(
      canonicalJson({
        command,
        codeHash,
        environmentHash: prepEnvironmentHash,
        compute: { name: c.data.prepCluster.name, vmSize: c.data.prepCluster.vmSize },
        experiment: c.training.experimentName,
        attempt: c.training.attempt,
      }),
    );
    data = { kind: "prep", prepJobName: `${p}-prep-${short(prepHash, 16)}`, prepCommand: command, prepHash, prepEnvironmentHash, prepCondaFile };
  } else {
    data = {
      kind: "jsonl",
      trainFile: c.data.trainFile,
      testFile: c.data.testFile,
      trainHash: hashFile(path.join(root, c.data.trainFile)),
      testHash: hashFile(path.join(root, c.data.testFile)),
    };
  }
  const command = fineTuneCommand(c);
  const dataHashPart = data.kind === "prep" ? { prep: data.prepJobName } : { train: data.trainHash, test: data.testHash };
  const jobHash =
    c.training.mode === "managed"
      ? managedJobHash(c, dataHashPart)
      : sha256(
          canonicalJson({
            command,
            codeHash,
            environmentHash,
            data: dataHashPart,
            compute: { name: c.trainingCluster.name, vmSize: c.trainingCluster.vmSize },
            experiment: c.training.experimentName,
            attempt: c.training.attempt,
            ...distributionHashPart(c.training),
          }),
        );
  return {
    mode: c.training.mode,
    codeHash,
    environmentHash,
    condaFile,
    data,
    command,
    jobHash,
    jobName: `${p}-ft-${short(jobHash, 16)}`,
    modelVersion: String((parseInt(jobHash.slice(0, 8), 16) % 1_000_000_000) + 1),
  };
}

/** Properties of a command job: azure-native's input type of REST 2025-12-01 `CommandJob`. */
export type CommandJobBody = inputs.machinelearningservices.CommandJobArgs;
/** Properties of a job this stack submits: a command job, or the managed mode's pipeline job (`PipelineJob`). */
export type JobBody = CommandJobBody | inputs.machinelearningservices.PipelineJobArgs;

/** Arguments of {@link Training}. */
export interface TrainingArgs {
  config: StackConfig;
  plan: TrainingPlan;
  location: string;
  subscriptionId: pulumi.Input<string>;
  resourceGroupName: pulumi.Input<string>;
  workspaceName: pulumi.Input<string>;
  storageAccountName: pulumi.Input<string>;
  /** The workspace's GUID (`workspaceId` output): names the container of `workspaceblobstore`. */
  workspaceGuid: pulumi.Input<string>;
  trainingClusterId: pulumi.Input<string>;
  prepClusterId?: pulumi.Input<string>;
  /** Resources the first job must wait for (the cluster identity's roles in effect). */
  dependsOn: pulumi.Input<pulumi.Resource>[];
  /** Which config values are secrets: secret tag values stay out of job bodies (Studio shows job tags). */
  secrets: SecretMarks;
  /**
   * Upload with Entra ID (`jobs/upload-blobs.ts`, the deployer's identity) instead of
   * azure-native `storage.Blob`, which signs with the account key: needed when shared-key access
   * is off (the `private` profile). The uploads then wait for `dependsOn` (the deployer's role).
   */
  entraIdUploads?: boolean;
  /**
   * The stack's online endpoint: the quality gate (jobs/quality-gate.ts) looks up the model
   * serving there for `training.gate.maxRegressionPercent`. Absent: that rule is not checked.
   */
  endpointName?: pulumi.Input<string>;
}

/**
 * The MLflow tracking URI of a workspace over HTTPS (`https://<region>.api.azureml.ms/mlflow/v1.0/
 * subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.MachineLearningServices/workspaces/<ws>`,
 * as lib/mlflow.ts `azureTrackingUri` and Azure/azureml-examples' MLflow REST notebook build it).
 */
export function trackingUriOutput(location: string, ws: { subscriptionId: pulumi.Input<string>; resourceGroupName: pulumi.Input<string>; workspaceName: pulumi.Input<string> }): pulumi.Output<string> {
  return pulumi.interpolate`https://${location}.api.azureml.ms/mlflow/v1.0/subscriptions/${ws.subscriptionId}/resourceGroups/${ws.resourceGroupName}/providers/Microsoft.MachineLearningServices/workspaces/${ws.workspaceName}`;
}

/**
 * Everything between "workspace ready" and "model version registered" (Azure ML REST
 * 2025-12-01): the code asset (the files of `finetuning_dir/`, uploaded where the SDK uploads
 * them: `workspaceblobstore`, `LocalUpload/<hash>/finetuning_dir/`); the training environment (curated image
 * plus `conda.yml`); the data (a preparation command job on ultrachat_200k, or the user's
 * JSONL uploaded as `uri_file` data assets); the fine-tune command job on the training
 * cluster, each job submitted under its content-hash name by `jobs/submit-job.ts`, which
 * blocks `pulumi up` until the job completes; and the MLflow model version registered from
 * the job's `model_output`. With `training.mode: managed` the fine-tune job is instead a pipeline
 * job running the `azureml` registry's `chat_completion_pipeline` at its pinned version on the same
 * cluster and data (infra/managed-finetune.ts; no training environment is declared), submitted,
 * awaited and registered the same way.
 * Every asset version and job name is a content hash, so unchanged inputs give no diff. Asset
 * and model versions and the uploaded blobs are history: a replacement or `destroy` leaves them
 * in the workspace (`retainOnDelete`), and jobs have no delete step.
 */
export class Training extends pulumi.ComponentResource {
  public readonly jobName: pulumi.Output<string>;
  /** ARM id of the registered model version. */
  public readonly modelVersionId: pulumi.Output<string>;
  public readonly modelName: string;
  public readonly modelVersion: string;

  constructor(name: string, args: TrainingArgs, opts?: pulumi.ComponentResourceOptions) {
    super("phi3:infra:Training", name, {}, opts);
    const { config: c, plan } = args;
    const ws = { resourceGroupName: args.resourceGroupName, workspaceName: args.workspaceName };
    const tags = { ...plainTags(c.tags, args.secrets), stack: pulumi.getStack() };

    // Uploads go where the SDK puts them: workspaceblobstore, LocalUpload/<hash>/ (see DEFAULT_DATASTORE).
    const container = pulumi.output(args.workspaceGuid).apply(defaultDatastoreContainer);
    const longUri = (blobPath: string) =>
      pulumi.all([args.subscriptionId, args.resourceGroupName, args.workspaceName]).apply(([subscriptionId, resourceGroupName, workspaceName]) =>
        datastoreUri({ subscriptionId, resourceGroupName, workspaceName }, DEFAULT_DATASTORE, blobPath),
      );
    const uploadProgram = "npx --no-install tsx jobs/upload-blobs.ts";
    const containerUrl = pulumi.interpolate`https://${args.storageAccountName}.blob.core.windows.net/${container}`;
    // Entra ID uploads: first check that this machine reaches the account at all (private profile:
    // public access off, or open to security.deployerNetwork only), so that `up` stops with the remedy
    // before anything is uploaded. It runs again whenever what is uploaded changes (the digest).
    const reach = args.entraIdUploads
      ? new local.Command(
          `${name}-storage-reach`,
          {
            create: "npx --no-install tsx jobs/preflight.ts",
            update: "npx --no-install tsx jobs/preflight.ts",
            environment: { PREFLIGHT_STORAGE_URL: containerUrl, UPLOADS_DIGEST: sha256(plan.codeHash, plan.jobHash), ...programCredentialEnv() },
            logging: "stdoutAndStderr",
          },
          // Checks with the deployer's data role in effect, as the uploads will run.
          { parent: this, dependsOn: args.dependsOn, additionalSecretOutputs: [...COMMAND_SECRET_OUTPUTS] },
        )
      : undefined;
    const upload = (logical: string, blobName: string, file: string): pulumi.CustomResource =>
      args.entraIdUploads
        ? new local.Command(
            logical,
            {
              create: uploadProgram,
              update: uploadProgram,
              environment: {
                BLOB_CONTAINER_URL: containerUrl,
                UPLOADS: JSON.stringify([{ file: rel(file), blob: blobName }]),
                CONTENT_SHA256: hashFile(file),
                ...programCredentialEnv(),
              },
              logging: "stdoutAndStderr",
            },
            // The deployer's Storage Blob Data Contributor must be in effect first, and the account reachable
            // (the storage check); no delete step: uploads are kept like the SDK's.
            { parent: this, dependsOn: [...args.dependsOn, ...(reach ? [reach] : [])], additionalSecretOutputs: [...COMMAND_SECRET_OUTPUTS] },
          )
        : new storage.Blob(
        logical,
        {
          accountName: args.storageAccountName,
          containerName: container,
          resourceGroupName: args.resourceGroupName,
          blobName,
          type: "Block",
          source: new pulumi.asset.FileAsset(rel(file)),
        },
        // Kept like the SDK's uploads: the retained asset version that points here must stay readable.
        { parent: this, retainOnDelete: true },
      );

    // Code asset: finetuning_dir/ under LocalUpload/<hash>/finetuning_dir/, then the version pointing at that folder.
    const codePrefix = `${LOCAL_UPLOAD}/${short(plan.codeHash, 32)}/${FINETUNING_DIR}`;
    const codeBlobs = listFolder(FINETUNING_DIR).map((f) =>
      upload(`${name}-code-${f.relativePath.replace(/[^A-Za-z0-9]+/g, "-")}`, `${codePrefix}/${f.relativePath}`, f.absolutePath),
    );
    const code = new ml.CodeVersion(
      `${name}-code`,
      {
        ...ws,
        name: "phi3-finetune-code",
        version: short(plan.codeHash),
        properties: {
          // The SDK's codeUri: storage account URL + container + LocalUpload path (ArtifactStorageInfo.full_storage_path).
          codeUri: pulumi.interpolate`https://${args.storageAccountName}.blob.core.windows.net/${container}/${codePrefix}`,
          description: "finetuning_dir/ (fine_tune.py, phi3_serving.py, prepare_data.py, cli_types.py, conda.yml)",
        },
      },
      { ...HISTORY, parent: this, dependsOn: codeBlobs }, // the version must not exist before its files
    );

    // The script's environment; the managed mode's component brings its own.
    const environment =
      plan.mode === "script"
        ? new ml.EnvironmentVersion(
            `${name}-environment`,
            {
              ...ws,
              name: "phi3-training-env",
              version: short(plan.environmentHash),
              properties: { image: c.training.image, condaFile: plan.condaFile, osType: "Linux", description: "Training image + finetuning_dir/conda.yml" },
            },
            { ...HISTORY, parent: this },
          )
        : undefined;

    // Job bodies typed as azure-native's inputs of the REST 2025-12-01 job types, so `tsc` catches a
    // wrong enum or a missing required field (the bodies are sent by jobs/submit-job.ts, not by ml.Job).
    const jobProperties = (
      computeId: pulumi.Input<string>,
      environmentId: pulumi.Input<string>,
      rest: Omit<CommandJobBody, "jobType" | "codeId" | "environmentId" | "computeId">,
    ): CommandJobBody => ({
      jobType: "Command",
      codeId: code.id,
      environmentId,
      computeId,
      experimentName: c.training.experimentName,
      // Run as the compute's managed identity (the user-assigned one), which reads the datastore.
      identity: { identityType: "Managed" },
      resources: { instanceCount: 1 },
      tags,
      ...rest,
    });
    // Jobs are submitted by jobs/submit-job.ts, not by ml.Job: Pulumi's SDKs drop an input named
    // `id` (pulumi/pulumi#13781), so ml.Job cannot carry our content-hash job name. The script PUTs
    // the exact body below under that name (once: jobs are immutable), then waits for a terminal
    // state; a failed job fails `pulumi up` and nothing downstream is created. No delete step:
    // Azure ML jobs cannot be deleted and stay as run history.
    const submitJob = (logical: string, jobName: string, properties: JobBody, dependsOn: pulumi.Input<pulumi.Resource>[]) =>
      new local.Command(
        logical,
        {
          create: "npx --no-install tsx jobs/submit-job.ts",
          environment: {
            AZURE_SUBSCRIPTION_ID: args.subscriptionId,
            AZURE_RESOURCE_GROUP: args.resourceGroupName,
            AZUREML_WORKSPACE: args.workspaceName,
            AZUREML_JOB_NAME: jobName,
            AZUREML_JOB_BODY: pulumi.jsonStringify(pulumi.output({ properties })),
            WAIT_DEADLINE_SECONDS: String(Math.round(c.training.waitTimeoutHours * 3600)),
            ...programCredentialEnv(),
          },
          logging: "stdoutAndStderr",
        },
        { parent: this, dependsOn, additionalSecretOutputs: [...COMMAND_SECRET_OUTPUTS] },
      );

    let jobInputs: Record<"train_file" | "eval_file", inputs.machinelearningservices.UriFolderJobInputArgs | inputs.machinelearningservices.UriFileJobInputArgs>;
    let managedData: ManagedData;
    let dataReady: pulumi.Resource[] = [];
    if (plan.data.kind === "prep") {
      if (!args.prepClusterId || c.data.source !== "ultrachat") throw new Error("Training: the ultrachat data source needs a preparation cluster");
      // The preparation job downloads and splits JSONL on a small CPU node: a light CPU image
      // with python + datasets, not the GPU training image with CUDA torch.
      const prepEnvironment = new ml.EnvironmentVersion(
        `${name}-prep-environment`,
        {
          ...ws,
          name: "phi3-prep-env",
          version: short(plan.data.prepEnvironmentHash),
          properties: { image: c.data.prepImage, condaFile: plan.data.prepCondaFile, osType: "Linux", description: `CPU image + finetuning_dir/${PREP_CONDA_FILE} (python, datasets)` },
        },
        { ...HISTORY, parent: this },
      );
      const prep = submitJob(
        `${name}-prep-job`,
        plan.data.prepJobName,
        jobProperties(args.prepClusterId, prepEnvironment.id, {
          displayName: "prepare ultrachat_200k",
          command: plan.data.prepCommand,
          outputs: {
            train: { jobOutputType: "uri_folder", mode: "ReadWriteMount" },
            test: { jobOutputType: "uri_folder", mode: "ReadWriteMount" },
          },
        }),
        // Jobs read the datastore as the cluster identity: its roles must exist first.
        [code, prepEnvironment, ...args.dependsOn],
      );
      dataReady = [prep];
      managedData = { prepJobName: plan.data.prepJobName };
      jobInputs = {
        train_file: { jobInputType: "uri_folder", uri: `azureml://jobs/${plan.data.prepJobName}/outputs/train` },
        eval_file: { jobInputType: "uri_folder", uri: `azureml://jobs/${plan.data.prepJobName}/outputs/test` },
      };
    } else {
      const d = plan.data;
      const asset = (role: "train" | "test", file: string, hash: string) => {
        const blobName = `${LOCAL_UPLOAD}/${short(hash, 32)}/${blobFileName(path.basename(file))}`;
        const blob = upload(`${name}-${role}-blob`, blobName, file);
        const uri = longUri(blobName);
        const version = new ml.DataVersion(
          `${name}-${role}-data`,
          {
            ...ws,
            name: `phi3-${role}-data`,
            version: short(hash),
            properties: { dataType: "uri_file", dataUri: uri, description: `${file} (chat JSONL, validated at plan time)` },
          },
          { ...HISTORY, parent: this, dependsOn: [blob] }, // the data asset points at the uploaded blob
        );
        return { version, uri };
      };
      const train = asset("train", d.trainFile, d.trainHash);
      const test = asset("test", d.testFile, d.testHash);
      dataReady = [train.version, test.version];
      managedData = { trainUri: train.uri, testUri: test.uri };
      // The long-form datastore URI of the registered file, the form the SDK sends (never a bare ARM id).
      jobInputs = {
        train_file: { jobInputType: "uri_file", uri: train.uri },
        eval_file: { jobInputType: "uri_file", uri: test.uri },
      };
    }

    const job = submitJob(
      `${name}-finetune-job`,
      plan.jobName,
      environment
        ? jobProperties(args.trainingClusterId, environment.id, {
            displayName: `fine-tune ${c.baseModel}`,
            description: `SFT of ${c.baseModel}; the job name is a hash of code, environment, data, model, hyperparameters and compute` +
              (isDistributed(c.training) ? `; PyTorch distribution: ${describeDistribution(c.training, c.hyperparameters.perDeviceBatchSize)}` : ""),
            command: plan.command,
            ...distributionBody(c.training),
            inputs: jobInputs,
            outputs: { model_output: { jobOutputType: "mlflow_model", mode: "ReadWriteMount" } },
          })
        : { ...managedPipelineJob(c, { computeId: args.trainingClusterId, data: managedData, tags }) },
      // The data must be ready (prep job completed / data assets registered) and roles granted.
      [code, ...(environment ? [environment] : []), ...dataReady, ...args.dependsOn],
    );

    // The quality gate (issue 22): the job's MLflow run against training.gate; the model version
    // waits for it, so a refused run registers nothing and no deployment or traffic changes.
    const gate = c.training.gate.enabled
      ? new local.Command(
          `${name}-quality-gate`,
          {
            create: "npx --no-install tsx jobs/quality-gate.ts",
            update: "npx --no-install tsx jobs/quality-gate.ts",
            environment: {
              AZURE_SUBSCRIPTION_ID: args.subscriptionId,
              AZURE_RESOURCE_GROUP: args.resourceGroupName,
              AZUREML_WORKSPACE: args.workspaceName,
              AZUREML_JOB_NAME: plan.jobName,
              MLFLOW_TRACKING_URI: trackingUriOutput(args.location, { subscriptionId: args.subscriptionId, ...ws }),
              ...gateRuleEnv(c),
              ...(args.endpointName !== undefined && c.training.gate.maxRegressionPercent !== undefined ? { AZUREML_ENDPOINT: args.endpointName } : {}),
              ...programCredentialEnv(),
            },
            logging: "stdoutAndStderr",
          },
          // The run's metrics are final only once the job completed (submit-job waits for it).
          { parent: this, dependsOn: [job], additionalSecretOutputs: [...COMMAND_SECRET_OUTPUTS] },
        )
      : undefined;

    this.modelName = c.training.modelName;
    this.modelVersion = plan.modelVersion;
    const model = new ml.ModelVersion(
      `${name}-model`,
      {
        ...ws,
        name: c.training.modelName,
        version: plan.modelVersion,
        properties: {
          modelType: "mlflow_model",
          modelUri: `azureml://jobs/${plan.jobName}/outputs/model_output`,
          jobName: plan.jobName,
          description: `${c.baseModel} fine-tuned by job ${plan.jobName}`,
          tags:
            plan.mode === "script"
              ? { baseModel: c.baseModel, job: plan.jobName, servedDtype: c.training.servedDtype }
              : // The pipeline's MLflow model is scored with the chat payload (README, "Which training mode").
                { baseModel: c.baseModel, job: plan.jobName, trainingMode: "managed", component: componentId(c), payloadShape: "chat-list" },
        },
      },
      // Register only after the job completed (never from a failed job) and passed the quality gate.
      { ...HISTORY, parent: this, dependsOn: gate ? [job, gate] : [job] },
    );
    this.jobName = pulumi.output(plan.jobName);
    this.modelVersionId = model.id;
    this.registerOutputs({ jobName: this.jobName, modelVersionId: this.modelVersionId });
  }
}
