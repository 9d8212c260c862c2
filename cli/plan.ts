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
import { BUILT_IN_ROLES } from "../infra/identity";
import { estimateCost, formatCostReport, loadPriceTable, CostEstimate } from "../infra/cost";
import { MOCK_SUBSCRIPTION_ID, ProgramRun, readStackConfig, Registration, runProgram, unwrapSecrets } from "../lib/mock-runtime";

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

/** Role name by role definition GUID, from the table the identity component assigns. */
const ROLE_NAMES: Record<string, string> = Object.fromEntries(Object.entries(BUILT_IN_ROLES).map(([name, guid]) => [guid, name]));

/** The few settings a reviewer looks at for each resource type. */
export function keySettings(r: Registration): string {
  const i = unwrapSecrets(r.inputs, MASK);
  const p = i.properties ?? {};
  switch (r.type) {
    case "azure-native:resources:ResourceGroup":
      return `location=${i.location}`;
    case "azure-native:storage:StorageAccount":
      return `${i.kind} ${i.sku?.name}, public blob access=${i.allowBlobPublicAccess}, TLS>=${i.minimumTlsVersion}`;
    case "azure-native:keyvault:Vault":
      return `RBAC=${p.enableRbacAuthorization}, soft delete ${p.softDeleteRetentionInDays} d`;
    case "azure-native:containerregistry:Registry":
      return `${i.sku?.name}, admin user=${i.adminUserEnabled}`;
    case "azure-native:machinelearningservices:Workspace":
      return `kind=${i.kind}${i.hubResourceId ? `, hub=${String(i.hubResourceId).split("/").pop()}` : ""}`;
    case "azure-native:authorization:RoleAssignment":
      return `${ROLE_NAMES[String(i.roleDefinitionId).split("/").pop() ?? ""] ?? i.roleDefinitionId} on ${String(i.scope).split("/").slice(-2).join("/")} (${i.principalType})`;
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
      return `auth=${p.authMode}, identity=${(i.identity?.userAssignedIdentities ?? []).map((x: string) => x.split("/").pop()).join(",")}`;
    case "azure-native:machinelearningservices:OnlineDeployment": {
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
      if (env.AZUREML_JOB_BODY) {
        const job = JSON.parse(env.AZUREML_JOB_BODY).properties ?? {};
        return `submits command job ${env.AZUREML_JOB_NAME} and waits: ${job.command} | compute=${String(job.computeId).split("/").pop()}`;
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
  components: { type: string; name: string; resources: { name: string; type: string; azureName: string; settings: string }[] }[];
  outputs: Record<string, unknown>;
  warnings: string[];
  cost: CostEstimate;
  resourceCount: number;
}

/** Build the plan from a mock run (secrets masked everywhere). */
export function buildPlan(run: ProgramRun, meta: { project: string; stack: string; subscriptionId: string; warnings: string[]; cost: CostEstimate }): Plan {
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
  return { ...meta, components, outputs, resourceCount: run.registrations.filter((r) => r.custom).length };
}

/** Human-readable plan lines. */
export function formatPlan(plan: Plan): string[] {
  const lines = [
    `Offline plan of ${plan.project}, stack '${plan.stack}' (Pulumi mock runtime: nothing is sent to Azure)`,
    `Subscription: ${plan.subscriptionId}${plan.subscriptionId === MOCK_SUBSCRIPTION_ID ? " (mock; --subscription <id> shows your real Azure names)" : ""}`,
    "",
  ];
  for (const c of plan.components) {
    lines.push(`+ ${c.type}  ${c.name}  (${c.resources.length} resources)`);
    for (const r of c.resources) {
      lines.push(`    + ${r.name.padEnd(34)} ${shortType(r.type).padEnd(20)} ${r.azureName}`);
      if (r.settings) lines.push(`        ${r.settings}`);
    }
  }
  lines.push("", "Outputs:");
  for (const [k, v] of Object.entries(plan.outputs)) if (v !== undefined) lines.push(`    ${k}: ${typeof v === "string" ? v : JSON.stringify(v)}`);
  if (plan.warnings.length) {
    lines.push("", "Warnings:");
    for (const w of plan.warnings) lines.push(`    ! ${w}`);
  }
  lines.push("", ...formatCostReport(plan.cost));
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
    const cost = estimateCost(
      {
        training: cfg.trainingCluster,
        prep: cfg.data.source === "ultrachat" ? cfg.data.prepCluster : undefined,
        deployments: cfg.serving.deployments.map((d) => ({ name: d.name, instanceType: d.instanceType, instanceCount: d.instanceCount })),
      },
      loadPriceTable(cfg.prices),
      cfg.location,
    );
    const plan = buildPlan(run, { project, stack: args.stack, subscriptionId: args.subscriptionId, warnings, cost });
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
      // For cli/bench-plan.ts: wall time since process start and peak resident memory.
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
