/**
 * The offline plan: `npm run plan [-- --stack <name>] [--json] [--subscription <id>]`.
 *
 * Runs the real program (`index.ts`) in-process under Pulumi's mock runtime with the stack's
 * real config (`Pulumi.yaml` + `Pulumi.<stack>.yaml`) and prints what `pulumi preview` would
 * create on an empty stack: each resource's logical name, type, Azure name and key settings,
 * grouped by component; the stack outputs with secrets masked; warnings; a cost estimate.
 * Needs neither Azure nor the Pulumi CLI. Exit codes: 0 planned, 1 invalid config or data
 * (the message names the key or file and line; no stack trace), 2 bad command-line usage.
 */
import * as path from "path";
import { parseConfig, ConfigError, rawProjectConfig } from "../infra/config";
import { costInputOf, estimateCost, formatCostReport, loadPriceTable, CostEstimate, estimateNetworkCost, formatNetworkCost, NetworkEstimate } from "../infra/cost";
import { isPrivate, managedNetworkCount, privateEndpointCount } from "../infra/security";
import { describeAutoscale } from "../infra/autoscale";
import { describeTrainingMode } from "../infra/managed-finetune";
import { accessLine, AccessLine, accessSummary, formatAccess, scopeLabel } from "./lib/access";
import { MOCK_SUBSCRIPTION_ID, ProgramRun, readStackConfig, Registration, runProgram, unwrapSecrets } from "./lib/mock-runtime";

const ROOT = path.resolve(__dirname, "..");
const MASK = "[secret]";

/** Command-line options of the plan. */
export interface PlanArgs {
  stack: string;
  json: boolean;
  subscriptionId: string;
}

/** Parse `--stack`, `--json`, `--subscription`. Throws an Error with the usage on bad input. */
export function parsePlanArgs(argv: string[]): PlanArgs {
  const args: PlanArgs = { stack: "dev", json: false, subscriptionId: MOCK_SUBSCRIPTION_ID };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      const v = argv[++i];
      if (!v || v.startsWith("--")) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === "--stack" || a === "-s") args.stack = value();
    else if (a.startsWith("--stack=")) args.stack = a.slice(8);
    else if (a === "--json") args.json = true;
    else if (a === "--subscription") args.subscriptionId = value();
    else throw new Error(`unknown argument '${a}'. Usage: npm run plan -- [--stack <name>] [--json] [--subscription <id>]`);
  }
  if (!/^[A-Za-z0-9._-]+$/.test(args.stack)) throw new Error(`--stack '${args.stack}' is not a valid stack name`);
  return args;
}


const shortType = (t: string) => t.split(":").pop() ?? t;

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
      return `${i.create}${env.TRAFFIC ? ` (traffic=${env.TRAFFIC}, mirror=${env.MIRROR_TRAFFIC})` : ""}`;
    }
    default:
      return "";
  }
}

/** Plan data for printing or `--json`. */
export interface Plan {
  project: string;
  stack: string;
  subscriptionId: string;
  /** `training.mode` and what it runs (infra/managed-finetune.ts `describeTrainingMode`). */
  training: string;
  components: { type: string; name: string; resources: { name: string; type: string; azureName: string; settings: string }[] }[];
  outputs: Record<string, unknown>;
  warnings: string[];
  cost: CostEstimate;
  /** What the private profile's networking costs (undefined for `standard`). */
  network?: NetworkEstimate;
  /** Every role assignment: who gets what on which scope, and why. */
  access: AccessLine[];
  resourceCount: number;
}

/** Build the plan from a mock run (secrets masked everywhere). */
export function buildPlan(
  run: ProgramRun,
  meta: { project: string; stack: string; subscriptionId: string; training: string; warnings: string[]; cost: CostEstimate; network?: NetworkEstimate },
): Plan {
  const components = run.registrations
    .filter((r) => !r.custom)
    .map((c) => ({
      type: c.type,
      name: c.name,
      resources: run.registrations
        .filter((r) => r.custom && r.parent === c.urn)
        .map((r) => ({ name: r.name, type: r.type, azureName: r.type.startsWith("azure-native:") ? String(r.state.name ?? "") : "", settings: keySettings(r) })),
    }));
  const outputs = Object.fromEntries(
    Object.entries(run.outputs).map(([k, v]) => [k, run.secretOutputs.includes(k) ? MASK : unwrapSecrets(v, MASK)]),
  );
  return { ...meta, components, outputs, access: accessSummary(run.registrations), resourceCount: run.registrations.filter((r) => r.custom).length };
}

/** Human-readable plan lines. */
export function formatPlan(plan: Plan): string[] {
  const lines = [
    `Offline plan of ${plan.project}, stack '${plan.stack}' (Pulumi mock runtime: nothing is sent to Azure)`,
    `Subscription: ${plan.subscriptionId}${plan.subscriptionId === MOCK_SUBSCRIPTION_ID ? " (mock; --subscription <id> shows your real Azure names)" : ""}`,
    `Training mode: ${plan.training}`,
    "",
  ];
  for (const c of plan.components) {
    lines.push(`+ ${c.type}  ${c.name}  (${c.resources.length} resources)`);
    for (const r of c.resources) {
      lines.push(`    + ${r.name.padEnd(34)} ${shortType(r.type).padEnd(20)} ${r.azureName}`);
      if (r.settings) lines.push(`        ${r.settings}`);
    }
  }
  lines.push(...formatAccess(plan.access));
  lines.push("", "Outputs:");
  for (const [k, v] of Object.entries(plan.outputs)) if (v !== undefined) lines.push(`    ${k}: ${typeof v === "string" ? v : JSON.stringify(v)}`);
  if (plan.warnings.length) {
    lines.push("", "Warnings:");
    for (const w of plan.warnings) lines.push(`    ! ${w}`);
  }
  lines.push("", ...formatCostReport(plan.cost));
  if (plan.network) lines.push(...formatNetworkCost(plan.network, plan.cost.currency));
  lines.push("", `${plan.resourceCount} resources to create.`);
  return lines;
}

/** Run the plan; returns the exit code. Output goes to the given writers. */
export async function main(argv: string[], out = (s: string) => process.stdout.write(s + "\n"), err = (s: string) => process.stderr.write(s + "\n")): Promise<number> {
  let args: PlanArgs;
  try {
    args = parsePlanArgs(argv);
  } catch (e) {
    err(`error: ${(e as Error).message}`);
    return 2;
  }
  try {
    process.chdir(ROOT);
    const { project, config } = readStackConfig(ROOT, args.stack);
    const { config: cfg, warnings } = parseConfig(rawProjectConfig(config)); // fail before anything registers
    const run = await runProgram({
      project,
      stack: args.stack,
      config,
      preview: false,
      subscriptionId: args.subscriptionId,
      load: async () => require(path.join(ROOT, "index")),
    });
    const cost = estimateCost(costInputOf(cfg), loadPriceTable(cfg.prices), cfg.location);
    const network = isPrivate(cfg.security)
      ? estimateNetworkCost({
          privateEndpoints: privateEndpointCount(cfg.security, cfg.promptFlow.enabled),
          firewalls: managedNetworkCount(cfg.security, cfg.promptFlow.enabled),
          firewallSku: cfg.security.firewallSku,
          premiumRegistry: true,
        })
      : undefined;
    const plan = buildPlan(run, { project, stack: args.stack, subscriptionId: args.subscriptionId, training: describeTrainingMode(cfg), warnings, cost, network });
    if (args.json) out(JSON.stringify(plan, null, 2));
    else formatPlan(plan).forEach((l) => out(l));
    return 0;
  } catch (e) {
    if (e instanceof ConfigError) err(`error: stack '${args.stack}': ${e.message}`);
    else err(`error: ${(e as Error).message}`);
    return 1;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => {
      // For jobs/bench-plan.ts: wall time since process start and peak resident memory.
      if (process.env.PLAN_STATS === "1") {
        process.stderr.write(`plan-stats: wall_ms=${Math.round(performance.now())} max_rss_kb=${process.resourceUsage().maxRSS}\n`);
      }
      process.exit(code);
    },
    (e) => {
      process.stderr.write(`error: ${(e as Error).message}\n`);
      process.exit(1);
    },
  );
}
