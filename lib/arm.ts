/**
 * The Azure Resource Manager (ARM) client of the programs `pulumi up` runs (jobs/) and of
 * `npm run doctor` (cli/), built the way Azure's own SDKs build theirs:
 *
 * - `@azure/core-rest-pipeline` sends every request: `defaultRetryPolicy` retries throttling (429/503 with `Retry-After`,
 *   `retry-after-ms`, `x-ms-retry-after-ms`, seconds or HTTP date), 5xx/408 and connection
 *   errors (ECONNRESET, ETIMEDOUT, ...) with exponential backoff and jitter.
 * - `@azure/core-lro` follows long-running operations (`Azure-AsyncOperation`,
 *   `Operation-Location`, `Location`, or the resource's provisioningState):
 *   {@link waitForLongRunningOperation}.
 *
 * What remains here is only what those libraries do not do, each named where it is done:
 * bearer tokens (scope `https://management.azure.com/.default`) fetched, cached and refreshed
by the request that needs them, never in the background ({@link bearerPolicy}: the library's
token cycler leaves a refresh running after the request that started it, and its failure is an
unhandled rejection that ends the process); a deadline for the whole program that every
request, retry wait and token request honours
 * (the pipeline has per-request cancellation only); a per-attempt timeout that also covers a
 * body that trickles (core-rest-pipeline's `timeout` stops at the headers); a cap on
 * `Retry-After` (the library waits whatever a server asks); a time limit on getting a token
 * (credentials may wait forever on a hung token endpoint); one forced token refresh on a 401
 * challenge; a line per retry for the program's log; answers that are not JSON reported as
 * such (never read as a state); and masking of the token in every form in errors.
 *
 * Azure ML paths follow REST API version {@link AML_API_VERSION} (`2025-12-01`).
 */
import type { AccessToken, GetTokenOptions, TokenCredential } from "@azure/identity";
import {
  createDefaultHttpClient,
  createEmptyPipeline,
  createHttpHeaders,
  createPipelineRequest,
  defaultRetryPolicy,
  isRestError,
  RestError,
  type HttpClient,
  type PipelinePolicy,
  type PipelineRequest,
  type PipelineResponse,
} from "@azure/core-rest-pipeline";
import { createHttpPoller, type OperationResponse, type OperationState } from "@azure/core-lro";
import { setTimeout as timerSleep } from "node:timers/promises";
import { credentialFromEnv } from "./credential";
import { maskRegistered, registerEnvSecrets, registerSecret } from "./secrets";

/** Azure ML (Microsoft.MachineLearningServices) REST API version every path here follows. */
export const AML_API_VERSION = "2025-12-01";

/** Exit code: done. Shared by every program in jobs/ and command in cli/ (README "Exit codes"). */
export const EXIT_OK = 0;
/** The job or operation failed (job Failed/Canceled/NotResponding, traffic update rejected, a check failed). */
export const EXIT_FAILED = 1;
/** Missing or invalid environment variables, arguments or configuration. */
export const EXIT_CONFIG = 2;
/** The deadline passed first. */
export const EXIT_DEADLINE = 3;
/** ARM or credential error (401/403, not found, retries exhausted, an answer that is not JSON). */
export const EXIT_ARM = 4;

/** What a token is replaced with wherever an answer or error would show it. */
export const REDACTED = "[redacted]";

/** Default ARM endpoint (public cloud). */
export const DEFAULT_ARM_ENDPOINT = "https://management.azure.com";

/** OAuth scope requested for ARM tokens. */
export const ARM_SCOPE = "https://management.azure.com/.default";

/** HTTP methods the client sends. */
export type ArmMethod = "GET" | "PUT" | "PATCH" | "POST" | "DELETE";

/** Options of {@link createArmClient}. Durations are milliseconds. */
export interface ArmClientOptions {
  /** ARM base URL, default `https://management.azure.com`; must be https (the bearer policy refuses anything else). */
  baseUrl?: string;
  /** Source of bearer tokens (see lib/credential.ts). */
  credential: TokenCredential;
  /** OAuth scope, default {@link ARM_SCOPE}. */
  scope?: string;
  /** Transport, default core-rest-pipeline's Node client. */
  httpClient?: HttpClient;
  /** Retries of a retryable failure (429/503 with Retry-After, 5xx, 408, connection errors); default 6. */
  maxRetries?: number;
  /** Backoff base: retry n waits about `backoffBaseMs * 2^n` (jittered by the library); default 1000. */
  backoffBaseMs?: number;
  /** Upper bound of any single wait, `Retry-After` included; default 60000. */
  maxBackoffMs?: number;
  /** Time one attempt may take, headers and body; default 120000 (then it is retried). */
  requestTimeoutMs?: number;
  /** Time getting one token may take; default 60000. */
  tokenTimeoutMs?: number;
  /** Absolute deadline (epoch ms on `now`): no request starts after it and none runs past it. */
  deadlineAt?: number;
  /** Clock in epoch milliseconds; default `Date.now`. */
  now?: () => number;
  /** `User-Agent` header value. */
  userAgent?: string;
  /** Called with one line per retry (never contains the token). */
  onRetry?: (line: string) => void;
  /** Name of the service in messages; default `ARM` (`Blob Storage` for uploads). */
  service?: string;
}

/** A parsed ARM answer. `body` is the parsed JSON, or `undefined` for an empty body. */
export interface ArmResponse<T = unknown> {
  /** HTTP status code. */
  status: number;
  /** Response headers, names lower-cased. */
  headers: Record<string, string>;
  /** Parsed JSON body (`undefined` when empty). */
  body: T;
  /** HTTP method of the request that produced this response. */
  method: ArmMethod;
  /** Path (or same-origin absolute URL) that was requested. */
  path: string;
}

/**
 * Error raised for a non-2xx ARM answer (after retries), a credential failure (status 0,
 * code `CredentialUnavailable`), exhausted retries on connection errors (status 0, code
 * `NetworkError`) or an answer that is not JSON (code `NotJson`). Its message never contains
 * the bearer token in any form.
 */
export class ArmError extends Error {
  /** HTTP status (0 when no HTTP answer was obtained). */
  readonly status: number;
  /** ARM error code from the body (`error.code`), or a synthetic code. */
  readonly code: string;
  /** ARM error message from the body (`error.message`), or a summary of the raw body. */
  readonly armMessage: string;
  /** HTTP method. */
  readonly method: string;
  /** Requested path (query string included). */
  readonly path: string;
  /** Parsed error body, when there was one. */
  readonly body: unknown;
  /** Whether the answer had a JSON body (ARM's own answers do; a proxy's HTML page does not). */
  readonly json: boolean;

  /**
   * @param init - status, ARM code and message, method, path, the parsed body and whether it was JSON.
   */
  constructor(init: { status: number; code: string; armMessage: string; method: string; path: string; body?: unknown; hint?: string; json?: boolean; service?: string }) {
    const hint = init.hint ? ` ${init.hint}` : "";
    super(`${init.service ?? "ARM"} ${init.method} ${init.path} failed: HTTP ${init.status} ${init.code}: ${init.armMessage}${hint}`);
    this.name = "ArmError";
    this.status = init.status;
    this.code = init.code;
    this.armMessage = init.armMessage;
    this.method = init.method;
    this.path = init.path;
    this.body = init.body;
    this.json = init.json ?? false;
  }
}

/**
 * Whether an error is ARM saying the resource does not exist: HTTP 404 with ARM's JSON error
 * body. A 404 page from a proxy or a gateway (HTML, or no body) is not: acting on it as
 * "missing" would, for instance, submit a job that exists.
 */
export function isArmNotFound(e: unknown): e is ArmError {
  return e instanceof ArmError && e.status === 404 && e.json && armErrorInfo(e.body).code !== undefined;
}

/** Error raised when a long-running operation ends Failed or Canceled. */
export class LongRunningOperationError extends Error {
  /** Terminal status reported by ARM (`Failed`, `Canceled`). */
  readonly status: string;
  /** Error code of the operation, when ARM gave one. */
  readonly code: string;
  /**
   * @param status - terminal operation status.
   * @param code - ARM error code (or `""`).
   * @param message - full human-readable message.
   */
  constructor(status: string, code: string, message: string) {
    super(message);
    this.name = "LongRunningOperationError";
    this.status = status;
    this.code = code;
  }
}

/** Error raised when a wait or a request passes its deadline. */
export class DeadlineError extends Error {
  /** Milliseconds spent before giving up. */
  readonly elapsedMs: number;
  /**
   * @param message - full human-readable message.
   * @param elapsedMs - milliseconds spent waiting.
   */
  constructor(message: string, elapsedMs: number) {
    super(message);
    this.name = "DeadlineError";
    this.elapsedMs = elapsedMs;
  }
}

/** The client returned by {@link createArmClient}. */
export interface ArmClient {
  /** Base URL without trailing slash. */
  readonly baseUrl: string;
  /** Sends any request; throws {@link ArmError} on non-2xx after retries, {@link DeadlineError} past the deadline. */
  request<T = unknown>(method: ArmMethod, path: string, body?: unknown): Promise<ArmResponse<T>>;
  /** GET `path`. */
  get<T = unknown>(path: string): Promise<ArmResponse<T>>;
  /** PUT `path` with a JSON body. */
  put<T = unknown>(path: string, body: unknown): Promise<ArmResponse<T>>;
  /** PATCH `path` with a JSON body. */
  patch<T = unknown>(path: string, body: unknown): Promise<ArmResponse<T>>;
  /** POST `path` with an optional JSON body. */
  post<T = unknown>(path: string, body?: unknown): Promise<ArmResponse<T>>;
  /** DELETE `path`. */
  delete<T = unknown>(path: string): Promise<ArmResponse<T>>;
  /**
   * PUT raw bytes with the given headers (Blob Storage's Put Blob); resolves on 2xx, throws
   * {@link ArmError} otherwise (code from `x-ms-error-code` or the XML error body).
   */
  putBytes(path: string, bytes: Uint8Array, headers: Record<string, string>): Promise<ArmResponse<undefined>>;
}

/** Requests of Blob Storage whose answers are not JSON (lib/preflight.ts `checkStorageReach`). */
export interface RawRequests {
  /**
   * GET `path` with the given headers, reading no body; resolves on 2xx, throws
   * {@link ArmError} otherwise (code from `x-ms-error-code` or the XML error body, as
   * {@link ArmClient.putBytes}).
   */
  getRaw(path: string, headers?: Record<string, string>): Promise<ArmResponse<undefined>>;
}

/**
 * Sleeps `ms` milliseconds with a real timer (node:timers/promises, so a test's fake global
 * `setTimeout` never shortens it).
 */
export function realSleep(ms: number): Promise<void> {
  return timerSleep(Math.max(0, ms)).then(() => undefined);
}

/**
 * Milliseconds an answer asks to wait, from `retry-after-ms`, `x-ms-retry-after-ms` or
 * `Retry-After` (seconds or HTTP date), in the order core-rest-pipeline reads them. Here only
 * to cap the wait ({@link createArmClient}) and to time polls: the libraries do not expose it.
 *
 * @param headers - response headers, lower-case names.
 * @param nowMs - current time in epoch milliseconds (for the date form).
 * @returns milliseconds (>= 0), or `undefined` when no header says.
 */
export function retryAfterMs(headers: Record<string, string | undefined>, nowMs: number): number | undefined {
  for (const name of ["retry-after-ms", "x-ms-retry-after-ms"]) {
    const v = Number(headers[name]);
    if (headers[name] !== undefined && Number.isFinite(v) && v >= 0) return v;
  }
  const v = headers["retry-after"]?.trim();
  if (!v) return undefined;
  if (/^\d+(\.\d+)?$/.test(v)) return Math.round(Number(v) * 1000);
  const date = Date.parse(v);
  return Number.isNaN(date) ? undefined : Math.max(0, date - nowMs);
}

/**
 * Builds the ARM path of an Azure ML workspace (no leading host, no api-version).
 *
 * @param ws - `{ subscriptionId, resourceGroup, workspace }`; each part is URL-encoded.
 * @returns `/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.MachineLearningServices/workspaces/{ws}`.
 * @throws Error when a part is empty.
 */
export function workspacePath(ws: { subscriptionId: string; resourceGroup: string; workspace: string }): string {
  for (const k of ["subscriptionId", "resourceGroup", "workspace"] as const) {
    const v = ws[k];
    if (typeof v !== "string" || v.trim() === "") throw new Error(`workspacePath: ${k} is empty`);
  }
  return (
    `/subscriptions/${encodeURIComponent(ws.subscriptionId)}` +
    `/resourceGroups/${encodeURIComponent(ws.resourceGroup)}` +
    `/providers/Microsoft.MachineLearningServices/workspaces/${encodeURIComponent(ws.workspace)}`
  );
}

/**
 * Appends `api-version` (default {@link AML_API_VERSION}) to a path.
 *
 * @param path - ARM path, with or without a query string.
 * @param apiVersion - REST API version, default `2025-12-01`.
 * @returns the path with `api-version=...` added.
 */
export function withApiVersion(path: string, apiVersion: string = AML_API_VERSION): string {
  return `${path}${path.includes("?") ? "&" : "?"}api-version=${encodeURIComponent(apiVersion)}`;
}

/** Extracts `{code, message}` from an ARM error body (`{error:{code,message}}` or flat). */
export function armErrorInfo(body: unknown): { code?: string; message?: string } {
  if (body && typeof body === "object") {
    const b = body as Record<string, unknown>;
    const inner = (b.error && typeof b.error === "object" ? b.error : b) as Record<string, unknown>;
    const code = typeof inner.code === "string" ? inner.code : undefined;
    const message = typeof inner.message === "string" ? inner.message : undefined;
    return { code, message };
  }
  if (typeof body === "string" && body.trim() !== "") {
    return { message: body.trim().slice(0, 500) };
  }
  return {};
}

/** A credential failed or took too long; carries a message without any token. */
export class CredentialError extends Error {
  /** @param message - what failed. */
  constructor(message: string) {
    super(message);
    this.name = "CredentialError";
  }
}

/** Rejects when `signal` aborts (with `reason()`), else never. */
function rejectOnAbort(signal: AbortSignal, reason: () => Error): Promise<never> {
  return new Promise((_, reject) => {
    if (signal.aborted) reject(reason());
    signal.addEventListener("abort", () => reject(reason()), { once: true });
  });
}

/**
 * Wraps a credential so that getting a token takes at most `timeoutMs` (and never outlives
 * `options.abortSignal`, the request's deadline), failures become {@link CredentialError}, and
 * every token handed out is remembered in `issued` for masking. @azure/identity passes the
 * abort signal on to some credentials only, and a hung token endpoint otherwise hangs the
 * program: this is the bound.
 */
function boundedCredential(credential: TokenCredential, timeoutMs: number, issued: Set<string>): TokenCredential {
  return {
    async getToken(scopes: string | string[], options?: GetTokenOptions): Promise<AccessToken | null> {
      const limit = AbortSignal.timeout(Math.max(1, Math.ceil(timeoutMs)));
      const signal = options?.abortSignal ? AbortSignal.any([limit, options.abortSignal as AbortSignal]) : limit;
      const scope = Array.isArray(scopes) ? scopes.join(" ") : scopes;
      try {
        const token = await Promise.race([
          credential.getToken(scopes, { ...options, abortSignal: signal }),
          rejectOnAbort(signal, () => new CredentialError(
            limit.aborted ? `no token for ${scope} within ${Math.round(timeoutMs / 1000)} s (is the token endpoint reachable?)` : `the deadline passed while getting a token for ${scope}`,
          )),
        ]);
        if (!token || !token.token) throw new CredentialError(`the credential returned no token for ${scope}`);
        issued.add(token.token);
        registerSecret(token.token);
        return token;
      } catch (e) {
        if (e instanceof CredentialError) throw e;
        const err = e as Error;
        throw new CredentialError(`could not get an Azure token for ${scope}: ${err?.name ?? "Error"}: ${maskRegistered(String(err?.message ?? err), [...issued], REDACTED)}`);
      }
    },
  };
}

/** A cached token is refreshed once it is this close to expiry (the library's refresh window). */
export const TOKEN_REFRESH_MARGIN_MS = 2 * 60_000;

/**
 * The Sign policy: puts `Authorization: Bearer <token>` on every attempt, from a cached token
 * refreshed when it is within {@link TOKEN_REFRESH_MARGIN_MS} of expiry (or past the
 * credential's `refreshAfterTimestamp`), and on a 401 with `WWW-Authenticate` (ARM's answer to
 * a revoked or expired token) fetches a fresh token and sends the request once more.
 *
 * Why not core-rest-pipeline's `bearerTokenAuthenticationPolicy`: its token cycler starts a
 * refresh inside the refresh window without awaiting it (`tokenCycler.ts`, `refresh()` in the
 * `shouldRefresh` branch; Azure/azure-sdk-for-js#30244 keeps it so), and when that refresh
 * fails after the request that started it has finished, nobody holds the promise: Node reports
 * an unhandled rejection and ends the process (it made `npm test` fail at random when a test's
 * fake token service closed first). Here every token request is awaited by the request that
 * needs it, under that request's abort signal (so under the program's deadline), and nothing
 * is left running after the last request. A failed refresh while the cached token still has
 * more than {@link TOKEN_FALLBACK_MS} to live keeps the cached token, as the library's
 * background refresh does.
 *
 * @param credential - the bounded credential (token timeout, masking, {@link CredentialError}).
 * @param scope - the OAuth scope (ARM's by default).
 * @param now - clock in epoch milliseconds.
 * @throws RestError for a non-https URL (a token is never sent in clear text);
 *   CredentialError when no token can be had.
 */
export function bearerPolicy(credential: TokenCredential, scope: string, now: () => number = Date.now): PipelinePolicy {
  let cached: AccessToken | undefined;
  const fresh = async (signal: AbortSignal | undefined): Promise<AccessToken> => {
    try {
      const token = await credential.getToken(scope, signal ? { abortSignal: signal } : {});
      if (!token) throw new CredentialError(`the credential returned no token for ${scope}`);
      cached = token;
      return token;
    } catch (e) {
      if (cached && cached.expiresOnTimestamp - TOKEN_FALLBACK_MS > now() && !signal?.aborted) return cached;
      cached = undefined;
      throw e;
    }
  };
  const stale = (t: AccessToken) =>
    t.expiresOnTimestamp - TOKEN_REFRESH_MARGIN_MS <= now() || (t.refreshAfterTimestamp !== undefined && t.refreshAfterTimestamp <= now());
  return {
    name: "phi3BearerPolicy",
    async sendRequest(request, next) {
      if (!request.url.toLowerCase().startsWith("https://")) {
        throw new RestError("Bearer token authentication is not permitted for non-TLS protected (non-https) URLs.");
      }
      const signal = request.abortSignal as AbortSignal | undefined;
      const token = cached && !stale(cached) ? cached : await fresh(signal);
      request.headers.set("authorization", `Bearer ${token.token}`);
      const response = await next(request);
      if (response.status !== 401 || !response.headers.get("www-authenticate")) return response;
      // A token the service no longer accepts: drop it, whatever its expiry says, and retry once.
      cached = undefined;
      const again = await fresh(signal);
      request.headers.set("authorization", `Bearer ${again.token}`);
      return next(request);
    },
  };
}

/** A failed refresh keeps the cached token only while it has at least this long to live. */
export const TOKEN_FALLBACK_MS = 30_000;

/** Statuses and connection errors `defaultRetryPolicy` retries (its throttling and exponential strategies). */
function libraryRetries(response: PipelineResponse | undefined, error: unknown): boolean {
  if (response) {
    const s = response.status;
    const asked = ["retry-after-ms", "x-ms-retry-after-ms", "retry-after"].some((h) => response.headers.has(h));
    if ((s === 429 || s === 503) && asked) return true;
    return (s >= 500 && s !== 501 && s !== 505) || s === 408;
  }
  const code = (error as { code?: string } | undefined)?.code;
  return ["ETIMEDOUT", "ESOCKETTIMEDOUT", "ECONNREFUSED", "ECONNRESET", "ENOENT", "ENOTFOUND"].includes(code ?? "");
}

/**
 * Methods retried when the connection drops, before or during the answer: reading and
 * content-named writes (every PUT the programs send names the resource by what it holds, so a
 * repeat writes the same thing; ARM's PUT and DELETE are idempotent by contract, RFC 9110 9.2.2).
 */
const IDEMPOTENT = new Set(["GET", "HEAD", "PUT", "DELETE", "OPTIONS"]);

/** Per-request bookkeeping of {@link createArmClient}'s attempt policy. */
interface Attempts {
  count: number;
}

/**
 * Creates an ARM REST client on a core-rest-pipeline pipeline.
 *
 * Pipeline, outer to inner: `defaultRetryPolicy` (library) → attempt policy (this file: the
 * per-attempt timeout over headers and body, the `Retry-After` cap, the retry line) →
 * {@link bearerPolicy} (with a bounded credential and one forced refresh on a 401 challenge) → core-rest-pipeline's Node HTTP client.
 *
 * @param options - see {@link ArmClientOptions}; durations are milliseconds.
 * @returns an {@link ArmClient}. Its methods resolve with `{status, headers, body}` for 2xx JSON
 *   (or empty) answers and reject with {@link ArmError} otherwise (401/403 at once, after one
 *   forced token refresh on a 401 challenge; retryable failures after `maxRetries` retries;
 *   other 4xx at once; a 2xx that is not JSON as `NotJson`), or {@link DeadlineError} once
 *   `deadlineAt` has passed. Absolute URLs are accepted only on the origin of `baseUrl`, so the
 *   token never leaves it.
 */
export function createArmClient(options: ArmClientOptions): ArmClient & RawRequests {
  const baseUrl = (options.baseUrl ?? DEFAULT_ARM_ENDPOINT).replace(/\/+$/, "");
  const origin = new URL(baseUrl).origin;
  const scope = options.scope ?? ARM_SCOPE;
  const httpClient = options.httpClient ?? createDefaultHttpClient();
  const maxRetries = options.maxRetries ?? 6;
  const backoffBaseMs = options.backoffBaseMs ?? 1000;
  const maxBackoffMs = options.maxBackoffMs ?? 60_000;
  const requestTimeoutMs = options.requestTimeoutMs ?? 120_000;
  const tokenTimeoutMs = options.tokenTimeoutMs ?? 60_000;
  const now = options.now ?? Date.now;
  const userAgent = options.userAgent ?? "phi3-finetune-jobs";
  const onRetry = options.onRetry ?? (() => undefined);
  const service = options.service ?? "ARM";
  const issued = new Set<string>();
  const credential = boundedCredential(options.credential, tokenTimeoutMs, issued);
  const attempts = new WeakMap<PipelineRequest, Attempts>();
  const mask = (text: string) => maskRegistered(text, [...issued], REDACTED);
  const remaining = () => (options.deadlineAt === undefined ? Infinity : options.deadlineAt - now());

  /**
   * Inside the library's retry loop, once per attempt. Does what the libraries do not:
   * - bounds the attempt (headers and body) by `requestTimeoutMs` and turns that timeout into an
   *   `ETIMEDOUT` RestError, which the library's exponential strategy retries;
   * - caps a `Retry-After` (any of its three headers) at `maxBackoffMs` and at the time left
   *   before the deadline, by answering `retry-after-ms`, the header the library reads first;
   * - prints one line per retry the library is about to make.
   */
  const attemptPolicy: PipelinePolicy = {
    name: "phi3AttemptPolicy",
    async sendRequest(request, next) {
      const state = attempts.get(request) ?? { count: 0 };
      attempts.set(request, state);
      state.count++;
      const outer = request.abortSignal as AbortSignal | undefined;
      const timer = AbortSignal.timeout(Math.max(1, Math.ceil(Math.min(requestTimeoutMs, remaining()))));
      request.abortSignal = outer ? AbortSignal.any([outer, timer]) : timer;
      const where = `${service} ${request.method} ${pathOf(request.url)}`;
      const last = state.count > maxRetries;
      try {
        const response = await next(request);
        const asked = retryAfterMs(headersOf(response), now());
        if ((response.status === 429 || response.status === 503) && asked !== undefined) {
          const capped = Math.max(0, Math.min(asked, maxBackoffMs, remaining()));
          response.headers.set("retry-after-ms", String(capped));
          if (!last) onRetry(`${where}: HTTP ${response.status}; retry ${state.count}/${maxRetries} in ${capped} ms`);
        } else if (!last && libraryRetries(response, undefined)) {
          onRetry(`${where}: HTTP ${response.status}; retry ${state.count}/${maxRetries} after an exponential backoff`);
        }
        return response;
      } catch (e) {
        if (timer.aborted && !outer?.aborted) {
          const error = new RestError(`no complete answer within ${Math.round(requestTimeoutMs / 100) / 10} s`, { code: "ETIMEDOUT", request });
          if (!last) onRetry(`${where}: ${error.message}; retry ${state.count}/${maxRetries}`);
          throw error;
        }
        if (isRestError(e) && e.code === RestError.PARSE_ERROR && IDEMPOTENT.has(request.method) && !outer?.aborted) {
          // The connection dropped in the middle of the body ("Error reading response as text:
          // aborted"): the library's strategies do not retry PARSE_ERROR, but for an idempotent
          // request (GET, and our PUTs, which name the resource by its content) it is the same
          // fault as a reset before the headers, so it is retried as one.
          const error = new RestError(`the connection dropped while reading the answer (${mask(e.message)})`, { code: "ECONNRESET", request });
          if (!last) onRetry(`${where}: network error (${error.message}); retry ${state.count}/${maxRetries}`);
          throw error;
        }
        if (!last && isRestError(e) && libraryRetries(undefined, e)) {
          onRetry(`${where}: network error (${mask(`${e.code ?? ""} ${e.message}`.trim())}); retry ${state.count}/${maxRetries}`);
        }
        throw e;
      } finally {
        request.abortSignal = outer;
      }
    },
  };

  const pipeline = createEmptyPipeline();
  pipeline.addPolicy(defaultRetryPolicy({ maxRetries, retryDelayInMs: backoffBaseMs, maxRetryDelayInMs: maxBackoffMs }), { phase: "Retry" });
  pipeline.addPolicy(attemptPolicy, { phase: "Retry", afterPolicies: ["defaultRetryPolicy"] });
  pipeline.addPolicy(bearerPolicy(credential, scope, now), { phase: "Sign" });

  function resolveUrl(path: string): string {
    if (/^https?:\/\//i.test(path)) {
      const u = new URL(path);
      if (u.origin !== origin) throw new Error(`refusing to send an ARM token to ${u.origin} (client base is ${origin})`);
      return u.toString();
    }
    return `${baseUrl}${path.startsWith("/") ? "" : "/"}${path}`;
  }

  /** Sends one request through the pipeline; errors before an answer become Deadline/ArmError. */
  async function exchange(method: ArmMethod, path: string, body: string | Uint8Array | undefined, extraHeaders: Record<string, string>): Promise<{ res: PipelineResponse; req: PipelineRequest }> {
    const url = resolveUrl(path);
    const left = remaining();
    const started = now();
    if (left <= 0) throw new DeadlineError(`the deadline passed before ${service} ${method} ${path} could be sent`, 0);
    // The program's deadline for this request, its retries and their waits (the library aborts both).
    const deadline = Number.isFinite(left) ? AbortSignal.timeout(Math.max(1, Math.ceil(left))) : undefined;
    const req = createPipelineRequest({
      url,
      method,
      headers: createHttpHeaders({ accept: "application/json", "user-agent": userAgent, ...extraHeaders }),
      body,
      abortSignal: deadline,
    });
    let res: PipelineResponse;
    try {
      res = await pipeline.sendRequest(httpClient, req);
    } catch (e) {
      const tries = attempts.get(req)?.count ?? 0;
      if (deadline?.aborted) {
        throw new DeadlineError(`the deadline passed during ${service} ${method} ${path} (after ${tries} attempt${tries === 1 ? "" : "s"})`, now() - started);
      }
      if (e instanceof CredentialError) {
        throw new ArmError({
          status: 0,
          code: "CredentialUnavailable",
          armMessage: mask(e.message),
          method,
          path,
          service,
          hint: "Log in with `az login`, or set the ARM_* variables the azure-native provider reads (README: Credentials).",
        });
      }
      if (isRestError(e) || (e as Error)?.name === "AbortError") {
        const err = e as RestError;
        throw new ArmError({ status: 0, code: "NetworkError", armMessage: `${mask(`${err.code ? `${err.code}: ` : ""}${err.message}`)} (after ${tries} attempt${tries === 1 ? "" : "s"})`, method, path, service });
      }
      throw new Error(mask((e as Error)?.message ?? String(e)));
    }
    return { res, req };
  }

  async function request<T>(method: ArmMethod, path: string, body?: unknown): Promise<ArmResponse<T>> {
    const { res, req } = await exchange(method, path, body === undefined ? undefined : JSON.stringify(body), body === undefined ? {} : { "content-type": "application/json" });

    const headers = headersOf(res);
    const token = req.headers.get("authorization")?.replace(/^Bearer\s+/i, "");
    // An answer that echoes the token (some proxies do) must not carry it any further.
    const text = maskRegistered(res.bodyAsText ?? "", [...issued, token], REDACTED);
    let parsed: unknown = undefined;
    let notJson = false;
    if (text.trim() !== "") {
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = text;
        notJson = true;
      }
    }

    if (res.status >= 200 && res.status < 300) {
      if (notJson) {
        throw new ArmError({
          status: res.status,
          code: "NotJson",
          armMessage: `the answer is not JSON (${headers["content-type"] ?? "no content type"}: ${JSON.stringify(text.trim().slice(0, 120))})`,
          method,
          path,
          hint: "A proxy, firewall or captive portal answered instead of Azure Resource Manager; nothing was read from it.",
        });
      }
      return { status: res.status, headers, body: parsed as T, method, path };
    }

    const info = armErrorInfo(parsed);
    const tries = attempts.get(req)?.count ?? 1;
    let hint: string | undefined;
    if (res.status === 401) {
      hint = "The Azure token was rejected: log in again (`az login`) or check the service principal / federated credential.";
    } else if (res.status === 403) {
      hint = "The identity running this script lacks permission on this resource (it needs e.g. Contributor on the workspace; the plan's access section lists what each identity of the stack holds).";
    } else if (libraryRetries(res, undefined) || res.status === 429) {
      hint = `Gave up after ${tries} attempt${tries === 1 ? "" : "s"}.`;
    }
    if (notJson) hint = `${hint ? `${hint} ` : ""}The answer is not JSON (${headers["content-type"] ?? "no content type"}): not Azure Resource Manager's, perhaps a proxy's.`;
    throw new ArmError({
      status: res.status,
      code: info.code ?? (res.status === 401 ? "Unauthorized" : res.status === 403 ? "Forbidden" : `HTTP${res.status}`),
      armMessage: info.message ?? "no error message in the response",
      method,
      path,
      body: parsed,
      hint,
      json: !notJson && parsed !== undefined,
    });
  }

  async function putBytes(path: string, bytes: Uint8Array, extraHeaders: Record<string, string>): Promise<ArmResponse<undefined>> {
    return sendRaw("PUT", path, bytes, extraHeaders);
  }

  async function sendRaw(method: "GET" | "PUT", path: string, bytes: Uint8Array | undefined, extraHeaders: Record<string, string>): Promise<ArmResponse<undefined>> {
    const { res, req } = await exchange(method, path, bytes, extraHeaders);
    const headers = headersOf(res);
    if (res.status >= 200 && res.status < 300) return { status: res.status, headers, body: undefined, method, path };
    const token = req.headers.get("authorization")?.replace(/^Bearer\s+/i, "");
    const hide = (t: string) => maskRegistered(t, [...issued, token], REDACTED);
    const text = hide(res.bodyAsText ?? "");
    // Azure Storage names the error in x-ms-error-code and in an XML body <Error><Code/><Message/>.
    const xml = (tag: string) => new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`).exec(text)?.[1]?.trim();
    const code = hide(headers["x-ms-error-code"] ?? "").trim() || xml("Code") || `HTTP${res.status}`;
    const tries = attempts.get(req)?.count ?? 1;
    const hint =
      res.status === 403
        ? "The identity running pulumi up needs Storage Blob Data Contributor on the container (the stack grants it; a new role assignment takes a few minutes to apply)."
        : libraryRetries(res, undefined) || res.status === 429
          ? `Gave up after ${tries} attempt${tries === 1 ? "" : "s"}.`
          : undefined;
    throw new ArmError({ status: res.status, code, armMessage: xml("Message")?.split("\n")[0] ?? (text.trim().slice(0, 200) || "no error message in the response"), method, path, hint, service });
  }

  return {
    baseUrl,
    putBytes,
    getRaw: (path, headers = {}) => sendRaw("GET", path, undefined, headers),
    request,
    get: (path) => request("GET", path),
    put: (path, body) => request("PUT", path, body),
    patch: (path, body) => request("PATCH", path, body),
    post: (path, body) => request("POST", path, body),
    delete: (path) => request("DELETE", path),
  };
}

function headersOf(res: PipelineResponse): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of res.headers) out[k.toLowerCase()] = v;
  return out;
}

function pathOf(url: string): string {
  const u = new URL(url);
  return `${u.pathname}${u.search}`;
}

/** Options of {@link waitForLongRunningOperation}. */
export interface LroOptions {
  /** Absolute deadline in epoch milliseconds (same clock as `now`). */
  deadlineAt: number;
  /** Poll interval in milliseconds when ARM sends no `Retry-After`; default 5000. */
  pollIntervalMs?: number;
  /** Upper bound of a single wait in milliseconds (caps `Retry-After`); default 60000. */
  maxPollIntervalMs?: number;
  /** Clock in epoch milliseconds; default `Date.now`. */
  now?: () => number;
  /** Sleep in milliseconds; default a real timer. */
  sleep?: (ms: number) => Promise<void>;
  /** Progress lines (status changes). */
  log?: (line: string) => void;
  /** What the operation is, for messages (e.g. `update of endpoint my-ep`). */
  description?: string;
}

/** Result of {@link waitForLongRunningOperation}. */
export interface LroResult {
  /** `Succeeded`, or `Synchronous` when the initial response needed no polling. */
  status: string;
  /** Final body: the last poll's body, or the initial body. */
  body: unknown;
}

function toOperationResponse(r: ArmResponse, url: string): OperationResponse<unknown> {
  return { flatResponse: r.body, rawResponse: { statusCode: r.status, headers: r.headers, body: r.body, request: { method: r.method, url } } };
}

/**
 * Follows an ARM long-running operation started by `initial` (a PUT/PATCH/POST/DELETE answer)
 * with `@azure/core-lro`'s HTTP poller: it picks what to poll (`Azure-AsyncOperation` /
 * `Operation-Location`, else `Location` while 202, else the resource's provisioningState for a
 * PUT) and reads the status. The waits between polls are done here, on the program's clock and
 * under its deadline (core-lro's `pollUntilDone` waits on its own timer and has no deadline):
 * `Retry-After` of the last answer (capped by `maxPollIntervalMs`) or `pollIntervalMs`.
 *
 * @param client - ARM client (polling URLs must be on its origin).
 * @param initial - the response that started the operation.
 * @param options - deadline (epoch ms) and polling settings; see {@link LroOptions}.
 * @returns `{status, body}`.
 * @throws LongRunningOperationError when the operation ends Failed or Canceled (message includes
 *   ARM's error code and message); DeadlineError past `deadlineAt`; ArmError from polling.
 */
export async function waitForLongRunningOperation(client: ArmClient, initial: ArmResponse, options: LroOptions): Promise<LroResult> {
  const now = options.now ?? Date.now;
  const sleep = options.sleep ?? realSleep;
  const pollIntervalMs = options.pollIntervalMs ?? 5000;
  const maxPoll = options.maxPollIntervalMs ?? 60_000;
  const log = options.log ?? (() => undefined);
  const what = options.description ?? `${initial.method} ${initial.path}`;
  const started = now();
  const initialUrl = new URL(initial.path, client.baseUrl).toString();

  let last: ArmResponse = initial;
  // Never awaited itself: a core-lro poller is a thenable whose `then` runs pollUntilDone.
  const poller = createHttpPoller<unknown, OperationState<unknown>>(
    {
      sendInitialRequest: async () => toOperationResponse(initial, initialUrl),
      sendPollRequest: async (path: string) => {
        last = await client.get(path);
        return toOperationResponse(last, path);
      },
    },
    { resolveOnUnsuccessful: true, skipFinalGet: true, intervalInMs: pollIntervalMs },
  );
  await poller.submitted();
  const polled = () => last !== initial;
  let lastStatus = "";
  for (;;) {
    const state = poller.operationState!;
    if (polled()) {
      const raw = (last.body as { status?: unknown } | undefined)?.status;
      const shown = typeof raw === "string" ? raw : state.status === "succeeded" ? "Succeeded" : state.status === "running" ? "InProgress" : state.status;
      if (shown !== lastStatus) {
        log(`${what}: ${shown}`);
        lastStatus = shown;
      }
    }
    if (state.status === "succeeded") return { status: polled() ? "Succeeded" : "Synchronous", body: last.body };
    if (state.status === "failed" || state.status === "canceled") {
      const info = armErrorInfo(last.body);
      const status = state.status === "failed" ? "Failed" : "Canceled";
      throw new LongRunningOperationError(
        status,
        info.code ?? "",
        `${what} ended ${status}${info.code ? `: ${info.code}` : ""}${info.message ? `: ${info.message}` : ""}`,
      );
    }
    const wait = Math.min(maxPoll, retryAfterMs(last.headers, now()) ?? pollIntervalMs);
    if (now() + wait > options.deadlineAt) {
      const elapsed = now() - started;
      throw new DeadlineError(
        `${what} did not finish before the deadline (waited ${Math.round(elapsed / 1000)} s; last status ${lastStatus || "unknown"})`,
        elapsed,
      );
    }
    await sleep(wait);
    await poller.poll();
  }
}

/**
 * Dependencies of the programs `@pulumi/command` runs (`jobs/*.ts`); everything optional
 * except `log`.
 */
export interface ScriptDeps {
  /** Standard output lines. */
  log: (line: string) => void;
  /** Error output lines (default: `log`). */
  error?: (line: string) => void;
  /** Credential (default: {@link credentialFromEnv} of the program's environment). */
  credential?: TokenCredential;
  /** Transport for the ARM client (tests). */
  httpClient?: HttpClient;
  /** Clock in epoch milliseconds; default `Date.now`. */
  now?: () => number;
  /** Sleep in milliseconds; default a real timer. */
  sleep?: (ms: number) => Promise<void>;
  /** Client retry settings (milliseconds); defaults 6 retries, 1000 ms base, 60000 ms cap. */
  maxRetries?: number;
  backoffBaseMs?: number;
  maxBackoffMs?: number;
  /** Time one ARM attempt may take (ms); default 120000. */
  requestTimeoutMs?: number;
  /** Time getting one token may take (ms); default 60000. */
  tokenTimeoutMs?: number;
}

/** Environment of a program: variable name → value. */
export type Env = Record<string, string | undefined>;

/**
 * Names of `names` that are unset or blank in `env`, in the order given.
 *
 * @param env - environment.
 * @param names - required variable names.
 */
export function missingEnv(env: Env, names: readonly string[]): string[] {
  return names.filter((k) => !env[k] || env[k]!.trim() === "");
}

/**
 * Reads a duration in seconds from `env[name]`.
 *
 * @param env - environment.
 * @param name - variable name.
 * @param dflt - seconds used when the variable is unset or blank.
 * @param min - smallest accepted value in seconds (default: anything > 0).
 * @returns the number of seconds (fractions allowed).
 * @throws Error `<name> must be a number of seconds ... (got "...")`.
 */
export function positiveSecondsFromEnv(env: Env, name: string, dflt: number, min?: number): number {
  const raw = env[name];
  if (raw === undefined || raw.trim() === "") return dflt;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a positive number of seconds (got "${raw}")`);
  if (min !== undefined && n < min) throw new Error(`${name} must be at least ${min} seconds (got "${raw}")`);
  return n;
}

/**
 * The seconds of a program's deadline: {@link positiveSecondsFromEnv} of the variable and default
 * its spec declares (lib/cli.ts `JobSpec.deadline`, which also ends the process at it), so each
 * is written once.
 *
 * @throws Error `<VARIABLE> must be a positive number of seconds (got "...")`.
 */
export function deadlineSecondsFromEnv(env: Env, deadline: { variable: string; defaultSeconds: number }): number {
  return positiveSecondsFromEnv(env, deadline.variable, deadline.defaultSeconds);
}

/**
 * Reads `ARM_ENDPOINT`: `undefined` when unset or blank (the client then uses
 * {@link DEFAULT_ARM_ENDPOINT}), else the trimmed value.
 *
 * @param env - environment.
 * @throws Error `ARM_ENDPOINT must be an https URL (got "...")` when it is not one: bearer
 *   tokens are sent over TLS only.
 */
export function armEndpointFromEnv(env: Env): string | undefined {
  const baseUrl = env.ARM_ENDPOINT && env.ARM_ENDPOINT.trim() !== "" ? env.ARM_ENDPOINT.trim() : undefined;
  if (baseUrl !== undefined && !/^https:\/\/[^/]+/.test(baseUrl)) {
    throw new Error(`ARM_ENDPOINT must be an https URL (got "${baseUrl}")`);
  }
  return baseUrl;
}

/**
 * Builds the ARM client of a program from its environment and dependencies: base URL from
 * `ARM_ENDPOINT` ({@link armEndpointFromEnv}), the credential `deps.credential` or the one the
 * environment names (lib/credential.ts), injected transport, clock and retry settings, the
 * program's deadline, and retry lines sent to `deps.error` (default `deps.log`).
 *
 * @param env - environment.
 * @param deps - see {@link ScriptDeps}.
 * @param userAgent - `User-Agent` header value, e.g. `phi3-finetune/wait-for-job`.
 * @param deadlineAt - the program's deadline (epoch ms on `deps.now`), if it has one.
 * @param service - another service than ARM on the same machinery (Blob Storage: its scope,
 *   base URL and name in messages); default ARM at `ARM_ENDPOINT`.
 * @throws Error when `ARM_ENDPOINT` is not an https URL.
 */
export function armClientFromEnv(
  env: Env,
  deps: ScriptDeps,
  userAgent: string,
  deadlineAt?: number,
  service: { scope?: string; baseUrl?: string; service?: string } = {},
): ArmClient {
  const error = deps.error ?? deps.log;
  registerEnvSecrets(env);
  return createArmClient({
    baseUrl: service.baseUrl ?? armEndpointFromEnv(env),
    scope: service.scope,
    service: service.service,
    credential: deps.credential ?? defaultCredential(env),
    httpClient: deps.httpClient,
    now: deps.now,
    maxRetries: deps.maxRetries,
    backoffBaseMs: deps.backoffBaseMs,
    maxBackoffMs: deps.maxBackoffMs,
    requestTimeoutMs: deps.requestTimeoutMs,
    tokenTimeoutMs: deps.tokenTimeoutMs,
    deadlineAt,
    userAgent,
    onRetry: (line) => error(line),
  });
}

/**
 * The credential of the programs and commands: the one the environment names, chosen as the
 * azure-native provider chooses its own (lib/credential.ts): OIDC, client secret or
 * certificate, managed identity, else the developer's `az login` / `azd` login.
 *
 * @param env - the program's environment.
 * @throws CredentialConfigError when a chosen method lacks a setting (programs exit 2).
 */
export function defaultCredential(env: Env = process.env): TokenCredential {
  return credentialFromEnv(env).credential;
}
