/** jobs/submit-job.ts against a fake ARM server on 127.0.0.1. */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { workspacePath } from "../lib/arm";
import { parseJobBody, runSubmitJobFromEnv } from "../jobs/submit-job";
import { EXIT_ARM, EXIT_CONFIG, EXIT_JOB_FAILED, EXIT_OK } from "../jobs/wait-for-job";
import { fakeClock, fakeCredential, startFakeArm, type FakeArm, type FakeClock } from "./helpers/fake-arm";

const COORDS = { subscriptionId: "sub-1", resourceGroup: "rg-1", workspace: "ws-1" };
const JOB = "phi3ft-ft-0123456789abcdef";
const JOB_PATH = `${workspacePath(COORDS)}/jobs/${JOB}`;
const BODY = { properties: { jobType: "Command", command: "python fine_tune.py", displayName: "fine-tune" } };

let fake: FakeArm;
let clock: FakeClock;
let out: string[];

const env = (extra: Record<string, string | undefined> = {}) => ({
  AZURE_SUBSCRIPTION_ID: COORDS.subscriptionId,
  AZURE_RESOURCE_GROUP: COORDS.resourceGroup,
  AZUREML_WORKSPACE: COORDS.workspace,
  AZUREML_JOB_NAME: JOB,
  AZUREML_JOB_BODY: JSON.stringify(BODY),
  ARM_ENDPOINT: fake.baseUrl,
  WAIT_POLL_SECONDS: "1",
  ...extra,
});
const run = (e = env()) =>
  runSubmitJobFromEnv(e, { log: (l) => out.push(l), credential: fakeCredential({ now: clock.now }), now: clock.now, sleep: clock.sleep, backoffBaseMs: 1, maxRetries: 2 });
const job = (status: string) => ({ status: 200, body: { name: JOB, properties: { ...BODY.properties, status } } });

beforeEach(async () => {
  fake = await startFakeArm();
  clock = fakeClock();
  out = [];
});
afterEach(async () => {
  await fake.close();
});

describe("submit-job", () => {
  it("PUTs the exact body under the job name when the job does not exist, then waits to Completed", async () => {
    let created = false;
    fake.route("GET", JOB_PATH, () => (created ? job("Completed") : { status: 404, body: { error: { code: "UserError", message: "not found" } } }));
    fake.route("PUT", JOB_PATH, () => {
      created = true;
      return { status: 201, body: { name: JOB, properties: { ...BODY.properties, status: "NotStarted" } } };
    });
    expect(await run()).toBe(EXIT_OK);
    const puts = fake.requestsTo("PUT", JOB_PATH);
    expect(puts).toHaveLength(1);
    expect(puts[0].body).toEqual(BODY);
    expect(puts[0].query["api-version"]).toBe("2025-12-01");
    expect(out.join("\n")).toContain(`Submitted job ${JOB}`);
  });

  it("never resubmits an existing job (jobs are immutable) and reports its failure", async () => {
    fake.route("GET", JOB_PATH, job("Failed"));
    expect(await run()).toBe(EXIT_JOB_FAILED);
    expect(fake.requestsTo("PUT", JOB_PATH)).toHaveLength(0);
    expect(out.join("\n")).toContain("already exists (status Failed)");
  });

  it("fails with exit 4 and the ARM message when the PUT is rejected", async () => {
    fake.route("GET", JOB_PATH, { status: 404, body: { error: { code: "NotFound", message: "no job" } } });
    fake.route("PUT", JOB_PATH, { status: 400, body: { error: { code: "UserError", message: "Compute a100-train not found" } } });
    expect(await run()).toBe(EXIT_ARM);
    expect(out.join("\n")).toContain("Compute a100-train not found");
  });

  it("rejects a missing or malformed body before calling Azure", async () => {
    expect(await run(env({ AZUREML_JOB_BODY: "{not json" }))).toBe(EXIT_CONFIG);
    expect(await run(env({ AZUREML_JOB_BODY: undefined }))).toBe(EXIT_CONFIG);
    expect(fake.requests).toHaveLength(0);
    expect(parseJobBody(JSON.stringify({ properties: { jobType: "Sweep" } }))).toMatch(/jobType/);
    expect(parseJobBody(JSON.stringify({ properties: {} }))).toMatch(/jobType/);
  });

  it("accepts the managed mode's pipeline job and submits it like a command job", async () => {
    const pipeline = { properties: { jobType: "Pipeline", displayName: "fine-tune (chat_completion_pipeline 0.0.81)", jobs: { finetune: { type: "pipeline" } } } };
    expect(parseJobBody(JSON.stringify(pipeline))).toEqual(pipeline);
    let created = false;
    const status = (s: string) => ({ status: 200, body: { name: JOB, properties: { ...pipeline.properties, status: s } } });
    fake.route("GET", JOB_PATH, () => (created ? status("Completed") : { status: 404, body: { error: { code: "UserError", message: "not found" } } }));
    fake.route("PUT", JOB_PATH, () => {
      created = true;
      return { ...status("NotStarted"), status: 201 };
    });
    expect(await run(env({ AZUREML_JOB_BODY: JSON.stringify(pipeline) }))).toBe(EXIT_OK);
    const puts = fake.requestsTo("PUT", JOB_PATH);
    expect(puts).toHaveLength(1);
    expect(puts[0].body).toEqual(pipeline);
  });
});
