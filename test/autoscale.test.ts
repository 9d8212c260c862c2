/**
 * Autoscaled serving (issue 13, part 3): an Azure Monitor autoscale setting per autoscaled
 * deployment, in azure-native's shape; invalid bounds, rules and quota refused at plan time with
 * the key named; the preflight's quota covers the max (20% online reservation included); the
 * cost estimate shows min and max.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type * as monitor from "@pulumi/azure-native/monitor";
import type * as inputs from "@pulumi/azure-native/types/input";
import * as enums from "@pulumi/azure-native/types/enums/monitor";
import { autoscaleProfile, DEPLOYMENT_METRIC_NAMESPACE, defaultRules, describeAutoscale } from "../infra/autoscale";
import { parseConfig, rawProjectConfig, type RawConfig } from "../infra/config";
import { costInputOf, estimateCost, formatCostReport, loadPriceTable } from "../infra/cost";
import { RECORDED_VM_SIZES } from "../infra/vm-sizes";
import { preflightInput, requiredQuota } from "../lib/preflight";
import type { ProgramRun } from "../lib/mock-runtime";
import { unwrapSecrets } from "../lib/mock-runtime";
import { expectRefused } from "./helpers/config";
import { byName, commandEnv, ofType, runStack, stackConfig } from "./helpers/stack";
import { fakeCredential, startFakeArm, type FakeArm } from "./helpers/fake-arm";
import { runDeploymentCapacityFromEnv } from "../jobs/deployment-capacity";
import { parseCapacity } from "../infra/serving";

const json = (v: unknown) => JSON.stringify(v);
const AUTOSCALE = "azure-native:monitor:AutoscaleSetting";

// Every input of azure-native 3.28's AutoscaleSettingArgs and of the nested types: the compiler
// refuses these objects if a key is missing or unknown, so the runtime checks below compare
// against the package's real shape.
const SETTING_KEYS = {
  autoscaleSettingName: true, enabled: true, location: true, name: true, notifications: true, predictiveAutoscalePolicy: true,
  profiles: true, resourceGroupName: true, tags: true, targetResourceLocation: true, targetResourceUri: true,
} satisfies Record<keyof monitor.AutoscaleSettingArgs, true>;
const PROFILE_KEYS = { capacity: true, fixedDate: true, name: true, recurrence: true, rules: true } satisfies Record<keyof inputs.monitor.AutoscaleProfileArgs, true>;
const CAPACITY_KEYS = { default: true, maximum: true, minimum: true } satisfies Record<keyof inputs.monitor.ScaleCapacityArgs, true>;
const TRIGGER_KEYS = {
  dimensions: true, dividePerInstance: true, metricName: true, metricNamespace: true, metricResourceLocation: true, metricResourceUri: true,
  operator: true, statistic: true, threshold: true, timeAggregation: true, timeGrain: true, timeWindow: true,
} satisfies Record<keyof inputs.monitor.MetricTriggerArgs, true>;
const ACTION_KEYS = { cooldown: true, direction: true, type: true, value: true } satisfies Record<keyof inputs.monitor.ScaleActionArgs, true>;
const ISO_DURATION = /^PT\d+M$/;

function keysWithin(value: object, allowed: object, what: string) {
  for (const k of Object.keys(value)) expect(Object.keys(allowed), `${what}.${k}`).toContain(k);
}

describe("the scale stack's autoscale setting", () => {
  let run: ProgramRun;
  beforeAll(async () => {
    run = await runStack({ stack: "scale" });
  });

  it("has azure-native's AutoscaleSetting shape: every key, enum value and ISO-8601 duration", () => {
    const settings = ofType(run, AUTOSCALE);
    expect(settings).toHaveLength(1);
    const s = unwrapSecrets(settings[0].inputs);
    keysWithin(s, SETTING_KEYS, "setting");
    expect(s.profiles).toHaveLength(1);
    const p = s.profiles[0];
    keysWithin(p, PROFILE_KEYS, "profile");
    keysWithin(p.capacity, CAPACITY_KEYS, "capacity");
    expect(p.capacity).toEqual({ minimum: "1", maximum: "3", default: "1" });
    expect(p.rules).toHaveLength(4);
    for (const r of p.rules) {
      keysWithin(r.metricTrigger, TRIGGER_KEYS, "metricTrigger");
      keysWithin(r.scaleAction, ACTION_KEYS, "scaleAction");
      expect(Object.values(enums.ComparisonOperationType)).toContain(r.metricTrigger.operator);
      expect(Object.values(enums.MetricStatisticType)).toContain(r.metricTrigger.statistic);
      expect(Object.values(enums.TimeAggregationType)).toContain(r.metricTrigger.timeAggregation);
      expect(Object.values(enums.ScaleDirection)).toContain(r.scaleAction.direction);
      expect(Object.values(enums.ScaleType)).toContain(r.scaleAction.type);
      expect(r.metricTrigger.timeWindow).toMatch(ISO_DURATION);
      expect(r.scaleAction.cooldown).toMatch(ISO_DURATION);
      expect(r.metricTrigger.timeGrain).toBe("PT1M");
    }
  });

  it("targets the deployment, reads the deployment's own metrics and exists only after it", () => {
    const setting = byName(run, "phi3-serving-autoscale-blue");
    const deployment = byName(run, "phi3-serving-deployment-blue");
    const s = unwrapSecrets(setting.inputs);
    expect(s.targetResourceUri).toBe(deployment.id);
    expect(s.targetResourceLocation).toBe("eastus2");
    expect(s.location).toBe("eastus2");
    expect(s.enabled).toBe(true);
    expect(s.autoscaleSettingName).toBe(`${unwrapSecrets(deployment.inputs).endpointName}-${unwrapSecrets(deployment.inputs).deploymentName}-autoscale`);
    expect(setting.dependencies).toContain(deployment.urn);
    const triggers = s.profiles[0].rules.map((r: any) => r.metricTrigger);
    for (const t of triggers) {
      expect(t.metricResourceUri).toBe(deployment.id);
      expect(t.metricNamespace).toBe(DEPLOYMENT_METRIC_NAMESPACE);
    }
    expect(s.profiles[0].rules.map((r: any) => [r.scaleAction.direction, r.metricTrigger.metricName, r.metricTrigger.operator, r.metricTrigger.threshold])).toEqual([
      ["Increase", "GpuUtilizationPercentage", "GreaterThan", 70],
      ["Increase", "RequestLatency_P90", "GreaterThan", 60000],
      ["Decrease", "GpuUtilizationPercentage", "LessThan", 25],
      ["Decrease", "RequestLatency_P90", "LessThan", 20000],
    ]);
  });

  it("the deployment starts at instanceCount, sent through the live-capacity read, with no ignoreChanges that would resend a stale count", () => {
    const deployment = byName(run, "phi3-serving-deployment-blue");
    // Commands do not run under mocks: the read's output is empty, so the deployment starts at instanceCount.
    expect(unwrapSecrets(deployment.inputs).sku).toEqual({ name: "Default", capacity: 1 });
    expect(deployment.ignoreChanges ?? []).not.toContain("sku.capacity");
    const read = byName(run, "phi3-serving-capacity-blue");
    expect(deployment.dependencies).toContain(read.urn);
    expect(unwrapSecrets(read.inputs).create).toBe("npx --no-install tsx jobs/deployment-capacity.ts");
    expect(commandEnv(read)).toMatchObject({
      AZUREML_DEPLOYMENT: unwrapSecrets(deployment.inputs).deploymentName,
      AZUREML_ENDPOINT: unwrapSecrets(deployment.inputs).endpointName,
      CAPACITY_FALLBACK: "1",
    });
  });

  it("a stack without autoscale has no setting, no capacity read, and keeps managing its count", async () => {
    const dev = await runStack();
    expect(ofType(dev, AUTOSCALE)).toEqual([]);
    expect(dev.registrations.some((r) => r.name.startsWith("phi3-serving-capacity-"))).toBe(false);
    expect(byName(dev, "phi3-serving-deployment-blue").ignoreChanges ?? []).not.toContain("sku.capacity");
  });
});

describe("an update for another reason leaves the live capacity alone (issue 19)", () => {
  // Two configs of the scale stack: A as written, B with a longer request timeout (a reason to update
  // the deployment); Azure Monitor has meanwhile scaled the deployment out to 3 instances.
  const B = { requestSettings: { maxConcurrentRequestsPerInstance: 3, requestTimeoutMs: 90000, maxQueueWaitMs: 120000 } };
  const servingWith = (over: Record<string, unknown>) => {
    const serving = structuredClone(parseConfig(rawProjectConfig(stackConfig("scale").config)).config.serving) as any;
    Object.assign(serving.deployments[0], over);
    return serving;
  };
  const readEnv = (run: ProgramRun) => commandEnv(byName(run, "phi3-serving-capacity-blue"));
  let fake: FakeArm;
  let a: ProgramRun;
  let again: ProgramRun;
  beforeAll(async () => {
    fake = await startFakeArm();
    a = await runStack({ stack: "scale" });
    again = await runStack({ stack: "scale" });
  });
  afterAll(async () => {
    await fake.close();
  });

  it("the read runs again exactly when the rest of the deployment changes (its digest), not on a rerun of the same config", async () => {
    expect(readEnv(again).DEPLOYMENT_DIGEST).toBe(readEnv(a).DEPLOYMENT_DIGEST);
    const b = await runStack({ stack: "scale", overrides: { serving: servingWith(B) } });
    expect(readEnv(b).DEPLOYMENT_DIGEST).not.toBe(readEnv(a).DEPLOYMENT_DIGEST);
    // A new instanceCount alone does not touch the body the digest covers (only the creation fallback).
    const count = await runStack({ stack: "scale", overrides: { serving: servingWith({ instanceCount: 2 }) } });
    expect(readEnv(count).DEPLOYMENT_DIGEST).toBe(readEnv(a).DEPLOYMENT_DIGEST);
  });

  it("config B's update sends the live 3 instances, read by jobs/deployment-capacity.ts with B's own environment, not the 1 it was created with", async () => {
    const b0 = await runStack({ stack: "scale", overrides: { serving: servingWith(B) } });
    const env = readEnv(b0);
    const path = `/subscriptions/${env.AZURE_SUBSCRIPTION_ID}/resourceGroups/${env.AZURE_RESOURCE_GROUP}/providers/Microsoft.MachineLearningServices/workspaces/${env.AZUREML_WORKSPACE}/onlineEndpoints/${env.AZUREML_ENDPOINT}/deployments/${env.AZUREML_DEPLOYMENT}`;
    fake.route("GET", path, { body: { name: env.AZUREML_DEPLOYMENT, sku: { name: "Default", capacity: 3 }, properties: { provisioningState: "Succeeded" } } });
    const out: string[] = [];
    const code = await runDeploymentCapacityFromEnv({ ...env, ARM_ENDPOINT: fake.baseUrl }, { log: (l) => out.push(l), error: () => undefined, credential: fakeCredential() });
    expect(code).toBe(0);
    expect(out).toEqual(["3"]);
    expect(fake.requestsTo("GET", path)[0].query["api-version"]).toBe("2025-12-01");

    const b = await runStack({ stack: "scale", overrides: { serving: servingWith(B) }, commandOutputs: (name) => (name === "phi3-serving-capacity-blue" ? { stdout: out.join("\n") + "\n" } : undefined) });
    const sent = unwrapSecrets(byName(b, "phi3-serving-deployment-blue").inputs);
    expect(sent.sku).toEqual({ name: "Default", capacity: 3 });
    expect(sent.properties.requestSettings.requestTimeout).toBe("PT90S");
    // A's deployment was sent 1 (created at instanceCount): B does not send that back.
    expect(unwrapSecrets(byName(a, "phi3-serving-deployment-blue").inputs).sku.capacity).toBe(1);
  });

  it("before the deployment exists the read prints instanceCount (404), and refuses a bad environment", async () => {
    const env = readEnv(a);
    fake.route("GET", new RegExp(`/deployments/${env.AZUREML_DEPLOYMENT}$`), { status: 404, body: { error: { code: "ResourceNotFound", message: "not found" } } });
    const out: string[] = [];
    expect(await runDeploymentCapacityFromEnv({ ...env, CAPACITY_FALLBACK: "2", ARM_ENDPOINT: fake.baseUrl }, { log: (l) => out.push(l), error: () => undefined, credential: fakeCredential() })).toBe(0);
    expect(out).toEqual(["2"]);
    const err: string[] = [];
    expect(await runDeploymentCapacityFromEnv({ ...env, CAPACITY_FALLBACK: "0" }, { log: () => undefined, error: (l) => err.push(l), credential: fakeCredential() })).toBe(2);
    expect(err.join("\n")).toMatch(/CAPACITY_FALLBACK must be an integer >= 1/);
  });

  it.each([
    ["3\n", 3],
    ["deployment-capacity: ...\n4", 4],
    ["", 1],
    [undefined, 1],
    ["0", 1],
    ["2.5", 1],
    ["three", 1],
  ])("parseCapacity(%j) is %i (fallback 1)", (stdout, n) => expect(parseCapacity(stdout as string | undefined, 1)).toBe(n));
});

describe("the profile builder", () => {
  it("defaults to GPU utilization on GPU sizes, CPU on CPU sizes, out above 70 and in below 30", () => {
    expect(defaultRules("Standard_NC4as_T4_v3").map((r) => [r.metric, r.scale, r.threshold])).toEqual([
      ["GpuUtilizationPercentage", "out", 70],
      ["GpuUtilizationPercentage", "in", 30],
    ]);
    expect(defaultRules("Standard_E4s_v3").every((r) => r.metric === "CpuUtilizationPercentage")).toBe(true);
  });

  it("writes capacities as strings, minutes as ISO-8601 and the direction's operator", () => {
    const profile = autoscaleProfile(
      { minInstances: 2, maxInstances: 5, rules: [
        { metric: "CpuUtilizationPercentage", scale: "out", threshold: 80, by: 2, windowMinutes: 10, cooldownMinutes: 60, statistic: "Max", timeAggregation: "Maximum" },
        { metric: "CpuUtilizationPercentage", scale: "in", threshold: 20, by: 1, windowMinutes: 30, cooldownMinutes: 15, statistic: "Average", timeAggregation: "Average" },
      ] },
      { instanceType: "Standard_E4s_v3", instanceCount: 3, id: "/deployments/x" },
    ) satisfies inputs.monitor.AutoscaleProfileArgs;
    expect(profile.capacity).toEqual({ minimum: "2", maximum: "5", default: "3" });
    expect((profile.rules as inputs.monitor.ScaleRuleArgs[])[0]).toEqual({
      metricTrigger: {
        metricName: "CpuUtilizationPercentage", metricNamespace: DEPLOYMENT_METRIC_NAMESPACE, metricResourceUri: "/deployments/x",
        timeGrain: "PT1M", statistic: "Max", timeWindow: "PT10M", timeAggregation: "Maximum", operator: "GreaterThan", threshold: 80,
      },
      scaleAction: { direction: "Increase", type: "ChangeCount", value: "2", cooldown: "PT60M" },
    });
    expect(describeAutoscale(profile as any)).toBe(
      "2..5 instances (default 3); out: CpuUtilizationPercentage > 80 over PT10M +2 (cooldown PT60M); in: CpuUtilizationPercentage < 20 over PT30M -1 (cooldown PT15M)",
    );
  });
});

describe("invalid autoscale and quota are refused at plan time, naming the key", () => {
  const scaleRaw = (): RawConfig => rawProjectConfig(stackConfig("scale").config);
  const deployment = (over: Record<string, unknown>, autoscale: Record<string, unknown>) =>
    json({ deployments: [{ name: "blue", instanceType: "Standard_NC4as_T4_v3", instanceCount: 1, ...over, autoscale }], traffic: { blue: 100 } });
  const D = "phi3-finetune:serving.deployments[0]";
  const cases: [string, RawConfig, string, RegExp][] = [
    ["min > max", { serving: deployment({ instanceCount: 2 }, { minInstances: 3, maxInstances: 2 }) }, `${D}.autoscale.minInstances`, /must be <= autoscale\.maxInstances \(2\) \(got 3\)/],
    ["max above the declared quota", { serving: deployment({}, { minInstances: 1, maxInstances: 4 }) }, `${D}.autoscale.maxInstances`, /needs 20 vCPUs of standardNCASv3_T4Family \(deployment blue \(autoscale max\): 20; .*above the declared quota of 16 \(quota\.standardNCASv3_T4Family\)/],
    ["max above Azure ML's 50 per deployment", { serving: deployment({}, { minInstances: 1, maxInstances: 51 }), quota: json({}) }, `${D}.autoscale.maxInstances`, /<= 50/],
    ["min of 0 (managed deployments run at least 1)", { serving: deployment({}, { minInstances: 0, maxInstances: 2 }) }, `${D}.autoscale.minInstances`, />= 1/],
    ["instanceCount outside the bounds", { serving: deployment({ instanceCount: 3 }, { minInstances: 1, maxInstances: 2 }) }, `${D}.instanceCount`, /within autoscale's 1\.\.2/],
    ["a GPU metric on a CPU size", { serving: deployment({ instanceType: "Standard_E4s_v3" }, { minInstances: 1, maxInstances: 2, rules: [{ metric: "GpuUtilizationPercentage", scale: "out", threshold: 70 }, { metric: "CpuUtilizationPercentage", scale: "in", threshold: 20 }] }), training: json({ servedDtype: "float32", instanceCount: 2, processesPerInstance: 4 }) }, `${D}.autoscale.rules[0].metric`, /GPU instances only/],
    ["a percentage above 100", { serving: deployment({}, { minInstances: 1, maxInstances: 2, rules: [{ metric: "GpuUtilizationPercentage", scale: "out", threshold: 170 }, { metric: "GpuUtilizationPercentage", scale: "in", threshold: 20 }] }) }, `${D}.autoscale.rules[0].threshold`, /<= 100/],
    ["rules that flap", { serving: deployment({}, { minInstances: 1, maxInstances: 2, rules: [{ metric: "GpuUtilizationPercentage", scale: "out", threshold: 50 }, { metric: "GpuUtilizationPercentage", scale: "in", threshold: 60 }] }) }, `${D}.autoscale.rules[1].threshold`, /flap/],
    ["scale-out rules only", { serving: deployment({}, { minInstances: 1, maxInstances: 2, rules: [{ metric: "GpuUtilizationPercentage", scale: "out", threshold: 70 }, { metric: "RequestLatency_P90", scale: "out", threshold: 9000 }] }) }, `${D}.autoscale.rules`, /one scale-out and one scale-in rule/],
    ["one rule", { serving: deployment({}, { minInstances: 1, maxInstances: 2, rules: [{ metric: "GpuUtilizationPercentage", scale: "out", threshold: 70 }] }) }, `${D}.autoscale.rules`, /at least one scale-out and one scale-in rule/],
    ["an unknown metric", { serving: deployment({}, { minInstances: 1, maxInstances: 2, rules: [{ metric: "Percentage CPU", scale: "out", threshold: 70 }, { metric: "GpuUtilizationPercentage", scale: "in", threshold: 20 }] }) }, `${D}.autoscale.rules[0].metric`, /GpuUtilizationPercentage/],
    ["a window shorter than Azure's 5 minutes", { serving: deployment({}, { minInstances: 1, maxInstances: 2, rules: [{ metric: "GpuUtilizationPercentage", scale: "out", threshold: 70, windowMinutes: 1 }, { metric: "GpuUtilizationPercentage", scale: "in", threshold: 20 }] }) }, `${D}.autoscale.rules[0].windowMinutes`, />= 5/],
    ["a quota family that does not exist", { quota: json({ standardNCASv3_T4Famly: 16, standardNDASv4_A100Family: 96 }) }, "phi3-finetune:quota.standardNCASv3_T4Famly", /not the quota family of any size.*standardNCASv3_T4Family/],
    ["a training cluster above its family's quota", { quota: json({ standardNCASv3_T4Family: 16, standardNDASv4_A100Family: 48 }) }, "phi3-finetune:quota.standardNDASv4_A100Family", /needs 96 vCPUs of standardNDASv4_A100Family .*above the declared quota of 48/],
  ];
  it.each(cases)("%s", (_label, over, key, rule) => expectRefused({ ...scaleRaw(), ...over }, key, rule));

  it("the scale stack itself passes: 15 T4 vCPUs within 16, 96 ND A100 vCPUs within 96", () => {
    expect(() => parseConfig(scaleRaw())).not.toThrow();
  });
});

describe("quota and cost follow the max", () => {
  const scale = () => parseConfig(rawProjectConfig(stackConfig("scale").config)).config;

  it("the preflight needs the max instances with Azure ML's 20% online reservation; fixed deployments are unchanged", () => {
    const needs = requiredQuota(preflightInput(scale()), [...RECORDED_VM_SIZES]);
    const t4 = needs.find((n) => n.family === "standardNCASv3_T4Family")!;
    expect(t4.parts).toEqual([{ role: "deployment blue (autoscale max)", vmSize: "Standard_NC4as_T4_v3", count: 3, vCPUsEach: 4, reserved: true, vCPUs: 15 }]);
    const dev = preflightInput(parseConfig(rawProjectConfig(stackConfig("dev").config)).config);
    expect(Object.keys(dev.serving.deployments[0]).sort()).toEqual(["instanceCount", "instanceType", "model", "name"]);
  });

  it("the cost estimate shows the serving bill at min and at max, per hour and per 30 days", () => {
    const prices = loadPriceTable();
    const e = estimateCost(costInputOf(scale()), prices);
    const unit = prices.hourly["Standard_NC4as_T4_v3"]!;
    expect(e.serving.lines[0].autoscale).toEqual({ minInstances: 1, maxInstances: 3, minPerHour: unit, maxPerHour: 3 * unit });
    expect(e.serving.range).toEqual({ minPerHour: unit, maxPerHour: 3 * unit, minPer30Days: unit * 720, maxPer30Days: 3 * unit * 720 });
    const text = formatCostReport(e).join("\n");
    expect(text).toContain(`blue: 1–3 × Standard_NC4as_T4_v3 @ USD ${unit.toFixed(2)}/h = USD ${unit.toFixed(2)}/h at min, USD ${(3 * unit).toFixed(2)}/h at max (autoscale; starts at 1)`);
    expect(text).toContain(`total: USD ${unit.toFixed(2)}/h at min, USD ${(3 * unit).toFixed(2)}/h at max; USD ${(unit * 720).toFixed(2)} to USD ${(3 * unit * 720).toFixed(2)} per 30 days (720 h)`);
    // Without autoscale the report keeps its one total.
    expect(estimateCost(costInputOf(parseConfig({ location: "eastus2" }).config), prices).serving.range).toBeUndefined();
  });
});
