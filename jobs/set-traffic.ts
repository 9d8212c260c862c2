/**
 * Sets (or releases) the live and mirror traffic of an Azure ML managed online endpoint.
 * `@pulumi/command` runs it after the online deployments exist (an endpoint cannot name a
 * deployment that does not exist yet), and with `release` before Pulumi deletes deployments
 * (a deployment must have 0 traffic before it is deleted):
 *
 *   npx tsx jobs/set-traffic.ts apply
 *   npx tsx jobs/set-traffic.ts release
 *
 * Environment: AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP, AZUREML_WORKSPACE, AZUREML_ENDPOINT
 * (required); TRAFFIC (JSON object deployment → integer percent; required for apply),
 * MIRROR_TRAFFIC (JSON object, optional), MANAGED_DEPLOYMENTS (JSON array; required for
 * release), TRAFFIC_DEADLINE_SECONDS (default 3600), TRAFFIC_POLL_SECONDS (default 15),
 * ARM_ENDPOINT (default https://management.azure.com). Credentials: DefaultAzureCredential.
 *
 * Exit codes (lib/cli.ts): 0 done (or nothing to change); 1 failure (deployment Failed, endpoint
 * missing in apply, update rejected); 2 invalid configuration; 3 deadline passed (with the last
 * state seen); 4 ARM or credential error (401/403, an answer that is not JSON, retries exhausted).
 *
 * Safety property: a PUT never gives live or mirror traffic > 0 to a deployment that was not
 * seen with provisioningState Succeeded immediately before the PUT.
 *
 * Follows Azure ML REST API 2025-12-01 (onlineEndpoints / deployments).
 */
import {
  AML_API_VERSION,
  ArmError,
  isArmNotFound,
  DeadlineError,
  LongRunningOperationError,
  EXIT_ARM,
  EXIT_CONFIG,
  EXIT_DEADLINE,
  EXIT_FAILED,
  EXIT_OK,
  armClientFromEnv,
  deadlineSecondsFromEnv,
  armEndpointFromEnv,
  missingEnv,
  positiveSecondsFromEnv,
  realSleep,
  waitForLongRunningOperation,
  withApiVersion,
  workspacePath,
  type ArmClient,
  type Env,
  type ScriptDeps,
} from "../lib/arm";
import { jobMain, runJobAsMain, type JobSpec } from "../lib/cli";
import { CredentialConfigError } from "../lib/credential";
import { trafficRecordLine } from "../lib/traffic-record";
import { MAX_MIRROR_PERCENT, trafficRuleIssues, type TrafficMap, type TrafficRuleIssue } from "../infra/traffic";

export { MAX_MIRROR_PERCENT, type TrafficMap } from "../infra/traffic";

/** Live and mirror traffic of an endpoint. */
export interface TrafficState {
  traffic: TrafficMap;
  mirrorTraffic: TrafficMap;
}

export { EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_DEADLINE } from "../lib/arm";

/** Azure ML endpoint / deployment names: a letter, then letters, digits or hyphens, 3-32 chars. */
export const NAME_PATTERN = /^[A-Za-z][A-Za-z0-9-]{2,31}$/;

/** Raised for an invalid traffic specification or configuration (exit 2). */
export class TrafficConfigError extends Error {
  /** @param message - what is wrong. */
  constructor(message: string) {
    super(message);
    this.name = "TrafficConfigError";
  }
}

/** Raised when traffic cannot be applied: deployment Failed, endpoint missing, ... (exit 1). */
export class TrafficError extends Error {
  /** @param message - what went wrong. */
  constructor(message: string) {
    super(message);
    this.name = "TrafficError";
  }
}

/** Endpoint coordinates, desired traffic and timing for {@link applyTraffic} / {@link releaseTraffic}. */
export interface TrafficOptions {
  subscriptionId: string;
  resourceGroup: string;
  workspace: string;
  /** Online endpoint name. */
  endpoint: string;
  /** Desired live traffic (apply): integer percents summing to 100, or all 0 / empty. */
  traffic?: TrafficMap;
  /** Desired mirror traffic (apply): integer percents summing to at most 50. */
  mirrorTraffic?: TrafficMap;
  /** Deployments this stack manages (release sets theirs to 0). */
  managedDeployments?: string[];
  /** Milliseconds after the start at which to give up. */
  deadlineMs: number;
  /** Milliseconds between polls of deployments / endpoint / operations. */
  pollIntervalMs: number;
}

/** Side effects, injectable for tests. */
export interface TrafficDeps {
  client: ArmClient;
  log: (line: string) => void;
  /** Clock in epoch milliseconds; default `Date.now`. */
  now?: () => number;
  /** Sleep in milliseconds; default a real timer. */
  sleep?: (ms: number) => Promise<void>;
}

/** Result of {@link applyTraffic} / {@link releaseTraffic}. */
export interface TrafficResult {
  /** Whether a PUT was sent. */
  changed: boolean;
  /** False when the endpoint did not exist (release only). */
  endpointFound: boolean;
  /** Traffic read before any change (empty maps if the endpoint was not found). */
  before: TrafficState;
  /** Traffic after the operation. */
  after: TrafficState;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Variable name of each split, for messages. */
const LABEL = { traffic: "TRAFFIC", mirrorTraffic: "MIRROR_TRAFFIC" } as const;

/** Words a broken rule of `infra/traffic.ts` as set-traffic reports it (variable names). */
function trafficIssueMessage(issue: TrafficRuleIssue, live: TrafficMap, mirror: TrafficMap): string {
  switch (issue.rule) {
    case "notAMap":
      return `${LABEL[issue.kind]} must be a JSON object of deployment name → integer percent`;
    case "invalidName":
      return `${LABEL[issue.kind]}: "${issue.name}" is not a valid deployment name (a letter, then letters, digits or hyphens; 3-32 characters)`;
    case "percentRange":
      return `${LABEL[issue.kind]}: ${issue.name} must be an integer percent between 0 and ${issue.max} (got ${JSON.stringify(issue.value)})`;
    case "liveSum":
      return `TRAFFIC must sum to exactly 100 (or 0 for no live traffic); got ${issue.sum}: ${formatMap(live)}`;
    case "mirrorTargets":
      return issue.total > MAX_MIRROR_PERCENT
        ? `MIRROR_TRAFFIC may total at most ${MAX_MIRROR_PERCENT}%; got ${issue.total}: ${formatMap(mirror)}`
        : `MIRROR_TRAFFIC may target only one deployment; got ${issue.targets.join(", ")}`;
    case "mirrorToLive":
      return `deployment ${issue.name} cannot receive mirror traffic (${issue.mirror}%) while it takes live traffic (${issue.live}%)`;
    case "mirrorWithoutLive":
      return `MIRROR_TRAFFIC needs live traffic to copy from, but TRAFFIC sends none`;
    default:
      // duplicateDeployment, unknownDeployment: only with a deployment list, which is not passed.
      return `traffic breaks rule ${issue.rule}`;
  }
}

/**
 * Validates a live/mirror traffic specification with the rules of `infra/traffic.ts`.
 *
 * Rules: deployment names are valid Azure names; live values are integers 0..100 summing to
 * exactly 100, or to 0 (empty / all zero: no live traffic); mirror values are integers whose sum
 * is at most 50; at most one deployment receives mirror traffic (Azure's limit); a mirror target
 * takes no live traffic; mirroring requires live traffic.
 *
 * @param traffic - parsed TRAFFIC value (object of integer percents, or undefined = empty).
 * @param mirrorTraffic - parsed MIRROR_TRAFFIC value (object, or undefined = empty).
 * @returns the validated maps (zero entries kept).
 * @throws TrafficConfigError describing the first rule broken.
 */
export function validateTraffic(traffic: unknown, mirrorTraffic?: unknown): TrafficState {
  const [issue] = trafficRuleIssues({ traffic, mirrorTraffic, isValidName: (name) => NAME_PATTERN.test(name) });
  const live = { ...(traffic ?? {}) } as TrafficMap;
  const mirror = { ...(mirrorTraffic ?? {}) } as TrafficMap;
  if (issue) throw new TrafficConfigError(trafficIssueMessage(issue, live, mirror));
  return { traffic: live, mirrorTraffic: mirror };
}

/**
 * Scales positive integer weights to integers summing to `total`, by largest remainder
 * (ties broken by name, so the result is deterministic).
 *
 * @param weights - deployment → non-negative integer weight; entries of 0 stay 0.
 * @param total - target sum, default 100.
 * @returns the scaled map (same keys); all zeros when the weights sum to 0.
 */
export function largestRemainder(weights: TrafficMap, total = 100): TrafficMap {
  const names = Object.keys(weights).sort();
  const s = names.reduce((a, n) => a + weights[n], 0);
  const out: TrafficMap = {};
  if (s <= 0) {
    for (const n of names) out[n] = 0;
    return out;
  }
  let assigned = 0;
  const rema: { n: string; r: number }[] = [];
  for (const n of names) {
    const exact = weights[n] * total;
    out[n] = Math.floor(exact / s);
    assigned += out[n];
    rema.push({ n, r: exact % s });
  }
  rema.sort((a, b) => b.r - a.r || (a.n < b.n ? -1 : a.n > b.n ? 1 : 0));
  for (let i = 0; assigned < total; i++, assigned++) out[rema[i % rema.length].n]++;
  return out;
}

/**
 * Computes the traffic after releasing the managed deployments: their live and mirror traffic
 * become 0; unmanaged deployments keep their mirror traffic; the unmanaged live remainder is
 * scaled to 100 by largest remainder, or stays all zero if it sums to 0.
 *
 * @param current - the endpoint's current traffic.
 * @param managed - deployment names this stack manages.
 * @returns the new traffic (keys of `current` kept, managed ones at 0).
 */
export function computeReleaseTraffic(current: TrafficState, managed: string[]): TrafficState {
  const isManaged = new Set(managed);
  const remainder: TrafficMap = {};
  for (const [d, p] of Object.entries(current.traffic)) if (!isManaged.has(d)) remainder[d] = p;
  const scaled = largestRemainder(remainder);
  const traffic: TrafficMap = {};
  for (const d of Object.keys(current.traffic)) traffic[d] = isManaged.has(d) ? 0 : scaled[d];
  const mirrorTraffic: TrafficMap = {};
  for (const [d, p] of Object.entries(current.mirrorTraffic)) mirrorTraffic[d] = isManaged.has(d) ? 0 : p;
  return { traffic, mirrorTraffic };
}

/** Entries with a percent > 0, sorted by name. */
function positive(m: TrafficMap): [string, number][] {
  return Object.entries(m)
    .filter(([, p]) => p > 0)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/**
 * Whether two traffic states route the same (zero entries and order are ignored).
 *
 * @param a - first state.
 * @param b - second state.
 */
export function sameTraffic(a: TrafficState, b: TrafficState): boolean {
  return (
    JSON.stringify(positive(a.traffic)) === JSON.stringify(positive(b.traffic)) &&
    JSON.stringify(positive(a.mirrorTraffic)) === JSON.stringify(positive(b.mirrorTraffic))
  );
}

/** Formats a traffic map as `a=90, b=10` (positive entries only) or `(none)`. */
export function formatMap(m: TrafficMap): string {
  const p = positive(m);
  return p.length === 0 ? "(none)" : p.map(([d, v]) => `${d}=${v}`).join(", ");
}

function readTraffic(endpoint: unknown): TrafficState {
  const props = (endpoint as { properties?: Record<string, unknown> } | undefined)?.properties ?? {};
  const toMap = (v: unknown): TrafficMap => {
    const out: TrafficMap = {};
    if (isPlainObject(v)) for (const [k, p] of Object.entries(v)) if (typeof p === "number") out[k] = p;
    return out;
  };
  return { traffic: toMap(props.traffic), mirrorTraffic: toMap(props.mirrorTraffic) };
}

function provisioningState(resource: unknown): string {
  const s = (resource as { properties?: { provisioningState?: unknown } } | undefined)?.properties?.provisioningState;
  return typeof s === "string" && s !== "" ? s : "Unknown";
}

/**
 * The map sent to Azure: positive desired entries, plus explicit zeros for deployments the
 * endpoint already lists (those exist). Zero entries for unknown deployments are left out, so
 * the endpoint never names a deployment that may not exist.
 */
function bodyMap(desired: TrafficMap, current: TrafficMap): TrafficMap {
  const out: TrafficMap = {};
  for (const d of Object.keys(current)) out[d] = 0;
  for (const [d, p] of Object.entries(desired)) if (p > 0) out[d] = p;
  return out;
}

/**
 * Builds the PUT body of an endpoint from its GET answer with new traffic: drops `id`, `name`,
 * `type`, `systemData`, `properties.scoringUri`, `swaggerUri`, `provisioningState` and the
 * read-only identity fields, keeps everything else unchanged.
 *
 * @param endpoint - the endpoint resource as returned by GET.
 * @param next - traffic maps to put in `properties.traffic` / `properties.mirrorTraffic`.
 */
export function endpointPutBody(endpoint: unknown, next: TrafficState): Record<string, unknown> {
  const src = isPlainObject(endpoint) ? endpoint : {};
  const body: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(src)) {
    if (!["id", "name", "type", "systemData", "properties", "identity"].includes(k)) body[k] = v;
  }
  if (isPlainObject(src.identity)) {
    const identity: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(src.identity)) {
      if (k === "principalId" || k === "tenantId") continue;
      if (k === "userAssignedIdentities" && isPlainObject(v)) {
        identity[k] = Object.fromEntries(Object.keys(v).map((id) => [id, {}]));
      } else {
        identity[k] = v;
      }
    }
    body.identity = identity;
  }
  const props: Record<string, unknown> = {};
  const srcProps = isPlainObject(src.properties) ? src.properties : {};
  for (const [k, v] of Object.entries(srcProps)) {
    if (!["scoringUri", "swaggerUri", "provisioningState", "traffic", "mirrorTraffic"].includes(k)) props[k] = v;
  }
  props.traffic = next.traffic;
  props.mirrorTraffic = next.mirrorTraffic;
  body.properties = props;
  return body;
}

interface Ctx {
  opts: TrafficOptions;
  deps: TrafficDeps;
  now: () => number;
  sleep: (ms: number) => Promise<void>;
  start: number;
  deadlineAt: number;
  endpointPath: string;
  /** The last state read from Azure, for the deadline message (e.g. `deployment blue: Creating`). */
  lastSeen: string;
}

function makeCtx(opts: TrafficOptions, deps: TrafficDeps): Ctx {
  if (!NAME_PATTERN.test(opts.endpoint)) throw new TrafficConfigError(`"${opts.endpoint}" is not a valid endpoint name`);
  const now = deps.now ?? Date.now;
  const start = now();
  return {
    opts,
    deps,
    now,
    sleep: deps.sleep ?? realSleep,
    start,
    deadlineAt: start + opts.deadlineMs,
    endpointPath: `${workspacePath(opts)}/onlineEndpoints/${encodeURIComponent(opts.endpoint)}`,
    lastSeen: "",
  };
}

async function pause(ctx: Ctx, waitingFor: string): Promise<void> {
  const remaining = ctx.deadlineAt - ctx.now();
  if (remaining <= 0) {
    const elapsed = ctx.now() - ctx.start;
    throw new DeadlineError(
      `gave up after ${Math.round(elapsed / 1000)} s (deadline ${Math.round(ctx.opts.deadlineMs / 1000)} s) waiting for ${waitingFor}`,
      elapsed,
    );
  }
  await ctx.sleep(Math.min(ctx.opts.pollIntervalMs, remaining));
}

async function getOrUndefined(ctx: Ctx, path: string): Promise<unknown | undefined> {
  try {
    return (await ctx.deps.client.get(withApiVersion(path, AML_API_VERSION))).body;
  } catch (err) {
    if (isArmNotFound(err)) return undefined;
    throw err;
  }
}

function deploymentPath(ctx: Ctx, d: string): string {
  return `${ctx.endpointPath}/deployments/${encodeURIComponent(d)}`;
}

/** Reads the deployment's provisioning state; `NotFound` on 404. */
async function deploymentState(ctx: Ctx, d: string): Promise<string> {
  const dep = await getOrUndefined(ctx, deploymentPath(ctx, d));
  const state = dep === undefined ? "NotFound" : provisioningState(dep);
  ctx.lastSeen = `deployment ${d}: ${state}`;
  return state;
}

const DEPLOYMENT_BROKEN = new Set(["Failed", "Canceled", "Deleting"]);

/** Waits until every named deployment is Succeeded; throws TrafficError if one is Failed/Canceled/Deleting. */
async function waitDeploymentsReady(ctx: Ctx, names: string[]): Promise<void> {
  const pending = new Set(names);
  const seen = new Map<string, string>();
  for (;;) {
    for (const d of [...pending].sort()) {
      const state = await deploymentState(ctx, d);
      if (seen.get(d) !== state) {
        ctx.deps.log(`deployment ${d}: ${state === "NotFound" ? "not found yet" : state}`);
        seen.set(d, state);
      }
      if (state === "Succeeded") pending.delete(d);
      else if (DEPLOYMENT_BROKEN.has(state)) {
        throw new TrafficError(`deployment ${d} of endpoint ${ctx.opts.endpoint} is ${state}: refusing to route traffic to it`);
      }
    }
    if (pending.size === 0) return;
    await pause(ctx, `deployment(s) ${[...pending].sort().join(", ")} to reach Succeeded`);
  }
}

/** Waits until the endpoint is not Creating/Updating. Returns undefined on 404. */
async function waitEndpointSettled(ctx: Ctx, mode: "apply" | "release"): Promise<unknown | undefined> {
  let last = "";
  for (;;) {
    const ep = await getOrUndefined(ctx, ctx.endpointPath);
    if (ep === undefined) return undefined;
    const state = provisioningState(ep);
    ctx.lastSeen = `endpoint ${ctx.opts.endpoint}: ${state}`;
    if (state === "Deleting") {
      if (mode === "release") return undefined;
      throw new TrafficError(`endpoint ${ctx.opts.endpoint} is being deleted`);
    }
    if (state !== "Creating" && state !== "Updating") {
      if (state === "Failed") ctx.deps.log(`endpoint ${ctx.opts.endpoint} is Failed; updating its traffic anyway`);
      return ep;
    }
    if (state !== last) {
      ctx.deps.log(`endpoint ${ctx.opts.endpoint}: ${state}; waiting`);
      last = state;
    }
    await pause(ctx, `endpoint ${ctx.opts.endpoint} to finish ${state}`);
  }
}

/** Deployments that get live or mirror traffic > 0 in `s`, sorted. */
function receivers(s: TrafficState): string[] {
  return [...new Set([...positive(s.traffic), ...positive(s.mirrorTraffic)].map(([d]) => d))].sort();
}

/**
 * PUTs the endpoint with `next` traffic, re-checking right before that every receiver is still
 * Succeeded, follows the long-running operation, then waits for provisioningState Succeeded
 * and checks Azure reports the requested split.
 */
async function putTraffic(ctx: Ctx, endpoint: unknown, next: TrafficState): Promise<unknown> {
  const current = readTraffic(endpoint);
  const sent: TrafficState = {
    traffic: bodyMap(next.traffic, current.traffic),
    mirrorTraffic: bodyMap(next.mirrorTraffic, current.mirrorTraffic),
  };
  const initial = await ctx.deps.client.put(withApiVersion(ctx.endpointPath, AML_API_VERSION), endpointPutBody(endpoint, sent));
  await waitForLongRunningOperation(ctx.deps.client, initial, {
    deadlineAt: ctx.deadlineAt,
    pollIntervalMs: ctx.opts.pollIntervalMs,
    now: ctx.now,
    sleep: ctx.sleep,
    description: `traffic update of endpoint ${ctx.opts.endpoint}`,
    log: ctx.deps.log,
  });
  for (;;) {
    const ep = await getOrUndefined(ctx, ctx.endpointPath);
    if (ep === undefined) throw new TrafficError(`endpoint ${ctx.opts.endpoint} disappeared during the traffic update`);
    const state = provisioningState(ep);
    ctx.lastSeen = `endpoint ${ctx.opts.endpoint}: ${state} after the traffic update`;
    if (state === "Failed") throw new TrafficError(`endpoint ${ctx.opts.endpoint} is Failed after the traffic update`);
    if (state === "Succeeded") {
      const got = readTraffic(ep);
      if (!sameTraffic(got, next)) {
        throw new TrafficError(
          `endpoint ${ctx.opts.endpoint} reports traffic ${formatMap(got.traffic)} / mirror ${formatMap(got.mirrorTraffic)} ` +
            `after the update, expected ${formatMap(next.traffic)} / mirror ${formatMap(next.mirrorTraffic)}`,
        );
      }
      return ep;
    }
    await pause(ctx, `endpoint ${ctx.opts.endpoint} to reach Succeeded after the traffic update`);
  }
}

/**
 * Runs `attempt` again while the endpoint answers 409 Conflict (another operation in progress).
 * A deadline that passes, between polls or inside a request the server never answers, ends it
 * with the last state read from Azure in the message.
 */
async function retryOnConflict<T>(ctx: Ctx, attempt: () => Promise<T>): Promise<T> {
  for (;;) {
    try {
      return await attempt();
    } catch (err) {
      if (err instanceof DeadlineError) {
        throw new DeadlineError(`${err.message}; last seen: ${ctx.lastSeen || "nothing yet (no answer from Azure)"}`, err.elapsedMs);
      }
      if (!(err instanceof ArmError && err.status === 409)) throw err;
      ctx.deps.log(`endpoint ${ctx.opts.endpoint} is busy (409 ${err.code}); retrying`);
      await pause(ctx, `endpoint ${ctx.opts.endpoint} to accept the traffic update`);
    }
  }
}

function logChange(ctx: Ctx, before: TrafficState, after: TrafficState): void {
  ctx.deps.log(`endpoint ${ctx.opts.endpoint} traffic: ${formatMap(before.traffic)} → ${formatMap(after.traffic)}`);
  if (positive(before.mirrorTraffic).length > 0 || positive(after.mirrorTraffic).length > 0) {
    ctx.deps.log(`endpoint ${ctx.opts.endpoint} mirror traffic: ${formatMap(before.mirrorTraffic)} → ${formatMap(after.mirrorTraffic)}`);
  }
}

/**
 * Applies the desired live/mirror traffic split to an online endpoint.
 *
 * Validates the split ({@link validateTraffic}); waits (polling every `pollIntervalMs`) until each
 * deployment that gets live or mirror traffic > 0 exists with provisioningState Succeeded
 * (404 / Creating / Updating / Scaling wait; Failed / Canceled / Deleting fail); waits for the
 * endpoint to leave Creating/Updating; if it already routes as desired, logs "nothing changes"
 * and sends no PUT; otherwise re-checks the receivers, PUTs the endpoint back with the new
 * `properties.traffic` / `mirrorTraffic` (read-only fields dropped), follows the long-running
 * operation and verifies the result. Logs old → new traffic (names and percents only).
 *
 * @param options - endpoint coordinates, `traffic`, `mirrorTraffic`, `deadlineMs`,
 *   `pollIntervalMs` (milliseconds).
 * @param deps - ARM client, `log`, optional `now` / `sleep`.
 * @returns what changed.
 * @throws TrafficConfigError (invalid split), TrafficError (deployment Failed, endpoint missing,
 *   Azure reports another split), DeadlineError, LongRunningOperationError, ArmError.
 */
export async function applyTraffic(options: TrafficOptions, deps: TrafficDeps): Promise<TrafficResult> {
  const desired = validateTraffic(options.traffic ?? {}, options.mirrorTraffic ?? {});
  const ctx = makeCtx(options, deps);
  const needed = receivers(desired);
  deps.log(
    `endpoint ${options.endpoint}: applying traffic ${formatMap(desired.traffic)}` +
      (needed.length ? `; waiting for ${needed.join(", ")} to be Succeeded` : ""),
  );

  return retryOnConflict(ctx, async () => {
    for (;;) {
      await waitDeploymentsReady(ctx, needed);
      const endpoint = await waitEndpointSettled(ctx, "apply");
      if (endpoint === undefined) throw new TrafficError(`endpoint ${options.endpoint} does not exist (HTTP 404)`);
      const before = readTraffic(endpoint);
      // The split before this step, for jobs/smoke-test.ts's roll-back (lib/traffic-record.ts).
      deps.log(trafficRecordLine({ endpoint: options.endpoint, ...before }));
      if (sameTraffic(before, desired)) {
        deps.log(`endpoint ${options.endpoint} already routes ${formatMap(before.traffic)}` +
          (positive(before.mirrorTraffic).length ? ` (mirror ${formatMap(before.mirrorTraffic)})` : "") + `: nothing changes`);
        return { changed: false, endpointFound: true, before, after: before };
      }
      // Time has passed while waiting for the endpoint: make sure no receiver changed state.
      const states = await Promise.all(needed.map(async (d) => [d, await deploymentState(ctx, d)] as const));
      const notReady = states.filter(([, s]) => s !== "Succeeded");
      if (notReady.length > 0) {
        deps.log(`deployment(s) ${notReady.map(([d, s]) => `${d} (${s})`).join(", ")} no longer Succeeded; waiting again`);
        continue;
      }
      await putTraffic(ctx, endpoint, desired);
      logChange(ctx, before, desired);
      return { changed: true, endpointFound: true, before, after: desired };
    }
  });
}

/**
 * Releases the traffic of the deployments this stack manages (run before they are deleted).
 *
 * Managed deployments get live and mirror traffic 0; unmanaged ones keep their mirror traffic and
 * the live remainder is scaled to 100 (largest remainder), or all zero if it sums to 0
 * ({@link computeReleaseTraffic}). An unmanaged deployment whose share would grow must be
 * Succeeded: while it is Creating/Updating/Scaling the script waits; if it is missing, Failed,
 * Canceled or Deleting its live share is set to 0 too, with a warning, and the rest rescaled.
 * A missing (404) or deleting endpoint is a success with nothing to do.
 *
 * @param options - endpoint coordinates, `managedDeployments`, `deadlineMs`, `pollIntervalMs` (ms).
 * @param deps - ARM client, `log`, optional `now` / `sleep`.
 * @returns what changed (`endpointFound: false` when the endpoint is gone).
 * @throws TrafficConfigError (invalid names), TrafficError, DeadlineError,
 *   LongRunningOperationError, ArmError.
 */
export async function releaseTraffic(options: TrafficOptions, deps: TrafficDeps): Promise<TrafficResult> {
  const managed = options.managedDeployments ?? [];
  for (const d of managed) {
    if (typeof d !== "string" || !NAME_PATTERN.test(d)) throw new TrafficConfigError(`MANAGED_DEPLOYMENTS: "${String(d)}" is not a valid deployment name`);
  }
  const ctx = makeCtx(options, deps);
  const empty: TrafficState = { traffic: {}, mirrorTraffic: {} };

  return retryOnConflict(ctx, async () => {
    for (;;) {
      const endpoint = await waitEndpointSettled(ctx, "release");
      if (endpoint === undefined) {
        deps.log(`endpoint ${options.endpoint} does not exist (or is being deleted): nothing to release`);
        return { changed: false, endpointFound: false, before: empty, after: empty };
      }
      const before = readTraffic(endpoint);
      let next = computeReleaseTraffic(before, managed);
      if (sameTraffic(before, next)) {
        deps.log(`endpoint ${options.endpoint}: managed deployment(s) ${managed.join(", ") || "(none)"} take no traffic: nothing changes`);
        return { changed: false, endpointFound: true, before, after: before };
      }
      // Never raise the share of a deployment that is not Succeeded.
      const excluded: string[] = [];
      for (;;) {
        const growing = Object.keys(next.traffic).filter((d) => next.traffic[d] > (before.traffic[d] ?? 0)).sort();
        let bad: string | undefined;
        let busy: string | undefined;
        for (const d of growing) {
          const state = await deploymentState(ctx, d);
          if (state === "Succeeded") continue;
          if (state === "NotFound" || DEPLOYMENT_BROKEN.has(state)) {
            deps.log(`warning: deployment ${d} is ${state}; it will not receive the released traffic`);
            bad = d;
          } else {
            busy = `${d} (${state})`;
          }
          break;
        }
        if (bad === undefined && busy === undefined) break;
        if (bad === undefined) {
          // Creating / Updating / Scaling: it still serves, wait until it is Succeeded again.
          deps.log(`deployment ${busy} is busy; waiting before giving it more traffic`);
          await pause(ctx, `deployment ${busy} to reach Succeeded`);
          continue;
        }
        excluded.push(bad);
        next = computeReleaseTraffic(before, [...managed, ...excluded]);
        // Excluded deployments keep their mirror traffic: only live shares are redistributed.
        for (const d of excluded) if (before.mirrorTraffic[d] !== undefined) next.mirrorTraffic[d] = before.mirrorTraffic[d];
      }
      await putTraffic(ctx, endpoint, next);
      logChange(ctx, before, next);
      return { changed: true, endpointFound: true, before, after: next };
    }
  });
}

/** Dependencies of {@link runSetTrafficFromEnv}. */
export type RunSetTrafficDeps = ScriptDeps;

function parseJsonEnv(env: Env, name: string): unknown {
  const raw = env[name];
  if (raw === undefined || raw.trim() === "") return undefined;
  try {
    return JSON.parse(raw);
  } catch {
    throw new TrafficConfigError(`${name} is not valid JSON`);
  }
}

/**
 * Reads the configuration from `env`, runs `apply` or `release`, and returns the exit code.
 * Never throws.
 *
 * @param mode - `"apply"` (default when undefined) or `"release"`; anything else → exit 2.
 * @param env - AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP, AZUREML_WORKSPACE, AZUREML_ENDPOINT,
 *   TRAFFIC, MIRROR_TRAFFIC, MANAGED_DEPLOYMENTS, TRAFFIC_DEADLINE_SECONDS [3600],
 *   TRAFFIC_POLL_SECONDS [15], ARM_ENDPOINT.
 * @param deps - output functions and optional injected credential/clock.
 * @returns 0 ok, 1 failure, 2 configuration error, 3 deadline, 4 ARM or credential error.
 */
export async function runSetTrafficFromEnv(
  mode: string | undefined,
  env: Env,
  deps: RunSetTrafficDeps,
): Promise<number> {
  const error = deps.error ?? deps.log;
  const m = mode ?? "apply";
  let options: TrafficOptions;
  try {
    if (m !== "apply" && m !== "release") throw new TrafficConfigError(`mode must be "apply" or "release" (got "${m}")`);
    const required = ["AZURE_SUBSCRIPTION_ID", "AZURE_RESOURCE_GROUP", "AZUREML_WORKSPACE", "AZUREML_ENDPOINT"];
    if (m === "apply") required.push("TRAFFIC");
    if (m === "release") required.push("MANAGED_DEPLOYMENTS");
    const missing = missingEnv(env, required);
    if (missing.length > 0) throw new TrafficConfigError(`missing environment variable(s): ${missing.join(", ")}`);
    const managed = parseJsonEnv(env, "MANAGED_DEPLOYMENTS");
    if (managed !== undefined && (!Array.isArray(managed) || managed.some((d) => typeof d !== "string"))) {
      throw new TrafficConfigError("MANAGED_DEPLOYMENTS must be a JSON array of deployment names");
    }
    options = {
      subscriptionId: env.AZURE_SUBSCRIPTION_ID!.trim(),
      resourceGroup: env.AZURE_RESOURCE_GROUP!.trim(),
      workspace: env.AZUREML_WORKSPACE!.trim(),
      endpoint: env.AZUREML_ENDPOINT!.trim(),
      managedDeployments: (managed as string[] | undefined) ?? [],
      deadlineMs: deadlineSecondsFromEnv(env, SET_TRAFFIC_COMMAND.deadline) * 1000,
      pollIntervalMs: positiveSecondsFromEnv(env, "TRAFFIC_POLL_SECONDS", 15) * 1000,
    };
    if (m === "apply") {
      const v = validateTraffic(parseJsonEnv(env, "TRAFFIC"), parseJsonEnv(env, "MIRROR_TRAFFIC"));
      options.traffic = v.traffic;
      options.mirrorTraffic = v.mirrorTraffic;
    }
    armEndpointFromEnv(env);
  } catch (err) {
    error(`set-traffic: ${(err as Error).message}`);
    return EXIT_CONFIG;
  }

  try {
    const client = armClientFromEnv(env, deps, "phi3-finetune/set-traffic", (deps.now ?? Date.now)() + options.deadlineMs);
    const tdeps: TrafficDeps = { client, log: deps.log, now: deps.now, sleep: deps.sleep };
    if (m === "apply") await applyTraffic(options, tdeps);
    else await releaseTraffic(options, tdeps);
    return EXIT_OK;
  } catch (err) {
    const what = `set-traffic ${m} on endpoint ${options.endpoint}`;
    if (err instanceof TrafficConfigError || err instanceof CredentialConfigError) {
      error(`${what}: ${err.message}`);
      return EXIT_CONFIG;
    }
    if (err instanceof DeadlineError) {
      error(`${what}: ${err.message}`);
      return EXIT_DEADLINE;
    }
    if (err instanceof ArmError) {
      error(`${what} failed: ${err.message}`);
      return EXIT_ARM;
    }
    if (err instanceof TrafficError || err instanceof LongRunningOperationError) {
      error(`${what} failed: ${err.message}`);
      return EXIT_FAILED;
    }
    error(`${what}: unexpected error: ${(err as Error)?.message ?? String(err)}`);
    return EXIT_FAILED;
  }
}

/** The command line of set-traffic: the mode, the rest from the environment (lib/cli.ts style). */
export const SET_TRAFFIC_COMMAND: JobSpec = {
  name: "set-traffic",
  usage: "npx tsx jobs/set-traffic.ts",
  summary: "Sets (apply) or releases (release) the live and mirror traffic of an Azure ML online endpoint.\nRun by `pulumi up` (infra/serving.ts); configured by environment variables.",
  options: {},
  positionals: { value: "apply|release", max: 1, description: "apply the split (default), or release the stack's deployments before they are deleted" },
  details:
    "Environment: AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP, AZUREML_WORKSPACE, AZUREML_ENDPOINT (required); TRAFFIC (apply),\n" +
    "MIRROR_TRAFFIC, MANAGED_DEPLOYMENTS (release), TRAFFIC_DEADLINE_SECONDS (default 3600),\n" +
    "TRAFFIC_POLL_SECONDS (default 15), ARM_ENDPOINT (https).",
  deadline: { variable: "TRAFFIC_DEADLINE_SECONDS", defaultSeconds: 3600 },
};

/** Entry point: mode from the command line, configuration from `process.env`; resolves to the exit code. */
export const main = jobMain(SET_TRAFFIC_COMMAND, (positionals, env, out) => runSetTrafficFromEnv(positionals[0], env, out));

if (require.main === module) runJobAsMain(SET_TRAFFIC_COMMAND, main);
