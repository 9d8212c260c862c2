/**
 * `npm run plan -- --base HEAD~1` end to end, on a throwaway git repository holding this
 * project's files: a commit that edits finetuning_dir/fine_tune.py shows the new fine-tune job
 * with its hours and cost and the deployment roll; a commit that only adds a tag shows updates
 * and no retraining. Also `--base <saved plan.json>`.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ROOT } from "./helpers/stack";

const TSX = path.join(ROOT, "node_modules/.bin/tsx");
let repo: string;

function git(...args: string[]): string {
  const r = spawnSync("git", ["-c", "user.name=test", "-c", "user.email=test@example.com", "-c", "commit.gpgsign=false", ...args], { cwd: repo, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`git ${args.join(" ")}: ${r.stderr}`);
  return r.stdout;
}

function plan(...args: string[]) {
  const r = spawnSync(TSX, ["cli/plan.ts", "--root", repo, ...args], { cwd: ROOT, encoding: "utf8", timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

beforeAll(() => {
  repo = fs.mkdtempSync(path.join(os.tmpdir(), "phi3-plan-repo-"));
  const files = spawnSync("git", ["ls-files", "-z", "--cached", "--others", "--exclude-standard"], { cwd: ROOT, encoding: "utf8" }).stdout.split("\0").filter(Boolean);
  for (const f of files) {
    if (!fs.existsSync(path.join(ROOT, f))) continue;
    fs.mkdirSync(path.dirname(path.join(repo, f)), { recursive: true });
    fs.copyFileSync(path.join(ROOT, f), path.join(repo, f));
  }
  fs.symlinkSync(path.join(ROOT, "node_modules"), path.join(repo, "node_modules"), "dir");
  fs.writeFileSync(path.join(repo, ".gitignore"), "node_modules\n");
  git("init", "-q");
  git("add", "-A");
  git("commit", "-q", "-m", "base");
});

afterAll(() => {
  fs.rmSync(repo, { recursive: true, force: true });
});

describe("npm run plan -- --base", () => {
  it("a commit that edits fine_tune.py: a new fine-tune job with hours and cost, a new model version, the deployment roll", () => {
    fs.appendFileSync(path.join(repo, "finetuning_dir/fine_tune.py"), "\n# a reviewed change\n");
    git("commit", "-q", "-am", "edit fine_tune.py");
    const r = plan("--stack", "dev", "--base", "HEAD~1");
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/starts a new fine-tune job phi3ft-ft-[0-9a-f]+ on Standard_NC24ads_A100_v4 \(~\d+(\.\d)? h, ~USD [\d,.]+; 1 × A100/);
    expect(r.stdout).toMatch(/registers model phi3-finetuned:\d+ once its job has completed/);
    expect(r.stdout).toMatch(/replaces deployment blue-[0-9a-f]{8} with blue-[0-9a-f]{8}/);
    expect(r.stdout).toMatch(/moves live traffic \{"blue-[0-9a-f]{8}":100\} → \{"blue-[0-9a-f]{8}":100\}/);
    // The old code version and model version stay in the workspace (history).
    expect(r.stdout).toMatch(/stays in Azure \(retainOnDelete/);
    expect(r.stdout).not.toMatch(/replaces the endpoint/);
    expect(r.stdout).toMatch(/Monthly cost .*\(\+USD 0\.00\)/);
  });

  it("a commit that only adds a tag: updates, no retraining, nothing replaced", () => {
    const file = path.join(repo, "Pulumi.dev.yaml");
    fs.writeFileSync(file, fs.readFileSync(file, "utf8").replace(/^config:\n/m, "config:\n  phi3-finetune:tags:\n    team: ml-platform\n"));
    git("commit", "-q", "-am", "tag");
    const r = plan("--stack", "dev", "--base", "HEAD~1");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/~\s+update\s+phi3-rg\s/);
    expect(r.stdout).toMatch(/tags\.team: \(none\) → ml-platform/);
    expect(r.stdout).toMatch(/0 to create, \d+ to update, 0 to replace, 0 to delete/);
    expect(r.stdout).not.toMatch(/fine-tune job/);
    expect(r.stdout).not.toMatch(/data preparation job/);
  });

  it("--base <plan.json> saved with --json gives the same diff; --json gives it as data", () => {
    const saved = plan("--stack", "dev", "--json");
    expect(saved.code).toBe(0);
    const file = path.join(repo, "..", `${path.basename(repo)}-plan.json`);
    fs.writeFileSync(file, saved.stdout);
    try {
      const same = plan("--stack", "dev", "--base", file, "--json");
      expect(same.code).toBe(0);
      const diff = JSON.parse(same.stdout);
      expect(diff.changes).toEqual([]);
      expect(diff.counts.same).toBe(JSON.parse(saved.stdout).resourceCount);
    } finally {
      fs.rmSync(file, { force: true });
    }
  });
});
