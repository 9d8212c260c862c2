// Command-line client for the deployed Azure ML managed online endpoint.
//
//   npm run chat -- "Who founded Microsoft?"        one question, answer on stdout
//   npm run chat                                     interactive (stdin is a TTY), or -i
//   echo "Who founded Microsoft?" | npm run chat     question read from piped stdin
//
// Endpoint: ENDPOINT_URI / ENDPOINT_KEY, else the stack outputs `scoringUri` and
// `endpointKey` read with `pulumi stack output --json --show-secrets`.
// Payload shapes (`--shape`):
//   prompt-list (default): `{"input_data": [prompt], "params": {...}}` -> a JSON list with one
//     answer per prompt. This is the only shape the fine-tuned MLflow model logged by
//     finetuning_dir/fine_tune.py accepts (see "Serving contract" in its docstring). In the
//     interactive loop the earlier turns are written into the prompt (conversationPrompt), so
//     the model reads the whole conversation in Phi-3's chat format.
//   chat: `{"input_data": {"input_string": [...messages], "parameters": {...}}}` ->
//     `{"output": "..."}`, for Azure model-catalog chat models (custom scoring script); the
//     interactive loop sends the whole conversation history in this shape.
//   chat-list: `{"input_data": {"input_string": [[...messages]], "parameters": {...}}, "params": {}}`
//     -> a list with one answer per conversation: the model that Microsoft's chat-completion
//     fine-tuning pipeline registers (training.mode managed; Phi-3 Cookbook
//     md/03.FineTuning/FineTuning_MLSDK.md, "Test the endpoint with sample data").
// Without --shape, the stack output `chatDefaults.payloadShape` decides (prompt-list for the
// script's model, chat-list for the managed mode's), else prompt-list.
//
// The endpoint key is never printed: every message that could contain it goes through
// `maskSecret`, and URLs are shown without credentials or query string.

import { execFile } from "node:child_process";
import { accessSync, constants as fsConstants } from "node:fs";
import { delimiter, join } from "node:path";
import { createInterface } from "node:readline";
import {
  createDefaultHttpClient,
  createEmptyPipeline,
  createHttpHeaders,
  createPipelineRequest,
  throttlingRetryPolicy,
  type HttpClient,
  type PipelinePolicy,
} from "@azure/core-rest-pipeline";
import { retryAfterMs } from "../lib/arm";
import { STACK_OPTION, UsageError, checkStackName, helpText, parseCommandLine, runAsMain, type CommandSpec } from "../lib/cli";
import { maskSecrets, registerSecret } from "../lib/secrets";

/** Payload shape understood by the endpoint (see module header). */
export type Shape = "chat" | "chat-list" | "prompt-list";

/** The shapes, for `--shape` and the stack output `chatDefaults.payloadShape`. */
export const SHAPES: readonly Shape[] = ["prompt-list", "chat", "chat-list"];

/** One chat turn, as sent in the `chat` payload shape. */
export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
}

/** Parsed command line of `cli/chat.ts`. */
export interface ChatArgs {
  /** The question (positional arguments joined by spaces), if any. */
  question?: string;
  /** `-i` / `--interactive` was given. */
  interactive: boolean;
  /** `-h` / `--help` was given. */
  help: boolean;
  /** `--stack <name>`: Pulumi stack to read outputs from (default: the selected stack). */
  stack?: string;
  /** Sampling temperature, >= 0 (default 0.7); 0 means greedy decoding. */
  temperature: number;
  /** Maximum number of generated tokens, integer >= 1 (default: the stack's `chatDefaults`, else 128). */
  maxNewTokens?: number;
  /** Payload shape (default: the stack's `chatDefaults.payloadShape`, else `prompt-list`). */
  shape?: Shape;
  /** Per-request timeout in seconds, > 0 (default: the stack's `chatDefaults`, else 90). */
  timeoutSec?: number;
  /** Retries after HTTP 429/503, integer >= 0 (default 4). */
  retries: number;
}

/** Generation parameters put in the payload. */
export interface GenerationOptions {
  /** Sampling temperature (>= 0). */
  temperature: number;
  /** Maximum number of new tokens (integer >= 1). */
  maxNewTokens: number;
}

/** Where the endpoint comes from. */
export interface EndpointConfig {
  uri: string;
  key: string;
  /** `env` when both values came from the environment, else `pulumi`. */
  source: "env" | "pulumi";
  /** The stack output `chatDefaults` (sized for the serving hardware), when the stack has one. */
  defaults?: { maxNewTokens: number; timeoutSeconds: number; payloadShape?: Shape };
}

/** Built-in defaults when neither the command line nor the stack says otherwise. */
export const BUILT_IN_DEFAULTS = { maxNewTokens: 128, timeoutSeconds: 90 };

/**
 * Closes a turn and opens the next one inside a conversation prompt: the same string as
 * `CONVERSATION_TURN_SEPARATOR` in finetuning_dir/fine_tune.py (a Python test checks).
 */
export const CONVERSATION_TURN_SEPARATOR = "<|end|>\n<|{role}|>\n";

/**
 * The single prompt that carries a conversation through the fine-tuned model's prompt
 * template (`<|system|>\n<|end|>\n<|user|>\n{prompt}<|end|>\n<|assistant|>\n`): the first
 * user turn, then every later turn preceded by {@link CONVERSATION_TURN_SEPARATOR}, so the
 * model reads the conversation in Phi-3's chat format.
 * @throws {Error} unless the conversation starts and ends with a user turn and has no system turn.
 */
export function conversationPrompt(messages: readonly ChatMessage[]): string {
  if (messages.length === 0 || messages[0].role !== "user" || messages[messages.length - 1].role !== "user") {
    throw new Error("conversationPrompt: the conversation must start and end with a user turn");
  }
  return messages
    .map((m, i) => {
      if (m.role === "system") throw new Error("conversationPrompt: a system turn cannot be sent in the prompt-list shape");
      return i === 0 ? m.content : CONVERSATION_TURN_SEPARATOR.replace("{role}", m.role) + m.content;
    })
    .join("");
}

/**
 * How many tokens a refused request was over the model's context, from the error the served
 * model (finetuning_dir/phi3_serving.py) answers with HTTP 400:
 * `context_length_exceeded: ... over the model's context length of 4096 by 170 tokens`.
 * Returns undefined for any other error.
 */
export function contextOverflow(error: unknown): number | undefined {
  if (!(error instanceof EndpointError) || error.kind !== "http" || error.status !== 400) return undefined;
  const m = /context_length_exceeded:.*? by (\d+) tokens/.exec(error.message);
  return m ? Number(m[1]) : undefined;
}

/**
 * The conversation without its oldest turn: the oldest user turn and the assistant answer(s)
 * up to the next user turn. A leading system message is kept. Returns undefined when only the
 * last user turn (and the system message) would be left: nothing more can be dropped.
 */
export function dropOldestTurn(messages: readonly ChatMessage[]): ChatMessage[] | undefined {
  const start = messages[0]?.role === "system" ? 1 : 0;
  let next = start + 1;
  while (next < messages.length && messages[next].role !== "user") next++;
  if (next >= messages.length) return undefined;
  return [...messages.slice(0, start), ...messages.slice(next)];
}

/**
 * Runs the Pulumi CLI with the given arguments and resolves to its stdout, or to `null`
 * when the CLI is not installed. Rejects when the CLI fails.
 */
export type PulumiRunner = (args: string[]) => Promise<string | null>;

export { UsageError } from "../lib/cli";

/** Error for a missing or unusable endpoint configuration (exit code 1). */
export class ConfigError extends Error {
  override name = "ConfigError";
}

/** Failure calling the endpoint; `kind` says which. Messages never contain the key. */
export class EndpointError extends Error {
  override name = "EndpointError";
  constructor(
    message: string,
    readonly kind: "auth" | "http" | "busy" | "timeout" | "network" | "response",
    readonly status?: number,
  ) {
    super(message);
  }
}

/** The command line of chat (lib/cli.ts style). */
export const CHAT_COMMAND: CommandSpec = {
  name: "chat",
  usage: "npm run chat --",
  summary:
    "Asks the deployed Azure ML online endpoint a question and prints the answer.\n" +
    "Without a question: interactive mode when stdin is a terminal, else the question is read\n" +
    "from stdin. Endpoint from ENDPOINT_URI / ENDPOINT_KEY, else from the Pulumi stack outputs\n" +
    "scoringUri / endpointKey.",
  options: {
    interactive: { type: "boolean", short: "i", description: 'conversation loop (type "exit" or press Ctrl-D to quit)' },
    stack: { ...STACK_OPTION, description: "Pulumi stack to read outputs from (default: the selected stack)" },
    temperature: { type: "string", value: "<n>", description: "sampling temperature, >= 0 (default 0.7; 0 = greedy)" },
    "max-new-tokens": { type: "string", value: "<n>", description: "maximum generated tokens (default: the stack output chatDefaults, sized for the serving hardware, else 128)" },
    shape: { type: "string", value: "prompt-list|chat|chat-list", description: "payload shape (default: the stack output chatDefaults.payloadShape, else prompt-list, the signature finetuning_dir/fine_tune.py logs; chat for catalog models; chat-list for the managed mode's model)" },
    timeout: { type: "string", value: "<seconds>", description: "per-request timeout (default: chatDefaults, else 90)" },
    retries: { type: "string", value: "<n>", description: "retries on HTTP 429/503 (default 4)" },
  },
  positionals: { value: '["question"]', max: Infinity, description: "the question (words are joined by spaces)" },
};

/** Usage text printed by `--help` and after a usage error. */
export const USAGE = helpText(CHAT_COMMAND);

function numberOption(name: string, raw: string, check: (n: number) => boolean, what: string): number {
  const n = raw.trim() === "" ? NaN : Number(raw);
  if (!Number.isFinite(n) || !check(n)) {
    throw new UsageError(`${name} must be ${what}, got ${JSON.stringify(raw)}`);
  }
  return n;
}

/**
 * Parses the command line (without `node` and the script path) with `node:util`'s
 * `parseArgs` (lib/cli.ts).
 *
 * Accepts `--opt value` and `--opt=value`; `--` ends options; other arguments are joined by
 * spaces into the question. Defaults: temperature 0.7, shape `prompt-list`, retries 4;
 * max-new-tokens and timeout stay undefined (the stack's `chatDefaults` or
 * {@link BUILT_IN_DEFAULTS} apply later).
 *
 * @param argv e.g. `process.argv.slice(2)`.
 * @throws {UsageError} on an unknown option (with "did you mean"), a missing value, or an
 *   out-of-range value (temperature < 0, max-new-tokens / retries not integers, timeout <= 0,
 *   unknown shape).
 */
export function parseArgs(argv: readonly string[]): ChatArgs {
  const { values, positionals, help } = parseCommandLine(CHAT_COMMAND, argv);
  const out: ChatArgs = { interactive: values.interactive === true, help, temperature: 0.7, retries: 4 };
  const str = (k: string) => values[k] as string | undefined;
  if (str("stack") !== undefined) out.stack = checkStackName(str("stack")!);
  if (str("temperature") !== undefined) out.temperature = numberOption("--temperature", str("temperature")!, (n) => n >= 0, "a number >= 0");
  if (str("max-new-tokens") !== undefined) out.maxNewTokens = numberOption("--max-new-tokens", str("max-new-tokens")!, (n) => Number.isInteger(n) && n >= 1, "an integer >= 1");
  if (str("timeout") !== undefined) out.timeoutSec = numberOption("--timeout", str("timeout")!, (n) => n > 0, "a number of seconds > 0");
  if (str("retries") !== undefined) out.retries = numberOption("--retries", str("retries")!, (n) => Number.isInteger(n) && n >= 0, "an integer >= 0");
  const shape = str("shape");
  if (shape !== undefined) {
    if (!(SHAPES as readonly string[]).includes(shape)) throw new UsageError(`--shape must be one of ${SHAPES.join(", ")}, got ${JSON.stringify(shape)}`);
    out.shape = shape as Shape;
  }
  const question = positionals.join(" ").trim();
  if (question !== "") out.question = question;
  return out;
}

/**
 * Builds the JSON request body for the endpoint (shared/REFERENCE.md "Scoring payloads").
 *
 * - `chat`: `{"input_data": {"input_string": messages, "parameters": {temperature,
 *   max_new_tokens, do_sample}}}`; `messages` is the whole conversation, oldest first, ending
 *   with the new user question (Azure model-catalog chat models).
 * - `chat-list`: `{"input_data": {"input_string": [messages], "parameters": {...}}, "params": {}}`:
 *   one conversation in a list of conversations (the managed mode's model).
 * - `prompt-list`: `{"input_data": [conversationPrompt(messages)], "params": {temperature,
 *   max_new_tokens, do_sample, return_full_text: false}}` (the fine-tuned MLflow model).
 * `do_sample` is `temperature > 0`: temperature 0 means greedy decoding, and transformers
 * refuses `temperature: 0` with sampling.
 *
 * @param shape payload shape.
 * @param messages conversation, oldest first.
 * @param opts generation parameters.
 * @throws {Error} when `messages` holds no user message.
 */
export function buildPayload(shape: Shape, messages: readonly ChatMessage[], opts: GenerationOptions): unknown {
  if (!messages.some((m) => m.role === "user")) throw new Error("buildPayload: the conversation has no user message");
  const doSample = opts.temperature > 0;
  const parameters = { temperature: opts.temperature, max_new_tokens: opts.maxNewTokens, do_sample: doSample };
  const conversation = messages.map((m) => ({ role: m.role, content: m.content }));
  if (shape === "chat") return { input_data: { input_string: conversation, parameters } };
  if (shape === "chat-list") return { input_data: { input_string: [conversation], parameters }, params: {} };
  return {
    input_data: [conversationPrompt(messages)],
    params: {
      temperature: opts.temperature,
      max_new_tokens: opts.maxNewTokens,
      do_sample: doSample,
      return_full_text: false,
    },
  };
}

function snippet(text: string, max = 300): string {
  return text.length > max ? `${text.slice(0, max)}...` : text;
}

/** Parses JSON; a JSON string that itself holds a JSON object/array (double encoding) is unwrapped once. */
function parseBody(body: string): unknown {
  let value: unknown = JSON.parse(body);
  if (typeof value === "string" && /^\s*[[{]/.test(value)) {
    try {
      value = JSON.parse(value);
    } catch {
      // a plain answer that happens to start with a bracket
    }
  }
  return value;
}

/**
 * Extracts the answer text from an endpoint response body.
 *
 * - `chat`: `{"output": "..."}`, or a bare JSON string.
 * - `prompt-list` and `chat-list`: a JSON list whose first element is a string, or an object
 *   with key `"0"` or `generated_text` holding a string (`chat-list` also `{"output": "..."}`).
 * A JSON string holding JSON (MLflow servers sometimes double-encode) is decoded once.
 *
 * @param shape payload shape that was sent.
 * @param body raw response text.
 * @throws {EndpointError} kind `response` when the body is not JSON or has another shape;
 *   the message quotes the first 300 characters of the body.
 */
export function parseAnswer(shape: Shape, body: string): string {
  let value: unknown;
  try {
    value = parseBody(body);
  } catch {
    throw new EndpointError(`the endpoint answered with something that is not JSON: ${snippet(body)}`, "response");
  }
  if (shape === "chat-list" && typeof value === "object" && value !== null && !Array.isArray(value)) {
    const output = (value as Record<string, unknown>).output;
    if (typeof output === "string") return output;
  }
  if (shape === "chat") {
    if (typeof value === "string") return value;
    if (typeof value === "object" && value !== null && !Array.isArray(value)) {
      const output = (value as Record<string, unknown>).output;
      if (typeof output === "string") return output;
    }
    throw new EndpointError(
      `unexpected answer for --shape chat (expected {"output": "..."}): ${snippet(body)}` +
        (Array.isArray(value) ? ' (a list: try --shape prompt-list)' : ""),
      "response",
    );
  }
  if (Array.isArray(value) && value.length > 0) {
    const first: unknown = value[0];
    if (typeof first === "string") return first;
    if (typeof first === "object" && first !== null) {
      const rec = first as Record<string, unknown>;
      if (typeof rec["0"] === "string") return rec["0"];
      if (typeof rec.generated_text === "string") return rec.generated_text;
    }
  }
  throw new EndpointError(
    `unexpected answer for --shape ${shape} (expected a list whose first item is a string, {"0": ...} or {"generated_text": ...}): ${snippet(body)}` +
      (typeof value === "object" && value !== null && !Array.isArray(value) && "output" in value ? " (try --shape chat)" : ""),
    "response",
  );
}

/**
 * Replaces `secret` in `text` with `***` in every form a server may echo it (plain,
 * URL-encoded, base64, JSON-escaped: lib/secrets.ts).
 *
 * @param text any text that might contain the secret (error message, body, URL).
 * @param secret the value to hide; nothing is replaced when it is empty/undefined.
 */
export function maskSecret(text: string, secret: string | undefined): string {
  return maskSecrets(text, [secret]);
}

/**
 * Returns a URL fit for messages: origin and path only (no user info, query or fragment,
 * where keys or SAS tokens could hide). Unparseable input yields `<invalid URL>`.
 *
 * @param uri absolute URL.
 */
export function displayUrl(uri: string): string {
  try {
    const u = new URL(uri);
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return "<invalid URL>";
  }
}

/** Hosts plain HTTP is accepted for: the local scoring server (`npm run serve:local`) and tests. */
const LOOPBACK_HOSTS = new Set(["127.0.0.1", "localhost", "[::1]"]);

/** Arguments of {@link askEndpoint}. */
export interface AskOptions {
  /** Scoring URI (https; http only on 127.0.0.1 / localhost). */
  uri: string;
  /** Endpoint key, sent as `Authorization: Bearer <key>`. */
  key: string;
  /** JSON-serialisable request body, e.g. from {@link buildPayload}. */
  payload: unknown;
  /** Deadline per attempt in milliseconds, covering headers and body. */
  timeoutMs: number;
  /** Retries after HTTP 429 / 503 (so at most `retries + 1` requests). */
  retries: number;
  /** Backoff before retry n (0-based) is `backoffBaseMs * 2^n` unless Retry-After says otherwise. */
  backoffBaseMs: number;
  /** Upper bound for any single wait, Retry-After included, in ms (default 60000). */
  maxBackoffMs?: number;
  /** Transport (default: core-rest-pipeline's Node client). */
  httpClient?: HttpClient;
  /** Called before each wait, e.g. to tell the user; `attempt` is 1-based. */
  onRetry?: (info: { attempt: number; status: number; waitMs: number }) => void;
}

/**
 * POSTs `payload` as JSON to the scoring URI with `Authorization: Bearer <key>` and
 * resolves to the response body text of the first 2xx answer.
 *
 * Sent through an `@azure/core-rest-pipeline` pipeline: its `throttlingRetryPolicy` retries
 * HTTP 429 and 503 up to `retries` times, waiting what `Retry-After` says. What the library
 * does not do is done by the attempt policy below: managed online endpoints often answer
 * 429/503 without `Retry-After` (the policy then supplies `backoffBaseMs * 2^n`), every wait is
 * capped at `maxBackoffMs`, each attempt (headers and body) is bounded by `timeoutMs`, and
 * the user hears of each retry. Other statuses are not retried (a scoring call is not
 * idempotent in cost). Error messages never contain the key in any form
 * (lib/secrets.ts) and show the URL without credentials or query string.
 *
 * @throws {EndpointError} `auth` on 401/403 (key rejected); `busy` when 429/503 persist
 *   after all retries; `http` on other non-2xx (status and first 300 chars of the body);
 *   `timeout` when an attempt exceeds `timeoutMs`; `network` when the server cannot be
 *   reached; `response` for an http:// URI that is not on this machine.
 */
export async function askEndpoint(opts: AskOptions): Promise<string> {
  const { uri, key, payload, timeoutMs, retries, backoffBaseMs } = opts;
  const maxBackoffMs = opts.maxBackoffMs ?? 60_000;
  const where = displayUrl(uri);
  const seconds = `${Number((timeoutMs / 1000).toFixed(3))} s`;
  const hide = (text: string) => maskSecrets(text.split(uri).join(where), [key, safeUrlSecret(uri)]);
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    throw new EndpointError(`could not reach ${where}: not a URL`, "network");
  }
  const insecure = url.protocol === "http:";
  if (insecure && !LOOPBACK_HOSTS.has(url.hostname)) {
    throw new EndpointError(`refusing to send the key over plain HTTP to ${where}: use the https scoring URI (http only for 127.0.0.1 / localhost)`, "response");
  }

  let attempt = 0;
  let timedOut = false;
  const attemptPolicy: PipelinePolicy = {
    name: "phi3ChatAttemptPolicy",
    async sendRequest(request, next) {
      const outer = request.abortSignal as AbortSignal | undefined;
      const timer = AbortSignal.timeout(Math.max(1, Math.ceil(timeoutMs)));
      request.abortSignal = outer ? AbortSignal.any([outer, timer]) : timer;
      try {
        const response = await next(request);
        if ((response.status === 429 || response.status === 503) && attempt < retries) {
          const asked = retryAfterMs(Object.fromEntries([...response.headers].map(([k, v]) => [k.toLowerCase(), v])), Date.now());
          const waitMs = Math.min(maxBackoffMs, asked ?? backoffBaseMs * 2 ** attempt);
          // The library's throttling policy reads retry-after-ms first: it waits exactly this.
          response.headers.set("retry-after-ms", String(waitMs));
          opts.onRetry?.({ attempt: attempt + 1, status: response.status, waitMs });
        }
        attempt++;
        return response;
      } catch (e) {
        if (timer.aborted) timedOut = true;
        throw e;
      } finally {
        request.abortSignal = outer;
      }
    },
  };
  const keyPolicy: PipelinePolicy = {
    name: "phi3EndpointKeyPolicy",
    sendRequest(request, next) {
      request.headers.set("authorization", `Bearer ${key}`);
      return next(request);
    },
  };
  const pipeline = createEmptyPipeline();
  pipeline.addPolicy(throttlingRetryPolicy({ maxRetries: retries }), { phase: "Retry" });
  pipeline.addPolicy(attemptPolicy, { phase: "Retry", afterPolicies: ["throttlingRetryPolicy"] });
  pipeline.addPolicy(keyPolicy, { phase: "Sign" });

  let status: number;
  let text: string;
  try {
    const request = createPipelineRequest({
      url: uri,
      method: "POST",
      headers: createHttpHeaders({ "content-type": "application/json", accept: "application/json" }),
      body: JSON.stringify(payload),
      allowInsecureConnection: insecure,
    });
    const res = await pipeline.sendRequest(opts.httpClient ?? createDefaultHttpClient(), request);
    status = res.status;
    text = res.bodyAsText ?? "";
  } catch (e) {
    if (timedOut) {
      throw new EndpointError(
        `no answer from ${where} within ${seconds} (timeout). A cold or busy endpoint can be slow: retry, or raise --timeout.`,
        "timeout",
      );
    }
    const err = e as Error & { code?: string; cause?: { message?: string; code?: string } };
    const cause = err.code ?? err.cause?.code ?? err.cause?.message ?? "";
    throw new EndpointError(`could not reach ${where}: ${hide(`${err.message}${cause ? ` (${cause})` : ""}`)}`, "network");
  }

  // The key in any form is masked before anything reads or quotes the body (mask first, then
  // cut: a cut before masking would leave most of a key that spans the cut).
  text = hide(text);
  if (status >= 200 && status < 300) return text;
  const shown = snippet(text);
  if (status === 401 || status === 403) {
    throw new EndpointError(
      `the endpoint rejected the key (HTTP ${status}). Check it with ` +
        "`pulumi stack output endpointKey --show-secrets` (or ENDPOINT_KEY), or regenerate the " +
        "endpoint keys (`az ml online-endpoint regenerate-keys`) and run `pulumi up` again.",
      "auth",
      status,
    );
  }
  if (status === 429 || status === 503) {
    throw new EndpointError(
      `the endpoint is still busy after ${attempt} attempt${attempt === 1 ? "" : "s"}: HTTP ${status} from ${where}: ${shown}`,
      "busy",
      status,
    );
  }
  throw new EndpointError(`HTTP ${status} from ${where}: ${shown}`, "http", status);
}

/** The user info and query of a URL (where credentials may hide), for masking. */
function safeUrlSecret(uri: string): string | undefined {
  try {
    const u = new URL(uri);
    return [u.password, u.search.slice(1)].filter((x) => x.length >= 6).join("") || undefined;
  } catch {
    return undefined;
  }
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Finds `cmd` on PATH (with PATHEXT extensions on Windows); undefined when absent. */
function findOnPath(cmd: string, env: NodeJS.ProcessEnv): string | undefined {
  const dirs = (env.PATH ?? env.Path ?? "").split(delimiter).filter(Boolean);
  const exts = process.platform === "win32" ? (env.PATHEXT ?? ".EXE;.CMD;.BAT").split(";") : [""];
  for (const dir of dirs) {
    for (const ext of exts) {
      const candidate = join(dir, cmd + ext);
      if (isExecutable(candidate)) return candidate;
    }
  }
  return undefined;
}

/**
 * Default {@link PulumiRunner}: runs the `pulumi` CLI found on PATH (resolves `null` when
 * there is none) with a 60 s deadline. Its stdout may hold secrets and is never printed.
 *
 * @param args CLI arguments, e.g. `["stack", "output", "--json", "--show-secrets"]`.
 * @throws {Error} with the exit status and the first 300 characters of stderr when the
 *   CLI fails.
 */
export const defaultPulumiRunner: PulumiRunner = (args) => {
  const exe = findOnPath("pulumi", process.env);
  if (!exe) return Promise.resolve(null);
  return new Promise((resolve, reject) => {
    execFile(
      exe,
      args,
      { timeout: 60_000, maxBuffer: 16 * 1024 * 1024, windowsHide: true, env: { ...process.env, PULUMI_SKIP_UPDATE_CHECK: "true" } },
      (err, stdout, stderr) => {
        if (err) {
          reject(new Error(`\`pulumi ${args.join(" ")}\` failed: ${snippet(String(stderr).trim() || err.message)}`));
        } else {
          resolve(String(stdout));
        }
      },
    );
  });
};

function checkUri(uri: string, from: string): string {
  let u: URL;
  try {
    u = new URL(uri);
  } catch {
    // An invalid environment variable is usage (exit 2); a bad stack output a failure (exit 1).
    throw from === "ENDPOINT_URI" ? new UsageError(`${from} is not a valid URL`) : new ConfigError(`${from} is not a valid URL`);
  }
  if (u.protocol !== "https:" && u.protocol !== "http:") {
    throw from === "ENDPOINT_URI" ? new UsageError(`${from} must be an http(s) URL, got ${u.protocol}`) : new ConfigError(`${from} must be an http(s) URL, got ${u.protocol}`);
  }
  return uri;
}

/**
 * Finds the scoring URI and key: `ENDPOINT_URI` / `ENDPOINT_KEY` from `env` first (each
 * wins on its own); whatever is missing comes from the Pulumi stack outputs `scoringUri`
 * and `endpointKey` (`pulumi stack output --json --show-secrets [--stack <stack>]`), with
 * the output `chatDefaults` when present. Values are trimmed.
 *
 * @param env environment, e.g. `process.env`.
 * @param runPulumi Pulumi CLI runner (default {@link defaultPulumiRunner}); resolves `null`
 *   when no CLI is installed.
 * @param stack optional stack name passed as `--stack`.
 * @throws {ConfigError} when neither source provides both values, when the stack outputs
 *   are missing, still `[secret]`, or not JSON, when the URI is not http(s), or when the
 *   CLI fails (its stderr is quoted). Messages never contain the key.
 */
export async function resolveEndpoint(
  env: NodeJS.ProcessEnv,
  runPulumi: PulumiRunner = defaultPulumiRunner,
  stack?: string,
): Promise<EndpointConfig> {
  const envUri = env.ENDPOINT_URI?.trim() || undefined;
  const envKey = env.ENDPOINT_KEY?.trim() || undefined;
  if (envUri && envKey) return { uri: checkUri(envUri, "ENDPOINT_URI"), key: envKey, source: "env" };

  const args = ["stack", "output", "--json", "--show-secrets", ...(stack ? ["--stack", stack] : [])];
  let stdout: string | null;
  try {
    stdout = await runPulumi(args);
  } catch (e) {
    throw new ConfigError(
      `${maskSecret((e as Error).message, envKey)}\n` +
        `Set ENDPOINT_URI and ENDPOINT_KEY, or fix the Pulumi login/stack (${stack ? `stack "${stack}"` : "select one with --stack <name>"}).`,
    );
  }
  if (stdout === null) {
    const missing = [envUri ? "" : "ENDPOINT_URI", envKey ? "" : "ENDPOINT_KEY"].filter(Boolean).join(" and ");
    // A missing environment variable is a usage error (lib/cli.ts EXIT.USAGE, the exit-code table).
    throw new UsageError(
      `No endpoint configured: ${missing} ${missing.includes(" and ") ? "are" : "is"} not set and the pulumi CLI is not on PATH.\n` +
        "Set ENDPOINT_URI and ENDPOINT_KEY (e.g. from `pulumi stack output scoringUri` and " +
        "`pulumi stack output endpointKey --show-secrets`), or install the Pulumi CLI.",
    );
  }
  let outputs: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(stdout);
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new Error("not an object");
    outputs = parsed as Record<string, unknown>;
  } catch {
    throw new ConfigError("`pulumi stack output --json` did not print a JSON object");
  }
  const stackName = stack ? `stack "${stack}"` : "the selected stack";
  const pick = (name: string): string => {
    const v = outputs[name];
    if (typeof v !== "string" || v.trim() === "") {
      throw new ConfigError(
        `${stackName} has no output "${name}" (has it been deployed with \`pulumi up\`?). ` +
          "Or set ENDPOINT_URI and ENDPOINT_KEY.",
      );
    }
    if (v === "[secret]") throw new ConfigError(`output "${name}" of ${stackName} is still encrypted ([secret])`);
    return v.trim();
  };
  const uri = envUri ?? pick("scoringUri");
  const key = envKey ?? pick("endpointKey");
  const d = outputs.chatDefaults as { maxNewTokens?: unknown; timeoutSeconds?: unknown; payloadShape?: unknown } | undefined;
  const defaults =
    d && Number.isInteger(d.maxNewTokens) && (d.maxNewTokens as number) >= 1 && typeof d.timeoutSeconds === "number" && d.timeoutSeconds > 0
      ? {
          maxNewTokens: d.maxNewTokens as number,
          timeoutSeconds: d.timeoutSeconds,
          ...((SHAPES as readonly unknown[]).includes(d.payloadShape) ? { payloadShape: d.payloadShape as Shape } : {}),
        }
      : undefined;
  return { uri: checkUri(uri, envUri ? "ENDPOINT_URI" : "stack output scoringUri"), key, source: "pulumi", defaults };
}

/** Minimal writable used for output; `isTTY` enables the spinner on stderr. */
export interface OutStream {
  write(chunk: string): unknown;
  isTTY?: boolean;
}

/** I/O and injectable dependencies of {@link main}. */
export interface MainIO {
  stdout: OutStream;
  stderr: OutStream;
  stdin: NodeJS.ReadableStream & { isTTY?: boolean };
  runPulumi?: PulumiRunner;
  /** Transport for the endpoint calls (tests). */
  httpClient?: HttpClient;
  /** Base of the retry backoff in ms (default 1000). */
  backoffBaseMs?: number;
}

const SPINNER_FRAMES = ["|", "/", "-", "\\"];

/** Starts a spinner on `stream` when it is a TTY; returns the function that erases it. */
function startSpinner(stream: OutStream): () => void {
  if (!stream.isTTY) return () => undefined;
  const started = Date.now();
  let frame = 0;
  const draw = () => {
    const secs = Math.floor((Date.now() - started) / 1000);
    stream.write(`\r${SPINNER_FRAMES[frame++ % SPINNER_FRAMES.length]} waiting for the endpoint (${secs}s)`);
  };
  draw();
  const timer = setInterval(draw, 120);
  return () => {
    clearInterval(timer);
    stream.write("\r\x1b[K");
  };
}

async function readAll(stream: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(typeof chunk === "string" ? Buffer.from(chunk) : (chunk as Buffer));
  return Buffer.concat(chunks).toString("utf8");
}

/**
 * Runs the CLI: parses `argv`, resolves the endpoint, then answers one question (argument
 * or piped stdin) or runs the interactive loop, sending the conversation so far with each
 * question (as messages for `chat`, in the conversation prompt for `prompt-list`). Answers go to `io.stdout`; prompts, progress and errors to `io.stderr`.
 * The key is never written anywhere.
 *
 * @param argv arguments without node and script path (default `process.argv.slice(2)`).
 * @param env environment (default `process.env`).
 * @param io streams and injectable dependencies (default the process streams).
 * @returns the exit code: 0 ok, 1 endpoint/config error, 2 usage error (also: no endpoint
 *   configured, an invalid ENDPOINT_URI), 3 no answer within the timeout. Never throws.
 */
export async function main(
  argv: readonly string[] = process.argv.slice(2),
  env: NodeJS.ProcessEnv = process.env,
  io: MainIO = { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin },
): Promise<number> {
  let key: string | undefined;
  const say = (text: string) => io.stderr.write(`${maskSecret(text, key)}\n`);
  let args: ChatArgs;
  try {
    args = parseArgs(argv);
  } catch (e) {
    say(`chat: ${(e as Error).message}\nUsage: ${CHAT_COMMAND.usage} [options] ["question"]   (--help for the options)`);
    return 2;
  }
  if (args.help) {
    io.stdout.write(`${USAGE}\n`);
    return 0;
  }

  let endpoint: EndpointConfig;
  try {
    endpoint = await resolveEndpoint(env, io.runPulumi ?? defaultPulumiRunner, args.stack);
  } catch (e) {
    if (!(e instanceof UsageError)) {
      say(`chat: ${(e as Error).message}`);
      return 1;
    }
    say(`chat: ${e.message}\nUsage: ${CHAT_COMMAND.usage} [options] ["question"]   (--help for the options)`);
    return 2;
  }
  key = endpoint.key;
  registerSecret(key);
  const maxNewTokens = args.maxNewTokens ?? endpoint.defaults?.maxNewTokens ?? BUILT_IN_DEFAULTS.maxNewTokens;
  const timeoutSec = args.timeoutSec ?? endpoint.defaults?.timeoutSeconds ?? BUILT_IN_DEFAULTS.timeoutSeconds;
  const shape: Shape = args.shape ?? endpoint.defaults?.payloadShape ?? "prompt-list";

  let history: ChatMessage[] = [];
  const ask = async (question: string): Promise<string> => {
    let messages: ChatMessage[] = [...history, { role: "user", content: question }];
    const stop = startSpinner(io.stderr);
    try {
      const send = (payload: unknown) => askEndpoint({
        uri: endpoint.uri,
        key: endpoint.key,
        payload,
        timeoutMs: timeoutSec * 1000,
        retries: args.retries,
        backoffBaseMs: io.backoffBaseMs ?? 1000,
        httpClient: io.httpClient,
        onRetry: ({ attempt, status, waitMs }) => {
          const clear = io.stderr.isTTY ? "\r\x1b[K" : "";
          say(`${clear}endpoint busy (HTTP ${status}), retry ${attempt}/${args.retries} in ${(waitMs / 1000).toFixed(1)} s`);
        },
      });
      // A conversation over the model's context is refused with how much it is over
      // (issue 20): drop the oldest turns (a system message stays) until it fits, and say so.
      let text: string | undefined;
      let dropped = 0;
      while (text === undefined) {
        try {
          text = await send(buildPayload(shape, messages, { temperature: args.temperature, maxNewTokens }));
        } catch (e) {
          const over = contextOverflow(e);
          const shorter = over === undefined ? undefined : dropOldestTurn(messages);
          if (!shorter) throw e;
          messages = shorter;
          dropped++;
          say(`chat: the conversation is ${over} tokens over the model's context: dropped the oldest turn (${dropped} so far)`);
        }
      }
      const answer = parseAnswer(shape, text);
      history = [...messages, { role: "assistant", content: answer }];
      return answer;
    } finally {
      stop();
    }
  };
  const failure = (e: unknown): number => {
    say(`chat: ${e instanceof Error ? e.message : String(e)}`);
    // lib/cli.ts exit codes: no answer in time is the deadline (3); anything else a failure (1).
    return e instanceof EndpointError && e.kind === "timeout" ? 3 : 1;
  };

  let question = args.question;
  const interactive = args.interactive || (question === undefined && io.stdin.isTTY === true);
  if (!interactive) {
    if (question === undefined) {
      question = (await readAll(io.stdin)).trim();
      if (question === "") {
        say(`chat: no question given (argument or stdin)\nUsage: ${CHAT_COMMAND.usage} [options] ["question"]   (--help for the options)`);
        return 2;
      }
    }
    try {
      io.stdout.write(`${await ask(question)}\n`);
      return 0;
    } catch (e) {
      return failure(e);
    }
  }

  // Interactive loop; prompts on stderr so stdout carries only answers.
  const rl = createInterface({ input: io.stdin, output: io.stderr as NodeJS.WritableStream, terminal: io.stdin.isTTY === true && io.stderr.isTTY === true });
  rl.setPrompt("you> ");
  say(`Connected to ${displayUrl(endpoint.uri)} (shape ${shape}). Type "exit" or press Ctrl-D to quit.`);
  try {
    if (question !== undefined) {
      io.stderr.write(`you> ${question}\n`);
      io.stdout.write(`${await ask(question)}\n`);
    }
    rl.prompt();
    for await (const line of rl) {
      const q = line.trim();
      if (q === "exit" || q === "quit") break;
      if (q !== "") {
        try {
          io.stdout.write(`${await ask(q)}\n`);
        } catch (e) {
          const code = failure(e);
          if (e instanceof EndpointError && e.kind === "auth") return code;
        }
      }
      rl.prompt();
    }
    return 0;
  } catch (e) {
    return failure(e);
  } finally {
    rl.close();
  }
}

if (typeof require !== "undefined" && typeof module !== "undefined" && require.main === module) {
  // runAsMain: ENDPOINT_KEY (and any key found later) masked in all the process prints.
  runAsMain("chat", () => main());
}
