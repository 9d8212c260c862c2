/** Config-validation helpers shared by the tests of plan-time rules. */
import { expect } from "vitest";
import { ConfigError, parseConfig, type RawConfig } from "../../infra/config";

/** Every problem parseConfig reports for `raw` (fails the test when the config is valid). */
export function configProblems(raw: RawConfig): string[] {
  try {
    parseConfig(raw);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as ConfigError).issues;
  }
  throw new Error("expected a ConfigError");
}

/** Asserts `raw` is refused with exactly one problem on `key` (e.g. `phi3-finetune:training.mode`), matching `rule`. */
export function expectRefused(raw: RawConfig, key: string, rule: RegExp): void {
  const found = configProblems(raw);
  const mine = found.filter((p) => p.startsWith(`${key}:`));
  expect(mine, found.join("\n")).toHaveLength(1);
  expect(mine[0]).toMatch(rule);
}
