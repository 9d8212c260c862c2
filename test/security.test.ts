/**
 * Secure by default (issue 14): least-privilege identities (point 2), secrets that stay secret
 * (point 3) and the `security` profiles (point 4), on the real program under Pulumi mocks.
 */
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../infra/config";
import { costInputOf, estimateCost, formatCostReport, loadPriceTable } from "../infra/cost";
import { BUILT_IN_ROLE_PERMISSIONS, BUILT_IN_ROLES, customRoleGuid, permits, TRAINING_JOB_ROLE } from "../infra/identity";
import { accessSummary, formatAccess, identityAbilities } from "../lib/access";
import { isSecretValue, MOCK_SUBSCRIPTION_ID, ProgramRun, Registration, unwrapSecrets } from "../lib/mock-runtime";
import { deployerAddressProblem, deployerPrincipalType, imageBuildCluster, SECURITY_DEFAULTS, securitySchema, securityWarnings, storageNetwork } from "../infra/security";
import { preflightInput, sizeConsumers } from "../lib/preflight";
import { buildPlan, formatPlan } from "../cli/lib/plan-build";
import { byName, ofType, ROOT, runStack } from "./helpers/stack";

const plain = (r: Registration) => unwrapSecrets(r.inputs);
const OWNER = "8e3af657-a8ff-4c66-a7a6-4fd8e5a3cebb";
const roleOf = (a: Record<string, any>) => String(a.roleDefinitionId).split("/").pop();
const nameOfRole = (guid: string | undefined) => Object.entries(BUILT_IN_ROLES).find(([, g]) => g === guid)?.[0] ?? (guid === customRoleGuid(`/subscriptions/${MOCK_SUBSCRIPTION_ID}/resourceGroups/rg-phi3ft-dev`) ? TRAINING_JOB_ROLE : guid);

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
    expect(rolesOf(run, "phi3-identity-compute-uai")).toEqual(["AcrPull@registries", "Storage Blob Data Contributor@containers", `${TRAINING_JOB_ROLE}@workspaces`]);
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
      "Contributor@resourceGroups",
      "Storage Blob Data Contributor@containers",
      `${TRAINING_JOB_ROLE}@workspaces`,
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
      const { config } = parseConfig({ location: "eastus2", serving: JSON.stringify(overrides.serving), tags: JSON.stringify(overrides.tags) }, { secretKeys: ["serving", "tags"] });
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
    // A name that does not look like a credential (HF_TOKEN unmarked is refused: next test).
    const plainServing = { ...overrides.serving, deployments: [{ ...overrides.serving.deployments[0], environmentVariables: { MODEL_NOTE: HF_TOKEN } }] };
    const run = await runStack({ overrides: { ...overrides, serving: plainServing } });
    const d = ofType(run, "azure-native:machinelearningservices:OnlineDeployment")[0];
    expect(secretPaths(d.inputs)).toEqual([]);
  });

  it("a credential-looking environment variable that is not secret is refused, naming the fix and not the value", async () => {
    const err = await runStack({ overrides }).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(err?.message).toContain("phi3-finetune:serving.deployments[0].environmentVariables.HF_TOKEN: looks like a credential");
    expect(err?.message).toContain("pulumi config set --secret --path 'phi3-finetune:serving.deployments[0].environmentVariables.HF_TOKEN'");
    expect(err?.message).not.toContain(HF_TOKEN);
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

  it("managed network AllowOnlyApprovedOutbound on workspace and hub, provisioned at creation; FQDN rules (and so a firewall) on the workspace only", () => {
    const fqdnsOf = (name: string) => Object.values<any>(plain(byName(run, name)).managedNetwork.outboundRules).filter((r) => r.type === "FQDN").map((r) => r.destination);
    for (const name of ["phi3-workspace", "phi3-promptflow-hub"]) {
      const ws = plain(byName(run, name));
      expect(ws.managedNetwork.isolationMode, name).toBe("AllowOnlyApprovedOutbound");
      expect(ws.provisionNetworkNow, name).toBe(true);
    }
    for (const f of ["huggingface.co", "cdn-lfs.huggingface.co", "*.hf.co", "pypi.org", "*.pythonhosted.org", "*.anaconda.org"]) expect(fqdnsOf("phi3-workspace")).toContain(f);
    expect(plain(byName(run, "phi3-workspace")).managedNetwork.firewallSku).toBe("Standard");
    // The hub: one user rule, the private endpoint to the ML workspace; no FQDN rule, so Azure creates no firewall.
    const hub = plain(byName(run, "phi3-promptflow-hub")).managedNetwork;
    expect(fqdnsOf("phi3-promptflow-hub")).toEqual([]);
    expect(hub.firewallSku).toBeUndefined();
    expect(hub.outboundRules).toEqual({
      "ml-workspace": { type: "PrivateEndpoint", category: "UserDefined", destination: { serviceResourceId: byName(run, "phi3-workspace").id, subresourceTarget: "amlworkspace", sparkEnabled: false } },
    });
    // The project uses its hub's network.
    expect(plain(byName(run, "phi3-promptflow-project")).provisionNetworkNow).toBeUndefined();
  });

  it("images are built on the prep cluster, named on the workspace before the cluster exists", () => {
    const ws = plain(byName(run, "phi3-workspace"));
    const prep = plain(byName(run, "phi3-compute-prep"));
    expect(ws.imageBuildCompute).toBe("prep-cpu");
    expect(prep.computeName).toBe(ws.imageBuildCompute);
    expect(prep.workspaceName).toBe(ws.workspaceName);
    expect(ofType(run, "azure-native:machinelearningservices:Compute").map((c) => c.name).sort()).toEqual(["phi3-compute-prep", "phi3-compute-training"]);
  });

  it("public network access is disabled on every resource that has it, except storage, open to security.deployerNetwork only", () => {
    const settings = publicNetworkSettings(run);
    const names = settings.map(([n]) => n);
    for (const n of ["phi3-workspace", "phi3-promptflow-hub", "phi3-promptflow-project", "phi3-storage", "phi3-keyvault", "phi3-registry", "phi3-serving-endpoint"]) expect(names).toContain(n);
    expect(settings.filter(([, v]) => v !== "Disabled")).toEqual([["phi3-storage", "Enabled"]]);
    expect(plain(byName(run, "phi3-storage")).networkRuleSet).toEqual({
      defaultAction: "Deny",
      bypass: "AzureServices",
      ipRules: [{ iPAddressOrRange: "203.0.113.0/24", action: "Allow" }],
    });
    expect(plain(byName(run, "phi3-registry")).sku).toEqual({ name: "Premium" });
  });

  it("no storage account keys: shared key off, identity-based system datastores; no data role that Azure ML assigns itself", () => {
    expect(plain(byName(run, "phi3-storage"))).toMatchObject({ allowSharedKeyAccess: false });
    for (const n of ["phi3-workspace", "phi3-promptflow-hub"]) expect(plain(byName(run, n)).systemDatastoresAuthMode).toBe("identity");
    const rolesOfPrincipal = (principal: string) =>
      ofType(run, "azure-native:authorization:RoleAssignment").map(plain).filter((a) => a.principalId === principal).map((a) => nameOfRole(roleOf(a))).sort();
    // Storage Blob Data Contributor of the workspace and hub identities is Azure ML's own (409 RoleAssignmentExists if declared again).
    expect(rolesOfPrincipal(byName(run, "phi3-workspace").state.identity.principalId)).toEqual(["Storage File Data Privileged Contributor"]);
    expect(rolesOfPrincipal(byName(run, "phi3-promptflow-hub").state.identity.principalId)).toEqual(["Azure AI Enterprise Network Connection Approver", "Storage File Data Privileged Contributor"]);
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

  it("plans with imageBuildCompute, provisionNetworkNow, an inbound path and no self-made role; its cost has the private endpoints, the firewall and the Premium registry", () => {
    const text = plan("--stack", "private");
    expect(text.status, text.stderr).toBe(0);
    const json = plan("--stack", "private", "--json");
    const p = JSON.parse(json.stdout);
    // 5 per managed network (storage blob and file, vault, registry, the workspace itself) × 2, plus the hub's to the ML workspace.
    expect(p.network).toMatchObject({ privateEndpoints: 11, firewalls: 1, firewallSku: "Standard", premiumRegistry: true });
    expect(p.network.perHour).toBeCloseTo(11 * 0.01 + 1 * 1.25 + (0.0694 - 0.00694), 6);
    expect(text.stdout).toMatch(/11 private endpoints \(managed networks\) @ USD 0\.01\/h = USD 0\.11\/h/);
    expect(text.stdout).toMatch(/1 × Azure Firewall Standard \(FQDN outbound rules\) = USD 1\.25\/h/);
    const inputsOf = (name: string) => p.resources.find((r: { name: string }) => r.name === name).inputs;
    expect(inputsOf("phi3-workspace")).toMatchObject({ imageBuildCompute: "prep-cpu", provisionNetworkNow: true });
    expect(inputsOf("phi3-promptflow-hub")).toMatchObject({ provisionNetworkNow: true });
    expect(inputsOf("phi3-storage").networkRuleSet).toMatchObject({ defaultAction: "Deny", ipRules: [{ iPAddressOrRange: "203.0.113.0/24", action: "Allow" }] });
    const storageRoles = p.access.filter((a: { role: string; grantee: string }) => a.role === "Storage Blob Data Contributor").map((a: { grantee: string }) => a.grantee);
    expect(storageRoles).not.toContain("workspace identity");
    expect(storageRoles).not.toContain("hub identity");
    expect(p.resources.some((r: { name: string }) => r.name === "phi3-training-storage-reach")).toBe(true);
    expect(p.warnings.join("\n")).toMatch(/security\.profile: private: `pulumi up` uploads .* accepts only 203\.0\.113\.0\/24 \(security\.deployerNetwork\)/);
    // The dev stack's plan has no network section.
    expect(JSON.parse(plan("--stack", "dev", "--json").stdout).network).toBeUndefined();
  });
});

describe("security.deployerNetwork: the inbound path of the uploads (issue 19)", () => {
  const accepted = ["203.0.113.7", "203.0.113.0/24", "52.0.0.0/8", "198.51.100.0/30"];
  const refused: [string, RegExp][] = [
    ["10.1.2.3", /private, loopback or link-local/],
    ["172.20.0.0/16", /private/],
    ["192.168.1.10", /private/],
    ["127.0.0.1", /loopback/],
    ["203.0.113.7/32", /\/8 to \/30/],
    ["203.0.113.0/31", /\/8 to \/30/],
    ["52.0.0.0/7", /\/8 to \/30/],
    ["256.1.1.1", /0-255/],
    ["2001:db8::1", /public IPv4 address/],
    ["example.com", /public IPv4 address/],
  ];
  it.each(accepted)("accepts %s", (ip) => expect(deployerAddressProblem(ip)).toBeUndefined());
  it.each(refused)("refuses %s", (ip, why) => expect(deployerAddressProblem(ip)).toMatch(why));

  it("config validation names the key and the entry", () => {
    expect(() => parseConfig({ security: JSON.stringify({ profile: "private", deployerNetwork: ["203.0.113.0/24", "10.0.0.1"] }) })).toThrow(/security\.deployerNetwork\[1\]: .*private/);
  });

  it("storage: Disabled without the list (no IP rules, which Azure would ignore), Enabled only for the listed ranges with it", () => {
    const priv = securitySchema.parse({ profile: "private" });
    expect(storageNetwork(priv)).toEqual({ publicNetworkAccess: "Disabled", networkRuleSet: { defaultAction: "Deny", bypass: "AzureServices" } });
    expect(storageNetwork({ ...priv, deployerNetwork: ["203.0.113.7"] })).toEqual({
      publicNetworkAccess: "Enabled",
      networkRuleSet: { defaultAction: "Deny", bypass: "AzureServices", ipRules: [{ iPAddressOrRange: "203.0.113.7", action: "Allow" }] },
    });
    expect(storageNetwork(SECURITY_DEFAULTS)).toEqual({ publicNetworkAccess: "Enabled" });
    // The list is ignored outside private.
    expect(storageNetwork({ ...SECURITY_DEFAULTS, deployerNetwork: ["203.0.113.7"] })).toEqual({ publicNetworkAccess: "Enabled" });
  });

  it("without the list the private stack keeps storage private-endpoint only and warns where to run up", async () => {
    const run = await runStack({ stack: "private", overrides: { security: { profile: "private", lock: true, deployerNetwork: [] } } });
    expect(plain(byName(run, "phi3-storage"))).toMatchObject({ publicNetworkAccess: "Disabled", networkRuleSet: { defaultAction: "Deny" } });
    expect(plain(byName(run, "phi3-storage")).networkRuleSet.ipRules).toBeUndefined();
    expect(securityWarnings(securitySchema.parse({ profile: "private" })).join("\n")).toMatch(/no public endpoint \(no security\.deployerNetwork\)/);
  });
});

describe("image builds of the private profile (issue 19)", () => {
  it("without a prep cluster (your own JSONL) the stack adds a small CPU cluster and names it on the workspace", async () => {
    const run = await runStack({
      stack: "private",
      overrides: { data: { source: "jsonl", trainFile: "test/fixtures/data/train.jsonl", testFile: "test/fixtures/data/test.jsonl" } },
    });
    const ws = plain(byName(run, "phi3-workspace"));
    const builder = plain(byName(run, "phi3-compute-image-build"));
    expect(ws.imageBuildCompute).toBe("image-build-cpu");
    expect(builder).toMatchObject({ computeName: "image-build-cpu", properties: { properties: { vmSize: "Standard_DS3_v2", scaleSettings: { minNodeCount: 0, maxNodeCount: 1 } } } });
    expect(ofType(run, "azure-native:machinelearningservices:Compute").map((c) => c.name).sort()).toEqual(["phi3-compute-image-build", "phi3-compute-training"]);
    // The fine-tune job (whose image Azure ML builds there) waits for the cluster.
    expect(byName(run, "phi3-training-finetune-job").dependencies).toContain(byName(run, "phi3-compute-image-build").urn);
  });

  it("a training cluster named like the image-build cluster is refused naming the key", () => {
    const raw = { location: "eastus2", security: JSON.stringify({ profile: "private" }), data: JSON.stringify({ source: "jsonl", trainFile: "test/fixtures/data/train.jsonl", testFile: "test/fixtures/data/test.jsonl" }) };
    expect(() => parseConfig({ ...raw, trainingCluster: JSON.stringify({ name: "image-build-cpu" }) })).toThrow(/phi3-finetune:trainingCluster\.name: is the name of the private profile's image-build cluster/);
  });

  it("the cost estimate lists the image-build cluster when the profile adds it", () => {
    const raw = { location: "eastus2", security: JSON.stringify({ profile: "private" }), data: JSON.stringify({ source: "jsonl", trainFile: "test/fixtures/data/train.jsonl", testFile: "test/fixtures/data/test.jsonl" }) };
    const cost = estimateCost(costInputOf(parseConfig(raw).config), loadPriceTable(), "eastus2");
    expect(cost.imageBuild).toMatchObject({ vmSize: "Standard_DS3_v2", unitPerHour: 0.229, idlePer30Days: 0 });
    expect(formatCostReport(cost).join("\n")).toMatch(/Image-build cluster: Standard_DS3_v2, 0–1 nodes @ USD 0\.23\/node-hour/);
    expect(estimateCost(costInputOf(parseConfig({ location: "eastus2" }).config), loadPriceTable(), "eastus2").imageBuild).toBeUndefined();
  });

  it("the preflight counts the image-build cluster's quota when the profile adds it, and only then", () => {
    const raw = { location: "eastus2", security: JSON.stringify({ profile: "private" }), data: JSON.stringify({ source: "jsonl", trainFile: "test/fixtures/data/train.jsonl", testFile: "test/fixtures/data/test.jsonl" }) };
    const withBuilder = sizeConsumers(preflightInput(parseConfig(raw).config));
    expect(withBuilder.find((c) => c.id === "imageBuildCluster")).toMatchObject({ vmSize: "Standard_DS3_v2", count: 1, key: "phi3-finetune:security.profile" });
    expect(preflightInput(parseConfig({ ...raw, security: undefined } as any).config).imageBuildCluster).toBeUndefined();
    expect(preflightInput(parseConfig({ location: "eastus2", security: JSON.stringify({ profile: "private" }) }).config).imageBuildCluster).toBeUndefined();
  });

  it("the standard profile names no image-build compute and adds no cluster", () => {
    const { config } = parseConfig({ location: "eastus2" });
    expect(imageBuildCluster(config)).toBeUndefined();
    expect(imageBuildCluster({ ...config, security: securitySchema.parse({ profile: "private" }) })).toEqual({ name: "prep-cpu" });
  });
});

describe("least privilege, finished: no workload identity can read keys or secrets or change deployments (issue 18)", () => {
  const FORBIDDEN = [
    "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/listKeys/action",
    "Microsoft.MachineLearningServices/workspaces/datastores/listsecrets/action",
    "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/deployments/write",
  ];

  describe.each(["dev", "private", "managed"])("stack %s", (stack) => {
    let run: ProgramRun;
    beforeAll(async () => {
      run = await runStack({ stack });
    });

    it("every role definition the stack declares lists only non-sensitive actions, none of them a wildcard", () => {
      const defs = ofType(run, "azure-native:authorization:RoleDefinition").map(plain);
      expect(defs).toHaveLength(1);
      for (const d of defs) {
        const actions: string[] = d.permissions.flatMap((p: { actions: string[] }) => p.actions);
        expect(actions.length).toBeGreaterThan(0);
        expect(actions.filter((a) => /listkeys|listsecrets|deployments\/write|\*/i.test(a))).toEqual([]);
        for (const forbidden of FORBIDDEN) expect(permits({ actions }, forbidden), forbidden).toBe(false);
        expect(d.permissions.flatMap((p: { dataActions?: string[] }) => p.dataActions ?? [])).toEqual([]);
      }
    });

    it("no workload identity holds a role (built-in or custom) that allows listKeys, listsecrets or deployment write", () => {
      const lines = accessSummary(run.registrations).filter((l) => l.grantee !== "deployer");
      expect(lines.some((l) => l.customActions)).toBe(true);
      expect(lines.map((l) => l.role)).not.toContain("AzureML Data Scientist");
      for (const a of identityAbilities(lines)) {
        expect(a.can, a.grantee).toEqual([]);
        expect(a.cannot).toEqual(expect.arrayContaining(["read the endpoint's keys", "read datastore secrets (the storage account key)", "create or change deployments"]));
      }
    });
  });

  it("the matcher can fail: AzureML Data Scientist's permissions allow all three, and cookbookRoles' Contributor shows as 'can' in the plan", async () => {
    for (const forbidden of FORBIDDEN) expect(permits(BUILT_IN_ROLE_PERMISSIONS["AzureML Data Scientist"], forbidden)).toBe(true);
    const run = await runStack({ overrides: { security: { cookbookRoles: true } } });
    const text = formatAccess(accessSummary(run.registrations)).join("\n");
    expect(text).toMatch(/^ {4}compute identity: can read the endpoint's keys, create or change deployments/m);
  });

  it("the plan's access section says what each identity can and cannot do", async () => {
    const run = await runStack();
    const text = formatAccess(accessSummary(run.registrations)).join("\n");
    expect(text).toMatch(/custom role declared by the stack, only: read, experiments\/read, .*datastores\/read$/m);
    expect(text).toMatch(/^ {4}endpoint identity: can none of the sensitive operations; cannot read the endpoint's keys/m);
    expect(text).toMatch(/^ {4}compute identity: can none of the sensitive operations; cannot read the endpoint's keys, create or change deployments, .*read datastore secrets \(the storage account key\)/m);
  });
});
