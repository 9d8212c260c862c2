/**
 * `training.mode: managed`: Microsoft's maintained chat-completion fine-tuning instead of this
 * project's `fine_tune.py`: the `azureml` registry's pipeline component `chat_completion_pipeline`,
 * pinned to a version from config, submitted as a pipeline job (REST 2025-12-01 `PipelineJob`)
 * on the stack's own training cluster, with the same data, the same submit-and-wait step and the
 * same MLflow model registration as the script mode. Pure: the config keys, their plan-time
 * rules and the job body; no Pulumi resources, no network.
 *
 * What was checked, and what it rules out (recorded 2026-11-23 from Azure/azureml-assets):
 * - The component: `assets/training/finetune_acft_hf_nlp/components/pipeline_components/chat_completion/spec.yaml`,
 *   `chat_completion_pipeline` version 0.0.81 (the newest version read): inputs `huggingface_id` |
 *   `mlflow_model_path`, `train_file_path` / `validation_file_path` (uri_file, JSONL with a
 *   `messages` column), `num_nodes_finetune`, `number_of_gpu_to_use_finetuning` ("should be equal to
 *   number of gpu per node"), `compute_model_import` / `compute_preprocess` / `compute_finetune` /
 *   `compute_model_evaluation` (a cluster name; default serverless), the hyperparameters below;
 *   output `mlflow_model_folder` (mlflow_model). Its finetune step runs under the PyTorch distribution.
 * - The registry models of every base model this stack supports carry
 *   `FinetuneRetirementDate: '2025-08-30'` (and `FinetuneDeprecationDate: '2025-06-30'`):
 *   `assets/models/system/phi-3-mini-4k-instruct/spec.yaml` (version 15),
 *   `assets/models/system/phi-3-mini-128k-instruct/spec.yaml` (version 13),
 *   `assets/models/system/phi-3.5-mini-128k-instruct/spec.yaml` (Phi-3.5-mini-instruct, version 6).
 *   So the registry model cannot be the input any more: a `model: {registry, name, version}` is
 *   refused at plan time with that source, and the default `model: huggingface` hands the
 *   pipeline the same Hugging Face id the script mode loads (`huggingface_id`, a documented input).
 * - The 2025-12-01 `FineTuning` job type (`fineTuningDetails` with `modelProvider: Custom`) is not
 *   used: its `model` input is that same retired registry model, azure-native 3.28 has no type for
 *   it, and serverless fine-tuning of Phi-3 was East US 2 only (shared/REFERENCE.md).
 */
import { z } from "zod";
import type * as pulumi from "@pulumi/pulumi";
import type * as inputs from "@pulumi/azure-native/types/input";
import type { StackConfig } from "./config";
import { distributionHashPart } from "./distribution";
import { canonicalJson, sha256 } from "./naming";
import { isGpuSize, recordedVmSize } from "./vm-sizes";

/** Where the managed mode's component comes from, and the version read on 2026-11-23. */
export const MANAGED_COMPONENT = { registry: "azureml", name: "chat_completion_pipeline", version: "0.0.81" } as const;

/**
 * Registry models of the supported base models, with the fine-tuning retirement their specs
 * declare (Azure/azureml-assets, paths in the module comment).
 */
export const REGISTRY_MODELS: Record<StackConfig["baseModel"], { name: string; version: string; finetuneRetired: string; spec: string }> = {
  "microsoft/Phi-3-mini-4k-instruct": { name: "Phi-3-mini-4k-instruct", version: "15", finetuneRetired: "2025-08-30", spec: "assets/models/system/phi-3-mini-4k-instruct/spec.yaml" },
  "microsoft/Phi-3-mini-128k-instruct": { name: "Phi-3-mini-128k-instruct", version: "13", finetuneRetired: "2025-08-30", spec: "assets/models/system/phi-3-mini-128k-instruct/spec.yaml" },
  "microsoft/Phi-3.5-mini-instruct": { name: "Phi-3.5-mini-instruct", version: "6", finetuneRetired: "2025-08-30", spec: "assets/models/system/phi-3.5-mini-128k-instruct/spec.yaml" },
};

/**
 * Settings the component receives for every Phi-3 model: the `model_specific_defaults` of the
 * registry specs above (LoRA merged into the weights, DeepSpeed stage 2, 16-bit precision), so
 * the output is a full model like the script's.
 */
export const MANAGED_FIXED_INPUTS = {
  apply_lora: "true",
  merge_lora_weights: "true",
  apply_deepspeed: "true",
  deepspeed_stage: "2",
  precision: "16",
  gradient_accumulation_steps: "1",
} as const;

/** File names `prepare_data.py` writes into its `train` / `test` outputs (TRAIN_FILE_NAME, TEST_FILE_NAME there). */
export const PREP_FILES = { train: "train.jsonl", test: "test.jsonl" } as const;

const name = z.string().regex(/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,254}$/, { error: "must be a name: letters, digits, '_', '.', '-'" });

/** `training.managed`: which component version and which model source the managed mode uses. */
export const managedSchema = z.strictObject({
  /** The pipeline component, pinned (default: azureml's chat_completion_pipeline 0.0.81). */
  component: z
    .strictObject({
      registry: name.default(MANAGED_COMPONENT.registry),
      name: name.default(MANAGED_COMPONENT.name),
      version: z
        .string()
        .regex(/^\d+\.\d+\.\d+$/, { error: "must be a pinned version such as 0.0.81 (labels such as latest are not accepted: the job name hashes the version)" })
        .default(MANAGED_COMPONENT.version),
    })
    .default({ ...MANAGED_COMPONENT }),
  /**
   * The base model's source: `huggingface` (default: `baseModel` from the Hugging Face hub, like
   * the script mode) or a pinned registry model `{registry, name, version}` (refused while its
   * fine-tuning is retired: {@link REGISTRY_MODELS}).
   */
  model: z
    .union([
      z.literal("huggingface"),
      z.strictObject({
        registry: name,
        name,
        version: z.string().regex(/^[1-9]\d*$/, { error: "must be a pinned model version such as 15 (labels such as latest are not accepted)" }),
      }),
    ], { error: 'must be "huggingface" or {registry, name, version}' })
    .default("huggingface"),
});

/** The keys spread into the `training` schema: `mode` (default `script`) and `managed`. */
export const modeKeys = {
  /** `script` (default: finetuning_dir/fine_tune.py as a command job) or `managed` (chat_completion_pipeline). */
  mode: z.enum(["script", "managed"]).default("script"),
  /** Settings of the managed mode (ignored in script mode). */
  managed: managedSchema.default(() => managedSchema.parse({})),
};

/** The registry id of the configured component: `azureml://registries/<r>/components/<n>/versions/<v>`. */
export function componentId(c: StackConfig): string {
  const k = c.training.managed.component;
  return `azureml://registries/${k.registry}/components/${k.name}/versions/${k.version}`;
}

/** A rule violation with its path under the stack config. */
export interface ManagedIssue {
  path: (string | number)[];
  input: unknown;
  message: string;
}

/**
 * Plan-time rules of the managed mode (none in script mode): a registry model whose fine-tuning
 * Azure retired is refused, naming the spec that says so; a registry model must be the base
 * model's; the training cluster must be a GPU size (the component's finetune step runs the acft
 * GPU image) and `processesPerInstance` must equal its GPUs (the component's
 * `number_of_gpu_to_use_finetuning` "should be equal to number of gpu per node").
 */
export function managedIssues(c: StackConfig): ManagedIssue[] {
  if (c.training.mode !== "managed") return [];
  const issues: ManagedIssue[] = [];
  const m = c.training.managed.model;
  const recorded = REGISTRY_MODELS[c.baseModel];
  if (m !== "huggingface") {
    if (m.name.toLowerCase() !== recorded.name.toLowerCase()) {
      issues.push({ path: ["training", "managed", "model", "name"], input: m.name, message: `must be the registry model of baseModel ${c.baseModel} (${recorded.name})` });
    } else {
      issues.push({
        path: ["training", "managed", "model"],
        input: m,
        message:
          `${m.registry}/${m.name} version ${m.version} cannot be fine-tuned: Azure retired fine-tuning of ${recorded.name} on ${recorded.finetuneRetired} ` +
          `(FinetuneRetirementDate in Azure/azureml-assets ${recorded.spec}, version ${recorded.version}). ` +
          `Use model: huggingface, which hands ${c.training.managed.component.name} the same base model from the Hugging Face hub (as the script mode loads it)`,
      });
    }
  }
  const size = recordedVmSize(c.trainingCluster.vmSize);
  if (!isGpuSize(c.trainingCluster.vmSize)) {
    issues.push({ path: ["trainingCluster", "vmSize"], input: c.trainingCluster.vmSize, message: "is a CPU size, but training.mode managed runs Microsoft's GPU fine-tuning pipeline; use an A100 size such as Standard_NC24ads_A100_v4 (or training.mode script for the CPU profile)" });
  } else if (size && c.training.processesPerInstance !== size.gpus) {
    issues.push({
      path: ["training", "processesPerInstance"],
      input: c.training.processesPerInstance,
      message: `must equal the ${size.gpus} GPU${size.gpus === 1 ? "" : "s"} of ${size.name} in training.mode managed (${c.training.managed.component.name}'s number_of_gpu_to_use_finetuning uses every GPU of a node)`,
    });
  }
  return issues;
}

/** Warnings of the managed mode: settings the component has no input for. */
export function managedWarnings(c: StackConfig): string[] {
  if (c.training.mode !== "managed") return [];
  const w: string[] = [];
  if (c.hyperparameters.warmupRatio !== 0) {
    w.push(`phi3-finetune:hyperparameters.warmupRatio: ${c.training.managed.component.name} has warmup_steps only, no ratio; training.mode managed trains without warmup`);
  }
  if (c.training.servedDtype !== "float16") {
    w.push(`phi3-finetune:training.servedDtype: ${c.training.servedDtype} does not apply in training.mode managed; the component saves its model in 16-bit precision`);
  }
  return w;
}

/**
 * The component's literal inputs: model source, hyperparameters (epochs, learning rate, batch
 * size, sequence length with the padding that makes it bound the sequence, scheduler, seed), {@link MANAGED_FIXED_INPUTS}, nodes and GPUs per node,
 * and the training cluster's name for every step. Values are strings, as pipeline literals are.
 */
export function managedLiteralInputs(c: StackConfig): Record<string, string> {
  const h = c.hyperparameters;
  const m = c.training.managed.model;
  const cluster = c.trainingCluster.name;
  return {
    ...(m === "huggingface" ? { huggingface_id: c.baseModel } : {}),
    task_name: "ChatCompletion",
    num_train_epochs: String(h.epochs),
    learning_rate: String(h.learningRate),
    per_device_train_batch_size: String(h.perDeviceBatchSize),
    per_device_eval_batch_size: String(h.perDeviceBatchSize),
    // What bounds the sequence: the component's max_seq_length applies only with pad_to_max_length
    // "true" (spec of chat_completion_pipeline 0.0.81, Azure/azureml-assets: "Controls the maximum
    // length to use when pad_to_max_length parameter is set to `true`"); with its default "false"
    // sequences run to the model's max length (4096 for Phi-3-mini-4k) whatever max_seq_length says.
    // So both are sent, and hyperparameters.maxSeqLength bounds training as in the script mode
    // (every example is padded to it: memory and time as at full length).
    pad_to_max_length: "true",
    max_seq_length: String(h.maxSeqLength),
    lr_scheduler_type: h.lrScheduler,
    seed: String(h.seed),
    ...MANAGED_FIXED_INPUTS,
    num_nodes_finetune: String(c.training.instanceCount),
    number_of_gpu_to_use_finetuning: String(c.training.processesPerInstance),
    compute_model_import: cluster,
    compute_preprocess: cluster,
    compute_finetune: cluster,
    compute_model_evaluation: cluster,
  };
}

/** The data the pipeline reads: the prep job (its `train` / `test` outputs) or the uploaded JSONL's long-form URIs. */
export type ManagedData = { prepJobName: string } | { trainUri: pulumi.Input<string>; testUri: pulumi.Input<string> };

/** Job inputs of the pipeline: `train_file` and `eval_file` as `uri_file` (the component takes files). */
export function managedDataInputs(data: ManagedData): Record<"train_file" | "eval_file", inputs.machinelearningservices.UriFileJobInputArgs> {
  // A file of a job output: azureml://jobs/<job>/outputs/<output>/paths/<path> (Azure ML's documented
  // job-output path format, learn.microsoft.com/azure/machine-learning/how-to-manage-models).
  if ("prepJobName" in data) {
    return {
      train_file: { jobInputType: "uri_file", uri: `azureml://jobs/${data.prepJobName}/outputs/train/paths/${PREP_FILES.train}` },
      eval_file: { jobInputType: "uri_file", uri: `azureml://jobs/${data.prepJobName}/outputs/test/paths/${PREP_FILES.test}` },
    };
  }
  return { train_file: { jobInputType: "uri_file", uri: data.trainUri }, eval_file: { jobInputType: "uri_file", uri: data.testUri } };
}

/**
 * The content hash of the managed fine-tune job: mode, component id, model source, literal
 * inputs, data, compute, experiment and attempt (code and environment are the component's, so
 * `finetuning_dir/` changes do not retrain; a switch of mode always gives another name).
 */
export function managedJobHash(c: StackConfig, data: unknown): string {
  return sha256(
    canonicalJson({
      mode: "managed",
      component: componentId(c),
      model: c.training.managed.model,
      inputs: managedLiteralInputs(c),
      data,
      compute: { name: c.trainingCluster.name, vmSize: c.trainingCluster.vmSize },
      experiment: c.training.experimentName,
      attempt: c.training.attempt,
      ...distributionHashPart(c.training),
    }),
  );
}

/** Output of the pipeline job the model version is registered from (same name as the script job's). */
export const MODEL_OUTPUT = "model_output";

/**
 * The pipeline job's properties (REST 2025-12-01 `PipelineJob`, azure-native `PipelineJobArgs`):
 * one node, `finetune`, running the registry component with {@link managedLiteralInputs} and the
 * data bound to the job's `train_file` / `eval_file`; the component's `mlflow_model_folder`
 * becomes the job's `model_output` (an `mlflow_model`), registered exactly as the script's.
 * Node dictionaries use the snake_case keys azure-ai-ml sends for pipeline nodes
 * (`job_input_type`, `componentId`, `type`; `jobs` is free-form in the REST spec).
 */
export function managedPipelineJob(
  c: StackConfig,
  args: { computeId: pulumi.Input<string>; data: ManagedData; tags: Record<string, string> },
): inputs.machinelearningservices.PipelineJobArgs {
  const literal = (value: string) => ({ job_input_type: "literal", value });
  const m = c.training.managed.model;
  return {
    jobType: "Pipeline",
    displayName: `fine-tune ${c.baseModel} (${c.training.managed.component.name} ${c.training.managed.component.version})`,
    description: `Managed fine-tuning: ${componentId(c)}; the job name is a hash of component, model source, inputs, data and compute`,
    experimentName: c.training.experimentName,
    // Run as the compute's managed identity (the user-assigned one), which reads the datastore.
    identity: { identityType: "Managed" },
    inputs: managedDataInputs(args.data),
    outputs: { [MODEL_OUTPUT]: { jobOutputType: "mlflow_model", mode: "ReadWriteMount" } },
    settings: { default_compute: args.computeId },
    jobs: {
      finetune: {
        type: "pipeline",
        name: "finetune",
        componentId: componentId(c),
        _source: "REMOTE.REGISTRY",
        inputs: {
          ...Object.fromEntries(Object.entries(managedLiteralInputs(c)).map(([k, v]) => [k, literal(v)])),
          ...(m === "huggingface" ? {} : { mlflow_model_path: { job_input_type: "mlflow_model", uri: `azureml://registries/${m.registry}/models/${m.name}/versions/${m.version}` } }),
          train_file_path: literal("${{parent.inputs.train_file}}"),
          validation_file_path: literal("${{parent.inputs.eval_file}}"),
        },
        outputs: { mlflow_model_folder: { type: "literal", value: `\${{parent.outputs.${MODEL_OUTPUT}}}` } },
      },
    },
    tags: args.tags,
  };
}

/** The plan's one-line account of the training mode, e.g. `script: finetuning_dir/fine_tune.py as a command job`. */
export function describeTrainingMode(c: StackConfig): string {
  if (c.training.mode === "script") return "script: finetuning_dir/fine_tune.py as a command job";
  const m = c.training.managed.model;
  const model = m === "huggingface" ? `${c.baseModel} from the Hugging Face hub` : `azureml://registries/${m.registry}/models/${m.name}/versions/${m.version}`;
  return `managed: ${componentId(c)} as a pipeline job on ${c.trainingCluster.name}, model ${model}`;
}
