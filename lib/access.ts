/**
 * Who gets what on which scope: the role assignments of a mock run (the offline plan), read
 * from their inputs, and what each workload identity can and cannot do with them. The grantee
 * and the reason come from the assignment's description, which `grantRoles` (infra/identity.ts)
 * writes as `phi3-finetune: <grantee>: <role>: <why>`; a custom role's actions come from the
 * role definition the run declares, a built-in role's from infra/identity.ts.
 */
import { BUILT_IN_ROLE_PERMISSIONS, BUILT_IN_ROLES, permits, SENSITIVE_OPERATIONS, type BuiltInRole, type RolePermissions } from "../infra/identity";
import { Registration, unwrapSecrets } from "./mock-runtime";

/** One role assignment as the plan prints it. */
export interface AccessLine {
  grantee: string;
  role: string;
  /** `<type>/<name>` of the scope, e.g. `registries/crphi3ft1a2b3c`. */
  scope: string;
  why: string;
  /** The actions of a custom role the stack declares (absent for built-in roles). */
  customActions?: string[];
}

/** What one identity can and cannot do of {@link SENSITIVE_OPERATIONS}, by the roles the stack grants it. */
export interface IdentityAbilities {
  grantee: string;
  can: string[];
  cannot: string[];
}

const ROLE_NAMES: Record<string, string> = Object.fromEntries(Object.entries(BUILT_IN_ROLES).map(([name, guid]) => [guid, name]));

/** The last `<type>/<name>` pair of an ARM id (`resourceGroups/rg-x`, `containers/azureml-blobstore-...`). */
export function scopeLabel(scope: string): string {
  return String(scope).split("/").slice(-2).join("/");
}

/** Custom role definitions of a run: GUID → actions (`authorization:RoleDefinition` inputs). */
function customRoles(registrations: Registration[]): Map<string, string[]> {
  const roles = new Map<string, string[]>();
  for (const r of registrations.filter((x) => x.type === "azure-native:authorization:RoleDefinition")) {
    const i = unwrapSecrets(r.inputs, "[secret]");
    roles.set(String(i.roleDefinitionId).toLowerCase(), (i.permissions ?? []).flatMap((p: { actions?: string[] }) => p.actions ?? []));
  }
  return roles;
}

/** The access line of one role-assignment registration (`authorization:RoleAssignment`); `custom` maps custom role GUIDs to their actions. */
export function accessLine(r: Registration, custom: Map<string, string[]> = new Map()): AccessLine {
  const i = unwrapSecrets(r.inputs, "[secret]");
  const guid = String(i.roleDefinitionId).split("/").pop() ?? "";
  const m = /^phi3-finetune: ([^:]+): ([^:]+): (.*)$/.exec(String(i.description ?? ""));
  const role = ROLE_NAMES[guid] ?? m?.[2] ?? String(i.roleDefinitionId);
  const actions = custom.get(guid.toLowerCase());
  return { grantee: m?.[1] ?? String(i.principalId), role, scope: scopeLabel(i.scope), why: m?.[3] ?? "", ...(actions ? { customActions: actions } : {}) };
}

/** Every role assignment of a run, grouped by grantee in order of first appearance. */
export function accessSummary(registrations: Registration[]): AccessLine[] {
  const custom = customRoles(registrations);
  const lines = registrations.filter((r) => r.type === "azure-native:authorization:RoleAssignment").map((r) => accessLine(r, custom));
  const order = [...new Set(lines.map((l) => l.grantee))];
  return order.flatMap((g) => lines.filter((l) => l.grantee === g));
}

/** The permissions of an access line's role: the custom role's actions, or the built-in role's (infra/identity.ts). */
function permissionsOf(l: AccessLine): RolePermissions {
  if (l.customActions) return { actions: l.customActions };
  return BUILT_IN_ROLE_PERMISSIONS[l.role as BuiltInRole] ?? { actions: [] };
}

/**
 * For each workload identity (not the deployer, whose own rights are not the stack's), which of
 * {@link SENSITIVE_OPERATIONS} its granted roles allow (`can`) and which none does (`cannot`).
 */
export function identityAbilities(lines: AccessLine[]): IdentityAbilities[] {
  const grantees = [...new Set(lines.map((l) => l.grantee))].filter((g) => g !== "deployer");
  return grantees.map((grantee) => {
    const perms = lines.filter((l) => l.grantee === grantee).map(permissionsOf);
    const allowed = (action: string) => perms.some((p) => permits(p, action));
    return {
      grantee,
      can: SENSITIVE_OPERATIONS.filter((o) => allowed(o.action)).map((o) => o.what),
      cannot: SENSITIVE_OPERATIONS.filter((o) => !allowed(o.action)).map((o) => o.what),
    };
  });
}

const shortAction = (a: string) => a.replace(/^Microsoft\.MachineLearningServices\/workspaces\//, "");

/**
 * Printable lines: a heading, one line per assignment (`grantee: role on scope (why)`), a custom
 * role's actions under it, then what each workload identity can and cannot do.
 */
export function formatAccess(lines: AccessLine[]): string[] {
  if (lines.length === 0) return [];
  const out = ["", "Access (who gets what on which scope):"];
  for (const l of lines) {
    out.push(`    ${l.grantee}: ${l.role} on ${l.scope}${l.why ? ` (${l.why})` : ""}`);
    if (l.customActions) out.push(`      custom role declared by the stack, only: ${l.customActions.map(shortAction).join(", ")}`);
  }
  out.push("  What each identity can and cannot do (by the roles above):");
  for (const a of identityAbilities(lines)) {
    out.push(`    ${a.grantee}: can ${a.can.length ? a.can.join(", ") : "none of the sensitive operations"}; cannot ${a.cannot.length ? a.cannot.join(", ") : "-"}`);
  }
  return out;
}
