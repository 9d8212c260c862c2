/**
 * Secure by default (issue 14): least-privilege identities (point 2), secrets that stay secret
 * (point 3) and the `security` profiles (point 4), on the real program under Pulumi mocks.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../infra/config";
import { estimateCost, loadPriceTable } from "../infra/cost";
import { BUILT_IN_ROLES } from "../infra/identity";
import { isSecretValue, ProgramRun, Registration, unwrapSecrets } from "../jobs/lib/mock-runtime";
import { buildPlan, formatPlan } from "../jobs/plan";
import { byName, ofType, runStack } from "./helpers/stack";

const plain = (r: Registration) => unwrapSecrets(r.inputs);
const OWNER = "8e3af657-a8ff-4c66-a7a6-4fd8e5a3cebb";
const roleOf = (a: Record<string, any>) => String(a.roleDefinitionId).split("/").pop();
const nameOfRole = (guid: string | undefined) => Object.entries(BUILT_IN_ROLES).find(([, g]) => g === guid)?.[0] ?? guid;

/** Role names held by the principal of a user-assigned identity (logical name), as `role@scope-type`. */
function rolesOf(run: ProgramRun, identity: string): string[] {
  const principal = byName(run, identity).state.principalId;
  return ofType(run, "azure-native:authorization:RoleAssignment")
    .map(plain)
    .filter((a) => a.principalId === principal)
    .map((a) => `${nameOfRole(roleOf(a))}@${String(a.scope).split("/").slice(-2)[0]}`)
    .sort();
}

describe("least privilege, separate identities (dev stack)", () => {
  let run: ProgramRun;
  beforeAll(async () => {
    run = await runStack();
  });

  it("the endpoint identity holds only AcrPull on the registry and Storage Blob Data Reader on the storage account", () => {
    expect(rolesOf(run, "phi3-identity-uai")).toEqual(["AcrPull@registries", "Storage Blob Data Reader@storageAccounts"]);
    expect(plain(byName(run, "phi3-serving-endpoint")).identity.userAssignedIdentities).toEqual([byName(run, "phi3-identity-uai").id]);
  });

  it("the clusters run as their own identity with the roles jobs need, the data role on the datastore container only", () => {
    expect(rolesOf(run, "phi3-identity-compute-uai")).toEqual(["AcrPull@registries", "AzureML Data Scientist@workspaces", "Storage Blob Data Contributor@containers"]);
    for (const c of ofType(run, "azure-native:machinelearningservices:Compute")) {
      expect(plain(c).identity.userAssignedIdentities).toEqual([byName(run, "phi3-identity-compute-uai").id]);
    }
    expect(byName(run, "phi3-identity-compute-uai").id).not.toBe(byName(run, "phi3-identity-uai").id);
  });

  it("no principal holds Contributor or Owner", () => {
    const roles = ofType(run, "azure-native:authorization:RoleAssignment").map((r) => roleOf(plain(r)));
    expect(roles.length).toBe(5);
    expect(roles).not.toContain(BUILT_IN_ROLES.Contributor);
    expect(roles).not.toContain(OWNER);
  });

  it("every assignment says who and why (the plan prints it)", () => {
    for (const a of ofType(run, "azure-native:authorization:RoleAssignment").map(plain)) {
      expect(a.description).toMatch(/^phi3-finetune: (endpoint|compute) identity: [^:]+: .{10,}/);
    }
  });
});

describe("security.cookbookRoles: the Cookbook's Contributor on the resource group, on request", () => {
  it("adds Contributor on the resource group to both identities and nothing else", async () => {
    const run = await runStack({ overrides: { security: { cookbookRoles: true } } });
    expect(rolesOf(run, "phi3-identity-uai")).toEqual(["AcrPull@registries", "Contributor@resourceGroups", "Storage Blob Data Reader@storageAccounts"]);
    expect(rolesOf(run, "phi3-identity-compute-uai")).toEqual([
      "AcrPull@registries",
      "AzureML Data Scientist@workspaces",
      "Contributor@resourceGroups",
      "Storage Blob Data Contributor@containers",
    ]);
    // The endpoint identity's Contributor keeps the logical name existing stacks have in state.
    expect(plain(byName(run, "phi3-identity-contributor-rg")).scope).toBe(byName(run, "phi3-rg").id);
    expect(Object.keys(byName(run, "phi3-identity-roles-in-effect").inputs.triggers)).toContain("contributor-rg");
  });
});

/** Paths (a.b.c) of every secret wrapper in a recorded input. */
function secretPaths(v: unknown, path = ""): string[] {
  if (isSecretValue(v)) return [path];
  if (Array.isArray(v)) return v.flatMap((x, i) => secretPaths(x, `${path}[${i}]`));
  if (v && typeof v === "object") return Object.entries(v).flatMap(([k, x]) => secretPaths(x, path ? `${path}.${k}` : k));
  return [];
}

/**
 * True when the value at `path` sits inside a secret wrapper. Pulumi may mark a whole enclosing
 * input secret (azure-native applies defaults to `properties` as one output, so a secret leaf
 * makes all of `properties` secret in state); either way the value is never stored in plain text.
 */
function secretAt(inputs: Record<string, unknown>, path: string): boolean {
  return secretPaths(inputs).some((p) => path === p || path.startsWith(`${p}.`));
}

describe("secrets stay secret end to end", () => {
  const HF_TOKEN = "hf_SECRETtokenVALUE0123456789";
  const COST_CENTER = "cc-SECRET-4242";
  const overrides = {
    tags: { costCenter: COST_CENTER },
    serving: {
      deployments: [{ name: "blue", instanceType: "Standard_NC4as_T4_v3", environmentVariables: { HF_TOKEN } }],
      traffic: { blue: 100 },
    },
  };
  // What `pulumi config set --secret --path ...` produces: the top-level keys are marked secret.
  const secretKeys = ["phi3-finetune:serving", "phi3-finetune:tags"];

  describe.each([false, true])("preview=%s", (preview) => {
    let run: ProgramRun;
    beforeAll(async () => {
      run = await runStack({ preview, overrides, secretKeys });
    });

    it("the environment variable reaches the deployment only as a secret", () => {
      const d = ofType(run, "azure-native:machinelearningservices:OnlineDeployment")[0];
      expect(secretAt(d.inputs, "properties.environmentVariables.HF_TOKEN")).toBe(true);
      expect(plain(d).properties.environmentVariables.HF_TOKEN).toBe(HF_TOKEN);
    });

    it("the tag value reaches every tagged resource only as a secret, and no job body", () => {
      const tagged = run.registrations.filter((r) => r.custom && r.inputs.tags && "costCenter" in unwrapSecrets(r.inputs.tags));
      expect(tagged.length).toBeGreaterThanOrEqual(10);
      for (const r of tagged) expect(secretAt(r.inputs, "tags.costCenter"), r.name).toBe(true);
      for (const r of ofType(run, "command:local:Command")) expect(JSON.stringify(unwrapSecrets(r.inputs))).not.toContain(COST_CENTER);
    });

    it("neither value appears in any resource input outside a secret", () => {
      for (const r of run.registrations) {
        const visible = JSON.stringify(unwrapSecrets(r.inputs, "[secret]"));
        expect(visible, r.name).not.toContain(HF_TOKEN);
        expect(visible, r.name).not.toContain(COST_CENTER);
      }
    });

    it("neither value appears in the plan's text or JSON", () => {
      const { config } = parseConfig({ location: "eastus2", serving: JSON.stringify(overrides.serving), tags: JSON.stringify(overrides.tags) });
      const cost = estimateCost({ training: config.trainingCluster, deployments: config.serving.deployments }, loadPriceTable(), config.location);
      const plan = buildPlan(run, { project: "phi3-finetune", stack: "dev", subscriptionId: "sub", warnings: [], cost });
      const text = formatPlan(plan).join("\n");
      const json = JSON.stringify(plan);
      for (const out of [text, json]) {
        expect(out).not.toContain(HF_TOKEN);
        expect(out).not.toContain(COST_CENTER);
      }
      expect(text).toMatch(/OnlineDeployment/);
    });
  });

  it("without the secret marking the same values are plain (the test can fail)", async () => {
    const run = await runStack({ overrides });
    const d = ofType(run, "azure-native:machinelearningservices:OnlineDeployment")[0];
    expect(secretPaths(d.inputs)).toEqual([]);
  });

  it("a secret key that cannot stay secret is refused by name, its value never printed", async () => {
    const secretPrefix = "zz9secret";
    const err = await runStack({ overrides: { namePrefix: secretPrefix, data: { source: "ultrachat", split: "bad; id" } }, secretKeys: ["phi3-finetune:namePrefix", "phi3-finetune:data"] }).then(
      () => undefined,
      (e) => e as Error,
    );
    expect(err?.name).toBe("ConfigError");
    expect(err!.message).toMatch(/phi3-finetune:namePrefix: is stored as a secret, but .* cannot stay secret/);
    expect(err!.message).toMatch(/phi3-finetune:data\.split: .*\(got \[secret\]\)/);
    expect(err!.message).not.toContain(secretPrefix);
    expect(err!.message).not.toContain("bad; id");
  });
});
