/**
 * The stack's security posture: the `security` config key (schema below, validated with the
 * rest of the config in infra/config.ts) and the settings each component derives from it.
 * Pure, no Pulumi resources. Reviewed against Azure Verified Modules
 * (`avm/res/machine-learning-services/workspace`, WAF-aligned example) and Microsoft's
 * managed-network and endpoint-identity pages; each setting names its source.
 *
 * Two profiles:
 * - `standard` (default): public endpoints as before; Key Vault purge protection with 90-day
 *   soft delete; blob and container soft delete and infrastructure encryption on the storage
 *   account; diagnostic settings of workspace, endpoint, storage, vault and registry to the
 *   stack's Log Analytics workspace.
 * - `private`: additionally storage shared-key access off with identity-based system datastores,
 *   managed network isolation `AllowOnlyApprovedOutbound` with the outbound rules the jobs need,
 *   public network access disabled on workspace, hub, project, storage, vault, registry and the
 *   online endpoint (registry Premium: Basic has no private link).
 */
import { z } from "zod";
import { bool } from "./config-values";

/** A DNS name or `*.`-wildcard, as managed-network FQDN rules take them. */
const FQDN = /^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/;

/** The `security` config key. */
export const securitySchema = z.strictObject({
  /** `standard` (public endpoints, hardened resources) or `private` (network isolation, no keys). */
  profile: z.enum(["standard", "private"]).default("standard"),
  /**
   * The Phi-3 Cookbook's broad grant: Contributor on the resource group for the endpoint and
   * the compute identities, on top of their least-privilege roles. Off by default; for teams
   * that want the sample's exact roles.
   */
  cookbookRoles: bool().default(false),
  /** A `CanNotDelete` lock on the resource group (production stacks). Remove it before `pulumi destroy`. */
  lock: bool().default(false),
  /** Azure Firewall SKU behind the managed network's FQDN rules (`private`): Standard (Microsoft's default) or Basic (cheaper). */
  firewallSku: z.enum(["Standard", "Basic"]).default("Standard"),
  /**
   * Principal type of whoever runs `pulumi up` (`private`: the deployer gets a data role for the
   * uploads). Default: `User` when logged in through the Azure CLI or Azure PowerShell, else
   * `ServicePrincipal` (CI); set it when that guess is wrong.
   */
  deployerPrincipalType: z.enum(["User", "ServicePrincipal", "Group"]).optional(),
  /** More FQDNs the managed network allows (`private`), e.g. a private package mirror. */
  extraOutboundFqdns: z.array(z.string().regex(FQDN, { error: "must be a host name such as pypi.example.com or *.example.com" })).max(50).default([]),
});

/** The validated `security` setting. */
export type SecurityConfig = z.infer<typeof securitySchema>;

/** Defaults of {@link securitySchema}: the `standard` profile, least-privilege roles, no lock. */
export const SECURITY_DEFAULTS: SecurityConfig = securitySchema.parse({});

/** True for the `private` profile. */
export function isPrivate(s: SecurityConfig): boolean {
  return s.profile === "private";
}

/** `publicNetworkAccess` of workspace, hub, project, storage, vault, registry and endpoint. */
export function publicNetworkAccess(s: SecurityConfig): "Enabled" | "Disabled" {
  return isPrivate(s) ? "Disabled" : "Enabled";
}

/**
 * Key Vault soft delete (both profiles): purge protection on and 90 days, as AVM's defaults.
 * With purge protection a deleted vault's name stays taken for the whole retention: after
 * `pulumi destroy` the way back is the next `nameGeneration` (the preflight says so).
 * Azure accepts the retention only when a vault is created (learn.microsoft.com/azure/key-vault/
 * general/soft-delete-overview: "cannot be changed once set"), so existing vaults keep theirs.
 */
export const KEY_VAULT_RETENTION_DAYS = 90;

/** Days deleted blobs and containers are kept (storage data protection, both profiles). */
export const BLOB_SOFT_DELETE_DAYS = 7;

/** One FQDN outbound rule of the managed network, with why the jobs need it. */
export interface OutboundFqdn {
  name: string;
  fqdn: string;
  why: string;
}

/**
 * FQDN rules the jobs need under `AllowOnlyApprovedOutbound` (Microsoft adds the required service
 * tags and the private endpoints to the workspace's storage, vault and registry by itself;
 * learn.microsoft.com/azure/machine-learning/how-to-managed-network, "List of required rules").
 * Hugging Face serves the base model and ultrachat_200k (hub API, LFS CDN and Xet storage on
 * `*.hf.co`); PyPI and conda serve the packages of `finetuning_dir/conda.yml` when Azure ML builds
 * the environment (Microsoft's recommended outbound rules for Python packages). Each FQDN rule
 * makes Azure run an Azure Firewall (billed: see the cost estimate).
 */
export const JOB_OUTBOUND_FQDNS: readonly OutboundFqdn[] = [
  { name: "huggingface-hub", fqdn: "huggingface.co", why: "base model and ultrachat_200k (Hugging Face Hub API)" },
  { name: "huggingface-lfs", fqdn: "cdn-lfs.huggingface.co", why: "model and dataset files (LFS CDN)" },
  { name: "huggingface-lfs-us", fqdn: "cdn-lfs-us-1.huggingface.co", why: "model and dataset files (LFS CDN, US)" },
  { name: "huggingface-xet", fqdn: "*.hf.co", why: "model and dataset files (Xet storage and CDN)" },
  { name: "pypi", fqdn: "pypi.org", why: "pip index for conda.yml's pip packages" },
  { name: "pythonhosted", fqdn: "*.pythonhosted.org", why: "pip package files" },
  { name: "anaconda", fqdn: "anaconda.com", why: "conda default packages" },
  { name: "anaconda-com", fqdn: "*.anaconda.com", why: "conda default packages" },
  { name: "anaconda-org", fqdn: "*.anaconda.org", why: "conda channel repodata (conda-forge)" },
];

/** The FQDN rules of the `private` profile: {@link JOB_OUTBOUND_FQDNS} plus `extraOutboundFqdns`. */
export function outboundFqdns(s: SecurityConfig): OutboundFqdn[] {
  return [
    ...JOB_OUTBOUND_FQDNS,
    ...s.extraOutboundFqdns.map((fqdn, i) => ({ name: `extra-${i + 1}`, fqdn, why: "security.extraOutboundFqdns" })),
  ];
}

/**
 * The `managedNetwork` of a workspace or hub in the `private` profile (Azure ML REST 2025-12-01
 * `ManagedNetworkSettings`): `AllowOnlyApprovedOutbound` (AVM WAF-aligned example), the FQDN
 * rules, and `extra` private-endpoint rules (e.g. the hub's way to the ML workspace). Undefined
 * in `standard` (no managed network, as before).
 */
export function managedNetwork(s: SecurityConfig, extra: Record<string, unknown> = {}): Record<string, unknown> | undefined {
  if (!isPrivate(s)) return undefined;
  const rules: Record<string, unknown> = {};
  for (const r of outboundFqdns(s)) rules[r.name] = { type: "FQDN", category: "UserDefined", destination: r.fqdn };
  return { isolationMode: "AllowOnlyApprovedOutbound", firewallSku: s.firewallSku, outboundRules: { ...rules, ...extra } };
}

/**
 * Private endpoints Azure creates for the managed networks of the `private` profile, for the
 * cost estimate: per managed network, storage (blob and file), key vault and registry
 * (learn.microsoft.com/azure/machine-learning/how-to-managed-network, required rules), for the
 * ML workspace and for the Prompt flow hub (each has its own managed network), plus the hub's
 * rule to the ML workspace (`amlworkspace`) that lets Prompt flow reach the private endpoint.
 * An estimate: Azure may add endpoints (e.g. storage queue/table) as its required rules change.
 */
export function privateEndpointCount(s: SecurityConfig, promptFlow: boolean): number {
  if (!isPrivate(s)) return 0;
  const perNetwork = 4; // storage blob, storage file, key vault, registry
  return perNetwork + (promptFlow ? perNetwork + 1 : 0);
}

/** Managed networks (each with its own Azure Firewall when it has FQDN rules) of the `private` profile. */
export function managedNetworkCount(s: SecurityConfig, promptFlow: boolean): number {
  return isPrivate(s) ? (promptFlow ? 2 : 1) : 0;
}

/**
 * What the plan and `pulumi preview` should say about the profile: in `private`, where uploads,
 * chat and Prompt flow must run from (README "Security"), and what the lock blocks.
 */
export function securityWarnings(s: SecurityConfig): string[] {
  const w: string[] = [];
  if (isPrivate(s)) {
    w.push(
      "phi3-finetune:security.profile: private: `pulumi up` uploads code and data to the storage account with Entra ID, so run it from a machine " +
        "that reaches the account privately (e.g. a self-hosted runner in a network with a private endpoint to it); `npm run chat` and Prompt flow " +
        "reach the endpoint only from inside the network. Choose private at the first `up`: Azure cannot turn a managed network off, and turning it on needs the clusters and endpoint deleted first.",
    );
  }
  if (s.lock) w.push("phi3-finetune:security.lock: the resource group gets a CanNotDelete lock: set it to false and `pulumi up` before `pulumi destroy` or a rollout that replaces a deployment.");
  return w;
}

/** Application ids of Microsoft's sign-in clients for people: the Azure CLI and Azure PowerShell. */
const INTERACTIVE_CLIENT_IDS = ["04b07795-8ddb-461a-bbee-02f9e1bf7b46", "1950a258-227b-4e31-a9cf-717495945fc2"];

/**
 * The principal type of the deployer's role assignment: `security.deployerPrincipalType` when
 * set, else `User` for the Azure CLI's and Azure PowerShell's client ids (a person logged in),
 * else `ServicePrincipal`. Azure refuses an assignment whose principalType does not match.
 */
export function deployerPrincipalType(s: SecurityConfig, clientId: string): "User" | "ServicePrincipal" | "Group" {
  return s.deployerPrincipalType ?? (INTERACTIVE_CLIENT_IDS.includes(clientId.toLowerCase()) ? "User" : "ServicePrincipal");
}

/** Diagnostic settings: every log category (`allLogs` group) and `AllMetrics`, to the stack's Log Analytics (AVM's default). */
export const DIAGNOSTICS = {
  logs: [{ categoryGroup: "allLogs", enabled: true }],
  metrics: [{ category: "AllMetrics", enabled: true }],
} as const;
