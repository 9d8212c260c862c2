/**
 * The offline plan's work (cli/plan.ts is the command): runs the real program under Pulumi's
 * mock runtime with the stack's config and builds the {@link Plan}: resources grouped by
 * component with key settings, outputs (secrets masked), blockers, the one-off cost of the jobs
 * of a first `up`, the monthly cost, access. Loaded by cli/plan.ts only after its command line
 * was parsed, so `--help` and usage errors answer without loading Pulumi.
 */
import { LOADED_AT_MS } from "./load-mark"; // first: times the load of @pulumi/pulumi and the ML module
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { type StackConfig } from "../../infra/config";
import { costInputOf, estimateCost, estimateOneOff, formatCostReport, formatMoney, HOURS_PER_30_DAYS, hourlyPriceOf, loadPriceTable, priceOptions, CostEstimate, estimateNetworkCost, formatNetworkCost, NetworkEstimate, type JobSpec, type OneOffEstimate, type PriceTable, type SizeOption } from "../../infra/cost";
import { describeAutoscale } from "../../infra/autoscale";
import { describeTrainingMode } from "../../infra/managed-finetune";
import { describeGate, describeSmoke } from "../../infra/rollout";
import { firewallCount, isPrivate, privateEndpointCount } from "../../infra/security";
import { accessLine, AccessLine, accessSummary, formatAccess, scopeLabel } from "../../lib/access";
import { validateChatJsonlFile } from "../../infra/jsonl";
import { sha256 } from "../../infra/naming";
import { estimateFineTune, estimatePrep } from "../../infra/training-estimate";
import { RETIRED_SIZES, REPLACEMENT_SIZES } from "../../infra/vm-sizes";
import { UsageError } from "../../lib/cli";
import { MOCK_SUBSCRIPTION_ID, ProgramRun, Registration, isSecretValue, runProgram, unwrapSecrets } from "../../lib/mock-runtime";
import { SECRET_PLACEHOLDER, loadStackConfig } from "../../lib/stack-config";
import type { DiffablePlan, PlanResource } from "./plan-diff";

export { LOADED_AT_MS };

/** The project folder of this checkout. */
const ROOT = path.resolve(__dirname, "../..");
/** The plan command's entry point (a git ref's plan runs it in a child process). */
const PLAN_ENTRY = path.join(ROOT, "cli", "plan.ts");
const MASK = "[secret]";

/** What {@link loadBasePlan} needs of the command line (cli/plan.ts `PlanArgs`). */
export interface BaseArgs {
  stack: string;
  subscriptionId: string;
  root: string;
}

/** `module:Type` (four resources are a `Workspace`: say which). */
const shortType = (t: string) => t.split(":").slice(-2).join(":");

/** The few settings a reviewer looks at for each resource type. */
export function keySettings(r: Registration): string {
  const i = unwrapSecrets(r.inputs, MASK);
  const p = i.properties ?? {};
  switch (r.type) {
    case "azure-native:resources:ResourceGroup":
      return `location=${i.location}`;
    case "azure-native:storage:StorageAccount":
      return `${i.kind} ${i.sku?.name}, public blob access=${i.allowBlobPublicAccess}, TLS>=${i.minimumTlsVersion}, shared key=${i.allowSharedKeyAccess}, public network=${i.publicNetworkAccess}, infrastructure encryption=${i.encryption?.requireInfrastructureEncryption}`;
    case "azure-native:keyvault:Vault":
      return `RBAC=${p.enableRbacAuthorization}, soft delete ${p.softDeleteRetentionInDays} d, purge protection=${p.enablePurgeProtection}, public network=${p.publicNetworkAccess}`;
    case "azure-native:containerregistry:Registry":
      return `${i.sku?.name}, admin user=${i.adminUserEnabled}, public network=${i.publicNetworkAccess}`;
    case "azure-native:machinelearningservices:Workspace":
      return (
        `kind=${i.kind}${i.hubResourceId ? `, hub=${String(i.hubResourceId).split("/").pop()}` : ""}, public network=${i.publicNetworkAccess}` +
        (i.managedNetwork ? `, managed network ${i.managedNetwork.isolationMode} (${Object.keys(i.managedNetwork.outboundRules ?? {}).length} outbound rules, firewall ${i.managedNetwork.firewallSku})` : "") +
        (i.systemDatastoresAuthMode ? `, datastores auth=${i.systemDatastoresAuthMode}` : "")
      );
    case "azure-native:authorization:RoleDefinition":
      return `${i.roleName}: ${(i.permissions ?? []).flatMap((x: { actions?: string[] }) => x.actions ?? []).length} actions, assignable in ${(i.assignableScopes ?? []).map((x: string) => scopeLabel(x)).join(", ")}`;
    case "azure-native:authorization:RoleAssignment": {
      const a = accessLine(r);
      return `${a.role} on ${a.scope} → ${a.grantee}`;
    }
    case "azure-native:machinelearningservices:Compute": {
      const c = p.properties ?? {};
      return `${c.vmSize} ${c.vmPriority}, nodes ${c.scaleSettings?.minNodeCount}..${c.scaleSettings?.maxNodeCount}, idle ${c.scaleSettings?.nodeIdleTimeBeforeScaleDown}`;
    }
    case "azure-native:machinelearningservices:EnvironmentVersion":
      return `image=${p.image}`;
    case "azure-native:machinelearningservices:CodeVersion":
      return `codeUri=${p.codeUri}`;
    case "azure-native:machinelearningservices:DataVersion":
      return `${p.dataType} ${p.dataUri}`;
    case "azure-native:machinelearningservices:Job":
      return `${p.command} | compute=${String(p.computeId).split("/").pop()}`;
    case "azure-native:machinelearningservices:ModelVersion":
      return `${p.modelType} from ${p.modelUri}`;
    case "azure-native:machinelearningservices:OnlineEndpoint":
      return `auth=${p.authMode}, public network=${p.publicNetworkAccess ?? "Enabled"}, identity=${(i.identity?.userAssignedIdentities ?? []).map((x: string) => x.split("/").pop()).join(",")}`;
    case "azure-native:machinelearningservices:OnlineDeployment": {
      if (typeof p === "string") return `x${i.sku?.capacity}, properties ${p} (they hold a secret environment variable)`;
      const rs = p.requestSettings ?? {};
      const lp = p.livenessProbe ?? {};
      return (
        `${p.instanceType} x${i.sku?.capacity}, model=${String(p.model).split("/models/").pop()}, ` +
        `requests ${rs.maxConcurrentRequestsPerInstance}/${rs.requestTimeout}/${rs.maxQueueWait}, ` +
        `probes ${lp.failureThreshold} failures, period ${lp.period}, delay ${lp.initialDelay}`
      );
    }
    case "azure-native:machinelearningservices:WorkspaceConnection":
      return typeof p === "string" ? `properties ${p} (hold the endpoint key)` : `${p.category}, keys=${Object.keys(p.credentials?.keys ?? {}).join(",")}`;
    case "azure-native:monitor:DiagnosticSetting":
      return `${(i.logs ?? []).map((l: { categoryGroup?: string }) => l.categoryGroup).join("+") || "no logs"} + ${(i.metrics ?? []).map((m: { category?: string }) => m.category).join("+")} of ${scopeLabel(String(i.resourceUri))} → ${scopeLabel(String(i.workspaceId))}`;
    case "azure-native:storage:BlobServiceProperties":
      return `blob soft delete ${i.deleteRetentionPolicy?.days} d, container soft delete ${i.containerDeleteRetentionPolicy?.days} d`;
    case "azure-native:authorization:ManagementLockAtResourceGroupLevel":
      return `${i.level} on resource group ${i.resourceGroupName}`;
    case "azure-native:monitor:AutoscaleSetting":
      return `autoscales ${String(i.targetResourceUri).split("/").pop()}: ${describeAutoscale(i.profiles[0])}`;
    case "time:index/sleep:Sleep":
      return `waits ${i.createDuration} for the role assignments to take effect`;
    case "azure-native:storage:Blob":
      return `${i.blobName}`;
    case "command:local:Command": {
      const env = i.environment ?? {};
      if (env.PREFLIGHT_INPUT) {
        const input = JSON.parse(env.PREFLIGHT_INPUT);
        const sizes = [input.trainingCluster.vmSize, input.data?.prepCluster?.vmSize, ...input.serving.deployments.map((d: { instanceType: string }) => d.instanceType)].filter(Boolean);
        return `preflight, first step of up (everything costly waits for it): checks ${[...new Set(sizes)].join(", ")} in ${input.location}, quota, providers, names, pinned models`;
      }
      if (env.UPLOADS) {
        return `uploads ${JSON.parse(env.UPLOADS).map((u: { file: string }) => u.file).join(", ")} with Entra ID (shared key is off)`;
      }
      if (env.AZUREML_JOB_BODY) {
        const job = JSON.parse(env.AZUREML_JOB_BODY).properties ?? {};
        if (job.jobType === "Pipeline") {
          const node = job.jobs?.finetune ?? {};
          const lit = (k: string) => node.inputs?.[k]?.value;
          return (
            `submits pipeline job ${env.AZUREML_JOB_NAME} and waits (training.mode managed): ${node.componentId} | ` +
            `model=${lit("huggingface_id") ? `huggingface ${lit("huggingface_id")}` : node.inputs?.mlflow_model_path?.uri} | ` +
            `compute=${lit("compute_finetune")}, ${lit("num_nodes_finetune")} nodes × ${lit("number_of_gpu_to_use_finetuning")} GPUs`
          );
        }
        const dist = job.distribution ? ` | PyTorch ${job.resources?.instanceCount} nodes × ${job.distribution.processCountPerInstance} processes` : "";
        return `submits command job ${env.AZUREML_JOB_NAME} and waits: ${job.command} | compute=${String(job.computeId).split("/").pop()}${dist}`;
      }
      if (/quality-gate\.ts/.test(String(i.create))) {
        const rules = [
          ...(env.GATE_MAX_EVAL_LOSS !== undefined ? [`eval_loss <= ${env.GATE_MAX_EVAL_LOSS}`] : []),
          ...(env.GATE_MAX_REGRESSION_PERCENT !== undefined ? [`<= ${env.GATE_MAX_REGRESSION_PERCENT}% above the serving model's`] : []),
        ];
        return `quality gate on job ${env.AZUREML_JOB_NAME}'s MLflow run before the model is registered: ${rules.join(", ") || "eval_loss readable"} (fails closed)`;
      }
      if (/smoke-test\.ts/.test(String(i.create))) {
        const n = (() => { try { return JSON.parse(env.SMOKE_PROMPTS).length; } catch { return "?"; } })();
        return env.SMOKE_DEPLOYMENT
          ? `smoke test of deployment ${env.SMOKE_DEPLOYMENT} before any traffic: ${n} prompt(s), HTTP 200 within ${env.SMOKE_MAX_SECONDS} s, non-empty, no template tokens`
          : `smoke test through the endpoint after the traffic step: ${n} prompt(s)${env.ROLLBACK === "false" ? "; no roll-back" : "; on failure the previous split is restored"}`;
      }
      return `${i.create}${env.TRAFFIC ? ` (traffic=${env.TRAFFIC}, mirror=${env.MIRROR_TRAFFIC})` : ""}`;
    }
    default:
      return "";
  }
}

/** Something that stops `pulumi up` as the stack is written (the preflight refuses it). */
export interface Blocker {
  /** Config key, e.g. `phi3-finetune:serving.deployments[0].instanceType`. */
  key: string;
  /** What is wrong, in one line. */
  problem: string;
  /** The sizes to use instead, priced for the same number of instances. */
  options: SizeOption[];
  /** Instances the options are priced for. */
  instances: number;
}

/**
 * What stops `pulumi up` in its first minute as the stack is written: a deployment on a VM size
 * Azure retired (the preflight fails it: "new deployments on it fail"; shared/REFERENCE.md), with
 * the replacement sizes priced for the same instance count. Retired cluster sizes only warn (the
 * preflight lets them through), so they are not blockers.
 */
export function blockersOf(cfg: StackConfig, prices: PriceTable, project = "phi3-finetune"): Blocker[] {
  return cfg.serving.deployments.flatMap((d, i): Blocker[] => {
    const retired = RETIRED_SIZES[d.instanceType];
    if (!retired) return [];
    const instances = d.autoscale?.minInstances ?? d.instanceCount;
    return [
      {
        key: `${project}:serving.deployments[${i}].instanceType`,
        problem: `${d.instanceType} was retired by Azure on ${retired}; a new deployment on it fails (the preflight refuses it)`,
        options: priceOptions(REPLACEMENT_SIZES, instances, prices),
        instances,
      },
    ];
  });
}

/** The monthly running cost of a plan, by part (null when a price is unknown). */
export interface MonthlyEstimate {
  /** Serving + idle clusters + private networking, per 30 days (serving at its starting instance count). */
  total: number | null;
  serving: number | null;
  /** Autoscaled serving: the total with every deployment at its min and at its max. */
  range?: { min: number | null; max: number | null };
  idleClusters: number | null;
  network: number;
}

/** Monthly running cost by part: serving, clusters kept up when idle, private networking. */
export function monthlyEstimate(cost: CostEstimate, network?: NetworkEstimate): MonthlyEstimate {
  const idle = [cost.training.idlePer30Days, cost.prep?.idlePer30Days ?? 0];
  const idleClusters = idle.some((x) => x === null) ? null : (idle as number[]).reduce((a, b) => a + b, 0);
  const net = network?.per30Days ?? 0;
  const plus = (x: number | null) => (x === null || idleClusters === null ? null : x + idleClusters + net);
  const r = cost.serving.range;
  return {
    total: plus(cost.serving.per30Days),
    serving: cost.serving.per30Days,
    ...(r ? { range: { min: plus(r.minPer30Days), max: plus(r.maxPer30Days) } } : {}),
    idleClusters,
    network: net,
  };
}

/** The plan's first lines: what blocks the deploy, what the first `up` costs once, what it costs per month. */
export function formatHeadline(plan: Pick<Plan, "blockers" | "oneOff" | "monthly" | "currency">): string[] {
  const m = (x: number | null) => formatMoney(x === null ? null : Math.round(x * 100) / 100, plan.currency);
  const lines: string[] = [];
  const blockers = plan.blockers ?? [];
  if (blockers.length) {
    lines.push(`BLOCKED: \`pulumi up\` stops in its first minute as this stack is written (nothing is created):`);
    for (const b of blockers) {
      lines.push(`  ! ${b.key}: ${b.problem}.`);
      lines.push(`    Set it to one of (${b.instances} instance${b.instances === 1 ? "" : "s"}): ${b.options.map((o) => `${o.vmSize} ${m(o.perHour)}/h = ${m(o.per30Days)} per 30 days`).join("; ")}`);
    }
    lines.push("");
  }
  const o = plan.oneOff;
  if (o) {
    if (o.jobs.length === 0) lines.push("First `pulumi up`, one-off: no job to run (or no estimate).");
    else {
      lines.push(`First \`pulumi up\`, one-off: ~${o.hours.toFixed(1)} h of jobs, ~${m(o.total)}${blockers.length ? " (once the blockers are fixed)" : ""}`);
      for (const j of o.jobs) {
        lines.push(`  ${j.label} ${j.jobName}: ~${j.hours.toFixed(1)} h × ${j.nodes} × ${j.vmSize} @ ${m(j.unitPerHour)}/h = ~${m(j.usd)} (${j.basis})`);
      }
    }
  }
  const mo = plan.monthly;
  if (mo) {
    const parts = [`serving ${m(mo.serving)}`, `idle clusters ${m(mo.idleClusters)}`, ...(mo.network ? [`private networking ${m(mo.network)}`] : [])];
    const total = mo.range ? `${m(mo.range.min)} to ${m(mo.range.max)} (autoscale min to max)` : m(mo.total);
    lines.push(
      `Monthly, while deployed: ${total} per 30 days (${HOURS_PER_30_DAYS} h: ${parts.join(", ")}; training bills only while a job runs)` +
        (blockers.length ? "; as written, with the blocked size (the replacements' prices are above)" : ""),
    );
  }
  if (lines.length) lines.push("");
  return lines;
}

/** Plan data for printing or `--json` (and for `--base <plan.json>`). */
export interface Plan extends DiffablePlan {
  format: "phi3-plan/2";
  project: string;
  stack: string;
  subscriptionId: string;
  /** `training.mode` and what it runs (infra/managed-finetune.ts `describeTrainingMode`). */
  training: string;
  /** Safe rollout (issue 22): the quality gate and the smoke tests in words (infra/rollout.ts). */
  rollout?: { gate: string; smoke: string };
  components: { type: string; name: string; resources: { name: string; type: string; azureName: string; settings: string }[] }[];
  resources: PlanResource[];
  outputs: Record<string, unknown>;
  warnings: string[];
  cost: CostEstimate;
  /** What the private profile's networking costs (undefined for `standard`). */
  network?: NetworkEstimate;
  /** Every role assignment: who gets what on which scope, and why. */
  access: AccessLine[];
  resourceCount: number;
  /** What stops `pulumi up` as written (printed first). */
  blockers?: Blocker[];
  /** The jobs a first `pulumi up` runs, with hours and cost. */
  oneOff?: OneOffEstimate;
  /** Monthly running cost by part. */
  monthly?: MonthlyEstimate;
}

/** Secrets as `[secret:<digest>]`: a change shows as a change, the value never. */
function maskWithDigest(v: unknown): unknown {
  if (isSecretValue(v)) return `[secret:${sha256(JSON.stringify(unwrapSecrets(v)) ?? "").slice(0, 12)}]`;
  if (v === SECRET_PLACEHOLDER) return `[secret:${sha256(SECRET_PLACEHOLDER).slice(0, 12)}]`;
  if (Array.isArray(v)) return v.map(maskWithDigest);
  if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, maskWithDigest(x)]));
  return v;
}

/** Monthly cost of a plan: serving per 30 days plus clusters kept up when idle (null when a price is unknown). */
export function monthlyCost(cost: CostEstimate): number | null {
  const parts = [cost.serving.per30Days, cost.training.idlePer30Days, cost.prep?.idlePer30Days ?? 0, cost.imageBuild?.idlePer30Days ?? 0];
  return parts.some((x) => x === null) ? null : (parts as number[]).reduce((a, b) => a + b, 0);
}

/** Build the plan from a mock run (secrets masked everywhere). */
export function buildPlan(
  run: ProgramRun,
  meta: {
    project: string;
    stack: string;
    subscriptionId: string;
    training: string;
    rollout?: { gate: string; smoke: string };
    warnings: string[];
    cost: CostEstimate;
    network?: NetworkEstimate;
    fineTune?: Plan["fineTune"];
    blockers?: Blocker[];
    oneOff?: OneOffEstimate;
  },
): Plan {
  const componentOf = new Map(run.registrations.filter((r) => !r.custom).map((c) => [c.urn, c.name]));
  const components = run.registrations
    .filter((r) => !r.custom)
    .map((c) => ({
      type: c.type,
      name: c.name,
      resources: run.registrations
        .filter((r) => r.custom && r.parent === c.urn)
        .map((r) => ({ name: r.name, type: r.type, azureName: azureNameOf(r), settings: keySettings(r) })),
    }));
  const resources = run.registrations
    .filter((r) => r.custom)
    .map((r): PlanResource => ({
      key: `${r.type}::${r.name}`,
      name: r.name,
      type: r.type,
      component: componentOf.get(r.parent) ?? "",
      azureName: azureNameOf(r),
      settings: keySettings(r),
      inputs: maskWithDigest(r.inputs) as Record<string, unknown>,
      replaceOnChanges: r.replaceOnChanges ?? [],
      ignoreChanges: r.ignoreChanges ?? [],
      deleteBeforeReplace: !!r.deleteBeforeReplace,
      retainOnDelete: !!r.retainOnDelete,
    }));
  const outputs = Object.fromEntries(
    Object.entries(run.outputs).map(([k, v]) => [k, run.secretOutputs.includes(k) ? MASK : unwrapSecrets(v, MASK)]),
  );
  return {
    format: "phi3-plan/2",
    ...meta,
    components,
    resources,
    outputs,
    access: accessSummary(run.registrations),
    resourceCount: resources.length,
    // The diff compares this: networking included when the profile is private.
    monthlyCost: monthlyEstimate(meta.cost, meta.network).total,
    currency: meta.cost.currency,
    monthly: monthlyEstimate(meta.cost, meta.network),
  };
}

function azureNameOf(r: Registration): string {
  return r.type.startsWith("azure-native:") ? String(r.state.name ?? "") : "";
}

/** Human-readable plan lines. */
export function formatPlan(plan: Plan): string[] {
  const lines = [
    `Offline plan of ${plan.project}, stack '${plan.stack}' (Pulumi mock runtime: nothing is sent to Azure)`,
    `Subscription: ${plan.subscriptionId}${plan.subscriptionId === MOCK_SUBSCRIPTION_ID ? " (mock; --subscription <id> shows your real Azure names)" : ""}`,
    `Training mode: ${plan.training}`,
    "",
    // What blocks the deploy and what it costs come first (issue 21); then how a rollout is guarded.
    ...formatHeadline(plan),
    ...(plan.rollout ? [`Quality gate: ${plan.rollout.gate}`, `Smoke tests: ${plan.rollout.smoke}`, ""] : []),
  ];
  for (const c of plan.components) {
    lines.push(`+ ${c.type}  ${c.name}  (${c.resources.length} resources)`);
    for (const r of c.resources) {
      lines.push(`    + ${r.name.padEnd(34)} ${shortType(r.type).padEnd(40)} ${r.azureName}`);
      if (r.settings) lines.push(`        ${r.settings}`);
    }
  }
  lines.push(...formatAccess(plan.access));
  lines.push("", "Outputs:");
  for (const [k, v] of Object.entries(plan.outputs)) if (v !== undefined) lines.push(`    ${k}: ${typeof v === "string" ? v : JSON.stringify(v)}`);
  // A blocker was printed first: its warning is not repeated.
  const warnings = plan.warnings.filter((w) => !(plan.blockers ?? []).some((b) => w.startsWith(`${b.key}: `) && / was retired /.test(w)));
  if (warnings.length) {
    lines.push("", "Warnings:");
    for (const w of warnings) lines.push(`    ! ${w}`);
  }
  lines.push("", ...formatCostReport(plan.cost));
  if (plan.network) lines.push(...formatNetworkCost(plan.network, plan.cost.currency));
  lines.push("", `${plan.resourceCount} resources to create.`);
  return lines;
}

/** The Azure ML job a submit step of the plan would create: its name and the body's kind. */
function submittedJobs(run: ProgramRun): { jobName: string; kind: "prep" | "finetune" }[] {
  return run.registrations.flatMap((r): { jobName: string; kind: "prep" | "finetune" }[] => {
    if (r.type !== "command:local:Command") return [];
    const e = (unwrapSecrets(r.inputs).environment ?? {}) as Record<string, string>;
    const body = e.AZUREML_JOB_BODY ?? "";
    if (!e.AZUREML_JOB_NAME || !body) return [];
    if (/prepare_data\.py/.test(body)) return [{ jobName: String(e.AZUREML_JOB_NAME), kind: "prep" }];
    if (/fine_tune\.py|"jobType":\s*"Pipeline"/.test(body)) return [{ jobName: String(e.AZUREML_JOB_NAME), kind: "finetune" }];
    return [];
  });
}

/**
 * The jobs a first `pulumi up` runs (data preparation, fine-tune) with their estimated hours
 * (infra/training-estimate.ts), and the fine-tune run the diff names. Jobs without an estimate
 * (unknown data size or VM size) are left out.
 */
function jobsOf(run: ProgramRun, cfg: StackConfig, root: string, prices: PriceTable): { jobs: JobSpec[]; fineTune: Plan["fineTune"] } {
  const jobs: JobSpec[] = [];
  let fineTune: Plan["fineTune"];
  for (const j of submittedJobs(run)) {
    if (j.kind === "prep" && cfg.data.source === "ultrachat") {
      const e = estimatePrep(cfg)!;
      jobs.push({ label: "data preparation job", jobName: j.jobName, vmSize: cfg.data.prepCluster.vmSize, nodes: 1, hours: e.hours, basis: e.basis });
      continue;
    }
    if (j.kind !== "finetune") continue;
    let tokens: number | undefined;
    if (cfg.data.source === "jsonl") {
      try {
        tokens = validateChatJsonlFile(path.resolve(root, cfg.data.trainFile)).tokens.estimate;
      } catch {
        tokens = undefined;
      }
    }
    const estimate = estimateFineTune(cfg, tokens);
    if (!estimate) continue;
    const vmSize = cfg.trainingCluster.vmSize;
    jobs.push({ label: "fine-tune job", jobName: j.jobName, vmSize, nodes: estimate.nodes, hours: estimate.hours, basis: estimate.basis });
    const price = hourlyPriceOf(prices, vmSize);
    fineTune = { jobName: j.jobName, vmSize, hours: estimate.hours, usd: price === undefined ? null : Math.round(price * estimate.nodes * estimate.hours * 100) / 100, basis: estimate.basis };
  }
  return { jobs, fineTune };
}

/** Plans a stack of the project at `root`. @throws UsageError, StackFileError, ConfigError. */
export async function planStack(root: string, stack: string, subscriptionId: string): Promise<Plan> {
  process.chdir(root);
  // Validate first, as the program does, with file and line in every message, before anything registers.
  const { files, config: cfg, warnings } = loadStackConfig(root, stack);
  const run = await runProgram({
    project: files.project,
    stack,
    config: files.config,
    secretKeys: files.secretKeys,
    preview: false,
    subscriptionId,
    load: async () => require(path.join(root, "index")),
  });
  const prices = loadPriceTable(cfg.prices);
  const cost = estimateCost(costInputOf(cfg), prices, cfg.location);
  const network = isPrivate(cfg.security)
    ? estimateNetworkCost({
        privateEndpoints: privateEndpointCount(cfg.security, cfg.promptFlow.enabled),
        firewalls: firewallCount(cfg.security),
        firewallSku: cfg.security.firewallSku,
        premiumRegistry: true,
      })
    : undefined;
  const { jobs, fineTune } = jobsOf(run, cfg, root, prices);
  return buildPlan(run, {
    project: files.project,
    stack,
    subscriptionId,
    training: describeTrainingMode(cfg),
    rollout: { gate: describeGate(cfg), smoke: describeSmoke(cfg, root) },
    warnings,
    cost,
    network,
    fineTune,
    blockers: blockersOf(cfg, prices, files.project),
    oneOff: estimateOneOff(jobs, prices),
  });
}

/**
 * The plan to compare with: a saved `--json` plan file, or the plan of a git ref (its tree
 * exported with `git archive` to a temporary folder that borrows this checkout's node_modules,
 * planned by this code in a child process: one Pulumi program per process).
 *
 * @throws UsageError when `base` is neither a plan file nor a git ref; Error when its plan fails.
 */
export function loadBasePlan(base: string, args: BaseArgs): Plan {
  if (fs.existsSync(base) && fs.statSync(base).isFile()) {
    let plan: Plan;
    try {
      plan = JSON.parse(fs.readFileSync(base, "utf8"));
    } catch (e) {
      throw new UsageError(`--base ${base}: not a plan saved with --json (${(e as Error).message})`);
    }
    if (plan?.format !== "phi3-plan/2" || !Array.isArray(plan.resources)) throw new UsageError(`--base ${base}: not a plan saved with \`npm run plan -- --json\` (format phi3-plan/2)`);
    return plan;
  }
  const git = (gitArgs: string[], opts: { input?: Buffer } = {}) => spawnSync("git", gitArgs, { cwd: args.root, encoding: "buffer", maxBuffer: 512 * 1024 * 1024, ...opts });
  const commit = git(["rev-parse", "--verify", "--quiet", `${base}^{commit}`]);
  if (commit.status !== 0) throw new UsageError(`--base ${base}: neither a plan file nor a git ref of ${args.root}`);
  const sha = commit.stdout.toString().trim();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "phi3-plan-base-"));
  try {
    const archive = git(["archive", "--format=tar", sha]);
    if (archive.status !== 0) throw new Error(`git archive ${base} failed: ${archive.stderr.toString().trim()}`);
    const tar = spawnSync("tar", ["-x", "-C", dir], { input: archive.stdout });
    if (tar.status !== 0) throw new Error(`could not unpack ${base}: ${tar.stderr.toString().trim()}`);
    // The base plans with this checkout's packages (a tree that commits node_modules is unusual, but replace it).
    fs.rmSync(path.join(dir, "node_modules"), { recursive: true, force: true });
    fs.symlinkSync(path.join(ROOT, "node_modules"), path.join(dir, "node_modules"), "dir");
    if (!fs.existsSync(path.join(dir, `Pulumi.${args.stack}.yaml`))) {
      return { ...emptyPlan(args), stack: args.stack };
    }
    const child = spawnSync(process.execPath, [...process.execArgv, PLAN_ENTRY, "--root", dir, "--stack", args.stack, "--subscription", args.subscriptionId, "--json"], {
      cwd: dir,
      encoding: "utf8",
      maxBuffer: 256 * 1024 * 1024,
      env: { ...process.env, PLAN_STATS: "" },
    });
    if (child.status !== 0) throw new Error(`the plan of ${base} (${sha.slice(0, 12)}) failed: ${(child.stderr || child.stdout).trim().split("\n").slice(0, 5).join(" | ")}`);
    return JSON.parse(child.stdout);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** A plan with nothing in it (the stack did not exist at the base). */
function emptyPlan(args: BaseArgs): Plan {
  return {
    format: "phi3-plan/2",
    project: "",
    stack: args.stack,
    subscriptionId: args.subscriptionId,
    training: "",
    access: [],
    components: [],
    resources: [],
    outputs: {},
    warnings: [],
    cost: undefined as unknown as CostEstimate,
    resourceCount: 0,
    monthlyCost: 0,
    currency: "USD",
  };
}

