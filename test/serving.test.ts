/**
 * Rollout without downtime, as the program declares it: planning two successive configs and
 * checking the order of operations the design relies on (Pulumi's create-before-delete
 * replacement of a deployment whose Azure name changes, and a traffic step that depends on
 * the deployments and is updated before the old one is deleted).
 */
import { beforeAll, describe, expect, it } from "vitest";
import { ProgramRun, unwrapSecrets } from "../lib/mock-runtime";
import { byName, commandEnv, ofType, runStack } from "./helpers/stack";

const DEPLOYMENT = "azure-native:machinelearningservices:OnlineDeployment";
const deploymentName = (run: ProgramRun, logical: string) => unwrapSecrets(byName(run, logical).inputs).deploymentName as string;

describe("new model version → new deployment, then traffic, then the old one goes", () => {
  let before: ProgramRun;
  let after: ProgramRun;
  let resized: ProgramRun;
  // The bluegreen stack's next rollout: blue pinned to the version serving now (kept in the workspace).
  const serving = (blueCount: number) => ({
    deployments: [
      { name: "blue", model: { name: "phi3-finetuned", version: "1", existing: true }, instanceType: "Standard_NC4as_T4_v3", instanceCount: blueCount },
      { name: "green", model: "trained", instanceType: "Standard_NC4as_T4_v3" },
    ],
    traffic: { blue: 90, green: 10 },
  });
  beforeAll(async () => {
    before = await runStack({ stack: "bluegreen", overrides: { serving: serving(1) } });
    after = await runStack({ stack: "bluegreen", overrides: { serving: serving(1), hyperparameters: { epochs: 2 } } });
    resized = await runStack({ stack: "bluegreen", overrides: { serving: serving(2) } });
  });

  it("gives the trained deployment a new Azure name under the same logical name (a replacement)", () => {
    expect(deploymentName(after, "phi3-serving-deployment-green")).not.toBe(deploymentName(before, "phi3-serving-deployment-green"));
    expect(deploymentName(after, "phi3-serving-deployment-green")).toMatch(/^green-[0-9a-f]{8}$/);
  });

  it("leaves the pinned deployment and the endpoint untouched", () => {
    expect(deploymentName(after, "phi3-serving-deployment-blue")).toBe(deploymentName(before, "phi3-serving-deployment-blue"));
    expect(unwrapSecrets(byName(after, "phi3-serving-endpoint").inputs)).toEqual(unwrapSecrets(byName(before, "phi3-serving-endpoint").inputs));
  });

  it("replaces create-before-delete, so the old deployment serves until traffic has moved", () => {
    for (const d of ofType(after, DEPLOYMENT)) {
      expect(d.deleteBeforeReplace).toBe(false);
      expect(d.replaceOnChanges).toEqual([]);
    }
  });

  it("updates the traffic step to the new names; it runs after every deployment exists", () => {
    const traffic = byName(after, "phi3-serving-traffic");
    const env = commandEnv(traffic);
    expect(JSON.parse(env.TRAFFIC)).toEqual({
      [deploymentName(after, "phi3-serving-deployment-blue")]: 90,
      [deploymentName(after, "phi3-serving-deployment-green")]: 10,
    });
    expect(JSON.parse(env.MANAGED_DEPLOYMENTS)).not.toContain(deploymentName(before, "phi3-serving-deployment-green"));
    for (const d of ofType(after, DEPLOYMENT)) expect(traffic.dependencies).toContain(d.urn);
    const inputs = unwrapSecrets(traffic.inputs);
    expect(inputs.update).toContain("set-traffic.ts apply");
    expect(inputs.delete).toContain("set-traffic.ts release");
  });

  it("changes only capacity in place when a serving setting changes (no new deployment, no new job)", () => {
    expect(deploymentName(resized, "phi3-serving-deployment-blue")).toBe(deploymentName(before, "phi3-serving-deployment-blue"));
    expect(unwrapSecrets(byName(resized, "phi3-serving-deployment-blue").inputs).sku.capacity).toBe(2);
    const job = (run: ProgramRun) => commandEnv(byName(run, "phi3-training-finetune-job")).AZUREML_JOB_NAME;
    expect(job(resized)).toBe(job(before));
    expect(job(after)).not.toBe(job(before));
  });

  it("serves the pinned model version by its ARM id", () => {
    const model = unwrapSecrets(byName(before, "phi3-serving-deployment-blue").inputs).properties.model;
    expect(model).toMatch(/\/workspaces\/mlw-phi3bg-[0-9a-f]{6}\/models\/phi3-finetuned\/versions\/1$/);
  });
});

describe("role propagation: the endpoint and every deployment wait until the roles are in effect", () => {
  it("a pinned-model deployment (which waits on no training) waits for the roles, like the trained one", async () => {
    const run = await runStack({
      stack: "bluegreen",
      overrides: {
        serving: {
          deployments: [
            { name: "blue", model: { name: "phi3-finetuned", version: "5", existing: true }, instanceType: "Standard_NC4as_T4_v3" },
            { name: "green", model: "trained", instanceType: "Standard_NC4as_T4_v3" },
          ],
          traffic: { blue: 90, green: 10 },
        },
      },
    });
    const rolesInEffect = byName(run, "phi3-identity-roles-in-effect").urn;
    expect(byName(run, "phi3-serving-endpoint").dependencies).toContain(rolesInEffect);
    for (const d of ofType(run, DEPLOYMENT)) expect(d.dependencies, d.name).toContain(rolesInEffect);
    // The pinned one does not wait for training; only the role wait stands between the grants and it.
    expect(byName(run, "phi3-serving-deployment-blue").dependencies).not.toContain(byName(run, "phi3-training-model").urn);
  });
});

describe("traffic is never lost: the traffic step re-applies after any endpoint update", () => {
  it("a tag change updates the endpoint (a PUT without traffic) and the traffic step, which runs apply after it", async () => {
    const before = await runStack({ stack: "bluegreen" });
    const after = await runStack({ stack: "bluegreen", overrides: { tags: { owner: "ml-platform" } } });
    const endpoint = (run: ProgramRun) => unwrapSecrets(byName(run, "phi3-serving-endpoint").inputs);
    expect(endpoint(after).tags).toEqual({ owner: "ml-platform" });
    expect(endpoint(after)).not.toEqual(endpoint(before));
    const traffic = (run: ProgramRun) => byName(run, "phi3-serving-traffic");
    // Same split, same deployments: only the endpoint changed, and the step's inputs change with it,
    // so @pulumi/command runs its update command (apply) in this `up`, after the endpoint update.
    expect(commandEnv(traffic(after)).TRAFFIC).toBe(commandEnv(traffic(before)).TRAFFIC);
    expect(commandEnv(traffic(after)).ENDPOINT_INPUTS).not.toBe(commandEnv(traffic(before)).ENDPOINT_INPUTS);
    expect(unwrapSecrets(traffic(after).inputs).update).toBe("npx --no-install tsx jobs/set-traffic.ts apply");
    expect(traffic(after).dependencies).toContain(byName(after, "phi3-serving-endpoint").urn);
  });

  it("an unchanged endpoint leaves the traffic step alone (no needless re-run)", async () => {
    const a = await runStack({ stack: "bluegreen" });
    const b = await runStack({ stack: "bluegreen", overrides: { hyperparameters: { epochs: 2 } } });
    expect(commandEnv(byName(b, "phi3-serving-traffic")).ENDPOINT_INPUTS).toBe(commandEnv(byName(a, "phi3-serving-traffic")).ENDPOINT_INPUTS);
  });
});
