/**
 * Issue 19: before any upload of the `private` profile, the preflight checks that this machine
 * reaches the storage account (lib/preflight.ts `checkStorageReach`, jobs/preflight.ts with
 * PREFLIGHT_STORAGE_URL), against a fake Blob endpoint on 127.0.0.1, and the stack runs that
 * check before every upload.
 */
import * as net from "net";
import { afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { checkStorageReach, STORAGE_REACH_SCOPE } from "../lib/preflight";
import { runStorageReachFromEnv } from "../jobs/preflight";
import type { ProgramRun } from "../lib/mock-runtime";
import { fakeCredential, startFakeArm, type FakeArm, type FakeResponse } from "./helpers/fake-arm";
import { byName, commandEnv, ofType, runStack } from "./helpers/stack";

const CONTAINER = "/stx/azureml-blobstore-0000";
let fake: FakeArm;
beforeEach(async () => {
  fake = await startFakeArm();
});
afterEach(async () => {
  await fake.close();
});

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe("checkStorageReach", () => {
  it("passes when the container answers, asking with a storage-scoped token (Get Container Properties)", async () => {
    fake.route("GET", CONTAINER, { status: 200 });
    const credential = fakeCredential();
    const check = await checkStorageReach(fake.baseUrl + CONTAINER, { credential, maxRetries: 0 });
    expect(check).toMatchObject({ id: "storage:reach", status: "PASS" });
    const [req] = fake.requestsTo("GET", CONTAINER);
    expect(req.query).toEqual({ restype: "container" });
    expect(req.headers).toMatchObject({ authorization: `Bearer ${credential.token}`, "x-ms-version": "2023-11-03" });
    expect(credential.scopes.every((s) => s === STORAGE_REACH_SCOPE)).toBe(true);
  });

  const refusals: [string, FakeResponse, RegExp, RegExp][] = [
    ["the account's network refuses this machine", { status: 403, headers: { "x-ms-error-code": "AuthorizationFailure" } }, /refuses this machine's network/, /security\.deployerNetwork/],
    ["the data role is missing", { status: 403, headers: { "x-ms-error-code": "AuthorizationPermissionMismatch" } }, /reachable, but this identity may not read it/, /Storage Blob Data Contributor/],
    ["the container is missing", { status: 404, headers: { "x-ms-error-code": "ContainerNotFound" } }, /container does not exist/, /workspace/],
    ["the connection drops", { destroy: true }, /cannot reach/, /security\.deployerNetwork.*private endpoint/],
    ["storage answers something else", { status: 409, headers: { "x-ms-error-code": "AccountIsDisabled" } }, /HTTP 409 AccountIsDisabled/, /deployerNetwork/],
  ];
  it.each(refusals)("fails when %s, naming the remedy", async (_what, response, detail, remedy) => {
    fake.route("GET", CONTAINER, response);
    const credential = fakeCredential();
    const check = await checkStorageReach(fake.baseUrl + CONTAINER, { credential, maxRetries: 0 });
    expect(check.status).toBe("FAIL");
    expect(check.detail).toMatch(detail);
    expect(check.remedy).toMatch(remedy);
    expect(JSON.stringify(check)).not.toContain(credential.token);
  });

  it("fails when nothing listens at the address (no route to the account)", async () => {
    const port = await closedPort();
    const check = await checkStorageReach(`https://127.0.0.1:${port}${CONTAINER}`, { credential: fakeCredential(), maxRetries: 0 });
    expect(check).toMatchObject({ status: "FAIL", detail: expect.stringMatching(/cannot reach 127\.0\.0\.1:\d+\/stx\/azureml-blobstore-0000: .*ECONNREFUSED/) });
  });

  it("never sends a token over plain HTTP to anything but loopback", async () => {
    const credential = fakeCredential();
    const check = await checkStorageReach("http://stx.blob.core.windows.net/c", { credential, maxRetries: 0 });
    expect(check).toMatchObject({ status: "FAIL", detail: expect.stringMatching(/refusing to send a token/) });
    expect(credential.scopes).toEqual([]);
  });
});

describe("jobs/preflight.ts with PREFLIGHT_STORAGE_URL", () => {
  it("exits 0 when the account answers and 1 with the remedy when it refuses, never printing the token", async () => {
    const credential = fakeCredential();
    fake.route("GET", CONTAINER, [{ status: 200 }, { status: 403, headers: { "x-ms-error-code": "AuthorizationFailure" } }]);
    const out: string[] = [];
    const err: string[] = [];
    const deps = { log: (l: string) => out.push(l), error: (l: string) => err.push(l), credential };
    expect(await runStorageReachFromEnv({ PREFLIGHT_STORAGE_URL: fake.baseUrl + CONTAINER }, deps)).toBe(0);
    expect(out.join("\n")).toMatch(/PASS\s+Storage account reachable for uploads/);
    expect(await runStorageReachFromEnv({ PREFLIGHT_STORAGE_URL: fake.baseUrl + CONTAINER }, deps)).toBe(1);
    expect(err.join("\n")).toMatch(/nothing was uploaded[\s\S]*FAIL\s+Storage account reachable[\s\S]*remedy: .*security\.deployerNetwork/);
    expect([...out, ...err].join("\n")).not.toContain(credential.token);
  });

  it("exits 2 without the URL", async () => {
    const err: string[] = [];
    expect(await runStorageReachFromEnv({}, { log: () => undefined, error: (l) => err.push(l), credential: fakeCredential() })).toBe(2);
    expect(err.join("\n")).toMatch(/PREFLIGHT_STORAGE_URL/);
  });
});

describe("the private stack checks storage before every upload", () => {
  let run: ProgramRun;
  beforeAll(async () => {
    run = await runStack({ stack: "private" });
  });

  it("declares the check on the uploads' container, and every upload waits for it", () => {
    const reach = byName(run, "phi3-training-storage-reach");
    expect(reach.inputs.create).toBe("npx --no-install tsx jobs/preflight.ts");
    const uploads = ofType(run, "command:local:Command").filter((r) => commandEnv(r)?.UPLOADS);
    expect(uploads.length).toBeGreaterThan(0);
    for (const u of uploads) {
      expect(u.dependencies).toContain(reach.urn);
      expect(commandEnv(u).BLOB_CONTAINER_URL).toBe(commandEnv(reach).PREFLIGHT_STORAGE_URL);
    }
    // It checks with the deployer's role in effect, as the uploads run.
    expect(reach.dependencies).toContain(byName(run, "phi3-identity-roles-in-effect").urn);
  });

  it("the dev stack (shared key, storage.Blob) has no such step", async () => {
    const dev = await runStack();
    expect(dev.registrations.some((r) => r.name === "phi3-training-storage-reach")).toBe(false);
  });
});
