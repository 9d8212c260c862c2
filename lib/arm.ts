/**
 * A small Azure Resource Manager (ARM) REST client used by the programs that
 * `@pulumi/command` runs (`jobs/wait-for-job.ts`, `jobs/set-traffic.ts`).
 *
 * - Bearer tokens come from a `TokenCredential` (scope `https://management.azure.com/.default`),
 *   are cached until shortly before they expire and are never printed, logged or put in errors.
 * - 429, 5xx and network errors are retried with exponential backoff and jitter, honouring
 *   `Retry-After` (seconds or HTTP date), capped by `maxBackoffMs`.
 * - Other non-2xx answers become an {@link ArmError} carrying the HTTP status, the ARM error
 *   code and message (from the `{ "error": { "code", "message" } }` body) and the request path.
 * - {@link waitForLongRunningOperation} follows ARM long-running operations
 *   (`Azure-AsyncOperation` or `Location` headers) until a terminal status or a deadline.
 *
 * Azure ML paths follow REST API version {@link AML_API_VERSION} (`2025-12-01`).
 */
import type { AccessToken, TokenCredential } from "@azure/identity";

/** Azure ML (Microsoft.MachineLearningServices) REST API version every path here follows. */
export const AML_API_VERSION = "2025-12-01";

/** Exit codes shared by the programs in jobs/ that @pulumi/command runs. */
export const EXIT_OK = 0;
/** The job or operation failed (job Failed/Canceled/NotResponding, traffic update rejected). */
export const EXIT_FAILED = 1;
/** Missing or invalid environment variables. */
export const EXIT_CONFIG = 2;
/** The deadline passed first. */
export const EXIT_DEADLINE = 3;
/** ARM or credential error (401/403, not found, retries exhausted). */
export const EXIT_ARM = 4;

/** Default ARM endpoint (public cloud). */
export const DEFAULT_ARM_ENDPOINT = "https://management.azure.com";

/** OAuth scope requested for ARM tokens. */
export const ARM_SCOPE = "https://management.azure.com/.default";

/** HTTP methods the client sends. */
export type ArmMethod = "GET" | "PUT" | "PATCH" | "POST" | "DELETE";

/** Minimal `fetch` signature the client needs (the global `fetch` of Node 20 fits). */
export type FetchLike = (url: string, init: {
  method: string;
  headers: Record<string, string>;
  body?: string;
  signal?: AbortSignal;
}) => Promise<Response>;

/** Options of {@link createArmClient}. */
export interface ArmClientOptions {
  /** ARM base URL, default `https://management.azure.com` (no trailing slash needed). */
  baseUrl?: string;
  /** Source of bearer tokens, e.g. `DefaultAzureCredential`. */
  credential: TokenCredential;
  /** OAuth scope, default {@link ARM_SCOPE}. */
  scope?: string;
  /** `fetch` implementation, default the global `fetch`. */
  fetchImpl?: FetchLike;
  /** How many times a retryable failure (429, 5xx, network error) is retried; default 6. */
  maxRetries?: number;
  /** Backoff base in milliseconds: attempt n waits about `backoffBaseMs * 2^n`; default 1000. */
  backoffBaseMs?: number;
  /** Upper bound in milliseconds of any single wait, including `Retry-After`; default 60000. */
  maxBackoffMs?: number;
  /** Per-request timeout in milliseconds (a timeout counts as a network error); default 120000. */
  requestTimeoutMs?: number;
  /** Sleep function (milliseconds), injectable for tests. */
  sleep?: (ms: number) => Promise<void>;
  /** Clock in epoch milliseconds, used for token expiry and `Retry-After` dates; default `Date.now`. */
  now?: () => number;
  /** Random number in [0, 1) used for jitter; default `Math.random`. */
  random?: () => number;
  /** `User-Agent` header value. */
  userAgent?: string;
  /** Called with one line per retry (never contains the token). */
  onRetry?: (line: string) => void;
}

/** A parsed ARM answer. `body` is the parsed JSON, or `undefined` for an empty body. */
export interface ArmResponse<T = unknown> {
  /** HTTP status code. */
  status: number;
  /** Response headers, names lower-cased. */
  headers: Record<string, string>;
  /** Parsed JSON body (`undefined` when empty; the raw text when it is not JSON). */
  body: T;
  /** HTTP method of the request that produced this response. */
  method: ArmMethod;
  /** Path (or same-origin absolute URL) that was requested. */
  path: string;
}

/**
 * Error raised for a non-2xx ARM answer (after retries), a credential failure (status 0,
 * code `CredentialUnavailable`), or exhausted retries on network errors (status 0, code
 * `NetworkError`). Its message never contains the bearer token.
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

  /**
   * @param init - status, ARM code and message, method, path and the parsed body.
   */
  constructor(init: { status: number; code: string; armMessage: string; method: string; path: string; body?: unknown; hint?: string }) {
    const hint = init.hint ? ` ${init.hint}` : "";
    super(`ARM ${init.method} ${init.path} failed: HTTP ${init.status} ${init.code}: ${init.armMessage}${hint}`);
    this.name = "ArmError";
    this.status = init.status;
    this.code = init.code;
    this.armMessage = init.armMessage;
    this.method = init.method;
    this.path = init.path;
    this.body = init.body;
  }
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

/** Error raised when a wait passes its deadline. */
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
  /** Sends any request; throws {@link ArmError} on non-2xx after retries. */
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
}

/** Sleeps `ms` milliseconds with a real timer. */
export function realSleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}

/**
 * Parses a `Retry-After` header value into milliseconds.
 *
 * @param value - header value: delay in seconds (`"120"`, decimals accepted) or an HTTP date.
 * @param nowMs - current time in epoch milliseconds (for the date form).
 * @returns the delay in milliseconds (>= 0), or `undefined` when absent or unparsable.
 */
export function parseRetryAfter(value: string | undefined | null, nowMs: number): number | undefined {
  if (value === undefined || value === null) return undefined;
  const v = value.trim();
  if (v === "") return undefined;
  if (/^\d+(\.\d+)?$/.test(v)) return Math.round(Number(v) * 1000);
  const date = Date.parse(v);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - nowMs);
}

/**
 * Computes the exponential backoff delay with "equal jitter" for a retry.
 *
 * @param attempt - 0 for the first retry, 1 for the second, ...
 * @param baseMs - base delay in milliseconds.
 * @param maxMs - cap in milliseconds.
 * @param random - number in [0, 1).
 * @returns milliseconds in `[d/2, d]` where `d = min(maxMs, baseMs * 2^attempt)`.
 */
export function backoffDelay(attempt: number, baseMs: number, maxMs: number, random: number): number {
  const d = Math.min(maxMs, baseMs * Math.pow(2, attempt));
  return Math.round(d / 2 + (d / 2) * random);
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

/**
 * Returns `new DefaultAzureCredential()` from `@azure/identity` (loaded lazily so tests that
 * inject a fake credential never load it). Note: it does not read `ARM_*` variables; it reads
 * `AZURE_CLIENT_ID`/`AZURE_TENANT_ID`/..., workload identity, managed identity or `az login`.
 */
export function defaultCredential(): TokenCredential {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const identity = require("@azure/identity") as typeof import("@azure/identity");
  return new identity.DefaultAzureCredential();
}

function isRetryableStatus(status: number): boolean {
  return status === 429 || (status >= 500 && status <= 599);
}

function headersToRecord(h: Headers): Record<string, string> {
  const out: Record<string, string> = {};
  h.forEach((value, key) => {
    out[key.toLowerCase()] = value;
  });
  return out;
}

function redact(text: string, secret: string | undefined): string {
  if (!secret || secret.length < 8) return text;
  return text.split(secret).join("[redacted]");
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

/**
 * Creates an ARM REST client.
 *
 * @param options - see {@link ArmClientOptions}; durations are milliseconds.
 * @returns an {@link ArmClient}. Its methods resolve with `{status, headers, body}` for 2xx
 *   answers and reject with {@link ArmError} otherwise: 401/403 immediately (after one token
 *   refresh for 401), 429/5xx/network errors after `maxRetries` retries, other 4xx at once.
 *   Absolute URLs are accepted only on the origin of `baseUrl` (so the token never leaves it).
 */
export function createArmClient(options: ArmClientOptions): ArmClient {
  const baseUrl = (options.baseUrl ?? DEFAULT_ARM_ENDPOINT).replace(/\/+$/, "");
  const origin = new URL(baseUrl).origin;
  const scope = options.scope ?? ARM_SCOPE;
  const fetchImpl: FetchLike = options.fetchImpl ?? ((url, init) => fetch(url, init));
  const maxRetries = options.maxRetries ?? 6;
  const backoffBaseMs = options.backoffBaseMs ?? 1000;
  const maxBackoffMs = options.maxBackoffMs ?? 60_000;
  const requestTimeoutMs = options.requestTimeoutMs ?? 120_000;
  const sleep = options.sleep ?? realSleep;
  const now = options.now ?? Date.now;
  const random = options.random ?? Math.random;
  const userAgent = options.userAgent ?? "phi3-finetune-jobs";
  const onRetry = options.onRetry ?? (() => undefined);

  let cached: AccessToken | undefined;
  let lastToken: string | undefined;

  async function getToken(method: string, path: string, force: boolean): Promise<string> {
    const t = now();
    if (!force && cached && cached.expiresOnTimestamp - 5 * 60_000 > t &&
      (cached.refreshAfterTimestamp === undefined || cached.refreshAfterTimestamp > t)) {
      return cached.token;
    }
    let token: AccessToken | null;
    try {
      token = await options.credential.getToken(scope);
    } catch (err) {
      const e = err as Error;
      throw new ArmError({
        status: 0,
        code: "CredentialUnavailable",
        armMessage: `could not get an Azure token for ${scope}: ${e?.name ?? "Error"}: ${redact(String(e?.message ?? e), lastToken)}`,
        method,
        path,
        hint: "Log in with `az login` or set AZURE_CLIENT_ID/AZURE_TENANT_ID (DefaultAzureCredential does not read ARM_* variables).",
      });
    }
    if (!token || !token.token) {
      throw new ArmError({ status: 0, code: "CredentialUnavailable", armMessage: `the credential returned no token for ${scope}`, method, path });
    }
    cached = token;
    lastToken = token.token;
    return token.token;
  }

  function resolveUrl(path: string): string {
    if (/^https?:\/\//i.test(path)) {
      const u = new URL(path);
      if (u.origin !== origin) {
        throw new Error(`refusing to send an ARM token to ${u.origin} (client base is ${origin})`);
      }
      return u.toString();
    }
    return `${baseUrl}${path.startsWith("/") ? "" : "/"}${path}`;
  }

  async function request<T>(method: ArmMethod, path: string, body?: unknown): Promise<ArmResponse<T>> {
    const url = resolveUrl(path);
    const payload = body === undefined ? undefined : JSON.stringify(body);
    let refreshedAfter401 = false;
    let attempt = 0;
    for (;;) {
      const token = await getToken(method, path, false);
      const headers: Record<string, string> = {
        authorization: `Bearer ${token}`,
        accept: "application/json",
        "user-agent": userAgent,
      };
      if (payload !== undefined) headers["content-type"] = "application/json";

      let res: Response;
      try {
        res = await fetchImpl(url, { method, headers, body: payload, signal: AbortSignal.timeout(requestTimeoutMs) });
      } catch (err) {
        const e = err as Error;
        const what = redact(`${e?.name ?? "Error"}: ${e?.message ?? String(e)}`, token);
        if (attempt >= maxRetries) {
          throw new ArmError({ status: 0, code: "NetworkError", armMessage: `${what} (after ${attempt + 1} attempts)`, method, path });
        }
        const delay = backoffDelay(attempt, backoffBaseMs, maxBackoffMs, random());
        onRetry(`ARM ${method} ${path}: network error (${what}); retry ${attempt + 1}/${maxRetries} in ${delay} ms`);
        attempt++;
        await sleep(delay);
        continue;
      }

      const resHeaders = headersToRecord(res.headers);
      // An answer that echoes the token (some proxies do) must not carry it any further.
      const text = redact(await res.text(), token);
      let parsed: unknown = undefined;
      if (text.trim() !== "") {
        try {
          parsed = JSON.parse(text);
        } catch {
          parsed = text;
        }
      }

      if (res.status >= 200 && res.status < 300) {
        return { status: res.status, headers: resHeaders, body: parsed as T, method, path };
      }

      if (res.status === 401 && !refreshedAfter401) {
        // The cached token may have been revoked or expired early: get a fresh one once.
        refreshedAfter401 = true;
        cached = undefined;
        await getToken(method, path, true);
        continue;
      }

      if (isRetryableStatus(res.status) && attempt < maxRetries) {
        const retryAfterMs = Number(resHeaders["retry-after-ms"] ?? resHeaders["x-ms-retry-after-ms"] ?? NaN);
        const retryAfter = Number.isFinite(retryAfterMs) && retryAfterMs >= 0
          ? retryAfterMs
          : parseRetryAfter(resHeaders["retry-after"], now());
        const delay = retryAfter !== undefined
          ? Math.min(maxBackoffMs, retryAfter)
          : backoffDelay(attempt, backoffBaseMs, maxBackoffMs, random());
        onRetry(`ARM ${method} ${path}: HTTP ${res.status}; retry ${attempt + 1}/${maxRetries} in ${delay} ms`);
        attempt++;
        await sleep(delay);
        continue;
      }

      const info = armErrorInfo(parsed);
      let hint: string | undefined;
      if (res.status === 401) {
        hint = "The Azure token was rejected: log in again (`az login`) or check the service principal / federated credential.";
      } else if (res.status === 403) {
        hint = "The identity running this script lacks permission on this resource (it needs e.g. Contributor or AzureML Data Scientist on the workspace).";
      } else if (isRetryableStatus(res.status)) {
        hint = `Gave up after ${attempt + 1} attempts.`;
      }
      throw new ArmError({
        status: res.status,
        code: info.code ?? (res.status === 401 ? "Unauthorized" : res.status === 403 ? "Forbidden" : `HTTP${res.status}`),
        armMessage: redact(info.message ?? (res.statusText || "no error message in the response"), token),
        method,
        path,
        body: parsed,
        hint,
      });
    }
  }

  return {
    baseUrl,
    request,
    get: (path) => request("GET", path),
    put: (path, body) => request("PUT", path, body),
    patch: (path, body) => request("PATCH", path, body),
    post: (path, body) => request("POST", path, body),
    delete: (path) => request("DELETE", path),
  };
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
  /** `Succeeded`, or `Synchronous` when the initial response had no operation header. */
  status: string;
  /** Final body: the operation status body, the `Location` final answer, or the initial body. */
  body: unknown;
}

/**
 * Follows an ARM long-running operation started by `initial` (a PUT/PATCH/POST/DELETE answer).
 *
 * With an `Azure-AsyncOperation` header, polls that URL until its `status` is `Succeeded`,
 * `Failed` or `Canceled`. Otherwise, with a `Location` header, polls it while it answers 202 and
 * returns the first other 2xx answer. Without either header the operation was synchronous.
 * Waits `Retry-After` (capped by `maxPollIntervalMs`) or `pollIntervalMs` between polls.
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

  const asyncUrl = initial.headers["azure-asyncoperation"];
  const locationUrl = initial.headers["location"];
  if (!asyncUrl && !locationUrl) return { status: "Synchronous", body: initial.body };

  let last: ArmResponse = initial;
  let lastStatus = "";
  for (;;) {
    const retryAfter = parseRetryAfter(last.headers["retry-after"], now());
    const wait = Math.min(maxPoll, retryAfter ?? pollIntervalMs);
    if (now() + wait > options.deadlineAt) {
      const elapsed = now() - started;
      throw new DeadlineError(
        `${what} did not finish before the deadline (waited ${Math.round(elapsed / 1000)} s; last status ${lastStatus || "unknown"})`,
        elapsed,
      );
    }
    await sleep(wait);

    if (asyncUrl) {
      last = await client.get(asyncUrl);
      const body = (last.body ?? {}) as Record<string, unknown>;
      const status = typeof body.status === "string" ? body.status : "Unknown";
      if (status !== lastStatus) {
        log(`${what}: ${status}`);
        lastStatus = status;
      }
      const s = status.toLowerCase();
      if (s === "succeeded") return { status: "Succeeded", body };
      if (s === "failed" || s === "canceled" || s === "cancelled") {
        const info = armErrorInfo(body);
        throw new LongRunningOperationError(
          status,
          info.code ?? "",
          `${what} ended ${status}${info.code ? `: ${info.code}` : ""}${info.message ? `: ${info.message}` : ""}`,
        );
      }
    } else {
      last = await client.get(locationUrl as string);
      if (last.status !== 202) return { status: "Succeeded", body: last.body };
      if (lastStatus !== "InProgress") {
        log(`${what}: InProgress`);
        lastStatus = "InProgress";
      }
    }
  }
}

/**
 * Dependencies of the programs `@pulumi/command` runs (`jobs/wait-for-job.ts`,
 * `jobs/set-traffic.ts`, `jobs/submit-job.ts`); everything optional except `log`.
 */
export interface ScriptDeps {
  /** Standard output lines. */
  log: (line: string) => void;
  /** Error output lines (default: `log`). */
  error?: (line: string) => void;
  /** Credential (default DefaultAzureCredential). */
  credential?: TokenCredential;
  /** fetch implementation for the ARM client. */
  fetchImpl?: FetchLike;
  /** Clock in epoch milliseconds; default `Date.now`. */
  now?: () => number;
  /** Sleep in milliseconds; default a real timer. */
  sleep?: (ms: number) => Promise<void>;
  /** Client retry settings (milliseconds); defaults 6 retries, 1000 ms base, 60000 ms cap. */
  maxRetries?: number;
  backoffBaseMs?: number;
  maxBackoffMs?: number;
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
 * @returns the number of seconds (> 0, fractions allowed).
 * @throws Error `<name> must be a positive number of seconds (got "...")`.
 */
export function positiveSecondsFromEnv(env: Env, name: string, dflt: number): number {
  const raw = env[name];
  if (raw === undefined || raw.trim() === "") return dflt;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a positive number of seconds (got "${raw}")`);
  return n;
}

/**
 * Reads `ARM_ENDPOINT`: `undefined` when unset or blank (the client then uses
 * {@link DEFAULT_ARM_ENDPOINT}), else the trimmed value.
 *
 * @param env - environment.
 * @throws Error `ARM_ENDPOINT must be an http(s) URL (got "...")` when it is not one.
 */
export function armEndpointFromEnv(env: Env): string | undefined {
  const baseUrl = env.ARM_ENDPOINT && env.ARM_ENDPOINT.trim() !== "" ? env.ARM_ENDPOINT.trim() : undefined;
  if (baseUrl !== undefined && !/^https?:\/\/[^/]+/.test(baseUrl)) {
    throw new Error(`ARM_ENDPOINT must be an http(s) URL (got "${baseUrl}")`);
  }
  return baseUrl;
}

/**
 * Builds the ARM client of a program from its environment and dependencies: base URL from
 * `ARM_ENDPOINT` ({@link armEndpointFromEnv}), credential `deps.credential` or
 * {@link defaultCredential}, injected fetch/clock/sleep and retry settings, and retry lines
 * sent to `deps.error` (default `deps.log`).
 *
 * @param env - environment.
 * @param deps - see {@link ScriptDeps}.
 * @param userAgent - `User-Agent` header value, e.g. `phi3-finetune/wait-for-job`.
 * @throws Error when `ARM_ENDPOINT` is not an http(s) URL.
 */
export function armClientFromEnv(env: Env, deps: ScriptDeps, userAgent: string): ArmClient {
  const error = deps.error ?? deps.log;
  return createArmClient({
    baseUrl: armEndpointFromEnv(env),
    credential: deps.credential ?? defaultCredential(),
    fetchImpl: deps.fetchImpl,
    sleep: deps.sleep,
    now: deps.now,
    maxRetries: deps.maxRetries,
    backoffBaseMs: deps.backoffBaseMs,
    maxBackoffMs: deps.maxBackoffMs,
    userAgent,
    onRetry: (line) => error(line),
  });
}
