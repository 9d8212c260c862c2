/**
 * `training.mode: managed` (issue 13, part 1): the azureml registry's chat_completion_pipeline,
 * pinned from config, submitted as a pipeline job on the stack's cluster with the same data,
 * wait and model registration; a retired registry model is refused naming its source; switching
 * mode submits a new job and keeps the endpoint.
 */
import * as fs from "fs";
import * as path from "path";
import { beforeAll, describe, expect, it } from "vitest";
import type * as inputs from "@pulumi/azure-native/types/input";
import { parseConfig, rawProjectConfig, type RawConfig } from "../infra/config";
import { MANAGED_COMPONENT, PREP_FILES, REGISTRY_MODELS, managedLiteralInputs, managedPipelineJob } from "../infra/managed-finetune";
import { planTraining } from "../infra/training";
import { type ProgramRun, type Registration, unwrapSecrets } from "../lib/mock-runtime";
import { expectRefused } from "./helpers/config";
import { byName, commandEnv, ofType, projectCopy, ROOT, runStack, stackConfig } from "./helpers/stack";

const json = (v: unknown) => JSON.stringify(v);
const jobBody = (r: Registration) => JSON.parse(commandEnv(r).AZUREML_JOB_BODY).properties;
const COMPONENT_ID = "azureml://registries/azureml/components/chat_completion_pipeline/versions/0.0.81";

// Input names of chat_completion_pipeline 0.0.81 (Azure/azureml-assets
// assets/training/finetune_acft_hf_nlp/components/pipeline_components/chat_completion/spec.yaml).
const COMPONENT_INPUTS = [
  "instance_type_model_import", "instance_type_preprocess", "instance_type_finetune", "instance_type_model_evaluation", "shm_size_finetune",
  "num_nodes_finetune", "number_of_gpu_to_use_finetuning", "huggingface_id", "pytorch_model_path", "mlflow_model_path", "task_name", "batch_size",
  "pad_to_max_length", "max_seq_length", "train_file_path", "validation_file_path", "test_file_path", "train_mltable_path", "validation_mltable_path",
  "test_mltable_path", "apply_lora", "merge_lora_weights", "lora_alpha", "lora_r", "lora_dropout", "num_train_epochs", "max_steps",
  "per_device_train_batch_size", "per_device_eval_batch_size", "auto_find_batch_size", "optim", "learning_rate", "warmup_steps", "weight_decay",
  "adam_beta1", "adam_beta2", "adam_epsilon", "gradient_accumulation_steps", "eval_accumulation_steps", "lr_scheduler_type", "precision", "seed",
  "enable_full_determinism", "dataloader_num_workers", "ignore_mismatched_sizes", "max_grad_norm", "evaluation_strategy", "evaluation_steps_interval",
  "eval_steps", "logging_strategy", "logging_steps", "metric_for_best_model", "resume_from_checkpoint", "save_total_limit", "apply_early_stopping",
  "early_stopping_patience", "early_stopping_threshold", "apply_deepspeed", "deepspeed", "deepspeed_stage", "apply_ort", "evaluation_config",
  "evaluation_config_params", "compute_model_import", "compute_preprocess", "compute_finetune", "compute_model_evaluation",
];
const COMPONENT_LR_SCHEDULERS = ["linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup"];
// Every input of azure-native 3.28's PipelineJobArgs (REST 2025-12-01): the compiler refuses a missing or unknown key.
const PIPELINE_JOB_KEYS = {
  componentId: true, computeId: true, description: true, displayName: true, experimentName: true, identity: true, inputs: true, isArchived: true,
  jobType: true, jobs: true, notificationSetting: true, outputs: true, properties: true, services: true, settings: true, sourceJobId: true, tags: true,
} satisfies Record<keyof inputs.machinelearningservices.PipelineJobArgs, true>;

describe("the managed stack", () => {
  let run: ProgramRun;
  beforeAll(async () => {
    run = await runStack({ stack: "managed" });
  });

  it("submits a pipeline job pinned to the registry component, on the stack's A100 cluster", () => {
    const ft = byName(run, "phi3-training-finetune-job");
    const body = jobBody(ft);
    for (const k of Object.keys(body)) expect(Object.keys(PIPELINE_JOB_KEYS), k).toContain(k);
    expect(body.jobType).toBe("Pipeline");
    expect(body.settings).toEqual({ default_compute: byName(run, "phi3-compute-training").id });
    expect(body.identity).toEqual({ identityType: "Managed" });
    expect(Object.keys(body.jobs)).toEqual(["finetune"]);
    const node = body.jobs.finetune;
    expect(node.type).toBe("pipeline");
    expect(node.componentId).toBe(COMPONENT_ID);
    const lit = (k: string) => node.inputs[k];
    expect(lit("huggingface_id")).toEqual({ job_input_type: "literal", value: "microsoft/Phi-3-mini-4k-instruct" });
    for (const k of ["compute_model_import", "compute_preprocess", "compute_finetune", "compute_model_evaluation"]) {
      expect(lit(k), k).toEqual({ job_input_type: "literal", value: "a100-train" });
    }
    expect(lit("num_train_epochs").value).toBe("3");
    expect(lit("learning_rate").value).toBe("0.000005");
    expect(lit("per_device_train_batch_size").value).toBe("4");
    expect(lit("lr_scheduler_type").value).toBe("cosine");
    expect(lit("num_nodes_finetune").value).toBe("1");
    expect(lit("number_of_gpu_to_use_finetuning").value).toBe("1");
    expect(lit("mlflow_model_path")).toBeUndefined();
    // Every input the node sends is one the component declares.
    for (const k of Object.keys(node.inputs)) expect(COMPONENT_INPUTS, k).toContain(k);
    expect(JSON.stringify(body)).not.toMatch(/latest/);
  });

  it("reads the preparation job's files and writes the model where the script's job does", () => {
    const prep = byName(run, "phi3-training-prep-job");
    const prepName = commandEnv(prep).AZUREML_JOB_NAME;
    const ft = byName(run, "phi3-training-finetune-job");
    const body = jobBody(ft);
    expect(body.inputs).toEqual({
      train_file: { jobInputType: "uri_file", uri: `azureml://jobs/${prepName}/outputs/train/paths/train.jsonl` },
      eval_file: { jobInputType: "uri_file", uri: `azureml://jobs/${prepName}/outputs/test/paths/test.jsonl` },
    });
    expect(body.jobs.finetune.inputs.train_file_path).toEqual({ job_input_type: "literal", value: "${{parent.inputs.train_file}}" });
    expect(body.jobs.finetune.inputs.validation_file_path).toEqual({ job_input_type: "literal", value: "${{parent.inputs.eval_file}}" });
    expect(body.outputs).toEqual({ model_output: { jobOutputType: "mlflow_model", mode: "ReadWriteMount" } });
    expect(body.jobs.finetune.outputs).toEqual({ mlflow_model_folder: { type: "literal", value: "${{parent.outputs.model_output}}" } });
    expect(ft.dependencies).toContain(prep.urn);
    expect(ft.dependencies).toContain(byName(run, "phi3-identity-roles-in-effect").urn);
    const jobName = commandEnv(ft).AZUREML_JOB_NAME;
    expect(jobName).toMatch(/^phi3mg-ft-[0-9a-f]{16}$/);
    const model = byName(run, "phi3-training-model");
    expect(unwrapSecrets(model.inputs).properties).toMatchObject({
      modelType: "mlflow_model",
      modelUri: `azureml://jobs/${jobName}/outputs/model_output`,
      tags: { trainingMode: "managed", component: COMPONENT_ID, payloadShape: "chat-list" },
    });
    expect(model.dependencies).toContain(ft.urn);
    // The component brings its own environment; the script's is not declared.
    expect(run.registrations.some((r) => r.name === "phi3-training-environment")).toBe(false);
  });

  it("prepare_data.py writes the file names the pipeline reads", () => {
    const source = fs.readFileSync(path.join(ROOT, "finetuning_dir/prepare_data.py"), "utf8");
    expect(source).toContain(`TRAIN_FILE_NAME = "${PREP_FILES.train}"`);
    expect(source).toContain(`TEST_FILE_NAME = "${PREP_FILES.test}"`);
  });
});

describe("the job body builder", () => {
  const cfg = (over: RawConfig = {}) => parseConfig({ location: "eastus2", training: json({ mode: "managed" }), hyperparameters: json({ warmupRatio: 0 }), ...over }).config;

  it("is a PipelineJobArgs of azure-native, with uploaded JSONL as uri_file inputs", () => {
    const body = managedPipelineJob(cfg(), { computeId: "/computes/a100-train", data: { trainUri: "azureml://x/train.jsonl", testUri: "azureml://x/test.jsonl" }, tags: { stack: "t" } }) satisfies inputs.machinelearningservices.PipelineJobArgs;
    expect(body.inputs).toEqual({ train_file: { jobInputType: "uri_file", uri: "azureml://x/train.jsonl" }, eval_file: { jobInputType: "uri_file", uri: "azureml://x/test.jsonl" } });
    expect(body.tags).toEqual({ stack: "t" });
  });

  it("maps every scheduler the config allows to one the component allows, and nodes/GPUs from the distribution keys", () => {
    for (const lrScheduler of ["cosine", "linear", "constant", "constant_with_warmup"]) {
      expect(COMPONENT_LR_SCHEDULERS).toContain(managedLiteralInputs(cfg({ hyperparameters: json({ warmupRatio: 0, lrScheduler }) })).lr_scheduler_type);
    }
    const big = managedLiteralInputs(cfg({ trainingCluster: json({ vmSize: "Standard_NC96ads_A100_v4", maxNodes: 2 }), training: json({ mode: "managed", instanceCount: 2, processesPerInstance: 4 }) }));
    expect([big.num_nodes_finetune, big.number_of_gpu_to_use_finetuning]).toEqual(["2", "4"]);
  });
});

describe("the sequence length (issue 19)", () => {
  const cfg = (maxSeqLength: number) => parseConfig({ location: "eastus2", training: json({ mode: "managed" }), hyperparameters: json({ warmupRatio: 0, maxSeqLength }) }).config;

  it.each([512, 2048, 4096])("maxSeqLength %i bounds the sequence: max_seq_length with pad_to_max_length true (the only case the component reads it)", (n) => {
    const literal = managedLiteralInputs(cfg(n));
    expect(literal.max_seq_length).toBe(String(n));
    expect(literal.pad_to_max_length).toBe("true");
    for (const k of ["pad_to_max_length", "max_seq_length"]) expect(COMPONENT_INPUTS).toContain(k);
  });

  it("reaches the pipeline job's inputs as literals", () => {
    const body = managedPipelineJob(cfg(1024), { computeId: "/computes/a100-train", data: { trainUri: "azureml://x/train.jsonl", testUri: "azureml://x/test.jsonl" }, tags: {} });
    const text = JSON.stringify(body);
    expect(text).toContain('"pad_to_max_length":{"job_input_type":"literal","value":"true"}');
    expect(text).toContain('"max_seq_length":{"job_input_type":"literal","value":"1024"}');
  });
});

describe("switching mode", () => {
  let script: ProgramRun;
  let managed: ProgramRun;
  beforeAll(async () => {
    script = await runStack();
    managed = await runStack({ overrides: { training: { mode: "managed" }, hyperparameters: { epochs: 3, learningRate: 5e-6, perDeviceBatchSize: 4, maxSeqLength: 2048, warmupRatio: 0, lrScheduler: "cosine", seed: 0 } } });
  });
  const jobName = (run: ProgramRun) => commandEnv(byName(run, "phi3-training-finetune-job")).AZUREML_JOB_NAME;
  const plain = (run: ProgramRun, name: string) => JSON.stringify(unwrapSecrets(byName(run, name).inputs));

  it("submits a new job (and so registers a new model version)", () => {
    expect(jobName(managed)).not.toBe(jobName(script));
    expect(jobBody(byName(script, "phi3-training-finetune-job")).jobType).toBe("Command");
    expect(jobBody(byName(managed, "phi3-training-finetune-job")).jobType).toBe("Pipeline");
    expect(unwrapSecrets(byName(managed, "phi3-training-model").inputs).version).not.toBe(unwrapSecrets(byName(script, "phi3-training-model").inputs).version);
  });

  it("keeps the endpoint, the Prompt flow resources and every other logical resource", () => {
    expect(plain(managed, "phi3-serving-endpoint")).toBe(plain(script, "phi3-serving-endpoint"));
    for (const name of ["phi3-promptflow-hub", "phi3-promptflow-project", "phi3-workspace", "phi3-compute-training", "phi3-training-prep-job"]) {
      expect(plain(managed, name), name).toBe(plain(script, name));
    }
    const names = (run: ProgramRun) => run.registrations.map((r) => `${r.type} ${r.name}`).sort();
    expect(names(managed)).toEqual(names(script).filter((n) => !n.endsWith(" phi3-training-environment")));
    // The deployment serves the new model version under the same logical name; traffic follows it.
    expect(ofType(managed, "azure-native:machinelearningservices:OnlineDeployment").map((r) => r.name)).toEqual(["phi3-serving-deployment-blue"]);
  });

  it("the job name hashes the component version and the model source, not finetuning_dir/", async () => {
    const base = parseConfig(rawProjectConfig(stackConfig("local-data", { training: { mode: "managed" }, hyperparameters: { warmupRatio: 0 } }).config)).config;
    const name = planTraining(base).jobName;
    const other = { ...base, training: { ...base.training, managed: { ...base.training.managed, component: { ...MANAGED_COMPONENT, version: "0.0.80" } } } };
    expect(planTraining(other).jobName).not.toBe(name);
    const dir = projectCopy();
    fs.appendFileSync(path.join(dir, "finetuning_dir/fine_tune.py"), "\n# changed\n");
    expect(planTraining(base, dir).jobName).toBe(name);
    expect(planTraining({ ...base, training: { ...base.training, mode: "script" } }, dir).jobName).not.toBe(planTraining({ ...base, training: { ...base.training, mode: "script" } }).jobName);
  });
});

describe("plan-time rules of the managed mode", () => {
  const managed = (over: Record<string, unknown> = {}) => json({ mode: "managed", ...over });
  const cases: [string, RawConfig, string, RegExp][] = [
    ["the retired registry Phi-3-mini-4k-instruct", { training: managed({ managed: { model: { registry: "azureml", name: "Phi-3-mini-4k-instruct", version: "15" } } }) }, "phi3-finetune:training.managed.model",
      /Azure retired fine-tuning of Phi-3-mini-4k-instruct on 2025-08-30 \(FinetuneRetirementDate in Azure\/azureml-assets assets\/models\/system\/phi-3-mini-4k-instruct\/spec\.yaml, version 15\)\. Use model: huggingface/],
    ["the retired registry Phi-3.5-mini-instruct", { baseModel: "microsoft/Phi-3.5-mini-instruct", training: managed({ managed: { model: { registry: "azureml", name: "Phi-3.5-mini-instruct", version: "6" } } }) }, "phi3-finetune:training.managed.model", /retired fine-tuning of Phi-3\.5-mini-instruct on 2025-08-30/],
    ["another model than baseModel", { training: managed({ managed: { model: { registry: "azureml", name: "Phi-4-mini-instruct", version: "1" } } }) }, "phi3-finetune:training.managed.model.name", /registry model of baseModel microsoft\/Phi-3-mini-4k-instruct \(Phi-3-mini-4k-instruct\)/],
    ["a component label instead of a version", { training: managed({ managed: { component: { version: "latest" } } }) }, "phi3-finetune:training.managed.component.version", /pinned version such as 0\.0\.81/],
    ["a registry model label", { training: managed({ managed: { model: { registry: "azureml", name: "Phi-3-mini-4k-instruct", version: "latest" } } }) }, "phi3-finetune:training.managed.model.version", /pinned model version/],
    ["a CPU training cluster", { trainingCluster: json({ vmSize: "Standard_E16s_v3" }), training: managed({ servedDtype: "float32" }), serving: json({ deployments: [{ name: "blue", instanceType: "Standard_E4s_v3" }] }) }, "phi3-finetune:trainingCluster.vmSize", /CPU size, but training\.mode managed/],
    ["fewer processes than GPUs", { trainingCluster: json({ vmSize: "Standard_NC96ads_A100_v4" }), training: managed({ processesPerInstance: 2 }) }, "phi3-finetune:training.processesPerInstance", /must equal the 4 GPUs of Standard_NC96ads_A100_v4/],
    ["an unknown mode", { training: json({ mode: "serverless" }) }, "phi3-finetune:training.mode", /script|managed/],
  ];
  it.each(cases)("%s is refused naming the key", (_label, raw, key, rule) => expectRefused({ location: "eastus2", ...raw }, key, rule));

  it("records a retirement for every base model the stack supports", () => {
    for (const m of Object.values(REGISTRY_MODELS)) expect(m.finetuneRetired).toBe("2025-08-30");
  });

  it("warns about settings the component has no input for; script mode neither warns nor checks", () => {
    const { warnings } = parseConfig({ location: "eastus2", training: managed({ servedDtype: "bfloat16" }), serving: json({ deployments: [{ name: "blue", instanceType: "Standard_NC24ads_A100_v4" }] }) });
    expect(warnings.join("\n")).toMatch(/hyperparameters\.warmupRatio: chat_completion_pipeline has warmup_steps only/);
    expect(warnings.join("\n")).toMatch(/training\.servedDtype: bfloat16 does not apply in training\.mode managed/);
    const script = parseConfig({ location: "eastus2", training: json({ managed: { model: { registry: "azureml", name: "Phi-3-mini-4k-instruct", version: "15" } } }) });
    expect(script.config.training.mode).toBe("script");
    expect(script.warnings.join("\n")).not.toMatch(/managed/);
  });
});
