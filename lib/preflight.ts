/**
 * The preflight: checks of the subscription a stack deploys to, shared by `npm run doctor`
 * (cli/doctor.ts, run by a person) and the first step of `pulumi up` (jobs/preflight.ts, run
 * by `@pulumi/command` before anything costly is created; infra/preflight.ts declares it).
 *
 * With a credential from `@azure/identity` and plain ARM REST (REST versions in
 * {@link API_VERSIONS}), it checks:
 *  1. the credential works, which subscription and tenant;
 *  2. the resource providers the stack needs are registered;
 *  3. every configured VM size (training cluster, prep cluster, each deployment) is offered by
 *     Azure ML in the region, and retired sizes (NCv3) are called out with replacements;
 *  4. the per-family vCPU quota covers the clusters' max nodes and the deployments' instances
 *     (with Azure ML's 20% reservation for online deployments, A100 v4 family exempt);
 *  5. the globally unique names (storage account, key vault, registry) are free or already
 *     this stack's, no soft-deleted key vault or workspace holds the names (remedy: the
 *     `nameGeneration` setting, or a purge), and the workspace names;
 *  6. every pinned model version (`existing: true`) exists in the stack's workspace.
 * And, once the storage account exists (`private` profile, before any upload; jobs/preflight.ts
 * with PREFLIGHT_STORAGE_URL): {@link checkStorageReach}, that this machine reaches it.
 * Each problem is a FAIL (blocks) or WARN check with the remedy named. Never prints a token.
 */
import type { TokenCredential } from "@azure/identity";
import { azureNames, type AzureNames } from "../infra/naming";
import { RETIRED_SIZES, REPLACEMENT_SIZES } from "../infra/vm-sizes";
import {
  AML_API_VERSION,
  ArmError,
  DeadlineError,
  isArmNotFound,
  DEFAULT_ARM_ENDPOINT,
  createArmClient,
  withApiVersion,
  type ArmClient,
} from "./arm";
import type { HttpClient } from "@azure/core-rest-pipeline";

/** API versions of every call the doctor makes. */
export const API_VERSIONS = {
  subscriptions: "2022-12-01",
  providers: "2021-04-01",
  resourceGroups: "2021-04-01",
  machineLearning: AML_API_VERSION, // 2025-12-01: vmSizes, usages, workspaces
  storage: "2023-05-01",
  keyVault: "2023-07-01",
  containerRegistry: "2023-07-01",
} as const;

/** Resource providers the stack's resources live in. */
export const REQUIRED_PROVIDERS = [
  "Microsoft.MachineLearningServices",
  "Microsoft.Storage",
  "Microsoft.KeyVault",
  "Microsoft.ContainerRegistry",
  "Microsoft.Insights",
  "Microsoft.OperationalInsights",
  "Microsoft.ManagedIdentity",
  "Microsoft.Network",
] as const;

// The report (rows, formatting, exit code): lib/preflight-report.ts. Re-exported for the checks' callers.
export { exitCodeOf, formatReport, summarize, type Check, type CheckStatus } from "./preflight-report";
import { exitCodeOf, type Check } from "./preflight-report";

// Quota arithmetic: infra/quota.ts (pure; the Pulumi program uses it too). Re-exported for the checks' callers.
export {
  explainNeed,
  ONLINE_RESERVATION,
  preflightInput,
  requiredQuota,
  RESERVATION_EXEMPT_FAMILIES,
  reservesExtraCores,
  sizeConsumers,
  type ClusterLike,
  type PreflightInput,
  type QuotaInput,
  type QuotaNeed,
  type QuotaPart,
  type VmSize,
} from "../infra/quota";
import { explainNeed, normFamily as norm, requiredQuota, sizeConsumers, type PreflightInput, type QuotaNeed, type VmSize } from "../infra/quota";

// ---------------------------------------------------------------------------------------------
// The checks (ARM REST)
// ---------------------------------------------------------------------------------------------

/** Options of {@link runDoctor}. */
export interface DoctorOptions {
  /** Stack name (part of every Azure name). */
  stack: string;
  /** What to check: {@link preflightInput} of the parsed stack config. */
  config: PreflightInput;
  /** Explicit subscription (`--subscription`); else the environment, else the only enabled one. */
  subscriptionId?: string;
}

/** Injected dependencies of {@link runDoctor}. */
export interface DoctorDeps {
  credential: TokenCredential;
  /** ARM base URL; default `https://management.azure.com`. */
  baseUrl?: string;
  /** Transport for the ARM client (tests). */
  httpClient?: HttpClient;
  /** Environment for `AZURE_SUBSCRIPTION_ID` / `ARM_SUBSCRIPTION_ID`; default `process.env`. */
  env?: Record<string, string | undefined>;
  /** Progress and retry lines (never a token). */
  log?: (line: string) => void;
  /** Clock in epoch milliseconds (default `Date.now`) and the deadline on it (default {@link DOCTOR_DEADLINE_SECONDS} from now). */
  now?: () => number;
  deadlineAt?: number;
  /** Time getting one token may take (ms). */
  tokenTimeoutMs?: number;
  maxRetries?: number;
  backoffBaseMs?: number;
  maxBackoffMs?: number;
  requestTimeoutMs?: number;
}

/** The subscription the checks ran against. */
export interface SubscriptionInfo {
  subscriptionId: string;
  displayName: string;
  tenantId: string;
  state: string;
}

/** Result of {@link runDoctor}. */
export interface DoctorResult {
  checks: Check[];
  /** 0 passed, 1 a check failed, 3 the deadline passed before every check finished. */
  exitCode: 0 | 1 | 3;
  subscription?: SubscriptionInfo;
  names?: AzureNames;
  quota?: QuotaNeed[];
  /** A request gave up because the deadline passed (its check failed for that reason). */
  deadlinePassed?: boolean;
}

const enc = encodeURIComponent;
/** One line of at most `n` characters (credential errors span several lines). */
const short = (text: string, n = 300) => {
  const s = text.replace(/\s+/g, " ").trim();
  return s.length > n ? s.slice(0, n - 3) + "..." : s;
};

/** `HTTP 403 AuthorizationFailed: message` for an ArmError, the message for anything else. */
function errText(e: unknown): string {
  if (e instanceof ArmError) {
    if (e.status === 0) return short(`${e.code}: ${e.armMessage}`);
    return short(`HTTP ${e.status} ${e.code}: ${e.armMessage}`);
  }
  return short(String((e as Error)?.message ?? e));
}

/** A FAIL check for an ARM error; `action` names the permission a 403 lacks. */
function failFromError(id: string, name: string, e: unknown, action: string, what: string): Check {
  if (e instanceof ArmError && e.status === 403) {
    return {
      id,
      name,
      status: "FAIL",
      detail: `missing permission: the identity may not perform ${action}, so ${what} could not be checked (${errText(e)})`,
      remedy: `grant the identity a role with ${action} on the subscription (e.g. Reader or Contributor), or run as someone who has it`,
    };
  }
  if (e instanceof ArmError && e.code === "MissingSubscriptionRegistration") {
    const ns = /namespace '([^']+)'/i.exec(e.armMessage)?.[1] ?? "Microsoft.MachineLearningServices";
    return { id, name, status: "FAIL", detail: `${what} could not be checked: ${errText(e)}`, remedy: `az provider register --namespace ${ns}` };
  }
  return {
    id,
    name,
    status: "FAIL",
    detail: `${what} could not be checked: ${errText(e)}`,
    remedy: "rerun the doctor; if it persists, check ARM_ENDPOINT, the network and Azure status",
  };
}

/** Most pages a list may have (Azure ML's vmSizes and usages lists have one or two). */
const MAX_PAGES = 50;

/**
 * GETs a list and follows `nextLink` (same origin only). A `nextLink` seen before (a loop) or
 * more than {@link MAX_PAGES} pages is an error, never a silently repeated or truncated list.
 */
async function listAll<T>(client: ArmClient, path: string): Promise<T[]> {
  const items: T[] = [];
  const seen = new Set<string>();
  let next: string | undefined = path;
  for (let page = 0; next; page++) {
    const key = new URL(next, client.baseUrl).toString();
    if (seen.has(key) || page >= MAX_PAGES) {
      throw new ArmError({
        status: 0,
        code: "PaginationLoop",
        armMessage: seen.has(key) ? `nextLink ${key.replace(/\?.*$/, "")} was already read: the list loops` : `more than ${MAX_PAGES} pages`,
        method: "GET",
        path,
      });
    }
    seen.add(key);
    const res: { body: { value?: T[]; nextLink?: string } | undefined } = await client.get<{ value?: T[]; nextLink?: string }>(next);
    const body = res.body ?? {};
    if (Array.isArray(body.value)) items.push(...body.value);
    next = typeof body.nextLink === "string" && body.nextLink !== "" ? body.nextLink : undefined;
  }
  return items;
}

/** GET that maps 404 to `undefined` (the resource does not exist). */
async function getOrUndefined<T>(client: ArmClient, path: string): Promise<T | undefined> {
  try {
    return (await client.get<T>(path)).body;
  } catch (e) {
    if (isArmNotFound(e)) return undefined;
    throw e;
  }
}

const CREDENTIAL_REMEDY =
  "az login (then rerun), or set the ARM_* variables the azure-native provider reads (ARM_USE_OIDC, ARM_CLIENT_ID, " +
  "ARM_TENANT_ID, ARM_CLIENT_SECRET, ARM_USE_MSI: README, Credentials); the programs of pulumi up read the same";

interface SubscriptionBody {
  subscriptionId?: string;
  displayName?: string;
  tenantId?: string;
  state?: string;
}

/** Check 1: credential and subscription. Returns the checks and the subscription when usable. */
async function checkCredentialAndSubscription(
  client: ArmClient,
  explicit: string | undefined,
  env: Record<string, string | undefined>,
): Promise<{ checks: Check[]; subscription?: SubscriptionInfo }> {
  const credentialFail = (e: unknown): Check => ({
    id: "credential",
    name: "Azure credential",
    status: "FAIL",
    detail:
      e instanceof ArmError && e.status === 401
        ? `ARM rejected the token (${errText(e)}); the remaining checks need a working credential`
        : `no Azure token: ${errText(e)}; the remaining checks need a working credential`,
    remedy: CREDENTIAL_REMEDY,
  });
  const credentialOk: Check = { id: "credential", name: "Azure credential", status: "PASS", detail: "got a token and ARM accepted it" };
  const subscriptionFail = (detail: string, remedy: string): { checks: Check[] } => ({
    checks: [credentialOk, { id: "subscription", name: "Subscription", status: "FAIL", detail, remedy }],
  });
  const isCredentialError = (e: unknown) => e instanceof ArmError && ((e.status === 0 && e.code === "CredentialUnavailable") || e.status === 401);

  const fromEnv = env.AZURE_SUBSCRIPTION_ID?.trim() ? ["AZURE_SUBSCRIPTION_ID", env.AZURE_SUBSCRIPTION_ID.trim()] : env.ARM_SUBSCRIPTION_ID?.trim() ? ["ARM_SUBSCRIPTION_ID", env.ARM_SUBSCRIPTION_ID.trim()] : undefined;
  const chosen = explicit ? ["--subscription", explicit] : fromEnv;

  let body: SubscriptionBody;
  let source: string;
  if (chosen) {
    const [from, id] = chosen;
    source = `from ${from}`;
    try {
      body = (await client.get<SubscriptionBody>(withApiVersion(`/subscriptions/${enc(id)}`, API_VERSIONS.subscriptions))).body ?? {};
    } catch (e) {
      if (isCredentialError(e)) return { checks: [credentialFail(e)] };
      const notFound = e instanceof ArmError && (e.status === 404 || e.status === 403 || e.code === "SubscriptionNotFound" || e.code === "InvalidSubscriptionId");
      return subscriptionFail(
        notFound
          ? `subscription ${id} (${from}) was not found or this identity cannot see it: ${errText(e)}`
          : `could not read subscription ${id} (${from}): ${errText(e)}`,
        notFound
          ? "check the id (`az account list -o table`), log in to its tenant (`az login --tenant <tenant>`), or ask for access"
          : "rerun the doctor; check ARM_ENDPOINT and the network",
      );
    }
  } else {
    let subs: SubscriptionBody[];
    try {
      subs = await listAll<SubscriptionBody>(client, withApiVersion("/subscriptions", API_VERSIONS.subscriptions));
    } catch (e) {
      if (isCredentialError(e)) return { checks: [credentialFail(e)] };
      return { checks: [credentialOk, failFromError("subscription", "Subscription", e, "Microsoft.Resources/subscriptions/read", "the subscription list")] };
    }
    const enabled = subs.filter((s) => s.state === "Enabled");
    if (enabled.length !== 1) {
      const listed = enabled.slice(0, 10).map((s) => `${s.displayName ?? "?"} (${s.subscriptionId})`).join(", ");
      return subscriptionFail(
        enabled.length === 0
          ? `this identity sees no enabled subscription (${subs.length} in total)`
          : `this identity sees ${enabled.length} enabled subscriptions: ${listed}${enabled.length > 10 ? ", ..." : ""}; which one does the stack deploy to?`,
        enabled.length === 0
          ? "log in to the right tenant (`az login --tenant <tenant>`) or ask for access to a subscription"
          : "pass --subscription <id> (or set AZURE_SUBSCRIPTION_ID)",
      );
    }
    body = enabled[0];
    source = "the only enabled subscription";
  }

  const subscription: SubscriptionInfo = {
    subscriptionId: body.subscriptionId ?? chosen?.[1] ?? "",
    displayName: body.displayName ?? "",
    tenantId: body.tenantId ?? "unknown",
    state: body.state ?? "unknown",
  };
  const desc = `"${subscription.displayName}" (${subscription.subscriptionId}), tenant ${subscription.tenantId}, ${source}`;
  let sub: Check;
  if (subscription.state === "Enabled") {
    sub = { id: "subscription", name: "Subscription", status: "PASS", detail: `${desc}, state Enabled` };
  } else if (subscription.state === "Warned" || subscription.state === "PastDue") {
    sub = {
      id: "subscription",
      name: "Subscription",
      status: "WARN",
      detail: `${desc}, state ${subscription.state}: it may be disabled soon`,
      remedy: "check billing for this subscription in the Azure portal",
    };
  } else {
    sub = {
      id: "subscription",
      name: "Subscription",
      status: "FAIL",
      detail: `${desc}, state ${subscription.state}: nothing can be deployed to it`,
      remedy: "pick an enabled subscription with --subscription, or re-enable this one in the Azure portal",
    };
  }
  return { checks: [credentialOk, sub], subscription: sub.status === "FAIL" ? undefined : subscription };
}

/** Check 2: resource providers registered. */
async function checkProviders(client: ArmClient, sub: string): Promise<Check[]> {
  return Promise.all(
    REQUIRED_PROVIDERS.map(async (ns): Promise<Check> => {
      const id = `provider:${ns}`;
      const name = `Provider ${ns}`;
      try {
        const res = await client.get<{ registrationState?: string }>(withApiVersion(`/subscriptions/${enc(sub)}/providers/${ns}`, API_VERSIONS.providers));
        const state = res.body?.registrationState ?? "unknown";
        if (state === "Registered") return { id, name, status: "PASS", detail: "Registered" };
        return {
          id,
          name,
          status: "FAIL",
          detail: state === "Registering" ? "Registering: not ready yet" : `registrationState ${state}`,
          remedy:
            state === "Registering"
              ? `wait until \`az provider show --namespace ${ns} --query registrationState\` says Registered`
              : `az provider register --namespace ${ns}`,
        };
      } catch (e) {
        return failFromError(id, name, e, "Microsoft.Resources/subscriptions/providers/read", `the registration of ${ns}`);
      }
    }),
  );
}

/** Check 3: VM sizes offered in the region; retired sizes called out. */
function checkVmSizes(config: PreflightInput, location: string, sizes: VmSize[] | undefined, listError: unknown): Check[] {
  const offered = new Map((sizes ?? []).map((s) => [s.name.toLowerCase(), s]));
  const replacementsHere = () => {
    const here = REPLACEMENT_SIZES.filter((r) => offered.has(r.toLowerCase()));
    return here.length > 0 ? `offered in ${location}: ${here.join(", ")}` : `none of them is offered in ${location}`;
  };
  return sizeConsumers(config).map((c): Check => {
    const id = `vm-size:${c.id}`;
    const name = `VM size: ${c.role}`;
    if (!sizes) return failFromError(id, name, listError, "Microsoft.MachineLearningServices/locations/vmsizes/read", `whether ${c.vmSize} is offered in ${location}`);
    const size = offered.get(c.vmSize.toLowerCase());
    const retired = RETIRED_SIZES[c.vmSize];
    const retiredText = retired ? `${c.vmSize} was retired by Azure on ${retired}` : "";
    const replaceRemedy = `set ${c.key} to a current size: ${REPLACEMENT_SIZES.join(", ")} (${replacementsHere()})`;
    if (!size) {
      return {
        id,
        name,
        status: "FAIL",
        detail: retired ? `${retiredText} and Azure ML does not offer it in ${location}` : `${c.vmSize} is not offered by Azure ML in ${location}`,
        remedy: retired
          ? replaceRemedy
          : `set ${c.key} to a size offered in ${location} (\`az ml compute list-sizes --location ${location}\`), or change azure-native:location`,
      };
    }
    const facts = `${size.name}: family ${size.family}, ${size.vCPUs} vCPUs, ${size.gpus ?? 0} GPU${size.gpus === 1 ? "" : "s"}`;
    if (retired) {
      return c.kind === "deployment"
        ? { id, name, status: "FAIL", detail: `${retiredText}: new deployments on it fail (${facts})`, remedy: replaceRemedy }
        : { id, name, status: "WARN", detail: `${retiredText}: clusters on it may fail to allocate nodes (${facts})`, remedy: replaceRemedy };
    }
    if (c.kind === "cluster" && Array.isArray(size.supportedComputeTypes) && size.supportedComputeTypes.length > 0 &&
      !size.supportedComputeTypes.some((t) => t.toLowerCase() === "amlcompute")) {
      return {
        id,
        name,
        status: "FAIL",
        detail: `${facts}; not available for AmlCompute clusters (supports ${size.supportedComputeTypes.join(", ")})`,
        remedy: `set ${c.key} to a size that supports AmlCompute in ${location}`,
      };
    }
    if (c.kind === "cluster" && c.priority === "LowPriority" && size.lowPriorityCapable === false) {
      return {
        id,
        name,
        status: "FAIL",
        detail: `${facts}; it cannot run as LowPriority`,
        remedy: `set the cluster's vmPriority to Dedicated or pick a low-priority capable size`,
      };
    }
    return { id, name, status: "PASS", detail: `offered in ${location} (${facts})` };
  });
}

/** An entry of Azure ML's usages answer. */
interface Usage {
  id?: string;
  type?: string;
  unit?: string;
  currentValue?: number;
  limit?: number;
  name?: { value?: string; localizedValue?: string };
}

/** The subscription-level usage entry of a family (workspace-level entries are skipped). */
export function findFamilyUsage(usages: Usage[], family: string): Usage | undefined {
  const f = norm(family);
  const regional = usages.filter((u) => !/\/workspaces\//i.test(u.id ?? "") && !/workspaces/i.test(u.type ?? ""));
  return (
    regional.find((u) => norm(u.name?.value ?? "") === f) ??
    regional.find((u) => norm(u.name?.localizedValue ?? "").startsWith(f))
  );
}

function findTotalUsage(usages: Usage[], kind: "dedicated" | "lowpriority"): Usage | undefined {
  const pattern = kind === "dedicated" ? /^total.*dedicated/ : /^total.*low ?priority/;
  return usages.find((u) => {
    if (/\/workspaces\//i.test(u.id ?? "") || /workspaces/i.test(u.type ?? "")) return false;
    const texts = [u.name?.value ?? "", u.name?.localizedValue ?? ""].map((t) => t.toLowerCase());
    return texts.some((t) => pattern.test(t) && !/clusters$/.test(t));
  });
}

const ALREADY_DEPLOYED_NOTE = "if this stack is already deployed, its own nodes and instances are in 'in use'";

function quotaCheck(id: string, name: string, needed: number, usage: Usage, explain: string, what: string, location: string): Check {
  const limit = Number(usage.limit ?? 0);
  const used = Number(usage.currentValue ?? 0);
  const free = limit - used;
  const label = usage.name?.localizedValue || usage.name?.value || what;
  if (needed <= free) {
    return { id, name, status: "PASS", detail: `needs ${needed} vCPUs, ${free} free (limit ${limit}, in use ${used}): ${explain}` };
  }
  return {
    id,
    name,
    status: "FAIL",
    detail: `needs ${needed} vCPUs but only ${free} free (limit ${limit}, in use ${used}): ${explain}; ${ALREADY_DEPLOYED_NOTE}`,
    remedy:
      `request more quota in Azure ML studio → Quota (or Azure portal → Quotas → Machine learning): ` +
      `"${label}" (${what}) in ${location}, to at least ${used + needed}; or lower maxNodes/instanceCount/autoscale.maxInstances`,
  };
}

/** Check 4: quota per family (and the regional totals when Azure lists them). */
function checkQuota(needs: QuotaNeed[] | undefined, usages: Usage[] | undefined, usageError: unknown, location: string): Check[] {
  if (!needs) {
    return [{ id: "quota", name: "Quota", status: "FAIL", detail: "could not compute the vCPUs needed: the VM size list is unavailable (see the VM size checks)", remedy: "fix the VM size checks first" }];
  }
  if (!usages) return [failFromError("quota", "Quota", usageError, "Microsoft.MachineLearningServices/locations/usages/read", `the vCPU quota in ${location}`)];
  const checks: Check[] = [];
  for (const need of needs.filter((n) => n.priority === "Dedicated")) {
    const id = `quota:${need.family}`;
    const name = `Quota ${need.family}`;
    const usage = findFamilyUsage(usages, need.family);
    if (!usage) {
      checks.push({
        id,
        name,
        status: "WARN",
        detail: `Azure ML lists no quota for ${need.family} in ${location}; needs ${need.vCPUs} vCPUs: ${explainNeed(need)}`,
        remedy: `check ${need.family} in Azure ML studio → Quota for ${location}`,
      });
      continue;
    }
    checks.push(quotaCheck(id, name, need.vCPUs, usage, explainNeed(need), need.family, location));
  }
  const dedicated = needs.filter((n) => n.priority === "Dedicated");
  const totalDedicated = findTotalUsage(usages, "dedicated");
  if (dedicated.length > 0 && totalDedicated) {
    const sum = dedicated.reduce((a, n) => a + n.vCPUs, 0);
    checks.push(
      quotaCheck("quota:total-dedicated", "Quota total dedicated vCPUs", sum, totalDedicated,
        dedicated.map((n) => `${n.family} ${n.vCPUs}`).join(" + "), "total dedicated regional vCPUs", location),
    );
  }
  const low = needs.filter((n) => n.priority === "LowPriority");
  if (low.length > 0) {
    const sum = low.reduce((a, n) => a + n.vCPUs, 0);
    const explain = low.map(explainNeed).join("; ");
    const totalLow = findTotalUsage(usages, "lowpriority");
    checks.push(
      totalLow
        ? quotaCheck("quota:total-low-priority", "Quota low-priority vCPUs", sum, totalLow, explain, "total low-priority regional vCPUs", location)
        : {
            id: "quota:total-low-priority",
            name: "Quota low-priority vCPUs",
            status: "WARN",
            detail: `Azure ML lists no low-priority quota in ${location}; needs ${sum} vCPUs: ${explain}`,
            remedy: `check "Total Cluster Low Priority Regional vCPUs" in Azure ML studio → Quota`,
          },
    );
  }
  return checks;
}

interface NameAvailability {
  nameAvailable?: boolean;
  reason?: string;
  message?: string;
}

interface GlobalName {
  id: string;
  label: string;
  name: string;
  provider: string;
  type: string;
  apiVersion: string;
  resourcePath: string;
  readAction: string;
}

async function checkGlobalName(client: ArmClient, sub: string, rg: string, n: GlobalName, location: string, generationRemedy: string): Promise<Check> {
  const id = `name:${n.id}`;
  const checkName = `Name: ${n.label} ${n.name}`;
  let avail: NameAvailability;
  try {
    avail = (await client.post<NameAvailability>(
      withApiVersion(`/subscriptions/${enc(sub)}/providers/${n.provider}/checkNameAvailability`, n.apiVersion),
      { name: n.name, type: n.type },
    )).body ?? {};
  } catch (e) {
    return failFromError(id, checkName, e, `${n.provider}/checkNameAvailability/read`, `whether ${n.name} is free`);
  }
  const resourceId = `/subscriptions/${enc(sub)}/resourceGroups/${enc(rg)}/providers/${n.resourcePath}/${enc(n.name)}`;
  let ours = false;
  let ownershipError: unknown;
  if (avail.nameAvailable !== true) {
    try {
      ours = (await getOrUndefined(client, withApiVersion(resourceId, n.apiVersion))) !== undefined;
    } catch (e) {
      ownershipError = e;
    }
  }
  if (ours) return { id, name: checkName, status: "PASS", detail: `taken by ${resourceId}: already deployed by this stack` };

  if (n.id === "keyvault") {
    // A soft-deleted vault keeps its name (7-90 days) and blocks a new vault of that name.
    try {
      const deleted = await getOrUndefined<{ properties?: { vaultId?: string; deletionDate?: string; scheduledPurgeDate?: string; purgeProtectionEnabled?: boolean } }>(
        client,
        withApiVersion(`/subscriptions/${enc(sub)}/providers/Microsoft.KeyVault/locations/${enc(location)}/deletedVaults/${enc(n.name)}`, n.apiVersion),
      );
      if (deleted) {
        const p = deleted.properties ?? {};
        const purgeProtected = p.purgeProtectionEnabled === true;
        const inOurGroup = typeof p.vaultId === "string" && p.vaultId.toLowerCase() === resourceId.toLowerCase();
        const options = [
          generationRemedy,
          purgeProtected ? undefined : `az keyvault purge --name ${n.name} --location ${location}`,
          inOurGroup ? `az keyvault recover --name ${n.name} --location ${location} (it was this stack's vault)` : undefined,
          `wait until ${p.scheduledPurgeDate ?? "its scheduled purge date"}`,
        ].filter((x): x is string => !!x);
        return {
          id,
          name: checkName,
          status: "FAIL",
          detail:
            `key vault ${n.name} is soft-deleted (deleted ${p.deletionDate ?? "?"}, purge scheduled ${p.scheduledPurgeDate ?? "?"}` +
            `${purgeProtected ? ", purge protection on: it cannot be purged, so its name stays taken until then" : ""}); a new vault of that name cannot be created`,
          remedy: options.join("; or "),
        };
      }
    } catch (e) {
      if (avail.nameAvailable === true) {
        return {
          id,
          name: checkName,
          status: "WARN",
          detail: `name is available, but soft-deleted vaults could not be checked: ${errText(e)}`,
          remedy: `check \`az keyvault list-deleted\` for ${n.name}`,
        };
      }
    }
  }

  if (avail.nameAvailable === true) return { id, name: checkName, status: "PASS", detail: "available" };
  const why = [avail.reason, avail.message].filter(Boolean).join(": ") || "not available";
  if (ownershipError) {
    return {
      id,
      name: checkName,
      status: "FAIL",
      detail: `not available (${why}) and whether it is this stack's could not be checked: ${errText(ownershipError)}`,
      remedy: `make sure the identity can read ${resourceId} (${n.readAction}); if the name is someone else's, change phi3-finetune:namePrefix`,
    };
  }
  const invalid = /invalid/i.test(avail.reason ?? "");
  return {
    id,
    name: checkName,
    status: "FAIL",
    detail: `not available: ${why}${invalid ? "" : ` (not in resource group ${rg}, so not this stack's)`}`,
    remedy: invalid
      ? "change phi3-finetune:namePrefix so the generated name follows Azure's rules"
      : "change phi3-finetune:namePrefix (the names derive from prefix, stack and subscription), or delete/purge the resource holding the name if it is yours",
  };
}

async function checkWorkspaceName(client: ArmClient, sub: string, rg: string, id: string, label: string, name: string): Promise<Check> {
  const checkName = `Name: ${label} ${name}`;
  const resourceId = `/subscriptions/${enc(sub)}/resourceGroups/${enc(rg)}/providers/Microsoft.MachineLearningServices/workspaces/${enc(name)}`;
  try {
    const ws = await getOrUndefined<{ kind?: string }>(client, withApiVersion(resourceId, API_VERSIONS.machineLearning));
    if (ws) return { id: `name:${id}`, name: checkName, status: "PASS", detail: `${resourceId} exists: already deployed by this stack` };
    return {
      id: `name:${id}`,
      name: checkName,
      status: "PASS",
      detail:
        `not deployed yet. Note: a workspace deleted in the last 14 days (soft delete) still holds its name; ` +
        `if this stack's ${label} was deleted recently, permanently delete it (Azure ML studio/portal → Recently deleted) before \`pulumi up\``,
    };
  } catch (e) {
    return failFromError(`name:${id}`, checkName, e, "Microsoft.MachineLearningServices/workspaces/read", `the ${label} ${name}`);
  }
}

/** The way out of names held by a soft-deleted resource: the next name generation (README: "Deploy again after destroy"). */
export function nextGenerationRemedy(current: number): string {
  return `pulumi config set phi3-finetune:nameGeneration ${current + 1} (deploys under new names at once; README: "Deploy again after destroy")`;
}

/** Check 5: global names free (or ours), soft-deleted key vault, workspace names. */
async function checkNames(client: ArmClient, sub: string, names: AzureNames, config: PreflightInput): Promise<Check[]> {
  const rg = names.resourceGroup;
  const globals: GlobalName[] = [
    {
      id: "storage",
      label: "storage account",
      name: names.storageAccount,
      provider: "Microsoft.Storage",
      type: "Microsoft.Storage/storageAccounts",
      apiVersion: API_VERSIONS.storage,
      resourcePath: "Microsoft.Storage/storageAccounts",
      readAction: "Microsoft.Storage/storageAccounts/read",
    },
    {
      id: "keyvault",
      label: "key vault",
      name: names.keyVault,
      provider: "Microsoft.KeyVault",
      type: "Microsoft.KeyVault/vaults",
      apiVersion: API_VERSIONS.keyVault,
      resourcePath: "Microsoft.KeyVault/vaults",
      readAction: "Microsoft.KeyVault/vaults/read",
    },
    {
      id: "registry",
      label: "container registry",
      name: names.containerRegistry,
      provider: "Microsoft.ContainerRegistry",
      type: "Microsoft.ContainerRegistry/registries",
      apiVersion: API_VERSIONS.containerRegistry,
      resourcePath: "Microsoft.ContainerRegistry/registries",
      readAction: "Microsoft.ContainerRegistry/registries/read",
    },
  ];
  const generationRemedy = nextGenerationRemedy(config.nameGeneration);
  const tasks: Promise<Check>[] = globals.map((g) => checkGlobalName(client, sub, rg, g, config.location, generationRemedy));
  tasks.push(checkWorkspaceName(client, sub, rg, "workspace", "workspace", names.workspace));
  if (config.promptFlow.enabled) {
    tasks.push(checkWorkspaceName(client, sub, rg, "hub", "AI hub", names.hub));
    tasks.push(checkWorkspaceName(client, sub, rg, "project", "AI project", names.project));
  }
  const checks = await Promise.all(tasks);
  // Azure ML has no documented ARM call listing soft-deleted workspaces (a GET answers 404 while
  // the name stays blocked: Azure/azure-cli#33756). The stack's workspaces and key vault share one
  // name suffix and go together on destroy, so a soft-deleted vault of this stack means its
  // workspaces are soft-deleted too (14 days).
  const vault = checks.find((c) => c.id === "name:keyvault");
  if (vault?.status === "FAIL" && /soft-deleted/.test(vault.detail)) {
    for (const c of checks) {
      if (/^name:(workspace|hub|project)$/.test(c.id) && /not deployed yet/.test(c.detail)) {
        Object.assign(c, {
          status: "FAIL",
          detail: `not live, but this stack's key vault ${names.keyVault} is soft-deleted, so this stack was destroyed and Azure holds the workspace name for 14 days (soft delete)`,
          remedy: `${generationRemedy}; or permanently delete it (Azure portal → Azure Machine Learning → Recently deleted) and purge the vault`,
        } satisfies Partial<Check>);
      }
    }
  }
  return checks;
}

/** The configured existing resource group must exist (an empty setting creates one). */
async function checkResourceGroup(client: ArmClient, sub: string, config: PreflightInput): Promise<Check[]> {
  if (!config.resourceGroupName) return [];
  const rg = config.resourceGroupName;
  const id = "resource-group";
  const name = `Resource group ${rg}`;
  try {
    const body = await getOrUndefined<{ location?: string }>(client, withApiVersion(`/subscriptions/${enc(sub)}/resourcegroups/${enc(rg)}`, API_VERSIONS.resourceGroups));
    if (!body) {
      return [{
        id,
        name,
        status: "FAIL",
        detail: `phi3-finetune:resourceGroupName names ${rg}, which does not exist in this subscription`,
        remedy: `az group create --name ${rg} --location ${config.location}; or set phi3-finetune:resourceGroupName to "" so the stack creates its own`,
      }];
    }
    return [{ id, name, status: "PASS", detail: `exists (location ${body.location ?? "?"})` }];
  } catch (e) {
    return [failFromError(id, name, e, "Microsoft.Resources/subscriptions/resourceGroups/read", `resource group ${rg}`)];
  }
}

/**
 * Check 6: every pinned model version (`existing: true`) is in the stack's workspace
 * (`GET .../workspaces/{ws}/models/{name}/versions/{version}`, REST 2025-12-01). A new
 * workspace has none, so on a first `up` a pinned version always fails here, before anything
 * is created.
 */
async function checkPinnedModels(client: ArmClient, sub: string, names: AzureNames, config: PreflightInput): Promise<Check[]> {
  const ws = `/subscriptions/${enc(sub)}/resourceGroups/${enc(names.resourceGroup)}/providers/Microsoft.MachineLearningServices/workspaces/${enc(names.workspace)}`;
  return Promise.all(
    config.serving.deployments.map(async (d, i): Promise<Check | undefined> => {
      if (d.model === "trained") return undefined;
      const { name, version } = d.model;
      const id = `model:${d.name}`;
      const checkName = `Model: deployment ${d.name} serves ${name}:${version}`;
      try {
        const found = await getOrUndefined(client, withApiVersion(`${ws}/models/${enc(name)}/versions/${enc(version)}`, API_VERSIONS.machineLearning));
        if (found) return { id, name: checkName, status: "PASS", detail: `${name} version ${version} exists in ${names.workspace}` };
        return {
          id,
          name: checkName,
          status: "FAIL",
          detail: `${name} version ${version} is not in workspace ${names.workspace} (a new workspace has no model versions; the deployment would fail)`,
          remedy:
            `set phi3-finetune:serving.deployments[${i}].model to "trained", or to a version listed by ` +
            `\`az ml model list --name ${name} -w ${names.workspace} -g ${names.resourceGroup}\``,
        };
      } catch (e) {
        return failFromError(id, checkName, e, "Microsoft.MachineLearningServices/workspaces/models/versions/read", `${name} version ${version}`);
      }
    }),
  ).then((checks) => checks.filter((c): c is Check => c !== undefined));
}

/** Seconds the doctor and the preflight step may take in all (every request runs under it). */
export const DOCTOR_DEADLINE_SECONDS = 600;

/**
 * Runs every check against the subscription, all under one deadline (`deps.deadlineAt`,
 * default {@link DOCTOR_DEADLINE_SECONDS} from now). Never throws for Azure answers: each
 * problem is a FAIL (or WARN) check. `exitCode` is 1 when any check failed, 3 when the deadline
 * passed first (the checks it cut short are FAIL with the reason).
 */
export async function runDoctor(options: DoctorOptions, deps: DoctorDeps): Promise<DoctorResult> {
  const now = deps.now ?? Date.now;
  const started = now();
  const deadlineAt = deps.deadlineAt ?? started + DOCTOR_DEADLINE_SECONDS * 1000;
  const result = await runChecks(options, { ...deps, now, deadlineAt });
  // The deadline passed when a request said so, not only when the clock says so now: a request's
  // timer may fire a little before Date.now() reaches the deadline (the event loop's cached time),
  // and the run is then a deadline (exit 3) all the same.
  if (now() < deadlineAt && !result.deadlinePassed) return result;
  const checks: Check[] = [
    ...result.checks,
    {
      id: "deadline",
      name: "Deadline",
      status: "FAIL",
      detail: `the checks did not finish within the ${Math.round((deadlineAt - started) / 1000)} s given; Azure (or the network) did not answer in time`,
      remedy: "rerun; if it persists, check ARM_ENDPOINT, a proxy in the way, and Azure status",
    },
  ];
  return { ...result, checks, exitCode: 3 };
}

async function runChecks(options: DoctorOptions, deps: DoctorDeps): Promise<DoctorResult> {
  const env = deps.env ?? process.env;
  const log = deps.log ?? (() => undefined);
  const arm = createArmClient({
    baseUrl: deps.baseUrl ?? DEFAULT_ARM_ENDPOINT,
    credential: deps.credential,
    httpClient: deps.httpClient,
    now: deps.now,
    deadlineAt: deps.deadlineAt,
    tokenTimeoutMs: deps.tokenTimeoutMs,
    maxRetries: deps.maxRetries ?? 4,
    backoffBaseMs: deps.backoffBaseMs ?? 1000,
    maxBackoffMs: deps.maxBackoffMs ?? 30_000,
    requestTimeoutMs: deps.requestTimeoutMs ?? 30_000,
    userAgent: "phi3-finetune-doctor",
    onRetry: log,
  });
  // Notes a request that gave up at the deadline; the checks turn every error into a FAIL row.
  let deadlinePassed = false;
  const noted = <T>(p: Promise<T>): Promise<T> =>
    p.catch((e: unknown) => {
      if (e instanceof DeadlineError) deadlinePassed = true;
      throw e;
    });
  const client: ArmClient = {
    ...arm,
    request: (method, path, body) => noted(arm.request(method, path, body)),
    get: (path) => noted(arm.get(path)),
    put: (path, body) => noted(arm.put(path, body)),
    patch: (path, body) => noted(arm.patch(path, body)),
    post: (path, body) => noted(arm.post(path, body)),
    delete: (path) => noted(arm.delete(path)),
    putBytes: (path, bytes, headers) => noted(arm.putBytes(path, bytes, headers)),
  };
  const { config } = options;
  const location = config.location;

  const first = await checkCredentialAndSubscription(client, options.subscriptionId, env);
  const checks = [...first.checks];
  const subscription = first.subscription;
  if (!subscription) return { checks, exitCode: exitCodeOf(checks), deadlinePassed };
  const sub = subscription.subscriptionId;

  let names: AzureNames | undefined;
  try {
    names = azureNames({ prefix: config.namePrefix, stack: options.stack, subscriptionId: sub, resourceGroupName: config.resourceGroupName, generation: config.nameGeneration });
  } catch (e) {
    checks.push({ id: "names", name: "Azure names", status: "FAIL", detail: errText(e), remedy: "change phi3-finetune:namePrefix or the stack name" });
  }

  const mlBase = `/subscriptions/${enc(sub)}/providers/Microsoft.MachineLearningServices/locations/${enc(location)}`;
  const settle = <T>(p: Promise<T>) => p.then((value) => ({ value, error: undefined as unknown }), (error: unknown) => ({ value: undefined, error }));
  const [rgChecks, providerChecks, sizesRes, usagesRes, nameChecks] = await Promise.all([
    checkResourceGroup(client, sub, config),
    checkProviders(client, sub),
    settle(listAll<VmSize>(client, withApiVersion(`${mlBase}/vmSizes`, API_VERSIONS.machineLearning))),
    settle(listAll<Usage>(client, withApiVersion(`${mlBase}/usages`, API_VERSIONS.machineLearning))),
    names ? checkNames(client, sub, names, config) : Promise.resolve([] as Check[]),
  ]);
  const quota = sizesRes.value ? requiredQuota(config, sizesRes.value) : undefined;
  const deployed = nameChecks.some((c) => c.id === "name:workspace" && /already deployed by this stack/.test(c.detail));
  const quotaChecks = checkQuota(quota, usagesRes.value, usagesRes.error, location).map((c): Check =>
    // Once deployed, this stack's own nodes and instances count as "in use": a shortfall may be its own.
    deployed && c.status === "FAIL" && c.id.startsWith("quota:") && / free \(/.test(c.detail)
      ? { ...c, status: "WARN", detail: `${c.detail} (this stack is already deployed: its own usage is counted)` }
      : c,
  );
  checks.push(
    ...rgChecks,
    ...providerChecks,
    ...checkVmSizes(config, location, sizesRes.value, sizesRes.error),
    ...quotaChecks,
    ...nameChecks,
    ...(names ? await checkPinnedModels(client, sub, names, config) : []),
  );
  return { checks, exitCode: exitCodeOf(checks), subscription, names, quota, deadlinePassed };
}

// ---------------------------------------------------------------------------------------------
// Line of sight to the storage account (private profile, before any upload)
// ---------------------------------------------------------------------------------------------

/** Blob service REST version of the reach check (as jobs/upload-blobs.ts). */
export const STORAGE_REACH_API_VERSION = "2023-11-03";
/** OAuth scope of Azure Storage. */
export const STORAGE_REACH_SCOPE = "https://storage.azure.com/.default";

/** Injected dependencies of {@link checkStorageReach}. */
export interface StorageReachDeps {
  credential: TokenCredential;
  /** Transport (tests: a loopback server); default `@azure/core-rest-pipeline`'s. */
  httpClient?: HttpClient;
  /** Time one request (and one token request) may take (ms); default 30 000. */
  requestTimeoutMs?: number;
  /** Retries of 408/429/5xx and dropped connections; default 4. */
  maxRetries?: number;
  /** Backoff base (ms); default 1000 (lib/arm.ts). */
  backoffBaseMs?: number;
  /** Absolute deadline (epoch ms on `now`) of the request, its retries and its token. */
  deadlineAt?: number;
  now?: () => number;
  /** One line per retry (what failed, the wait). */
  onRetry?: (line: string) => void;
}

/**
 * Can this machine reach the storage account the uploads go to? `Get Container Properties`
 * (`GET <container>?restype=container`, Blob REST 2023-11-03) with an Entra ID token, the way the
 * uploads authenticate. PASS on 200. FAIL, naming the remedy, when:
 * - the account's network refuses this machine (403 `AuthorizationFailure`, "not authorized to
 *   perform this operation using this network": public access Disabled, or an IP not in
 *   `security.deployerNetwork`; learn.microsoft.com/azure/storage/common/storage-network-security);
 * - the name does not resolve, the connection is refused or times out (no route: a private
 *   endpoint's DNS is missing, or a firewall on the way);
 * - the identity lacks the data role (403 `AuthorizationPermissionMismatch`) or the container is
 *   missing (404), or any other answer.
 * Never throws for what storage or the network answers; never prints the token.
 *
 * @throws DeadlineError when `deps.deadlineAt` passes first (the request, its retries or its token).
 */
export async function checkStorageReach(containerUrl: string, deps: StorageReachDeps): Promise<Check> {
  const id = "storage:reach";
  const name = "Storage account reachable for uploads";
  let url: URL;
  try {
    url = new URL(containerUrl);
  } catch {
    return { id, name, status: "FAIL", detail: `not a URL: ${short(containerUrl, 120)}`, remedy: "a bug in the stack: BLOB_CONTAINER_URL must be https://<account>.blob.core.windows.net/<container>" };
  }
  const loopback = ["127.0.0.1", "localhost", "[::1]"].includes(url.hostname);
  if (url.protocol !== "https:" && !loopback) {
    return { id, name, status: "FAIL", detail: `refusing to send a token to ${url.origin} over plain HTTP`, remedy: "use the account's https:// blob endpoint" };
  }
  const where = `${url.host}${url.pathname}`;
  const inbound =
    "add the public IP address this machine reaches Azure from to phi3-finetune:security.deployerNetwork and run `pulumi up` again, " +
    "or run `pulumi up` from a machine in a network with a private endpoint (and its privatelink.blob.core.windows.net DNS) to the account";
  // The ARM client's machinery with the storage scope (as jobs/upload-blobs.ts): retries of
  // 408/429/5xx and dropped connections (mid-body too), a time limit per request and per token
  // request, the deadline over all of it, and every token masked in what an answer echoes.
  const client = createArmClient({
    baseUrl: url.origin,
    credential: deps.credential,
    scope: STORAGE_REACH_SCOPE,
    service: "Blob Storage",
    httpClient: deps.httpClient,
    maxRetries: deps.maxRetries ?? 4,
    backoffBaseMs: deps.backoffBaseMs,
    maxBackoffMs: 10_000,
    requestTimeoutMs: deps.requestTimeoutMs ?? 30_000,
    tokenTimeoutMs: deps.requestTimeoutMs ?? 30_000,
    deadlineAt: deps.deadlineAt,
    now: deps.now,
    userAgent: "phi3-finetune/preflight-storage",
    onRetry: deps.onRetry,
  });
  let status: number;
  let code = "";
  try {
    status = (await client.getRaw(`${url.pathname.replace(/\/+$/, "")}?restype=container`, { "x-ms-version": STORAGE_REACH_API_VERSION })).status;
  } catch (e) {
    if (e instanceof DeadlineError) throw e;
    const err = e as ArmError;
    if (!(e instanceof ArmError)) return { id, name, status: "FAIL", detail: `cannot reach ${where}: ${short(String((e as Error)?.message ?? e), 200)}`, remedy: inbound };
    if (err.code === "CredentialUnavailable") {
      return { id, name, status: "FAIL", detail: `no Entra ID token for Azure Storage: ${short(err.armMessage, 200)}`, remedy: "log in (az login) or set the AZURE_* / ARM_* variables of the identity running pulumi up" };
    }
    if (err.status === 0) return { id, name, status: "FAIL", detail: `cannot reach ${where}: ${short(err.armMessage, 200)}`, remedy: inbound };
    status = err.status;
    // Storage's error code (x-ms-error-code, masked by the client), not the client's HTTPnnn stand-in.
    code = /^HTTP\d+$/.test(err.code) ? "" : err.code;
  }
  if (status >= 200 && status < 300) return { id, name, status: "PASS", detail: `${where} answered HTTP ${status}` };
  if (status === 403 && code === "AuthorizationFailure") {
    return { id, name, status: "FAIL", detail: `${where} refuses this machine's network (HTTP 403 AuthorizationFailure)`, remedy: inbound };
  }
  if (status === 403 && code === "AuthorizationPermissionMismatch") {
    return {
      id,
      name,
      status: "FAIL",
      detail: `${where} is reachable, but this identity may not read it (HTTP 403 AuthorizationPermissionMismatch)`,
      remedy: "the stack grants the deployer Storage Blob Data Contributor on the container; wait for it to propagate (up to 10 minutes) and run `pulumi up` again",
    };
  }
  if (status === 404) {
    return { id, name, status: "FAIL", detail: `${where} is reachable, but the container does not exist (HTTP 404${code ? ` ${code}` : ""})`, remedy: "Azure ML creates it with the workspace: check the workspace's default datastore" };
  }
  return { id, name, status: "FAIL", detail: `${where} answered HTTP ${status}${code ? ` ${code}` : ""}`, remedy: inbound };
}
