/** Config-validation helpers shared by the tests of plan-time rules. */
import { expect } from "vitest";
import { ConfigError, parseConfig, type RawConfig } from "../../infra/config";

/** The problems `parseConfig` reports for `raw` (over `location: eastus2`); fails the test when it does not throw a ConfigError. */
export function configProblems(raw: RawConfig): string[] {
  try {
    parseConfig({ location: "eastus2", ...raw });
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
