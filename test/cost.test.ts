import { describe, expect, it } from "vitest";
import rawTable from "../infra/prices.json";
import {
  HOURS_PER_30_DAYS,
  estimateCost,
  formatCostReport,
  formatMoney,
  hourlyPriceOf,
  loadPriceTable,
  type CostInput,
} from "../infra/cost";
import { prng } from "./helpers/prng";

const A100 = "Standard_NC24ads_A100_v4";
const V100 = "Standard_NC6s_v3";
const T4 = "Standard_NC4as_T4_v3";
const CPU = "Standard_E4s_v3";

const REQUIRED_SIZES = [
  "Standard_NC24ads_A100_v4",
  "Standard_NC48ads_A100_v4",
  "Standard_NC6s_v3",
  "Standard_NC4as_T4_v3",
  "Standard_NC8as_T4_v3",
  "Standard_NV36ads_A10_v5",
  "Standard_NC40ads_H100_v5",
  "Standard_E4s_v3",
  "Standard_E16s_v3",
  "Standard_DS3_v2",
  "Standard_D4s_v3",
];

function input(overrides: Partial<CostInput> = {}): CostInput {
  return {
    training: { vmSize: A100, minNodes: 0, maxNodes: 1 },
    deployments: [{ name: "blue", instanceType: V100, instanceCount: 1 }],
    ...overrides,
  };
}

/** Deterministic PRNG so the property loop is reproducible. */
const rng = prng;

describe("price table", () => {
  const table = loadPriceTable();

  it("has USD, a date, a source that says how to verify, and every size the project uses", () => {
    expect(table.currency).toBe("USD");
    expect(table.region).toBe("eastus2");
    expect(table.retrieved).toMatch(/^\d{4}-\d{2}-\d{2}$/);
    expect(`${table.source} ${table.note}`).toContain("prices.azure.com/api/retail/prices");
    expect(table.note).toMatch(/no surcharge/i);
    for (const size of REQUIRED_SIZES) {
      const price = table.hourly[size];
      expect(price, size).toBeTypeOf("number");
      expect(Number.isFinite(price) && price! > 0, size).toBe(true);
    }
    expect(table.overridden).toEqual([]);
  });

  it("ranks sizes sensibly (guards against a typo in the data)", () => {
    const h = table.hourly;
    expect(h["Standard_NC48ads_A100_v4"]).toBeCloseTo(2 * h[A100]!, 6);
    expect(h[T4]!).toBeLessThan(h["Standard_NC8as_T4_v3"]!);
    expect(h["Standard_NC8as_T4_v3"]!).toBeLessThan(h[A100]!);
    expect(h[A100]!).toBeLessThan(h["Standard_NC40ads_H100_v5"]!);
    expect(h["Standard_E16s_v3"]).toBeCloseTo(4 * h[CPU]!, 6);
    for (const size of ["Standard_E4s_v3", "Standard_DS3_v2", "Standard_D4s_v3"]) {
      expect(h[size]!).toBeLessThan(h[T4]!);
    }
  });

  it("does not mutate the recorded data when overriding", () => {
    loadPriceTable({ [A100]: 1 });
    expect((rawTable.hourly as Record<string, number>)[A100]).toBe(loadPriceTable().hourly[A100]);
  });
});

describe("loadPriceTable overrides", () => {
  it("an override wins over the recorded price and is reported", () => {
    const t = loadPriceTable({ [A100]: 2.5 });
    expect(t.hourly[A100]).toBe(2.5);
    expect(t.overridden).toEqual([A100]);
    const e = estimateCost(input({ deployments: [{ name: "d", instanceType: A100, instanceCount: 2 }] }), t);
    expect(e.serving.perHour).toBe(5);
    expect(e.training.perClusterHour).toBe(2.5);
  });

  it("matches the recorded size case-insensitively instead of adding a duplicate", () => {
    const t = loadPriceTable({ "standard_nc24ads_a100_v4": 9 });
    expect(t.hourly[A100]).toBe(9);
    expect(Object.keys(t.hourly).filter((k) => k.toLowerCase() === A100.toLowerCase())).toHaveLength(1);
    expect(hourlyPriceOf(t, "STANDARD_NC24ADS_A100_V4")).toBe(9);
  });

  it("adds sizes the table does not know", () => {
    const t = loadPriceTable({ Standard_NC80adis_H100_v5: 13.96 });
    expect(t.hourly["Standard_NC80adis_H100_v5"]).toBe(13.96);
    expect(t.hourly[A100]).toBe(loadPriceTable().hourly[A100]);
  });

  it.each<[string, unknown]>([
    ["negative", -1],
    ["zero", 0],
    ["NaN", Number.NaN],
    ["Infinity", Number.POSITIVE_INFINITY],
    ["string", "3.67"],
    ["null", null],
    ["object", { price: 3 }],
  ])("rejects a %s price, naming the size", (_label, value) => {
    expect(() => loadPriceTable({ Standard_Bogus_v9: value })).toThrow(/Standard_Bogus_v9/);
  });

  it("rejects an empty size name and a non-object", () => {
    expect(() => loadPriceTable({ "  ": 1 })).toThrow(/empty VM size/);
    expect(() => loadPriceTable([1, 2] as unknown as Record<string, unknown>)).toThrow(/must be an object/);
  });
});

describe("estimateCost arithmetic", () => {
  const prices = loadPriceTable();
  const pV100 = prices.hourly[V100]!;
  const pA100 = prices.hourly[A100]!;
  const pT4 = prices.hourly[T4]!;

  it("1 × NC6s_v3: perHour = price, per30Days = price × 720", () => {
    const e = estimateCost(input(), prices);
    expect(e.serving.lines).toEqual([
      { name: "blue", instanceType: V100, instanceCount: 1, unitPerHour: pV100, perHour: pV100 },
    ]);
    expect(e.serving.perHour).toBe(pV100);
    expect(e.serving.per30Days).toBe(pV100 * 720);
    expect(HOURS_PER_30_DAYS).toBe(720);
    expect(e.unknownSizes).toEqual([]);
    expect(e.currency).toBe("USD");
  });

  it("sums two deployments, multiplying by instance counts", () => {
    const e = estimateCost(
      input({
        deployments: [
          { name: "blue", instanceType: A100, instanceCount: 2 },
          { name: "green", instanceType: T4, instanceCount: 3 },
        ],
      }),
      prices,
    );
    expect(e.serving.lines.map((l) => l.perHour)).toEqual([2 * pA100, 3 * pT4]);
    expect(e.serving.perHour).toBeCloseTo(2 * pA100 + 3 * pT4, 10);
    expect(e.serving.per30Days).toBeCloseTo((2 * pA100 + 3 * pT4) * 720, 8);
  });

  it("no deployments cost 0, a deployment scaled to 0 instances costs 0", () => {
    expect(estimateCost(input({ deployments: [] }), prices).serving.perHour).toBe(0);
    const e = estimateCost(input({ deployments: [{ name: "b", instanceType: A100, instanceCount: 0 }] }), prices);
    expect(e.serving.perHour).toBe(0);
    expect(e.serving.per30Days).toBe(0);
  });

  it("training: min 0 → idle 0; max n → price × n", () => {
    const e = estimateCost(input({ training: { vmSize: A100, minNodes: 0, maxNodes: 2 } }), prices);
    expect(e.training.idlePerHour).toBe(0);
    expect(e.training.idlePer30Days).toBe(0);
    expect(e.training.perClusterHour).toBe(2 * pA100);
    expect(e.training.unitPerHour).toBe(pA100);
  });

  it("training: min 1 → idle = price (and × 720 per 30 days)", () => {
    const e = estimateCost(input({ training: { vmSize: A100, minNodes: 1, maxNodes: 1 } }), prices);
    expect(e.training.idlePerHour).toBe(pA100);
    expect(e.training.idlePer30Days).toBe(pA100 * 720);
  });

  it("prices the optional prep cluster, and omits it when absent", () => {
    expect(estimateCost(input(), prices).prep).toBeUndefined();
    const e = estimateCost(input({ prep: { vmSize: CPU, minNodes: 1, maxNodes: 4 } }), prices);
    expect(e.prep).toMatchObject({
      vmSize: CPU,
      unitPerHour: prices.hourly[CPU],
      perClusterHour: 4 * prices.hourly[CPU]!,
      idlePerHour: prices.hourly[CPU],
    });
  });

  it("does not round in arithmetic", () => {
    const t = loadPriceTable({ Standard_Odd: 0.0011 });
    const e = estimateCost(input({ deployments: [{ name: "o", instanceType: "Standard_Odd", instanceCount: 3 }] }), t);
    expect(e.serving.perHour).toBeCloseTo(0.0033, 12);
    expect(e.serving.perHour).not.toBe(0);
  });

  it("property: per30Days = 720 × perHour for random counts and sizes", () => {
    const rand = rng(20261123);
    const sizes = Object.keys(prices.hourly);
    for (let i = 0; i < 200; i++) {
      const n = Math.floor(rand() * 4);
      const deployments = Array.from({ length: n }, (_, j) => ({
        name: `d${j}`,
        instanceType: sizes[Math.floor(rand() * sizes.length)]!,
        instanceCount: Math.floor(rand() * 10),
      }));
      const minNodes = Math.floor(rand() * 3);
      const maxNodes = minNodes + Math.floor(rand() * 5);
      const e = estimateCost(input({ deployments, training: { vmSize: A100, minNodes, maxNodes } }), prices);
      const expected = deployments.reduce((s, d) => s + prices.hourly[d.instanceType]! * d.instanceCount, 0);
      expect(e.serving.perHour).toBeCloseTo(expected, 9);
      expect(e.serving.per30Days).toBeCloseTo(720 * e.serving.perHour!, 7);
      expect(e.training.perClusterHour).toBeCloseTo(pA100 * maxNodes, 9);
      expect(e.training.idlePerHour).toBeCloseTo(pA100 * minNodes, 9);
    }
  });
});

describe("unknown sizes", () => {
  const prices = loadPriceTable();

  it("are listed once and make dependent totals null, not 0", () => {
    const e = estimateCost(
      input({
        deployments: [
          { name: "blue", instanceType: V100, instanceCount: 1 },
          { name: "green", instanceType: "Standard_Mystery_v1", instanceCount: 1 },
          { name: "red", instanceType: "standard_mystery_v1", instanceCount: 2 },
        ],
      }),
      prices,
    );
    expect(e.unknownSizes).toEqual(["Standard_Mystery_v1"]);
    expect(e.serving.lines[0]!.perHour).toBe(prices.hourly[V100]);
    expect(e.serving.lines[1]).toMatchObject({ unitPerHour: null, perHour: null });
    expect(e.serving.perHour).toBeNull();
    expect(e.serving.per30Days).toBeNull();
  });

  it("an unknown cluster size has null money, except idle at min 0 which is truly 0", () => {
    const e = estimateCost(input({ training: { vmSize: "Standard_Nope", minNodes: 0, maxNodes: 2 } }), prices);
    expect(e.unknownSizes).toEqual(["Standard_Nope"]);
    expect(e.training.perClusterHour).toBeNull();
    expect(e.training.idlePerHour).toBe(0);
    const e1 = estimateCost(input({ training: { vmSize: "Standard_Nope", minNodes: 1, maxNodes: 2 } }), prices);
    expect(e1.training.idlePerHour).toBeNull();
  });

  it("the report warns about them and prints unknown instead of a number", () => {
    const e = estimateCost(
      input({ deployments: [{ name: "green", instanceType: "Standard_Mystery_v1", instanceCount: 1 }] }),
      prices,
    );
    const text = formatCostReport(e).join("\n");
    expect(text).toMatch(/WARNING: no price for Standard_Mystery_v1/);
    expect(text).toMatch(/total: unknown\/h, unknown per 30 days/);
    expect(text).not.toMatch(/total: USD 0\.00/);
  });
});

describe("input validation", () => {
  const prices = loadPriceTable();
  it.each<[string, Partial<CostInput>]>([
    ["negative instance count", { deployments: [{ name: "b", instanceType: A100, instanceCount: -1 }] }],
    ["fractional instance count", { deployments: [{ name: "b", instanceType: A100, instanceCount: 1.5 }] }],
    ["min > max", { training: { vmSize: A100, minNodes: 2, maxNodes: 1 } }],
    ["empty vm size", { training: { vmSize: "", minNodes: 0, maxNodes: 1 } }],
  ])("rejects %s", (_label, bad) => {
    expect(() => estimateCost(input(bad), prices)).toThrow(/Invalid cost input/);
  });
});

describe("formatCostReport", () => {
  it("prints money with 2 decimals and the currency, plus source and date", () => {
    const prices = loadPriceTable({ [V100]: 3.06, [A100]: 3.673 });
    const e = estimateCost(
      input({
        training: { vmSize: A100, minNodes: 1, maxNodes: 2 },
        prep: { vmSize: A100, minNodes: 0, maxNodes: 1 },
      }),
      prices,
    );
    const lines = formatCostReport(e);
    const text = lines.join("\n");
    expect(lines.every((l) => !l.includes("\n"))).toBe(true);
    expect(text).toContain(prices.source);
    expect(text).toContain(prices.retrieved);
    expect(text).toContain("blue: 1 × Standard_NC6s_v3 @ USD 3.06/h = USD 3.06/h");
    expect(text).toContain("total: USD 3.06/h, USD 2203.20 per 30 days (720 h)");
    expect(text).toContain("scaled out (2 nodes): USD 7.35/h; idle (1 nodes): USD 3.67/h = USD 2644.56 per 30 days");
    expect(text).toMatch(/^Prep cluster: Standard_NC24ads_A100_v4, 0–1 nodes/m);
    expect(text).toContain(`Prices overridden by stack config: ${V100}, ${A100}`);
    expect(text).not.toMatch(/WARNING/);
  });

  it("formatMoney rounds to 2 decimals and rejects non-finite amounts", () => {
    expect(formatMoney(2644.5599999, "USD")).toBe("USD 2644.56");
    expect(formatMoney(0, "USD")).toBe("USD 0.00");
    expect(formatMoney(null, "USD")).toBe("unknown");
    expect(() => formatMoney(Number.NaN, "USD")).toThrow(/non-finite/);
  });
});
