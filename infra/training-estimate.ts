/**
 * How long (and so how much) one fine-tune run takes, for the plan diff's "starts a new
 * fine-tune job on Standard_NC24ads_A100_v4 (~N h, ~USD X)". An order of magnitude for a
 * reviewer, not a quote: every assumption is a named constant below.
 *
 * Model: fine_tune.py fully fine-tunes Phi-3-mini (3.8 B parameters) with gradient
 * checkpointing, so a training token costs about 8 × parameters FLOPs (6 for forward and
 * backward, 2 more for the recomputed forward). Tokens = rows × tokens per row × epochs,
 * where rows come from the ultrachat split (or the JSONL files' own token counts). The
 * GPU's dense bf16 peak (vendor data sheets) is used at {@link MODEL_FLOPS_UTILISATION}; a CPU
 * cluster gets infra/generation.ts's GFLOP/s per vCPU. A job on N nodes (`training.instanceCount`)
 * trains N times as fast and bills N nodes. Fixed overhead per job: node start,
 * image pull and model download ({@link JOB_OVERHEAD_HOURS}).
 */
import type { StackConfig } from "./config";
import { CPU_GFLOPS_PER_VCPU, PHI3_MINI_PARAMETERS } from "./generation";
import { recordedVmSize } from "./vm-sizes";

/** Rows of each ultrachat_200k split (HuggingFaceH4/ultrachat_200k dataset card). */
export const ULTRACHAT_ROWS: Record<string, number> = { train_sft: 207_865, test_sft: 23_110, train_gen: 256_032, test_gen: 28_304 };
/** Average tokens of one ultrachat_200k conversation in Phi-3's chat format (assumption). */
export const ULTRACHAT_TOKENS_PER_ROW = 1_400;
/** FLOPs per trained token per parameter with gradient checkpointing (6 + 2 recomputed). */
export const FLOPS_PER_TOKEN_PER_PARAMETER = 8;
/** Share of the GPU's peak a packed SFT run reaches (assumption; 30-40% is typical for this size). */
export const MODEL_FLOPS_UTILISATION = 0.35;
/** Node start, image pull (acft-hf-nlp-gpu is ~15 GB), model download and MLflow save, hours. */
export const JOB_OVERHEAD_HOURS = 0.5;
/**
 * The data preparation job (prepare_data.py on the prep cluster), hours: node start (~5 min),
 * building the conda-prep.yml environment on first use (~10 min) and downloading and writing
 * the split (minutes for ultrachat_200k). An assumption, not a measurement.
 */
export const PREP_JOB_HOURS = 0.3;
/** Dense bf16 peak TFLOP/s per GPU by the GPU named in the VM size (NVIDIA data sheets). */
export const GPU_BF16_TFLOPS: Record<string, number> = { A100: 312, H100: 989, A10: 125, T4: 65, V100: 125 };

/** The estimate of one run. */
export interface TrainingRunEstimate {
  /** Tokens trained (all epochs). */
  tokens: number;
  /** Hours on the cluster, overhead included, rounded to 0.1. */
  hours: number;
  /** What the rate assumes, e.g. `1 × A100 at 35% of 312 TFLOP/s`. */
  basis: string;
  /** Nodes the job runs on (config `training.instanceCount`): each bills for `hours`. */
  nodes: number;
}

/** The estimate of the data preparation job (data.source `ultrachat` only). */
export interface PrepRunEstimate {
  /** Hours on one node of the prep cluster. */
  hours: number;
  basis: string;
}

/**
 * Estimates the data preparation job of the stack's config: {@link PREP_JOB_HOURS} on one node.
 * @returns `undefined` when the data comes from the user's JSONL files (no prep job).
 */
export function estimatePrep(c: StackConfig): PrepRunEstimate | undefined {
  if (c.data.source !== "ultrachat") return undefined;
  return { hours: PREP_JOB_HOURS, basis: "fixed: node start, environment build, download of the split" };
}

function rowsOf(split: string): number | undefined {
  const m = /^(\w+)\[:(\d+)(%?)\]$/.exec(split);
  if (!m) return undefined;
  const total = ULTRACHAT_ROWS[m[1]];
  if (m[3] === "%") return total === undefined ? undefined : Math.floor((total * Number(m[2])) / 100);
  return Number(m[2]);
}

/**
 * Estimates one fine-tune run of the stack's config.
 *
 * @param c - validated stack config.
 * @param jsonlTrainTokens - token estimate of the training file (data.source `jsonl`), if known.
 * @returns the estimate, or `undefined` when the data size or the VM size is unknown.
 */
export function estimateFineTune(c: StackConfig, jsonlTrainTokens?: number): TrainingRunEstimate | undefined {
  let perEpoch: number | undefined;
  if (c.data.source === "ultrachat") {
    const rows = rowsOf(c.data.split);
    if (rows !== undefined) perEpoch = Math.round(rows * (1 - c.data.testSize)) * ULTRACHAT_TOKENS_PER_ROW;
  } else {
    perEpoch = jsonlTrainTokens;
  }
  if (perEpoch === undefined) return undefined;
  const tokens = perEpoch * c.hyperparameters.epochs;
  const nodes = Math.max(1, c.training.instanceCount);
  const across = nodes > 1 ? `${nodes} nodes × ` : "";
  const size = recordedVmSize(c.trainingCluster.vmSize);
  // The GPU by the size's name (Standard_NC24ads_A100_v4), else by its quota family: some names
  // carry no GPU (Standard_ND96asr_v4 is standardNDASv4_A100Family). A100 is tried before A10.
  const gpus = Object.keys(GPU_BF16_TFLOPS);
  const gpu =
    gpus.find((g) => new RegExp(`_${g}(_|$)`, "i").test(c.trainingCluster.vmSize)) ??
    (size ? gpus.find((g) => new RegExp(`${g}(?!\\d)`, "i").test(size.family)) : undefined);
  let flopsPerSecond: number;
  let basis: string;
  if (gpu && size && size.gpus > 0) {
    flopsPerSecond = nodes * size.gpus * GPU_BF16_TFLOPS[gpu] * 1e12 * MODEL_FLOPS_UTILISATION;
    basis = `${across}${size.gpus} × ${gpu} at ${Math.round(MODEL_FLOPS_UTILISATION * 100)}% of ${GPU_BF16_TFLOPS[gpu]} TFLOP/s`;
  } else if (size) {
    flopsPerSecond = nodes * size.vCPUs * CPU_GFLOPS_PER_VCPU * 1e9;
    basis = `${across}${size.vCPUs} vCPUs at ${CPU_GFLOPS_PER_VCPU} GFLOP/s each`;
  } else {
    return undefined;
  }
  const seconds = (tokens * FLOPS_PER_TOKEN_PER_PARAMETER * PHI3_MINI_PARAMETERS) / flopsPerSecond;
  return { tokens, hours: Math.round((seconds / 3600 + JOB_OVERHEAD_HOURS) * 10) / 10, basis, nodes };
}
