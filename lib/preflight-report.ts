/**
 * The preflight's report, pure: one row per check (PASS, WARN or FAIL, with the remedy of each
 * non-pass row), the summary line and the exit code. Shared by `npm run doctor` (cli/doctor.ts)
 * and the first step of `pulumi up` (jobs/preflight.ts); the checks themselves are in
 * lib/preflight.ts, the quota arithmetic in infra/quota.ts.
 */

/** The outcome of one check. */
export type CheckStatus = "PASS" | "WARN" | "FAIL";

/** One row of the report. */
export interface Check {
  /** Stable machine id, e.g. `provider:Microsoft.Storage`, `quota:standardNCADSA100v4Family`. */
  id: string;
  /** Human name of the check. */
  name: string;
  status: CheckStatus;
  detail: string;
  /** What to do about it (non-pass checks). */
  remedy?: string;
}


/** Counts of each status. */
export function summarize(checks: Check[]): Record<CheckStatus, number> {
  const s: Record<CheckStatus, number> = { PASS: 0, WARN: 0, FAIL: 0 };
  for (const c of checks) s[c.status]++;
  return s;
}

/** Exit code of a set of checks: 1 when any check failed, else 0 (warnings do not block). */
export function exitCodeOf(checks: Check[]): 0 | 1 {
  return checks.some((c) => c.status === "FAIL") ? 1 : 0;
}

/**
 * The report as text: a table (status, check, detail) with each non-pass check's remedy on
 * the line below it, then a summary line.
 */
export function formatReport(checks: Check[]): string {
  const nameWidth = Math.min(48, Math.max(5, ...checks.map((c) => c.name.length)));
  const pad = (s: string, n: number) => (s.length >= n ? s : s + " ".repeat(n - s.length));
  const lines: string[] = [];
  lines.push(`${pad("STATUS", 6)}  ${pad("CHECK", nameWidth)}  DETAIL`);
  lines.push(`${"-".repeat(6)}  ${"-".repeat(nameWidth)}  ${"-".repeat(40)}`);
  const indent = " ".repeat(6 + 2 + nameWidth + 2);
  for (const c of checks) {
    const name = c.name.length > nameWidth ? c.name : pad(c.name, nameWidth);
    lines.push(`${pad(c.status, 6)}  ${name}  ${c.detail}`);
    if (c.status !== "PASS" && c.remedy) lines.push(`${indent}remedy: ${c.remedy}`);
  }
  const s = summarize(checks);
  lines.push("");
  lines.push(
    `${s.PASS} passed, ${s.WARN} warning${s.WARN === 1 ? "" : "s"}, ${s.FAIL} failed` +
      (s.FAIL > 0 ? " - fix the failures before `pulumi up`." : s.WARN > 0 ? " - warnings do not block." : " - ready to deploy."),
  );
  return lines.join("\n");
}
