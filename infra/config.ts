/**
 * The stack's configuration: one zod schema, parsed and validated once, before any resource
 * is registered. Every default equals the Phi-3 Cookbook end-to-end sample's value (the seeds
 * in shared/seeds); every key is documented on its schema.
 *
 * Keys live in the project namespace (`phi3-finetune:<key>`). Scalars (`namePrefix`,
 * `resourceGroupName`, `baseModel`) are typed in `Pulumi.yaml`; structured values
 * (`trainingCluster`, `hyperparameters`, `data`, `serving`, ...) are objects in
 * `Pulumi.<stack>.yaml`. The location comes from the provider key `azure-native:location`.
 */
import * as pulumi from "@pulumi/pulumi";
import * as fs from "fs";
import * as path from "path";
import { z } from "zod";
import { formatJsonlIssues, packingCheck, validateChatJsonlFile } from "./jsonl";
import { azureNames } from "./naming";
import { trafficRuleIssues } from "./traffic";
import { trainingMemoryIssue } from "./training-memory";
import { regionProblem } from "./regions";
import { NO_SECRETS, runtimeSecretKeys, SecretMarks, secretMarks } from "./secrets";
import { IMAGE_BUILD_CLUSTER, isPrivate, SECURITY_DEFAULTS, securitySchema, securityWarnings } from "./security";
import { HF_REPO_ID, SPLIT_EXPRESSION } from "./shell";
import { distributionIssues, distributionKeys, distributionWarnings } from "./distribution";
import { managedIssues, managedWarnings, modeKeys } from "./managed-finetune";
import { closestName, isGpuSize, recordedVmSize, RETIRED_SIZES, REPLACEMENT_SIZES, vmSizeProblem, vmSizeWarning } from "./vm-sizes";
import { bool, int, num } from "./config-values";
import { autoscaleIssues, autoscaleSchema, quotaIssues, quotaSchema } from "./autoscale";

/** How a value is described in messages: `the string "x"`, `the number 3`, `an object`. */
export function describeValue(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "a list";
  if (typeof v === "string") return `the text ${JSON.stringify(v.length > 60 ? `${v.slice(0, 57)}...` : v)}`;
  if (typeof v === "object") return "an object";
  return `the ${typeof v} ${String(v)}`;
}

const A: Record<string, string> = { string: "a text", number: "a number", boolean: "true or false", object: "an object", array: "a list", int: "an integer" };

// Every message names the rule in words (zod's defaults say "Invalid input"): this fills in
// wherever a schema below gives no message of its own (zod 4 `z.config({ customError })`).
z.config({
  customError: (iss) => {
    switch (iss.code) {
      case "invalid_type":
        return iss.input === undefined ? "is required" : `must be ${A[iss.expected] ?? iss.expected}, got ${describeValue(iss.input)}`;
      case "invalid_value":
        return `must be one of ${iss.values.map((v) => JSON.stringify(v)).join(", ")}`;
      case "too_small":
        return iss.origin === "string" ? `must be at least ${iss.minimum} characters` : iss.origin === "array" ? `must have at least ${iss.minimum} items` : `must be ${iss.inclusive ? ">=" : ">"} ${iss.minimum}`;
      case "too_big":
        return iss.origin === "string" ? `must be at most ${iss.maximum} characters` : iss.origin === "array" ? `must have at most ${iss.maximum} items` : `must be ${iss.inclusive ? "<=" : "<"} ${iss.maximum}`;
      case "invalid_format":
        return `must match the pattern ${"pattern" in iss && iss.pattern ? String(iss.pattern) : iss.format}`;
      case "invalid_union":
        return "must be one of the allowed forms (see the README's configuration table)";
      default:
        return undefined;
    }
  },
});

/** Project name, the namespace of every config key (matches `Pulumi.yaml`). */
export const PROJECT = "phi3-finetune";

export { RETIRED_SIZES, REPLACEMENT_SIZES } from "./vm-sizes";

/** GPU sizes without bf16 support (V100 of NCv3, T4 of NCasT4_v3): serve float16 weights there. */
export function lacksBf16(vmSize: string): boolean {
  return /^Standard_NC\d+s_v3$/i.test(vmSize) || /_T4_v3$/i.test(vmSize);
}

// N-series sizes carry GPUs (in vm-sizes.ts, so infra/autoscale.ts can use it without a cycle).
export { isGpuSize };

/** Context length in tokens of each base model (their Hugging Face model cards): maxSeqLength must fit. */
export const CONTEXT_TOKENS: Record<string, number> = {
  "microsoft/Phi-3-mini-4k-instruct": 4096,
  "microsoft/Phi-3-mini-128k-instruct": 131072,
  "microsoft/Phi-3.5-mini-instruct": 131072,
};

/** Base models the fine-tune script supports (the seeds use Phi-3-mini and allow Phi-3.5-mini). */
export const BASE_MODELS = [
  "microsoft/Phi-3-mini-4k-instruct",
  "microsoft/Phi-3-mini-128k-instruct",
  "microsoft/Phi-3.5-mini-instruct",
] as const;

/** Longest VM size name accepted (Azure's longest are about 30 characters); checked before any "did you mean" search. */
export const MAX_VM_SIZE_LENGTH = 64;

const vmSize = z
  .string()
  .max(MAX_VM_SIZE_LENGTH, { error: `must be an Azure VM size (at most ${MAX_VM_SIZE_LENGTH} characters) such as Standard_NC24ads_A100_v4`, abort: true })
  .regex(/^Standard_[A-Za-z0-9_]+$/, { error: "must be an Azure VM size such as Standard_NC24ads_A100_v4" });

/**
 * Azure ML compute names: 2-16 characters, letters, digits and hyphens, starting with a letter
 * and ending with a letter or digit (Azure ML REST 2025-12-01 Compute - Create Or Update:
 * "It must start with a letter, end with a letter or digit").
 */
const computeName = z
  .string()
  .regex(/^[a-zA-Z](?:[a-zA-Z0-9-]{0,14}[a-zA-Z0-9])$/, {
    error: "must be 2-16 characters: letters, digits and '-', starting with a letter and not ending with '-'",
  });

/**
 * A container image reference as Docker's reference grammar (distribution/reference) allows it,
 * with a registry host and at least one path part, and a tag, a sha256 digest or both: host labels
 * joined by single dots (optional :port), path parts of lowercase letters and digits joined by
 * one `.`, one or two `_`, or hyphens. So no part is `.` or `..` and nothing can climb a path.
 */
export const IMAGE_REFERENCE =
  /^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*(?::\d{1,5})?(?:\/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)+(?::[A-Za-z0-9_][A-Za-z0-9._-]{0,127}(?:@sha256:[a-f0-9]{64})?|@sha256:[a-f0-9]{64})$/;

/** The registry host of an image reference (Docker's rule: the first part when it has a `.` or `:` or is `localhost`, else docker.io). */
export function imageRegistry(image: string): string {
  const first = image.split("/")[0];
  return /[.:]/.test(first) || first === "localhost" ? first.replace(/:\d+$/, "") : "docker.io";
}

/** Online deployment names: 3-32 characters in Azure; we keep 23 for the model-version suffix. */
const deploymentName = z
  .string()
  .regex(/^[a-z][a-z0-9-]{1,21}[a-z0-9]$/, {
    error: "must be 3-23 characters: lowercase letters, digits and '-', starting with a letter",
  });

// Numbers and booleans: one rule for every key (infra/config-values.ts): also accepted as the
// text Pulumi's `config set --path` stores.
/** An AmlCompute cluster. `idleSeconds` is seconds (rendered as ISO-8601 `PT<n>S`). */
const clusterSchema = (defaults: { vmSize: string; name: string }) =>
  z
    .strictObject({
      /** Compute name in the workspace (2-16 chars). */
      name: computeName.default(defaults.name),
      /** VM size of each node. */
      vmSize: vmSize.default(defaults.vmSize),
      /** `Dedicated` (seed) or `LowPriority` (cheaper, pre-emptible). */
      vmPriority: z.enum(["Dedicated", "LowPriority"]).default("Dedicated"),
      /** Minimum nodes; 0 means no cost when idle (seed: 0). */
      minNodes: int(0, 100).default(0),
      /** Maximum nodes (seed: 1). */
      maxNodes: int(1, 100).default(1),
      /** Idle seconds before scale-down (seed: 120). */
      idleSeconds: int(60, 86400).default(120),
    })
    .superRefine((c, ctx) => {
      if (c.maxNodes >= 1 && c.minNodes > c.maxNodes) {
        ctx.addIssue({ code: "custom", path: ["minNodes"], input: c.minNodes, message: `must be <= maxNodes (${c.maxNodes})` });
      }
    });

const hyperparametersSchema = z.strictObject({
  /** Training epochs (seed: 3). */
  epochs: int(1, 100).default(3),
  /** Peak learning rate (seed: 5e-6). */
  learningRate: num((n) => n.gt(0, { error: "must be > 0" }).max(1, { error: "must be <= 1" })).default(5e-6),
  /** Per-device train and eval batch size (seed: 4). */
  perDeviceBatchSize: int(1, 256).default(4),
  /** Maximum sequence length in tokens (seed: 2048). */
  maxSeqLength: int(128, 131072).default(2048),
  /** Fraction of steps used for warmup, 0..1 (seed: 0.2). */
  warmupRatio: num((n) => n.min(0, { error: "must be >= 0" }).max(1, { error: "must be <= 1" })).default(0.2),
  /** Learning-rate schedule (seed: cosine). */
  lrScheduler: z.enum(["cosine", "linear", "constant", "constant_with_warmup"]).default("cosine"),
  /** Random seed (seed: 0). */
  seed: int(0, 2 ** 31 - 1).default(0),
});


const dataSchema = z.discriminatedUnion(
  "source",
  [
  z.strictObject({
    /** Download ultrachat_200k inside Azure ML with a preparation command job (seed). */
    source: z.literal("ultrachat"),
    /** Hugging Face dataset id (`namespace/name`; reaches the job's command line, so strictly checked). */
    dataset: z
      .string()
      .regex(HF_REPO_ID, { error: "must be a Hugging Face dataset id such as HuggingFaceH4/ultrachat_200k (letters, digits, '-', '_', '.', one '/')" })
      .default("HuggingFaceH4/ultrachat_200k"),
    /** Slice of the dataset (seed: `train_sft[:1%]`; CPU profile: `train_sft[:10]`). */
    split: z
      .string()
      .regex(SPLIT_EXPRESSION, { error: "must look like train_sft[:1%] (1-100 percent) or train_sft[:10] (rows)" })
      .default("train_sft[:1%]"),
    /** Fraction held out for evaluation, 0..1 exclusive (seed: 0.2 → 80/20). */
    testSize: num((n) => n.gt(0, { error: "must be > 0" }).lt(1, { error: "must be < 1" })).default(0.2),
    /** Seed of the train/test split. */
    seed: int(0, 2 ** 31 - 1).default(0),
    /** Light CPU image of the preparation job's environment (with finetuning_dir/conda-prep.yml: python + datasets). */
    prepImage: z
      .string()
      .max(512, { error: "must be at most 512 characters", abort: true })
      .regex(IMAGE_REFERENCE, {
        error: "must be a container image reference with a tag, e.g. mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest",
      })
      .default("mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest"),
    /** Small CPU cluster that runs the preparation job. */
    prepCluster: clusterSchema({ vmSize: "Standard_DS3_v2", name: "prep-cpu" }).default({
      name: "prep-cpu",
      vmSize: "Standard_DS3_v2",
      vmPriority: "Dedicated",
      minNodes: 0,
      maxNodes: 1,
      idleSeconds: 120,
    }),
  }),
  z.strictObject({
    /** Your own chat JSONL files (`{"messages": [...]}` per line), uploaded as data assets. */
    source: z.literal("jsonl"),
    /** Training file, relative to the project root. */
    trainFile: z.string().min(1),
    /** Evaluation file, relative to the project root. */
    testFile: z.string().min(1),
  }),
  ],
  { error: 'needs source: "ultrachat" (ultrachat_200k, prepared in Azure ML) or source: "jsonl" (with trainFile and testFile)' },
);

const requestSettingsSchema = z.strictObject({
  /** Concurrent requests per instance (seed: 3). */
  maxConcurrentRequestsPerInstance: int(1, 1000).default(3),
  /** Request timeout in milliseconds (seed: 180000; Azure allows up to 180000). */
  requestTimeoutMs: int(1000, 180000).default(180000),
  /**
   * Maximum queue wait in milliseconds (seed: 120000). Deprecated for managed online endpoints
   * in Azure ML REST 2025-12-01 ("Now increase request_timeout_ms to account for any
   * networking/queue delays"): still sent so deployed stacks see no change, but it bounds
   * nothing; size `requestTimeoutMs` instead.
   */
  maxQueueWaitMs: int(0, 600000).default(120000),
});

const probeSchema = z.strictObject({
  /** Failures before the probe fails (seed: 30). */
  failureThreshold: int(1, 1000).default(30),
  /** Successes before the probe succeeds (seed: 1). */
  successThreshold: int(1, 1000).default(1),
  /** Seconds between probes (seed: 100). */
  periodSeconds: int(1, 3600).default(100),
  /** Seconds before the first probe (seed: 500; large models load slowly). */
  initialDelaySeconds: int(0, 3600).default(500),
  /** Seconds a probe may take (Azure default: 2). */
  timeoutSeconds: int(1, 600).default(2),
});

const modelRefSchema = z.union(
  [
    /** The model version this stack trains and registers. */
    z.literal("trained"),
    /**
     * A model version of this stack's workspace, e.g. one an earlier config trained (model
     * versions are kept when training moves on). `existing: true` is required: the stack's
     * workspace may be new, so only the preflight can confirm the version exists.
     */
    z.strictObject({
      name: z.string().regex(/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,254}$/, { error: "must be a model name: letters, digits, '_', '.', '-'" }),
      version: z.string().regex(/^[1-9]\d{0,9}$/, {
        error: "must be a model version number such as 3 (a deployment pins one version; labels such as latest are not accepted)",
      }),
      existing: bool().optional(),
    }),
  ],
  { error: 'must be "trained" or {name, version, existing: true} (a version in this stack\'s workspace)' },
);

const deploymentSchema = z.strictObject({
  /** Deployment name as traffic refers to it; Azure's name adds a model-version suffix. */
  name: deploymentName,
  /** Which model version to serve (default: the one this stack trains). */
  model: modelRefSchema.default("trained"),
  /** Instance type (seed: Standard_NC6s_v3, retired by Azure: the plan warns). */
  instanceType: vmSize.default("Standard_NC6s_v3"),
  /** Instances (seed: 1). */
  instanceCount: int(1, 50).default(1),
  requestSettings: requestSettingsSchema.default(requestSettingsSchema.parse({})),
  /** Liveness and readiness probes (seed: both the same). */
  probes: probeSchema.default(probeSchema.parse({})),
  /** Extra environment variables; SUBSCRIPTION_ID, RESOURCE_GROUP_NAME, UAI_CLIENT_ID are always set. */
  environmentVariables: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/), z.string()).default({}),
  /** Azure Monitor autoscale between min and max instances (infra/autoscale.ts); absent: a fixed instanceCount. */
  autoscale: autoscaleSchema.optional(),
});

const DEFAULT_DEPLOYMENT = deploymentSchema.parse({ name: "blue" });

/**
 * The smoke test of each new deployment before it gets traffic, and of the endpoint after the
 * traffic step (jobs/smoke-test.ts; roll-back to the previous split on failure).
 */
const smokeSchema = z.strictObject({
  /** Run the smoke tests (default true). */
  enabled: bool().default(true),
  /** Prompts sent to each deployment (default: the first user turn of the first two rows of the eval data). */
  prompts: z.array(z.string().trim().min(1, { error: "must not be empty" }).max(4000)).min(1).max(10).optional(),
  /** Seconds one answer may take (default 60). */
  maxSeconds: num((n) => n.gt(0, { error: "must be > 0" }).max(180, { error: "must be <= 180 (Azure's request timeout limit)" })).default(60),
  /** `max_new_tokens` of a smoke request (default 32). */
  maxNewTokens: int(1, 4096).default(32),
  /** After the traffic step: put the previous split back when the smoke through the endpoint fails (default true). */
  rollback: bool().default(true),
});

/** Default of `serving.smoke`. */
export const SMOKE_DEFAULTS = smokeSchema.parse({});

const servingSchema = z
  .strictObject({
    /** Online deployments (default: one, `blue`, with the seed's settings). */
    deployments: z.array(deploymentSchema).max(10).default([DEFAULT_DEPLOYMENT]),
    /** Live traffic in percent per deployment name; integers summing to 100 (0 without deployments). */
    traffic: z.record(z.string(), num()).optional(),
    /** Mirror (shadow) traffic in percent to at most one deployment, at most 50, never a live one. */
    mirrorTraffic: z.record(z.string(), num()).default({}),
    /** Smoke tests before and after traffic moves (jobs/smoke-test.ts). */
    smoke: smokeSchema.default(SMOKE_DEFAULTS),
  })
  .transform((s) => ({
    ...s,
    traffic:
      s.traffic ?? (s.deployments.length === 1 ? { [s.deployments[0].name]: 100 } : ({} as Record<string, number>)),
  }))
  .superRefine((s, ctx) => {
    for (const issue of validateTraffic(s.deployments.map((d) => d.name), s.traffic, s.mirrorTraffic)) {
      ctx.addIssue({ code: "custom", path: issue.path, message: issue.message, input: issue.input });
    }
  });

const promptFlowSchema = z.strictObject({
  /** Declare the AI hub, project and custom connection (seed: yes). */
  enabled: bool().default(true),
  /** Name of the CustomKeys connection holding the endpoint and key. */
  connectionName: z
    .string()
    .regex(/^[a-zA-Z0-9][a-zA-Z0-9_-]{2,32}$/, { error: "must be 3-33 characters: letters, digits, '-' and '_'" })
    .default("phi3-endpoint"),
});

/**
 * The quality gate between the fine-tune job and the model version (jobs/quality-gate.ts): the
 * job's MLflow run must pass every rule set here, else nothing is registered or deployed.
 */
const gateSchema = z.strictObject({
  /** Run the gate (default true). Off: the model is registered as soon as the job completed. */
  enabled: bool().default(true),
  /** Refuse a run whose `eval_loss` is above this (absent: no absolute limit; the scale depends on the data). */
  maxEvalLoss: num((n) => n.gt(0, { error: "must be > 0" })).optional(),
  /**
   * Refuse a run whose `eval_loss` is more than this percent above the `eval_loss` of the model
   * serving now (its version's job's run); default 10. Nothing serving yet (first `up`): the rule does not apply.
   */
  maxRegressionPercent: num((n) => n.min(0, { error: "must be >= 0" }).max(1000, { error: "must be <= 1000" })).default(10),
});

/** Default of `training.gate`. */
export const GATE_DEFAULTS = gateSchema.parse({});

const trainingSchema = z.strictObject({
  /** Curated training image (seed: acft-hf-nlp-gpu:59; CPU profile: openmpi4.1.0-ubuntu20.04). */
  image: z.string().max(512, { error: "must be at most 512 characters", abort: true }).regex(IMAGE_REFERENCE, {
    error: "must be a container image reference with a tag, e.g. mcr.microsoft.com/azureml/curated/acft-hf-nlp-gpu:59",
  }).default("mcr.microsoft.com/azureml/curated/acft-hf-nlp-gpu:59"),
  /** Experiment the jobs are grouped under in Studio. */
  experimentName: z.string().regex(/^[a-zA-Z0-9][a-zA-Z0-9_-]{0,254}$/).default("phi3-finetune"),
  /** Registered model name. */
  modelName: z.string().regex(/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,254}$/).default("phi3-finetuned"),
  /** dtype of the served weights: float16 works on every GPU (V100 and T4 have no bf16); float32 for CPU serving. */
  servedDtype: z.enum(["float16", "bfloat16", "float32"]).default("float16"),
  /**
   * GPU training precision of fine_tune.py (issue 20): `bf16-mixed` (default: float32 master
   * weights, bfloat16 autocast; every small update lands) or `bf16` (weights kept in bfloat16:
   * half the memory, but at lr 5e-6 most updates round away). The plan refuses a choice that
   * does not fit one GPU of the training cluster, with the arithmetic (infra/training-memory.ts).
   * CPU clusters train in float32 whatever this says.
   */
  precision: z.enum(["bf16-mixed", "bf16"]).default("bf16-mixed"),
  /** `full` fine-tune (default) or `lora` (PEFT adapters on a frozen bf16 base, merged before the MLflow save: serving is unchanged; fits a 24 GB A10). */
  method: z.enum(["full", "lora"]).default("full"),
  /** LoRA rank r (alpha 2r, dropout 0.05); used with `method: lora`. */
  loraRank: int(1, 256).default(16),
  /** Bump to resubmit the same jobs after a failure (part of every job's name hash). */
  attempt: int(1, 1000).default(1),
  /** Hours `pulumi up` waits for a job before failing the step (the job keeps running). */
  waitTimeoutHours: num((n) =>
    n.min(1 / 60, { error: "must be at least 1/60 (one minute): a shorter wait gives up before a job can start" }).max(168, { error: "must be <= 168 (a week)" }),
  ).default(24),
  /** Nodes and processes per node of the fine-tune job (infra/distribution.ts; seed: 1 and 1). */
  ...distributionKeys,
  /** `mode: script | managed` and the managed mode's pinned component and model source (infra/managed-finetune.ts). */
  ...modeKeys,
  /** Quality gate on the job's MLflow run before the model is registered (jobs/quality-gate.ts). */
  gate: gateSchema.default(GATE_DEFAULTS),
});

/** The whole stack config. Unknown keys are errors (typos must not pass silently). */
export const configSchema = z
  .strictObject({
    /** Prefix of every Azure name: 2-8 lowercase letters/digits, starting with a letter. */
    namePrefix: z
      .string()
      .regex(/^[a-z][a-z0-9]{1,7}$/, { error: "must be 2-8 lowercase letters or digits, starting with a letter" })
      .default("phi3ft"),
    /** Azure region (`azure-native:location`; seed: eastus2 for Phi-3 fine-tuning). */
    location: z
      .string({ error: "is required: set azure-native:location (e.g. eastus2)" })
      .max(64, { error: "must be an Azure region name such as eastus2 (at most 64 characters)", abort: true })
      .regex(/^[a-z]+[a-z0-9]*$/, { error: "must be an Azure region name such as eastus2" }),
    /** Existing resource group to deploy into; empty creates `rg-<prefix>-<stack>`. */
    resourceGroupName: z
      .string()
      .regex(/^$|^[-\w._()]{1,89}[-\w_()]$/, { error: "must be 1-90 characters: letters, digits, '-', '_', '.', '(', ')'" })
      .default(""),
    /**
     * Generation of the stack's globally unique names (0 = the first). After `pulumi destroy`,
     * Azure keeps the workspace (14 days) and key vault (7 days) soft-deleted under their names;
     * bump this to deploy the same stack again at once under new names (README: "Deploy again").
     */
    nameGeneration: int(0, 999, "must be a whole number").default(0),
    /** Hugging Face id of the base model. */
    baseModel: z.enum(BASE_MODELS).default("microsoft/Phi-3-mini-4k-instruct"),
    /** Tags on every taggable resource (Azure's tag rules: {@link tagIssues}). */
    tags: z.record(z.string(), z.string().max(256, { error: "must be at most 256 characters (Azure's limit for a tag value)" })).default({}),
    trainingCluster: clusterSchema({ vmSize: "Standard_NC24ads_A100_v4", name: "a100-train" }).default({
      name: "a100-train",
      vmSize: "Standard_NC24ads_A100_v4",
      vmPriority: "Dedicated",
      minNodes: 0,
      maxNodes: 1,
      idleSeconds: 120,
    }),
    training: trainingSchema.default(trainingSchema.parse({})),
    hyperparameters: hyperparametersSchema.default(hyperparametersSchema.parse({})),
    data: dataSchema.default(dataSchema.parse({ source: "ultrachat" })),
    serving: servingSchema.default({ deployments: [DEFAULT_DEPLOYMENT], mirrorTraffic: {}, traffic: { blue: 100 }, smoke: SMOKE_DEFAULTS }),
    promptFlow: promptFlowSchema.default(promptFlowSchema.parse({})),
    /** Security profile, identities' roles, lock (infra/security.ts; default: standard, least privilege). */
    security: securitySchema.default(SECURITY_DEFAULTS),
    /** Overrides of the cost table (USD per hour by VM size). */
    prices: z.record(z.string(), num((n) => n.positive({ error: "must be a price > 0 (USD per hour)" }))).default({}),
    /** vCPU quota per VM family you hold in the region; the plan refuses configs above it (infra/autoscale.ts). */
    quota: quotaSchema.default({}),
  })
  .superRefine((c, ctx) => {
    const problem = (path: (string | number)[], input: unknown, message: string | undefined) =>
      message && ctx.addIssue({ code: "custom", path, input, message });
    problem(["location"], c.location, regionProblem(c.location));
    const context = CONTEXT_TOKENS[c.baseModel];
    if (context !== undefined && c.hyperparameters.maxSeqLength > context) {
      problem(["hyperparameters", "maxSeqLength"], c.hyperparameters.maxSeqLength, `must be <= ${context}, the context length of ${c.baseModel}`);
    }
    if (c.data.source === "jsonl") {
      for (const key of ["trainFile", "testFile"] as const) problem(["data", key], c.data[key], dataPathProblem(c.data[key]));
    }
    for (const [path, size] of sizeKeys(c)) problem(path, size, vmSizeProblem(size));
    for (const i of [...tagIssues(c.tags), ...clusterIssues(c), ...splitIssues(c), ...memoryIssues(c), ...privateImageIssues(c)]) problem(i.path, i.input, i.message);
    // fine_tune.py trains in bf16 on a GPU and refuses GPUs without native bf16 (compute
    // capability < 8.0) in its first second; refuse them here, before anything is created.
    if (isGpuSize(c.trainingCluster.vmSize) && lacksBf16(c.trainingCluster.vmSize)) {
      problem(["trainingCluster", "vmSize"], c.trainingCluster.vmSize,
        "has no native bf16 (V100/T4 GPUs), which fine_tune.py trains in; use an A100/H100/A10 size such as Standard_NC24ads_A100_v4, or a CPU size for the CPU profile");
    }
    for (const i of distributionIssues(c.training, c.trainingCluster)) problem(i.path, i.input, i.message);
    // private without a prep cluster adds the image-build cluster under its fixed name (infra/security.ts).
    if (isPrivate(c.security) && c.data.source !== "ultrachat" && c.trainingCluster.name === IMAGE_BUILD_CLUSTER.name) {
      problem(["trainingCluster", "name"], c.trainingCluster.name, `is the name of the private profile's image-build cluster; choose another`);
    }
    // The GPU memory check (infra/training-memory.ts): refused when the weights and optimizer
    // states alone cannot fit; configWarnings warns when activations likely push it over.
    const memory = trainingMemoryCheck(c);
    if (memory?.certain) problem(memory.path, memory.input, memory.message);
    for (const i of [...autoscaleIssues(c.serving.deployments), ...quotaIssues(c), ...managedIssues(c)]) problem(i.path, i.input, i.message);
    c.serving.deployments.forEach((d, i) => {
      if (d.model !== "trained" && d.model.existing !== true) {
        problem(["serving", "deployments", i, "model"], d.model,
          `pins ${d.model.name} version ${d.model.version}, which this stack does not create and its workspace may not hold ` +
          `(a new workspace has no model versions; trained versions are hash-derived integers, see the modelVersionId output). ` +
          `Serve "trained", or, if that version is in this stack's workspace, add existing: true: the preflight checks it exists before anything is created`);
      }
      if (d.model !== "trained") return;
      const issue = (message: string) =>
        ctx.addIssue({ code: "custom", path: ["serving", "deployments", i, "instanceType"], input: d.instanceType, message });
      if (c.training.servedDtype === "bfloat16" && lacksBf16(d.instanceType)) {
        issue("has no bf16 support (V100/T4) but training.servedDtype is bfloat16; use float16");
      }
      if (c.training.servedDtype !== "float32" && !isGpuSize(d.instanceType)) {
        issue(`is a CPU size but training.servedDtype is ${c.training.servedDtype}; CPU serving needs float32`);
      }
    });
  });

/** The validated stack config every component receives. */
export type StackConfig = z.infer<typeof configSchema>;
export type ClusterConfig = StackConfig["trainingCluster"];
export type DeploymentConfig = StackConfig["serving"]["deployments"][number];
export type DataConfig = StackConfig["data"];

/** A traffic rule violation, with the path under `serving`. */
export interface TrafficIssue {
  path: (string | number)[];
  message: string;
  input?: unknown;
}

/**
 * Validate a live and mirror traffic split (percent per deployment name) with the rules of
 * `infra/traffic.ts` (Azure ML online endpoints, REST 2025-12-01): names must be declared
 * deployments (declared once each); values are integers 0..100; live traffic sums to exactly
 * 100, or 0 when there are no deployments; mirror traffic goes to at most one deployment, at
 * most 50%, and never to a deployment that takes live traffic. Returns every problem (empty
 * when valid), with paths under `serving`.
 */
export function validateTraffic(
  deployments: string[],
  traffic: Record<string, number>,
  mirror: Record<string, number>,
): TrafficIssue[] {
  return trafficRuleIssues({ deployments, traffic, mirrorTraffic: mirror }).map((issue): TrafficIssue => {
    switch (issue.rule) {
      case "duplicateDeployment":
        return { path: ["deployments", issue.index, "name"], message: `duplicate deployment name '${issue.name}'`, input: issue.name };
      case "unknownDeployment":
        return {
          path: [issue.kind, issue.name],
          input: issue.name,
          message: `names deployment '${issue.name}', which is not declared; declared: ${issue.known.join(", ") || "(none)"}`,
        };
      case "percentRange":
        return { path: [issue.kind, issue.name], input: issue.value, message: `must be an integer percent from 0 to ${issue.max}` };
      case "liveSum": {
        const expected = issue.allowed.join(" or ");
        return {
          path: ["traffic"],
          input: traffic,
          message: `live traffic sums to ${issue.sum}; it must sum to exactly ${expected}${expected === "0" ? " when there are no deployments" : ""}`,
        };
      }
      case "mirrorTargets":
        return { path: ["mirrorTraffic"], input: mirror, message: "mirror traffic may go to one deployment only" };
      case "mirrorToLive":
        return {
          path: ["mirrorTraffic", issue.name],
          input: issue.name,
          message: `cannot mirror to '${issue.name}': it takes live traffic (${issue.live}%)`,
        };
      default:
        // notAMap, invalidName, mirrorWithoutLive: never produced here (zod hands over objects,
        // no name check is passed, and with a deployment list the sum and name rules cover it).
        return { path: ["traffic"], input: traffic, message: `breaks traffic rule ${issue.rule}` };
    }
  });
}

/**
 * Why a data file path cannot be used, or `undefined`: it must be a relative path inside the
 * project (uploaded from there; `..` or an absolute path would read whatever the machine
 * running `pulumi up` holds), without control characters, ending in `.jsonl`. A symbolic link
 * out of the project is refused by {@link validateDataFiles}, which sees the file system.
 */
export function dataPathProblem(file: string): string | undefined {
  // A newline or other control character would break the plan, the logs and the data asset's
  // description; rename the file (other characters are fine: the blob name is made URL-safe,
  // infra/naming.ts blobFileName).
  if (/[\u0000-\u001f\u007f]/.test(file)) return "must not contain a newline or other control character (rename the file)";
  if (path.isAbsolute(file) || /^[a-zA-Z]:[\\/]/.test(file)) return "must be a path relative to the project folder, not an absolute path";
  const normal = path.posix.normalize(file.replace(/\\/g, "/"));
  if (normal === ".." || normal.startsWith("../")) return "must stay inside the project folder (no ..)";
  if (!/\.jsonl$/i.test(normal)) return "must name a .jsonl file (chat JSONL, one {\"messages\": [...]} per line)";
  return undefined;
}

/** Thrown when the stack config is invalid; `issues` lists every problem, one line each. */
export class ConfigError extends Error {
  constructor(public readonly issues: string[]) {
    super(
      issues.length === 1
        ? `Invalid stack configuration: ${issues[0]}`
        : `Invalid stack configuration (${issues.length} problems):\n` + issues.map((i) => `  - ${i}`).join("\n"),
    );
    this.name = "ConfigError";
  }
}

/** Raw config as Pulumi hands it over: key (without namespace) → string (objects as JSON). */
export type RawConfig = Record<string, string | undefined>;

/** Keys of the project namespace this program understands. */
export const CONFIG_KEYS = Object.keys(configSchema.shape).filter((k) => k !== "location");

function show(value: unknown): string {
  const s = JSON.stringify(value);
  if (s === undefined) return String(value);
  return s.length > 80 ? s.slice(0, 77) + "..." : s;
}

function keyName(path: PropertyKey[]): string {
  if (path.length === 0) return `${PROJECT}:<root>`;
  const [head, ...rest] = path.map(String);
  const ns = head === "location" ? "azure-native:location" : `${PROJECT}:${head}`;
  return ns + rest.map((p) => (/^\d+$/.test(p) ? `[${p}]` : `.${p}`)).join("");
}

/** Result of parsing: the validated config and warnings for the plan and `pulumi preview`. */
export interface ParsedConfig {
  config: StackConfig;
  warnings: string[];
  /** Which values are secrets (infra/secrets.ts); components wrap them with `pulumi.secret`. */
  secrets: SecretMarks;
}

/** Where the config came from, so messages can point at it (lib/stack-config.ts). */
export interface ConfigSource {
  /** `file:line` of a fully qualified key and a path inside its value, if a file writes it. */
  locate?: (key: string, inner: readonly (string | number)[]) => string | undefined;
  /** The value a `secure:` config value reads as offline (it cannot be checked). */
  secretPlaceholder?: string;
  /** Pulumi's secret keys without namespace (infra/secrets.ts): their values stay secret and out of messages. */
  secretKeys?: string[];
}

type ZodDef = { type: string; innerType?: z.ZodType; in?: z.ZodType; options?: z.ZodType[]; shape?: Record<string, z.ZodType>; element?: z.ZodType; valueType?: z.ZodType };
const defOf = (s: z.ZodType): ZodDef => (s as unknown as { _zod: { def: ZodDef } })._zod.def;

/** The object schemas a schema stands for, through defaults, optionals, pipes and unions. */
function objectSchemas(s: z.ZodType): z.ZodType[] {
  const def = defOf(s);
  switch (def.type) {
    case "default":
    case "prefault":
    case "optional":
    case "nullable":
    case "readonly":
    case "catch":
    case "nonoptional":
      return objectSchemas(def.innerType!);
    case "pipe":
      return objectSchemas(def.in!);
    case "union":
      return def.options!.flatMap(objectSchemas);
    default:
      return [s];
  }
}

/**
 * The keys the schema allows at a path of the config (for "did you mean" on an unknown key);
 * empty where the path holds no object with fixed keys.
 */
export function knownKeysAt(path: readonly PropertyKey[]): string[] {
  let current = objectSchemas(configSchema);
  for (const step of path) {
    current = current.flatMap((s) => {
      const def = defOf(s);
      if (def.type === "object") return def.shape![String(step)] ? objectSchemas(def.shape![String(step)]) : [];
      if (def.type === "array") return objectSchemas(def.element!);
      if (def.type === "record") return objectSchemas(def.valueType!);
      return [];
    });
  }
  return [...new Set(current.flatMap((s) => (defOf(s).type === "object" ? Object.keys(defOf(s).shape!) : [])))];
}

/** ` (did you mean X?)` for a key close to one of `known` ({@link closestName}), else `""`. */
export function keySuggestion(key: string, known: readonly string[]): string {
  const hit = closestName(key, known);
  return hit ? ` (did you mean ${hit}?)` : "";
}

/**
 * Parse and validate raw stack config (strings as Pulumi delivers them; objects as JSON).
 * `raw` holds project keys without namespace plus `location` (from `azure-native:location`).
 * Gathers every problem and throws one {@link ConfigError} naming each key (with `file:line`
 * when `source.locate` knows it), the value given and what is allowed (never the value of a key
 * in `source.secretKeys`, Pulumi's secret keys without namespace; a secret key that cannot stay
 * secret is a problem too); an unknown key gets "did you mean" and the keys allowed there.
 * Returns the typed config, warnings and which values are secrets.
 */
export function parseConfig(raw: RawConfig, source: ConfigSource = {}): ParsedConfig {
  const secretKeys = source.secretKeys ?? [];
  const secret = secretMarks(secretKeys);
  const problems: string[] = [
    ...secret.problems.map((p) => `${keyName([p.key])}: ${p.message}`),
    ...((raw as { [NAMESPACE_PROBLEMS]?: { key: string; message: string }[] })[NAMESPACE_PROBLEMS] ?? []).map((p) => {
      const where = source.locate?.(p.key, []);
      return `${where ? `${where}: ` : ""}${p.key}: ${p.message}`;
    }),
  ];
  const input: Record<string, unknown> = {};
  const at = (path: readonly PropertyKey[]) => {
    if (!source.locate || path.length === 0) return "";
    const [head, ...rest] = path.map((p) => (typeof p === "number" ? p : String(p)));
    const where = source.locate(head === "location" ? "azure-native:location" : `${PROJECT}:${head}`, rest);
    return where ? `${where}: ` : "";
  };
  for (const [key, value] of Object.entries(raw)) {
    if (value === undefined) continue;
    if (key !== "location" && !CONFIG_KEYS.includes(key)) {
      problems.push(`${at([key])}${PROJECT}:${key}: unknown key${keySuggestion(key, CONFIG_KEYS)}; known keys: ${CONFIG_KEYS.join(", ")}`);
      continue;
    }
    const trimmed = value.trim();
    if (trimmed.startsWith("{") || trimmed.startsWith("[")) {
      try {
        input[key] = JSON.parse(trimmed);
      } catch (e) {
        problems.push(`${at([key])}${keyName([key])}: not valid JSON (${(e as Error).message})`);
        continue;
      }
      const forbidden = forbiddenKeyPaths(input[key], [key]);
      for (const p of forbidden) problems.push(`${at(p)}${keyName(p)}: the key "${String(p[p.length - 1])}" is not allowed (it would change how objects behave, not set a value)`);
      if (forbidden.length) delete input[key];
    } else {
      input[key] = value;
    }
  }
  // Structured keys given as plain strings are type errors zod reports below.
  const result = configSchema.safeParse(input, { reportInput: true });
  if (!result.success) {
    for (const issue of result.error.issues) {
      if (issue.code === "unrecognized_keys") {
        const known = knownKeysAt(issue.path);
        for (const k of issue.keys) {
          problems.push(`${at([...issue.path, k])}${keyName([...issue.path, k])}: unknown key${keySuggestion(k, known)}; allowed here: ${known.join(", ")}`);
        }
        continue;
      }
      const placeholder = source.secretPlaceholder !== undefined && "input" in issue && issue.input === source.secretPlaceholder;
      const hidden = secretKeys.includes(String(issue.path[0]));
      // A secret key's value appears nowhere: not in "(got ...)" nor in a message that quotes it.
      const message = hidden ? issue.message.replace(/, got .*$/s, "") : issue.message;
      const given = placeholder
        ? " (a secure: value: the offline plan cannot decrypt it to check it)"
        : hidden
          ? " (got [secret])"
          : "input" in issue && issue.input !== undefined && !/\bgot\b/.test(issue.message) ? ` (got ${show(issue.input)})` : "";
      problems.push(`${at(issue.path)}${keyName(issue.path)}: ${message}${given}`);
    }
  }
  if (result.success) {
    for (const i of plainSecretIssues(result.data, secretKeys, source.secretPlaceholder)) problems.push(`${at(i.path)}${keyName(i.path)}: ${i.message}`);
  }
  if (problems.length > 0 || !result.success) throw new ConfigError(problems);
  return { config: result.data, warnings: configWarnings(result.data), secrets: secretKeys.length ? secret.marks : NO_SECRETS };
}

/** Largest JSONL file the stack validates and uploads (bytes). */
export const MAX_DATA_FILE_BYTES = 2 ** 30;

/** Keys that would reach an object's prototype if copied: refused anywhere in the config. */
const FORBIDDEN_KEYS = new Set(["__proto__", "constructor", "prototype"]);

function forbiddenKeyPaths(v: unknown, path: (string | number)[]): (string | number)[][] {
  if (Array.isArray(v)) return v.flatMap((x, i) => forbiddenKeyPaths(x, [...path, i]));
  if (v && typeof v === "object") {
    return Object.keys(v).flatMap((k) => (FORBIDDEN_KEYS.has(k) ? [[...path, k]] : forbiddenKeyPaths((v as Record<string, unknown>)[k], [...path, k])));
  }
  return [];
}

/** The GPU memory check of the script-mode fine-tune for the config's method and precision, with its config path. */
function trainingMemoryCheck(c: StackConfig): { certain: boolean; message: string; path: string[]; input: string } | undefined {
  if (c.training.mode !== "script") return undefined;
  const issue = trainingMemoryIssue(c.trainingCluster.vmSize, c.training.method, c.training.precision,
    c.hyperparameters.perDeviceBatchSize, c.hyperparameters.maxSeqLength, c.training.loraRank);
  if (!issue) return undefined;
  const key = c.training.method === "lora" ? "method" : "precision";
  return { ...issue, path: ["training", key], input: c.training[key] };
}

/** Config paths of every VM size: training cluster, prep cluster (ultrachat data), each deployment. */
function sizeKeys(c: StackConfig): [(string | number)[], string][] {
  return [
    [["trainingCluster", "vmSize"], c.trainingCluster.vmSize],
    ...(c.data.source === "ultrachat" ? [[["data", "prepCluster", "vmSize"], c.data.prepCluster.vmSize] as [string[], string]] : []),
    ...c.serving.deployments.map((d, i): [(string | number)[], string] => [["serving", "deployments", i, "instanceType"], d.instanceType]),
  ];
}

/**
 * Warnings that do not block: retired VM sizes with their replacements (the preflight refuses
 * a deployment on them), sizes missing from the recorded list, and pinned model versions the
 * preflight will look for.
 */
export function configWarnings(c: StackConfig): string[] {
  const warnings: string[] = [...distributionWarnings(c.training, c.trainingCluster.vmSize), ...managedWarnings(c)];
  const memory = trainingMemoryCheck(c);
  if (memory && !memory.certain) warnings.push(`${keyName(memory.path)}: likely out of GPU memory: ${memory.message}`);
  for (const [path, size] of sizeKeys(c)) {
    const key = keyName(path);
    if (RETIRED_SIZES[size]) {
      warnings.push(
        `${key}: ${size} was retired by Azure on ${RETIRED_SIZES[size]}; new deployments on it fail, so the preflight ` +
          `(the first step of \`pulumi up\`) stops before anything is created. Set it to one of: ${REPLACEMENT_SIZES.join(", ")}.`,
      );
    }
    const unknown = vmSizeWarning(size);
    if (unknown) warnings.push(`${key}: ${unknown}`);
  }
  c.serving.deployments.forEach((d, i) => {
    if (d.model !== "trained") {
      warnings.push(`${keyName(["serving", "deployments", i, "model"])}: ${d.model.name} version ${d.model.version} must exist in this stack's workspace; the preflight checks it before anything is created.`);
    }
  });
  warnings.push(...securityWarnings(c.security));
  return warnings;
}

/** Where {@link rawProjectConfig} leaves the problems with namespaces for {@link parseConfig}. */
const NAMESPACE_PROBLEMS = Symbol("namespaceProblems");

/** Config keys of the azure-native provider (its SDK's `config` module, generated from the provider schema). */
function providerKeys(): string[] {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return Object.keys(require("@pulumi/azure-native/config/vars"));
  } catch {
    return ["location", "subscriptionId", "tenantId", "clientId", "environment", "useOidc", "useMsi"];
  }
}

/**
 * Raw config as {@link parseConfig} takes it, from fully qualified keys
 * (`phi3-finetune:<key>`, `azure-native:location`): project keys without their namespace,
 * plus `location`. Keys Pulumi would hand to no one are problems (reported by parseConfig
 * with the others): an unknown namespace (`phi3-finetun:epochs`, with "did you mean"), an
 * unknown azure-native key, and a project key that shadows a provider key
 * (`phi3-finetune:location` beside `azure-native:location` would be silently ignored).
 */
export function rawProjectConfig(qualified: Record<string, string>): RawConfig {
  const raw: RawConfig = {};
  const problems: { key: string; message: string }[] = [];
  const prefix = `${PROJECT}:`;
  const provider = providerKeys();
  for (const [key, value] of Object.entries(qualified)) {
    const colon = key.indexOf(":");
    const ns = colon < 0 ? "" : key.slice(0, colon);
    const name = key.slice(colon + 1);
    if (FORBIDDEN_KEYS.has(name)) {
      problems.push({ key, message: `the key "${name}" is not allowed (it would change how objects behave, not set a value)` });
      continue;
    }
    if (key.startsWith(prefix)) {
      if (provider.includes(name)) {
        problems.push({ key, message: `shadows the provider key azure-native:${name}, which is the one this program reads; move the value there` });
        continue;
      }
      raw[name] = value;
    } else if (ns === "azure-native") {
      if (!provider.includes(name)) problems.push({ key, message: `not a setting of the azure-native provider${keySuggestion(name, provider)}; its settings: ${provider.join(", ")}` });
    } else if (ns !== "pulumi") {
      problems.push({ key, message: `unknown namespace '${ns}'${keySuggestion(ns, [PROJECT, "azure-native", "pulumi"])}; this project reads ${PROJECT}:<key> and azure-native:<setting> keys` });
    }
  }
  raw.location = qualified["azure-native:location"];
  Object.defineProperty(raw, NAMESPACE_PROBLEMS, { value: problems, enumerable: false });
  return raw;
}

/**
 * Why the stack's Azure names cannot be made from this config and stack name, or `undefined`
 * (infra/naming.ts checks each name against Azure's rule after the prefix and suffix are added).
 */
export function nameProblem(c: StackConfig, stack: string): string | undefined {
  try {
    azureNames({ prefix: c.namePrefix, stack, subscriptionId: "00000000-0000-0000-0000-000000000000", resourceGroupName: c.resourceGroupName, generation: c.nameGeneration });
    return undefined;
  } catch (e) {
    return `${PROJECT}:namePrefix / stack '${stack}': ${(e as Error).message}`;
  }
}

/**
 * Read this stack's raw config from the Pulumi runtime (the only place the program touches
 * Pulumi config) and parse it with {@link parseConfig}, keeping Pulumi's secret marking (which
 * `allConfig()` drops: the secret keys are asked for separately), then validate the data files
 * it names. Throws {@link ConfigError}.
 */
export function loadConfig(): ParsedConfig {
  const raw = rawProjectConfig(pulumi.runtime.allConfig());
  const parsed = parseConfig(raw, { secretKeys: runtimeSecretKeys(PROJECT, Object.keys(raw).filter((k) => k !== "location")) });
  const data = validateDataFiles(parsed.config);
  const names = nameProblem(parsed.config, pulumi.getStack());
  const problems = [...data.problems, ...(names ? [names] : [])];
  if (problems.length) throw new ConfigError(problems);
  return { ...parsed, warnings: [...parsed.warnings, ...data.warnings] };
}

/** azure-native provider settings (stack config) → the variable the provider and lib/credential.ts read. */
export const PROVIDER_CREDENTIAL_ENV: Record<string, string> = {
  clientId: "ARM_CLIENT_ID",
  tenantId: "ARM_TENANT_ID",
  subscriptionId: "ARM_SUBSCRIPTION_ID",
  environment: "ARM_ENVIRONMENT",
  useOidc: "ARM_USE_OIDC",
  useMsi: "ARM_USE_MSI",
  useDefaultAzureCredential: "ARM_USE_DEFAULT_AZURE_CREDENTIAL",
  clientSecret: "ARM_CLIENT_SECRET",
  clientCertificatePath: "ARM_CLIENT_CERTIFICATE_PATH",
  clientCertificatePassword: "ARM_CLIENT_CERTIFICATE_PASSWORD",
  oidcToken: "ARM_OIDC_TOKEN",
  oidcTokenFilePath: "ARM_OIDC_TOKEN_FILE_PATH",
};

/** Provider settings that are secrets whatever way they were set: passed on as Pulumi secrets only. */
export const SECRET_PROVIDER_SETTINGS = ["clientSecret", "clientCertificatePassword", "oidcToken"];

/**
 * What the programs `pulumi up` runs need to authenticate as the azure-native provider does,
 * when its settings are in the stack config (`pulumi config set azure-native:clientId ...`)
 * rather than in the environment (`ARM_*` variables reach the programs anyway: a Command's
 * environment is merged over the process's). Each set key becomes its `ARM_*` variable; the
 * secret ones ({@link SECRET_PROVIDER_SETTINGS}) are Pulumi secrets, so the state holds them
 * encrypted. Empty when nothing is set.
 */
export function programCredentialEnv(): Record<string, pulumi.Input<string>> {
  const provider = new pulumi.Config("azure-native");
  const out: Record<string, pulumi.Input<string>> = {};
  for (const [key, variable] of Object.entries(PROVIDER_CREDENTIAL_ENV)) {
    const value = SECRET_PROVIDER_SETTINGS.includes(key) ? provider.getSecret(key) : provider.get(key);
    if (value !== undefined && value !== "") out[variable] = value;
  }
  return out;
}

/**
 * Validate the user's chat JSONL files (data.source `jsonl`) line by line with
 * `infra/jsonl.ts`, and check that each split can fill one packed sequence of
 * `hyperparameters.maxSeqLength` tokens ({@link packingCheck}). Returns every problem as
 * `file:line: message` or `key: message`, and warnings for splits that are likely (not
 * certainly) too short; both empty when the data comes from ultrachat_200k. Paths are
 * relative to `root` (the project folder).
 */
export function validateDataFiles(c: StackConfig, root = "."): { problems: string[]; warnings: string[] } {
  const problems: string[] = [];
  const warnings: string[] = [];
  if (c.data.source !== "jsonl") return { problems, warnings };
  for (const [key, file] of [["trainFile", c.data.trainFile], ["testFile", c.data.testFile]] as const) {
    const full = path.resolve(root, file);
    try {
      // The upload reads through symbolic links: the real file must be inside the project too.
      const real = fs.realpathSync(full);
      const realRoot = fs.realpathSync(root);
      if (real !== realRoot && !real.startsWith(realRoot + path.sep)) {
        problems.push(`${keyName(["data", key])}: ${file} is a link to ${real}, outside the project folder (it would be uploaded); copy the file into the project`);
        continue;
      }
      // Only a regular file is read (a FIFO or a device such as /dev/stdin would block forever).
      const stat = fs.statSync(full);
      if (!stat.isFile()) {
        problems.push(`${keyName(["data", key])}: ${file} is not a regular file`);
        continue;
      }
      if (stat.size > MAX_DATA_FILE_BYTES) {
        problems.push(`${keyName(["data", key])}: ${file} is ${(stat.size / 2 ** 30).toFixed(1)} GiB; files over ${MAX_DATA_FILE_BYTES / 2 ** 30} GiB are not checked or uploaded by this stack (use a datastore)`);
        continue;
      }
      const result = validateChatJsonlFile(full);
      if (result.errors.length) {
        problems.push(...formatJsonlIssues(result.errors.map((e) => ({ ...e, file }))).split("\n"));
        continue;
      }
      const packing = packingCheck(`${keyName(["data", key])}: ${file}`, result.tokens, c.hyperparameters.maxSeqLength);
      if (packing.error) problems.push(packing.error);
      if (packing.warning) warnings.push(packing.warning);
    } catch (e) {
      problems.push(`${keyName(["data", key])}: cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
  }
  return { problems, warnings };
}

/** A config problem found after the schema: path, value given, message. */
export interface ConfigIssue {
  path: (string | number)[];
  input: unknown;
  message: string;
}

/** Tags the stack adds to every resource itself (index.ts): a user tag may not reuse their names. */
export const STACK_TAG_NAMES = ["project", "stack"] as const;

/**
 * Azure's tag limits (learn.microsoft.com/azure/azure-resource-manager/management/tag-resources,
 * "Limitations"): at most 50 tags per resource; tag names of at most 512 characters, 128 on a
 * storage account (which gets these tags too, so 128 is the limit here), without `< > % & \ ? /`;
 * values of at most 256 characters (in the schema). Tag names are case-insensitive, so two names
 * differing in case are one tag. The stack adds {@link STACK_TAG_NAMES}, which count towards the 50
 * and may not be set here (they would be overwritten silently).
 */
export const TAG_LIMITS = { maxTags: 50, maxNameLength: 128, maxValueLength: 256, forbidden: /[<>%&\\?/]/ } as const;

/** Every tag problem with its path (`["tags", name]`). */
export function tagIssues(tags: Record<string, string>): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  const names = Object.keys(tags);
  const seen = new Map<string, string>();
  for (const name of names) {
    const at = (message: string) => issues.push({ path: ["tags", name], input: name, message });
    if (name.trim() === "") at("a tag name cannot be empty or blank");
    else if (name.length > TAG_LIMITS.maxNameLength) at(`tag name is ${name.length} characters; Azure allows at most ${TAG_LIMITS.maxNameLength} on a storage account, which gets the stack's tags`);
    else if (TAG_LIMITS.forbidden.test(name)) at("a tag name cannot contain < > % & \\ ? / (Azure's tag rules)");
    else if ((STACK_TAG_NAMES as readonly string[]).includes(name.toLowerCase())) at(`'${name}' is a tag the stack sets itself (${STACK_TAG_NAMES.join(", ")}); choose another name`);
    const lower = name.toLowerCase();
    if (seen.has(lower)) at(`is the same tag as '${seen.get(lower)}' (Azure compares tag names without case)`);
    else seen.set(lower, name);
  }
  const total = names.length + STACK_TAG_NAMES.length;
  if (total > TAG_LIMITS.maxTags) {
    issues.push({ path: ["tags"], input: `${names.length} tags`, message: `has ${names.length} tags; with the stack's own ${STACK_TAG_NAMES.length} (${STACK_TAG_NAMES.join(", ")}) that is ${total}, and Azure allows at most ${TAG_LIMITS.maxTags} per resource: keep at most ${TAG_LIMITS.maxTags - STACK_TAG_NAMES.length}` });
  }
  return issues;
}

/**
 * The stack declares the training cluster and (ultrachat data) the prep cluster as two
 * resources: one Azure compute name for both would make two resources fight over one cluster
 * (compute names are case-insensitive in a workspace).
 */
export function clusterIssues(c: StackConfig): ConfigIssue[] {
  if (c.data.source !== "ultrachat" || c.data.prepCluster.name.toLowerCase() !== c.trainingCluster.name.toLowerCase()) return [];
  return [{
    path: ["data", "prepCluster", "name"],
    input: c.data.prepCluster.name,
    message: `is also trainingCluster.name; the stack creates two clusters (${c.data.prepCluster.vmSize} for preparation, ${c.trainingCluster.vmSize} for training), so give them different names`,
  }];
}

/** Rows a `train_sft[:N]` split takes, or undefined for a percent (1% of any ultrachat split is thousands of rows). */
export function splitRows(split: string): number | undefined {
  const m = /\[:(\d+)\]$/.exec(split);
  return m ? Number(m[1]) : undefined;
}

/** prepare_data.py splits the rows into train and test, each at least one row: it needs 2 (its `split_rows` raises below that). */
export const MIN_SPLIT_ROWS = 2;

/** A row-count split too small for prepare_data.py (it fails after the clusters exist). */
export function splitIssues(c: StackConfig): ConfigIssue[] {
  if (c.data.source !== "ultrachat") return [];
  const rows = splitRows(c.data.split);
  if (rows === undefined || rows >= MIN_SPLIT_ROWS) return [];
  return [{ path: ["data", "split"], input: c.data.split, message: `takes ${rows} row; prepare_data.py needs at least ${MIN_SPLIT_ROWS} (one for train, one for test), e.g. ${c.data.split.replace(/\[:\d+\]$/, "[:10]")}` }];
}

/** Parameters of each base model (Hugging Face model cards: Phi-3-mini and Phi-3.5-mini are 3.8B). */
export const MODEL_PARAMETERS: Record<string, number> = {
  "microsoft/Phi-3-mini-4k-instruct": 3.82e9,
  "microsoft/Phi-3-mini-128k-instruct": 3.82e9,
  "microsoft/Phi-3.5-mini-instruct": 3.82e9,
};

const BYTES_PER_PARAMETER = { float32: 4, float16: 2, bfloat16: 2 } as const;

/**
 * Memory (GB, 1e9 bytes) a VM needs at least, from the parameter count (a lower bound: the
 * runtime, activations and the OS come on top, so a size below it cannot work at all):
 * - serving: the weights in `training.servedDtype`: 3.82e9 × 4 B = 15.3 GB in float32 (CPU
 *   serving), × 2 B = 7.6 GB in float16/bfloat16 (loaded through host memory before the GPU);
 * - full fine-tune on a CPU size (fine_tune.py trains in float32 there): weights 4 B + gradients
 *   4 B + AdamW's two moments 8 B = 16 B per parameter = 3.82e9 × 16 B = 61.1 GB;
 * - full fine-tune on a GPU size: the state lives in GPU memory, but every process loads the
 *   bfloat16 weights through host memory first: 7.6 GB × `training.processesPerInstance`.
 * Compared with the `memoryGB` infra/vm-sizes.ts records; sizes it does not record are skipped.
 */
export function requiredMemoryGB(baseModel: string, use: { serve: keyof typeof BYTES_PER_PARAMETER } | { train: "cpu" | "gpu"; processes: number }): number {
  const params = MODEL_PARAMETERS[baseModel] ?? 3.82e9;
  const gb = (bytes: number) => Math.round((params * bytes) / 1e8) / 10;
  if ("serve" in use) return gb(BYTES_PER_PARAMETER[use.serve]);
  return use.train === "cpu" ? gb(16) : gb(2) * use.processes;
}

/** VM sizes whose recorded memory cannot hold the model for what they do. */
export function memoryIssues(c: StackConfig): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  const t = recordedVmSize(c.trainingCluster.vmSize);
  if (t) {
    const gpu = isGpuSize(t.name);
    const need = requiredMemoryGB(c.baseModel, { train: gpu ? "gpu" : "cpu", processes: c.training.processesPerInstance });
    if (t.memoryGB < need) {
      issues.push({ path: ["trainingCluster", "vmSize"], input: c.trainingCluster.vmSize, message: gpu
        ? `has ${t.memoryGB} GB of memory; ${c.training.processesPerInstance} process(es) each loading ${c.baseModel} in bfloat16 need at least ${need} GB`
        : `has ${t.memoryGB} GB of memory; a full fine-tune of ${c.baseModel} on a CPU (float32 weights, gradients and AdamW state: 16 bytes × ${MODEL_PARAMETERS[c.baseModel] ?? 3.82e9} parameters) needs at least ${need} GB: use e.g. Standard_E16s_v3 (128 GB)` });
    }
  }
  c.serving.deployments.forEach((d, i) => {
    if (d.model !== "trained") return;
    const s = recordedVmSize(d.instanceType);
    if (!s) return;
    const need = requiredMemoryGB(c.baseModel, { serve: c.training.servedDtype });
    if (s.memoryGB < need) {
      issues.push({ path: ["serving", "deployments", i, "instanceType"], input: d.instanceType, message: `has ${s.memoryGB} GB of memory; the ${c.training.servedDtype} weights of ${c.baseModel} alone are ${need} GB: use e.g. Standard_E4s_v3 (32 GB) for CPU serving` });
    }
  });
  return issues;
}

/** Registries the `private` profile's managed network reaches without an extra rule (the MicrosoftContainerRegistry service tag Azure adds). */
export const PRIVATE_REGISTRIES = ["mcr.microsoft.com"] as const;

/** Whether `host` is allowed by one of the FQDN rules (`*.example.com` covers subdomains). */
function fqdnAllows(rules: readonly string[], host: string): boolean {
  return rules.some((r) => (r.startsWith("*.") ? host.endsWith(r.slice(1)) : r === host));
}

/**
 * In the `private` profile the managed network (AllowOnlyApprovedOutbound) pulls images only
 * from Microsoft's registry or a host in `security.extraOutboundFqdns`
 * (learn.microsoft.com/azure/machine-learning/how-to-managed-network, required rules): an image
 * from docker.io or ghcr.io would fail to pull after the network and clusters exist.
 */
export function privateImageIssues(c: StackConfig): ConfigIssue[] {
  if (c.security.profile !== "private") return [];
  const images: [(string | number)[], string][] = [[["training", "image"], c.training.image]];
  if (c.data.source === "ultrachat") images.push([["data", "prepImage"], c.data.prepImage]);
  return images.flatMap(([path, image]) => {
    const host = imageRegistry(image);
    if ((PRIVATE_REGISTRIES as readonly string[]).includes(host) || fqdnAllows(c.security.extraOutboundFqdns, host)) return [];
    return [{ path, input: image, message: `comes from ${host}, which the private profile's managed network does not reach; use an image from ${PRIVATE_REGISTRIES.join(", ")} or add ${host} to security.extraOutboundFqdns` }];
  });
}

/**
 * Whether an environment variable name names a credential: one of its words (split at `_`, `-`,
 * `.` and camelCase) is or ends in TOKEN, SECRET(S), PASSWORD, PASSWD, PWD, CREDENTIAL(S), SAS or
 * KEY(S) (HF_TOKEN, hfToken, OPENAI_API_KEY, MyAccessKey, DB_PASSWORD), or the name has a
 * connection string (CONNECTION_STRING, CONNSTR). Counts such as MAX_TOKENS are not credentials.
 */
export function looksSecret(name: string): boolean {
  const words = name.replace(/([a-z0-9])([A-Z])/g, "$1_$2").toUpperCase().split(/[^A-Z0-9]+/).filter(Boolean);
  if (/CONNECTION_?STRING|CONNSTR/.test(name.toUpperCase())) return true;
  return words.some((w) => /(TOKEN|SECRETS?|PASSWORD|KEYS?)$/.test(w) && !/^(MONKEY|TURKEY|HOCKEY|JOCKEY)$/.test(w) || /^(PASSWD|PWD|CREDENTIALS?|SAS)$/.test(w));
}

/**
 * `serving.deployments[].environmentVariables` whose name looks like a credential
 * ({@link looksSecret}) must be `secure:` values: offline (`placeholder` given) the value must
 * be the placeholder a `secure:` value reads as; in the Pulumi runtime the `serving` key must be
 * secret (Pulumi marks secrets per top-level key). Otherwise the value would sit in plain text in
 * the stack file, the state and the plan.
 */
export function plainSecretIssues(c: StackConfig, secretKeys: readonly string[], placeholder?: string): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  c.serving.deployments.forEach((d, i) => {
    for (const [name, value] of Object.entries(d.environmentVariables)) {
      if (!looksSecret(name)) continue;
      const secure = placeholder !== undefined ? value === placeholder : secretKeys.includes("serving");
      if (secure) continue;
      issues.push({
        path: ["serving", "deployments", i, "environmentVariables", name],
        input: undefined,
        message: `looks like a credential but is plain text (in the stack file, the state and the plan); store it as a secret: ` +
          `pulumi config set --secret --path '${PROJECT}:serving.deployments[${i}].environmentVariables.${name}' <value>`,
      });
    }
  });
  return issues;
}
