/**
 * Immutable history is never deleted (issue 9): a change of finetuning_dir/, conda.yml or the
 * data replaces code, environment and data versions, resubmits the job and registers a new
 * model version; neither that replacement nor `pulumi destroy` issues a DELETE of an asset
 * version, a job or a model version (Azure ML archives them instead). Destroy still deletes
 * everything that bills.
 *
 * Pulumi's engine decides deletions from the old and the new registrations; {@link deletions}
 * applies its rules to two mock runs: a resource whose URN disappears is deleted, one whose
 * identifying inputs change is replaced (delete + create), and `retainOnDelete` turns either
 * into "forget" (no call to Azure). A command (job submission) calls Azure on delete only
 * through its `delete` script.
 */
import * as fs from "fs";
import * as path from "path";
import { afterEach, describe, expect, it } from "vitest";
import type { ProgramRun, Registration } from "../lib/mock-runtime";
import { byName, projectCopy, runStack } from "./helpers/stack";

const ML = "azure-native:machinelearningservices";
/** Resource types that are run history in Azure ML: versions of assets and models. */
const HISTORY_TYPES = [`${ML}:CodeVersion`, `${ML}:EnvironmentVersion`, `${ML}:DataVersion`, `${ML}:ModelVersion`, `${ML}:Job`];
/** Inputs that name an Azure resource: a change replaces it (azure-native path parameters). */
const IDENTITY_INPUTS = ["name", "version", "id", "blobName", "containerName", "accountName", "workspaceName", "resourceGroupName", "endpointName", "deploymentName", "computeName"];

const isJobCommand = (r: Registration) => r.type === "command:local:Command" && !!r.inputs.environment?.AZUREML_JOB_NAME;

/** What Pulumi would do to Azure going from `before` to `after` (null: `pulumi destroy`). */
function deletions(before: ProgramRun, after: ProgramRun | null): { deleted: Registration[]; forgotten: Registration[] } {
  const deleted: Registration[] = [];
  const forgotten: Registration[] = [];
  for (const old of before.registrations.filter((r) => r.custom)) {
    const next = after?.registrations.find((r) => r.urn === old.urn);
    const replaced = next !== undefined && IDENTITY_INPUTS.some((k) => JSON.stringify(old.inputs[k]) !== JSON.stringify(next.inputs[k]));
    if (next && !replaced) continue;
    const retain = next ? next.retainOnDelete : old.retainOnDelete;
    const callsAzure = old.type === "command:local:Command" ? !!old.inputs.delete : true;
    if (retain || !callsAzure) forgotten.push(old);
    else deleted.push(old);
  }
  return { deleted, forgotten };
}

const history = (rs: Registration[]) => rs.filter((r) => HISTORY_TYPES.includes(r.type) || isJobCommand(r));
const names = (rs: Registration[]) => rs.map((r) => r.name).sort();
const jobName = (run: ProgramRun, logical: string) => byName(run, logical).inputs.environment.AZUREML_JOB_NAME as string;

let copies: string[] = [];
afterEach(() => {
  for (const dir of copies) fs.rmSync(dir, { recursive: true, force: true });
  copies = [];
});
function changedProject(change: (dir: string) => void): string {
  const dir = projectCopy();
  copies.push(dir);
  change(dir);
  return dir;
}

describe("a change of finetuning_dir/, conda.yml or the data deletes no history", () => {
  it("finetuning_dir/fine_tune.py changed: new code version, job and model version; the old ones are kept", async () => {
    const before = await runStack({ cwd: changedProject(() => undefined) });
    const after = await runStack({ cwd: changedProject((dir) => fs.appendFileSync(path.join(dir, "finetuning_dir/fine_tune.py"), "\n# changed\n")) });
    const { deleted, forgotten } = deletions(before, after);
    // The change is seen: these are replaced (new version names), so without retainOnDelete they would be DELETEd.
    expect(names(history(forgotten))).toEqual(["phi3-training-code", "phi3-training-model"]);
    expect(byName(after, "phi3-training-code").inputs.version).not.toBe(byName(before, "phi3-training-code").inputs.version);
    // New jobs under new names: the job steps are updated (they submit the new job), never deleted.
    for (const job of ["phi3-training-prep-job", "phi3-training-finetune-job"]) {
      expect(jobName(after, job)).not.toBe(jobName(before, job));
    }
    expect(history(deleted)).toEqual([]);
    // The uploaded files of the old code version stay too (the kept version points at them).
    expect(deleted.filter((r) => r.type === "azure-native:storage:Blob")).toEqual([]);
    // Serving moves to the new model: the old deployment goes (a new one under a new name is created first).
    expect(names(deleted)).toEqual(["phi3-serving-deployment-blue"]);
  });

  it("conda.yml changed: a new environment version, the old one kept", async () => {
    const before = await runStack({ cwd: changedProject(() => undefined) });
    const after = await runStack({ cwd: changedProject((dir) => fs.appendFileSync(path.join(dir, "finetuning_dir/conda.yml"), "\n# changed\n")) });
    const { deleted, forgotten } = deletions(before, after);
    expect(names(history(forgotten))).toContain("phi3-training-environment");
    expect(history(deleted)).toEqual([]);
  });

  it("the JSONL data changed (local-data stack): new data versions, job and model; the old ones kept", async () => {
    const before = await runStack({ stack: "local-data", cwd: changedProject(() => undefined) });
    const after = await runStack({
      stack: "local-data",
      cwd: changedProject((dir) => {
        const file = path.join(dir, "test/fixtures/data/train.jsonl");
        const first = fs.readFileSync(file, "utf8").split("\n")[0];
        fs.appendFileSync(file, `${first}\n`);
      }),
    });
    const { deleted, forgotten } = deletions(before, after);
    // The test file did not change: its version is neither replaced nor touched.
    expect(names(history(forgotten))).toEqual(["phi3-training-model", "phi3-training-train-data"]);
    expect(jobName(after, "phi3-training-finetune-job")).not.toBe(jobName(before, "phi3-training-finetune-job"));
    expect(history(deleted)).toEqual([]);
  });
});

describe("pulumi destroy", () => {
  it.each(["dev", "local-data", "bluegreen", "cpu"])("%s: no DELETE of an asset version, job or model; everything that bills is deleted", async (stack) => {
    const run = await runStack({ stack });
    const { deleted, forgotten } = deletions(run, null);
    expect(history(deleted)).toEqual([]);
    expect(history(forgotten).length).toBeGreaterThanOrEqual(4);
    for (const job of run.registrations.filter(isJobCommand)) expect(job.inputs.delete, job.name).toBeUndefined();
    const billable = [
      "azure-native:resources:ResourceGroup",
      "azure-native:storage:StorageAccount",
      "azure-native:containerregistry:Registry",
      "azure-native:operationalinsights:Workspace",
      `${ML}:Workspace`,
      `${ML}:Compute`,
      `${ML}:OnlineEndpoint`,
      `${ML}:OnlineDeployment`,
    ];
    for (const type of billable) {
      const ofType = run.registrations.filter((r) => r.type === type);
      expect(ofType.length, type).toBeGreaterThan(0);
      for (const r of ofType) expect(deleted, `${r.name} must be deleted by destroy`).toContain(r);
    }
  });
});
