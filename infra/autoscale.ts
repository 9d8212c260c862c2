/**
 * Autoscaled serving: per deployment, an optional `autoscale: {minInstances, maxInstances, rules}`
 * declared as an Azure Monitor autoscale setting (azure-native `monitor.AutoscaleSetting`, REST
 * 2021-05-01-preview in azure-native 3.28; the v2 token `insights:AutoscaleSetting` is an alias)
 * whose target is the managed online deployment. The config schema, its plan-time rules, the
 * quota the instances need, and the profile in Azure's shape. Pure: no Pulumi resources, no network.
 *
 * Sources (recorded 2026-11-23):
 * - learn.microsoft.com/azure/machine-learning/how-to-autoscale-endpoints: online endpoints scale
 *   through Azure Monitor autoscale; the setting's target is the deployment's ARM id; a rule's
 *   `metricResourceUri` is the deployment (or the endpoint for endpoint metrics); the identity
 *   that deploys needs `microsoft.insights/autoscalesettings/write`.
 * - learn.microsoft.com/azure/azure-monitor/reference/supported-metrics/microsoft-machinelearningservices-workspaces-onlineendpoints-deployments-metrics:
 *   the deployment's metrics ({@link DEPLOYMENT_METRICS}), all at the PT1M time grain.
 * - Azure Monitor autoscale (azure-native `MetricTriggerArgs`, `ScaleActionArgs`): time window
 *   5 minutes to 12 hours, cooldown 1 minute to 1 week (ISO-8601 durations), at most 10 rules
 *   per profile; managed online deployments run at least 1 instance and at most 50
 *   (learn.microsoft.com/azure/machine-learning/how-to-manage-quotas, "Number of instances per deployment").
 */
import { z } from "zod";
import { int, num } from "./config-values";
import type * as inputs from "@pulumi/azure-native/types/input";
import { preflightInput, requiredQuota } from "./quota";
import type { StackConfig } from "./config";
import { isGpuSize, RECORDED_VM_SIZES } from "./vm-sizes";

/** Azure Monitor metric namespace of a managed online deployment. */
export const DEPLOYMENT_METRIC_NAMESPACE = "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/deployments";

/**
 * Metrics of `Microsoft.MachineLearningServices/workspaces/onlineEndpoints/deployments` a rule
 * may use (REST names), with their unit and whether only GPU instances report them.
 */
export const DEPLOYMENT_METRICS = {
  CpuUtilizationPercentage: { unit: "percent", gpuOnly: false },
  CpuMemoryUtilizationPercentage: { unit: "percent", gpuOnly: false },
  GpuUtilizationPercentage: { unit: "percent", gpuOnly: true },
  GpuMemoryUtilizationPercentage: { unit: "percent", gpuOnly: true },
  DiskUtilization: { unit: "percent", gpuOnly: false },
  RequestLatency_P50: { unit: "milliseconds", gpuOnly: false },
  RequestLatency_P90: { unit: "milliseconds", gpuOnly: false },
  RequestLatency_P95: { unit: "milliseconds", gpuOnly: false },
  RequestLatency_P99: { unit: "milliseconds", gpuOnly: false },
  RequestsPerMinute: { unit: "requests per minute", gpuOnly: false },
} as const;
export type DeploymentMetric = keyof typeof DEPLOYMENT_METRICS;

/** Azure ML's limit of instances per managed online deployment (adjustable by a support request). */
export const MAX_INSTANCES_PER_DEPLOYMENT = 50;


/**
 * One scale rule. Every metric here grows with load, so `scale: out` fires when the metric is
 * above `threshold` and `scale: in` when it is below (the operator follows from the direction).
 */
export const ruleSchema = z.strictObject({
  /** Deployment metric (REST name), e.g. GpuUtilizationPercentage, CpuUtilizationPercentage, RequestLatency_P90. */
  metric: z.enum(Object.keys(DEPLOYMENT_METRICS) as [DeploymentMetric, ...DeploymentMetric[]]),
  /** `out` adds instances when the metric is above the threshold; `in` removes them when below. */
  scale: z.enum(["out", "in"]),
  /** Threshold in the metric's unit: percent, milliseconds or requests per minute. */
  threshold: num((n) => n.min(0, { error: "must be >= 0" })),
  /** Instances added or removed per action (default 1). */
  by: int(1, 10).default(1),
  /** Minutes of metric data the rule looks at (ISO-8601 `PT<n>M`; Azure: 5 minutes to 12 hours; default 5). */
  windowMinutes: int(5, 720).default(5),
  /** Minutes to wait after a scale action before the next (ISO-8601 `PT<n>M`; Azure: 1 minute to 1 week; default 5). */
  cooldownMinutes: int(1, 10080).default(5),
  /** How the instances' values combine (Azure `statistic`; default Average). */
  statistic: z.enum(["Average", "Max", "Min"]).default("Average"),
  /** How the window's values combine (Azure `timeAggregation`; default Average). */
  timeAggregation: z.enum(["Average", "Maximum", "Minimum", "Last"]).default("Average"),
});
export type AutoscaleRule = z.output<typeof ruleSchema>;

/** `serving.deployments[].autoscale`: instance bounds and rules (default rules: {@link defaultRules}). */
export const autoscaleSchema = z.strictObject({
  /** Fewest instances (managed online deployments run at least 1). */
  minInstances: int(1, MAX_INSTANCES_PER_DEPLOYMENT),
  /** Most instances; the quota must cover it (20% online reservation included). Azure ML allows 50 per deployment. */
  maxInstances: int(1, MAX_INSTANCES_PER_DEPLOYMENT),
  /** Scale rules, at most 10 (Azure's limit per profile); default: utilization of the GPU (GPU sizes) or CPU. */
  rules: z.array(ruleSchema).max(10, { error: "Azure allows at most 10 rules per autoscale profile" }).optional(),
});
export type AutoscaleConfig = z.output<typeof autoscaleSchema>;

/**
 * `quota`: the vCPU quota per VM family the subscription has in the stack's region (Azure ML
 * studio → Quota), optional. When a family is given, the plan refuses a config whose clusters and
 * deployments need more than it (the preflight's arithmetic: {@link requiredQuota}).
 */
export const quotaSchema = z.record(z.string(), int(0, 1_000_000));

/**
 * The rules a deployment gets without `rules`: scale out by 1 when the average utilization of
 * the GPU (GPU sizes) or CPU stays above 70% for 5 minutes (cooldown 5 minutes); scale in by 1
 * when it stays below 30% for 10 minutes (cooldown 10 minutes), the shape of Microsoft's example
 * (how-to-autoscale-endpoints: out > 70%, in < 30%).
 */
export function defaultRules(instanceType: string): AutoscaleRule[] {
  const metric: DeploymentMetric = isGpuSize(instanceType) ? "GpuUtilizationPercentage" : "CpuUtilizationPercentage";
  const rule = (scale: "out" | "in", threshold: number, minutes: number): AutoscaleRule => ({
    metric, scale, threshold, by: 1, windowMinutes: minutes, cooldownMinutes: minutes, statistic: "Average", timeAggregation: "Average",
  });
  return [rule("out", 70, 5), rule("in", 30, 10)];
}

/** The rules in effect: the configured ones, else {@link defaultRules}. */
export function rulesOf(a: AutoscaleConfig, instanceType: string): AutoscaleRule[] {
  return a.rules ?? defaultRules(instanceType);
}

/** ISO-8601 duration of whole minutes, as Azure Monitor writes them (`PT5M`). */
export function isoMinutes(minutes: number): string {
  return `PT${minutes}M`;
}

/** An autoscale problem with its path under the stack config. */
export interface AutoscaleIssue {
  path: (string | number)[];
  input: unknown;
  message: string;
}

/**
 * Plan-time rules of each autoscaled deployment: `minInstances` <= `maxInstances`;
 * `instanceCount` (the starting and default count) within them; GPU metrics only on GPU sizes;
 * percent thresholds at most 100; at least one scale-out and one scale-in rule; and, per metric,
 * every scale-in threshold below every scale-out threshold (else the deployment flaps: each
 * action triggers the opposite one). Returns every problem with its path.
 */
export function autoscaleIssues(deployments: StackConfig["serving"]["deployments"]): AutoscaleIssue[] {
  const issues: AutoscaleIssue[] = [];
  deployments.forEach((d, i) => {
    const a = d.autoscale;
    if (!a) return;
    const at = (...rest: (string | number)[]) => ["serving", "deployments", i, ...rest];
    if (a.minInstances > a.maxInstances) {
      issues.push({ path: at("autoscale", "minInstances"), input: a.minInstances, message: `must be <= autoscale.maxInstances (${a.maxInstances})` });
    } else if (d.instanceCount < a.minInstances || d.instanceCount > a.maxInstances) {
      issues.push({
        path: at("instanceCount"),
        input: d.instanceCount,
        message: `is the starting and default instance count of an autoscaled deployment: it must be within autoscale's ${a.minInstances}..${a.maxInstances}`,
      });
    }
    const rules = rulesOf(a, d.instanceType);
    rules.forEach((r, j) => {
      const facts = DEPLOYMENT_METRICS[r.metric];
      if (facts.gpuOnly && !isGpuSize(d.instanceType)) {
        issues.push({ path: at("autoscale", "rules", j, "metric"), input: r.metric, message: `is reported by GPU instances only, and ${d.instanceType} has no GPU; use CpuUtilizationPercentage or a request metric` });
      }
      if (facts.unit === "percent" && r.threshold > 100) {
        issues.push({ path: at("autoscale", "rules", j, "threshold"), input: r.threshold, message: `is a percentage of ${r.metric}: must be <= 100` });
      }
    });
    if (a.rules && !(rules.some((r) => r.scale === "out") && rules.some((r) => r.scale === "in"))) {
      issues.push({ path: at("autoscale", "rules"), input: rules.map((r) => r.scale), message: "needs at least one scale-out and one scale-in rule (else the deployment never leaves its max or its min)" });
    }
    rules.forEach((r, j) => {
      if (r.scale !== "in") return;
      const lowestOut = Math.min(...rules.filter((o) => o.scale === "out" && o.metric === r.metric).map((o) => o.threshold));
      if (r.threshold >= lowestOut) {
        issues.push({
          path: at("autoscale", "rules", j, "threshold"),
          input: r.threshold,
          message: `scales in below ${r.threshold} while a rule scales out above ${lowestOut} on ${r.metric}: the deployment would flap; keep the scale-in threshold below the scale-out one`,
        });
      }
    });
  });
  return issues;
}

/**
 * The `quota` rule: per VM family declared in `quota`, the vCPUs the stack needs (training and
 * prep clusters at maxNodes, deployments at their instance count or autoscale max, with Azure ML's
 * 20% online reservation outside the A100 v4 family: {@link requiredQuota}, the preflight's own
 * arithmetic, on the sizes recorded in `infra/vm-sizes.ts`) must fit. An excess is reported on
 * each autoscaled deployment's `autoscale.maxInstances` in that family, else on `quota.<family>`.
 * Families not used by any recorded size are refused (a typo would silently disable the check).
 */
export function quotaIssues(c: StackConfig): AutoscaleIssue[] {
  const issues: AutoscaleIssue[] = [];
  const norm = (s: string) => s.toLowerCase().replace(/\s+/g, "");
  const families = new Map(RECORDED_VM_SIZES.map((s) => [norm(s.family), s.family]));
  const declared = new Map<string, [string, number]>();
  for (const [family, vCPUs] of Object.entries(c.quota)) {
    if (!families.has(norm(family))) {
      const used = [...new Set(preflightSizes(c).map((s) => RECORDED_VM_SIZES.find((r) => r.name.toLowerCase() === s.toLowerCase())?.family).filter(Boolean))];
      issues.push({ path: ["quota", family], input: family, message: `is not the quota family of any size in infra/vm-sizes.ts; this stack's sizes use ${used.join(", ") || "(unrecorded sizes)"}` });
      continue;
    }
    declared.set(norm(family), [family, vCPUs]);
  }
  for (const need of requiredQuota(preflightInput(c), [...RECORDED_VM_SIZES])) {
    const quota = declared.get(norm(need.family));
    if (!quota || need.priority !== "Dedicated" || need.vCPUs <= quota[1]) continue;
    const explain = need.parts.map((p) => `${p.role}: ${p.vCPUs}`).join(", ");
    const message = `needs ${need.vCPUs} vCPUs of ${need.family} (${explain}; 20% online reservation included where Azure ML applies it), above the declared quota of ${quota[1]} (quota.${quota[0]})`;
    const autoscaled = c.serving.deployments
      .map((d, i) => ({ d, i }))
      .filter(({ d }) => d.autoscale && need.parts.some((p) => p.role === `deployment ${d.name} (autoscale max)`));
    if (autoscaled.length === 0) issues.push({ path: ["quota", quota[0]], input: quota[1], message });
    for (const { d, i } of autoscaled) issues.push({ path: ["serving", "deployments", i, "autoscale", "maxInstances"], input: d.autoscale!.maxInstances, message });
  }
  return issues;
}

function preflightSizes(c: StackConfig): string[] {
  return [c.trainingCluster.vmSize, ...(c.data.source === "ultrachat" ? [c.data.prepCluster.vmSize] : []), ...c.serving.deployments.map((d) => d.instanceType)];
}

/**
 * The autoscale setting's single profile in Azure's shape (azure-native `AutoscaleProfileArgs`):
 * capacity minimum/maximum/default as strings (default = the deployment's `instanceCount`, used
 * when metrics are missing), one rule per configured rule on the deployment's own metrics
 * (`metricResourceUri` = the deployment's ARM id, time grain PT1M, window and cooldown as
 * ISO-8601 minutes, `ChangeCount` actions).
 */
export function autoscaleProfile(
  a: AutoscaleConfig,
  deployment: { instanceType: string; instanceCount: number; id: inputs.monitor.MetricTriggerArgs["metricResourceUri"] },
): inputs.monitor.AutoscaleProfileArgs {
  return {
    name: "phi3-autoscale",
    capacity: { minimum: String(a.minInstances), maximum: String(a.maxInstances), default: String(deployment.instanceCount) },
    rules: rulesOf(a, deployment.instanceType).map(
      (r): inputs.monitor.ScaleRuleArgs => ({
        metricTrigger: {
          metricName: r.metric,
          metricNamespace: DEPLOYMENT_METRIC_NAMESPACE,
          metricResourceUri: deployment.id,
          timeGrain: "PT1M",
          statistic: r.statistic,
          timeWindow: isoMinutes(r.windowMinutes),
          timeAggregation: r.timeAggregation,
          operator: r.scale === "out" ? "GreaterThan" : "LessThan",
          threshold: r.threshold,
        },
        scaleAction: { direction: r.scale === "out" ? "Increase" : "Decrease", type: "ChangeCount", value: String(r.by), cooldown: isoMinutes(r.cooldownMinutes) },
      }),
    ),
  };
}

/** One line for the plan: `1..3 instances (default 1); out: GpuUtilizationPercentage > 70 over PT5M +1 (cooldown PT5M); in: ...`. */
export function describeAutoscale(profile: { capacity: { minimum: string; maximum: string; default: string }; rules: { metricTrigger: any; scaleAction: any }[] }): string {
  const rules = profile.rules.map((r) => {
    const t = r.metricTrigger;
    const out = r.scaleAction.direction === "Increase";
    return `${out ? "out" : "in"}: ${t.metricName} ${out ? ">" : "<"} ${t.threshold} over ${t.timeWindow} ${out ? "+" : "-"}${r.scaleAction.value} (cooldown ${r.scaleAction.cooldown})`;
  });
  return [`${profile.capacity.minimum}..${profile.capacity.maximum} instances (default ${profile.capacity.default})`, ...rules].join("; ");
}
