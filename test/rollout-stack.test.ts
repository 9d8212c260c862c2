/**
 * Safe rollout in the program (issue 22), under Pulumi mocks: the order `pulumi up` runs the
 * steps in (the model version waits for the quality gate; the traffic step waits for every
 * deployment's smoke test; the endpoint smoke reads the traffic step's output) and what each
 * step is told (rules, prompts, the deployment it may call).
 */
import { describe, expect, it } from "vitest";
import { byName, commandEnv, runStack, type Overrides } from "./helpers/stack";
import { buildPlan } from "../cli/lib/plan-build";
import { diffPlans } from "../cli/lib/plan-diff";
import { estimateCost, loadPriceTable } from "../infra/cost";
import { GATE_DEFAULTS, parseConfig, SMOKE_DEFAULTS } from "../infra/config";
import { configProblems } from "./helpers/config";

const ML = "azure-native:machinelearningservices";

describe("safe rollout wiring", () => {
  it("bluegreen: gate → model version; deployment → its smoke → traffic → endpoint smoke", async () => {
    const run = await runStack({ stack: "bluegreen" });
    const gate = byName(run, "phi3-training-quality-gate");
    const model = run.registrations.find((r) => r.type === `${ML}:ModelVersion`)!;
    const job = byName(run, "phi3-training-finetune-job");
    expect(gate.dependencies).toContain(job.urn);
    expect(model.dependencies).toEqual(expect.arrayContaining([job.urn, gate.urn]));
    const g = commandEnv(gate);
    expect(g.AZUREML_JOB_NAME).toBe(commandEnv(job).AZUREML_JOB_NAME);
    expect(g.GATE_MAX_REGRESSION_PERCENT).toBe("5");
    expect(g.GATE_MAX_EVAL_LOSS).toBeUndefined();
    expect(g.MLFLOW_TRACKING_URI).toMatch(/^https:\/\/eastus2\.api\.azureml\.ms\/mlflow\/v1\.0\/subscriptions\/[^/]+\/resourceGroups\/[^/]+\/providers\/Microsoft\.MachineLearningServices\/workspaces\/[^/]+$/);
    expect(g.AZUREML_ENDPOINT).toBeTruthy();

    const traffic = byName(run, "phi3-serving-traffic");
    for (const d of ["blue", "green"]) {
      const smoke = byName(run, `phi3-serving-smoke-${d}`);
      const deployment = byName(run, `phi3-serving-deployment-${d}`);
      expect(smoke.dependencies).toContain(deployment.urn);
      expect(traffic.dependencies).toContain(smoke.urn);
      const e = commandEnv(smoke);
      expect(e.SMOKE_DEPLOYMENT).toBe(deployment.inputs.deploymentName);
      expect(JSON.parse(e.SMOKE_PROMPTS)).toEqual(["What is a readiness probe?", "Why does a GPU deployment take several minutes to create?"]);
      expect([e.SMOKE_MAX_SECONDS, e.SMOKE_PAYLOAD_SHAPE]).toEqual(["30", "prompt-list"]);
      expect(String(smoke.inputs.create)).toBe("npx --no-install tsx jobs/smoke-test.ts deployment");
    }
    const verify = byName(run, "phi3-serving-verify");
    expect(verify.dependencies).toContain(traffic.urn);
    expect(String(verify.inputs.create)).toBe("npx --no-install tsx jobs/smoke-test.ts endpoint");
    expect(commandEnv(verify).ROLLBACK).toBe("true");
    expect(commandEnv(verify).SMOKE_DEPLOYMENT).toBeUndefined();
  });

  it("local-data: the default prompts are the first user turns of two eval rows", async () => {
    const run = await runStack({ stack: "local-data" });
    expect(JSON.parse(commandEnv(byName(run, "phi3-serving-smoke-blue")).SMOKE_PROMPTS)).toEqual([
      "Why does a GPU deployment take several minutes to create?",
      "What is a readiness probe?",
    ]);
  });

  it("gate and smoke off: no steps, and the model version waits for the job only", async () => {
    const run = await runStack({ overrides: { training: { gate: { enabled: false } }, serving: { deployments: [{ name: "blue", instanceType: "Standard_NC4as_T4_v3" }], smoke: { enabled: false } } } });
    const names = run.registrations.map((r) => r.name);
    expect(names.filter((n) => /quality-gate|smoke|verify/.test(n))).toEqual([]);
    const model = run.registrations.find((r) => r.type === `${ML}:ModelVersion`)!;
    expect(model.dependencies).toContain(byName(run, "phi3-training-finetune-job").urn);
  });

  it.each([
    [{}, /starts a new fine-tune job phi3ft-ft-[0-9a-f]+ .*; gated by the quality gate \(eval_loss <= 2, at most 10% above the serving model's eval_loss\): if it refuses, nothing is registered and no deployment or traffic changes/],
    [{ training: { gate: { enabled: false } } }, /starts a new fine-tune job .*; NOT gated \(training\.gate\.enabled is false\)/],
  ])("the diff of a change that retrains says whether it is gated (%j)", async (extra, message) => {
    const cost = estimateCost({ training: { vmSize: "Standard_NC24ads_A100_v4", minNodes: 0, maxNodes: 1 }, deployments: [] }, loadPriceTable({}), "eastus2");
    const plan = async (overrides: Overrides) =>
      buildPlan(await runStack({ overrides }), { project: "phi3-finetune", stack: "dev", subscriptionId: "s", training: "script", warnings: [], cost });
    const base = await plan(extra);
    const head = await plan({ ...extra, hyperparameters: { epochs: 4 } });
    expect(diffPlans(base, head, { base: "a", head: "b" }).summary.join("\n")).toMatch(message);
  });

  it("config: defaults, and every bad value named with its key", () => {
    const { config } = parseConfig({ location: "eastus2" });
    expect(config.training.gate).toEqual({ enabled: true, maxRegressionPercent: 10 });
    expect(config.serving.smoke).toEqual({ enabled: true, maxSeconds: 60, maxNewTokens: 32, rollback: true });
    expect([GATE_DEFAULTS, SMOKE_DEFAULTS]).toEqual([config.training.gate, config.serving.smoke]);
    const problems = configProblems({
      location: "eastus2",
      training: JSON.stringify({ gate: { maxEvalLoss: 0, maxRegressionPercent: -1, mode: "x" } }),
      serving: JSON.stringify({ smoke: { prompts: ["ok", " "], maxSeconds: 500, rollbak: true } }),
    }).join("\n");
    expect(problems).toMatch(/training\.gate\.maxEvalLoss: must be > 0/);
    expect(problems).toMatch(/training\.gate\.maxRegressionPercent: must be >= 0/);
    expect(problems).toMatch(/training\.gate\.mode: unknown key/);
    expect(problems).toMatch(/serving\.smoke\.prompts\[1\]: must not be empty/);
    expect(problems).toMatch(/serving\.smoke\.maxSeconds: must be <= 180/);
    expect(problems).toMatch(/serving\.smoke\.rollbak: unknown key \(did you mean rollback\?\)/);
  });
});
