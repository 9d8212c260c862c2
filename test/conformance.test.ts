/**
 * Conformance with Azure's own Python SDK (issue 19, part 1): for every example stack, the
 * request bodies this project sends (the program under mocks, test/conformance/bodies.ts) are
 * compared with the bodies azure-ai-ml builds for the same entities from the same stack config
 * (test/conformance/sdk_bodies.py, one Python process for all stacks, in .venv/sdk), after the
 * normalisation of test/conformance/compare.ts. Every remaining difference must be a row of
 * test/conformance/differences.yaml with its reason, and every row must still match a difference.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import * as YAML from "yaml";
import { requirePython } from "../cli/lib/python-env";
import { AML_API_VERSION } from "../lib/arm";
import { EXAMPLE_STACKS, stackBodies, type StackBodies } from "./conformance/bodies";
import { asRow, checkAgainstTable, rowMatches, stackDifferences, tableProblems, type Difference, type TableRow } from "./conformance/compare";
import { ROOT } from "./helpers/stack";

const TABLE_FILE = path.join(ROOT, "test/conformance/differences.yaml");
const table = (YAML.parse(fs.readFileSync(TABLE_FILE, "utf8")) as { differences: TableRow[] }).differences;

let ours: StackBodies[] = [];
let sdk: { apiVersion: string; stacks: Record<string, Record<string, unknown>> };

beforeAll(async () => {
  // Sequential: each run resets the modules and Pulumi's runtime state of this process.
  for (const stack of EXAMPLE_STACKS) ours.push(await stackBodies(stack));
  const child = spawnSync(requirePython("sdk"), [path.join(ROOT, "test/conformance/sdk_bodies.py")], {
    input: JSON.stringify(ours),
    encoding: "utf8",
    maxBuffer: 64 * 1024 * 1024,
  });
  if (child.status !== 0) throw new Error(`sdk_bodies.py exited with ${child.status}: ${child.stderr.slice(-4000)}`);
  sdk = JSON.parse(child.stdout);
}, 180_000);

describe("the difference table", () => {
  it("has a reason on every row, none unexplained, only known stacks", () => {
    expect(tableProblems(table, EXAMPLE_STACKS)).toEqual([]);
  });

  it("says when the SDK's REST client is older than the API version we follow", () => {
    const diffs: Difference[] = sdk.apiVersion === AML_API_VERSION ? [] : [{ entity: "client", path: "api-version", ours: AML_API_VERSION, sdk: sdk.apiVersion }];
    for (const stack of EXAMPLE_STACKS) {
      const rows = table.filter((r) => r.entity === "client");
      expect(diffs.filter((d) => !rows.some((r) => rowMatches(r, d))), stack).toEqual([]);
      expect(rows.filter((r) => !diffs.some((d) => rowMatches(r, d))), stack).toEqual([]);
    }
  });
});

describe.each(EXAMPLE_STACKS)("stack %s: our request bodies = azure-ai-ml's", (stack) => {
  it("sends the same entities with the same bodies, up to the rows of differences.yaml", () => {
    const mine = ours.find((s) => s.stack === stack)!;
    const diffs = stackDifferences(mine.bodies, sdk.stacks[stack]);
    const { unexplained, stale } = checkAgainstTable(stack, diffs, table.filter((r) => r.entity !== "client"));
    // An unexplained difference prints as a row to add (with its reason) once understood.
    expect(unexplained.map((d) => asRow(stack, d)).join(""), "differences not in differences.yaml").toBe("");
    expect(stale, "rows of differences.yaml that match no difference (remove them)").toEqual([]);
  });
});
