// Cost estimate for the Azure ML stack: serving (managed online endpoint deployments, billed
// for every hour they exist) and the AmlCompute clusters (billed per node-hour while nodes
// are up). Pure functions, no Pulumi and no network: the prices come from infra/prices.json
// (list prices recorded by the project) plus optional overrides from stack config.
//
// Units: money is in the table's currency (USD); rates are per hour; a "month" here is a
// 30-day month of 720 hours. Nothing is rounded in arithmetic, only when formatting.

import { z } from "zod";
import type { StackConfig } from "./config";
import { imageBuildCluster } from "./security";
import rawTable from "./prices.json";

/** Hours in the 30-day month used for monthly figures (30 × 24). */
export const HOURS_PER_30_DAYS = 720;

/** A price table: where the prices come from and the hourly price of each VM size. */
export interface PriceTable {
  /** Where the prices come from (free text). */
  source: string;
  /** Date the prices were recorded, YYYY-MM-DD. */
  retrieved: string;
  /** ISO currency code of every price, e.g. "USD". */
  currency: string;
  /** Azure region the prices apply to, e.g. "eastus2". */
  region: string;
  /** Caveats (free text). */
  note: string;
  /** Price per hour of one VM (one node / one instance), keyed by VM size, e.g. "Standard_NC24ads_A100_v4". */
  hourly: Record<string, number>;
  /** VM sizes whose price came from an override rather than from infra/prices.json. */
  overridden: string[];
}

/** A positive, finite hourly price. zod 4's z.number() already rejects NaN and ±Infinity; the refine keeps that explicit. */
const hourlyPrice = z
  .number()
  .positive()
  .refine((n) => Number.isFinite(n), { message: "must be finite" });

const vmSizeName = z.string().trim().min(1);

const tableSchema = z.object({
  source: z.string().min(1),
  retrieved: z.string().regex(/^\d{4}-\d{2}-\d{2}$/, "must be YYYY-MM-DD"),
  currency: z.string().regex(/^[A-Z]{3}$/, "must be an ISO 4217 code"),
  region: z.string().min(1),
  note: z.string().min(1),
  hourly: z.record(vmSizeName, hourlyPrice).refine((h) => Object.keys(h).length > 0, {
    message: "must list at least one VM size",
  }),
});

/** Recorded network prices (infra/prices.json `network`), USD per hour. */
const networkPrices = z
  .object({
    source: z.string().min(1),
    privateEndpointHour: hourlyPrice,
    firewallHour: z.object({ Standard: hourlyPrice, Basic: hourlyPrice }),
    registryHour: z.object({ Basic: hourlyPrice, Premium: hourlyPrice }),
  })
  .parse((rawTable as { network?: unknown }).network);

/** What the `private` profile adds (infra/security.ts): private endpoints, firewalls, the Premium registry. */
export interface NetworkSpec {
  privateEndpoints: number;
  /** Managed networks with FQDN rules: one Azure Firewall each. */
  firewalls: number;
  firewallSku: "Standard" | "Basic";
  /** Premium instead of Basic container registry (private link). */
  premiumRegistry: boolean;
}

/** Cost of the `private` profile's networking, per hour and per 30 days (list prices, no data processing). */
export interface NetworkEstimate extends NetworkSpec {
  privateEndpointsPerHour: number;
  firewallsPerHour: number;
  /** Premium minus Basic registry, per hour. */
  registryExtraPerHour: number;
  perHour: number;
  per30Days: number;
  source: string;
}

/**
 * Price the networking of the `private` profile from infra/prices.json `network`: private
 * endpoints × endpoint-hour, firewalls × the SKU's deployment-hour, and the Premium registry's
 * extra over Basic. Data processed (per GB) is not counted. Throws on negative counts.
 */
export function estimateNetworkCost(spec: NetworkSpec): NetworkEstimate {
  if (spec.privateEndpoints < 0 || spec.firewalls < 0) throw new Error("Invalid network cost input: counts must be >= 0");
  const privateEndpointsPerHour = spec.privateEndpoints * networkPrices.privateEndpointHour;
  const firewallsPerHour = spec.firewalls * networkPrices.firewallHour[spec.firewallSku];
  const registryExtraPerHour = spec.premiumRegistry ? networkPrices.registryHour.Premium - networkPrices.registryHour.Basic : 0;
  const perHour = privateEndpointsPerHour + firewallsPerHour + registryExtraPerHour;
  return { ...spec, privateEndpointsPerHour, firewallsPerHour, registryExtraPerHour, perHour, per30Days: perHour * HOURS_PER_30_DAYS, source: networkPrices.source };
}

/** Printable lines of a {@link NetworkEstimate} (money to 2 decimals). */
export function formatNetworkCost(n: NetworkEstimate, currency = "USD"): string[] {
  const m = (x: number) => formatMoney(x, currency);
  return [
    "Private networking (security.profile private; bills every hour the stack exists):",
    `  ${n.privateEndpoints} private endpoints (managed networks) @ ${m(n.privateEndpointsPerHour / Math.max(n.privateEndpoints, 1))}/h = ${m(n.privateEndpointsPerHour)}/h`,
    `  ${n.firewalls} × Azure Firewall ${n.firewallSku} (FQDN outbound rules) = ${m(n.firewallsPerHour)}/h`,
    ...(n.premiumRegistry ? [`  Premium container registry (private link) instead of Basic: +${m(n.registryExtraPerHour)}/h`] : []),
    `  total: ${m(n.perHour)}/h, ${m(n.per30Days)} per 30 days (${HOURS_PER_30_DAYS} h), plus data processing per GB`,
    `  Price source: ${n.source}`,
  ];
}

/** Case-insensitive lookup: Azure treats VM size names case-insensitively. */
function findKey(hourly: Record<string, number>, vmSize: string): string | undefined {
  if (Object.prototype.hasOwnProperty.call(hourly, vmSize)) return vmSize;
  const lower = vmSize.toLowerCase();
  return Object.keys(hourly).find((k) => k.toLowerCase() === lower);
}

/**
 * Loads the project's price table (infra/prices.json) and applies overrides.
 *
 * @param overrides Optional map of VM size → price in the table's currency (USD) per hour
 *   for one VM, typically read from stack config. An override replaces the recorded price of
 *   the same size (matched case-insensitively, as Azure does) or adds a new size. Typed as
 *   `unknown` values because config is untrusted: every value is validated.
 * @returns The validated table; `overridden` lists the sizes whose price came from `overrides`.
 * @throws Error if infra/prices.json is malformed, or if an override's size name is empty or
 *   its value is not a positive finite number (NaN, ±Infinity, 0, negatives, strings are all
 *   rejected); the message names the offending size and value.
 * Source of the recorded prices: see the table's `source` and `note` fields.
 */
export function loadPriceTable(overrides?: Record<string, unknown>): PriceTable {
  const parsed = tableSchema.safeParse(rawTable);
  if (!parsed.success) {
    throw new Error(`infra/prices.json is invalid: ${z.prettifyError(parsed.error)}`);
  }
  const hourly: Record<string, number> = { ...parsed.data.hourly };
  const overridden: string[] = [];

  if (overrides !== undefined) {
    if (overrides === null || typeof overrides !== "object" || Array.isArray(overrides)) {
      throw new Error(
        `Price overrides must be an object of VM size → USD per hour, got ${describe(overrides)}`,
      );
    }
    for (const [rawSize, value] of Object.entries(overrides)) {
      const size = rawSize.trim();
      if (size === "") {
        throw new Error("Price override has an empty VM size name");
      }
      const price = hourlyPrice.safeParse(value);
      if (!price.success) {
        throw new Error(
          `Invalid price override for VM size "${size}": expected a positive finite number ` +
            `(${parsed.data.currency} per hour), got ${describe(value)}`,
        );
      }
      const key = findKey(hourly, size) ?? size;
      hourly[key] = price.data;
      if (!overridden.includes(key)) overridden.push(key);
    }
  }

  return { ...parsed.data, hourly, overridden };
}

function describe(value: unknown): string {
  if (typeof value === "string") return `the string ${JSON.stringify(value)}`;
  if (typeof value === "number") return String(value);
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return typeof value;
}

/**
 * Price per hour of one VM of `vmSize` in `prices` (matched case-insensitively), or
 * `undefined` when the table has no price for it. Never guesses.
 */
export function hourlyPriceOf(prices: PriceTable, vmSize: string): number | undefined {
  const key = findKey(prices.hourly, vmSize);
  return key === undefined ? undefined : prices.hourly[key];
}

const count = z.number().int().nonnegative();

const clusterSchema = z
  .object({ vmSize: vmSizeName, minNodes: count, maxNodes: count })
  .refine((c) => c.minNodes <= c.maxNodes, { message: "minNodes must be ≤ maxNodes" });

const inputSchema = z.object({
  training: clusterSchema,
  trainingJob: z.object({ nodes: count.min(1), processesPerNode: count.min(1) }).optional(),
  prep: clusterSchema.optional(),
  imageBuild: clusterSchema.optional(),
  deployments: z.array(
    z.object({
      name: z.string().min(1),
      instanceType: vmSizeName,
      instanceCount: count,
      autoscale: z
        .object({ minInstances: count, maxInstances: count })
        .refine((a) => a.minInstances <= a.maxInstances, { message: "minInstances must be ≤ maxInstances" })
        .optional(),
    }),
  ),
});

/** An AmlCompute cluster to price: VM size and its scale settings (node counts). */
export interface ClusterSpec {
  vmSize: string;
  minNodes: number;
  maxNodes: number;
}

/** One managed online deployment to price. */
export interface DeploymentSpec {
  name: string;
  instanceType: string;
  /** Instances (with autoscale: the starting count). */
  instanceCount: number;
  /** Autoscale bounds: the deployment bills between min and max instances. */
  autoscale?: { minInstances: number; maxInstances: number };
}

/** The fine-tune job's share of the training cluster: nodes it runs on, processes on each. */
export interface TrainingJobSpec {
  /** Nodes the job runs on (config `training.instanceCount`); each bills while the job runs. */
  nodes: number;
  /** Processes per node (config `training.processesPerInstance`); does not change the price. */
  processesPerNode: number;
}

/** What to price: the training cluster, an optional data-prep cluster, the online deployments. */
export interface CostInput {
  training: ClusterSpec;
  /** The fine-tune job's nodes; priced as unit price × nodes per hour while it runs. */
  trainingJob?: TrainingJobSpec;
  prep?: ClusterSpec;
  /** The `private` profile's image-build cluster, when it adds one (infra/security.ts `imageBuildCluster`). */
  imageBuild?: ClusterSpec;
  deployments: DeploymentSpec[];
}

/** Cost of one deployment. `null` money means the VM size has no price in the table. */
export interface ServingLine {
  name: string;
  instanceType: string;
  instanceCount: number;
  /** Price of one instance, per hour; null when unknown. */
  unitPerHour: number | null;
  /** unitPerHour × instanceCount, per hour; null when unknown (0 when instanceCount is 0). */
  perHour: number | null;
  /** Autoscaled only: instance bounds and unitPerHour × min / × max per hour (null when unknown). */
  autoscale?: { minInstances: number; maxInstances: number; minPerHour: number | null; maxPerHour: number | null };
}

/** Serving cost: managed online deployments bill every hour they exist, traffic or not. */
export interface ServingEstimate {
  /** Sum of every line per hour; null if any line's price is unknown (a partial sum would understate). */
  perHour: number | null;
  /** perHour × 720; null when perHour is null. */
  per30Days: number | null;
  /**
   * When any deployment autoscales: the totals with every autoscaled deployment at its min and at
   * its max (fixed deployments at their count), per hour and per 30 days; null when a price is unknown.
   */
  range?: { minPerHour: number | null; maxPerHour: number | null; minPer30Days: number | null; maxPer30Days: number | null };
  lines: ServingLine[];
}

/** Cost of an AmlCompute cluster. `null` money means the VM size has no price in the table. */
export interface ClusterEstimate {
  vmSize: string;
  minNodes: number;
  maxNodes: number;
  /** Price of one node per hour; null when unknown. */
  unitPerHour: number | null;
  /** Cost per hour with the cluster scaled out to maxNodes (price × maxNodes); null when unknown. */
  perClusterHour: number | null;
  /** Cost per hour of the nodes kept up when idle (price × minNodes): 0 when minNodes is 0, whatever the price; null when unknown and minNodes > 0. */
  idlePerHour: number | null;
  /** idlePerHour × 720: what an idle cluster costs per 30 days; null when idlePerHour is null. */
  idlePer30Days: number | null;
}

/** Result of {@link estimateCost}. Money in `currency` (USD). */
export interface CostEstimate {
  currency: string;
  /** Region the table's prices are from. */
  region: string;
  /** Region the stack deploys to, when given to {@link estimateCost}; the report says so when it differs from `region`. */
  stackRegion?: string;
  source: string;
  retrieved: string;
  /** Sizes whose price came from stack-config overrides (copied from the table). */
  overridden: string[];
  serving: ServingEstimate;
  training: ClusterEstimate;
  /** The fine-tune job while it runs: unit price × nodes per hour (null when the price is unknown). */
  trainingJob?: TrainingJobSpec & { perHour: number | null };
  prep?: ClusterEstimate;
  imageBuild?: ClusterEstimate;
  /** VM sizes used by the input that have no price in the table (each listed once, in order of first use). */
  unknownSizes: string[];
}

/**
 * Estimates serving and cluster costs from list prices.
 *
 * - Serving: per deployment, unit price × instanceCount per hour; summed over deployments;
 *   per30Days = perHour × 720 (a managed online deployment bills every hour it exists; Azure
 *   ML adds no surcharge over the VM price).
 * - Autoscaled deployments (`autoscale`): the line also gets price × minInstances and × maxInstances,
 *   and `serving.range` the totals at every autoscaled deployment's min and max (per hour, per 30 days).
 * - The fine-tune job (`trainingJob`): price × nodes per hour while it runs.
 * - Clusters: perClusterHour = price × maxNodes (scaled out); idlePerHour = price × minNodes
 *   (0 at minNodes 0). Training hours depend on the job, so no monthly total is given.
 *
 * Sizes missing from the table are listed in `unknownSizes` and their money fields, plus any
 * total that depends on them, are `null`: never counted as 0, never guessed.
 * Nothing is rounded here.
 *
 * @param input Cluster specs and deployments (counts are non-negative integers, minNodes ≤ maxNodes).
 * @param prices Table from {@link loadPriceTable}.
 * @param stackRegion Region the stack deploys to (`azure-native:location`); when it is not the
 *   table's region, {@link formatCostReport} says the prices are from another region.
 * @throws Error if the input is malformed (negative or fractional counts, minNodes > maxNodes,
 *   empty names); the message says which field.
 */
export function estimateCost(input: CostInput, prices: PriceTable, stackRegion?: string): CostEstimate {
  const parsed = inputSchema.safeParse(input);
  if (!parsed.success) {
    throw new Error(`Invalid cost input: ${z.prettifyError(parsed.error)}`);
  }
  const { training, trainingJob, prep, imageBuild, deployments } = parsed.data;
  const unknownSizes: string[] = [];
  const priceOf = (vmSize: string): number | null => {
    const p = hourlyPriceOf(prices, vmSize);
    if (p === undefined) {
      if (!unknownSizes.some((u) => u.toLowerCase() === vmSize.toLowerCase())) {
        unknownSizes.push(vmSize);
      }
      return null;
    }
    return p;
  };

  const times = (unit: number | null, n: number) => (unit === null ? null : unit * n);
  const lines: ServingLine[] = deployments.map((d) => {
    const unit = priceOf(d.instanceType);
    return {
      name: d.name,
      instanceType: d.instanceType,
      instanceCount: d.instanceCount,
      unitPerHour: unit,
      perHour: times(unit, d.instanceCount),
      ...(d.autoscale
        ? { autoscale: { ...d.autoscale, minPerHour: times(unit, d.autoscale.minInstances), maxPerHour: times(unit, d.autoscale.maxInstances) } }
        : {}),
    };
  });
  const sum = (pick: (l: ServingLine) => number | null): number | null =>
    lines.reduce<number | null>((total, l) => (total === null || pick(l) === null ? null : total + pick(l)!), 0);
  const servingPerHour = sum((l) => l.perHour);
  const per30 = (n: number | null) => (n === null ? null : n * HOURS_PER_30_DAYS);
  const minPerHour = sum((l) => l.autoscale?.minPerHour ?? l.perHour);
  const maxPerHour = sum((l) => l.autoscale?.maxPerHour ?? l.perHour);

  const cluster = (c: ClusterSpec): ClusterEstimate => {
    const unit = priceOf(c.vmSize);
    const idle = c.minNodes === 0 ? 0 : unit === null ? null : unit * c.minNodes;
    return {
      vmSize: c.vmSize,
      minNodes: c.minNodes,
      maxNodes: c.maxNodes,
      unitPerHour: unit,
      perClusterHour: unit === null ? null : unit * c.maxNodes,
      idlePerHour: idle,
      idlePer30Days: idle === null ? null : idle * HOURS_PER_30_DAYS,
    };
  };

  const trainingEstimate = cluster(training);
  const prepEstimate = prep === undefined ? undefined : cluster(prep);
  const imageBuildEstimate = imageBuild === undefined ? undefined : cluster(imageBuild);

  return {
    currency: prices.currency,
    region: prices.region,
    ...(stackRegion === undefined ? {} : { stackRegion }),
    source: prices.source,
    retrieved: prices.retrieved,
    overridden: [...prices.overridden],
    serving: {
      perHour: servingPerHour,
      per30Days: per30(servingPerHour),
      ...(lines.some((l) => l.autoscale) ? { range: { minPerHour, maxPerHour, minPer30Days: per30(minPerHour), maxPer30Days: per30(maxPerHour) } } : {}),
      lines,
    },
    training: trainingEstimate,
    ...(trainingJob === undefined
      ? {}
      : { trainingJob: { ...trainingJob, perHour: trainingEstimate.unitPerHour === null ? null : trainingEstimate.unitPerHour * trainingJob.nodes } }),
    ...(prepEstimate === undefined ? {} : { prep: prepEstimate }),
    ...(imageBuildEstimate === undefined ? {} : { imageBuild: imageBuildEstimate }),
    unknownSizes,
  };
}

/**
 * Formats an amount of money with 2 decimals and its currency, e.g. `USD 2644.56`;
 * `null` (unknown price) becomes `unknown`.
 * @throws Error if the amount is not a finite number.
 */
export function formatMoney(amount: number | null, currency: string): string {
  if (amount === null) return "unknown";
  if (!Number.isFinite(amount)) throw new Error(`Cannot format non-finite amount ${amount}`);
  return `${currency} ${amount.toFixed(2)}`;
}

/**
 * Renders an estimate as printable lines (no trailing newlines): the price source and date,
 * one line per deployment, the serving total per hour and per 30 days (720 h), each cluster's
 * cost at max nodes and when idle, and a warning naming every VM size without a price.
 * Money is rounded to 2 decimals here only.
 */
export function formatCostReport(estimate: CostEstimate): string[] {
  const cur = estimate.currency;
  const m = (n: number | null): string => formatMoney(n, cur);
  const out: string[] = [];
  out.push(
    `Cost estimate: list prices, ${cur}, region ${estimate.region}, recorded ${estimate.retrieved} ` +
      `(no tax, discounts, storage or egress; Azure ML adds no surcharge over VM prices).`,
  );
  if (estimate.stackRegion !== undefined && estimate.stackRegion.toLowerCase() !== estimate.region.toLowerCase()) {
    out.push(
      `NOTE: these are ${estimate.region} prices; this stack deploys to ${estimate.stackRegion}, where prices differ. ` +
        `Set your region's prices with the \`prices\` config key (USD per hour by VM size).`,
    );
  }
  out.push(`Price source: ${estimate.source}`);
  if (estimate.overridden.length > 0) {
    out.push(`Prices overridden by stack config: ${estimate.overridden.join(", ")}`);
  }

  out.push("Serving (managed online deployments bill every hour they exist, with or without traffic):");
  if (estimate.serving.lines.length === 0) out.push("  (no deployments)");
  for (const l of estimate.serving.lines) {
    const a = l.autoscale;
    out.push(
      a
        ? `  ${l.name}: ${a.minInstances}–${a.maxInstances} × ${l.instanceType} @ ${m(l.unitPerHour)}/h = ${m(a.minPerHour)}/h at min, ${m(a.maxPerHour)}/h at max (autoscale; starts at ${l.instanceCount})`
        : `  ${l.name}: ${l.instanceCount} × ${l.instanceType} @ ${m(l.unitPerHour)}/h = ${m(l.perHour)}/h`,
    );
  }
  const r = estimate.serving.range;
  out.push(
    r
      ? `  total: ${m(r.minPerHour)}/h at min, ${m(r.maxPerHour)}/h at max; ${m(r.minPer30Days)} to ${m(r.maxPer30Days)} per 30 days (${HOURS_PER_30_DAYS} h)`
      : `  total: ${m(estimate.serving.perHour)}/h, ${m(estimate.serving.per30Days)} per 30 days (${HOURS_PER_30_DAYS} h)`,
  );

  const cluster = (label: string, c: ClusterEstimate): void => {
    out.push(`${label} cluster: ${c.vmSize}, ${c.minNodes}–${c.maxNodes} nodes @ ${m(c.unitPerHour)}/node-hour`);
    out.push(
      `  scaled out (${c.maxNodes} nodes): ${m(c.perClusterHour)}/h; idle (${c.minNodes} nodes): ` +
        `${m(c.idlePerHour)}/h = ${m(c.idlePer30Days)} per 30 days`,
    );
  };
  cluster("Training", estimate.training);
  const job = estimate.trainingJob;
  if (job && job.nodes * job.processesPerNode > 1) {
    out.push(
      `  fine-tune job: ${job.nodes} node${job.nodes === 1 ? "" : "s"} × ${job.processesPerNode} process${job.processesPerNode === 1 ? "" : "es"} ` +
        `(world size ${job.nodes * job.processesPerNode}) = ${m(job.perHour)}/h while it runs`,
    );
  }
  if (estimate.prep !== undefined) cluster("Prep", estimate.prep);
  if (estimate.imageBuild !== undefined) cluster("Image-build", estimate.imageBuild);

  if (estimate.unknownSizes.length > 0) {
    out.push(
      `WARNING: no price for ${estimate.unknownSizes.join(", ")}: amounts that depend on ` +
        `${estimate.unknownSizes.length === 1 ? "it" : "them"} are "unknown", not 0. ` +
        `Add the price (${cur} per hour) as a stack-config override.`,
    );
  }
  return out;
}

/**
 * The {@link CostInput} of a validated stack config: the training cluster and the fine-tune
 * job's nodes (`training.instanceCount` × `training.processesPerInstance`), the prep cluster when
 * the data comes from ultrachat_200k, and every deployment.
 */
export function costInputOf(c: StackConfig): CostInput {
  return {
    training: c.trainingCluster,
    trainingJob: { nodes: c.training.instanceCount, processesPerNode: c.training.processesPerInstance },
    prep: c.data.source === "ultrachat" ? c.data.prepCluster : undefined,
    ...(imageBuildCluster(c)?.add ? { imageBuild: imageBuildCluster(c)!.add } : {}),
    deployments: c.serving.deployments.map((d) => ({
      name: d.name,
      instanceType: d.instanceType,
      instanceCount: d.instanceCount,
      ...(d.autoscale ? { autoscale: { minInstances: d.autoscale.minInstances, maxInstances: d.autoscale.maxInstances } } : {}),
    })),
  };
}

/** One job a first `pulumi up` runs, to price: hours on `nodes` nodes of `vmSize`. */
export interface JobSpec {
  /** What it is, e.g. `fine-tune job` or `data preparation job`. */
  label: string;
  /** Azure ML job name (deterministic: a content hash). */
  jobName: string;
  vmSize: string;
  nodes: number;
  /** Estimated hours (infra/training-estimate.ts), each node billing for all of them. */
  hours: number;
  /** What the estimate assumes. */
  basis: string;
}

/** A priced job: `usd` = unit price × nodes × hours (null when the size has no price). */
export interface JobCost extends JobSpec {
  unitPerHour: number | null;
  usd: number | null;
}

/** The one-off cost of the jobs a first `pulumi up` runs. */
export interface OneOffEstimate {
  jobs: JobCost[];
  /** Sum of the jobs; null when any price is unknown. */
  total: number | null;
  hours: number;
}

/**
 * Prices the jobs a first `pulumi up` runs (data preparation, fine-tune): unit price × nodes ×
 * hours each, and their total. Unknown prices give `null`, never 0.
 */
export function estimateOneOff(jobs: JobSpec[], prices: PriceTable): OneOffEstimate {
  const priced = jobs.map((j): JobCost => {
    const unit = hourlyPriceOf(prices, j.vmSize) ?? null;
    return { ...j, unitPerHour: unit, usd: unit === null ? null : unit * j.nodes * j.hours };
  });
  const total = priced.reduce<number | null>((t, j) => (t === null || j.usd === null ? null : t + j.usd), 0);
  return { jobs: priced, total, hours: priced.reduce((h, j) => h + j.hours, 0) };
}

/** A VM size offered instead of another, with what `instances` of it cost (null when unknown). */
export interface SizeOption {
  vmSize: string;
  perHour: number | null;
  per30Days: number | null;
}

/** What `instances` instances of each of `sizes` cost per hour and per 30 days. */
export function priceOptions(sizes: readonly string[], instances: number, prices: PriceTable): SizeOption[] {
  return sizes.map((vmSize) => {
    const unit = hourlyPriceOf(prices, vmSize);
    const perHour = unit === undefined ? null : unit * instances;
    return { vmSize, perHour, per30Days: perHour === null ? null : perHour * HOURS_PER_30_DAYS };
  });
}
