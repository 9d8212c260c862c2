import { spawnSync } from "node:child_process";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ArmError, createArmClient, workspacePath } from "../lib/arm";
import {
  EXIT_ARM,
  EXIT_CONFIG,
  EXIT_DEADLINE,
  EXIT_JOB_FAILED,
  EXIT_OK,
  formatElapsed,
  jobErrorMessage,
  runWaitForJobFromEnv,
  studioUrl,
  waitForJob,
} from "../jobs/wait-for-job";
import { fakeClock, longestJitter, fakeCredential, startFakeArm, type FakeArm, type FakeClock, type FakeCredential, type FakeResponse } from "./helpers/fake-arm";
import { runSubmitJobFromEnv } from "../jobs/submit-job";

const COORDS = { subscriptionId: "sub-1", resourceGroup: "rg-1", workspace: "ws-1", jobName: "ft-phi3-abc123" };
const JOB_PATH = `${workspacePath(COORDS)}/jobs/${COORDS.jobName}`;
const STUDIO = "https://ml.azure.com/runs/ft-phi3-abc123?wsid=/subscriptions/sub-1/resourcegroups/rg-1/workspaces/ws-1&tid=t";

let fake: FakeArm;
let clock: FakeClock;
let cred: FakeCredential;
let lines: string[];

function job(status: string, extra: Record<string, unknown> = {}): FakeResponse {
  return {
    status: 200,
    body: {
      id: JOB_PATH,
      name: COORDS.jobName,
      properties: { jobType: "Command", status, services: { Studio: { jobServiceType: "Studio", endpoint: STUDIO } }, ...extra },
    },
  };
}

function run(opts: { pollIntervalMs?: number; deadlineMs?: number; notFoundGraceMs?: number; maxRetries?: number } = {}) {
  const client = createArmClient({
    baseUrl: fake.baseUrl,
    credential: cred,
    now: clock.now,
    maxRetries: opts.maxRetries ?? 3,
    backoffBaseMs: 100,
    maxBackoffMs: 10_000,
    onRetry: (l) => lines.push(l),
  });
  return waitForJob(
    {
      ...COORDS,
      pollIntervalMs: opts.pollIntervalMs ?? 30_000,
      deadlineMs: opts.deadlineMs ?? 86_400_000,
      notFoundGraceMs: opts.notFoundGraceMs,
    },
    { client, log: (l) => lines.push(l), now: clock.now, sleep: clock.sleep },
  );
}

beforeEach(async () => {
  fake = await startFakeArm();
  clock = fakeClock();
  longestJitter();
  cred = fakeCredential({ now: clock.now });
  lines = [];
});
afterEach(async () => {
  await fake.close();
});

describe("helpers", () => {
  it("formats elapsed time as HH:MM:SS", () => {
    expect(formatElapsed(0)).toBe("00:00:00");
    expect(formatElapsed(190_000)).toBe("00:03:10");
    expect(formatElapsed(90_061_000)).toBe("25:01:01");
    expect(formatElapsed(-5)).toBe("00:00:00");
  });

  it("uses the Studio endpoint of the job, else builds the ml.azure.com URL", () => {
    expect(studioUrl(job("Running").body, COORDS)).toBe(STUDIO);
    expect(studioUrl({ properties: {} }, COORDS)).toBe(
      "https://ml.azure.com/runs/ft-phi3-abc123?wsid=/subscriptions/sub-1/resourcegroups/rg-1/workspaces/ws-1",
    );
  });

  it("extracts the job's error from the shapes ARM may return", () => {
    expect(jobErrorMessage({ properties: { error: { code: "UserError", message: "CUDA out of memory" } } })).toBe("UserError: CUDA out of memory");
    expect(jobErrorMessage({ properties: { error: { error: { message: "nested" } } } })).toBe("nested");
    expect(
      jobErrorMessage({ properties: { error: { code: "E", message: "top", details: [{ code: "D", message: "inner detail" }] } } }),
    ).toBe("E: top (D: inner detail)");
    expect(jobErrorMessage({ properties: { errorMessage: "plain text" } })).toBe("plain text");
    expect(jobErrorMessage({ properties: { properties: { "azureml.runErrorMessage": "from the bag", other: "x" } } })).toBe("from the bag");
    expect(jobErrorMessage({ properties: { status: "Failed" } })).toBeUndefined();
    expect(jobErrorMessage(undefined)).toBeUndefined();
  });
});

describe("waitForJob", () => {
  it("prints each status change once with elapsed time and exits 0 on Completed", async () => {
    fake.route("GET", JOB_PATH, [
      job("Queued"),
      job("Queued"),
      job("Preparing"),
      job("Running"),
      job("Running"),
      job("Running"),
      job("Finalizing"),
      job("Completed"),
    ]);
    const r = await run();
    expect(r.exitCode).toBe(EXIT_OK);
    expect(r.outcome).toBe("Completed");
    expect(r.studioUrl).toBe(STUDIO);
    const statusLines = lines.filter((l) => /^\[\d\d:\d\d:\d\d\] /.test(l));
    expect(statusLines).toEqual([
      "[00:00:00] Queued",
      "[00:01:00] Preparing",
      "[00:01:30] Running",
      "[00:03:00] Finalizing",
      "[00:03:30] Completed",
    ]);
    expect(lines.filter((l) => l === `Studio: ${STUDIO}`)).toHaveLength(1);
    expect(lines.at(-1)).toBe("Job ft-phi3-abc123 Completed after 00:03:30.");
    expect(fake.requests).toHaveLength(8);
    expect(fake.requests.every((q) => q.query["api-version"] === "2025-12-01")).toBe(true);
    expect(clock.sleeps).toEqual(Array(7).fill(30_000));
  });

  it("Failed: prints the job's own error and the Studio URL, exit 1", async () => {
    fake.route("GET", JOB_PATH, [
      job("Running"),
      job("Failed", { error: { code: "UserError", message: "torch.OutOfMemoryError: CUDA out of memory" } }),
    ]);
    const r = await run();
    expect(r.exitCode).toBe(EXIT_JOB_FAILED);
    expect(r.outcome).toBe("Failed");
    expect(r.errorMessage).toBe("UserError: torch.OutOfMemoryError: CUDA out of memory");
    expect(lines).toContain("[00:00:30] Failed");
    expect(lines).toContain("Job error: UserError: torch.OutOfMemoryError: CUDA out of memory");
    expect(lines.at(-1)).toBe(`Studio: ${STUDIO}`);
  });

  it("Canceled without an error text: exit 1 and a pointer to the logs", async () => {
    fake.route("GET", JOB_PATH, [job("CancelRequested"), job("Canceled")]);
    const r = await run();
    expect(r.exitCode).toBe(EXIT_JOB_FAILED);
    expect(r.outcome).toBe("Canceled");
    expect(r.errorMessage).toBeUndefined();
    expect(lines.join("\n")).toMatch(/Azure returned no error text.*az ml job stream -n ft-phi3-abc123 -g rg-1 -w ws-1/);
  });

  it("NotResponding is terminal: exit 1", async () => {
    fake.route("GET", JOB_PATH, [job("Running"), job("NotResponding")]);
    const r = await run();
    expect(r.exitCode).toBe(EXIT_JOB_FAILED);
    expect(r.outcome).toBe("NotResponding");
    expect(lines).toContain("Job ft-phi3-abc123 ended NotResponding after 00:00:30.");
  });

  it("429 with Retry-After, then success", async () => {
    fake.route("GET", JOB_PATH, [
      job("Running"),
      { status: 429, headers: { "retry-after": "7" }, body: { error: { code: "TooManyRequests", message: "throttled" } } },
      job("Completed"),
    ]);
    const r = await run();
    expect(r.exitCode).toBe(EXIT_OK);
    expect(clock.sleeps).toEqual([30_000, 7_000]);
    expect(lines.some((l) => /HTTP 429; retry 1\/3 in 7000 ms/.test(l))).toBe(true);
    expect(lines.filter((l) => /Running/.test(l))).toHaveLength(1);
  });

  it("500s then success", async () => {
    fake.route("GET", JOB_PATH, [
      { status: 500, body: { error: { code: "InternalServerError", message: "oops" } } },
      { status: 502 },
      job("Completed"),
    ]);
    const r = await run();
    expect(r.exitCode).toBe(EXIT_OK);
    expect(clock.sleeps).toEqual([100, 200]);
  });

  it("keeps waiting through an outage longer than the client's retries", async () => {
    const outage: FakeResponse[] = Array(6).fill({ status: 503 });
    fake.route("GET", JOB_PATH, [job("Running"), ...outage, job("Completed")]);
    const r = await run({ maxRetries: 1 });
    expect(r.exitCode).toBe(EXIT_OK);
    expect(lines.filter((l) => /Azure did not answer \(503\); still waiting/.test(l))).toHaveLength(1);
  });

  it("gives up after the deadline naming the job and the elapsed time, exit 3", async () => {
    fake.route("GET", JOB_PATH, job("Running"));
    const r = await run({ pollIntervalMs: 30_000, deadlineMs: 300_000 });
    expect(r.exitCode).toBe(EXIT_DEADLINE);
    expect(r.outcome).toBe("DeadlineExceeded");
    expect(r.elapsedMs).toBe(300_000);
    const last = lines.at(-1)!;
    expect(last).toMatch(/Gave up waiting for Azure ML job ft-phi3-abc123 after 00:05:00/);
    expect(last).toMatch(/deadline 300 s/);
    expect(last).toMatch(/last status Running/);
    expect(fake.requests).toHaveLength(11);
  });

  it("does not sleep past the deadline", async () => {
    fake.route("GET", JOB_PATH, job("Running"));
    const r = await run({ pollIntervalMs: 40_000, deadlineMs: 100_000 });
    expect(r.exitCode).toBe(EXIT_DEADLINE);
    expect(clock.sleeps).toEqual([40_000, 40_000, 20_000]);
  });

  it("tolerates a 404 during the grace period", async () => {
    fake.route("GET", JOB_PATH, [
      { status: 404, body: { error: { code: "UserError", message: "job not found" } } },
      job("Completed"),
    ]);
    const r = await run({ notFoundGraceMs: 60_000 });
    expect(r.exitCode).toBe(EXIT_OK);
    expect(lines).toContain("[00:00:00] job ft-phi3-abc123 not found yet (HTTP 404); retrying");
  });

  it("a 404 past the grace period is an error", async () => {
    fake.route("GET", JOB_PATH, { status: 404, body: { error: { code: "UserError", message: "job not found" } } });
    const err = await run({ notFoundGraceMs: 60_000 }).catch((e) => e);
    expect(err).toBeInstanceOf(ArmError);
    expect(err.status).toBe(404);
    expect(fake.requests).toHaveLength(3);
  });

  it("401 bad token: throws a clear ArmError without the token", async () => {
    fake.route("GET", JOB_PATH, { status: 401, body: { error: { code: "InvalidAuthenticationToken", message: "The access token is invalid." } } });
    const err = await run().catch((e) => e);
    expect(err).toBeInstanceOf(ArmError);
    expect(err.status).toBe(401);
    expect(err.message).toMatch(/InvalidAuthenticationToken: The access token is invalid/);
    expect(err.message).not.toContain(cred.token);
  });
});

describe("runWaitForJobFromEnv", () => {
  const baseEnv = () => ({
    AZURE_SUBSCRIPTION_ID: COORDS.subscriptionId,
    AZURE_RESOURCE_GROUP: COORDS.resourceGroup,
    AZUREML_WORKSPACE: COORDS.workspace,
    AZUREML_JOB_NAME: COORDS.jobName,
    ARM_ENDPOINT: fake.baseUrl,
    WAIT_POLL_SECONDS: "5",
    WAIT_DEADLINE_SECONDS: "60",
  });
  const deps = () => ({ log: (l: string) => lines.push(l), credential: cred, now: clock.now, sleep: clock.sleep, backoffBaseMs: 1 });

  it("reads the environment, polls the configured endpoint and returns 0", async () => {
    fake.route("GET", JOB_PATH, [job("Running"), job("Completed")]);
    const code = await runWaitForJobFromEnv(baseEnv(), deps());
    expect(code).toBe(EXIT_OK);
    expect(clock.sleeps).toEqual([5000]);
  });

  it("uses the deadline from WAIT_DEADLINE_SECONDS", async () => {
    fake.route("GET", JOB_PATH, job("Queued"));
    const code = await runWaitForJobFromEnv(baseEnv(), deps());
    expect(code).toBe(EXIT_DEADLINE);
    expect(lines.at(-1)).toMatch(/after 00:01:00 \(deadline 60 s\)/);
  });

  it("missing variables: exit 2 naming them, no request", async () => {
    const env: Record<string, string | undefined> = { ...baseEnv(), AZUREML_JOB_NAME: "", AZUREML_WORKSPACE: undefined };
    const code = await runWaitForJobFromEnv(env, deps());
    expect(code).toBe(EXIT_CONFIG);
    expect(lines.join("\n")).toMatch(/missing environment variable\(s\): AZUREML_WORKSPACE, AZUREML_JOB_NAME/);
    expect(fake.requests).toHaveLength(0);
  });

  it("invalid numbers: exit 2", async () => {
    expect(await runWaitForJobFromEnv({ ...baseEnv(), WAIT_POLL_SECONDS: "soon" }, deps())).toBe(EXIT_CONFIG);
    expect(await runWaitForJobFromEnv({ ...baseEnv(), WAIT_DEADLINE_SECONDS: "-1" }, deps())).toBe(EXIT_CONFIG);
    expect(lines.join("\n")).toMatch(/WAIT_POLL_SECONDS must be a positive number of seconds/);
  });

  it("401: clear message naming the job, exit 4, token never printed", async () => {
    fake.route("GET", JOB_PATH, { status: 401, body: { error: { code: "InvalidAuthenticationToken", message: "bad token" } } });
    const code = await runWaitForJobFromEnv(baseEnv(), deps());
    expect(code).toBe(EXIT_ARM);
    const out = lines.join("\n");
    expect(out).toMatch(/could not read Azure ML job ft-phi3-abc123: .*HTTP 401 InvalidAuthenticationToken: bad token/);
    expect(out).not.toContain(cred.token);
  });

  it("credential failure: exit 4 with a login hint", async () => {
    const code = await runWaitForJobFromEnv(baseEnv(), { ...deps(), credential: fakeCredential({ fail: true }) });
    expect(code).toBe(EXIT_ARM);
    expect(lines.join("\n")).toMatch(/CredentialUnavailable.*az login/);
  });
});

describe("as a program", () => {
  it("exits 2 with a clear message when run without its environment", () => {
    const root = path.resolve(__dirname, "..");
    const env = { ...process.env };
    for (const k of ["AZURE_SUBSCRIPTION_ID", "AZURE_RESOURCE_GROUP", "AZUREML_WORKSPACE", "AZUREML_JOB_NAME"]) delete env[k];
    const r = spawnSync(process.execPath, [path.join(root, "node_modules/tsx/dist/cli.mjs"), "jobs/wait-for-job.ts"], {
      cwd: root,
      env,
      encoding: "utf8",
      timeout: 15_000,
    });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/missing environment variable\(s\): AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP, AZUREML_WORKSPACE, AZUREML_JOB_NAME/);
  });
});

describe("a training run of hours in a CI log", () => {
  let fake2: FakeArm;
  let clock2: FakeClock;
  let lines2: string[];
  beforeEach(async () => {
    fake2 = await startFakeArm();
    clock2 = fakeClock();
    lines2 = [];
  });
  afterEach(async () => {
    await fake2.close();
  });
  const env2 = (extra: Record<string, string> = {}) => ({
    AZURE_SUBSCRIPTION_ID: COORDS.subscriptionId,
    AZURE_RESOURCE_GROUP: COORDS.resourceGroup,
    AZUREML_WORKSPACE: COORDS.workspace,
    AZUREML_JOB_NAME: COORDS.jobName,
    ARM_ENDPOINT: fake2.baseUrl,
    WAIT_POLL_SECONDS: "60",
    ...extra,
  });
  const deps2 = () => ({ log: (l: string) => lines2.push(l), credential: fakeCredential({ now: clock2.now }), now: clock2.now, sleep: clock2.sleep, backoffBaseMs: 1 });

  it("shows progress while it runs: the status again every 10 minutes with the elapsed time and the Studio URL", async () => {
    let polls = 0;
    fake2.route("GET", JOB_PATH, () => (++polls >= 36 ? job("Completed") : job("Running")));
    expect(await runWaitForJobFromEnv(env2(), deps2())).toBe(EXIT_OK);
    const beats = lines2.filter((l) => /^\[\d\d:\d\d:\d\d\] still Running: https:\/\/ml\.azure\.com\//.test(l));
    expect(beats.map((l) => l.slice(0, 10))).toEqual(["[00:10:00]", "[00:20:00]", "[00:30:00]"]);
  });

  it("a re-run after a cancelled or timed-out workflow picks up the same job: no second PUT", async () => {
    let submitted: { properties: Record<string, unknown> } | undefined;
    let polls = 0;
    const status = () => (++polls > 3 ? "Completed" : "Running");
    fake2.route("GET", JOB_PATH, () =>
      submitted ? { status: 200, body: { name: COORDS.jobName, properties: { ...submitted.properties, status: status() } } } : { status: 404, body: { error: { code: "NotFound", message: "no job" } } },
    );
    fake2.route("PUT", JOB_PATH, (req) => ((submitted = req.body as typeof submitted), { status: 201, body: {} }));
    const submitEnv = (deadline: string) => env2({ AZUREML_JOB_BODY: JSON.stringify({ properties: { jobType: "Command", command: "python fine_tune.py" } }), WAIT_DEADLINE_SECONDS: deadline });
    // First run: the workflow's time runs out while the job runs (here, the program's deadline).
    expect(await runSubmitJobFromEnv(submitEnv("90"), deps2())).toBe(3);
    // Same inputs, same content-hash name: the second run finds the job and only waits.
    expect(await runSubmitJobFromEnv(submitEnv("86400"), deps2())).toBe(EXIT_OK);
    expect(fake2.requestsTo("PUT", JOB_PATH)).toHaveLength(1);
    expect(lines2.join("\n")).toContain(`Job ${COORDS.jobName} already exists (status Running) with the same body`);
  });
});
