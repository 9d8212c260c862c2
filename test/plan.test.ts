/**
 * The offline plan end to end (`tsx cli/plan.ts`, as `npm run plan` runs it) on the real
 * stack files, plus the failure paths: bad config and bad data exit 1 with a clear message
 * and no stack trace.
 */
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { describe, expect, it } from "vitest";
import { ROOT } from "./helpers/stack";

const TSX = path.join(ROOT, "node_modules/.bin/tsx");

function plan(...args: string[]) {
  const r = spawnSync(TSX, ["cli/plan.ts", ...args], { cwd: ROOT, encoding: "utf8", timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Write a temporary stack file, run the plan on it, always remove it. */
function planWithStackFile(stack: string, yaml: string) {
  const file = path.join(ROOT, `Pulumi.${stack}.yaml`);
  fs.writeFileSync(file, yaml);
  try {
    return plan("--stack", stack);
  } finally {
    fs.unlinkSync(file);
  }
}

describe("npm run plan (dev)", () => {
  const r = plan();

  it("lists every resource of the mission grouped by component, and exits 0", () => {
    expect(r.code, r.stderr).toBe(0);
    for (const component of ["Workspace", "Identity", "Compute", "Training", "Serving", "PromptFlow"]) {
      expect(r.stdout).toMatch(new RegExp(`^\\+ phi3:infra:${component} `, "m"));
    }
    for (const line of [
      /ResourceGroup\s+rg-phi3ft-dev/,
      /StorageAccount\s+stphi3ft[0-9a-f]{6}/,
      /Vault\s+kv-phi3ft-/,
      /Registry\s+crphi3ft/,
      /Component\s+appi-phi3ft-/,
      /Workspace\s+mlw-phi3ft-/,
      /UserAssignedIdentity\s+id-phi3ft-dev/,
      /UserAssignedIdentity\s+id-phi3ft-dev-compute/,
      /Storage Blob Data Reader on storageAccounts\/stphi3ft[0-9a-f]{6} → endpoint identity/,
      /AcrPull on registries\/crphi3ft[0-9a-f]{6} → endpoint identity/,
      /phi3-finetune training job on workspaces\/mlw-phi3ft-[0-9a-f]{6} → compute identity/,
      /^ {8}phi3-finetune training job [0-9a-f-]{36}: 9 actions, assignable in resourceGroups\/rg-phi3ft-dev/m,
      /^ {6}custom role declared by the stack, only: read, experiments\/read, .*datastores\/read$/m,
      /^ {4}compute identity: can none of the sensitive operations; cannot read the endpoint's keys, create or change deployments, .*read datastore secrets \(the storage account key\)/m,
      /^Access \(who gets what on which scope\):$/m,
      /^ {4}compute identity: Storage Blob Data Contributor on containers\/azureml-blobstore-[0-9a-f-]{36} \(/m,
      /Standard_NC24ads_A100_v4 Dedicated, nodes 0\.\.1, idle PT120S/,
      /EnvironmentVersion\s+[0-9a-f]{12}/,
      /CodeVersion\s+[0-9a-f]{12}/,
      /submits command job phi3ft-prep-[0-9a-f]{16}/,
      /submits command job phi3ft-ft-[0-9a-f]{16} and waits: python fine_tune\.py/,
      /ModelVersion\s+\d+/,
      /OnlineEndpoint\s+phi3ft-[0-9a-f]{6}/,
      /Standard_NC6s_v3 x1, .*requests 3\/PT180S\/PT120S, probes 30 failures, period PT100S, delay PT500S/,
      /set-traffic\.ts apply \(traffic=\{"blue-[0-9a-f]{8}":100\}/,
      /kind=Hub/,
      /kind=Project, hub=hub-phi3ft-/,
      /WorkspaceConnection\s+phi3-endpoint/,
    ]) {
      expect(r.stdout).toMatch(line);
    }
  });

  it("prints the exports with the key masked, the retirement warning and the cost", () => {
    expect(r.stdout).toMatch(/scoringUri: https:\/\/phi3ft-[0-9a-f]{6}\.eastus2\.inference\.ml\.azure\.com\/score/);
    expect(r.stdout).toContain("endpointKey: [secret]");
    expect(r.stdout + r.stderr).not.toMatch(/mock-primary-/);
    expect(r.stdout).toMatch(/! phi3-finetune:serving\.deployments\[0\]\.instanceType: Standard_NC6s_v3 was retired/);
    expect(r.stdout).toContain("Standard_NC4as_T4_v3");
    expect(r.stdout).toMatch(/blue: 1 × Standard_NC6s_v3 @ USD 3\.06\/h/);
    expect(r.stdout).toMatch(/^\d+ resources to create\.$/m);
  });

  it("starts with what blocks the deploy (replacements priced), then the one-off cost of each job, then the monthly cost", () => {
    const head = r.stdout.split("\n").slice(0, 12).join("\n");
    expect(head).toMatch(/^BLOCKED: `pulumi up` stops in its first minute/m);
    expect(head).toMatch(/! phi3-finetune:serving\.deployments\[0\]\.instanceType: Standard_NC6s_v3 was retired by Azure on 2025-09-30/);
    expect(head).toMatch(/Standard_NC4as_T4_v3 USD 0\.53\/h = USD 378\.72 per 30 days/);
    expect(head).toMatch(/^First `pulumi up`, one-off: ~\d+\.\d h of jobs, ~USD \d+\.\d\d/m);
    expect(head).toMatch(/^  data preparation job phi3ft-prep-[0-9a-f]{16}: ~0\.3 h × 1 × Standard_DS3_v2 @ USD 0\.23\/h = ~USD 0\.07/m);
    expect(head).toMatch(/^  fine-tune job phi3ft-ft-[0-9a-f]{16}: ~\d+\.\d h × 1 × Standard_NC24ads_A100_v4 @ USD 3\.67\/h = ~USD \d+\.\d\d \(1 × A100/m);
    expect(head).toMatch(/^Monthly, while deployed: USD 2203\.20 per 30 days/m);
    // Said once, first: not repeated among the warnings.
    expect(r.stdout.match(/Standard_NC6s_v3 was retired/g)).toHaveLength(1);
  });

  it("is byte-identical on a second run", () => {
    expect(plan().stdout).toBe(r.stdout);
  });
});

describe("other stacks", () => {
  it("--json gives the same plan as data, secrets masked", () => {
    const r = plan("--stack", "dev", "--json");
    expect(r.code).toBe(0);
    const p = JSON.parse(r.stdout);
    expect(p.stack).toBe("dev");
    expect(p.outputs.endpointKey).toBe("[secret]");
    expect(p.components.map((c: any) => c.type)).toContain("phi3:infra:Serving");
    expect(p.cost.serving.perHour).toBeGreaterThan(0);
    expect(r.stdout).not.toContain("mock-primary-");
  });

  it("local-data: data assets from the user's JSONL instead of the preparation job", () => {
    const r = plan("--stack", "local-data");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/phi3-training-train-data\s+machinelearningservices:DataVersion\s+[0-9a-f]{12}/);
    expect(r.stdout).toMatch(/phi3-training-test-data\s+machinelearningservices:DataVersion\s+[0-9a-f]{12}/);
    // The long-form datastore URI the SDK writes, in workspaceblobstore under LocalUpload/<hash>/.
    expect(r.stdout).toMatch(/uri_file azureml:\/\/subscriptions\/[0-9a-f-]{36}\/resourcegroups\/rg-phi3loc-localdata\/workspaces\/mlw-phi3loc-[0-9a-f]{6}\/datastores\/workspaceblobstore\/paths\/LocalUpload\/[0-9a-f]{32}\/train\.jsonl/);
    expect(r.stdout).not.toMatch(/submits command job phi3loc-prep-/);
    expect(r.stdout).not.toContain("phi3-compute-prep");
  });

  it("bluegreen: two deployments and a 90/10 split", () => {
    const r = plan("--stack", "bluegreen");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/phi3-serving-deployment-blue\s+machinelearningservices:OnlineDeployment\s+blue-[0-9a-f]{8}/);
    expect(r.stdout).toMatch(/phi3-serving-deployment-green\s+machinelearningservices:OnlineDeployment\s+green-[0-9a-f]{8}/);
    expect(r.stdout).toMatch(/traffic=\{"blue-[0-9a-f]{8}":90,"green-[0-9a-f]{8}":10\}/);
    // From scratch: both serve the version this stack trains (nothing else exists on a fresh subscription).
    expect(r.stdout).toMatch(/phi3-serving-deployment-blue\s+machinelearningservices:OnlineDeployment\s+blue-[0-9a-f]{8}\n\s+Standard_NC4as_T4_v3 x1, model=phi3-finetuned\/versions\/\d+,/);
    expect(r.stdout).not.toMatch(/model=phi3-finetuned\/versions\/1,/);
    expect(r.stdout).not.toContain("Warnings:");
  });

  it("cpu: E16s_v3 training with the CPU image, E4s_v3 serving, 10 rows, and a smaller bill", () => {
    const r = plan("--stack", "cpu");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/Standard_E16s_v3 Dedicated, nodes 0\.\.1/);
    expect(r.stdout).toContain("image=mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:latest");
    expect(r.stdout).toMatch(/Standard_E4s_v3 x1/);
    expect(r.stdout).toContain("--split 'train_sft[:10]'");
    expect(r.stdout).toContain("--serving-dtype float32");
    const perHour = (s: string) => Number(/total: USD ([\d.]+)\/h/.exec(s)?.[1]);
    expect(perHour(r.stdout)).toBeLessThan(perHour(plan().stdout));
  });
});

describe("failures", () => {
  it("bad config: exit 1, the key named, no stack trace", () => {
    const r = planWithStackFile("test-badcfg", "config:\n  azure-native:location: eastus2\n  phi3-finetune:trainingCluster:\n    maxNodes: -1\n");
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("phi3-finetune:trainingCluster.maxNodes: must be >= 1 (got -1)");
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(r.stdout).toBe("");
  });

  it("bad JSONL: exit 1 naming file and line of every problem", () => {
    const r = planWithStackFile(
      "test-baddata",
      "config:\n  azure-native:location: eastus2\n  phi3-finetune:data:\n    source: jsonl\n    trainFile: test/fixtures/data/bad/mixed.jsonl\n    testFile: test/fixtures/data/bad/empty.jsonl\n",
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/test\/fixtures\/data\/bad\/mixed\.jsonl:\d+: /);
    expect(r.stderr).toMatch(/test\/fixtures\/data\/bad\/empty\.jsonl: /);
    expect(r.stderr.match(/mixed\.jsonl:\d+/g)!.length).toBeGreaterThan(1);
    expect(r.stdout).toBe("");
  });

  it("missing stack file and bad arguments", () => {
    const missing = plan("--stack", "nope");
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("Pulumi.nope.yaml not found");
    const usage = plan("--bogus");
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain("Usage: npm run plan");
  });
});
