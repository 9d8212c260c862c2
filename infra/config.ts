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
import { regionProblem } from "./regions";
import { NO_SECRETS, runtimeSecretKeys, SecretMarks, secretMarks } from "./secrets";
import { SECURITY_DEFAULTS, securitySchema, securityWarnings } from "./security";
import { HF_REPO_ID, SPLIT_EXPRESSION } from "./shell";
import { distributionIssues, distributionKeys, distributionWarnings } from "./distribution";
import { managedIssues, managedWarnings, modeKeys } from "./managed-finetune";
import { closestName, isGpuSize, RETIRED_SIZES, REPLACEMENT_SIZES, vmSizeProblem, vmSizeWarning } from "./vm-sizes";
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

const vmSize = z
  .string()
  .regex(/^Standard_[A-Za-z0-9_]+$/, { error: "must be an Azure VM size such as Standard_NC24ads_A100_v4" });

/** Azure ML compute names: 2-16 characters, letters, digits and hyphens, starting with a letter. */
const computeName = z
  .string()
  .regex(/^[a-zA-Z][a-zA-Z0-9-]{1,15}$/, {
    error: "must be 2-16 characters: letters, digits and '-', starting with a letter",
  });

/** Online deployment names: 3-32 characters in Azure; we keep 23 for the model-version suffix. */
const deploymentName = z
  .string()
  .regex(/^[a-z][a-z0-9-]{1,21}[a-z0-9]$/, {
    error: "must be 3-23 characters: lowercase letters, digits and '-', starting with a letter",
  });

/**
 * `pulumi config set --path 'phi3-finetune:hyperparameters.learningRate' 1e-5` stores the value
 * as the string "1e-5" (and `... enabled false` as "false"): such strings are read as the
 * number or boolean they spell, exactly as Pulumi stores them. Anything else stays as given
 * and fails the type check with a message.
 */
const NUMBER_TEXT = /^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$/;
const fromPulumiNumber = (v: unknown) => (typeof v === "string" && NUMBER_TEXT.test(v.trim()) ? Number(v) : v);
const fromPulumiBoolean = (v: unknown) => (v === "true" ? true : v === "false" ? false : v);

/** A number, also as Pulumi's `--path` string; `refine` adds the bounds. */
const num = (refine: (n: z.ZodNumber) => z.ZodNumber = (n) => n, typeError = "must be a number") =>
  z.preprocess(fromPulumiNumber, refine(z.number({ error: typeError })));

/** true or false, also as Pulumi's `--path` strings. */
const bool = () => z.preprocess(fromPulumiBoolean, z.boolean({ error: "must be true or false" }));

const int = (min: number, max: number, typeError?: string) =>
  num(
    (n) =>
      n
        .int({ error: "must be an integer" })
        .min(min, { error: `must be >= ${min}` })
        .max(max, { error: `must be <= ${max}` }),
    typeError,
  );

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
      .regex(/^[a-z0-9.-]+(\/[a-z0-9._-]+)+(:[A-Za-z0-9._-]+|@sha256:[a-f0-9]{64})$/, {
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
  /** Maximum queue wait in milliseconds (seed: 120000). */
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
  image: z.string().regex(/^[a-z0-9.-]+(\/[a-z0-9._-]+)+(:[A-Za-z0-9._-]+|@sha256:[a-f0-9]{64})$/, {
    error: "must be a container image reference with a tag, e.g. mcr.microsoft.com/azureml/curated/acft-hf-nlp-gpu:59",
  }).default("mcr.microsoft.com/azureml/curated/acft-hf-nlp-gpu:59"),
  /** Experiment the jobs are grouped under in Studio. */
  experimentName: z.string().regex(/^[a-zA-Z0-9][a-zA-Z0-9_-]{0,254}$/).default("phi3-finetune"),
  /** Registered model name. */
  modelName: z.string().regex(/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,254}$/).default("phi3-finetuned"),
  /** dtype of the served weights: float16 works on every GPU (V100 and T4 have no bf16); float32 for CPU serving. */
  servedDtype: z.enum(["float16", "bfloat16", "float32"]).default("float16"),
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
    /** Tags on every taggable resource. */
    tags: z.record(z.string(), z.string().max(256)).default({}),
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
    // fine_tune.py trains in bf16 on a GPU and refuses GPUs without native bf16 (compute
    // capability < 8.0) in its first second; refuse them here, before anything is created.
    if (isGpuSize(c.trainingCluster.vmSize) && lacksBf16(c.trainingCluster.vmSize)) {
      problem(["trainingCluster", "vmSize"], c.trainingCluster.vmSize,
        "has no native bf16 (V100/T4 GPUs), which fine_tune.py trains in; use an A100/H100/A10 size such as Standard_NC24ads_A100_v4, or a CPU size for the CPU profile");
    }
    for (const i of distributionIssues(c.training, c.trainingCluster)) problem(i.path, i.input, i.message);
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
 * running `pulumi up` holds), ending in `.jsonl`.
 */
export function dataPathProblem(file: string): string | undefined {
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
