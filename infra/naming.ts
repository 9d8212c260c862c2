/**
 * Deterministic names and hashes. Everything here is pure: the same inputs give the same
 * names on every run and every machine, so a preview never shows a rename that did not happen.
 */
import { createHash } from "crypto";

/** Hex SHA-256 of the parts, each length-prefixed so ("ab","c") and ("a","bc") differ. */
export function sha256(...parts: (string | Buffer)[]): string {
  const h = createHash("sha256");
  for (const p of parts) {
    const b = typeof p === "string" ? Buffer.from(p, "utf8") : p;
    h.update(`${b.length}:`);
    h.update(b);
  }
  return h.digest("hex");
}

/**
 * Canonical JSON: object keys sorted recursively, so hashing a config object does not depend
 * on key order. Arrays keep their order. `undefined` members are dropped (as JSON does).
 */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

/** RFC 4122 URL namespace, used for role-assignment names. */
export const URL_NAMESPACE = "6ba7b811-9dad-11d1-80b4-00c04fd430c8";

/**
 * Name-based UUID version 5 (RFC 4122 §4.3, SHA-1). Role assignment names must be GUIDs;
 * deriving them from (scope, principal, role) makes reruns idempotent, like Bicep's `guid()`.
 */
export function uuidV5(name: string, namespace: string = URL_NAMESPACE): string {
  const ns = Buffer.from(namespace.replace(/-/g, ""), "hex");
  if (ns.length !== 16) throw new Error(`uuidV5: namespace '${namespace}' is not a UUID`);
  const bytes = createHash("sha1").update(ns).update(name, "utf8").digest().subarray(0, 16);
  bytes[6] = (bytes[6] & 0x0f) | 0x50;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = bytes.toString("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/**
 * A file name safe in a blob name and an `azureml://.../paths/...` URI without encoding: every
 * character other than letters, digits, `.`, `_` and `-` becomes `_` (`#`, `?`, `%2e`, spaces
 * and newlines would otherwise change the URI's meaning or need encoding the data asset and the
 * job inputs do not apply). The blob's folder is the content hash, so names cannot collide.
 */
export function blobFileName(name: string): string {
  const safe = name.replace(/[^A-Za-z0-9._-]/g, "_").replace(/^\.+/, "_");
  return safe || "data";
}

/** Lowercase a stack name to letters and digits only (stack names may hold '.', '_', '-'). */
export function slug(text: string, max = 12): string {
  return text.toLowerCase().replace(/[^a-z0-9]/g, "").slice(0, max) || "x";
}

/** Azure naming rules we rely on (learn.microsoft.com: resource-name-rules). */
export const NAME_RULES: Record<string, { pattern: RegExp; rule: string }> = {
  resourceGroup: { pattern: /^[-\w._()]{1,89}[-\w_()]$/, rule: "1-90 chars: letters, digits, -_.() not ending in ." },
  storageAccount: { pattern: /^[a-z0-9]{3,24}$/, rule: "3-24 lowercase letters and digits (globally unique)" },
  keyVault: { pattern: /^[a-zA-Z](?!.*--)[a-zA-Z0-9-]{1,22}[a-zA-Z0-9]$/, rule: "3-24 chars: letters, digits, single hyphens (globally unique)" },
  containerRegistry: { pattern: /^[a-zA-Z0-9]{5,50}$/, rule: "5-50 letters and digits (globally unique)" },
  logAnalytics: { pattern: /^[a-zA-Z0-9][a-zA-Z0-9-]{2,61}[a-zA-Z0-9]$/, rule: "4-63 chars: letters, digits, hyphens" },
  appInsights: { pattern: /^[^%&\\?/]{1,260}$/, rule: "1-260 chars, no %&\\?/" },
  workspace: { pattern: /^[a-zA-Z0-9][a-zA-Z0-9_-]{2,32}$/, rule: "3-33 chars: letters, digits, - and _" },
  identity: { pattern: /^[a-zA-Z0-9][a-zA-Z0-9_-]{2,127}$/, rule: "3-128 chars: letters, digits, - and _" },
  endpoint: { pattern: /^[a-zA-Z][a-zA-Z0-9-]{1,30}[a-zA-Z0-9]$/, rule: "3-32 chars: letters, digits, hyphens, starting with a letter (unique in the region)" },
  deployment: { pattern: /^[a-zA-Z][a-zA-Z0-9-]{1,30}[a-zA-Z0-9]$/, rule: "3-32 chars: letters, digits, hyphens, starting with a letter" },
  job: { pattern: /^[a-zA-Z0-9][a-zA-Z0-9_-]{0,254}$/, rule: "1-255 chars: letters, digits, - and _" },
};

/** Throws an Error naming the kind, the name and the rule when `name` breaks Azure's rule. */
export function assertAzureName(kind: keyof typeof NAME_RULES, name: string): string {
  const r = NAME_RULES[kind];
  if (!r.pattern.test(name)) throw new Error(`Azure ${kind} name '${name}' is invalid: ${r.rule}`);
  return name;
}

/** The stack's Azure resource names. */
export interface AzureNames {
  resourceGroup: string;
  storageAccount: string;
  keyVault: string;
  containerRegistry: string;
  logAnalytics: string;
  appInsights: string;
  workspace: string;
  identity: string;
  /** The compute clusters' identity (the endpoint keeps `identity`). */
  computeIdentity: string;
  endpoint: string;
  hub: string;
  project: string;
}

/**
 * The stack's Azure names. `suffix` (6 hex) is a hash of subscription, stack and prefix, so
 * names are stable across runs, unique per stack, and differ between subscriptions (storage
 * accounts, key vaults, registries and endpoint hosts are globally or regionally unique).
 * `generation` (config `nameGeneration`, default 0) joins the hash when above 0: after
 * `pulumi destroy`, Azure keeps the workspace (14 days) and key vault (7 days) soft-deleted
 * under their names, so the next generation deploys under fresh names at once. Generation 0
 * keeps the names of stacks deployed before the setting existed.
 * `resourceGroupName` (non-empty) names an existing group. Throws if a name breaks a rule.
 */
export function azureNames(args: { prefix: string; stack: string; subscriptionId: string; resourceGroupName?: string; generation?: number }): AzureNames {
  const { prefix, stack } = args;
  const s = slug(stack);
  const generation = args.generation ?? 0;
  const suffix = (generation > 0 ? sha256(args.subscriptionId.toLowerCase(), stack, prefix, `generation ${generation}`) : sha256(args.subscriptionId.toLowerCase(), stack, prefix)).slice(0, 6);
  const names: AzureNames = {
    resourceGroup: args.resourceGroupName || `rg-${prefix}-${s}`,
    storageAccount: `st${prefix}${suffix}`,
    keyVault: `kv-${prefix}-${suffix}`,
    containerRegistry: `cr${prefix}${suffix}`,
    logAnalytics: `log-${prefix}-${suffix}`,
    appInsights: `appi-${prefix}-${suffix}`,
    workspace: `mlw-${prefix}-${suffix}`,
    identity: `id-${prefix}-${s}`,
    computeIdentity: `id-${prefix}-${s}-compute`,
    endpoint: `${prefix}-${suffix}`,
    hub: `hub-${prefix}-${suffix}`,
    project: `proj-${prefix}-${suffix}`,
  };
  const kinds: Record<keyof AzureNames, keyof typeof NAME_RULES> = {
    resourceGroup: "resourceGroup",
    storageAccount: "storageAccount",
    keyVault: "keyVault",
    containerRegistry: "containerRegistry",
    logAnalytics: "logAnalytics",
    appInsights: "appInsights",
    workspace: "workspace",
    identity: "identity",
    computeIdentity: "identity",
    endpoint: "endpoint",
    hub: "workspace",
    project: "workspace",
  };
  for (const [key, kind] of Object.entries(kinds)) assertAzureName(kind, names[key as keyof AzureNames]);
  return names;
}

/** Seconds → ISO-8601 duration (`120` → `PT120S`), the form Azure ML durations take. */
export function isoSeconds(seconds: number): string {
  if (!Number.isInteger(seconds) || seconds < 0) throw new Error(`isoSeconds: ${seconds} is not a whole number of seconds`);
  return `PT${seconds}S`;
}

/** Milliseconds → ISO-8601 duration in seconds (`180000` → `PT180S`; fractions kept). */
export function isoMillis(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) throw new Error(`isoMillis: ${ms} is not a duration`);
  return `PT${ms % 1000 === 0 ? ms / 1000 : (ms / 1000).toFixed(3)}S`;
}
