/**
 * Comparison of the project's request bodies with the SDK's (test/conformance.test.ts): the
 * normalisation of what legitimately differs, the leaf-by-leaf difference, and the one table of
 * remaining differences (test/conformance/differences.yaml) every difference must be in.
 */
import { isDeepStrictEqual } from "node:util";
import * as YAML from "yaml";
import { splitShellWords } from "../../infra/shell";

/** How a missing value is written in a difference and in the table. */
export const ABSENT = "(absent)";
/** Table value that matches any present value (one that changes with content hashes or file contents). */
export const ANY = "*";

/** One remaining difference: entity key (`job:finetune`), dotted path in the body, both values. */
export interface Difference {
  entity: string;
  path: string;
  ours: unknown;
  sdk: unknown;
}

/** A row of differences.yaml. */
export interface TableRow {
  /** `all` (every example stack) or the stacks the difference occurs in. */
  stacks: "all" | string[];
  /** Entity key; a trailing `*` matches any suffix (`deployment:*`). */
  entity: string;
  path: string;
  ours: unknown;
  sdk: unknown;
  reason: string;
}

const ISO_DURATION = /^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$/;

/** `PT1M40S` → `PT100S` (one spelling per duration); other strings unchanged. */
export function canonicalDuration(s: string): string {
  const m = ISO_DURATION.exec(s);
  if (!m || s === "P" || s.endsWith("T")) return s;
  const [d, h, min, sec] = m.slice(1).map((x) => Number(x ?? 0));
  return `PT${Math.round((((d * 24 + h) * 60 + min) * 60 + sec) * 1000) / 1000}S`;
}

/**
 * What may legitimately differ, made equal before comparing (every rule documented in
 * differences.yaml's header): key order (objects are compared as maps); an empty map and an
 * absent one (`{}` means "none" in every field of these bodies); `isAnonymous` / `isArchived`
 * false and absent (the REST defaults); the spelling of an ISO-8601 duration (`PT100S` and
 * `PT1M40S`); a conda file's YAML text and the YAML it parses to (the SDK re-dumps the file, we
 * send it verbatim); a command and its shell words (quoting style).
 */
export function normalize(value: unknown, key = ""): unknown {
  if (typeof value === "string") {
    if (key === "condaFile") return YAML.parse(value);
    if (key === "command") return splitShellWords(value);
    return canonicalDuration(value);
  }
  if (Array.isArray(value)) return value.map((v) => normalize(v));
  if (value && typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      if ((k === "isAnonymous" || k === "isArchived") && v === false) continue;
      const n = normalize(v, k);
      if (n && typeof n === "object" && !Array.isArray(n) && Object.keys(n).length === 0) continue;
      if (n === undefined || n === null) continue;
      out[k] = n;
    }
    return out;
  }
  return value;
}

function isMap(v: unknown): v is Record<string, unknown> {
  return !!v && typeof v === "object" && !Array.isArray(v);
}

/** Leaf differences of two normalised values (maps are walked key by key, arrays by index). */
export function differences(entity: string, ours: unknown, sdk: unknown, path = ""): Difference[] {
  if (isDeepStrictEqual(ours, sdk)) return [];
  const at = (k: string | number) => (path ? `${path}.${k}` : String(k));
  if (isMap(ours) && isMap(sdk)) {
    const keys = [...new Set([...Object.keys(ours), ...Object.keys(sdk)])].sort();
    return keys.flatMap((k) => differences(entity, k in ours ? ours[k] : ABSENT, k in sdk ? sdk[k] : ABSENT, at(k)));
  }
  if (Array.isArray(ours) && Array.isArray(sdk) && ours.length === sdk.length) {
    return ours.flatMap((o, i) => differences(entity, o, sdk[i], at(i)));
  }
  return [{ entity, path, ours, sdk }];
}

/** Every difference of one stack: entities on either side, normalised, compared. */
export function stackDifferences(ours: Record<string, unknown>, sdk: Record<string, unknown>): Difference[] {
  const entities = [...new Set([...Object.keys(ours), ...Object.keys(sdk)])].sort();
  return entities.flatMap((e) => {
    if (!(e in ours) || !(e in sdk)) return [{ entity: e, path: "", ours: e in ours ? "(sent)" : ABSENT, sdk: e in sdk ? "(sent)" : ABSENT }];
    return differences(e, normalize(ours[e]), normalize(sdk[e]));
  });
}

function valueMatches(expected: unknown, actual: unknown): boolean {
  return expected === ANY ? actual !== ABSENT : isDeepStrictEqual(expected, actual);
}

/** Whether a table row applies to a stack. */
export function rowApplies(row: TableRow, stack: string): boolean {
  return row.stacks === "all" || row.stacks.includes(stack);
}

/** Whether a table row explains a difference. */
export function rowMatches(row: TableRow, d: Difference): boolean {
  const entity = row.entity.endsWith("*") ? d.entity.startsWith(row.entity.slice(0, -1)) : d.entity === row.entity;
  return entity && row.path === d.path && valueMatches(row.ours, d.ours) && valueMatches(row.sdk, d.sdk);
}

/**
 * Checks one stack's differences against the table: the differences no applicable row explains
 * (`unexplained`), and the applicable rows that explain no difference (`stale`).
 */
export function checkAgainstTable(stack: string, diffs: Difference[], table: TableRow[]): { unexplained: Difference[]; stale: TableRow[] } {
  const rows = table.filter((r) => rowApplies(r, stack));
  return {
    unexplained: diffs.filter((d) => !rows.some((r) => rowMatches(r, d))),
    stale: rows.filter((r) => !diffs.some((d) => rowMatches(r, d))),
  };
}

/** Problems of the table itself: a row without a reason, or one still marked unexplained, or an unknown stack. */
export function tableProblems(table: TableRow[], stacks: readonly string[]): string[] {
  return table.flatMap((r, i) => {
    const p: string[] = [];
    const where = `differences.yaml row ${i + 1} (${r.entity} ${r.path})`;
    if (typeof r.reason !== "string" || r.reason.trim().length < 10) p.push(`${where}: needs a reason`);
    else if (/unexplained/i.test(r.reason)) p.push(`${where}: marked unexplained`);
    if (r.stacks !== "all" && (!Array.isArray(r.stacks) || r.stacks.some((s) => !stacks.includes(s)))) p.push(`${where}: stacks must be "all" or a list of ${stacks.join(", ")}`);
    if (!("ours" in r) || !("sdk" in r)) p.push(`${where}: needs ours and sdk`);
    return p;
  });
}

/** A difference as a YAML row to paste (reason left for the reader to write). */
export function asRow(stack: string, d: Difference): string {
  return YAML.stringify([{ stacks: [stack], entity: d.entity, path: d.path, ours: d.ours, sdk: d.sdk, reason: "TODO" }]);
}
