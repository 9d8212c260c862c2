/**
 * The first lines of the text plan (cli/plan.ts `formatHeadline`): blockers with the replacement
 * sizes priced, the one-off cost of each job of a first `up` (infra/cost.ts `estimateOneOff`,
 * infra/training-estimate.ts) and the monthly cost by part. Pure functions, table-driven.
 */
import { describe, expect, it } from "vitest";
import { blockersOf, formatHeadline, monthlyEstimate } from "../cli/lib/plan-build";
import { costInputOf, estimateCost, estimateNetworkCost, estimateOneOff, loadPriceTable, priceOptions } from "../infra/cost";
import { parseConfig, type RawConfig } from "../infra/config";
import { estimateFineTune, estimatePrep, JOB_OVERHEAD_HOURS, PREP_JOB_HOURS } from "../infra/training-estimate";

const json = (v: unknown) => JSON.stringify(v);
const cfg = (raw: RawConfig = {}) => parseConfig({ location: "eastus2", ...raw }).config;
const prices = loadPriceTable({});

describe("blockersOf", () => {
  const cases: { name: string; serving: unknown; keys: string[] }[] = [
    { name: "the seed's retired NC6s_v3 deployment blocks", serving: { deployments: [{ name: "blue", instanceType: "Standard_NC6s_v3", instanceCount: 2 }] }, keys: ["phi3-finetune:serving.deployments[0].instanceType"] },
    { name: "a current size does not", serving: { deployments: [{ name: "blue", instanceType: "Standard_NC4as_T4_v3", instanceCount: 1 }] }, keys: [] },
    {
      name: "only the retired one of two",
      serving: { deployments: [{ name: "blue", instanceType: "Standard_NC4as_T4_v3", instanceCount: 1 }, { name: "green", instanceType: "Standard_NC12s_v3", instanceCount: 1 }], traffic: { blue: 100, green: 0 } },
      keys: ["phi3-finetune:serving.deployments[1].instanceType"],
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      expect(blockersOf(cfg({ serving: json(c.serving) }), prices).map((b) => b.key)).toEqual(c.keys);
    });
  }

  it("prices every replacement for the deployment's instance count", () => {
    const [b] = blockersOf(cfg({ serving: json({ deployments: [{ name: "blue", instanceType: "Standard_NC6s_v3", instanceCount: 2 }] }) }), prices);
    expect(b.instances).toBe(2);
    expect(b.options.map((o) => o.vmSize)).toEqual(["Standard_NC4as_T4_v3", "Standard_NC24ads_A100_v4", "Standard_NV36ads_A10_v5", "Standard_NC40ads_H100_v5"]);
    expect(b.options[0].perHour).toBeCloseTo(0.526 * 2, 9);
    expect(b.options[0].per30Days).toBeCloseTo(0.526 * 2 * 720, 9);
    expect(b.problem).toMatch(/^Standard_NC6s_v3 was retired by Azure on 2025-09-30/);
  });
});

describe("estimates of the jobs", () => {
  it("the prep job runs only for ultrachat data", () => {
    expect(estimatePrep(cfg())?.hours).toBe(PREP_JOB_HOURS);
    expect(estimatePrep(cfg({ data: json({ source: "jsonl", trainFile: "data/train.jsonl", testFile: "data/test.jsonl" }) }))).toBeUndefined();
  });

  it("two nodes train twice as fast and both bill", () => {
    const one = estimateFineTune(cfg({ data: json({ source: "ultrachat", split: "train_sft[:20%]" }) }))!;
    const two = estimateFineTune(cfg({ data: json({ source: "ultrachat", split: "train_sft[:20%]" }), trainingCluster: json({ maxNodes: 2 }), training: json({ instanceCount: 2 }) }))!;
    expect([one.nodes, two.nodes]).toEqual([1, 2]);
    expect(two.hours - JOB_OVERHEAD_HOURS).toBeCloseTo((one.hours - JOB_OVERHEAD_HOURS) / 2, 0);
    expect(two.basis).toMatch(/^2 nodes × 1 × A100/);
    const o = estimateOneOff([{ label: "fine-tune job", jobName: "j", vmSize: "Standard_NC24ads_A100_v4", nodes: 2, hours: two.hours, basis: two.basis }], prices);
    expect(o.total).toBeCloseTo(3.673 * 2 * two.hours, 9);
  });

  it.each([
    ["Standard_NC24ads_A100_v4", /^1 × A100 at/],
    ["Standard_ND96asr_v4", /^8 × A100 at/], // no GPU in the name: found by its quota family
    ["Standard_ND96isr_H100_v5", /^8 × H100 at/],
    ["Standard_NV36ads_A10_v5", /^1 × A10 at/], // A10, not A100
  ])("the GPU of %s is known (a GPU size is never estimated as CPU cores)", (vmSize, basis) => {
    const e = estimateFineTune(cfg({ trainingCluster: json({ vmSize }), training: json({ method: "lora" }) }))!;
    expect(e.basis).toMatch(basis);
  });

  it("a job on an unpriced size makes the total unknown, never 0", () => {
    const o = estimateOneOff(
      [
        { label: "a", jobName: "a", vmSize: "Standard_DS3_v2", nodes: 1, hours: 0.3, basis: "" },
        { label: "b", jobName: "b", vmSize: "Standard_Unknown_v9", nodes: 1, hours: 1, basis: "" },
      ],
      prices,
    );
    expect(o.jobs.map((j) => j.usd)).toEqual([0.229 * 0.3, null]);
    expect(o.total).toBeNull();
    expect(o.hours).toBeCloseTo(1.3, 9);
    expect(priceOptions(["Standard_Unknown_v9"], 1, prices)).toEqual([{ vmSize: "Standard_Unknown_v9", perHour: null, per30Days: null }]);
  });
});

describe("formatHeadline and monthlyEstimate", () => {
  it("orders blockers, one-off, monthly; networking counts in the month", () => {
    const c = cfg({ serving: json({ deployments: [{ name: "blue", instanceType: "Standard_NC6s_v3", instanceCount: 1 }] }) });
    const cost = estimateCost(costInputOf(c), prices);
    const network = estimateNetworkCost({ privateEndpoints: 2, firewalls: 0, firewallSku: "Basic", premiumRegistry: false });
    const monthly = monthlyEstimate(cost, network);
    expect(monthly.total).toBeCloseTo(3.06 * 720 + 0.01 * 2 * 720, 9);
    const oneOff = estimateOneOff([{ label: "fine-tune job", jobName: "phi3ft-ft-1", vmSize: "Standard_NC24ads_A100_v4", nodes: 1, hours: 2, basis: "b" }], prices);
    const lines = formatHeadline({ blockers: blockersOf(c, prices), oneOff, monthly, currency: "USD" });
    const at = (re: RegExp) => lines.findIndex((l) => re.test(l));
    expect(at(/^BLOCKED:/)).toBe(0);
    expect(at(/^First `pulumi up`, one-off: ~2\.0 h of jobs, ~USD 7\.35 \(once the blockers are fixed\)$/)).toBeGreaterThan(at(/Set it to one of/));
    expect(lines).toContain("  fine-tune job phi3ft-ft-1: ~2.0 h × 1 × Standard_NC24ads_A100_v4 @ USD 3.67/h = ~USD 7.35 (b)");
    expect(at(/^Monthly, while deployed: USD 2217\.60 per 30 days \(720 h: serving USD 2203\.20, idle clusters USD 0\.00, private networking USD 14\.40;/)).toBeGreaterThan(at(/^First/));
  });

  it("no blockers: the plan starts with the cost", () => {
    const lines = formatHeadline({ blockers: [], oneOff: estimateOneOff([], prices), monthly: monthlyEstimate(estimateCost(costInputOf(cfg({ serving: json({ deployments: [{ name: "blue", instanceType: "Standard_NC4as_T4_v3", instanceCount: 1 }] }) })), prices)), currency: "USD" });
    expect(lines[0]).toMatch(/^First `pulumi up`/);
    expect(lines.join("\n")).not.toContain("BLOCKED");
  });
});
