/**
 * The offline plan as a diff (`npm run plan -- --base <git ref | plan.json>`): two plans of the
 * same stack compared resource by resource, as `pulumi preview` would show them, with what a
 * reviewer needs said in words (a new fine-tune run and its cost, a deployment roll, an
 * endpoint replaced, the change in monthly cost).
 *
 * Create / update / replace / delete follow Pulumi's and the providers' rules:
 * - azure-native replaces a resource when a property in its ARM path changes (the provider's
 *   diff: "All the parameters that are part of the resource path cause a replacement",
 *   pulumi-azure-native provider/pkg/provider/diff.go) or a property its metadata marks
 *   forceNew. The path parameters are read from the installed SDK, which the provider's schema
 *   generates: inputs the resource takes but never returns ({@link pathParameters}). The few
 *   body properties that force a replacement for the types this stack uses are listed in
 *   {@link FORCE_NEW}, each with its source (the provider's metadata is not in the SDK);
 * - a resource option `replaceOnChanges` (recorded by the mock runtime) replaces on its paths,
 *   `ignoreChanges` paths are not compared, `retainOnDelete` turns a delete into "forgotten";
 * - @pulumi/command's `local.Command` re-runs (`update`, else `create`) when an input changes
 *   and is replaced when `triggers` change; @pulumiverse/time's Sleep is replaced on any change
 *   (every argument of the upstream `time_sleep` forces a new resource).
 * Secret values are compared by digest and shown as `[secret]`, never as values. A string that
 * holds JSON (a program's environment variable) is compared key by key (`PREFLIGHT_INPUT#a.b`);
 * another long string shows the segment that differs, with a little context either side.
 * The summary leads with what costs money, then what touches traffic; housekeeping (resources
 * kept in Azure by `retainOnDelete`) is one line at its end.
 */
import * as fs from "fs";
import { formatMoney, hourlyPriceOf, loadPriceTable } from "../../infra/cost";
import { onlineDeploymentVCpus } from "../../infra/quota";
import { isGpuSize, recordedVmSize } from "../../infra/vm-sizes";

/** A resource as the plan records it (inputs with secrets as `[secret:<digest>]`). */
export interface PlanResource {
  /** `<type>::<logical name>`: what Pulumi's URN identifies (parents are fixed by the program). */
  key: string;
  name: string;
  type: string;
  /** Logical name of the component it belongs to. */
  component: string;
  azureName: string;
  /** The one-line summary the plan prints. */
  settings: string;
  inputs: Record<string, unknown>;
  replaceOnChanges: string[];
  ignoreChanges: string[];
  deleteBeforeReplace: boolean;
  retainOnDelete: boolean;
}

/** What the diff needs from a plan (cli/plan.ts `Plan`). */
export interface DiffablePlan {
  stack: string;
  resources: PlanResource[];
  /** Monthly cost: serving per 30 days plus clusters kept up when idle; null when a price is unknown. */
  monthlyCost: number | null;
  currency: string;
  /** The fine-tune run this plan's job would make, if estimated. */
  fineTune?: { jobName: string; vmSize: string; hours: number; usd: number | null; basis: string };
  /** The plan's cost estimate: the deployments' unit prices (stack price overrides included) are read from it. */
  cost?: { serving?: { lines?: { instanceType: string; unitPerHour: number | null }[] } };
}

/** One changed property. */
export interface PropertyChange {
  /** Dotted path, array items as `[i]`, e.g. `properties.requestSettings.requestTimeout`. */
  path: string;
  kind: "add" | "remove" | "change";
  /** Whether this change forces a replacement. */
  replaces: boolean;
  /** Old and new value for display (`[secret]` for secrets; long values shortened). */
  before?: string;
  after?: string;
}

/** What happens to one resource. */
export type Action = "create" | "update" | "replace" | "delete" | "forget";

/** One resource that changes. */
export interface ResourceChange {
  action: Action;
  key: string;
  name: string;
  type: string;
  azureName: string;
  changes: PropertyChange[];
  /** What it means, in words. */
  consequences: string[];
}

/** Result of {@link diffPlans}. */
export interface PlanDiff {
  base: string;
  head: string;
  changes: ResourceChange[];
  counts: Record<Action | "same", number>;
  monthlyCost: { before: number | null; after: number | null; currency: string };
  /**
   * The consequences of every change for the summary, most consequential first: money (jobs,
   * deployments, endpoint, clusters), then traffic, then the rest; the resources kept in Azure
   * (`retainOnDelete`) as one last line.
   */
  summary: string[];
}

/** How much a consequence matters to a reviewer: the summary sorts by it. */
type Weight = "money" | "traffic" | "other" | "housekeeping";
const WEIGHT_ORDER: Weight[] = ["money", "traffic", "other", "housekeeping"];

/**
 * How long an old and a new deployment both run when a deployment is replaced (create the new
 * one, move traffic, delete the old one), hours. Creating a GPU deployment takes 15–30 min
 * (shared/REFERENCE.md, Azure ML online endpoints); CPU ones are quicker. Estimates, not quotes.
 */
export const OVERLAP_HOURS = { gpu: 0.5, cpu: 0.25 };

/**
 * The vCPU quota a deployment of `instances` holds, with Azure ML's 20% reservation for online
 * deployments where the family has it: the preflight's own arithmetic (infra/quota.ts).
 */
function deploymentVCpus(vmSize: string, instances: number): { family: string; vCPUs: number } | undefined {
  const size = recordedVmSize(vmSize);
  if (!size) return undefined;
  return { family: size.family, vCPUs: onlineDeploymentVCpus(size, instances).vCPUs };
}

/**
 * Body properties that force a replacement, by resource type, where the provider's metadata
 * (not shipped in the SDK) says so or Azure refuses the change in place. Paths are prefixes.
 */
export const FORCE_NEW: Record<string, { paths: string[]; source: string }> = {
  "*": { paths: ["location"], source: "a resource cannot move between regions; azure-native marks location forceNew" },
  "azure-native:authorization:RoleAssignment": {
    paths: ["scope", "principalId", "roleDefinitionId", "principalType"],
    source: "ARM refuses to update a role assignment (RoleAssignmentUpdateNotPermitted)",
  },
  "azure-native:machinelearningservices:OnlineEndpoint": {
    paths: ["identity", "properties.authMode"],
    source: "Azure ML: an endpoint's identity and auth mode are set at creation (README, Serving)",
  },
  "azure-native:machinelearningservices:Workspace": { paths: ["kind", "hubResourceId", "storageAccount", "keyVault"], source: "Azure ML: set at creation" },
  "azure-native:machinelearningservices:Compute": { paths: ["properties.computeType"], source: "Azure ML: a compute's type is fixed" },
  "azure-native:machinelearningservices:CodeVersion": { paths: ["properties.codeUri"], source: "Azure ML asset versions are immutable" },
  "azure-native:machinelearningservices:EnvironmentVersion": { paths: ["properties.image", "properties.condaFile"], source: "Azure ML asset versions are immutable" },
  "azure-native:machinelearningservices:DataVersion": { paths: ["properties.dataUri", "properties.dataType"], source: "Azure ML asset versions are immutable" },
  "azure-native:machinelearningservices:ModelVersion": { paths: ["properties.modelUri", "properties.modelType"], source: "Azure ML asset versions are immutable" },
  "azure-native:storage:StorageAccount": { paths: ["kind"], source: "a storage account's kind is set at creation" },
};

/** Path parameters the SDK cannot tell apart from outputs of the same name (`{name}` in the ARM id). */
const NAME_IN_PATH = new Set([
  "azure-native:machinelearningservices:CodeVersion",
  "azure-native:machinelearningservices:EnvironmentVersion",
  "azure-native:machinelearningservices:DataVersion",
  "azure-native:machinelearningservices:ModelVersion",
  "azure-native:machinelearningservices:Datastore",
  // {resourceUri}/providers/Microsoft.Insights/diagnosticSettings/{name}
  "azure-native:monitor:DiagnosticSetting",
]);

/**
 * Path parameters where the SDK heuristic of {@link pathParameters} cannot work: the resource's
 * outputs nest its body under `properties`, so every body input looks like a path parameter.
 * AutoscaleSetting: /subscriptions/{}/resourceGroups/{resourceGroupName}/providers/
 * Microsoft.Insights/autoscalesettings/{autoscaleSettingName} (Azure Monitor REST 2021-05-01-preview, the version azure-native 3 uses).
 */
const PATH_PARAMS: Record<string, string[]> = {
  "azure-native:monitor:AutoscaleSetting": ["autoscaleSettingName", "resourceGroupName"],
};

const pathParamCache = new Map<string, string[]>();

/**
 * The ARM path parameters of an azure-native resource type, read from the installed SDK: the
 * inputs its constructor takes that are not among the resource's outputs (the provider's
 * schema generates both lists). E.g. OnlineDeployment → deploymentName, endpointName,
 * resourceGroupName, workspaceName.
 *
 * @param type - token such as `azure-native:machinelearningservices:OnlineDeployment`.
 * @returns the parameter names; empty for other packages or a type the SDK does not have.
 */
export function pathParameters(type: string): string[] {
  if (PATH_PARAMS[type]) return PATH_PARAMS[type];
  const cached = pathParamCache.get(type);
  if (cached) return cached;
  let params: string[] = [];
  const [pkg, mod, name] = type.split(":");
  if (pkg === "azure-native" && mod && name) {
    try {
      const file = require.resolve(`@pulumi/azure-native/${mod}/${name[0].toLowerCase()}${name.slice(1)}`);
      const src = fs.readFileSync(file, "utf8");
      const ctor = src.slice(src.indexOf("if (!opts.id)"));
      const elseAt = ctor.indexOf("else {");
      const inputs = [...ctor.slice(0, elseAt).matchAll(/resourceInputs\["(\w+)"\] = (?!undefined)/g)].map((m) => m[1]);
      const outputs = new Set([...ctor.slice(elseAt, ctor.indexOf("opts = pulumi.mergeOptions", elseAt)).matchAll(/resourceInputs\["(\w+)"\]/g)].map((m) => m[1]));
      params = inputs.filter((k) => !outputs.has(k));
      if (NAME_IN_PATH.has(type)) params.push("name");
    } catch {
      params = [];
    }
  }
  pathParamCache.set(type, params);
  return params;
}

const SECRET_PREFIX = "[secret:";

function isSecret(v: unknown): boolean {
  return typeof v === "string" && v.startsWith(SECRET_PREFIX);
}

function show(v: unknown): string {
  if (v === undefined) return "(none)";
  if (isSecret(v)) return "[secret]";
  const s = typeof v === "string" ? v : JSON.stringify(v);
  return s.length > 100 ? `${s.slice(0, 97)}...` : s;
}

/** Characters of unchanged text shown either side of a changed segment. */
const CONTEXT = 16;
/** Longest changed segment shown. */
const SEGMENT = 60;

/**
 * Two long strings as the segment where they differ: the common prefix and suffix cut to
 * {@link CONTEXT} characters (`…` marks a cut), the differing middle to {@link SEGMENT}.
 * E.g. `…/LocalUpload/bc8768404446…/finetuning_dir` → `…/LocalUpload/5e21a9f0c3d1…/finetuning_dir`.
 */
export function changedSegment(a: string, b: string): [string, string] {
  let p = 0;
  while (p < a.length && p < b.length && a[p] === b[p]) p++;
  let q = 0;
  while (q < a.length - p && q < b.length - p && a[a.length - 1 - q] === b[b.length - 1 - q]) q++;
  const cut = (x: string): string => {
    const head = p > CONTEXT ? `…${x.slice(p - CONTEXT, p)}` : x.slice(0, p);
    const middle = x.slice(p, x.length - q);
    const mid = middle.length > SEGMENT ? `${middle.slice(0, SEGMENT)}…` : middle;
    const tail = q > CONTEXT ? `${x.slice(x.length - q, x.length - q + CONTEXT)}…` : x.slice(x.length - q);
    return head + mid + tail;
  };
  return [cut(a), cut(b)];
}

/** Old and new value for display: long strings as their changed segment. */
function showPair(a: unknown, b: unknown): [string, string] {
  if (typeof a === "string" && typeof b === "string" && !isSecret(a) && !isSecret(b) && (a.length > 100 || b.length > 100)) return changedSegment(a, b);
  return [show(a), show(b)];
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** A string holding a JSON object or array, parsed; otherwise undefined. */
function jsonIn(v: unknown): unknown {
  if (typeof v !== "string" || !/^\s*[[{]/.test(v)) return undefined;
  try {
    const x = JSON.parse(v);
    return typeof x === "object" && x !== null ? x : undefined;
  } catch {
    return undefined;
  }
}

/** Leaf-level differences between two input trees (JSON held in strings compared key by key, as `path#key`). */
function compare(a: unknown, b: unknown, path: string, out: { path: string; kind: PropertyChange["kind"]; before: unknown; after: unknown }[], sep = "."): void {
  if (isPlainObject(a) && isPlainObject(b)) {
    for (const k of [...new Set([...Object.keys(a), ...Object.keys(b)])].sort()) compare(a[k], b[k], path ? `${path}${sep}${k}` : k, out);
    return;
  }
  const ja = jsonIn(a);
  const jb = jsonIn(b);
  // Short JSON reads best whole; long JSON (a job body, the preflight's input) key by key.
  const long = typeof a === "string" && typeof b === "string" && (a.length > 100 || b.length > 100);
  if (long && ja !== undefined && jb !== undefined && a !== b && Array.isArray(ja) === Array.isArray(jb)) {
    if (Array.isArray(ja)) {
      for (let i = 0; i < Math.max(ja.length, (jb as unknown[]).length); i++) compare(ja[i], (jb as unknown[])[i], `${path}#[${i}]`, out);
    } else {
      for (const k of [...new Set([...Object.keys(ja as object), ...Object.keys(jb as object)])].sort()) {
        compare((ja as Record<string, unknown>)[k], (jb as Record<string, unknown>)[k], `${path}#${k}`, out);
      }
    }
    return;
  }
  if (Array.isArray(a) && Array.isArray(b)) {
    for (let i = 0; i < Math.max(a.length, b.length); i++) compare(a[i], b[i], `${path}[${i}]`, out);
    return;
  }
  if (JSON.stringify(a) === JSON.stringify(b)) return;
  out.push({ path, kind: a === undefined ? "add" : b === undefined ? "remove" : "change", before: a, after: b });
}

/** Whether `path` is `prefix` or lies under it (array indices ignored in the prefix match). */
function under(path: string, prefix: string): boolean {
  const p = path.replace(/\[\d+\]/g, "");
  const q = prefix.replace(/\[\d*\]/g, "");
  return p === q || p.startsWith(`${q}.`) || p.startsWith(`${q}#`);
}

/** Whether changing `path` of a resource replaces it. */
export function replacesOn(r: Pick<PlanResource, "type" | "replaceOnChanges">, path: string): boolean {
  if (r.type === "time:index/sleep:Sleep") return true;
  if (r.type === "command:local:Command") return under(path, "triggers") || r.replaceOnChanges.some((p) => under(path, p));
  const top = path.split(/[.[#]/)[0];
  if (pathParameters(r.type).includes(top)) return true;
  const rules = [...FORCE_NEW["*"].paths, ...(FORCE_NEW[r.type]?.paths ?? [])];
  if (r.type.startsWith("azure-native:") && rules.some((p) => under(path, p))) return true;
  return r.replaceOnChanges.some((p) => p === "*" || under(path, p));
}

function env(r: PlanResource | undefined): Record<string, string> {
  const e = r?.inputs.environment;
  return isPlainObject(e) ? (e as Record<string, string>) : {};
}

function jobOf(r: PlanResource | undefined): { name: string; fineTune: boolean; compute: string } | undefined {
  const e = env(r);
  if (!e.AZUREML_JOB_NAME || !e.AZUREML_JOB_BODY) return undefined;
  let body: { properties?: { command?: string; computeId?: string } } = {};
  try {
    body = JSON.parse(e.AZUREML_JOB_BODY);
  } catch {
    // shown as a plain change
  }
  return {
    name: e.AZUREML_JOB_NAME,
    fineTune: /fine_tune\.py/.test(body.properties?.command ?? ""),
    compute: String(body.properties?.computeId ?? "").split("/").pop() ?? "",
  };
}

function money(amount: number | null, currency: string): string {
  return formatMoney(amount, currency);
}

/**
 * `; gated by the quality gate (...)` when the head plan runs jobs/quality-gate.ts on `job`
 * (issue 22): the rules, and that a refusal registers nothing and changes no deployment.
 */
function gatedBy(headPlan: DiffablePlan, job: string): string {
  const gate = headPlan.resources.find((r) => /quality-gate\.ts/.test(String(r.inputs.create ?? "")) && env(r).AZUREML_JOB_NAME === job);
  if (!gate) return "; NOT gated (training.gate.enabled is false): the model is registered and deployed whatever its eval_loss";
  const e = env(gate);
  const rules = [
    ...(e.GATE_MAX_EVAL_LOSS !== undefined ? [`eval_loss <= ${e.GATE_MAX_EVAL_LOSS}`] : []),
    ...(e.GATE_MAX_REGRESSION_PERCENT !== undefined ? [`at most ${e.GATE_MAX_REGRESSION_PERCENT}% above the serving model's eval_loss`] : []),
  ];
  return `; gated by the quality gate (${rules.join(", ") || "eval_loss readable"}): if it refuses, nothing is registered and no deployment or traffic changes`;
}

/** One consequence and how much it matters. */
interface Said {
  text: string;
  weight: Weight;
}
const said = (weight: Weight, text: string): Said => ({ weight, text });

/** Unit price per hour of a VM size: the plans' own cost lines first (stack price overrides), then the recorded table. */
function unitPrice(vmSize: string, plans: DiffablePlan[]): number | null {
  for (const plan of plans) {
    const line = plan.cost?.serving?.lines?.find((l) => l.instanceType.toLowerCase() === vmSize.toLowerCase() && l.unitPerHour !== null);
    if (line) return line.unitPerHour;
  }
  return hourlyPriceOf(loadPriceTable(), vmSize) ?? null;
}

/**
 * What a replaced deployment costs while the old and the new one both run, and the quota both
 * need: the overlap ({@link OVERLAP_HOURS}), both prices per hour, the overlap's cost, and the
 * vCPUs of each family while both exist (with Azure ML's 20% reservation).
 */
export function overlapOf(
  before: { instanceType: string; instances: number },
  after: { instanceType: string; instances: number },
  plans: DiffablePlan[],
  currency = "USD",
): string {
  const hours = isGpuSize(before.instanceType) || isGpuSize(after.instanceType) ? OVERLAP_HOURS.gpu : OVERLAP_HOURS.cpu;
  const oldPrice = unitPrice(before.instanceType, plans);
  const newPrice = unitPrice(after.instanceType, plans);
  const both = oldPrice === null || newPrice === null ? null : oldPrice * before.instances + newPrice * after.instances;
  const old = deploymentVCpus(before.instanceType, before.instances);
  const neu = deploymentVCpus(after.instanceType, after.instances);
  let quota: string;
  if (!old || !neu) quota = `quota: ${!old ? before.instanceType : after.instanceType} is not in the recorded VM sizes, run \`npm run doctor\``;
  else {
    const families = old.family === neu.family ? [`${old.vCPUs + neu.vCPUs} vCPUs of ${old.family} (old ${old.vCPUs} + new ${neu.vCPUs})`] : [`${old.vCPUs} vCPUs of ${old.family} (old)`, `${neu.vCPUs} of ${neu.family} (new)`];
    quota =
      `quota while both run: ${families.join(" and ")}, 20% reservation included where Azure ML holds it; ` +
      `the preflight (\`npm run doctor\`) passes only if the free quota, the old deployment counted as in use, holds the new one`;
  }
  return (
    `both run for ~${hours} h (create ${isGpuSize(after.instanceType) ? "a GPU deployment: 15–30 min" : "the deployment"}, move traffic, delete the old one) ` +
    `and both bill: ${formatMoney(both, currency)}/h together, ~${formatMoney(both === null ? null : Math.round(both * hours * 100) / 100, currency)} for the overlap; ${quota}`
  );
}

/** The consequences of one change, in words, each with its weight. */
function consequences(action: Action, base: PlanResource | undefined, head: PlanResource | undefined, headPlan: DiffablePlan, changes: PropertyChange[], basePlan?: DiffablePlan): Said[] {
  const r = (head ?? base)!;
  const out: Said[] = [];
  const p = (x: PlanResource | undefined) => (isPlainObject(x?.inputs.properties) ? (x!.inputs.properties as Record<string, unknown>) : {});
  switch (r.type) {
    case "command:local:Command": {
      const job = jobOf(head);
      const before = jobOf(base);
      const e = env(head);
      if (job && action !== "delete" && action !== "forget") {
        if (!before || before.name !== job.name || action === "replace") {
          if (job.fineTune) {
            const ft = headPlan.fineTune;
            const estimate = ft ? ` (~${ft.hours.toFixed(1)} h, ~${money(ft.usd, headPlan.currency)}; ${ft.basis})` : "";
            out.push(said("money", `starts a new fine-tune job ${job.name} on ${ft?.vmSize ?? job.compute}${estimate}; the jobs before it stay in the workspace's history${gatedBy(headPlan, job.name)}`));
          } else {
            out.push(said("money", `starts a new data preparation job ${job.name} on cluster ${job.compute}`));
          }
        } else {
          out.push(said("other", `re-runs the step of job ${job.name}: the job exists, so nothing is resubmitted (it is only waited for)`));
        }
      } else if (e.TRAFFIC !== undefined && action !== "delete") {
        const was = env(base).TRAFFIC;
        out.push(said("traffic", was !== undefined && was !== e.TRAFFIC ? `moves live traffic ${was} → ${e.TRAFFIC} once the deployments are healthy` : `applies traffic ${e.TRAFFIC} again (after the endpoint changed)`));
      } else if (e.PREFLIGHT_INPUT !== undefined && action !== "delete") {
        out.push(said("other", "runs the preflight checks again before anything else changes"));
      }
      break;
    }
    case "azure-native:machinelearningservices:OnlineDeployment": {
      const instances = (x: PlanResource) => (x.inputs.sku as { capacity?: number } | undefined)?.capacity ?? 1;
      const shape = (x: PlanResource) => `${p(x).instanceType ?? "?"} × ${instances(x)}`;
      if (action === "create") out.push(said("money", `new deployment ${head!.azureName} (${shape(head!)}); traffic moves to it after it is healthy`));
      else if (action === "replace") out.push(said("money", `replaces deployment ${base!.azureName} with ${head!.azureName} (${shape(head!)}): the new one is created first, then traffic moves; ` +
            (typeof p(base).instanceType === "string" && typeof p(head).instanceType === "string"
              ? overlapOf({ instanceType: String(p(base).instanceType), instances: instances(base!) }, { instanceType: String(p(head).instanceType), instances: instances(head!) }, [headPlan, ...(basePlan ? [basePlan] : [])], headPlan.currency)
              : "the properties are secret: the overlap is not estimated"),
        ));
      else if (action === "update") out.push(said("traffic", `updates deployment ${head!.azureName} in place (Azure rolls its instances)`));
      else out.push(said("money", `deletes deployment ${base!.azureName} after its traffic was moved away`));
      break;
    }
    case "azure-native:machinelearningservices:OnlineEndpoint":
      if (action === "replace") out.push(said("money", `replaces the endpoint ${base!.azureName}: downtime, and the scoring URI and keys change`));
      else if (action === "update") out.push(said("other", `updates the endpoint ${head!.azureName} in place; the traffic step applies the split again right after`));
      else if (action === "delete") out.push(said("money", `deletes the endpoint ${base!.azureName}: scoring stops`));
      break;
    case "azure-native:machinelearningservices:ModelVersion":
      if (action === "create" || action === "replace") out.push(said("other", `registers model ${p(head).modelUri ? `${head!.inputs.name}:${head!.inputs.version}` : head!.azureName} once its job has completed`));
      break;
    case "azure-native:machinelearningservices:Compute":
      if (action === "replace") out.push(said("money", `replaces cluster ${base!.azureName}${r.deleteBeforeReplace ? " (deleted first: a job running on it fails)" : ""}`));
      break;
    case "azure-native:machinelearningservices:Workspace":
      if (action === "replace" || action === "delete") out.push(said("money", `${action === "replace" ? "replaces" : "deletes"} Azure ML workspace ${base!.azureName}: its jobs, models and endpoints go with it (soft-deleted for 14 days)`));
      break;
    case "time:index/sleep:Sleep":
      if (action !== "delete") out.push(said("other", `waits ${head!.inputs.createDuration ?? ""} again for role assignments to take effect`));
      break;
  }
  if ((action === "delete" || action === "forget") && r.retainOnDelete) out.push(said("housekeeping", `${base!.azureName || base!.name} stays in Azure (retainOnDelete: history is kept)`));
  if (action === "replace" && r.retainOnDelete) out.push(said("housekeeping", `the old ${base!.azureName || base!.name} stays in Azure (retainOnDelete)`));
  if (out.length === 0 && action === "replace") {
    const why = changes.filter((c) => c.replaces).map((c) => c.path);
    out.push(said("other", `replaces ${r.azureName || r.name} (${why.join(", ")} cannot change in place)`));
  }
  return out;
}

/**
 * Compares two plans of a stack.
 *
 * @param base - the plan before (a git ref's, or a saved plan.json).
 * @param head - the plan of the working tree.
 * @param labels - how to name them in the output.
 */
export function diffPlans(base: DiffablePlan, head: DiffablePlan, labels: { base: string; head: string }): PlanDiff {
  const before = new Map(base.resources.map((r) => [r.key, r]));
  const after = new Map(head.resources.map((r) => [r.key, r]));
  const counts: PlanDiff["counts"] = { create: 0, update: 0, replace: 0, delete: 0, forget: 0, same: 0 };
  const changes: ResourceChange[] = [];
  const all: Said[] = [];
  const add = (c: Omit<ResourceChange, "consequences">, s: Said[]) => {
    changes.push({ ...c, consequences: s.map((x) => x.text) });
    all.push(...s);
  };
  for (const h of head.resources) {
    const b = before.get(h.key);
    if (!b) {
      add({ action: "create", key: h.key, name: h.name, type: h.type, azureName: h.azureName, changes: [] }, consequences("create", undefined, h, head, [], base));
      counts.create++;
      continue;
    }
    const leaves: Parameters<typeof compare>[3] = [];
    compare(b.inputs, h.inputs, "", leaves);
    const props = leaves
      .filter((l) => !h.ignoreChanges.some((p) => under(l.path, p)))
      .map((l): PropertyChange => {
        const [shownBefore, shownAfter] = showPair(l.before, l.after);
        return { path: l.path, kind: l.kind, replaces: replacesOn(h, l.path), before: shownBefore, after: shownAfter };
      });
    if (props.length === 0) {
      counts.same++;
      continue;
    }
    const action: Action = props.some((c) => c.replaces) ? "replace" : "update";
    counts[action]++;
    add({ action, key: h.key, name: h.name, type: h.type, azureName: h.azureName || b.azureName, changes: props }, consequences(action, b, h, head, props, base));
  }
  for (const b of base.resources) {
    if (after.has(b.key)) continue;
    const action: Action = b.retainOnDelete ? "forget" : "delete";
    counts[action]++;
    add({ action, key: b.key, name: b.name, type: b.type, azureName: b.azureName, changes: [] }, consequences(action, b, undefined, head, [], base));
  }
  return {
    base: labels.base,
    head: labels.head,
    changes,
    counts,
    monthlyCost: { before: base.monthlyCost, after: head.monthlyCost, currency: head.currency },
    summary: summarize(all),
  };
}

/** Most consequential first (stable within a weight); the housekeeping lines collapsed into one. */
function summarize(all: Said[]): string[] {
  const ordered = WEIGHT_ORDER.filter((w) => w !== "housekeeping").flatMap((w) => all.filter((x) => x.weight === w).map((x) => x.text));
  const kept = all.filter((x) => x.weight === "housekeeping").map((x) => x.text.replace(/^the old /, "").replace(/ stays in Azure.*$/, ""));
  if (kept.length) {
    const names = kept.length > 4 ? `${kept.slice(0, 3).join(", ")} and ${kept.length - 3} more` : kept.join(", ");
    ordered.push(`housekeeping: ${kept.length} resource${kept.length === 1 ? "" : "s"} no longer in the stack stay${kept.length === 1 ? "s" : ""} in Azure (retainOnDelete: history is kept): ${names}`);
  }
  return ordered;
}

const SYMBOL: Record<Action, string> = { create: "+", update: "~", replace: "+-", delete: "-", forget: "- (kept)" };

/** The diff as the plan prints it: what it does (most consequential first) and the monthly cost, then each resource. */
export function formatDiff(d: PlanDiff): string[] {
  const lines = [`Plan diff: ${d.base} → ${d.head} (offline; Pulumi mock runtime)`, ""];
  if (d.summary.length) lines.push("What this change does (money and traffic first):", ...d.summary.map((s) => `  - ${s}`), "");
  const { before, after, currency } = d.monthlyCost;
  if (before !== null && after !== null) {
    const delta = after - before;
    lines.push(`Monthly cost (serving, idle clusters and private networking, 30 days): ${money(before, currency)} → ${money(after, currency)} (${delta >= 0 ? "+" : "-"}${money(Math.abs(delta), currency)}).`);
  } else {
    lines.push(`Monthly cost: ${money(before, currency)} → ${money(after, currency)} (a VM size has no price in the table).`);
  }
  const n = d.counts;
  lines.push(`${n.create} to create, ${n.update} to update, ${n.replace} to replace, ${n.delete} to delete, ${n.forget} to forget (kept in Azure), ${n.same} unchanged.`, "");
  if (d.changes.length === 0) lines.push("No changes.");
  for (const c of d.changes) {
    const type = c.type.split(":").slice(-2).join(":");
    lines.push(`${SYMBOL[c.action].padEnd(8)} ${c.action.padEnd(8)} ${c.name.padEnd(34)} ${type.padEnd(40)} ${c.azureName}`);
    for (const p of c.changes) {
      lines.push(`           ${p.replaces ? "forces replacement: " : ""}${p.path}: ${p.kind === "add" ? `(none) → ${p.after}` : p.kind === "remove" ? `${p.before} → (none)` : `${p.before} → ${p.after}`}`);
    }
    for (const why of c.consequences) lines.push(`           => ${why}`);
  }
  return lines;
}
