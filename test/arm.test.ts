import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import {
  AML_API_VERSION,
  ARM_SCOPE,
  ArmError,
  DeadlineError,
  LongRunningOperationError,
  createArmClient,
  retryAfterMs,
  waitForLongRunningOperation,
  withApiVersion,
  workspacePath,
  type ArmClientOptions,
} from "../lib/arm";
import { fakeClock, longestJitter, fakeCredential, startFakeArm, type FakeArm, type FakeClock, type FakeCredential } from "./helpers/fake-arm";

const WS = { subscriptionId: "00000000-1111-2222-3333-444444444444", resourceGroup: "rg-ml", workspace: "ws-ml" };
const WS_PATH = workspacePath(WS);

let fake: FakeArm;
let clock: FakeClock;
let cred: FakeCredential;
let retries: string[];

function client(extra: Partial<ArmClientOptions> = {}) {
  return createArmClient({
    baseUrl: fake.baseUrl,
    credential: cred,
    now: clock.now,
    maxRetries: 4,
    backoffBaseMs: 100,
    maxBackoffMs: 5000,
    onRetry: (l) => retries.push(l),
    ...extra,
  });
}

beforeEach(async () => {
  fake = await startFakeArm();
  clock = fakeClock();
  longestJitter();
  cred = fakeCredential({ now: clock.now });
  retries = [];
});
afterEach(async () => {
  await fake.close();
});

describe("paths", () => {
  it("builds the Azure ML workspace path and appends the 2025-12-01 api-version", () => {
    expect(AML_API_VERSION).toBe("2025-12-01");
    expect(WS_PATH).toBe(
      "/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/rg-ml/providers/Microsoft.MachineLearningServices/workspaces/ws-ml",
    );
    expect(withApiVersion("/a")).toBe("/a?api-version=2025-12-01");
    expect(withApiVersion("/a?x=1")).toBe("/a?x=1&api-version=2025-12-01");
    expect(() => workspacePath({ ...WS, workspace: "" })).toThrow(/workspace is empty/);
  });
});

describe("retryAfterMs (the cap and the poll waits; the library does its own retries)", () => {
  it("reads retry-after-ms, x-ms-retry-after-ms, then Retry-After in seconds or as an HTTP date", () => {
    const now = Date.parse("2026-01-01T00:00:00Z");
    expect(retryAfterMs({ "retry-after": "7" }, now)).toBe(7000);
    expect(retryAfterMs({ "retry-after": "1.5" }, now)).toBe(1500);
    expect(retryAfterMs({ "retry-after": "Thu, 01 Jan 2026 00:00:20 GMT" }, now)).toBe(20_000);
    expect(retryAfterMs({ "retry-after": "Wed, 31 Dec 2025 23:00:00 GMT" }, now)).toBe(0);
    expect(retryAfterMs({ "retry-after-ms": "250", "retry-after": "9" }, now)).toBe(250);
    expect(retryAfterMs({ "x-ms-retry-after-ms": "40" }, now)).toBe(40);
    expect(retryAfterMs({ "retry-after": "soon" }, now)).toBeUndefined();
    expect(retryAfterMs({}, now)).toBeUndefined();
  });
});

describe("createArmClient", () => {
  it("sends a bearer token for the ARM scope and returns status, headers and parsed JSON", async () => {
    fake.route("GET", `${WS_PATH}/jobs/j1`, { status: 200, body: { name: "j1" }, headers: { "x-ms-request-id": "abc" } });
    const res = await client().get(withApiVersion(`${WS_PATH}/jobs/j1`));
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ name: "j1" });
    expect(res.headers["x-ms-request-id"]).toBe("abc");
    const req = fake.requests[0];
    expect(req.headers.authorization).toBe(`Bearer ${cred.token}`);
    expect(req.query["api-version"]).toBe("2025-12-01");
    expect(cred.scopes).toEqual([ARM_SCOPE]);
  });

  it("sends JSON bodies with PUT/PATCH/POST and DELETE without a body", async () => {
    fake.route("PUT", "/x", { status: 201, body: { ok: 1 } });
    fake.route("PATCH", "/x", { status: 200, body: { ok: 2 } });
    fake.route("POST", "/x/listKeys", { status: 200, body: { key: "k" } });
    fake.route("DELETE", "/x", { status: 204 });
    const c = client();
    expect((await c.put("/x", { a: 1 })).status).toBe(201);
    expect((await c.patch("/x", { b: 2 })).body).toEqual({ ok: 2 });
    expect((await c.post("/x/listKeys")).body).toEqual({ key: "k" });
    const del = await c.delete("/x");
    expect(del.status).toBe(204);
    expect(del.body).toBeUndefined();
    expect(fake.requests.map((r) => [r.method, r.body])).toEqual([
      ["PUT", { a: 1 }],
      ["PATCH", { b: 2 }],
      ["POST", undefined],
      ["DELETE", undefined],
    ]);
    expect(fake.requests[0].headers["content-type"]).toBe("application/json");
  });

  it("caches the token across requests", async () => {
    fake.route("GET", "/x", { status: 200, body: {} });
    const c = client();
    await c.get("/x");
    await c.get("/x");
    await c.get("/x");
    expect(cred.calls).toBe(1);
  });

  it("refreshes a token that is about to expire", async () => {
    // core-rest-pipeline's token cycler refreshes within 2 minutes of expiry (real clock).
    cred = fakeCredential({ now: Date.now, expiresInMs: 90_000 });
    fake.route("GET", "/x", { status: 200, body: {} });
    const c = client();
    await c.get("/x");
    await c.get("/x");
    expect(cred.calls).toBe(2);
  });

  it("honours Retry-After in seconds on 429", async () => {
    fake.route("GET", "/x", [
      { status: 429, headers: { "retry-after": "3" }, body: { error: { code: "TooManyRequests", message: "slow down" } } },
      { status: 200, body: { ok: true } },
    ]);
    const res = await client().get("/x");
    expect(res.body).toEqual({ ok: true });
    expect(clock.sleeps).toEqual([3000]);
    expect(fake.requests).toHaveLength(2);
  });

  it("honours Retry-After as an HTTP date", async () => {
    // The date form is read against the real clock (the library's); the header has whole seconds.
    const when = new Date(Date.now() + 4000).toUTCString();
    fake.route("GET", "/x", [{ status: 503, headers: { "retry-after": when } }, { status: 200, body: {} }]);
    await client().get("/x");
    expect(clock.sleeps).toHaveLength(1);
    expect(clock.sleeps[0]).toBeGreaterThan(2900);
    expect(clock.sleeps[0]).toBeLessThanOrEqual(4000);
  });

  it("caps Retry-After by maxBackoffMs", async () => {
    fake.route("GET", "/x", [{ status: 429, headers: { "retry-after": "3600" } }, { status: 200, body: {} }]);
    await client({ maxBackoffMs: 2500 }).get("/x");
    expect(clock.sleeps).toEqual([2500]);
  });

  it("backs off exponentially on 5xx up to the cap, then gives up with the ARM error", async () => {
    fake.route("GET", "/x", { status: 503, body: { error: { code: "ServiceUnavailable", message: "try later" } } });
    const err = await client({ maxBackoffMs: 350 }).get("/x").catch((e) => e);
    expect(err).toBeInstanceOf(ArmError);
    expect(err.status).toBe(503);
    expect(err.code).toBe("ServiceUnavailable");
    expect(err.message).toMatch(/try later/);
    expect(err.message).toMatch(/after 5 attempts/);
    expect(clock.sleeps).toEqual([100, 200, 350, 350]);
    expect(fake.requests).toHaveLength(5);
    expect(retries).toHaveLength(4);
  });

  it("uses jitter (random 0 halves the delay)", async () => {
    fake.route("GET", "/x", [{ status: 500 }, { status: 500 }, { status: 200, body: {} }]);
    vi.spyOn(Math, "random").mockReturnValue(0);
    await client().get("/x");
    expect(clock.sleeps).toEqual([50, 100]);
  });

  it("retries network errors", async () => {
    fake.route("GET", "/x", [{ destroy: true }, { destroy: true }, { status: 200, body: { ok: 1 } }]);
    const res = await client().get("/x");
    expect(res.body).toEqual({ ok: 1 });
    expect(fake.requests).toHaveLength(3);
    expect(retries[0]).toMatch(/network error/);
  });

  it.each(["GET", "PUT", "DELETE"] as const)("retries a %s whose answer is cut off mid-body (PARSE_ERROR), as a reset", async (method) => {
    fake.route(method, "/x", [{ status: 200, body: { padding: "p".repeat(2048) }, drop: true }, { status: 200, body: { ok: 1 } }]);
    const res = await client().request(method, "/x", method === "PUT" ? { a: 1 } : undefined);
    expect(res.body).toEqual({ ok: 1 });
    expect(fake.requests).toHaveLength(2);
    expect(retries[0]).toMatch(/network error \(the connection dropped while reading the answer/);
  });

  it.each(["POST", "PATCH"] as const)("never repeats a %s whose answer is cut off mid-body (not idempotent)", async (method) => {
    fake.route(method, "/x", [{ status: 200, body: { padding: "p".repeat(2048) }, drop: true }, { status: 200, body: { ok: 1 } }]);
    const err = await client().request(method, "/x", { a: 1 }).catch((e) => e);
    expect(err).toBeInstanceOf(ArmError);
    expect(err.code).toBe("NetworkError");
    expect(err.message).toMatch(/PARSE_ERROR.*after 1 attempt/);
    expect(fake.requests).toHaveLength(1);
  });

  it("reports exhausted network retries as ArmError NetworkError", async () => {
    fake.route("GET", "/x", { destroy: true });
    const err = await client({ maxRetries: 1 }).get("/x").catch((e) => e);
    expect(err).toBeInstanceOf(ArmError);
    expect(err.code).toBe("NetworkError");
    expect(err.status).toBe(0);
  });

  it("does not retry other 4xx and surfaces code, message and path", async () => {
    fake.route("GET", "/x", { status: 404, body: { error: { code: "ResourceNotFound", message: "The Resource 'x' was not found." } } });
    const err = await client().get("/x?api-version=2025-12-01").catch((e) => e);
    expect(err).toBeInstanceOf(ArmError);
    expect(err.status).toBe(404);
    expect(err.code).toBe("ResourceNotFound");
    expect(err.armMessage).toBe("The Resource 'x' was not found.");
    expect(err.path).toBe("/x?api-version=2025-12-01");
    expect(err.message).toContain("GET /x?api-version=2025-12-01");
    expect(fake.requests).toHaveLength(1);
  });

  it("turns a non-JSON error body into the message", async () => {
    fake.route("GET", "/x", { status: 400, body: "plain text failure" });
    const err = await client().get("/x").catch((e) => e);
    expect(err.code).toBe("HTTP400");
    expect(err.armMessage).toBe("plain text failure");
  });

  it("401: refreshes the token once, then fails clearly without leaking the token", async () => {
    fake.route("GET", "/x", (req) => ({
      status: 401,
      body: {
        error: {
          code: "InvalidAuthenticationToken",
          message: `The access token is invalid. Token: ${req.headers.authorization}`,
        },
      },
    }));
    const err = await client().get("/x").catch((e) => e);
    expect(err).toBeInstanceOf(ArmError);
    expect(err.status).toBe(401);
    expect(err.code).toBe("InvalidAuthenticationToken");
    expect(err.message).toMatch(/The access token is invalid/);
    expect(err.message).toMatch(/az login/);
    expect(cred.calls).toBe(2);
    expect(fake.requests).toHaveLength(2);
    const everything = [err.message, err.armMessage, String(err), JSON.stringify(err), JSON.stringify(err.body), err.stack, ...retries].join("\n");
    expect(everything).not.toContain(cred.token);
    expect(everything).toContain("[redacted]");
  });

  it("401 then success after the refresh", async () => {
    fake.route("GET", "/x", [{ status: 401, body: { error: { code: "ExpiredAuthenticationToken", message: "expired" } } }, { status: 200, body: { ok: 1 } }]);
    const res = await client().get("/x");
    expect(res.body).toEqual({ ok: 1 });
    expect(cred.calls).toBe(2);
  });

  it("403: no retry, clear permission hint", async () => {
    fake.route("GET", "/x", { status: 403, body: { error: { code: "AuthorizationFailed", message: "The client 'abc' does not have authorization" } } });
    const err = await client().get("/x").catch((e) => e);
    expect(err.status).toBe(403);
    expect(err.code).toBe("AuthorizationFailed");
    expect(err.message).toMatch(/lacks permission/);
    expect(fake.requests).toHaveLength(1);
    expect(err.message).not.toContain(cred.token);
  });

  it("credential failure becomes ArmError CredentialUnavailable and sends nothing", async () => {
    cred = fakeCredential({ fail: true });
    fake.route("GET", "/x", { status: 200, body: {} });
    const err = await client().get("/x").catch((e) => e);
    expect(err).toBeInstanceOf(ArmError);
    expect(err.code).toBe("CredentialUnavailable");
    expect(err.message).toMatch(/No credential in the chain/);
    expect(fake.requests).toHaveLength(0);
  });

  it("refuses to send the token to another origin", async () => {
    const err = await client().get("http://127.0.0.1:1/steal").catch((e) => e);
    expect(String(err)).toMatch(/refusing to send an ARM token/);
    expect(cred.calls).toBe(0);
  });

  it("accepts absolute URLs on its own origin", async () => {
    fake.route("GET", "/op/1", { status: 200, body: { status: "Succeeded" } });
    const res = await client().get(`${fake.baseUrl}/op/1?api-version=2025-12-01`);
    expect(res.body).toEqual({ status: "Succeeded" });
  });
});

describe("waitForLongRunningOperation", () => {
  it("follows Azure-AsyncOperation until Succeeded, honouring Retry-After", async () => {
    fake.route("PUT", "/ep", (_req, f) => ({
      status: 201,
      body: { name: "ep" },
      headers: { "azure-asyncoperation": `${f.baseUrl}/ops/1?api-version=2025-12-01`, "retry-after": "2" },
    }));
    fake.route("GET", "/ops/1", [
      { status: 200, body: { status: "InProgress" } },
      { status: 200, body: { status: "InProgress" }, headers: { "retry-after": "4" } },
      { status: 200, body: { status: "Succeeded" } },
    ]);
    const c = client();
    const initial = await c.put("/ep", { a: 1 });
    const lines: string[] = [];
    const r = await waitForLongRunningOperation(c, initial, {
      deadlineAt: clock.now() + 60_000,
      pollIntervalMs: 1000,
      now: clock.now,
      sleep: clock.sleep,
      log: (l) => lines.push(l),
      description: "update of ep",
    });
    expect(r.status).toBe("Succeeded");
    expect(clock.sleeps).toEqual([2000, 1000, 4000]);
    expect(lines).toEqual(["update of ep: InProgress", "update of ep: Succeeded"]);
  });

  it("throws LongRunningOperationError with the ARM error on Failed", async () => {
    fake.route("PUT", "/ep", (_req, f) => ({ status: 201, headers: { "azure-asyncoperation": `${f.baseUrl}/ops/2` } }));
    fake.route("GET", "/ops/2", {
      status: 200,
      body: { status: "Failed", error: { code: "BadArgument", message: "Traffic values need to sum to 100" } },
    });
    const c = client();
    const initial = await c.put("/ep", {});
    const err = await waitForLongRunningOperation(c, initial, { deadlineAt: clock.now() + 60_000, pollIntervalMs: 10, now: clock.now, sleep: clock.sleep }).catch((e) => e);
    expect(err).toBeInstanceOf(LongRunningOperationError);
    expect(err.status).toBe("Failed");
    expect(err.code).toBe("BadArgument");
    expect(err.message).toMatch(/Traffic values need to sum to 100/);
  });

  it("follows Location while 202, returns the final body", async () => {
    fake.route("DELETE", "/ep", (_req, f) => ({ status: 202, headers: { location: `${f.baseUrl}/loc/1` } }));
    fake.route("GET", "/loc/1", [{ status: 202 }, { status: 202 }, { status: 200, body: { done: true } }]);
    const c = client();
    const initial = await c.delete("/ep");
    const r = await waitForLongRunningOperation(c, initial, { deadlineAt: clock.now() + 60_000, pollIntervalMs: 10, now: clock.now, sleep: clock.sleep });
    expect(r).toEqual({ status: "Succeeded", body: { done: true } });
    expect(fake.requestsTo("GET", "/loc/1")).toHaveLength(3);
  });

  it("returns at once for a synchronous answer", async () => {
    fake.route("PUT", "/ep", { status: 200, body: { ok: 1 } });
    const c = client();
    const initial = await c.put("/ep", {});
    const r = await waitForLongRunningOperation(c, initial, { deadlineAt: clock.now() + 1, now: clock.now, sleep: clock.sleep });
    expect(r).toEqual({ status: "Synchronous", body: { ok: 1 } });
  });

  it("gives up at the deadline with DeadlineError", async () => {
    fake.route("PUT", "/ep", (_req, f) => ({ status: 201, headers: { "azure-asyncoperation": `${f.baseUrl}/ops/3` } }));
    fake.route("GET", "/ops/3", { status: 200, body: { status: "InProgress" } });
    const c = client();
    const initial = await c.put("/ep", {});
    const err = await waitForLongRunningOperation(c, initial, {
      deadlineAt: clock.now() + 10_000,
      pollIntervalMs: 3000,
      now: clock.now,
      sleep: clock.sleep,
      description: "update of ep",
    }).catch((e) => e);
    expect(err).toBeInstanceOf(DeadlineError);
    expect(err.message).toMatch(/update of ep did not finish before the deadline/);
    expect(err.message).toMatch(/last status InProgress/);
    expect(fake.requestsTo("GET", "/ops/3")).toHaveLength(3);
  });
});

describe("bearer tokens: fetched by the request that needs them, never in the background", () => {
  /** A credential whose n-th call answers `plan[n]` (a lifetime in ms, or "fail"), counting calls still pending. */
  function plannedCredential(plan: (number | "fail")[]) {
    const state = { calls: 0, pending: 0, tokens: [] as string[] };
    return {
      state,
      async getToken() {
        const step = plan[Math.min(state.calls, plan.length - 1)];
        state.calls++;
        state.pending++;
        try {
          await new Promise((r) => setImmediate(r));
          if (step === "fail") throw Object.assign(new Error("token endpoint down"), { name: "CredentialUnavailableError" });
          const token = `tok-${state.calls}-0123456789abcdef`;
          state.tokens.push(token);
          return { token, expiresOnTimestamp: clock.now() + step };
        } finally {
          state.pending--;
        }
      },
    };
  }
  const bearers = () => fake.requests.map((r) => String(r.headers.authorization ?? "").replace(/^Bearer /, ""));

  it("a token inside the refresh window is refreshed before the request, and no refresh is left running after it", async () => {
    fake.route("GET", "/x", { status: 200, body: {} });
    // 60 s to live is inside the 2-minute refresh window: core-rest-pipeline's token cycler would
    // send the old token and refresh in the background (an unhandled rejection if that fails later).
    const c = plannedCredential([60_000, 3_600_000]);
    const arm = client({ credential: c });
    await arm.get("/x");
    await arm.get("/x");
    expect(c.state.pending).toBe(0);
    expect(c.state.calls).toBe(2);
    expect(bearers()).toEqual(["tok-1-0123456789abcdef", "tok-2-0123456789abcdef"]);
    await arm.get("/x");
    expect(c.state.calls).toBe(2); // a token with an hour to live is reused
  });

  it.each([
    ["more than 30 s left: the cached token is kept and the request succeeds", 60_000, 0, 2],
    ["30 s or less left: the request fails with CredentialUnavailable (exit 4 in the programs)", 20_000, 4, 1],
  ])("a refresh that fails with %s", async (_name, lifetime, expectedFailureCode, requests) => {
    fake.route("GET", "/x", { status: 200, body: {} });
    const c = plannedCredential([lifetime, "fail"]);
    const arm = client({ credential: c });
    await arm.get("/x");
    const second = arm.get("/x").then(() => 0, (e: ArmError) => (e.code === "CredentialUnavailable" ? 4 : -1));
    expect(await second).toBe(expectedFailureCode);
    expect(c.state.pending).toBe(0);
    expect(fake.requests).toHaveLength(requests);
  });

  it("a 401 challenge gets one fresh token and one retry; a second 401 is the answer", async () => {
    fake.route("GET", "/x", [
      { status: 401, headers: { "www-authenticate": 'Bearer error="invalid_token"' }, body: { error: { code: "ExpiredAuthenticationToken", message: "expired" } } },
      { status: 200, body: { ok: 1 } },
    ]);
    const c = plannedCredential([3_600_000]);
    expect((await client({ credential: c }).get("/x")).body).toEqual({ ok: 1 });
    expect(bearers()).toEqual(["tok-1-0123456789abcdef", "tok-2-0123456789abcdef"]);
    fake.route("GET", "/y", { status: 401, headers: { "www-authenticate": "Bearer" }, body: { error: { code: "InvalidAuthenticationToken", message: "no" } } });
    await expect(client({ credential: c }).get("/y")).rejects.toMatchObject({ status: 401 });
    expect(fake.requests).toHaveLength(4);
  });

  it("refuses to send a token over plain http", async () => {
    const arm = createArmClient({ baseUrl: "http://127.0.0.1:9", credential: plannedCredential([3_600_000]), maxRetries: 0 });
    await expect(arm.get("/x")).rejects.toThrow(/non-TLS/);
  });
});
