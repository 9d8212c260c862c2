/**
 * `--help` and usage errors of every command answer before the heavy imports (issue 21: `plan
 * --help` took 6 s, `doctor --help` 8 s): in one fresh process, no command may have loaded
 * Pulumi, azure-native, @azure/identity or zod by the time it answered. Asserts what is loaded,
 * not how long it took (times belong in `npm run bench`).
 */
import { spawnSync } from "node:child_process";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { ROOT } from "./helpers/stack";

describe("--help and usage errors load nothing heavy", () => {
  const r = spawnSync(process.execPath, ["--import", "tsx", path.join(ROOT, "test/helpers/help-light.ts")], { cwd: ROOT, encoding: "utf8", timeout: 120_000 });
  const results: Record<string, { help: number; usage: number; heavy: string[] }> = r.status === 0 ? JSON.parse(r.stdout.trim().split("\n").pop()!) : {};

  it("the probe ran every command", () => {
    expect(r.status, r.stderr).toBe(0);
    expect(Object.keys(results).sort()).toEqual(["bench", "bench:test", "chat", "doctor", "plan", "serve:local", "setup:python", "test", "train:local"]);
  });

  it.each(["bench", "bench:test", "chat", "doctor", "plan", "serve:local", "setup:python", "test", "train:local"])("%s: --help exits 0, a usage error 2, neither loads Pulumi, azure-native, @azure/identity or zod", (name) => {
    expect(results[name]).toEqual({ help: 0, usage: 2, heavy: [] });
  });
});
