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
// Types only (nothing loaded at run time): the storage settings below are checked against azure-native's.
import type { StorageAccountArgs } from "@pulumi/azure-native/storage";
import { bool } from "./config-values";

/** A DNS name or `*.`-wildcard, as managed-network FQDN rules take them. */
const FQDN = /^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/;

/** An IPv4 address `a.b.c.d` or range `a.b.c.d/n`. */
const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?:\/(\d{1,2}))?$/;

/**
 * Why `value` cannot be an Azure Storage IP rule, or undefined when it can. Azure Storage takes
 * public IPv4 addresses and CIDR ranges with prefixes /8 to /30 (a /31 or /32 must be written as a
 * single address) and refuses private ranges (RFC 1918), loopback and link-local
 * (learn.microsoft.com/azure/storage/common/storage-network-security, "IP network rules").
 */
export function deployerAddressProblem(value: string): string | undefined {
  const m = IPV4.exec(value);
  if (!m) return "must be a public IPv4 address such as 203.0.113.7 or a range such as 203.0.113.0/24";
  const octets = m.slice(1, 5).map(Number);
  if (octets.some((o) => o > 255)) return "is not an IPv4 address (each part 0-255)";
  if (m[5] !== undefined) {
    const prefix = Number(m[5]);
    if (prefix < 8 || prefix > 30) return "Azure Storage takes prefixes /8 to /30: write a /31 or /32 as single addresses";
  }
  const [a, b] = octets;
  if (a === 10 || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168) || a === 127 || (a === 169 && b === 254) || a === 0) {
    return "is a private, loopback or link-local address: Azure Storage IP rules take the public address the machine reaches Azure from";
  }
  return undefined;
}

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
  /**
   * `private`: the public IPv4 addresses or CIDR ranges (prefix /8../30, as Azure Storage IP rules
   * take them) of the machines that run `pulumi up`: the inbound path of the uploads. The storage
   * account then keeps its public endpoint but denies every other address (`networkRuleSet`
   * `defaultAction: Deny` with these `ipRules`, trusted Azure services bypassing). Empty (default):
   * public network access stays Disabled and `pulumi up` must run inside a network with a private
   * endpoint to the account; the upload step checks it can reach the account first either way.
   * The workspace takes no such list: Azure ML REST 2025-12-01 has no IP allow-list property on
   * workspaces (azure-native's WorkspaceArgs), so the workspace stays private-endpoint only.
   */
  deployerNetwork: z
    .array(
      z.string().superRefine((value, ctx) => {
        const problem = deployerAddressProblem(value);
        if (problem) ctx.addIssue({ code: "custom", message: problem });
      }),
    )
    .max(200)
    .default([]),
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

/** Options of {@link managedNetwork}. */
export interface ManagedNetworkOptions {
  /**
   * Give the network the FQDN rules of {@link outboundFqdns} (the ML workspace: its jobs and image
   * builds download packages and the base model). Each managed network with at least one FQDN
   * rule gets its own Azure Firewall (billed: the cost estimate counts it); without FQDN rules
   * Azure creates none ("The firewall isn't created until you add an outbound FQDN rule":
   * learn.microsoft.com/azure/machine-learning/how-to-managed-network, "Pricing").
   */
  fqdnRules: boolean;
  /** More rules, e.g. the hub's private endpoint to the ML workspace. */
  extra?: Record<string, unknown>;
}

/**
 * The `managedNetwork` of a workspace or hub in the `private` profile (Azure ML REST 2025-12-01
 * `ManagedNetworkSettings`): `AllowOnlyApprovedOutbound` (AVM WAF-aligned example), the FQDN
 * rules when asked for (with the firewall SKU they run on), and `extra` rules. Undefined in
 * `standard` (no managed network, as before). Provisioning at create time is the workspace's
 * own property (`provisionNetworkNow`, see {@link PROVISION_NETWORK_NOW}).
 */
export function managedNetwork(s: SecurityConfig, opts: ManagedNetworkOptions): Record<string, unknown> | undefined {
  if (!isPrivate(s)) return undefined;
  const rules: Record<string, unknown> = {};
  if (opts.fqdnRules) for (const r of outboundFqdns(s)) rules[r.name] = { type: "FQDN", category: "UserDefined", destination: r.fqdn };
  return {
    isolationMode: "AllowOnlyApprovedOutbound",
    ...(opts.fqdnRules ? { firewallSku: s.firewallSku } : {}),
    outboundRules: { ...rules, ...(opts.extra ?? {}) },
  };
}

/**
 * `provisionNetworkNow` of workspace and hub in `private`: Azure provisions the managed network
 * when the workspace is created. Otherwise the first compute waits about 30 minutes for it (plus
 * about 10 for the first FQDN rule) and may time out, and an online deployment needs a network
 * provisioned first (learn.microsoft.com/azure/machine-learning/how-to-managed-network,
 * "Manually provision a managed VNet"). Azure reads it only at creation.
 */
export const PROVISION_NETWORK_NOW = true;

/**
 * Private endpoints Azure creates for the managed networks of the `private` profile, for the
 * cost estimate. Under `AllowOnlyApprovedOutbound` each managed network gets required private
 * endpoint rules to "the workspace and associated resources" (Key Vault, Storage Account,
 * Container Registry, the Azure ML workspace itself; learn.microsoft.com/azure/machine-learning/
 * how-to-managed-network, "List of required rules"): storage blob and file, key vault, registry
 * and the workspace = 5, for the ML workspace and for the Prompt flow hub (each has its own
 * managed network), plus the hub's rule to the ML workspace (`amlworkspace`) that lets Prompt
 * flow reach the endpoint. An estimate: Azure may add endpoints as its required rules change.
 */
export function privateEndpointCount(s: SecurityConfig, promptFlow: boolean): number {
  if (!isPrivate(s)) return 0;
  const perNetwork = 5; // storage blob, storage file, key vault, registry, the workspace (or hub) itself
  return perNetwork + (promptFlow ? perNetwork + 1 : 0);
}

/**
 * Azure Firewalls of the `private` profile: one per managed network with FQDN rules. Only the ML
 * workspace's network has them (jobs and image builds download packages and the model); the
 * Prompt flow hub's has none (the flow needs no package beyond its runtime:
 * promptflow/requirements.txt), so Azure creates no firewall there.
 */
export function firewallCount(s: SecurityConfig): number {
  return isPrivate(s) ? 1 : 0;
}

/**
 * The storage account's network settings: `standard` as before (public); `private` with no
 * `deployerNetwork`: public network access Disabled (only private endpoints; Azure applies no
 * firewall rule and no trusted-service exception to a Disabled account); `private` with
 * `deployerNetwork`: public access Enabled but `defaultAction: Deny` with those IP rules, and
 * trusted Azure services (diagnostics) allowed (learn.microsoft.com/azure/storage/common/
 * storage-network-security).
 */
export function storageNetwork(s: SecurityConfig): Pick<StorageAccountArgs, "publicNetworkAccess" | "networkRuleSet"> {
  if (!isPrivate(s)) return { publicNetworkAccess: "Enabled" };
  if (s.deployerNetwork.length === 0) return { publicNetworkAccess: "Disabled", networkRuleSet: { defaultAction: "Deny", bypass: "AzureServices" } };
  return {
    publicNetworkAccess: "Enabled",
    networkRuleSet: { defaultAction: "Deny", bypass: "AzureServices", ipRules: s.deployerNetwork.map((ip) => ({ iPAddressOrRange: ip, action: "Allow" })) },
  };
}

/**
 * What the plan and `pulumi preview` should say about the profile: in `private`, where uploads,
 * chat and Prompt flow must run from (README "Security"), and what the lock blocks.
 */
export function securityWarnings(s: SecurityConfig): string[] {
  const w: string[] = [];
  if (isPrivate(s)) {
    const inbound =
      s.deployerNetwork.length > 0
        ? `the storage account accepts only ${s.deployerNetwork.join(", ")} (security.deployerNetwork) besides its private endpoints, so run it from there`
        : "the storage account has no public endpoint (no security.deployerNetwork), so run it from a machine that reaches the account privately " +
          "(e.g. a self-hosted runner in a network with a private endpoint to it)";
    w.push(
      `phi3-finetune:security.profile: private: \`pulumi up\` uploads code and data to the storage account with Entra ID; ${inbound}. ` +
        "The upload step first checks that it can reach the account and stops with the remedy when it cannot. `npm run chat` and Prompt flow " +
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

/** A cluster as `trainingCluster` / `data.prepCluster` declare it (infra/config.ts `ClusterConfig`). */
export interface ImageBuildClusterConfig {
  name: string;
  vmSize: string;
  vmPriority: "Dedicated" | "LowPriority";
  minNodes: number;
  maxNodes: number;
  idleSeconds: number;
}

/** The CPU cluster the `private` profile adds for image builds when it has no prep cluster. */
export const IMAGE_BUILD_CLUSTER: ImageBuildClusterConfig = {
  name: "image-build-cpu",
  vmSize: "Standard_DS3_v2",
  vmPriority: "Dedicated",
  minNodes: 0,
  maxNodes: 1,
  idleSeconds: 120,
};

/**
 * The compute cluster Azure ML builds environment images on in the `private` profile, where the
 * workspace's registry has no public endpoint and so cannot build them itself ("When the Azure
 * Container Registry for your workspace is behind a virtual network, it can't be used to directly
 * build Docker images. Instead, configure your workspace to use a compute cluster or compute
 * instance to build images": learn.microsoft.com/azure/machine-learning/how-to-managed-network,
 * "Configure image builds"). The prep cluster when there is one (a small CPU cluster in the managed
 * network, whose FQDN rules reach PyPI and conda, as image builds must), else
 * {@link IMAGE_BUILD_CLUSTER}, which `add` then says the stack must declare. Undefined outside
 * `private`. The workspace takes the cluster's name (`imageBuildCompute` is a compute name in
 * Azure ML REST 2025-12-01), so it is set when the workspace is created, before the cluster exists.
 */
export function imageBuildCluster(c: {
  security: SecurityConfig;
  data: { source: string; prepCluster?: { name: string } };
  trainingCluster: { name: string };
}): { name: string; add?: ImageBuildClusterConfig } | undefined {
  if (!isPrivate(c.security)) return undefined;
  if (c.data.source === "ultrachat" && c.data.prepCluster) return { name: c.data.prepCluster.name };
  // infra/config.ts refuses a training cluster of that name in this case.
  return { name: IMAGE_BUILD_CLUSTER.name, add: IMAGE_BUILD_CLUSTER };
}

/** Diagnostic settings: every log category (`allLogs` group) and `AllMetrics`, to the stack's Log Analytics (AVM's default). */
export const DIAGNOSTICS = {
  logs: [{ categoryGroup: "allLogs", enabled: true }],
  metrics: [{ category: "AllMetrics", enabled: true }],
} as const;
