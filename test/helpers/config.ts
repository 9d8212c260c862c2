/** Config-validation helpers shared by the tests. */
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
