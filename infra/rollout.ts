/**
 * Safe rollout, computed from the config without Azure (pure apart from reading the eval JSONL):
 * the quality gate's rules (jobs/quality-gate.ts, between the fine-tune job and the model
 * version) and the smoke tests' prompts (jobs/smoke-test.ts, before a deployment gets traffic
 * and through the endpoint after the traffic step, with roll-back), and how the plan words them.
 */
import * as fs from "fs";
import * as path from "path";
import type { StackConfig } from "./config";

/**
 * Prompts used when `serving.smoke.prompts` is not set and the eval data is not on this machine
 * (`data.source: ultrachat`: the split is made in Azure). Questions whose answers the stack's
 * own example data teaches (test/fixtures/data/test.jsonl).
 */
export const BUILT_IN_SMOKE_PROMPTS = ["Why does a GPU deployment take several minutes to create?", "What is a readiness probe?"];

/** How many eval rows give the default prompts. */
export const DEFAULT_SMOKE_ROWS = 2;

/** Where the smoke prompts come from, for the plan. */
export type SmokePromptSource = "config" | "eval data" | "built-in";

/**
 * The smoke prompts: `serving.smoke.prompts`; else the first user turn of the first
 * {@link DEFAULT_SMOKE_ROWS} rows of `data.testFile` (JSONL, validated by the config already);
 * else {@link BUILT_IN_SMOKE_PROMPTS}.
 *
 * @param root - project folder the data paths are relative to.
 */
export function smokePrompts(c: StackConfig, root = "."): { prompts: string[]; source: SmokePromptSource } {
  if (c.serving.smoke.prompts) return { prompts: c.serving.smoke.prompts, source: "config" };
  if (c.data.source === "jsonl") {
    const prompts: string[] = [];
    const text = fs.readFileSync(path.resolve(root, c.data.testFile), "utf8");
    for (const line of text.split(/\r?\n/)) {
      if (prompts.length >= DEFAULT_SMOKE_ROWS) break;
      if (line.trim() === "") continue;
      const row = JSON.parse(line) as { messages?: { role?: string; content?: string }[] };
      const user = row.messages?.find((m) => m.role === "user" && typeof m.content === "string" && m.content.trim() !== "");
      if (user) prompts.push(user.content!);
    }
    if (prompts.length) return { prompts, source: "eval data" };
  }
  return { prompts: BUILT_IN_SMOKE_PROMPTS, source: "built-in" };
}

/** The gate's environment variables (jobs/quality-gate.ts); unset rules are left out. */
export function gateRuleEnv(c: StackConfig): Record<string, string> {
  const g = c.training.gate;
  return {
    ...(g.maxEvalLoss !== undefined ? { GATE_MAX_EVAL_LOSS: String(g.maxEvalLoss) } : {}),
    ...(g.maxRegressionPercent !== undefined ? { GATE_MAX_REGRESSION_PERCENT: String(g.maxRegressionPercent) } : {}),
  };
}

/** The gate in words: `eval_loss <= 2 and at most 10% above the serving model's`, or why it is off. */
export function describeGate(c: StackConfig): string {
  const g = c.training.gate;
  if (!g.enabled) return "off (training.gate.enabled: false): the model is registered as soon as its job completed";
  const rules = [
    ...(g.maxEvalLoss !== undefined ? [`eval_loss <= ${g.maxEvalLoss}`] : []),
    ...(g.maxRegressionPercent !== undefined ? [`at most ${g.maxRegressionPercent}% above the serving model's eval_loss`] : []),
  ];
  return `${rules.length ? rules.join(" and ") : "eval_loss must be readable (no rule set)"}; fails closed when the run's metrics cannot be read`;
}

/** The smoke tests in words, for the plan. */
export function describeSmoke(c: StackConfig, root = "."): string {
  const s = c.serving.smoke;
  if (!s.enabled) return "off (serving.smoke.enabled: false): traffic moves as soon as the deployments are Succeeded";
  const { prompts, source } = smokePrompts(c, root);
  return (
    `${prompts.length} prompt(s) (${source}) to each new deployment before traffic, HTTP 200 within ${s.maxSeconds} s, ` +
    `non-empty, no template tokens; again through the endpoint after the traffic step, ` +
    (s.rollback ? "restoring the previous split on failure" : "without roll-back (serving.smoke.rollback: false)")
  );
}
