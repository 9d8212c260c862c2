/**
 * The preflight inside `pulumi up` (issue 9): it is the first step of the deployment, every
 * costly resource waits for it (so a failure stops them all), and the program it runs
 * (jobs/preflight.ts, with the exact environment the stack declares) passes every example stack
 * on a subscription with quota, answered by a fake ARM server from the recorded SKU lists,
 * except dev's retired Standard_NC6s_v3, which fails naming the replacements.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { azureNames } from "../infra/naming";
import { RECORDED_VM_SIZES, RETIRED_SIZES, REPLACEMENT_SIZES } from "../infra/vm-sizes";
import type { ProgramRun, Registration } from "../lib/mock-runtime";
import { runPreflightFromEnv } from "../jobs/preflight";
import { fakeCredential, routeHealthySubscription, startFakeArm, type FakeArm } from "./helpers/fake-arm";
import { byName, commandEnv, runStack } from "./helpers/stack";

const SUB = "11111111-2222-3333-4444-555555555555";
const TENANT = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";
const STACKS = ["dev", "bluegreen", "cpu", "local-data"];
const ML = "azure-native:machinelearningservices";

/** Azure ML's vmSizes answer built from the recorded list: retired sizes are no longer offered. */
const OFFERED = RECORDED_VM_SIZES.filter((s) => !RETIRED_SIZES[s.name]).map((s) => ({
  ...s,
  lowPriorityCapable: true,
  supportedComputeTypes: ["ComputeInstance", "AmlCompute"],
}));
/** A subscription with quota: 200 vCPUs in every recorded family. */
const USAGES = [...new Set(RECORDED_VM_SIZES.map((s) => s.family))].map((family) => ({
  id: `/subscriptions/${SUB}/providers/Microsoft.MachineLearningServices/locations/eastus2/usages/${family}`,
  type: "Microsoft.MachineLearningServices/vmFamily/usages",
  currentValue: 0,
  limit: 200,
  name: { value: family, localizedValue: `${family} Cluster Dedicated vCPUs` },
}));

/** Every resource `r` waits for, directly or through others. */
function waitsFor(run: ProgramRun, r: Registration): Set<string> {
  const byUrn = new Map(run.registrations.map((x) => [x.urn, x]));
  const seen = new Set<string>();
  const stack = [...r.dependencies];
  while (stack.length) {
    const urn = stack.pop()!;
    if (seen.has(urn)) continue;
    seen.add(urn);
    const dep = byUrn.get(urn);
    if (dep) stack.push(...dep.dependencies);
    // A dependency on a component waits for all its children.
    for (const child of run.registrations.filter((x) => x.parent === urn)) stack.push(child.urn);
  }
  return seen;
}

describe.each(STACKS)("stack %s: the preflight runs first and everything costly waits for it", (stack) => {
  let run: ProgramRun;
  beforeEach(async () => {
    run ??= await runStack({ stack, subscriptionId: SUB });
  });

  it("the preflight waits for nothing", () => {
    expect(byName(run, "phi3-preflight-check").dependencies).toEqual([]);
  });

  it("every other resource, and so every job, the endpoint and every deployment, waits for it", () => {
    const preflight = byName(run, "phi3-preflight-check").urn;
    const custom = run.registrations.filter((r) => r.custom && r.urn !== preflight);
    for (const r of custom) expect(waitsFor(run, r).has(preflight), `${r.name} must wait for the preflight`).toBe(true);
    const costly = custom.filter((r) => [`${ML}:Compute`, `${ML}:OnlineEndpoint`, `${ML}:OnlineDeployment`].includes(r.type) || !!r.inputs.environment?.AZUREML_JOB_NAME);
    expect(costly.length).toBeGreaterThanOrEqual(stack === "bluegreen" ? 6 : 4);
  });

  it("it checks what the stack declares: location, sizes, counts, pinned models", () => {
    const input = JSON.parse(commandEnv(byName(run, "phi3-preflight-check")).PREFLIGHT_INPUT);
    expect(input.location).toBe("eastus2");
    expect(input.serving.deployments.length).toBeGreaterThan(0);
    expect(commandEnv(byName(run, "phi3-preflight-check")).AZURE_SUBSCRIPTION_ID).toBe(SUB);
  });
});

describe("the preflight program against a fake ARM server with the recorded SKU lists", () => {
  let fake: FakeArm;
  let out: string[];
  let err: string[];
  beforeEach(async () => {
    fake = await startFakeArm();
    routeHealthySubscription(fake, { subscriptionId: SUB, tenantId: TENANT, location: "eastus2", vmSizes: OFFERED, usages: USAGES });
    out = [];
    err = [];
  });
  afterEach(async () => {
    await fake.close();
  });

  /** Run jobs/preflight.ts with the environment the stack's preflight step declares. */
  async function preflight(stack: string, overrides: Record<string, unknown> = {}): Promise<number> {
    const run = await runStack({ stack, subscriptionId: SUB, overrides });
    const env = { ...commandEnv(byName(run, "phi3-preflight-check")), ARM_ENDPOINT: fake.baseUrl };
    return runPreflightFromEnv(env, { log: (l) => out.push(l), error: (l) => err.push(l), credential: fakeCredential(), sleep: async () => undefined, backoffBaseMs: 1, maxRetries: 1 });
  }

  it.each(["bluegreen", "cpu", "local-data"])("%s passes", async (stack) => {
    expect(await preflight(stack), err.join("\n")).toBe(0);
    expect(out.join("\n")).toContain(`Preflight passed for stack ${stack} in eastus2.`);
    expect(fake.unmatched).toEqual([]);
  });

  it("dev fails in its first step on the retired Standard_NC6s_v3, naming the replacements and that nothing was created", async () => {
    expect(await preflight("dev")).toBe(1);
    const text = err.join("\n");
    expect(text).toContain("Preflight failed: nothing costly was created (no job, endpoint or deployment)");
    expect(text).toMatch(/FAIL\s+VM size: deployment blue\s+Standard_NC6s_v3 was retired by Azure on 2025-09-30/);
    expect(text).toContain("phi3-finetune:serving.deployments[0].instanceType");
    for (const s of REPLACEMENT_SIZES) expect(text).toContain(s);
    // Only the retired size fails: the rest of the seed's setup is fine on this subscription.
    expect(text.match(/^FAIL/gm)).toHaveLength(1);
  });

  it("dev with the replacement the README names passes", async () => {
    const serving = { deployments: [{ name: "blue", instanceType: "Standard_NC4as_T4_v3" }] };
    expect(await preflight("dev", { serving }), err.join("\n")).toBe(0);
  });

  it("a pinned model version the workspace does not hold fails; one it holds passes", async () => {
    const serving = {
      deployments: [
        { name: "blue", model: { name: "phi3-finetuned", version: "7", existing: true }, instanceType: "Standard_NC4as_T4_v3" },
        { name: "green", model: "trained", instanceType: "Standard_NC4as_T4_v3" },
      ],
      traffic: { blue: 90, green: 10 },
    };
    expect(await preflight("bluegreen", { serving })).toBe(1);
    expect(err.join("\n")).toMatch(/FAIL\s+Model: deployment blue serves phi3-finetuned:7\s+phi3-finetuned version 7 is not in workspace mlw-phi3bg-/);
    expect(err.join("\n")).toContain('set phi3-finetune:serving.deployments[0].model to "trained"');

    const names = azureNames({ prefix: "phi3bg", stack: "bluegreen", subscriptionId: SUB });
    const model = `/subscriptions/${SUB}/resourceGroups/${names.resourceGroup}/providers/Microsoft.MachineLearningServices/workspaces/${names.workspace}/models/phi3-finetuned/versions/7`;
    fake.route("GET", model, { body: { id: model, name: "7" } });
    err = [];
    expect(await preflight("bluegreen", { serving }), err.join("\n")).toBe(0);
    expect(fake.requestsTo("GET", model).at(-1)?.query["api-version"]).toBe("2025-12-01");
  });

  it("after destroy, the soft-deleted key vault and workspace fail with the nameGeneration way out, which then passes", async () => {
    const names = azureNames({ prefix: "phi3cpu", stack: "cpu", subscriptionId: SUB });
    fake.route("POST", `/subscriptions/${SUB}/providers/Microsoft.KeyVault/checkNameAvailability`, (req) =>
      (req.body as { name: string }).name === names.keyVault ? { body: { nameAvailable: false, reason: "AlreadyExists" } } : { body: { nameAvailable: true } },
    );
    fake.route("GET", `/subscriptions/${SUB}/providers/Microsoft.KeyVault/locations/eastus2/deletedVaults/${names.keyVault}`, {
      body: { name: names.keyVault, properties: { vaultId: `/subscriptions/${SUB}/resourceGroups/${names.resourceGroup}/providers/Microsoft.KeyVault/vaults/${names.keyVault}`, scheduledPurgeDate: "2026-12-01T00:00:00Z" } },
    });
    expect(await preflight("cpu")).toBe(1);
    const text = err.join("\n");
    expect(text).toMatch(/FAIL\s+Name: key vault kv-phi3cpu-[0-9a-f]{6}\s+key vault .* is soft-deleted/);
    expect(text).toMatch(/FAIL\s+Name: workspace mlw-phi3cpu-[0-9a-f]{6}\s+not live, but this stack's key vault/);
    expect(text).toContain("pulumi config set phi3-finetune:nameGeneration 1");

    // The next generation's names are fresh: the same subscription passes.
    err = [];
    expect(await preflight("cpu", { nameGeneration: "1" }), err.join("\n")).toBe(0);
  });

  it("an already deployed stack short of quota only warns (its own instances count as in use)", async () => {
    const names = azureNames({ prefix: "phi3cpu", stack: "cpu", subscriptionId: SUB });
    const ws = `/subscriptions/${SUB}/resourceGroups/${names.resourceGroup}/providers/Microsoft.MachineLearningServices/workspaces/${names.workspace}`;
    fake.route("GET", ws, { body: { id: ws, name: names.workspace } });
    const tight = USAGES.map((u) => ({ ...u, currentValue: u.limit - 1 }));
    fake.route("GET", `/subscriptions/${SUB}/providers/Microsoft.MachineLearningServices/locations/eastus2/usages`, { body: { value: tight } });
    expect(await preflight("cpu"), err.join("\n")).toBe(0);
    expect(out.join("\n")).toMatch(/WARN\s+Quota standardESv3Family.*this stack is already deployed/);
  });

  it("a bad environment exits 2 without calling Azure", async () => {
    expect(await runPreflightFromEnv({ AZURE_SUBSCRIPTION_ID: SUB, PULUMI_STACK: "dev", PREFLIGHT_INPUT: "{" }, { log: (l) => out.push(l) })).toBe(2);
    expect(out.join("\n")).toContain("PREFLIGHT_INPUT is not valid JSON");
    expect(fake.requests).toEqual([]);
  });
});
