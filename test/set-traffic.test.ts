import { spawnSync } from "node:child_process";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ArmError, DeadlineError, LongRunningOperationError, createArmClient, workspacePath } from "../lib/arm";
import {
  EXIT_CONFIG,
  EXIT_DEADLINE,
  EXIT_FAILED,
  EXIT_OK,
  TrafficConfigError,
  TrafficError,
  applyTraffic,
  computeReleaseTraffic,
  endpointPutBody,
  largestRemainder,
  releaseTraffic,
  runSetTrafficFromEnv,
  validateTraffic,
  type TrafficMap,
  type TrafficOptions,
} from "../jobs/set-traffic";
import { fakeClock, longestJitter, fakeCredential, startFakeArm, type FakeArm, type FakeClock, type FakeCredential, type RecordedRequest } from "./helpers/fake-arm";

const WS = { subscriptionId: "sub-1", resourceGroup: "rg-1", workspace: "ws-1" };
const EP = "phi3-ep-x1";
const EP_PATH = `${workspacePath(WS)}/onlineEndpoints/${EP}`;
const UAI = "/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.ManagedIdentity/userAssignedIdentities/ep-id";

let fake: FakeArm;
let clock: FakeClock;
let cred: FakeCredential;
let lines: string[];

/**
 * A small model of an Azure ML endpoint and its deployments driven by the fake clock.
 * Deployment states follow a timeline ([ms since start, state]); "NotFound" answers 404.
 * Every PUT is checked like Azure would, and against the safety property: no deployment with
 * traffic > 0 in the body may be anything but Succeeded at the moment of the PUT.
 */
interface Model {
  endpoint: Record<string, any> | undefined;
  endpointTimeline: [number, string][];
  deployments: Record<string, [number, string][]>;
  violations: string[];
  puts: { at: number; body: any }[];
  opPolls: number;
  failOperation?: { code: string; message: string };
  conflicts: number;
}

let model: Model;
let t0: number;

function stateAt(timeline: [number, string][], t: number): string {
  let s = timeline[0][1];
  for (const [at, st] of timeline) if (t - t0 >= at) s = st;
  return s;
}

function endpointResource(traffic: TrafficMap, mirrorTraffic: TrafficMap = {}): Record<string, any> {
  return {
    id: EP_PATH,
    name: EP,
    type: "Microsoft.MachineLearningServices/workspaces/onlineEndpoints",
    location: "eastus2",
    kind: "Managed",
    tags: { stack: "dev" },
    identity: {
      type: "UserAssigned",
      principalId: "p-1",
      tenantId: "t-1",
      userAssignedIdentities: { [UAI]: { principalId: "p-2", clientId: "c-2" } },
    },
    systemData: { createdBy: "someone" },
    properties: {
      authMode: "Key",
      description: "phi3",
      publicNetworkAccess: "Enabled",
      scoringUri: "https://phi3-ep-x1.eastus2.inference.ml.azure.com/score",
      swaggerUri: "https://phi3-ep-x1.eastus2.inference.ml.azure.com/swagger.json",
      provisioningState: "Succeeded",
      traffic,
      mirrorTraffic,
    },
  };
}

function installModel(fakeArm: FakeArm) {
  fakeArm.route("GET", /\/onlineEndpoints\/[^/]+\/deployments\/[^/]+$/, (req) => {
    const name = decodeURIComponent(req.path.split("/").pop()!);
    const tl = model.deployments[name];
    const state = tl ? stateAt(tl, clock.now()) : "NotFound";
    if (state === "NotFound" || !model.endpoint) {
      return { status: 404, body: { error: { code: "UserError", message: `deployment ${name} not found` } } };
    }
    return { status: 200, body: { name, properties: { provisioningState: state, endpointComputeType: "Managed" } } };
  });
  fakeArm.route("GET", EP_PATH, () => {
    if (!model.endpoint) return { status: 404, body: { error: { code: "UserError", message: "endpoint not found" } } };
    const body = structuredClone(model.endpoint);
    if (model.endpointTimeline.length && body.properties.provisioningState === "Succeeded") {
      body.properties.provisioningState = stateAt(model.endpointTimeline, clock.now());
    }
    return { status: 200, body };
  });
  fakeArm.route("PUT", EP_PATH, (req, f) => {
    if (model.conflicts > 0) {
      model.conflicts--;
      return { status: 409, body: { error: { code: "Conflict", message: "another operation is in progress" } } };
    }
    const body = req.body as any;
    model.puts.push({ at: clock.now() - t0, body });
    for (const k of ["id", "name", "type", "systemData"]) if (k in body) model.violations.push(`read-only ${k} sent`);
    for (const k of ["scoringUri", "swaggerUri", "provisioningState"]) if (k in body.properties) model.violations.push(`read-only properties.${k} sent`);
    const traffic: TrafficMap = body.properties.traffic ?? {};
    const mirror: TrafficMap = body.properties.mirrorTraffic ?? {};
    for (const [d, p] of [...Object.entries(traffic), ...Object.entries(mirror)]) {
      const tl = model.deployments[d];
      const state = tl ? stateAt(tl, clock.now()) : "NotFound";
      if (state === "NotFound") model.violations.push(`PUT names missing deployment ${d} (${p}%)`);
      if (p > 0 && state !== "Succeeded") model.violations.push(`PUT sends ${p}% to ${d} while ${state}`);
    }
    const s = Object.values(traffic).reduce((a, b) => a + b, 0);
    if (s !== 100 && s !== 0) {
      return { status: 400, body: { error: { code: "BadArgument", message: "Traffic values need to sum to 100" } } };
    }
    model.endpoint!.properties.traffic = traffic;
    model.endpoint!.properties.mirrorTraffic = mirror;
    model.endpoint!.properties.provisioningState = "Updating";
    model.opPolls = 0;
    return {
      status: 201,
      body,
      headers: { "azure-asyncoperation": `${f.baseUrl}/providers/Microsoft.MachineLearningServices/locations/eastus2/mfeOperationsStatus/op1?api-version=2025-12-01` },
    };
  });
  fakeArm.route("GET", /mfeOperationsStatus\/op1$/, () => {
    model.opPolls++;
    if (model.opPolls < 2) return { status: 200, body: { status: "InProgress" } };
    if (model.failOperation) {
      model.endpoint!.properties.provisioningState = "Failed";
      return { status: 200, body: { status: "Failed", error: model.failOperation } };
    }
    model.endpoint!.properties.provisioningState = "Succeeded";
    return { status: 200, body: { status: "Succeeded" } };
  });
}

function opts(extra: Partial<TrafficOptions>): TrafficOptions {
  return { ...WS, endpoint: EP, deadlineMs: 3_600_000, pollIntervalMs: 15_000, ...extra };
}

function deps() {
  const client = createArmClient({
    baseUrl: fake.baseUrl,
    credential: cred,
    now: clock.now,
    backoffBaseMs: 10,
    maxBackoffMs: 1000,
  });
  return { client, log: (l: string) => lines.push(l), now: clock.now, sleep: clock.sleep };
}

const puts = () => fake.requestsTo("PUT", EP_PATH);
const deploymentGets = (d: string): RecordedRequest[] => fake.requestsTo("GET", `${EP_PATH}/deployments/${d}`);

beforeEach(async () => {
  fake = await startFakeArm();
  clock = fakeClock();
  longestJitter();
  t0 = clock.now();
  cred = fakeCredential({ now: clock.now });
  lines = [];
  model = {
    endpoint: endpointResource({ blue: 100 }),
    endpointTimeline: [],
    deployments: { blue: [[0, "Succeeded"]] },
    violations: [],
    puts: [],
    opPolls: 0,
    conflicts: 0,
  };
  installModel(fake);
});
afterEach(async () => {
  await fake.close();
});

describe("validateTraffic", () => {
  it("accepts a split summing to 100, an empty one and an all-zero one", () => {
    expect(validateTraffic({ blue: 90, green: 10 }, undefined)).toEqual({ traffic: { blue: 90, green: 10 }, mirrorTraffic: {} });
    expect(validateTraffic({}, {})).toEqual({ traffic: {}, mirrorTraffic: {} });
    expect(validateTraffic({ blue: 0 })).toEqual({ traffic: { blue: 0 }, mirrorTraffic: {} });
    expect(validateTraffic({ blue: 100 }, { green: 50 }).mirrorTraffic).toEqual({ green: 50 });
  });

  it.each([
    [{ blue: 90, green: 9 }, undefined, /sum to exactly 100.*got 99/],
    [{ blue: 101 }, undefined, /between 0 and 100/],
    [{ blue: -10, green: 110 }, undefined, /between 0 and 100/],
    [{ blue: 50.5, green: 49.5 }, undefined, /integer percent/],
    [{ blue: "100" }, undefined, /integer percent/],
    [[100], undefined, /JSON object/],
    [{ "bad/name": 100 }, undefined, /not a valid deployment name/],
    [{ blue: 100 }, { green: 51 }, /between 0 and 50/],
    [{ blue: 100 }, { green: 30, red: 30 }, /at most 50%/],
    [{ blue: 100 }, { green: 10, red: 10 }, /only one deployment/],
    [{ blue: 90, green: 10 }, { green: 10 }, /green cannot receive mirror traffic .* while it takes live traffic/],
    [{}, { green: 10 }, /needs live traffic/],
  ])("rejects %j / mirror %j", (traffic, mirror, msg) => {
    expect(() => validateTraffic(traffic, mirror)).toThrow(TrafficConfigError);
    expect(() => validateTraffic(traffic, mirror)).toThrow(msg);
  });
});

describe("release arithmetic", () => {
  it("largest remainder sums to 100 deterministically", () => {
    expect(largestRemainder({ a: 1, b: 1, c: 1 })).toEqual({ a: 34, b: 33, c: 33 });
    expect(largestRemainder({ a: 20, b: 30 })).toEqual({ a: 40, b: 60 });
    expect(largestRemainder({ a: 1, b: 2 })).toEqual({ a: 33, b: 67 });
    expect(largestRemainder({ a: 0, b: 0 })).toEqual({ a: 0, b: 0 });
    expect(largestRemainder({ x: 0, y: 7 })).toEqual({ x: 0, y: 100 });
    const cases: TrafficMap[] = [{ a: 3, b: 3, c: 3, d: 1 }, { a: 17, b: 29, c: 1 }, { a: 1, b: 1, c: 1, d: 1, e: 1, f: 1 }];
    for (const w of cases) {
      expect(Object.values(largestRemainder(w)).reduce((x, y) => x + y, 0)).toBe(100);
    }
  });

  it("zeroes managed deployments, keeps unmanaged mirror, scales the remainder", () => {
    expect(
      computeReleaseTraffic({ traffic: { blue: 20, green: 30, red: 50 }, mirrorTraffic: { shadow: 10, red2: 5 } }, ["red", "red2"]),
    ).toEqual({ traffic: { blue: 40, green: 60, red: 0 }, mirrorTraffic: { shadow: 10, red2: 0 } });
    expect(computeReleaseTraffic({ traffic: { blue: 0, green: 100 }, mirrorTraffic: {} }, ["green"])).toEqual({
      traffic: { blue: 0, green: 0 },
      mirrorTraffic: {},
    });
  });

  it("builds the PUT body without read-only fields and keeps the rest", () => {
    const body = endpointPutBody(endpointResource({ blue: 100 }), { traffic: { blue: 50, green: 50 }, mirrorTraffic: {} }) as any;
    expect(body).toEqual({
      location: "eastus2",
      kind: "Managed",
      tags: { stack: "dev" },
      identity: { type: "UserAssigned", userAssignedIdentities: { [UAI]: {} } },
      properties: {
        authMode: "Key",
        description: "phi3",
        publicNetworkAccess: "Enabled",
        traffic: { blue: 50, green: 50 },
        mirrorTraffic: {},
      },
    });
  });
});

describe("applyTraffic", () => {
  it("waits while the new deployment is Creating, then routes traffic to it", async () => {
    model.deployments.green = [[0, "Creating"], [100_000, "Succeeded"]];
    const r = await applyTraffic(opts({ traffic: { blue: 90, green: 10 } }), deps());
    expect(r.changed).toBe(true);
    expect(model.violations).toEqual([]);
    expect(model.puts).toHaveLength(1);
    expect(model.puts[0].at).toBeGreaterThanOrEqual(100_000);
    expect(model.puts[0].body.properties.traffic).toEqual({ blue: 90, green: 10 });
    expect(model.endpoint!.properties.traffic).toEqual({ blue: 90, green: 10 });
    expect(lines).toContain("deployment green: Creating");
    expect(lines).toContain("deployment green: Succeeded");
    expect(lines).toContain(`endpoint ${EP} traffic: blue=100 → blue=90, green=10`);
    expect(fake.requests.every((q) => q.query["api-version"] === "2025-12-01")).toBe(true);
    expect(lines.join("\n")).not.toContain(cred.token);
  });

  it("waits while the deployment does not exist yet (404), then Creating, then Succeeded", async () => {
    model.deployments.green = [[0, "NotFound"], [45_000, "Creating"], [90_000, "Succeeded"]];
    const r = await applyTraffic(opts({ traffic: { green: 100 } }), deps());
    expect(r.changed).toBe(true);
    expect(model.violations).toEqual([]);
    expect(model.puts[0].at).toBeGreaterThanOrEqual(90_000);
    expect(model.puts[0].body.properties.traffic).toEqual({ blue: 0, green: 100 });
    expect(lines.slice(0, 4)).toEqual([
      `endpoint ${EP}: applying traffic green=100; waiting for green to be Succeeded`,
      "deployment green: not found yet",
      "deployment green: Creating",
      "deployment green: Succeeded",
    ]);
  });

  it("a Failed deployment is an error and nothing is PUT", async () => {
    model.deployments.green = [[0, "Creating"], [30_000, "Failed"]];
    const err = await applyTraffic(opts({ traffic: { blue: 50, green: 50 } }), deps()).catch((e) => e);
    expect(err).toBeInstanceOf(TrafficError);
    expect(err.message).toMatch(/deployment green of endpoint phi3-ep-x1 is Failed/);
    expect(puts()).toHaveLength(0);
  });

  it("is idempotent: no PUT when the endpoint already routes as desired", async () => {
    model.deployments.green = [[0, "Succeeded"]];
    model.endpoint = endpointResource({ blue: 90, green: 10, old: 0 });
    const r = await applyTraffic(opts({ traffic: { green: 10, blue: 90 } }), deps());
    expect(r.changed).toBe(false);
    expect(puts()).toHaveLength(0);
    expect(lines.at(-1)).toBe(`endpoint ${EP} already routes blue=90, green=10: nothing changes`);
  });

  it("a changed mirror alone triggers a PUT; the mirror target must be Succeeded", async () => {
    model.deployments.green = [[0, "Updating"], [20_000, "Succeeded"]];
    const r = await applyTraffic(opts({ traffic: { blue: 100 }, mirrorTraffic: { green: 20 } }), deps());
    expect(r.changed).toBe(true);
    expect(model.violations).toEqual([]);
    expect(model.puts[0].at).toBeGreaterThanOrEqual(20_000);
    expect(model.puts[0].body.properties.mirrorTraffic).toEqual({ green: 20 });
    expect(deploymentGets("green").length).toBeGreaterThanOrEqual(2);
    expect(lines).toContain(`endpoint ${EP} mirror traffic: (none) → green=20`);
  });

  it("removing a mirror is applied too", async () => {
    model.deployments.green = [[0, "Succeeded"]];
    model.endpoint = endpointResource({ blue: 100 }, { green: 10 });
    const r = await applyTraffic(opts({ traffic: { blue: 100 }, mirrorTraffic: {} }), deps());
    expect(r.changed).toBe(true);
    expect(model.puts[0].body.properties.mirrorTraffic).toEqual({ green: 0 });
    expect(deploymentGets("green")).toHaveLength(0);
  });

  it("never PUTs while a receiver is busy: re-checks after waiting for the endpoint", async () => {
    // green is ready at first, the endpoint is busy until 120 s, and green starts an update at
    // 60 s that ends at 200 s: the PUT must wait for 200 s.
    model.deployments.green = [[0, "Succeeded"], [60_000, "Updating"], [200_000, "Succeeded"]];
    model.endpointTimeline = [[0, "Updating"], [120_000, "Succeeded"]];
    const r = await applyTraffic(opts({ traffic: { blue: 50, green: 50 } }), deps());
    expect(r.changed).toBe(true);
    expect(model.violations).toEqual([]);
    expect(model.puts[0].at).toBeGreaterThanOrEqual(200_000);
  });

  it("retries a 409 Conflict", async () => {
    model.deployments.green = [[0, "Succeeded"]];
    model.conflicts = 1;
    const r = await applyTraffic(opts({ traffic: { green: 100 } }), deps());
    expect(r.changed).toBe(true);
    expect(lines.some((l) => /busy \(409 Conflict\)/.test(l))).toBe(true);
    expect(model.puts).toHaveLength(1);
  });

  it("reports a failed update operation", async () => {
    model.deployments.green = [[0, "Succeeded"]];
    model.failOperation = { code: "BadArgument", message: "Deployment green is not ready" };
    const err = await applyTraffic(opts({ traffic: { green: 100 } }), deps()).catch((e) => e);
    expect(err).toBeInstanceOf(LongRunningOperationError);
    expect(err.message).toMatch(/ended Failed: BadArgument: Deployment green is not ready/);
  });

  it("gives up at the deadline without a PUT", async () => {
    model.deployments.green = [[0, "Creating"]];
    const err = await applyTraffic(opts({ traffic: { green: 100 }, deadlineMs: 120_000 }), deps()).catch((e) => e);
    expect(err).toBeInstanceOf(DeadlineError);
    expect(err.message).toMatch(/gave up after 120 s .*waiting for deployment\(s\) green to reach Succeeded/);
    expect(puts()).toHaveLength(0);
    expect(clock.now() - t0).toBe(120_000);
  });

  it("an endpoint that does not exist is an error", async () => {
    model.endpoint = undefined;
    const err = await applyTraffic(opts({ traffic: {} }), deps()).catch((e) => e);
    expect(err).toBeInstanceOf(TrafficError);
    expect(err.message).toMatch(/does not exist/);
  });

  it("validates before touching Azure", async () => {
    const err = await applyTraffic(opts({ traffic: { blue: 60, green: 60 } }), deps()).catch((e) => e);
    expect(err).toBeInstanceOf(TrafficConfigError);
    expect(fake.requests).toHaveLength(0);
  });
});

describe("releaseTraffic", () => {
  it("zeroes managed deployments and scales the unmanaged remainder to 100", async () => {
    model.deployments = { a: [[0, "Succeeded"]], b: [[0, "Succeeded"]], c: [[0, "Succeeded"]], mine: [[0, "Succeeded"]] };
    model.endpoint = endpointResource({ a: 1, b: 1, c: 1, mine: 97 }, { mine: 0 });
    const r = await releaseTraffic(opts({ managedDeployments: ["mine"] }), deps());
    expect(r.changed).toBe(true);
    expect(model.violations).toEqual([]);
    expect(model.puts[0].body.properties.traffic).toEqual({ a: 34, b: 33, c: 33, mine: 0 });
    expect(lines).toContain(`endpoint ${EP} traffic: a=1, b=1, c=1, mine=97 → a=34, b=33, c=33`);
  });

  it("all traffic becomes zero when only managed deployments had traffic; mirror of managed goes too", async () => {
    model.deployments = { blue: [[0, "Succeeded"]], green: [[0, "Succeeded"]], other: [[0, "Succeeded"]] };
    model.endpoint = endpointResource({ blue: 100, other: 0 }, { green: 20 });
    const r = await releaseTraffic(opts({ managedDeployments: ["blue", "green"] }), deps());
    expect(r.after).toEqual({ traffic: { blue: 0, other: 0 }, mirrorTraffic: { green: 0 } });
    expect(model.puts[0].body.properties.traffic).toEqual({ blue: 0, other: 0 });
    expect(model.puts[0].body.properties.mirrorTraffic).toEqual({ green: 0 });
  });

  it("does nothing when managed deployments take no traffic", async () => {
    model.endpoint = endpointResource({ blue: 100, mine: 0 });
    const r = await releaseTraffic(opts({ managedDeployments: ["mine"] }), deps());
    expect(r.changed).toBe(false);
    expect(puts()).toHaveLength(0);
  });

  it("succeeds without a PUT when the endpoint is already gone (404)", async () => {
    model.endpoint = undefined;
    const r = await releaseTraffic(opts({ managedDeployments: ["blue"] }), deps());
    expect(r).toMatchObject({ changed: false, endpointFound: false });
    expect(puts()).toHaveLength(0);
    expect(lines.at(-1)).toMatch(/does not exist .*nothing to release/);
  });

  it("never gives released traffic to a broken unmanaged deployment", async () => {
    model.deployments = { good: [[0, "Succeeded"]], broken: [[0, "Failed"]], mine: [[0, "Succeeded"]] };
    model.endpoint = endpointResource({ good: 25, broken: 25, mine: 50 });
    const r = await releaseTraffic(opts({ managedDeployments: ["mine"] }), deps());
    expect(r.after.traffic).toEqual({ good: 100, broken: 0, mine: 0 });
    expect(model.violations).toEqual([]);
    expect(lines).toContain("warning: deployment broken is Failed; it will not receive the released traffic");
  });

  it("waits for a busy unmanaged deployment before giving it more traffic", async () => {
    model.deployments = { other: [[0, "Updating"], [50_000, "Succeeded"]], mine: [[0, "Succeeded"]] };
    model.endpoint = endpointResource({ other: 40, mine: 60 });
    const r = await releaseTraffic(opts({ managedDeployments: ["mine"] }), deps());
    expect(r.after.traffic).toEqual({ other: 100, mine: 0 });
    expect(model.violations).toEqual([]);
    expect(model.puts[0].at).toBeGreaterThanOrEqual(50_000);
  });
});

describe("runSetTrafficFromEnv", () => {
  const env = (extra: Record<string, string | undefined> = {}) => ({
    AZURE_SUBSCRIPTION_ID: WS.subscriptionId,
    AZURE_RESOURCE_GROUP: WS.resourceGroup,
    AZUREML_WORKSPACE: WS.workspace,
    AZUREML_ENDPOINT: EP,
    ARM_ENDPOINT: fake.baseUrl,
    TRAFFIC: JSON.stringify({ blue: 80, green: 20 }),
    MANAGED_DEPLOYMENTS: JSON.stringify(["green"]),
    TRAFFIC_POLL_SECONDS: "10",
    ...extra,
  });
  const rdeps = () => ({ log: (l: string) => lines.push(l), credential: cred, now: clock.now, sleep: clock.sleep, backoffBaseMs: 1 });

  it("apply (default mode) then release", async () => {
    model.deployments.green = [[0, "Creating"], [30_000, "Succeeded"]];
    expect(await runSetTrafficFromEnv(undefined, env(), rdeps())).toBe(EXIT_OK);
    expect(model.endpoint!.properties.traffic).toEqual({ blue: 80, green: 20 });
    expect(await runSetTrafficFromEnv("apply", env(), rdeps())).toBe(EXIT_OK);
    expect(model.puts).toHaveLength(1);
    expect(await runSetTrafficFromEnv("release", env(), rdeps())).toBe(EXIT_OK);
    expect(model.endpoint!.properties.traffic).toEqual({ blue: 100, green: 0 });
    expect(model.violations).toEqual([]);
  });

  it("configuration errors exit 2 before any request", async () => {
    expect(await runSetTrafficFromEnv("promote", env(), rdeps())).toBe(EXIT_CONFIG);
    expect(await runSetTrafficFromEnv("apply", env({ AZUREML_ENDPOINT: "" }), rdeps())).toBe(EXIT_CONFIG);
    expect(await runSetTrafficFromEnv("apply", env({ TRAFFIC: "{blue:100" }), rdeps())).toBe(EXIT_CONFIG);
    expect(await runSetTrafficFromEnv("apply", env({ TRAFFIC: '{"blue":70}' }), rdeps())).toBe(EXIT_CONFIG);
    expect(await runSetTrafficFromEnv("apply", env({ MIRROR_TRAFFIC: '{"green":10}' }), rdeps())).toBe(EXIT_CONFIG);
    expect(await runSetTrafficFromEnv("release", env({ MANAGED_DEPLOYMENTS: '"green"' }), rdeps())).toBe(EXIT_CONFIG);
    expect(await runSetTrafficFromEnv("apply", env({ TRAFFIC_DEADLINE_SECONDS: "0" }), rdeps())).toBe(EXIT_CONFIG);
    expect(fake.requests).toHaveLength(0);
    const out = lines.join("\n");
    expect(out).toMatch(/mode must be "apply" or "release"/);
    expect(out).toMatch(/missing environment variable\(s\): AZUREML_ENDPOINT/);
    expect(out).toMatch(/TRAFFIC is not valid JSON/);
    expect(out).toMatch(/sum to exactly 100/);
    expect(out).toMatch(/green cannot receive mirror traffic/);
    expect(out).toMatch(/MANAGED_DEPLOYMENTS must be a JSON array/);
  });

  it("a Failed deployment exits 1 with a clear message", async () => {
    model.deployments.green = [[0, "Failed"]];
    expect(await runSetTrafficFromEnv("apply", env(), rdeps())).toBe(EXIT_FAILED);
    expect(lines.at(-1)).toMatch(/set-traffic apply on endpoint phi3-ep-x1 failed: deployment green .* is Failed/);
    expect(puts()).toHaveLength(0);
  });

  it("the deadline exits 3", async () => {
    model.deployments.green = [[0, "Creating"]];
    expect(await runSetTrafficFromEnv("apply", env({ TRAFFIC_DEADLINE_SECONDS: "60" }), rdeps())).toBe(EXIT_DEADLINE);
  });

  it("401 exits 4 (the one exit code for Azure and credential errors) without printing the token", async () => {
    fake.route("GET", /deployments/, { status: 401, body: { error: { code: "InvalidAuthenticationToken", message: "bad" } } });
    expect(await runSetTrafficFromEnv("apply", env(), rdeps())).toBe(4);
    const out = lines.join("\n");
    expect(out).toMatch(/HTTP 401 InvalidAuthenticationToken/);
    expect(out).not.toContain(cred.token);
  });

  it("release of a deleted endpoint exits 0", async () => {
    model.endpoint = undefined;
    expect(await runSetTrafficFromEnv("release", env(), rdeps())).toBe(EXIT_OK);
  });
});

// Keep the ArmError import meaningful: a 404 on a deployment is surfaced as "not found yet",
// never as an ArmError, while other errors propagate.
describe("error propagation", () => {
  it("a 403 on a deployment propagates as ArmError", async () => {
    fake.route("GET", /deployments\/green$/, { status: 403, body: { error: { code: "AuthorizationFailed", message: "no" } } });
    const err = await applyTraffic(opts({ traffic: { green: 100 } }), deps()).catch((e) => e);
    expect(err).toBeInstanceOf(ArmError);
    expect(err.status).toBe(403);
  });
});

describe("as a program", () => {
  it("runs under tsx, reads argv[2] and exits 2 on an unknown mode", () => {
    const root = path.resolve(__dirname, "..");
    const r = spawnSync(process.execPath, [path.join(root, "node_modules/tsx/dist/cli.mjs"), "jobs/set-traffic.ts", "promote"], {
      cwd: root,
      env: { ...process.env, TRAFFIC: '{"blue":100}' },
      encoding: "utf8",
      timeout: 15_000,
    });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/mode must be "apply" or "release" \(got "promote"\)/);
  });
});
