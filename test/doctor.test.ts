/** cli/doctor.ts: pure parts, and every check against a fake ARM server on 127.0.0.1. */
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { parseConfig, type StackConfig } from "../infra/config";
import { azureNames, type AzureNames } from "../infra/naming";
import { main, parseDoctorArgs } from "../cli/doctor";
import { onlineDeploymentVCpus } from "../infra/quota";
import { REQUIRED_PROVIDERS, formatReport, requiredQuota, runDoctor, type Check, type DoctorResult, type VmSize } from "../lib/preflight";
import { fakeClock, fakeCredential, routeHealthySubscription, startFakeArm, type FakeArm, type FakeClock, type FakeCredential } from "./helpers/fake-arm";

const SUB = "11111111-2222-3333-4444-555555555555";
const OTHER_SUB = "66666666-7777-8888-9999-000000000000";
const TENANT = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";
const STACK = "dev";
const LOCATION = "eastus2";
const FIXTURES = path.join(__dirname, "fixtures", "doctor");

const A100: VmSize = { name: "Standard_NC24ads_A100_v4", family: "standardNCADSA100v4Family", vCPUs: 24, gpus: 1, lowPriorityCapable: true, supportedComputeTypes: ["ComputeInstance", "AmlCompute"] };
const T4: VmSize = { name: "Standard_NC4as_T4_v3", family: "standardNCASv3_T4Family", vCPUs: 4, gpus: 1, lowPriorityCapable: true, supportedComputeTypes: ["ComputeInstance", "AmlCompute"] };
const DS3: VmSize = { name: "Standard_DS3_v2", family: "standardDSv2Family", vCPUs: 4, gpus: 0, lowPriorityCapable: true, supportedComputeTypes: ["ComputeInstance", "AmlCompute"] };
const NC6: VmSize = { name: "Standard_NC6s_v3", family: "standardNCSv3Family", vCPUs: 6, gpus: 1, lowPriorityCapable: true, supportedComputeTypes: ["AmlCompute"] };
const VM_SIZES = [A100, T4, DS3];

/** A parsed stack config: the seed's clusters, and `blue` on 2 × T4 unless overridden. */
function config(over: Record<string, unknown> = {}): StackConfig {
  const raw: Record<string, string> = {
    serving: JSON.stringify({ deployments: [{ name: "blue", instanceType: T4.name, instanceCount: 2 }] }),
  };
  for (const [k, v] of Object.entries(over)) raw[k] = typeof v === "string" ? v : JSON.stringify(v);
  return parseConfig({ location: LOCATION, ...raw }).config;
}

const usage = (value: string, localizedValue: string, currentValue: number, limit: number) => ({
  id: `/subscriptions/${SUB}/providers/Microsoft.MachineLearningServices/locations/${LOCATION}/usages/${value}`,
  type: "Microsoft.MachineLearningServices/vmFamily/usages",
  unit: "Count",
  currentValue,
  limit,
  name: { value, localizedValue },
});

function usages(over: { a100?: [number, number]; t4?: [number, number] } = {}) {
  const [aUsed, aLimit] = over.a100 ?? [0, 24];
  const [tUsed, tLimit] = over.t4 ?? [0, 16];
  return [
    // A workspace-level entry for the same family must not be mistaken for the regional one.
    {
      ...usage("standardNCADSA100v4Family", "Standard NCADSA100v4 Family Cluster Dedicated vCPUs", 0, 1000),
      id: `/subscriptions/${SUB}/resourceGroups/other/providers/Microsoft.MachineLearningServices/workspaces/other/usages/x`,
      type: "Microsoft.MachineLearningServices/workspaces/dedicatedCores/usages",
    },
    usage("standardNCADSA100v4Family", "Standard NCADSA100v4 Family Cluster Dedicated vCPUs", aUsed, aLimit),
    usage("standardNCASv3_T4Family", "Standard NCASv3_T4 Family Cluster Dedicated vCPUs", tUsed, tLimit),
    usage("standardDSv2Family", "Standard DSv2 Family Cluster Dedicated vCPUs", 0, 24),
    usage("TotalDedicatedCores", "Total Cluster Dedicated Regional vCPUs", 0, 100),
    usage("TotalLowPriorityCores", "Total Cluster Low Priority Regional vCPUs", 0, 100),
  ];
}


const ml = (sub = SUB) => `/subscriptions/${sub}/providers/Microsoft.MachineLearningServices/locations/${LOCATION}`;
const rgPath = (n: AzureNames, sub = SUB) => `/subscriptions/${sub}/resourceGroups/${n.resourceGroup}/providers`;
const providerPath = (ns: string, sub = SUB) => `/subscriptions/${sub}/providers/${ns}`;
const checkNamePath = (ns: string, sub = SUB) => `/subscriptions/${sub}/providers/${ns}/checkNameAvailability`;

let fake: FakeArm;
let clock: FakeClock;
let cred: FakeCredential;
let logs: string[];
let names: AzureNames;

/** Routes of a subscription where everything the stack needs is in place. */
function greenAzure(sub = SUB) {
  routeHealthySubscription(fake, { subscriptionId: sub, tenantId: TENANT, location: LOCATION, vmSizes: VM_SIZES, usages: usages() });
}

function run(cfg: StackConfig = config(), extra: { subscriptionId?: string; env?: Record<string, string>; credential?: FakeCredential } = {}): Promise<DoctorResult> {
  return runDoctor(
    { stack: STACK, config: cfg, subscriptionId: "subscriptionId" in extra ? extra.subscriptionId : SUB },
    {
      credential: extra.credential ?? cred,
      baseUrl: fake.baseUrl,
      env: extra.env ?? {},
      log: (l) => logs.push(l),
      backoffBaseMs: 1,
      maxRetries: 3,
    },
  );
}

const byId = (r: DoctorResult, id: string): Check => {
  const c = r.checks.find((x) => x.id === id);
  if (!c) throw new Error(`no check ${id}; have ${r.checks.map((x) => x.id).join(", ")}`);
  return c;
};
const failed = (r: DoctorResult) => r.checks.filter((c) => c.status === "FAIL").map((c) => c.id);

beforeEach(async () => {
  fake = await startFakeArm();
  clock = fakeClock();
  cred = fakeCredential({ now: clock.now });
  logs = [];
  names = azureNames({ prefix: "phi3ft", stack: STACK, subscriptionId: SUB });
});
afterEach(async () => {
  await fake.close();
});

describe("parseDoctorArgs", () => {
  it("defaults to the dev stack, table output, no explicit subscription", () => {
    expect(parseDoctorArgs([])).toEqual({ stack: "dev", json: false, help: false });
  });
  it("reads --stack, --stack=, --subscription and --json", () => {
    expect(parseDoctorArgs(["--stack", "prod", "--subscription", SUB, "--json"])).toEqual({ stack: "prod", subscriptionId: SUB, json: true, help: false });
    expect(parseDoctorArgs(["--stack=ci"]).stack).toBe("ci");
  });
  it("rejects unknown arguments, missing values, bad stack names and non-GUID subscriptions", () => {
    expect(() => parseDoctorArgs(["--bogus"])).toThrow(/unknown option --bogus/);
    expect(() => parseDoctorArgs(["--stack"])).toThrow(/--stack needs a value/);
    expect(() => parseDoctorArgs(["--stack", "--json"])).toThrow(/--stack needs a value/);
    expect(() => parseDoctorArgs(["--stack", "a/b"])).toThrow(/not a valid stack name/);
    expect(() => parseDoctorArgs(["--subscription", "my-sub"])).toThrow(/not a subscription id/);
  });
});

describe("onlineDeploymentVCpus (the rule the preflight and the plan diff share)", () => {
  it.each([
    ["standardNCSv3Family", 6, 1, true, 8],
    ["standardNCSv3Family", 6, 3, true, 22],
    ["Standard NCADS A100 v4 Family", 24, 2, false, 48],
    ["standardNCADSA100v4Family", 24, 1, false, 24],
  ] as const)("%s, %i vCPUs × %i: reserved %s, %i vCPUs", (family, vCPUs, instances, reserved, total) => {
    expect(onlineDeploymentVCpus({ family, vCPUs }, instances)).toEqual({ reserved, vCPUs: total });
  });
});

describe("requiredQuota", () => {
  it("sums clusters (vCPUs × maxNodes) and deployments with the 20% reservation, A100 v4 exempt", () => {
    const needs = requiredQuota(
      config({
        trainingCluster: { vmSize: A100.name, maxNodes: 1 },
        serving: {
          deployments: [
            { name: "blue", instanceType: T4.name, instanceCount: 2 },
            { name: "green", instanceType: A100.name, instanceCount: 1 },
          ],
          traffic: { blue: 100, green: 0 },
        },
      }),
      VM_SIZES,
    );
    const get = (f: string) => needs.find((n) => n.family === f);
    // One NC24ads_A100_v4 node needs 24 vCPUs; the A100 deployment adds 24 (no reservation).
    expect(get(A100.family)?.vCPUs).toBe(48);
    expect(get(A100.family)?.parts.map((p) => [p.role, p.vCPUs, p.reserved])).toEqual([
      ["training cluster a100-train", 24, false],
      ["deployment green", 24, false],
    ]);
    // 2 × Standard_NC4as_T4_v3 = 8 vCPUs → ceil(8 × 1.2) = 10.
    expect(get(T4.family)?.vCPUs).toBe(10);
    expect(get(T4.family)?.parts[0].reserved).toBe(true);
    // The prep cluster (seed default Standard_DS3_v2, 1 node).
    expect(get(DS3.family)?.vCPUs).toBe(4);
    expect(needs.every((n) => n.priority === "Dedicated")).toBe(true);
  });

  it("rounds the reservation up per deployment and multiplies cluster nodes", () => {
    // CPU sizes of one family with the memory a CPU fine-tune (61 GB) and float32 serving (15 GB)
    // need (a T4 cluster is refused: fine_tune.py needs native bf16; DS3_v2's 14 GB hold neither).
    const E8: VmSize = { name: "Standard_E8s_v3", family: "standardESv3Family", vCPUs: 8, gpus: 0, lowPriorityCapable: true, supportedComputeTypes: ["ComputeInstance", "AmlCompute"] };
    const needs = requiredQuota(
      config({
        trainingCluster: { vmSize: E8.name, maxNodes: 3 },
        training: { servedDtype: "float32" },
        data: { source: "jsonl", trainFile: "a.jsonl", testFile: "b.jsonl" },
        serving: { deployments: [{ name: "blue", instanceType: E8.name, instanceCount: 1 }] },
      }),
      [...VM_SIZES, E8],
    );
    // 3 nodes × 8 = 24 for the cluster; ceil(8 × 1.2) = 10 for the deployment; no prep cluster.
    expect(needs).toHaveLength(1);
    expect(needs[0].vCPUs).toBe(34);
    expect(needs[0].parts.map((p) => p.vCPUs)).toEqual([24, 10]);
  });

  it("puts low-priority clusters in their own bucket and skips sizes Azure does not list", () => {
    const needs = requiredQuota(
      config({
        trainingCluster: { vmSize: A100.name, maxNodes: 2, vmPriority: "LowPriority" },
        serving: { deployments: [{ name: "blue", instanceType: "Standard_NC40ads_H100_v5", instanceCount: 1 }] },
      }),
      VM_SIZES,
    );
    expect(needs.map((n) => [n.family, n.priority, n.vCPUs])).toEqual([
      [DS3.family, "Dedicated", 4],
      [A100.family, "LowPriority", 48],
    ]);
  });
});

describe("formatReport", () => {
  it("prints a row per check and a remedy only under non-pass checks", () => {
    const text = formatReport([
      { id: "a", name: "Provider Microsoft.Storage", status: "PASS", detail: "Registered", remedy: "should not show" },
      { id: "b", name: "Provider Microsoft.Network", status: "FAIL", detail: "registrationState NotRegistered", remedy: "az provider register --namespace Microsoft.Network" },
      { id: "c", name: "VM size: training cluster", status: "WARN", detail: "retired", remedy: "pick another size" },
    ]);
    const lines = text.split("\n");
    expect(lines[0]).toMatch(/^STATUS\s+CHECK\s+DETAIL$/);
    expect(lines.find((l) => l.startsWith("PASS"))).toMatch(/Provider Microsoft\.Storage\s+Registered/);
    expect(text).not.toContain("should not show");
    const failAt = lines.findIndex((l) => l.startsWith("FAIL"));
    expect(lines[failAt + 1]).toMatch(/^\s+remedy: az provider register --namespace Microsoft\.Network$/);
    expect(text).toContain("remedy: pick another size");
    expect(lines[lines.length - 1]).toBe("1 passed, 1 warning, 1 failed - fix the failures before `pulumi up`.");
  });
});

describe("runDoctor against a fake ARM", () => {
  it("all green: every check passes, exit 0, with the subscription and tenant named", async () => {
    greenAzure();
    const r = await run();
    expect(failed(r)).toEqual([]);
    expect(r.checks.filter((c) => c.status !== "PASS")).toEqual([]);
    expect(r.exitCode).toBe(0);
    expect(byId(r, "subscription").detail).toContain(`"Phi-3 dev" (${SUB}), tenant ${TENANT}`);
    for (const ns of REQUIRED_PROVIDERS) expect(byId(r, `provider:${ns}`).status).toBe("PASS");
    expect(byId(r, "vm-size:trainingCluster").detail).toContain("family standardNCADSA100v4Family, 24 vCPUs");
    expect(byId(r, "vm-size:prepCluster").status).toBe("PASS");
    expect(byId(r, "vm-size:deployment:blue").status).toBe("PASS");
    // The workspace-level entry (limit 1000) was ignored: 24 of the regional 24 are free.
    expect(byId(r, `quota:${A100.family}`).detail).toMatch(/^needs 24 vCPUs, 24 free \(limit 24, in use 0\)/);
    expect(byId(r, `quota:${T4.family}`).detail).toMatch(/^needs 10 vCPUs/);
    expect(byId(r, "quota:total-dedicated").detail).toMatch(/^needs 38 vCPUs/);
    for (const id of ["name:storage", "name:keyvault", "name:registry", "name:workspace", "name:hub", "name:project"]) {
      expect(byId(r, id).status).toBe("PASS");
    }
    expect(byId(r, "name:workspace").detail).toContain("14 days");
    // Every request matched a route and carried the right API version and a bearer token.
    expect(fake.unmatched).toEqual([]);
    expect(fake.requestsTo("GET", `${ml()}/vmSizes`)[0].query["api-version"]).toBe("2025-12-01");
    expect(fake.requestsTo("GET", `${ml()}/usages`)[0].query["api-version"]).toBe("2025-12-01");
    expect(fake.requestsTo("GET", providerPath("Microsoft.Network"))[0].query["api-version"]).toBe("2021-04-01");
    expect(fake.requestsTo("GET", `/subscriptions/${SUB}`)[0].query["api-version"]).toBe("2022-12-01");
    const storage = fake.requestsTo("POST", checkNamePath("Microsoft.Storage"))[0];
    expect(storage.query["api-version"]).toBe("2023-05-01");
    expect(storage.body).toEqual({ name: names.storageAccount, type: "Microsoft.Storage/storageAccounts" });
    const kv = fake.requestsTo("POST", checkNamePath("Microsoft.KeyVault"))[0];
    expect(kv.query["api-version"]).toBe("2023-07-01");
    expect(kv.body).toEqual({ name: names.keyVault, type: "Microsoft.KeyVault/vaults" });
    const acr = fake.requestsTo("POST", checkNamePath("Microsoft.ContainerRegistry"))[0];
    expect(acr.query["api-version"]).toBe("2023-07-01");
    expect(acr.body).toEqual({ name: names.containerRegistry, type: "Microsoft.ContainerRegistry/registries" });
    expect(fake.requests.every((q) => q.headers.authorization === `Bearer ${cred.token}`)).toBe(true);
  });

  it("finds the only enabled subscription when none is given, and asks for --subscription when there are several", async () => {
    greenAzure();
    const one = await run(config(), { subscriptionId: undefined });
    expect(byId(one, "subscription").status).toBe("PASS");
    expect(byId(one, "subscription").detail).toContain("the only enabled subscription");
    expect(one.exitCode).toBe(0);

    fake.route("GET", "/subscriptions", {
      body: {
        value: [
          { subscriptionId: SUB, displayName: "Phi-3 dev", tenantId: TENANT, state: "Enabled" },
          { subscriptionId: OTHER_SUB, displayName: "Other", tenantId: TENANT, state: "Enabled" },
          { subscriptionId: "00000000-0000-0000-0000-000000000001", displayName: "Old", tenantId: TENANT, state: "Disabled" },
        ],
      },
    });
    const several = await run(config(), { subscriptionId: undefined });
    const s = byId(several, "subscription");
    expect(s.status).toBe("FAIL");
    expect(s.detail).toContain("2 enabled subscriptions");
    expect(s.detail).toContain(OTHER_SUB);
    expect(s.remedy).toContain("--subscription");
    expect(several.exitCode).toBe(1);
    expect(several.checks.map((c) => c.id)).toEqual(["credential", "subscription"]);
  });

  it("takes the subscription from AZURE_SUBSCRIPTION_ID, then ARM_SUBSCRIPTION_ID", async () => {
    greenAzure(OTHER_SUB);
    const r = await run(config(), { subscriptionId: undefined, env: { ARM_SUBSCRIPTION_ID: OTHER_SUB } });
    expect(byId(r, "subscription").detail).toContain(`(${OTHER_SUB})`);
    expect(byId(r, "subscription").detail).toContain("from ARM_SUBSCRIPTION_ID");
    expect(r.exitCode).toBe(0);
    const r2 = await run(config(), { subscriptionId: undefined, env: { AZURE_SUBSCRIPTION_ID: OTHER_SUB, ARM_SUBSCRIPTION_ID: SUB } });
    expect(byId(r2, "subscription").detail).toContain("from AZURE_SUBSCRIPTION_ID");
    expect(fake.requestsTo("GET", "/subscriptions")).toHaveLength(0);
  });

  it("an unregistered provider fails with `az provider register`", async () => {
    greenAzure();
    fake.route("GET", providerPath("Microsoft.Network"), { body: { namespace: "Microsoft.Network", registrationState: "NotRegistered" } });
    const r = await run();
    const c = byId(r, "provider:Microsoft.Network");
    expect(c.status).toBe("FAIL");
    expect(c.detail).toContain("NotRegistered");
    expect(c.remedy).toBe("az provider register --namespace Microsoft.Network");
    expect(failed(r)).toEqual(["provider:Microsoft.Network"]);
    expect(r.exitCode).toBe(1);
  });

  it("a 403 on the providers is a missing permission naming the action", async () => {
    greenAzure();
    fake.route("GET", new RegExp(`^/subscriptions/${SUB}/providers/Microsoft\\.[A-Za-z]+$`), {
      status: 403,
      body: { error: { code: "AuthorizationFailed", message: "The client 'x' does not have authorization to perform action 'Microsoft.Resources/subscriptions/providers/read'." } },
    });
    const r = await run();
    for (const ns of REQUIRED_PROVIDERS) {
      const c = byId(r, `provider:${ns}`);
      expect(c.status).toBe("FAIL");
      expect(c.detail).toMatch(/^missing permission: the identity may not perform Microsoft\.Resources\/subscriptions\/providers\/read/);
      expect(c.detail).toContain("AuthorizationFailed");
      expect(c.remedy).not.toContain("az provider register");
    }
    expect(r.exitCode).toBe(1);
  });

  it("a VM size Azure ML does not offer in the region fails", async () => {
    greenAzure();
    const r = await run(config({ trainingCluster: { vmSize: "Standard_NC40ads_H100_v5", maxNodes: 1 } }));
    const c = byId(r, "vm-size:trainingCluster");
    expect(c.status).toBe("FAIL");
    expect(c.detail).toBe(`Standard_NC40ads_H100_v5 is not offered by Azure ML in ${LOCATION}`);
    expect(c.remedy).toContain("phi3-finetune:trainingCluster.vmSize");
    // No quota row for a size whose family is unknown; the others still pass.
    expect(r.checks.some((x) => x.id.startsWith("quota:") && x.detail.includes("H100"))).toBe(false);
    expect(failed(r)).toEqual(["vm-size:trainingCluster"]);
    expect(r.exitCode).toBe(1);
  });

  it("Standard_NC6s_v3 on a deployment is flagged as retired with the replacements, even if still listed", async () => {
    greenAzure();
    const cfg = config({ serving: { deployments: [{ name: "blue", instanceType: NC6.name, instanceCount: 1 }] } });
    const gone = await run(cfg);
    const c = byId(gone, "vm-size:deployment:blue");
    expect(c.status).toBe("FAIL");
    expect(c.detail).toContain("Standard_NC6s_v3 was retired by Azure on 2025-09-30");
    for (const s of ["Standard_NC4as_T4_v3", "Standard_NC24ads_A100_v4", "Standard_NV36ads_A10_v5", "Standard_NC40ads_H100_v5"]) expect(c.remedy).toContain(s);
    expect(c.remedy).toContain("phi3-finetune:serving.deployments[0].instanceType");
    expect(c.remedy).toContain(`offered in ${LOCATION}: Standard_NC4as_T4_v3, Standard_NC24ads_A100_v4`);

    fake.route("GET", `${ml()}/vmSizes`, { body: { value: [...VM_SIZES, NC6] } });
    const listed = await run(cfg);
    expect(byId(listed, "vm-size:deployment:blue").status).toBe("FAIL");
    expect(byId(listed, "vm-size:deployment:blue").detail).toContain("new deployments on it fail");
    // A training cluster on NC6s_v3 never gets here: the config refuses V100s for training.
  });

  it("A100 quota short (needs 24, 12 free) fails naming the family", async () => {
    greenAzure();
    fake.route("GET", `${ml()}/usages`, { body: { value: usages({ a100: [12, 24] }) } });
    const r = await run();
    const c = byId(r, `quota:${A100.family}`);
    expect(c.status).toBe("FAIL");
    expect(c.detail).toMatch(/^needs 24 vCPUs but only 12 free \(limit 24, in use 12\)/);
    expect(c.detail).toContain("training cluster a100-train: 1 × 24 = 24");
    expect(c.remedy).toContain("Azure ML studio → Quota");
    expect(c.remedy).toContain(A100.family);
    expect(c.remedy).toContain("to at least 36");
    expect(failed(r)).toEqual([`quota:${A100.family}`]);
    expect(r.exitCode).toBe(1);
  });

  it("the 20% reservation decides: 2 × NC4as_T4_v3 need 10 vCPUs, so 9 free fails and 10 free passes", async () => {
    greenAzure();
    fake.route("GET", `${ml()}/usages`, { body: { value: usages({ t4: [0, 9] }) } });
    const short = await run();
    const c = byId(short, `quota:${T4.family}`);
    expect(c.status).toBe("FAIL");
    expect(c.detail).toContain("needs 10 vCPUs but only 9 free");
    expect(c.detail).toContain("deployment blue: ceil(2 × 4 × 1.2) = 10");

    fake.route("GET", `${ml()}/usages`, { body: { value: usages({ t4: [6, 16] }) } });
    const enough = await run();
    expect(byId(enough, `quota:${T4.family}`).status).toBe("PASS");
    expect(enough.exitCode).toBe(0);
  });

  it("a storage name taken by someone else fails with Azure's reason; one in this stack's group passes", async () => {
    greenAzure();
    const message = `The storage account named ${names.storageAccount} is already taken.`;
    fake.route("POST", checkNamePath("Microsoft.Storage"), { body: { nameAvailable: false, reason: "AlreadyExists", message } });
    const theirs = await run();
    const c = byId(theirs, "name:storage");
    expect(c.status).toBe("FAIL");
    expect(c.detail).toContain(`AlreadyExists: ${message}`);
    expect(c.remedy).toContain("namePrefix");
    expect(theirs.exitCode).toBe(1);
    const ownPath = `${rgPath(names)}/Microsoft.Storage/storageAccounts/${names.storageAccount}`;
    expect(fake.requestsTo("GET", ownPath)).toHaveLength(1);

    fake.route("GET", ownPath, { body: { id: ownPath, name: names.storageAccount } });
    const ours = await run();
    expect(byId(ours, "name:storage").status).toBe("PASS");
    expect(byId(ours, "name:storage").detail).toContain("already deployed by this stack");
    expect(ours.exitCode).toBe(0);
  });

  it("a soft-deleted key vault fails with `az keyvault purge`", async () => {
    greenAzure();
    fake.route("POST", checkNamePath("Microsoft.KeyVault"), {
      body: { nameAvailable: false, reason: "AlreadyExists", message: `The vault name '${names.keyVault}' is already in use.` },
    });
    const deletedPath = `/subscriptions/${SUB}/providers/Microsoft.KeyVault/locations/${LOCATION}/deletedVaults/${names.keyVault}`;
    fake.route("GET", deletedPath, {
      body: {
        name: names.keyVault,
        properties: {
          vaultId: `/subscriptions/${SUB}/resourceGroups/${names.resourceGroup}/providers/Microsoft.KeyVault/vaults/${names.keyVault}`,
          location: LOCATION,
          deletionDate: "2026-10-30T10:00:00Z",
          scheduledPurgeDate: "2026-11-06T10:00:00Z",
          purgeProtectionEnabled: false,
        },
      },
    });
    const r = await run();
    const c = byId(r, "name:keyvault");
    expect(c.status).toBe("FAIL");
    expect(c.detail).toContain("soft-deleted");
    expect(c.detail).toContain("2026-11-06T10:00:00Z");
    expect(c.remedy).toContain(`az keyvault purge --name ${names.keyVault}`);
    expect(c.remedy).toContain("az keyvault recover");
    expect(fake.requestsTo("GET", deletedPath)[0].query["api-version"]).toBe("2023-07-01");
    expect(r.exitCode).toBe(1);
  });

  it("a soft-deleted key vault with purge protection (the stack's default) points at nameGeneration, never at a purge", async () => {
    greenAzure();
    fake.route("POST", checkNamePath("Microsoft.KeyVault"), { body: { nameAvailable: false, reason: "AlreadyExists" } });
    fake.route("GET", `/subscriptions/${SUB}/providers/Microsoft.KeyVault/locations/${LOCATION}/deletedVaults/${names.keyVault}`, {
      body: { name: names.keyVault, properties: { deletionDate: "2026-11-01T10:00:00Z", scheduledPurgeDate: "2027-01-30T10:00:00Z", purgeProtectionEnabled: true } },
    });
    const c = byId(await run(), "name:keyvault");
    expect(c.status).toBe("FAIL");
    expect(c.detail).toContain("purge protection on: it cannot be purged, so its name stays taken until then");
    expect(c.remedy).toMatch(/^pulumi config set phi3-finetune:nameGeneration 1 /);
    expect(c.remedy).not.toContain("az keyvault purge");
  });

  it("throttling (429 with Retry-After: 0, then success) still completes all green", async () => {
    greenAzure();
    const throttled = { status: 429, headers: { "retry-after": "0" }, body: { error: { code: "TooManyRequests", message: "slow down" } } };
    fake.route("GET", `${ml()}/vmSizes`, [throttled, { body: { value: VM_SIZES } }]);
    fake.route("GET", providerPath("Microsoft.Storage"), [throttled, throttled, { body: { registrationState: "Registered" } }]);
    const r = await run();
    expect(failed(r)).toEqual([]);
    expect(r.exitCode).toBe(0);
    expect(fake.requestsTo("GET", `${ml()}/vmSizes`)).toHaveLength(2);
    expect(fake.requestsTo("GET", providerPath("Microsoft.Storage"))).toHaveLength(3);
    expect(clock.sleeps).toEqual([0, 0, 0]);
    expect(logs.filter((l) => l.includes("HTTP 429"))).toHaveLength(3);
  });

  it("a credential that yields no token fails with `az login`, exit 1, and runs nothing else", async () => {
    greenAzure();
    const bad = fakeCredential({ fail: true });
    const r = await run(config(), { credential: bad });
    expect(r.checks.map((c) => [c.id, c.status])).toEqual([["credential", "FAIL"]]);
    expect(r.checks[0].detail).toContain("CredentialUnavailable");
    expect(r.checks[0].remedy).toMatch(/^az login/);
    expect(r.exitCode).toBe(1);
    expect(fake.requests).toHaveLength(0);
  });

  it("a token ARM rejects (401) fails with `az login` and the token is never printed", async () => {
    greenAzure();
    // A hostile answer that echoes the bearer token back.
    fake.route("GET", `/subscriptions/${SUB}`, (req) => ({
      status: 401,
      body: { error: { code: "InvalidAuthenticationToken", message: `The access token is invalid: ${req.headers.authorization}` } },
    }));
    const r = await run();
    expect(r.checks.map((c) => [c.id, c.status])).toEqual([["credential", "FAIL"]]);
    expect(r.checks[0].detail).toContain("ARM rejected the token");
    expect(r.checks[0].remedy).toMatch(/^az login/);
    expect(r.exitCode).toBe(1);
    const everything = JSON.stringify(r) + formatReport(r.checks) + logs.join("\n");
    expect(everything).toContain("[redacted]");
    expect(everything).not.toContain(cred.token);
    expect(everything).not.toContain("secret-token-value");
  });
});

describe("main", () => {
  let out: string[];
  let err: string[];
  beforeEach(() => {
    out = [];
    err = [];
  });
  const opts = (extra: Record<string, unknown> = {}) => ({
    env: { ARM_ENDPOINT: fake.baseUrl },
    credential: cred,
    sleep: clock.sleep,
    backoffBaseMs: 1,
    out: (l: string) => out.push(l),
    err: (l: string) => err.push(l),
    ...extra,
  });

  it("bad usage exits 2 with the usage line", async () => {
    expect(await main(["--nope"], opts())).toBe(2);
    expect(err.join("\n")).toContain("Usage: npm run doctor");
    expect(fake.requests).toHaveLength(0);
  });

  it("an invalid stack config exits 1 (config) with parseConfig's message; a missing stack file 2 (usage)", async () => {
    expect(await main(["--stack", "bad", "--subscription", SUB], opts({ root: FIXTURES }))).toBe(1);
    expect(err.join("\n")).toContain("Invalid stack configuration");
    expect(err.join("\n")).toContain("phi3-finetune:trainingCluster.maxNodes");
    expect(await main(["--stack", "missing"], opts({ root: FIXTURES }))).toBe(2);
    expect(err.join("\n")).toContain("Pulumi.missing.yaml not found");
    expect(fake.requests).toHaveLength(0);
  });

  it("checks the real dev stack against ARM_ENDPOINT and prints the table (its retired NC6s_v3 deployment fails)", async () => {
    greenAzure();
    fake.route("GET", `${ml()}/vmSizes`, { body: { value: [...VM_SIZES, NC6] } });
    fake.route("GET", `${ml()}/usages`, {
      body: { value: [...usages(), usage("standardNCSv3Family", "Standard NCSv3 Family Cluster Dedicated vCPUs", 0, 24)] },
    });
    const code = await main(["--subscription", SUB], opts());
    const text = out.join("\n");
    expect(code).toBe(1);
    expect(text).toContain(`subscription "Phi-3 dev" (${SUB}), tenant ${TENANT}`);
    expect(text).toMatch(/FAIL\s+VM size: deployment blue\s+Standard_NC6s_v3 was retired/);
    expect(text).toMatch(/PASS\s+Quota standardNCADSA100v4Family/);
    // ceil(1 × 6 × 1.2) = 8 for the NCv3 deployment.
    expect(text).toContain("deployment blue: ceil(1 × 6 × 1.2) = 8");
    expect(text).not.toContain(cred.token);
    expect(fake.unmatched).toEqual([]);

    out = [];
    expect(await main(["--subscription", SUB, "--json"], opts())).toBe(1);
    const json = JSON.parse(out.join("\n"));
    expect(json.exitCode).toBe(1);
    expect(json.subscription.tenantId).toBe(TENANT);
    expect(json.checks.find((c: Check) => c.id === "vm-size:deployment:blue").status).toBe("FAIL");
  });
});
