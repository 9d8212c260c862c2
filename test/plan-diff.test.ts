/**
 * The plan diff (cli/lib/plan-diff.ts): create, update, replace and delete for every resource
 * type the stacks declare, on plans built from real mock runs of every stack file.
 */
import { readdirSync } from "node:fs";
import { beforeAll, describe, expect, it } from "vitest";
import { buildPlan, type Plan } from "../cli/lib/plan-build";
import { changedSegment, diffPlans, formatDiff, overlapOf, pathParameters, replacesOn, type PlanResource } from "../cli/lib/plan-diff";
import { estimateCost, loadPriceTable } from "../infra/cost";
import { ROOT, runStack } from "./helpers/stack";

const STACKS = readdirSync(ROOT).flatMap((f) => /^Pulumi\.(.+)\.yaml$/.exec(f)?.[1] ?? []);

const plans: Record<string, Plan> = {};
beforeAll(async () => {
  const cost = estimateCost({ training: { vmSize: "Standard_NC24ads_A100_v4", minNodes: 0, maxNodes: 1 }, deployments: [] }, loadPriceTable({}), "eastus2");
  for (const stack of STACKS) {
    const run = await runStack({ stack });
    plans[stack] = buildPlan(run, { project: "phi3-finetune", stack, subscriptionId: "s", training: "script", warnings: [], cost });
  }
}, 120_000);

type Inputs = Record<string, any>;
const clone = <T>(x: T): T => JSON.parse(JSON.stringify(x));

/**
 * For each resource type: an in-place change (`update`, absent where any change replaces) and
 * a change that forces a replacement, as the provider decides them.
 */
const MUTATIONS: Record<string, { update?: (i: Inputs) => void; replace: (i: Inputs) => void }> = {
  "azure-native:resources:ResourceGroup": { update: (i) => (i.tags = { ...i.tags, team: "ml" }), replace: (i) => (i.resourceGroupName += "-2") },
  "azure-native:storage:StorageAccount": { update: (i) => (i.tags = { ...i.tags, team: "ml" }), replace: (i) => (i.accountName += "2") },
  "azure-native:storage:Blob": { update: (i) => (i.contentType = "text/plain"), replace: (i) => (i.blobName += ".v2") },
  "azure-native:keyvault:Vault": { update: (i) => (i.tags = { ...i.tags, team: "ml" }), replace: (i) => (i.vaultName += "2") },
  "azure-native:operationalinsights:Workspace": { update: (i) => (i.retentionInDays = 60), replace: (i) => (i.workspaceName += "2") },
  "azure-native:applicationinsights:Component": { update: (i) => (i.tags = { ...i.tags, team: "ml" }), replace: (i) => (i.resourceName += "2") },
  "azure-native:containerregistry:Registry": { update: (i) => (i.tags = { ...i.tags, team: "ml" }), replace: (i) => (i.registryName += "2") },
  "azure-native:managedidentity:UserAssignedIdentity": { update: (i) => (i.tags = { ...i.tags, team: "ml" }), replace: (i) => (i.resourceName += "2") },
  "azure-native:authorization:RoleDefinition": { update: (i) => (i.description = "changed"), replace: (i) => (i.roleDefinitionId = "00000000-0000-0000-0000-000000000002") },
  "azure-native:authorization:RoleAssignment": { update: (i) => (i.description = "changed"), replace: (i) => (i.principalId = "00000000-0000-0000-0000-000000000001") },
  "azure-native:machinelearningservices:Workspace": { update: (i) => (i.friendlyName = "renamed"), replace: (i) => (i.workspaceName += "2") },
  "azure-native:machinelearningservices:Compute": { update: (i) => (i.tags = { ...i.tags, team: "ml" }), replace: (i) => (i.properties.properties.vmSize = "Standard_NC48ads_A100_v4") },
  "azure-native:machinelearningservices:CodeVersion": { update: (i) => (i.properties.description = "d"), replace: (i) => (i.version += "1") },
  "azure-native:machinelearningservices:EnvironmentVersion": { update: (i) => (i.properties.description = "d"), replace: (i) => (i.properties.image += "-2") },
  "azure-native:machinelearningservices:DataVersion": { update: (i) => (i.properties.description = "d"), replace: (i) => (i.name += "2") },
  "azure-native:machinelearningservices:ModelVersion": { update: (i) => (i.properties.description = "d"), replace: (i) => (i.version += "1") },
  "azure-native:machinelearningservices:OnlineEndpoint": { update: (i) => (i.tags = { ...i.tags, team: "ml" }), replace: (i) => (i.identity = { type: "SystemAssigned" }) },
  "azure-native:machinelearningservices:OnlineDeployment": {
    update: (i) => (i.properties.requestSettings.maxConcurrentRequestsPerInstance = 5),
    replace: (i) => (i.deploymentName += "x"),
  },
  "azure-native:machinelearningservices:WorkspaceConnection": { update: (i) => (i.properties = "[secret:feedfeedfeed]"), replace: (i) => (i.connectionName += "2") },
  "command:local:Command": { update: (i) => (i.environment = { ...i.environment, EXTRA: "1" }), replace: (i) => (i.triggers = ["x"]) },
  "azure-native:monitor:DiagnosticSetting": { update: (i) => (i.metrics = []), replace: (i) => (i.name += "2") },
  "azure-native:storage:BlobServiceProperties": { update: (i) => (i.deleteRetentionPolicy = { enabled: true, days: 14 }), replace: (i) => (i.accountName += "2") },
  "azure-native:authorization:ManagementLockAtResourceGroupLevel": { update: (i) => (i.notes = "changed"), replace: (i) => (i.lockName += "2") },
  "azure-native:monitor:AutoscaleSetting": { update: (i) => (i.enabled = false), replace: (i) => (i.autoscaleSettingName += "2") },
  // Every argument of time_sleep forces a new resource: there is no in-place update.
  "time:index/sleep:Sleep": { replace: (i) => (i.createDuration = "900s") },
};

function planWith(base: Plan, resources: PlanResource[]): Plan {
  return { ...base, resources };
}

describe("diffPlans: every resource type the stacks declare", () => {
  it("the mutation table covers every type of every stack", () => {
    const types = new Set(Object.values(plans).flatMap((p) => p.resources.map((r) => r.type)));
    expect([...types].filter((t) => !MUTATIONS[t])).toEqual([]);
    expect(types.size).toBeGreaterThanOrEqual(20);
  });

  for (const [type, m] of Object.entries(MUTATIONS)) {
    describe(type, () => {
      const pick = (): { plan: Plan; r: PlanResource } => {
        for (const p of Object.values(plans)) {
          const r = p.resources.find((x) => x.type === type);
          if (r) return { plan: p, r };
        }
        throw new Error(`no ${type} in any stack`);
      };

      it("create", () => {
        const { plan, r } = pick();
        const d = diffPlans(planWith(plan, plan.resources.filter((x) => x !== r)), plan, { base: "b", head: "h" });
        expect(d.changes).toHaveLength(1);
        expect(d.changes[0]).toMatchObject({ action: "create", key: r.key });
      });

      it("delete (or forget, when the stack keeps it)", () => {
        const { plan, r } = pick();
        const d = diffPlans(plan, planWith(plan, plan.resources.filter((x) => x !== r)), { base: "b", head: "h" });
        expect(d.changes.map((c) => c.action)).toEqual([r.retainOnDelete ? "forget" : "delete"]);
        if (r.retainOnDelete) expect(d.changes[0].consequences.join("\n")).toMatch(/stays in Azure/);
      });

      it(m.update ? "update in place" : "any change replaces (no update in place)", () => {
        const { plan, r } = pick();
        const changed = { ...r, inputs: clone(r.inputs) };
        (m.update ?? m.replace)(changed.inputs);
        const d = diffPlans(plan, planWith(plan, plan.resources.map((x) => (x === r ? changed : x))), { base: "b", head: "h" });
        expect(d.changes).toHaveLength(1);
        expect(d.changes[0].action).toBe(m.update ? "update" : "replace");
        expect(d.changes[0].changes.length).toBeGreaterThan(0);
        expect(d.counts.same).toBe(plan.resources.length - 1);
      });

      it("replace", () => {
        const { plan, r } = pick();
        const changed = { ...r, inputs: clone(r.inputs) };
        m.replace(changed.inputs);
        const d = diffPlans(plan, planWith(plan, plan.resources.map((x) => (x === r ? changed : x))), { base: "b", head: "h" });
        expect(d.changes).toHaveLength(1);
        expect(d.changes[0].action).toBe("replace");
        expect(d.changes[0].changes.some((c) => c.replaces)).toBe(true);
      });
    });
  }
});

describe("replacement rules", () => {
  it("reads ARM path parameters from the installed azure-native SDK", () => {
    expect(pathParameters("azure-native:machinelearningservices:OnlineDeployment").sort()).toEqual(["deploymentName", "endpointName", "resourceGroupName", "workspaceName"]);
    expect(pathParameters("azure-native:machinelearningservices:ModelVersion")).toEqual(expect.arrayContaining(["name", "version", "workspaceName"]));
    expect(pathParameters("azure-native:storage:StorageAccount").sort()).toEqual(["accountName", "resourceGroupName"]);
    expect(pathParameters("command:local:Command")).toEqual([]);
  });

  it("the stack's own replaceOnChanges replaces; ignoreChanges paths are not compared", () => {
    const compute = { type: "azure-native:machinelearningservices:Compute", replaceOnChanges: ["properties.properties.vmPriority"] };
    expect(replacesOn(compute, "properties.properties.vmPriority")).toBe(true);
    expect(replacesOn(compute, "properties.properties.scaleSettings.maxNodeCount")).toBe(false);
    const plan = plans.dev;
    const ep = plan.resources.find((r) => r.type === "azure-native:machinelearningservices:OnlineEndpoint")!;
    expect(ep.ignoreChanges).toContain("properties.traffic");
    const changed = { ...ep, inputs: clone(ep.inputs) };
    (changed.inputs.properties as Record<string, unknown>).traffic = { other: 100 };
    expect(diffPlans(plan, planWith(plan, plan.resources.map((x) => (x === ep ? changed : x))), { base: "b", head: "h" }).changes).toEqual([]);
  });

  it("a secret that changes is shown as changed, never as a value", () => {
    const plan = plans.dev;
    const conn = plan.resources.find((r) => r.type === "azure-native:machinelearningservices:WorkspaceConnection")!;
    expect(JSON.stringify(conn.inputs)).toMatch(/\[secret:[0-9a-f]{12}\]/);
    expect(JSON.stringify(conn.inputs)).not.toMatch(/mock-primary/);
    const changed = { ...conn, inputs: { ...conn.inputs, properties: "[secret:0123456789ab]" } };
    const d = diffPlans(plan, planWith(plan, plan.resources.map((x) => (x === conn ? changed : x))), { base: "b", head: "h" });
    const text = formatDiff(d).join("\n");
    expect(text).toContain("properties: [secret] → [secret]");
    expect(text).not.toMatch(/\[secret:[0-9a-f]/);
  });

  it("an identical plan is no change, and the monthly cost is stated", () => {
    const d = diffPlans(plans.dev, plans.dev, { base: "b", head: "h" });
    expect(d.changes).toEqual([]);
    const text = formatDiff(d).join("\n");
    expect(text).toContain("No changes.");
    expect(text).toMatch(/Monthly cost \(serving, idle clusters and private networking, 30 days\): USD [\d,.]+ → USD [\d,.]+ \(\+USD 0\.00\)/);
  });
});

describe("what a reviewer reads", () => {
  const change = (plan: Plan, pick: (r: PlanResource) => boolean, edit: (i: Inputs) => void): Plan =>
    planWith(
      plan,
      plan.resources.map((r) => {
        if (!pick(r)) return r;
        const c = { ...r, inputs: clone(r.inputs) };
        edit(c.inputs);
        return c;
      }),
    );

  it("a long string shows the segment that changed, not two identical-looking prefixes", () => {
    const table: [string, string, string, string][] = [
      ["https://st.blob.core.windows.net/azureml-blobstore-cd9e53ec/LocalUpload/bc8768404446587b/finetuning_dir", "https://st.blob.core.windows.net/azureml-blobstore-cd9e53ec/LocalUpload/29c2d4954205196a/finetuning_dir", "…3ec/LocalUpload/bc8768404446587b/finetuning_dir", "…3ec/LocalUpload/29c2d4954205196a/finetuning_dir"],
      ["abc", "abd", "abc", "abd"],
      ["x".repeat(50) + "A" + "y".repeat(50), "x".repeat(50) + "B" + "y".repeat(50), `…${"x".repeat(16)}A${"y".repeat(16)}…`, `…${"x".repeat(16)}B${"y".repeat(16)}…`],
      ["same prefix, then more", "same prefix", "same prefix, then more", "same prefix"],
    ];
    for (const [a, b, wantA, wantB] of table) expect(changedSegment(a, b)).toEqual([wantA, wantB]);
    const plan = plans.dev;
    const head = change(plan, (r) => r.type === "azure-native:machinelearningservices:CodeVersion", (i) => (i.properties.codeUri = String(i.properties.codeUri).replace(/LocalUpload\/[0-9a-f]{6}/, "LocalUpload/ffffff")));
    const line = formatDiff(diffPlans(plan, head, { base: "b", head: "h" })).find((l) => l.includes("properties.codeUri:"))!;
    const [before, after] = line.split(": ").slice(1).join(": ").split(" → ");
    expect(before).not.toBe(after);
    expect(after).toMatch(/LocalUpload\/ffffff/);
  });

  it("JSON in an environment variable is compared key by key", () => {
    const plan = plans.dev;
    const head = change(plan, (r) => !!(r.inputs.environment as Inputs | undefined)?.PREFLIGHT_INPUT, (i) => {
      const input = JSON.parse(i.environment.PREFLIGHT_INPUT);
      input.trainingCluster.vmSize = "Standard_NC48ads_A100_v4";
      i.environment.PREFLIGHT_INPUT = JSON.stringify(input);
    });
    const d = diffPlans(plan, head, { base: "b", head: "h" });
    expect(d.changes).toHaveLength(1);
    expect(d.changes[0].changes).toEqual([{ path: "environment.PREFLIGHT_INPUT#trainingCluster.vmSize", kind: "change", replaces: false, before: "Standard_NC24ads_A100_v4", after: "Standard_NC48ads_A100_v4" }]);
  });

  it("a replaced deployment states the overlap: hours, cost of both, quota of both", () => {
    const text = overlapOf({ instanceType: "Standard_NC4as_T4_v3", instances: 1 }, { instanceType: "Standard_NC4as_T4_v3", instances: 2 }, [], "USD");
    // 0.526 × (1 + 2) per hour for 0.5 h; vCPUs ceil(4 × 1 × 1.2) + ceil(4 × 2 × 1.2) = 5 + 10.
    expect(text).toMatch(/both run for ~0\.5 h/);
    expect(text).toContain("USD 1.58/h together, ~USD 0.79 for the overlap");
    expect(text).toContain("15 vCPUs of standardNCASv3_T4Family (old 5 + new 10)");
    expect(overlapOf({ instanceType: "Standard_NC24ads_A100_v4", instances: 1 }, { instanceType: "Standard_NC24ads_A100_v4", instances: 1 }, [], "USD")).toContain("48 vCPUs of standardNCADSA100v4Family (old 24 + new 24)");
    expect(overlapOf({ instanceType: "Standard_E4s_v3", instances: 1 }, { instanceType: "Standard_E4s_v3", instances: 1 }, [], "USD")).toMatch(/both run for ~0\.25 h/);
    const plan = plans.bluegreen;
    const head = change(plan, (r) => r.type === "azure-native:machinelearningservices:OnlineDeployment" && r.name.endsWith("blue"), (i) => (i.deploymentName += "x"));
    const d = diffPlans(plan, head, { base: "b", head: "h" });
    expect(d.summary.join("\n")).toMatch(/replaces deployment .* both run for ~0\.5 h .* both bill: USD \d+\.\d\d\/h together, ~USD \d+\.\d\d for the overlap; quota while both run: \d+ vCPUs/);
  });

  it("the summary leads with money and traffic; kept resources are one housekeeping line at the end", () => {
    const plan = plans.dev;
    const kept = plan.resources.filter((r) => r.retainOnDelete);
    expect(kept.length).toBeGreaterThanOrEqual(3);
    const job = plan.resources.find((r) => /fine_tune\.py/.test(String((r.inputs.environment as Inputs | undefined)?.AZUREML_JOB_BODY ?? "")))!;
    const head = planWith(
      plan,
      plan.resources
        .filter((r) => !r.retainOnDelete)
        .map((r) => (r === job ? { ...r, inputs: { ...clone(r.inputs), environment: { ...(r.inputs.environment as Inputs), AZUREML_JOB_NAME: "phi3ft-ft-0000000000000000" } } } : r)),
    );
    const d = diffPlans(plan, head, { base: "b", head: "h" });
    expect(d.summary[0]).toMatch(/^starts a new fine-tune job phi3ft-ft-0000000000000000/);
    expect(d.summary.filter((s) => /stays? in Azure/.test(s))).toHaveLength(1);
    expect(d.summary.at(-1)).toMatch(new RegExp(`^housekeeping: ${kept.length} resources no longer in the stack stay in Azure \\(retainOnDelete`));
    const text = formatDiff(d);
    expect(text.indexOf("What this change does (money and traffic first):")).toBe(2);
    expect(text.findIndex((l) => /^- \(kept\)/.test(l))).toBeGreaterThan(text.findIndex((l) => l.startsWith("  - housekeeping")));
  });
});
