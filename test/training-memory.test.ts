/** The plan's GPU memory check for each training method and precision (issue 20 item 7). */
import { describe, expect, it } from "vitest";
import { parseConfig } from "../infra/config";
import { estimateTrainingMemory, loraParameters, PHI3_MINI_SHAPE, trainingMemoryIssue } from "../infra/training-memory";
import { expectRefused } from "./helpers/config";

const json = (v: unknown) => JSON.stringify(v);

describe("estimateTrainingMemory", () => {
  it("counts 16, 8 and 2 bytes per parameter for full bf16-mixed, full bf16 and the LoRA base", () => {
    const P = PHI3_MINI_SHAPE.parameters;
    expect(estimateTrainingMemory("full", "bf16-mixed", 4, 2048).weightsAndOptimizerGB).toBeCloseTo((16 * P) / 1e9, 1);
    expect(estimateTrainingMemory("full", "bf16", 4, 2048).weightsAndOptimizerGB).toBeCloseTo((8 * P) / 1e9, 1);
    const lora = estimateTrainingMemory("lora", "bf16-mixed", 4, 2048, 16);
    expect(lora.weightsAndOptimizerGB).toBeCloseTo((2 * P + 16 * loraParameters(16)) / 1e9, 1);
    // LoRA r=16 on every linear layer of Phi-3-mini: ~25M parameters (<1% of 3.8B).
    expect(loraParameters(16)).toBe(16 * 32 * (4 * 3072 + 2 * 3072 + (3072 + 2 * 8192) + (8192 + 3072)));
  });

  it("says the arithmetic and adds activations and overhead", () => {
    const e = estimateTrainingMemory("full", "bf16-mixed", 4, 2048);
    expect(e.totalGB).toBeCloseTo(e.weightsAndOptimizerGB + e.activationsGB + e.overheadGB, 0);
    expect(e.arithmetic).toMatch(/^3\.8e\+9 params × 16 B \(fp32 weights, grads, AdamW moments\) = 60\.8 GB \+ activations \(batch 4 × 2048 tokens, gradient checkpointing\) [\d.]+ GB \+ 3 GB CUDA overhead = ~[\d.]+ GB$/);
    expect(estimateTrainingMemory("full", "bf16-mixed", 8, 4096).activationsGB).toBeGreaterThan(e.activationsGB * 2);
  });
});

describe("trainingMemoryIssue", () => {
  it.each([
    // [vmSize, method, precision, fits]
    ["Standard_NC24ads_A100_v4", "full", "bf16-mixed", true],
    ["Standard_NC24ads_A100_v4", "full", "bf16", true],
    ["Standard_NC24ads_A100_v4", "lora", "bf16-mixed", true],
    ["Standard_NC40ads_H100_v5", "full", "bf16-mixed", true],
    ["Standard_ND96asr_v4", "full", "bf16-mixed", false],
    ["Standard_ND96asr_v4", "full", "bf16", false], // 30.4 + 6.9 + 3 = 40.3 GB > 40
    ["Standard_ND96asr_v4", "lora", "bf16-mixed", true],
    ["Standard_NV36ads_A10_v5", "full", "bf16-mixed", false],
    ["Standard_NV36ads_A10_v5", "full", "bf16", false],
    ["Standard_NV36ads_A10_v5", "lora", "bf16-mixed", true],
    ["Standard_E16s_v3", "full", "bf16-mixed", true], // CPU: no GPU check
  ] as const)("%s %s %s fits: %s", (vmSize, method, precision, fits) => {
    const problem = trainingMemoryIssue(vmSize, method, precision, 4, 2048)?.message;
    expect(problem === undefined).toBe(fits);
  });

  it("is certain (refused) when weights and optimizer states alone exceed the GPU", () => {
    expect(trainingMemoryIssue("Standard_NV36ads_A10_v5", "full", "bf16", 4, 2048)?.certain).toBe(true);
    expect(trainingMemoryIssue("Standard_ND96asr_v4", "full", "bf16", 4, 2048)?.certain).toBe(false);
    expect(trainingMemoryIssue("Standard_NC24ads_A100_v4", "full", "bf16-mixed", 4, 2048)).toBeUndefined();
  });

  it("names the capacity and what fits instead", () => {
    expect(trainingMemoryIssue("Standard_ND96asr_v4", "full", "bf16-mixed", 4, 2048)?.message).toMatch(
      /needs 3\.8e\+9 params × 16 B .* more than the 40 GB of one Standard_ND96asr_v4 GPU; training\.method lora fits/,
    );
    // A shorter sequence brings pure bf16 under 40 GB: both alternatives are named.
    expect(trainingMemoryIssue("Standard_ND96asr_v4", "full", "bf16-mixed", 4, 1024)?.message).toMatch(/training\.precision bf16 or training\.method lora fits/);
    expect(trainingMemoryIssue("Standard_NV36ads_A10_v5", "full", "bf16", 4, 2048)?.message).toMatch(/24 GB .*; training\.method lora fits/);
  });
});

describe("config keys training.precision / method / loraRank", () => {
  it("default to bf16-mixed full fine-tuning, rank 16, which fits the default A100 cluster", () => {
    const { config } = parseConfig({ location: "eastus2" });
    expect([config.training.precision, config.training.method, config.training.loraRank]).toEqual(["bf16-mixed", "full", 16]);
  });

  it("refuses a method and precision that do not fit the training GPU, with the arithmetic", () => {
    expectRefused({ trainingCluster: json({ vmSize: "Standard_NV36ads_A10_v5" }) }, "phi3-finetune:training.precision",
      /needs .* per GPU, more than the 24 GB of one Standard_NV36ads_A10_v5 GPU; training\.method lora fits/);
    const { config } = parseConfig({ location: "eastus2", trainingCluster: json({ vmSize: "Standard_NV36ads_A10_v5" }), training: json({ method: "lora" }) });
    expect(config.training.method).toBe("lora");
  });

  it("warns (does not refuse) when only the activation estimate pushes it over the GPU", () => {
    const raw = { location: "eastus2", hyperparameters: json({ perDeviceBatchSize: 8, maxSeqLength: 4096 }) };
    const { warnings } = parseConfig(raw);
    expect(warnings.filter((w) => w.includes("GPU memory"))).toEqual([
      expect.stringMatching(/^phi3-finetune:training\.precision: likely out of GPU memory: .*\(batch 8 × 4096 tokens.* more than the 80 GB of one Standard_NC24ads_A100_v4 GPU/),
    ]);
    expect(parseConfig({ location: "eastus2" }).warnings.filter((w) => w.includes("GPU memory"))).toEqual([]);
  });

  it("refuses unknown values naming the key", () => {
    expectRefused({ training: json({ precision: "fp16" }) }, "phi3-finetune:training.precision", /bf16-mixed/);
    expectRefused({ training: json({ method: "qlora" }) }, "phi3-finetune:training.method", /lora/);
  });
});
