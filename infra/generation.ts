/**
 * Generation defaults that fit the serving hardware: how many tokens a chat client may ask for
 * and how long it waits, so that an answer arrives before the deployment's request timeout.
 *
 * The estimate (README "How fast does it answer?"): generating one token reads every weight
 * once, so decoding is memory-bandwidth bound. Phi-3-mini has 3.8e9 parameters; in float32 (the
 * CPU profile) that is 15.2 GB per token. A CPU VM is assumed to stream
 * {@link CPU_BANDWIDTH_GB_PER_VCPU} GB/s per vCPU (an assumption: Azure publishes no memory
 * bandwidth per size), so Standard_E4s_v3 (4 vCPUs) gets ~12 GB/s, about 0.8 token/s. Reading
 * the prompt first (prefill) is compute bound: ~2 FLOP per parameter and token, at
 * {@link CPU_GFLOPS_PER_VCPU} GFLOP/s per vCPU. GPU sizes generate tens of tokens per second,
 * so the seed's 256 new tokens fit easily.
 */
import type { StackConfig } from "./config";
import { isGpuSize } from "./config";

/** Parameters of Phi-3-mini / Phi-3.5-mini. */
export const PHI3_MINI_PARAMETERS = 3.8e9;
/** Assumed sustained memory bandwidth per vCPU of an Azure CPU VM, GB/s. */
export const CPU_BANDWIDTH_GB_PER_VCPU = 3;
/** Assumed sustained float32 matmul throughput per vCPU, GFLOP/s. */
export const CPU_GFLOPS_PER_VCPU = 15;
/** Prompt length the estimate budgets for, in tokens (a question with a few earlier turns). */
export const PROMPT_TOKENS = 200;
/** Share of the request timeout the generation may use (the rest is queueing and jitter). */
export const TIMEOUT_SHARE = 0.6;
/** Seconds a client waits beyond the deployment's request timeout (network, queue). */
export const CLIENT_TIMEOUT_MARGIN_SECONDS = 20;
/** New tokens on GPU sizes: the seed's value. */
export const GPU_MAX_NEW_TOKENS = 256;

/**
 * The request body the served model takes: `prompt-list` for the MLflow model fine_tune.py
 * saves (`{"input_data": [prompt], "params": {...}}`), `chat-list` for the model Microsoft's
 * chat-completion fine-tuning pipeline registers (training.mode managed:
 * `{"input_data": {"input_string": [messages], "parameters": {...}}, "params": {}}`, as the Phi-3
 * Cookbook's md/03.FineTuning/FineTuning_MLSDK.md scores it).
 */
export type PayloadShape = "prompt-list" | "chat-list";

/** What chat clients should send and how long they should wait. */
export interface ChatDefaults {
  /** Request body shape of the served model. */
  payloadShape: PayloadShape;
  /** `max_new_tokens` for a request. */
  maxNewTokens: number;
  /** Client-side timeout, seconds (request timeout + margin). */
  timeoutSeconds: number;
  /** Estimated seconds for a request of `maxNewTokens` (prefill + decode). */
  estimatedSeconds: number;
  /** Estimated decode throughput, tokens per second (undefined on GPU sizes). */
  tokensPerSecond?: number;
}

/** vCPUs of an Azure size from its name (`Standard_E4s_v3` → 4); undefined when unreadable. */
export function vcpusOf(vmSize: string): number | undefined {
  const m = /^Standard_[A-Za-z]+?(\d+)/.exec(vmSize);
  return m ? Number(m[1]) : undefined;
}

/**
 * Chat defaults for one deployment: on GPU sizes {@link GPU_MAX_NEW_TOKENS}; on CPU sizes the
 * largest multiple of 16 new tokens whose estimated time (prefill of {@link PROMPT_TOKENS} +
 * decode, see the module comment) fits in {@link TIMEOUT_SHARE} of the request timeout, at
 * least 16. `requestTimeoutMs` is the deployment's request timeout in milliseconds;
 * `bytesPerParameter` 4 for float32, 2 for float16/bfloat16.
 */
export function chatDefaultsFor(
  instanceType: string,
  requestTimeoutMs: number,
  bytesPerParameter: number,
  payloadShape: PayloadShape = "prompt-list",
): ChatDefaults {
  const timeoutSeconds = Math.round(requestTimeoutMs / 1000) + CLIENT_TIMEOUT_MARGIN_SECONDS;
  if (isGpuSize(instanceType)) {
    return { payloadShape, maxNewTokens: GPU_MAX_NEW_TOKENS, timeoutSeconds, estimatedSeconds: Math.ceil(GPU_MAX_NEW_TOKENS / 20) };
  }
  const vcpus = vcpusOf(instanceType) ?? 4;
  const tokensPerSecond = (vcpus * CPU_BANDWIDTH_GB_PER_VCPU * 1e9) / (PHI3_MINI_PARAMETERS * bytesPerParameter);
  const prefillSeconds = (2 * PHI3_MINI_PARAMETERS * PROMPT_TOKENS) / (vcpus * CPU_GFLOPS_PER_VCPU * 1e9);
  const budget = (requestTimeoutMs / 1000) * TIMEOUT_SHARE - prefillSeconds;
  const maxNewTokens = Math.max(16, Math.floor((budget * tokensPerSecond) / 16) * 16);
  const estimatedSeconds = Math.ceil(prefillSeconds + maxNewTokens / tokensPerSecond);
  return { payloadShape, maxNewTokens, timeoutSeconds, estimatedSeconds, tokensPerSecond: Number(tokensPerSecond.toFixed(2)) };
}

/**
 * Chat defaults of the stack: those of the deployment with the most live traffic (the first
 * declared one when none has traffic), with the payload shape of the model it serves (the
 * trained one: by training mode; a pinned workspace version: the script's). Used for the
 * `chatDefaults` stack output (read by `npm run chat`) and the Prompt flow connection's
 * metadata (read by the flow's tool).
 */
export function chatDefaults(c: StackConfig): ChatDefaults {
  const deployments = c.serving.deployments;
  if (deployments.length === 0) return chatDefaultsFor("Standard_NC4as_T4_v3", 180_000, 2);
  const main = [...deployments].sort((a, b) => (c.serving.traffic[b.name] ?? 0) - (c.serving.traffic[a.name] ?? 0))[0];
  const bytes = c.training.servedDtype === "float32" ? 4 : 2;
  const shape: PayloadShape = main.model === "trained" && c.training.mode === "managed" ? "chat-list" : "prompt-list";
  return chatDefaultsFor(main.instanceType, main.requestSettings.requestTimeoutMs, bytes, shape);
}
