/**
 * Does the fine-tune fit in one GPU's memory? The plan's memory check for each
 * `training.method` × `training.precision` (issue 20 item 7). Pure arithmetic, no imports from
 * the program: every assumption is a named constant below, an order of magnitude, not a
 * promise (the allocator, sequence packing and kernels move the real peak by a few GB).
 *
 * Per GPU (fine_tune.py under DDP: every GPU holds a full replica), for P parameters:
 * - `full` + `bf16-mixed`: float32 weights (4 B) + float32 gradients (4 B) + AdamW's two
 *   float32 moments (8 B) = 16 B/parameter (3.8 B parameters: ~61 GB);
 * - `full` + `bf16`: everything in bfloat16 (torch's AdamW keeps its moments in the
 *   parameters' dtype) = 8 B/parameter (~30 GB), but at lr 5e-6 most updates round away;
 * - `lora`: the frozen base in bfloat16 (2 B/parameter, ~7.6 GB) + the adapters (PEFT keeps
 *   them in float32) with their gradients and moments, 16 B per adapter parameter;
 * plus activations with gradient checkpointing ({@link activationBytes}) and a flat
 * {@link CUDA_OVERHEAD_GB} for the CUDA context and allocator fragmentation.
 */

/** Phi-3-mini's shape (config.json of microsoft/Phi-3-mini-4k-instruct). */
export const PHI3_MINI_SHAPE = { parameters: 3.8e9, layers: 32, hidden: 3072, intermediate: 8192, heads: 32, vocab: 32064 } as const;

/** CUDA context, cuBLAS workspaces and allocator fragmentation, GB (assumption). */
export const CUDA_OVERHEAD_GB = 3;

/** Bytes per parameter of the trained weights, their gradients and AdamW's two moments. */
export const BYTES_PER_PARAMETER = { "full/bf16-mixed": 16, "full/bf16": 8, "lora/frozen-base": 2, "lora/adapter": 16 } as const;

/**
 * GPU memory in GB of one GPU of each recorded GPU VM size (Azure's series pages: NC A100 v4 and
 * ND A100 v4 "amsr" 80 GB A100; ND A100 v4 "asr" 40 GB; NC H100 v5 94 GB H100 NVL; ND H100 v5
 * 80 GB; NVads A10 v5 24 GB at full GPU; T4 and V100 16 GB).
 */
export const GPU_MEMORY_GB: Readonly<Record<string, number>> = {
  Standard_NC24ads_A100_v4: 80,
  Standard_NC48ads_A100_v4: 80,
  Standard_NC96ads_A100_v4: 80,
  Standard_ND96asr_v4: 40,
  Standard_ND96amsr_A100_v4: 80,
  Standard_NC40ads_H100_v5: 94,
  Standard_NC80adis_H100_v5: 94,
  Standard_ND96isr_H100_v5: 80,
  Standard_NV36ads_A10_v5: 24,
  Standard_NV72ads_A10_v5: 24,
  Standard_NC4as_T4_v3: 16,
  Standard_NC8as_T4_v3: 16,
  Standard_NC16as_T4_v3: 16,
  Standard_NC64as_T4_v3: 16,
  Standard_NC6s_v3: 16,
  Standard_NC12s_v3: 16,
  Standard_NC24s_v3: 16,
};

/** Training method and precision (the `training.method` / `training.precision` config keys). */
export type TrainingMethod = "full" | "lora";
export type TrainingPrecision = "bf16-mixed" | "bf16";

/** LoRA adapter parameters on every linear layer of Phi-3 (qkv, o, gate_up, down) at rank `r`. */
export function loraParameters(rank: number, s = PHI3_MINI_SHAPE): number {
  const { hidden: h, intermediate: i, layers } = s;
  const perLayer = rank * ((h + 3 * h) + (h + h) + (h + 2 * i) + (i + h));
  return perLayer * layers;
}

/**
 * Activation bytes per GPU with gradient checkpointing (non-reentrant, eager attention): the
 * checkpointed input of every layer (bf16), the float32 logits and their gradient, and one
 * layer's recomputation (its MLP and attention intermediates, the s × s attention scores and
 * their softmax). `batch` sequences of `seqLength` tokens.
 */
export function activationBytes(batch: number, seqLength: number, s = PHI3_MINI_SHAPE): number {
  const tokens = batch * seqLength;
  const perToken = s.layers * s.hidden * 2 + 2 * s.vocab * 4 + 16 * s.hidden * 2 + 2 * s.intermediate * 2;
  const attention = 2 * batch * s.heads * seqLength * seqLength * 2;
  return tokens * perToken + attention;
}

/** One memory estimate: the total and its parts, in GB (10^9 bytes). */
export interface MemoryEstimate {
  totalGB: number;
  weightsAndOptimizerGB: number;
  activationsGB: number;
  overheadGB: number;
  /** The arithmetic in words, e.g. `3.8e9 params × 16 B (fp32 weights, grads, AdamW) = 60.8 GB + ...`. */
  arithmetic: string;
}

const gb = (bytes: number) => Math.round(bytes / 1e8) / 10;

/** Estimates one GPU's peak memory for a method and precision (see the module comment). */
export function estimateTrainingMemory(
  method: TrainingMethod,
  precision: TrainingPrecision,
  batch: number,
  seqLength: number,
  loraRank = 16,
  s = PHI3_MINI_SHAPE,
): MemoryEstimate {
  let weights: number;
  let words: string;
  if (method === "lora") {
    const adapters = loraParameters(loraRank, s);
    weights = s.parameters * BYTES_PER_PARAMETER["lora/frozen-base"] + adapters * BYTES_PER_PARAMETER["lora/adapter"];
    words = `${s.parameters.toExponential(1)} frozen bf16 params × 2 B + ${(adapters / 1e6).toFixed(1)}M LoRA r=${loraRank} params × 16 B`;
  } else {
    const per = BYTES_PER_PARAMETER[`full/${precision}`];
    weights = s.parameters * per;
    words = `${s.parameters.toExponential(1)} params × ${per} B (${precision === "bf16-mixed" ? "fp32 weights, grads, AdamW moments" : "bf16 weights, grads, AdamW moments"})`;
  }
  const activations = activationBytes(batch, seqLength, s);
  const total = weights + activations + CUDA_OVERHEAD_GB * 1e9;
  return {
    totalGB: gb(total),
    weightsAndOptimizerGB: gb(weights),
    activationsGB: gb(activations),
    overheadGB: CUDA_OVERHEAD_GB,
    arithmetic: `${words} = ${gb(weights)} GB + activations (batch ${batch} × ${seqLength} tokens, gradient checkpointing) ${gb(activations)} GB + ${CUDA_OVERHEAD_GB} GB CUDA overhead = ~${gb(total)} GB`,
  };
}

/**
 * The memory check of the plan: undefined when the method and precision fit one GPU of
 * `vmSize` (or the size is a CPU size or not recorded), else `certain` (the weights, gradients
 * and optimizer states alone exceed the GPU: an out-of-memory error for sure; the plan refuses)
 * or not (the total with the activation estimate exceeds it: likely; the plan warns), with a
 * message giving the arithmetic and the combinations that do fit.
 */
export function trainingMemoryIssue(
  vmSize: string,
  method: TrainingMethod,
  precision: TrainingPrecision,
  batch: number,
  seqLength: number,
  loraRank = 16,
): { certain: boolean; message: string } | undefined {
  const capacity = GPU_MEMORY_GB[vmSize];
  if (capacity === undefined) return undefined;
  const chosen = estimateTrainingMemory(method, precision, batch, seqLength, loraRank);
  if (chosen.totalGB <= capacity) return undefined;
  const options = (["full/bf16-mixed", "full/bf16", "lora/bf16-mixed"] as const)
    .map((k) => k.split("/") as [TrainingMethod, TrainingPrecision])
    .filter(([m, p]) => estimateTrainingMemory(m, p, batch, seqLength, loraRank).totalGB <= capacity)
    .map(([m, p]) => (m === "lora" ? "training.method lora" : `training.precision ${p}`));
  const message =
    `training.method ${method} with training.precision ${precision} needs ${chosen.arithmetic} per GPU, ` +
    `more than the ${capacity} GB of one ${vmSize} GPU; ` +
    (options.length ? `${options.join(" or ")} fits, or lower hyperparameters.perDeviceBatchSize / maxSeqLength` : "lower hyperparameters.perDeviceBatchSize / maxSeqLength, or pick a larger GPU");
  return { certain: chosen.weightsAndOptimizerGB > capacity, message };
}
