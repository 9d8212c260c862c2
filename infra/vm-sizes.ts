/**
 * VM sizes this project knows, recorded with the facts the plan and the preflight use: the
 * Azure ML quota family (as `GET .../locations/{location}/usages` names it), vCPUs and GPUs.
 * Pure data and pure functions: no Pulumi, no network.
 *
 * Source: the series pages under learn.microsoft.com/azure/virtual-machines/sizes (vCPUs,
 * GPUs) and the family names Azure ML's `vmSizes` / `usages` answers carry (REST 2025-12-01),
 * recorded by this project on {@link VM_SIZES_RECORDED} (not fetched from the API). A size
 * missing here is not necessarily wrong: the plan warns (naming the list's date) and the
 * preflight asks Azure. A size that is a near miss of a listed one is a typo and is refused.
 */

/** Date the list below was recorded (YYYY-MM-DD). */
export const VM_SIZES_RECORDED = "2026-11-23";

/** Where the list comes from. */
export const VM_SIZES_SOURCE =
  "learn.microsoft.com/azure/virtual-machines/sizes (series pages) and Azure ML vmSizes/usages family names (REST 2025-12-01)";

/** One recorded VM size, in the shape Azure ML's `locations/{location}/vmSizes` lists it. */
export interface RecordedVmSize {
  name: string;
  /** Azure ML quota family, e.g. `standardNCADSA100v4Family`. */
  family: string;
  vCPUs: number;
  gpus: number;
  memoryGB: number;
}

const size = (name: string, family: string, vCPUs: number, gpus: number, memoryGB: number): RecordedVmSize => ({ name, family, vCPUs, gpus, memoryGB });

/** The recorded sizes (GPU series first, then the CPU sizes the stacks use for prep and CPU serving). */
export const RECORDED_VM_SIZES: readonly RecordedVmSize[] = [
  size("Standard_NC24ads_A100_v4", "standardNCADSA100v4Family", 24, 1, 220),
  size("Standard_NC48ads_A100_v4", "standardNCADSA100v4Family", 48, 2, 440),
  size("Standard_NC96ads_A100_v4", "standardNCADSA100v4Family", 96, 4, 880),
  size("Standard_NC4as_T4_v3", "standardNCASv3_T4Family", 4, 1, 28),
  size("Standard_NC8as_T4_v3", "standardNCASv3_T4Family", 8, 1, 56),
  size("Standard_NC16as_T4_v3", "standardNCASv3_T4Family", 16, 1, 110),
  size("Standard_NC64as_T4_v3", "standardNCASv3_T4Family", 64, 4, 440),
  size("Standard_NV36ads_A10_v5", "standardNVADSA10v5Family", 36, 1, 440),
  size("Standard_NV72ads_A10_v5", "standardNVADSA10v5Family", 72, 2, 880),
  size("Standard_NC40ads_H100_v5", "standardNCadsH100v5Family", 40, 1, 320),
  size("Standard_NC80adis_H100_v5", "standardNCadsH100v5Family", 80, 2, 640),
  size("Standard_ND96asr_v4", "standardNDASv4_A100Family", 96, 8, 900),
  size("Standard_ND96amsr_A100_v4", "standardNDAMSv4_A100Family", 96, 8, 1900),
  size("Standard_ND96isr_H100_v5", "standardNDSH100v5Family", 96, 8, 1900),
  // NCv3 (V100): retired 2025-09-30; listed so the plan can name the retirement, not a typo.
  size("Standard_NC6s_v3", "standardNCSv3Family", 6, 1, 112),
  size("Standard_NC12s_v3", "standardNCSv3Family", 12, 2, 224),
  size("Standard_NC24s_v3", "standardNCSv3Family", 24, 4, 448),
  size("Standard_DS2_v2", "standardDSv2Family", 2, 0, 7),
  size("Standard_DS3_v2", "standardDSv2Family", 4, 0, 14),
  size("Standard_DS4_v2", "standardDSv2Family", 8, 0, 28),
  size("Standard_DS5_v2", "standardDSv2Family", 16, 0, 56),
  size("Standard_DS11_v2", "standardDSv2Family", 2, 0, 14),
  size("Standard_DS12_v2", "standardDSv2Family", 4, 0, 28),
  size("Standard_D2s_v3", "standardDSv3Family", 2, 0, 8),
  size("Standard_D4s_v3", "standardDSv3Family", 4, 0, 16),
  size("Standard_D8s_v3", "standardDSv3Family", 8, 0, 32),
  size("Standard_D16s_v3", "standardDSv3Family", 16, 0, 64),
  size("Standard_D2as_v4", "standardDASv4Family", 2, 0, 8),
  size("Standard_D4as_v4", "standardDASv4Family", 4, 0, 16),
  size("Standard_D4ds_v5", "standardDDSv5Family", 4, 0, 16),
  size("Standard_D8ds_v5", "standardDDSv5Family", 8, 0, 32),
  size("Standard_E2s_v3", "standardESv3Family", 2, 0, 16),
  size("Standard_E4s_v3", "standardESv3Family", 4, 0, 32),
  size("Standard_E8s_v3", "standardESv3Family", 8, 0, 64),
  size("Standard_E16s_v3", "standardESv3Family", 16, 0, 128),
  size("Standard_E32s_v3", "standardESv3Family", 32, 0, 256),
  size("Standard_E4ds_v4", "standardEDSv4Family", 4, 0, 32),
  size("Standard_E16ds_v4", "standardEDSv4Family", 16, 0, 128),
  size("Standard_F4s_v2", "standardFSv2Family", 4, 0, 8),
  size("Standard_F8s_v2", "standardFSv2Family", 8, 0, 16),
  size("Standard_F16s_v2", "standardFSv2Family", 16, 0, 32),
];

/**
 * Does this size have an InfiniBand (RDMA) network between nodes? Azure marks RDMA-capable sizes
 * with an "r" among the additive features after the vCPU count (Standard_ND96**asr**_v4, 8 × A100,
 * 200 Gb/s HDR InfiniBand; Standard_ND96isr_H100_v5; HBv3's Standard_HB120rs_v3), per the VM
 * naming conventions (learn.microsoft.com/azure/virtual-machines/vm-naming-conventions: "r =
 * RDMA capable"). Multi-node PyTorch jobs on other sizes exchange gradients over Ethernet
 * (learn.microsoft.com/azure/machine-learning/how-to-train-distributed-gpu, "Accelerating
 * distributed GPU training with InfiniBand"). Case-insensitive; false for names that do not parse.
 */
export function hasInfiniBand(vmSize: string): boolean {
  const m = /^standard_[a-z]+\d+([a-z]*)_/i.exec(vmSize);
  return m !== null && m[1].toLowerCase().includes("r");
}

/** Recorded GPU sizes with InfiniBand, for warnings that name the alternatives (8 GPUs each). */
export const INFINIBAND_GPU_SIZES: readonly string[] = RECORDED_VM_SIZES.filter((s) => s.gpus > 0 && hasInfiniBand(s.name)).map((s) => s.name);

/**
 * VM sizes Azure retired (2025-09-30: NCv3 series). Kept allowed because the seeds and the
 * users ask for Standard_NC6s_v3, but every plan warns and the preflight refuses a deployment on it.
 */
export const RETIRED_SIZES: Record<string, string> = {
  Standard_NC6s_v3: "2025-09-30",
  Standard_NC12s_v3: "2025-09-30",
  Standard_NC24s_v3: "2025-09-30",
};

/** Sizes Microsoft recommends instead of the retired NCv3 series (shared/REFERENCE.md). */
export const REPLACEMENT_SIZES = [
  "Standard_NC4as_T4_v3",
  "Standard_NC24ads_A100_v4",
  "Standard_NV36ads_A10_v5",
  "Standard_NC40ads_H100_v5",
];

/** N-series sizes carry GPUs; everything else serves on CPU. */
export function isGpuSize(vmSize: string): boolean {
  return /^Standard_N/i.test(vmSize);
}

const byLower = new Map(RECORDED_VM_SIZES.map((s) => [s.name.toLowerCase(), s]));

/** The recorded size of this name (Azure compares sizes case-insensitively), or undefined. */
export function recordedVmSize(name: string): RecordedVmSize | undefined {
  return byLower.get(name.toLowerCase());
}

/**
 * Longest word a "did you mean" search compares (edit distance is quadratic: a 200 KB value
 * against every listed name took 13-20 s). Longer words get no suggestion; every name this
 * project looks up (VM sizes, regions, config keys, stacks, flags) is far shorter.
 */
export const MAX_SUGGEST_LENGTH = 128;

/** Levenshtein distance between two strings (insertions, deletions, substitutions cost 1). */
export function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length];
}

/**
 * The closest of `known` to `word` when it is close enough to be a typo (edit distance at most
 * a third of the word, at least 2; case, `-` and `_` ignored), else `undefined`. Used for
 * "did you mean" on flags, config keys and stack names.
 */
export function closestName(word: string, known: readonly string[]): string | undefined {
  if (word.length > MAX_SUGGEST_LENGTH) return undefined;
  const flat = (s: string) => s.toLowerCase().replace(/[-_]/g, "");
  let best: [string, number] | undefined;
  for (const k of known) {
    const d = editDistance(flat(word), flat(k));
    if (!best || d < best[1]) best = [k, d];
  }
  return best && best[1] <= Math.max(2, Math.floor(word.length / 3)) ? best[0] : undefined;
}

/** What {@link classifyName} concluded about a name checked against a recorded list. */
export type NameVerdict =
  /** Listed (`canonical` is the list's spelling). */
  | { kind: "known"; canonical: string }
  /** A typo of listed names (`suggestions`, best first): Azure would refuse it. */
  | { kind: "typo"; suggestions: string[] }
  /** Not listed and not a near miss (`similar`: listed names of the same shape, may be empty). */
  | { kind: "unknown"; similar: string[] };

/**
 * Check `name` against `known` (compared case-insensitively, as Azure does). A near miss is a
 * typo: the same name with other underscores or hyphens (`Standard_NC4as_T4v3`), or a listed
 * name cut short or lengthened at the end (`Standard_NC24ads_A100` for `..._A100_v4`). Any
 * other unlisted name may be real (Azure's size names are dense: `Standard_D4s_v5` and
 * `Standard_D4ds_v5` both exist), so it is `unknown`, with the listed names of the same shape
 * (numbers aside) or at most two characters away as `similar`. With `typoDistance` > 0 (for
 * sparse lists such as regions), names at most that many edits away are typos too.
 */
export function classifyName(name: string, known: readonly string[], typoDistance = 0): NameVerdict {
  const lower = name.toLowerCase();
  const exact = known.find((k) => k.toLowerCase() === lower);
  if (exact) return { kind: "known", canonical: exact };
  if (name.length > MAX_SUGGEST_LENGTH) return { kind: "unknown", similar: [] };
  const flat = (s: string) => s.toLowerCase().replace(/[_\-\s]/g, "");
  const digitless = (s: string) => s.toLowerCase().replace(/\d+/g, "#");
  const scored: [string, number][] = [];
  const similar: string[] = [];
  for (const k of known) {
    const kl = k.toLowerCase();
    if (flat(k) === flat(name)) scored.push([k, 0]);
    else if (kl.startsWith(lower) || lower.startsWith(kl) || editDistance(kl, lower) <= typoDistance) {
      // Closest first; on a tie, the one of the same length (eastus3 → eastus2 before eastus).
      scored.push([k, 1 + editDistance(kl, lower) + Math.abs(kl.length - lower.length) / 100]);
    }
    else if (digitless(k) === digitless(name) || editDistance(kl, lower) <= 2) similar.push(k);
  }
  if (scored.length > 0) {
    scored.sort((a, b) => a[1] - b[1]);
    return { kind: "typo", suggestions: scored.slice(0, 3).map(([k]) => k) };
  }
  similar.sort((a, b) => editDistance(a.toLowerCase(), lower) - editDistance(b.toLowerCase(), lower));
  return { kind: "unknown", similar: similar.slice(0, 3) };
}

/** {@link classifyName} against {@link RECORDED_VM_SIZES}. */
export function classifyVmSize(name: string): NameVerdict {
  return classifyName(name, RECORDED_VM_SIZES.map((s) => s.name));
}

/**
 * Plan-time check of a VM size: an error message for a near miss of a recorded size (with
 * "did you mean"), else undefined. Unlisted sizes that are no near miss pass here and are
 * reported by {@link vmSizeWarning}.
 */
export function vmSizeProblem(name: string): string | undefined {
  const v = classifyVmSize(name);
  if (v.kind !== "typo") return undefined;
  return `is not an Azure VM size; did you mean ${v.suggestions.join(" or ")}?`;
}

/** Plan-time warning for a well-formed size missing from the recorded list (it may be newer than the list). */
export function vmSizeWarning(name: string): string | undefined {
  const v = classifyVmSize(name);
  if (v.kind !== "unknown") return undefined;
  return (
    `${name} is not in the VM size list recorded on ${VM_SIZES_RECORDED} (infra/vm-sizes.ts)` +
    `${v.similar.length ? `; did you mean ${v.similar.join(" or ")}?` : ""}` +
    ` If it is newer than the list, the preflight asks Azure whether it is offered in the region.`
  );
}
