/**
 * Secure by default (issue 14): least-privilege identities (point 2), secrets that stay secret
 * (point 3) and the `security` profiles (point 4), on the real program under Pulumi mocks.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { BUILT_IN_ROLES } from "../infra/identity";
import { ProgramRun, Registration, unwrapSecrets } from "../jobs/lib/mock-runtime";
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
