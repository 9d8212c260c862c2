/**
 * The traffic rules of an Azure ML managed online endpoint (REST 2025-12-01), in one pure
 * module shared by the stack config (`infra/config.ts`, config deployment names, checked before
 * any resource is declared) and the traffic step (`jobs/set-traffic.ts`, Azure deployment names,
 * checked at run time). No Pulumi or zod import: `jobs/set-traffic.ts` must not load Pulumi.
 *
 * Rules:
 * - live and mirror values are integer percents, live 0..100, mirror 0..{@link MAX_MIRROR_PERCENT};
 * - live traffic sums to exactly 100, or 0 when there are no deployments (with a list) or the
 *   split is empty / all zero (without one);
 * - mirror traffic goes to at most one deployment (so it totals at most 50%), never to one
 *   that takes live traffic, and needs live traffic to copy from;
 * - with a deployment list, names must be known deployments (and the list has no duplicates).
 *
 * {@link trafficRuleIssues} returns every broken rule as data; each caller words the messages.
 */

/** Deployment name → integer percent. */
export type TrafficMap = Record<string, number>;

/** Maximum mirror traffic Azure accepts (percent). */
export const MAX_MIRROR_PERCENT = 50;

/** Which split an issue is about. */
export type TrafficKind = "traffic" | "mirrorTraffic";

/**
 * A broken traffic rule. {@link trafficRuleIssues} lists duplicate deployments first, then the
 * live split (`notAMap`, or per entry `invalidName` / `unknownDeployment` / `percentRange`),
 * the mirror split likewise, then the remaining rules in the order below.
 */
export type TrafficRuleIssue =
  /** The deployment list names `name` twice (`index` is the second occurrence). */
  | { rule: "duplicateDeployment"; index: number; name: string }
  /** The split is not an object of name → percent. */
  | { rule: "notAMap"; kind: TrafficKind; value: unknown }
  /** `name` fails the caller's name check. */
  | { rule: "invalidName"; kind: TrafficKind; name: string }
  /** `name` is not in the deployment list `known`. */
  | { rule: "unknownDeployment"; kind: TrafficKind; name: string; known: string[] }
  /** `value` is not an integer from 0 to `max`. */
  | { rule: "percentRange"; kind: TrafficKind; name: string; value: unknown; max: number }
  /** Live traffic sums to `sum`; it must sum to one of `allowed`. */
  | { rule: "liveSum"; sum: number; allowed: number[] }
  /** Mirror traffic goes to several deployments (`targets`, in order), `total` percent in all. */
  | { rule: "mirrorTargets"; targets: string[]; total: number }
  /** `name` would get mirror traffic while it takes live traffic. */
  | { rule: "mirrorToLive"; name: string; mirror: number; live: number }
  /** Mirror traffic goes to `targets` but live traffic sums to 0. */
  | { rule: "mirrorWithoutLive"; targets: string[] };

/** Input of {@link trafficRuleIssues}. */
export interface TrafficSplit {
  /** Live traffic (`undefined` = empty). */
  traffic: unknown;
  /** Mirror traffic (`undefined` = empty). */
  mirrorTraffic: unknown;
  /** Known deployment names; when given, every name of a split must be one of them. */
  deployments?: string[];
  /** Extra check of the names in a split (e.g. Azure's name pattern). */
  isValidName?: (name: string) => boolean;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function isPercent(value: unknown, max: number): value is number {
  return typeof value === "number" && Number.isInteger(value) && value >= 0 && value <= max;
}

function total(split: Record<string, unknown>): number {
  return Object.values(split).reduce<number>((a, b) => a + (typeof b === "number" ? b : 0), 0);
}

/**
 * Checks a live/mirror traffic split against the rules above.
 *
 * @param split - live and mirror maps, optional deployment list and name check.
 * @returns every broken rule (empty when valid), in the order described at
 *   {@link TrafficRuleIssue} (so the first issue is the first rule broken).
 */
export function trafficRuleIssues(split: TrafficSplit): TrafficRuleIssue[] {
  const issues: TrafficRuleIssue[] = [];
  const { deployments, isValidName } = split;
  if (deployments) {
    const seen = new Set<string>();
    deployments.forEach((name, index) => {
      if (seen.has(name)) issues.push({ rule: "duplicateDeployment", index, name });
      seen.add(name);
    });
  }
  const known = deployments ? new Set(deployments) : undefined;
  const maps: Record<TrafficKind, Record<string, unknown>> = { traffic: {}, mirrorTraffic: {} };
  for (const kind of ["traffic", "mirrorTraffic"] as const) {
    const max = kind === "traffic" ? 100 : MAX_MIRROR_PERCENT;
    const map = split[kind];
    if (map === undefined || map === null) continue;
    if (!isPlainObject(map)) {
      issues.push({ rule: "notAMap", kind, value: map });
      continue;
    }
    maps[kind] = map;
    for (const [name, value] of Object.entries(map)) {
      if (isValidName && !isValidName(name)) issues.push({ rule: "invalidName", kind, name });
      if (known && !known.has(name)) issues.push({ rule: "unknownDeployment", kind, name, known: deployments! });
      if (!isPercent(value, max)) issues.push({ rule: "percentRange", kind, name, value, max });
    }
  }
  const live = maps.traffic;
  const mirror = maps.mirrorTraffic;
  const liveSum = total(live);
  const allowed = deployments ? [deployments.length === 0 ? 0 : 100] : [100, 0];
  if (!allowed.includes(liveSum)) issues.push({ rule: "liveSum", sum: liveSum, allowed });
  const targets = Object.keys(mirror).filter((d) => typeof mirror[d] === "number" && mirror[d] > 0);
  if (targets.length > 1) issues.push({ rule: "mirrorTargets", targets, total: total(mirror) });
  for (const name of targets) {
    const liveShare = live[name];
    if (typeof liveShare === "number" && liveShare > 0) {
      issues.push({ rule: "mirrorToLive", name, mirror: mirror[name] as number, live: liveShare });
    }
  }
  // With a deployment list this rule is implied by the others (live traffic must then sum to 100,
  // or there is no deployment to mirror to), so it is only reported without one.
  if (!deployments && targets.length > 0 && liveSum === 0) issues.push({ rule: "mirrorWithoutLive", targets });
  return issues;
}
