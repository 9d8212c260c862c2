/**
 * The split an endpoint had before the traffic step changed it, recorded by that step
 * (jobs/set-traffic.ts `apply` prints one line) and read back by the step after it
 * (jobs/smoke-test.ts `endpoint`), which puts it back when the smoke through the endpoint fails.
 * The record travels as the traffic step's stdout, which `@pulumi/command` hands to the next
 * step as an input: no file, nothing outside the stack's state.
 */

/** Live and mirror traffic, deployment → integer percent. */
export interface RecordedSplit {
  endpoint: string;
  traffic: Record<string, number>;
  mirrorTraffic: Record<string, number>;
}

/** What starts a record line. */
export const RECORD_PREFIX = "traffic before this step: ";

/** The record line of a split (one line of JSON after {@link RECORD_PREFIX}). */
export function trafficRecordLine(split: RecordedSplit): string {
  return `${RECORD_PREFIX}${JSON.stringify({ endpoint: split.endpoint, traffic: split.traffic, mirrorTraffic: split.mirrorTraffic })}`;
}

/**
 * The last record in a step's output (the state read just before the PUT), or undefined when
 * there is none or it does not parse.
 */
export function parseTrafficRecord(output: string): RecordedSplit | undefined {
  const lines = output.split(/\r?\n/).filter((l) => l.startsWith(RECORD_PREFIX));
  const last = lines[lines.length - 1];
  if (!last) return undefined;
  try {
    const v = JSON.parse(last.slice(RECORD_PREFIX.length)) as RecordedSplit;
    const isMap = (m: unknown) => !!m && typeof m === "object" && !Array.isArray(m) && Object.values(m).every((x) => typeof x === "number");
    if (typeof v.endpoint !== "string" || !isMap(v.traffic) || !isMap(v.mirrorTraffic)) return undefined;
    return v;
  } catch {
    return undefined;
  }
}
