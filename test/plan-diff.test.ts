/**
 * The plan diff (cli/lib/plan-diff.ts): create, update, replace and delete for every resource
 * type the stacks declare, on plans built from real mock runs of every stack file.
 */
import { readdirSync } from "node:fs";
import { beforeAll, describe, expect, it } from "vitest";
import { buildPlan, type Plan } from "../cli/plan";
import { diffPlans, formatDiff, pathParameters, replacesOn, type PlanResource } from "../cli/lib/plan-diff";
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
    expect(text).toMatch(/Monthly cost \(serving and idle clusters, 30 days\): USD [\d,.]+ → USD [\d,.]+ \(\+USD 0\.00\)/);
  });
});
