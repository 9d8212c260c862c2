/** lib/secrets.ts: which environment variables are secrets, and the process-wide masking set. */
import { describe, expect, it } from "vitest";
import { MASK, MIN_SECRET_LENGTH, containsSecret, SECRET_ENV_VARS, maskRegistered, registerEnvSecrets, registerSecret, registeredSecrets, secretsFromEnv } from "../lib/secrets";
import { encodings } from "./helpers/secret-sweep";

describe("secrets of the environment", () => {
  it.each(SECRET_ENV_VARS.map((k) => [k] as const))("%s is collected, trimmed, and masked in every encoding once registered", (name) => {
    const value = `  ${name.toLowerCase()}-value+/=&"\\ü-${name.length}  `;
    expect(secretsFromEnv({ [name]: value, ARM_CLIENT_ID: "not-a-secret-id" })).toEqual([value.trim()]);
    registerEnvSecrets({ [name]: value });
    expect(registeredSecrets()).toContain(value.trim());
    for (const [enc, form] of Object.entries(encodings(value.trim()))) {
      const masked = maskRegistered(`<${form}>`);
      // base64 keeps at most the last group a neighbour's bits share (lib/secrets.ts base64Cores) and its padding.
      expect(masked.startsWith(`<${MASK}`), `${enc}: ${masked}`).toBe(true);
      expect(masked.length, `${enc}: ${masked}`).toBeLessThanOrEqual(MASK.length + 2 + 4 + 2);
      expect(containsSecret(masked, value.trim()), enc).toBe(false);
    }
  });

  it("ids, endpoints and blank values are not secrets; values too short to tell from text are not registered", () => {
    expect(secretsFromEnv({ ARM_CLIENT_ID: "c", ARM_TENANT_ID: "t", ARM_ENDPOINT: "https://x", ARM_CLIENT_SECRET: "   " })).toEqual([]);
    const short = "a".repeat(MIN_SECRET_LENGTH - 1);
    registerSecret(short, undefined, null, "");
    expect(registeredSecrets()).not.toContain(short);
    expect(maskRegistered(`x ${short} y`)).toBe(`x ${short} y`);
  });

  it("tokens registered later are masked too, with extra values for one call", () => {
    registerSecret("issued-bearer-token-123456");
    expect(maskRegistered("Bearer issued-bearer-token-123456 and once-only-value-9876", ["once-only-value-9876"])).toBe(`Bearer ${MASK} and ${MASK}`);
  });
});
