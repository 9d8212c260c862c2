/**
 * A client of the MLflow tracking REST API (`/api/2.0/mlflow/...`, mlflow.org/docs/latest/rest-api.html)
 * for the programs `pulumi up` runs (jobs/quality-gate.ts).
 *
 * On Azure the workspace is the tracking server: `https://<region>.api.azureml.ms/mlflow/v1.0/
 * subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.MachineLearningServices/workspaces/<ws>`
 * ({@link azureTrackingUri}), called with a Microsoft Entra token for the ARM resource
 * (`https://management.azure.com`, scope {@link ARM_SCOPE}); Azure/azureml-examples,
 * sdk/python/using-mlflow/using-rest-api/using_mlflow_rest_api.ipynb builds exactly this URL and
 * requests the token with `resource=https://management.azure.com`. Such a URI gets the ARM
 * client of lib/arm.ts (retries, deadline, token masking, TLS only).
 *
 * A tracking server on this machine (`mlflow server --host 127.0.0.1`, what the offline tests
 * and `npm run train:local` use) has no authentication: an `http://` URI is accepted only on a
 * loopback host, and no token is ever sent to it.
 */
import { createDefaultHttpClient, createEmptyPipeline, createHttpHeaders, createPipelineRequest, defaultRetryPolicy, type HttpClient } from "@azure/core-rest-pipeline";
import { ARM_SCOPE, ArmError, DeadlineError, createArmClient, type ArmClient, type ArmMethod, type ArmResponse } from "./arm";
import type { TokenCredential } from "@azure/identity";

/**
 * The MLflow tracking URI of an Azure ML workspace over HTTPS (the `azureml://` form with the
 * scheme `https://`, as Azure/azureml-examples' MLflow REST notebook and Microsoft's Bicep
 * samples build it).
 *
 * @param location - Azure region name, e.g. `eastus2`.
 */
export function azureTrackingUri(location: string, ws: { subscriptionId: string; resourceGroup: string; workspace: string }): string {
  return (
    `https://${location}.api.azureml.ms/mlflow/v1.0/subscriptions/${ws.subscriptionId}` +
    `/resourceGroups/${ws.resourceGroup}/providers/Microsoft.MachineLearningServices/workspaces/${ws.workspace}`
  );
}

/** Whether `uri` is `http://` on a loopback host (127.0.0.0/8, ::1, localhost). */
export function isLoopbackHttp(uri: string): boolean {
  let u: URL;
  try {
    u = new URL(uri);
  } catch {
    return false;
  }
  return u.protocol === "http:" && (/^127\.\d+\.\d+\.\d+$/.test(u.hostname) || u.hostname === "localhost" || u.hostname === "[::1]");
}

/**
 * Checks a tracking URI: https, or http on a loopback host.
 * @throws Error naming the value and what is allowed.
 */
export function checkTrackingUri(uri: string, name = "MLFLOW_TRACKING_URI"): string {
  const ok = /^https:\/\/[^/]+/.test(uri) || isLoopbackHttp(uri);
  if (!ok) throw new Error(`${name} must be an https URL (an Azure ML workspace's tracking URI), or http on 127.0.0.1 for a local mlflow server (got "${uri}")`);
  return uri.replace(/\/+$/, "");
}

/** Options of {@link createTrackingClient}. */
export interface TrackingClientOptions {
  /** The tracking URI (checked with {@link checkTrackingUri}). */
  uri: string;
  /** Entra credential for an https URI (never used for a loopback one). */
  credential: TokenCredential;
  httpClient?: HttpClient;
  now?: () => number;
  /** Absolute deadline (epoch ms on `now`). */
  deadlineAt?: number;
  maxRetries?: number;
  backoffBaseMs?: number;
  onRetry?: (line: string) => void;
}

/**
 * A client of the tracking server with the {@link ArmClient} interface (paths relative to the
 * tracking URI, errors as {@link ArmError}, the deadline as {@link DeadlineError}).
 */
export function createTrackingClient(o: TrackingClientOptions): ArmClient {
  const uri = checkTrackingUri(o.uri);
  if (!isLoopbackHttp(uri)) {
    return createArmClient({
      baseUrl: uri,
      credential: o.credential,
      scope: ARM_SCOPE,
      httpClient: o.httpClient,
      now: o.now,
      deadlineAt: o.deadlineAt,
      maxRetries: o.maxRetries,
      backoffBaseMs: o.backoffBaseMs,
      userAgent: "phi3-finetune/quality-gate",
      onRetry: o.onRetry,
    });
  }
  // Loopback: the same library pipeline without the bearer policy (nothing to authenticate to).
  const httpClient = o.httpClient ?? createDefaultHttpClient();
  const now = o.now ?? Date.now;
  const pipeline = createEmptyPipeline();
  pipeline.addPolicy(defaultRetryPolicy({ maxRetries: o.maxRetries ?? 3, retryDelayInMs: o.backoffBaseMs ?? 500 }), { phase: "Retry" });
  async function request<T>(method: ArmMethod, path: string, body?: unknown): Promise<ArmResponse<T>> {
    const left = o.deadlineAt === undefined ? 120_000 : o.deadlineAt - now();
    if (left <= 0) throw new DeadlineError(`the deadline passed before ${method} ${path} could be sent`, 0);
    const req = createPipelineRequest({
      url: `${uri}${path.startsWith("/") ? "" : "/"}${path}`,
      method,
      headers: createHttpHeaders({ accept: "application/json", ...(body === undefined ? {} : { "content-type": "application/json" }) }),
      body: body === undefined ? undefined : JSON.stringify(body),
      abortSignal: AbortSignal.timeout(Math.max(1, Math.ceil(left))),
      // Plain http is allowed for this loopback client only (checkTrackingUri), and carries no token.
      allowInsecureConnection: true,
    });
    let res;
    try {
      res = await pipeline.sendRequest(httpClient, req);
    } catch (e) {
      throw new ArmError({ status: 0, code: "NetworkError", armMessage: (e as Error)?.message ?? String(e), method, path });
    }
    const text = res.bodyAsText ?? "";
    let parsed: unknown = undefined;
    let json = true;
    try {
      parsed = text.trim() === "" ? undefined : JSON.parse(text);
    } catch {
      parsed = text;
      json = false;
    }
    if (res.status >= 200 && res.status < 300 && json) return { status: res.status, headers: {}, body: parsed as T, method, path };
    const info = mlflowErrorInfo(parsed);
    throw new ArmError({ status: res.status, code: info.code ?? `HTTP${res.status}`, armMessage: info.message ?? (json ? "no error message" : "the answer is not JSON"), method, path, body: parsed, json });
  }
  return {
    baseUrl: uri,
    request,
    get: (p) => request("GET", p),
    put: (p, b) => request("PUT", p, b),
    patch: (p, b) => request("PATCH", p, b),
    post: (p, b) => request("POST", p, b),
    delete: (p) => request("DELETE", p),
    // The tracking API takes JSON only.
    putBytes: async (p) => {
      throw new ArmError({ status: 0, code: "NotSupported", armMessage: "the MLflow tracking client sends JSON only", method: "PUT", path: p });
    },
  };
}

/** `{error_code, message}` of an MLflow error body (`{"error_code": "RESOURCE_DOES_NOT_EXIST", "message": ...}`). */
export function mlflowErrorInfo(body: unknown): { code?: string; message?: string } {
  if (!body || typeof body !== "object") return typeof body === "string" && body.trim() ? { message: body.trim().slice(0, 300) } : {};
  const b = body as Record<string, unknown>;
  return { code: typeof b.error_code === "string" ? b.error_code : undefined, message: typeof b.message === "string" ? b.message : undefined };
}

/** What the gate reads of a run: its id, experiment and latest metric values. */
export interface RunMetrics {
  runId: string;
  experimentId: string;
  status: string;
  /** Latest value of each metric (`run.data.metrics`, which holds the last logged value per key). */
  metrics: Record<string, number>;
}

function toRunMetrics(run: unknown): RunMetrics {
  const r = (run ?? {}) as { info?: Record<string, unknown>; data?: { metrics?: unknown } };
  const metrics: Record<string, number> = {};
  if (Array.isArray(r.data?.metrics)) {
    for (const m of r.data!.metrics as { key?: unknown; value?: unknown }[]) {
      if (typeof m?.key === "string" && typeof m.value === "number" && Number.isFinite(m.value)) metrics[m.key] = m.value;
    }
  }
  return {
    runId: String(r.info?.run_id ?? r.info?.run_uuid ?? ""),
    experimentId: String(r.info?.experiment_id ?? ""),
    status: String(r.info?.status ?? ""),
    metrics,
  };
}

/**
 * `GET /api/2.0/mlflow/runs/get?run_id=<id>`.
 * @throws ArmError (a missing run is 404 `RESOURCE_DOES_NOT_EXIST`), DeadlineError.
 */
export async function getRun(client: ArmClient, runId: string): Promise<RunMetrics> {
  const res = await client.get<{ run?: unknown }>(`/api/2.0/mlflow/runs/get?run_id=${encodeURIComponent(runId)}`);
  return toRunMetrics(res.body?.run);
}

/**
 * The child runs of `parent` (`POST /api/2.0/mlflow/runs/search` with
 * `tags.mlflow.parentRunId = '<parent>'`): where a pipeline job's steps log their metrics.
 */
export async function childRuns(client: ArmClient, parent: RunMetrics): Promise<RunMetrics[]> {
  const res = await client.post<{ runs?: unknown[] }>("/api/2.0/mlflow/runs/search", {
    experiment_ids: [parent.experimentId],
    filter: `tags.mlflow.parentRunId = '${parent.runId.replace(/'/g, "")}'`,
    max_results: 100,
  });
  return (res.body?.runs ?? []).map(toRunMetrics);
}

/**
 * The value of `metric` for a run: on the run itself, else on its child runs (the last one
 * that has it, by search order: newest first).
 *
 * @returns the value and where it was found, or `undefined` when no run has it.
 */
export async function runMetric(client: ArmClient, runId: string, metric: string): Promise<{ value: number; runId: string } | undefined> {
  const run = await getRun(client, runId);
  if (run.metrics[metric] !== undefined) return { value: run.metrics[metric], runId: run.runId || runId };
  if (!run.experimentId) return undefined;
  for (const child of await childRuns(client, run)) {
    if (child.metrics[metric] !== undefined) return { value: child.metrics[metric], runId: child.runId };
  }
  return undefined;
}
