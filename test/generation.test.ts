import { describe, expect, it } from "vitest";
import { parseConfig } from "../infra/config";
import {
  CLIENT_TIMEOUT_MARGIN_SECONDS,
  chatDefaults,
  chatDefaultsFor,
  GPU_MAX_NEW_TOKENS,
  PHI3_MINI_PARAMETERS,
  TIMEOUT_SHARE,
  vcpusOf,
} from "../infra/generation";
import { unwrapSecrets } from "../lib/mock-runtime";
import { byName, runStack } from "./helpers/stack";

describe("chat defaults sized for the serving hardware", () => {
  it("reads vCPUs from size names", () => {
    expect(vcpusOf("Standard_E4s_v3")).toBe(4);
    expect(vcpusOf("Standard_E16s_v3")).toBe(16);
    expect(vcpusOf("Standard_DS3_v2")).toBe(3);
    expect(vcpusOf("nonsense")).toBeUndefined();
  });

  it("E4s_v3 in float32: ~0.8 token/s, 64 new tokens, answered well within the 180 s request timeout", () => {
    const d = chatDefaultsFor("Standard_E4s_v3", 180_000, 4);
    // 4 vCPUs × 3 GB/s = 12 GB/s over 3.8e9 × 4 bytes = 15.2 GB per token.
    expect(d.tokensPerSecond).toBeCloseTo(12e9 / (PHI3_MINI_PARAMETERS * 4), 2);
    expect(d.maxNewTokens).toBe(64);
    expect(d.estimatedSeconds).toBeLessThanOrEqual(180 * TIMEOUT_SHARE);
    expect(d.timeoutSeconds).toBe(180 + CLIENT_TIMEOUT_MARGIN_SECONDS);
    // One step more would not fit the budget.
    expect(d.estimatedSeconds + 16 / d.tokensPerSecond!).toBeGreaterThan(180 * TIMEOUT_SHARE);
  });

  it("more vCPUs or half-size weights allow more tokens; a short request timeout fewer, never under 16", () => {
    expect(chatDefaultsFor("Standard_E16s_v3", 180_000, 4).maxNewTokens).toBeGreaterThan(64);
    expect(chatDefaultsFor("Standard_E4s_v3", 180_000, 2).maxNewTokens).toBeGreaterThan(64);
    expect(chatDefaultsFor("Standard_E4s_v3", 60_000, 4).maxNewTokens).toBe(16);
  });

  it("GPU sizes keep the seed's 256 tokens", () => {
    expect(chatDefaultsFor("Standard_NC4as_T4_v3", 180_000, 2)).toMatchObject({ maxNewTokens: GPU_MAX_NEW_TOKENS, timeoutSeconds: 200 });
  });

  it("a stack takes the defaults of its deployment with the most live traffic", () => {
    const base = { location: "eastus2", training: JSON.stringify({ servedDtype: "float32" }) };
    const c = parseConfig({
      ...base,
      serving: JSON.stringify({
        deployments: [
          { name: "blue", instanceType: "Standard_NC4as_T4_v3" },
          { name: "green", instanceType: "Standard_E4s_v3" },
        ],
        traffic: { blue: 10, green: 90 },
      }),
    }).config;
    expect(chatDefaults(c).maxNewTokens).toBe(64);
  });

  it("the cpu stack exports them and puts them in the Prompt flow connection's metadata", async () => {
    const run = await runStack({ stack: "cpu" });
    expect(run.outputs.chatDefaults).toMatchObject({ maxNewTokens: 64, timeoutSeconds: 200 });
    const connection = byName(run, "phi3-promptflow-connection");
    expect((unwrapSecrets(connection.inputs) as any).properties.metadata).toMatchObject({ max_new_tokens: "64", timeout_seconds: "200" });
    const dev = await runStack({ stack: "dev" });
    expect(dev.outputs.chatDefaults).toMatchObject({ maxNewTokens: 256, payloadShape: "prompt-list" });
  });

  it("names the request body of the served model: chat-list for the managed mode's model", async () => {
    const run = await runStack({ stack: "managed" });
    expect(run.outputs.chatDefaults).toMatchObject({ payloadShape: "chat-list" });
    const connection = byName(run, "phi3-promptflow-connection");
    expect((unwrapSecrets(connection.inputs) as any).properties.metadata.payload_shape).toBe("chat-list");
    const c = parseConfig({ location: "eastus2", training: JSON.stringify({ mode: "managed" }) }).config;
    expect(chatDefaults(c).payloadShape).toBe("chat-list");
    // A deployment pinned to a workspace version serves a script-trained model.
    const pinned = parseConfig({
      location: "eastus2",
      training: JSON.stringify({ mode: "managed" }),
      serving: JSON.stringify({ deployments: [{ name: "blue", model: { name: "phi3-finetuned", version: "7", existing: true } }] }),
    }).config;
    expect(chatDefaults(pinned).payloadShape).toBe("prompt-list");
  });
});
