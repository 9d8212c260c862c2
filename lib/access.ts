/**
 * Who gets what on which scope: the role assignments of a mock run (the offline plan), read
 * from their inputs. The grantee and the reason come from the assignment's description, which
 * `grantRoles` (infra/identity.ts) writes as `phi3-finetune: <grantee>: <role>: <why>`.
 */
import { BUILT_IN_ROLES } from "../infra/identity";
import { Registration, unwrapSecrets } from "./mock-runtime";

/** One role assignment as the plan prints it. */
export interface AccessLine {
  grantee: string;
  role: string;
  /** `<type>/<name>` of the scope, e.g. `registries/crphi3ft1a2b3c`. */
  scope: string;
  why: string;
}

const ROLE_NAMES: Record<string, string> = Object.fromEntries(Object.entries(BUILT_IN_ROLES).map(([name, guid]) => [guid, name]));

/** The last `<type>/<name>` pair of an ARM id (`resourceGroups/rg-x`, `containers/azureml-blobstore-...`). */
export function scopeLabel(scope: string): string {
  return String(scope).split("/").slice(-2).join("/");
}

/** The access line of one role-assignment registration (`authorization:RoleAssignment`). */
export function accessLine(r: Registration): AccessLine {
  const i = unwrapSecrets(r.inputs, "[secret]");
  const role = ROLE_NAMES[String(i.roleDefinitionId).split("/").pop() ?? ""] ?? String(i.roleDefinitionId);
  const m = /^phi3-finetune: ([^:]+): [^:]+: (.*)$/.exec(String(i.description ?? ""));
  return { grantee: m?.[1] ?? String(i.principalId), role, scope: scopeLabel(i.scope), why: m?.[2] ?? "" };
}

/** Every role assignment of a run, grouped by grantee in order of first appearance. */
export function accessSummary(registrations: Registration[]): AccessLine[] {
  const lines = registrations.filter((r) => r.type === "azure-native:authorization:RoleAssignment").map(accessLine);
  const order = [...new Set(lines.map((l) => l.grantee))];
  return order.flatMap((g) => lines.filter((l) => l.grantee === g));
}

/** Printable lines: a heading and one line per assignment (`grantee: role on scope (why)`). */
export function formatAccess(lines: AccessLine[]): string[] {
  if (lines.length === 0) return [];
  return ["", "Access (who gets what on which scope):", ...lines.map((l) => `    ${l.grantee}: ${l.role} on ${l.scope}${l.why ? ` (${l.why})` : ""}`)];
}
