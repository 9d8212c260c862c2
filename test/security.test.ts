/**
 * Secure by default (issue 14): least-privilege identities (point 2), secrets that stay secret
 * (point 3) and the `security` profiles (point 4), on the real program under Pulumi mocks.
 */
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../infra/config";
import { estimateCost, loadPriceTable } from "../infra/cost";
import { BUILT_IN_ROLES } from "../infra/identity";
import { isSecretValue, ProgramRun, Registration, unwrapSecrets } from "../lib/mock-runtime";
import { deployerPrincipalType, SECURITY_DEFAULTS } from "../infra/security";
import { buildPlan, formatPlan } from "../cli/lib/plan-build";
import { byName, ofType, ROOT, runStack } from "./helpers/stack";

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
      const plan = buildPlan(run, { project: "phi3-finetune", stack: "dev", subscriptionId: "sub", training: "script", warnings: [], cost });
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

/** Diagnostic-setting targets of a run, as `<type>/<name>` of each resourceUri's last segment pair. */
function diagnosedKinds(run: ProgramRun): Map<string, Record<string, any>> {
  const kinds = new Map<string, Record<string, any>>();
  for (const d of ofType(run, "azure-native:monitor:DiagnosticSetting").map(plain)) {
    const type = String(d.resourceUri).split("/").slice(-2)[0];
    kinds.set(type, d);
  }
  return kinds;
}

/** Every `publicNetworkAccess` in a run's inputs (top level or under `properties`), by logical name. */
function publicNetworkSettings(run: ProgramRun): [string, string][] {
  const out: [string, string][] = [];
  for (const r of run.registrations.filter((x) => x.custom)) {
    const i = plain(r);
    for (const v of [i.publicNetworkAccess, i.properties?.publicNetworkAccess]) if (v !== undefined) out.push([r.name, v]);
  }
  return out;
}

describe("security profile standard (dev stack)", () => {
  let run: ProgramRun;
  beforeAll(async () => {
    run = await runStack();
  });

  it("key vault: purge protection on, 90-day soft delete (existing vaults keep theirs: Azure refuses the change)", () => {
    const kv = byName(run, "phi3-keyvault");
    expect(plain(kv).properties).toMatchObject({ enablePurgeProtection: true, enableSoftDelete: true, softDeleteRetentionInDays: 90 });
    expect(kv.ignoreChanges).toEqual(["properties.softDeleteRetentionInDays"]);
  });

  it("storage: infrastructure encryption, blob and container soft delete; keys and public access as before", () => {
    const st = byName(run, "phi3-storage");
    expect(plain(st).encryption).toMatchObject({ requireInfrastructureEncryption: true, keySource: "Microsoft.Storage" });
    expect(st.ignoreChanges).toEqual(["encryption.requireInfrastructureEncryption"]);
    expect(plain(st)).toMatchObject({ allowSharedKeyAccess: true, publicNetworkAccess: "Enabled" });
    expect(plain(byName(run, "phi3-storage-blob-service"))).toMatchObject({
      accountName: plain(st).accountName,
      deleteRetentionPolicy: { enabled: true, days: 7 },
      containerDeleteRetentionPolicy: { enabled: true, days: 7 },
    });
  });

  it("diagnostic settings of workspace, endpoint, storage, vault and registry go to the stack's Log Analytics", () => {
    const kinds = diagnosedKinds(run);
    for (const kind of ["workspaces", "onlineEndpoints", "storageAccounts", "blobServices", "vaults", "registries"]) {
      const d = kinds.get(kind);
      expect(d, kind).toBeDefined();
      expect(d!.workspaceId).toBe(byName(run, "phi3-logs").id);
      expect(d!.metrics).toEqual([{ category: "AllMetrics", enabled: true }]);
      if (kind !== "storageAccounts") expect(d!.logs).toEqual([{ categoryGroup: "allLogs", enabled: true }]);
    }
    expect(diagnosedKinds(run).get("workspaces")!.resourceUri).toBe(byName(run, "phi3-workspace").id);
  });

  it("public endpoints as before, no managed network, no lock; the endpoint's inputs unchanged", () => {
    expect(publicNetworkSettings(run).every(([, v]) => v === "Enabled")).toBe(true);
    expect(plain(byName(run, "phi3-workspace")).managedNetwork).toBeUndefined();
    expect(plain(byName(run, "phi3-registry")).sku).toEqual({ name: "Basic" });
    expect(ofType(run, "azure-native:authorization:ManagementLockAtResourceGroupLevel")).toEqual([]);
    // The endpoint keeps azure-native's default (Enabled), as deployed stacks have it.
    expect(plain(byName(run, "phi3-serving-endpoint")).properties.publicNetworkAccess).toBe("Enabled");
    expect(ofType(run, "azure-native:storage:Blob").length).toBeGreaterThan(0);
  });
});

describe("security profile private (Pulumi.private.yaml)", () => {
  let run: ProgramRun;
  beforeAll(async () => {
    run = await runStack({ stack: "private" });
  });

  it("managed network isolation AllowOnlyApprovedOutbound with the jobs' outbound rules, on workspace and hub", () => {
    for (const name of ["phi3-workspace", "phi3-promptflow-hub"]) {
      const mn = plain(byName(run, name)).managedNetwork;
      expect(mn.isolationMode, name).toBe("AllowOnlyApprovedOutbound");
      const fqdns = Object.values<any>(mn.outboundRules).filter((r) => r.type === "FQDN").map((r) => r.destination);
      for (const f of ["huggingface.co", "cdn-lfs.huggingface.co", "*.hf.co", "pypi.org", "*.pythonhosted.org", "*.anaconda.org"]) expect(fqdns, name).toContain(f);
    }
    const pe = plain(byName(run, "phi3-promptflow-hub")).managedNetwork.outboundRules["ml-workspace"];
    expect(pe).toEqual({ type: "PrivateEndpoint", category: "UserDefined", destination: { serviceResourceId: byName(run, "phi3-workspace").id, subresourceTarget: "amlworkspace", sparkEnabled: false } });
  });

  it("public network access is disabled on every resource that has the property", () => {
    const settings = publicNetworkSettings(run);
    const names = settings.map(([n]) => n);
    for (const n of ["phi3-workspace", "phi3-promptflow-hub", "phi3-promptflow-project", "phi3-storage", "phi3-keyvault", "phi3-registry", "phi3-serving-endpoint"]) expect(names).toContain(n);
    expect(settings.filter(([, v]) => v !== "Disabled")).toEqual([]);
    expect(plain(byName(run, "phi3-registry")).sku).toEqual({ name: "Premium" });
  });

  it("no storage account keys: shared key off, identity-based system datastores, the identities' data roles", () => {
    expect(plain(byName(run, "phi3-storage"))).toMatchObject({ allowSharedKeyAccess: false, networkRuleSet: { defaultAction: "Deny", bypass: "AzureServices" } });
    for (const n of ["phi3-workspace", "phi3-promptflow-hub"]) expect(plain(byName(run, n)).systemDatastoresAuthMode).toBe("identity");
    const ws = byName(run, "phi3-workspace").state.identity.principalId;
    const roles = ofType(run, "azure-native:authorization:RoleAssignment").map(plain).filter((a) => a.principalId === ws).map((a) => nameOfRole(roleOf(a))).sort();
    expect(roles).toEqual(["Storage Blob Data Contributor", "Storage File Data Privileged Contributor"]);
  });

  it("uploads go through Entra ID (no storage.Blob, which signs with the key), after the deployer's role is in effect", () => {
    expect(ofType(run, "azure-native:storage:Blob")).toEqual([]);
    const uploads = ofType(run, "command:local:Command").filter((r) => plain(r).environment?.UPLOADS);
    const files = fs.readdirSync(path.join(ROOT, "finetuning_dir")).filter((f) => !f.startsWith("__"));
    expect(uploads.length).toBe(files.length); // the files of finetuning_dir
    const wait = byName(run, "phi3-identity-roles-in-effect");
    for (const u of uploads) {
      expect(plain(u).create).toBe("npx --no-install tsx jobs/upload-blobs.ts");
      expect(u.dependencies).toContain(wait.urn);
      expect(plain(u).environment.BLOB_CONTAINER_URL).toMatch(/^https:\/\/stphi3prv[0-9a-f]{6}\.blob\.core\.windows\.net\/azureml-blobstore-[0-9a-f-]{36}$/);
    }
    expect(byName(run, "phi3-training-code").dependencies).toEqual(expect.arrayContaining(uploads.map((u) => u.urn)));
    const deployer = ofType(run, "azure-native:authorization:RoleAssignment").map(plain).find((a) => a.description.startsWith("phi3-finetune: deployer:"));
    expect(deployer).toMatchObject({ scope: expect.stringMatching(/\/containers\/azureml-blobstore-/) });
    // The mock deployer's client id is not the Azure CLI's: a service principal (CI), unless security.deployerPrincipalType says otherwise.
    expect(deployer!.principalType).toBe("ServicePrincipal");
    expect(Object.keys(wait.inputs.triggers)).toContain("deployer-blob-contributor-datastore");
  });

  it("diagnostic settings on each of the five resource kinds, purge protection on, the lock on the resource group", () => {
    const kinds = diagnosedKinds(run);
    for (const kind of ["workspaces", "onlineEndpoints", "storageAccounts", "vaults", "registries"]) expect(kinds.has(kind), kind).toBe(true);
    expect(plain(byName(run, "phi3-keyvault")).properties).toMatchObject({ enablePurgeProtection: true, softDeleteRetentionInDays: 90, publicNetworkAccess: "Disabled" });
    expect(plain(byName(run, "phi3-rg-lock"))).toMatchObject({ level: "CanNotDelete", resourceGroupName: "rg-phi3prv-private" });
  });

  it("the endpoint identity still holds only AcrPull and Storage Blob Data Reader; no Contributor or Owner anywhere", () => {
    expect(rolesOf(run, "phi3-identity-uai")).toEqual(["AcrPull@registries", "Storage Blob Data Reader@storageAccounts"]);
    const roles = ofType(run, "azure-native:authorization:RoleAssignment").map((r) => roleOf(plain(r)));
    expect(roles).not.toContain(BUILT_IN_ROLES.Contributor);
    expect(roles).not.toContain(OWNER);
  });
});

describe("deployer principal type", () => {
  it("is User for the Azure CLI and Azure PowerShell, ServicePrincipal otherwise, and the setting wins", async () => {
    expect(deployerPrincipalType(SECURITY_DEFAULTS, "04b07795-8ddb-461a-bbee-02f9e1bf7b46")).toBe("User");
    expect(deployerPrincipalType(SECURITY_DEFAULTS, "1950a258-227b-4e31-a9cf-717495945fc2")).toBe("User");
    expect(deployerPrincipalType(SECURITY_DEFAULTS, "11111111-2222-3333-4444-555555555555")).toBe("ServicePrincipal");
    expect(deployerPrincipalType({ ...SECURITY_DEFAULTS, deployerPrincipalType: "User" }, "11111111-2222-3333-4444-555555555555")).toBe("User");
  });
});

describe("the private example's offline plan", () => {
  const TSX = path.join(ROOT, "node_modules/.bin/tsx");
  const plan = (...args: string[]) => spawnSync(TSX, ["cli/plan.ts", ...args], { cwd: ROOT, encoding: "utf8", timeout: 60_000 });

  it("plans, and its cost estimate includes the private endpoints, the firewalls and the Premium registry", () => {
    const text = plan("--stack", "private");
    expect(text.status, text.stderr).toBe(0);
    const json = plan("--stack", "private", "--json");
    const p = JSON.parse(json.stdout);
    expect(p.network).toMatchObject({ privateEndpoints: 9, firewalls: 2, firewallSku: "Standard", premiumRegistry: true });
    expect(p.network.perHour).toBeCloseTo(9 * 0.01 + 2 * 1.25 + (0.0694 - 0.00694), 6);
    expect(text.stdout).toMatch(/9 private endpoints \(managed networks\) @ USD 0\.01\/h = USD 0\.09\/h/);
    expect(text.stdout).toMatch(/2 × Azure Firewall Standard/);
    expect(p.warnings.join("\n")).toMatch(/security\.profile: private: `pulumi up` uploads/);
    // The dev stack's plan has no network section.
    expect(JSON.parse(plan("--stack", "dev", "--json").stdout).network).toBeUndefined();
  });
});
