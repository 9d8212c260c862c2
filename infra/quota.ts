/**
 * Quota and size arithmetic of a stack, pure: what the preflight of `pulumi up`
 * (jobs/preflight.ts) and `npm run doctor` check, taken from the stack config
 * ({@link preflightInput}), and the vCPU quota each VM family must hold ({@link requiredQuota}).
 *
 * It lives in infra/ because the Pulumi program needs it too (infra/preflight.ts hands the input
 * to the preflight step; infra/autoscale.ts checks an autoscale ceiling against the quota at plan
 * time); lib/preflight.ts (the checks against Azure) imports it from here, so dependencies point
 * one way: lib/ → infra/, never back (test/layout.test.ts). No HTTP library is loaded here.
 */
import type { StackConfig } from "./config";
import { imageBuildCluster } from "./security";

/**
 * VM families Azure ML does not reserve the extra 20% of cores for on managed online
 * deployments (shared/REFERENCE.md: "A100 v4 family exempt"). Compared case- and space-insensitively.
 */
export const RESERVATION_EXEMPT_FAMILIES = ["standardNCADSA100v4Family"];

/** Fraction of extra cores Azure ML reserves for upgrades of managed online deployments. */
export const ONLINE_RESERVATION = 0.2;

/** A VM size as Azure ML's `locations/{location}/vmSizes` lists it. */
export interface VmSize {
  name: string;
  family: string;
  vCPUs: number;
  gpus?: number;
  memoryGB?: number;
  lowPriorityCapable?: boolean;
  supportedComputeTypes?: string[];
}


/** One consumer of quota. */
export interface QuotaPart {
  /** e.g. `training cluster a100-train`, `deployment blue`. */
  role: string;
  vmSize: string;
  /** Nodes (clusters: maxNodes) or instances (deployments). */
  count: number;
  vCPUsEach: number;
  /** Azure ML's 20% reservation applied (online deployments outside the exempt families). */
  reserved: boolean;
  /** vCPUs this part needs: count × vCPUsEach, or ceil(count × vCPUsEach × 1.2) when reserved. */
  vCPUs: number;
}

/** What one quota bucket must hold. */
export interface QuotaNeed {
  /** VM family from the vmSizes answer, e.g. `standardNCADSA100v4Family`. */
  family: string;
  /** Dedicated (per-family quota) or LowPriority (the regional low-priority quota). */
  priority: "Dedicated" | "LowPriority";
  /** Total vCPUs needed. */
  vCPUs: number;
  parts: QuotaPart[];
}

/** A VM family name compared case- and space-insensitively. */
export const normFamily = (s: string) => s.toLowerCase().replace(/\s+/g, "");
const norm = normFamily;

/** Whether Azure ML reserves the extra 20% for online deployments of this family. */
export function reservesExtraCores(family: string): boolean {
  return !RESERVATION_EXEMPT_FAMILIES.some((f) => norm(f) === norm(family));
}

/** The clusters and deployments of a config, with the config key naming each size. */
export function sizeConsumers(config: QuotaInput): { kind: "cluster" | "deployment"; id: string; role: string; key: string; vmSize: string; count: number; priority: "Dedicated" | "LowPriority" }[] {
  const out: ReturnType<typeof sizeConsumers> = [];
  const cluster = (id: string, label: string, key: string, c: ClusterLike) =>
    out.push({ kind: "cluster", id, role: `${label}${c.name ? ` ${c.name}` : ""}`, key, vmSize: c.vmSize, count: c.maxNodes, priority: c.vmPriority ?? "Dedicated" });
  cluster("trainingCluster", "training cluster", "phi3-finetune:trainingCluster.vmSize", config.trainingCluster);
  const prep = config.data?.source === "ultrachat" ? config.data.prepCluster : undefined;
  if (prep) cluster("prepCluster", "prep cluster", "phi3-finetune:data.prepCluster.vmSize", prep);
  if (config.imageBuildCluster) cluster("imageBuildCluster", "image-build cluster", "phi3-finetune:security.profile", config.imageBuildCluster);
  config.serving.deployments.forEach((d, i) => {
    out.push({
      kind: "deployment",
      id: `deployment:${d.name}`,
      role: d.maxInstances === undefined ? `deployment ${d.name}` : `deployment ${d.name} (autoscale max)`,
      key: `phi3-finetune:serving.deployments[${i}].instanceType`,
      vmSize: d.instanceType,
      count: d.maxInstances ?? d.instanceCount,
      priority: "Dedicated",
    });
  });
  return out;
}

/**
 * vCPU quota the stack needs per VM family (dedicated) and for low-priority clusters.
 * Training/prep clusters need vCPUs(size) × maxNodes; online deployments need
 * ceil(vCPUs(size) × instanceCount × 1.2) (an autoscaled one: × autoscale.maxInstances) (Azure ML reserves 20% for upgrades), except in the
 * A100 v4 family where it is vCPUs × instanceCount. Families come from `vmSizes`; sizes not in
 * that list are left out (the VM size check reports them). Sorted by priority, then family.
 */
export function requiredQuota(config: QuotaInput, vmSizes: VmSize[]): QuotaNeed[] {
  const bySize = new Map(vmSizes.map((s) => [s.name.toLowerCase(), s]));
  const needs = new Map<string, QuotaNeed>();
  for (const c of sizeConsumers(config)) {
    const size = bySize.get(c.vmSize.toLowerCase());
    if (!size || !Number.isFinite(size.vCPUs)) continue;
    const { reserved, vCPUs } = c.kind === "deployment" ? onlineDeploymentVCpus(size, c.count) : { reserved: false, vCPUs: size.vCPUs * c.count };
    const key = `${c.priority}|${norm(size.family)}`;
    const need = needs.get(key) ?? { family: size.family, priority: c.priority, vCPUs: 0, parts: [] };
    need.vCPUs += vCPUs;
    need.parts.push({ role: c.role, vmSize: size.name, count: c.count, vCPUsEach: size.vCPUs, reserved, vCPUs });
    needs.set(key, need);
  }
  return [...needs.values()].sort((a, b) => (a.priority === b.priority ? a.family.localeCompare(b.family) : a.priority === "Dedicated" ? -1 : 1));
}

/**
 * The vCPU quota a managed online deployment of `instances` × `size` holds: with Azure ML's
 * {@link ONLINE_RESERVATION} extra cores (rounded up), except in the
 * {@link RESERVATION_EXEMPT_FAMILIES}.
 */
export function onlineDeploymentVCpus(size: Pick<VmSize, "family" | "vCPUs">, instances: number): { reserved: boolean; vCPUs: number } {
  const reserved = reservesExtraCores(size.family);
  return { reserved, vCPUs: reserved ? Math.ceil(size.vCPUs * instances * (1 + ONLINE_RESERVATION) - 1e-9) : size.vCPUs * instances };
}

/** One line explaining a need: `training cluster a100-train: 1 × 24 = 24; deployment blue: ceil(2 × 4 × 1.2) = 10`. */
export function explainNeed(need: QuotaNeed): string {
  return need.parts
    .map((p) =>
      p.reserved
        ? `${p.role}: ceil(${p.count} × ${p.vCPUsEach} × 1.2) = ${p.vCPUs} (${p.vmSize}, incl. 20% reservation)`
        : `${p.role}: ${p.count} × ${p.vCPUsEach} = ${p.vCPUs} (${p.vmSize})`,
    )
    .join("; ");
}


export type ClusterLike = { name?: string; vmSize: string; maxNodes: number; vmPriority?: "Dedicated" | "LowPriority" };

/** The parts of the stack config quota depends on (a {@link StackConfig} fits). */
export interface QuotaInput {
  trainingCluster: ClusterLike;
  data?: { source: string; prepCluster?: ClusterLike };
  /** The `private` profile's image-build cluster, when it adds one (infra/security.ts `imageBuildCluster`). */
  imageBuildCluster?: ClusterLike;
  /** `maxInstances`: an autoscaled deployment's ceiling (`autoscale.maxInstances`), which the quota must cover. */
  serving: { deployments: { name: string; instanceType: string; instanceCount: number; maxInstances?: number }[] };
}

/** A deployment's model: the trained one, or a pinned version of the stack's workspace. */
type ModelRef = "trained" | { name: string; version: string; existing?: boolean };

/**
 * What the preflight checks, taken from the stack config by {@link preflightInput} (a
 * {@link StackConfig} fits too). `pulumi up` hands it to jobs/preflight.ts as JSON, so the step
 * runs again exactly when one of these values changes.
 */
export interface PreflightInput extends QuotaInput {
  /** `azure-native:location`. */
  location: string;
  namePrefix: string;
  /** Generation of the globally unique names (config `nameGeneration`). */
  nameGeneration: number;
  /** Existing resource group ("" = the stack creates `rg-<prefix>-<stack>`). */
  resourceGroupName: string;
  serving: { deployments: { name: string; instanceType: string; instanceCount: number; maxInstances?: number; model: ModelRef }[] };
  promptFlow: { enabled: boolean };
}

/** The {@link PreflightInput} of a validated stack config (only the keys the checks read). */
export function preflightInput(c: StackConfig): PreflightInput {
  const cluster = (k: ClusterLike): ClusterLike => ({ name: k.name, vmSize: k.vmSize, maxNodes: k.maxNodes, vmPriority: k.vmPriority });
  const imageBuild = imageBuildCluster(c)?.add;
  return {
    location: c.location,
    namePrefix: c.namePrefix,
    nameGeneration: c.nameGeneration,
    resourceGroupName: c.resourceGroupName,
    trainingCluster: cluster(c.trainingCluster),
    data: c.data.source === "ultrachat" ? { source: c.data.source, prepCluster: cluster(c.data.prepCluster) } : { source: c.data.source },
    // Only when the profile adds one, so the input (and so the step) of other stacks stays the same.
    ...(imageBuild ? { imageBuildCluster: cluster(imageBuild) } : {}),
    serving: {
      deployments: c.serving.deployments.map((d) => ({
        name: d.name,
        instanceType: d.instanceType,
        instanceCount: d.instanceCount,
        // Only when autoscaled, so the input (and so the step) of existing stacks stays the same.
        ...(d.autoscale ? { maxInstances: d.autoscale.maxInstances } : {}),
        model: d.model,
      })),
    },
    promptFlow: { enabled: c.promptFlow.enabled },
  };
}

