/**
 * Runs before every test file (vitest.config.mts setupFiles): watches everything the tests and
 * the code under test write to stdout, stderr or the console, and fails the file if one of the
 * tests' secrets appears in any form a server may echo it (lib/secrets.ts: plain, URL-encoded,
 * base64, JSON-escaped). The secrets are the fake bearer token and the endpoint keys the tests
 * hand to the programs and commands.
 */
import { afterAll } from "vitest";
import { containsSecret } from "../../lib/secrets";

/**
 * The secret kinds of the sweep (test/secret-sweep.test.ts), one value each, under the variable
 * that hands it to a program. Each holds characters that every encoding changes (`+ / = & % " \`
 * and a non-ASCII letter), so the five encodings of {@link encodings} all differ.
 */
export const SWEEP_SECRETS = {
  ARM_CLIENT_SECRET: 'sweep-cs~Zq9+/x=&%"\\ü-0001',
  ARM_CLIENT_CERTIFICATE_PASSWORD: 'sweep-pw+/?&="\\ä-0002',
  ARM_OIDC_TOKEN: 'static-oidc-sweep.eyJ+/=&"\\-0003',
  ACTIONS_ID_TOKEN_REQUEST_TOKEN: 'sweep-gh~req+/=&"\\ö-0004',
  ENDPOINT_KEY: 'sweep-ek+/=&%"\\é-0005',
} as const;

/** The key jobs/smoke-test.ts reads with listKeys in the sweep: in no environment, only the program's own registration masks it. */
export const LISTED_ENDPOINT_KEY = 'sweep-listed+/=&%"\\ñ-0006';

/** The five encodings a server, a proxy or a library may echo a secret in. */
export type Encoding = "plain" | "base64" | "base64url" | "url" | "json";

/** `secret` in each of the five encodings. */
export function encodings(secret: string): Record<Encoding, string> {
  return {
    plain: secret,
    base64: Buffer.from(secret, "utf8").toString("base64"),
    base64url: Buffer.from(secret, "utf8").toString("base64url"),
    url: encodeURIComponent(secret),
    json: JSON.stringify(secret).slice(1, -1),
  };
}

/** Text that holds every secret in every encoding (and base64 of `Bearer <secret>`, mid-blob). */
export function echoText(secrets: readonly string[]): string {
  return secrets
    .flatMap((s) => [...Object.entries(encodings(s)).map(([e, v]) => `${e}=${v}`), `b64auth=${Buffer.from(`Bearer ${s}`).toString("base64")}`])
    .join(" ");
}

/** Response headers that carry every secret in every encoding (all Latin-1: valid header values). */
export function echoHeaders(secrets: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  secrets.forEach((s, i) => {
    for (const [e, v] of Object.entries(encodings(s))) out[`x-echo-${i}-${e}`] = v;
  });
  // The headers programs read and may print: storage's error code, the auth challenge.
  out["x-ms-error-code"] = secrets[0] ?? "";
  out["www-authenticate"] = `Bearer error="invalid_token", error_description="${encodings(secrets[0] ?? "").url}"`;
  return out;
}

/** Every secret the tests give the code under test. */
export const TEST_SECRETS = [
  ...Object.values(SWEEP_SECRETS),
  LISTED_ENDPOINT_KEY,
  "eyFAKE.secret-token-value.sig-0123456789", // test/helpers/fake-arm.ts fakeCredential
  "eyJ0eXAiOiJKV1QifQ.fault-table-token-7f3a9c.c2lnbmF0dXJl", // test/faults.test.ts TOKEN
  "chat-endpoint-key-5b2e8d4c1a9f0e7d6c3b", // test/faults.test.ts KEY
  "k3y-SUPER-secret-0123456789abcdef", // test/chat.test.ts KEY
];

const leaks: string[] = [];

function watch(where: string, text: unknown): void {
  const s = typeof text === "string" ? text : Buffer.isBuffer(text) ? text.toString("utf8") : String(text);
  for (const secret of TEST_SECRETS) if (containsSecret(s, secret)) leaks.push(`${where}: ${secret.slice(0, 6)}… in ${JSON.stringify(s.slice(0, 200))}`);
}

for (const stream of [process.stdout, process.stderr] as const) {
  const write = stream.write.bind(stream) as (...a: unknown[]) => boolean;
  const name = stream === process.stdout ? "stdout" : "stderr";
  (stream as unknown as { write: (...a: unknown[]) => boolean }).write = (chunk: unknown, ...rest: unknown[]) => {
    watch(name, chunk);
    return write(chunk, ...rest);
  };
}
for (const method of ["log", "error", "warn", "info"] as const) {
  const original = console[method].bind(console);
  console[method] = (...args: unknown[]) => {
    watch(`console.${method}`, args.map((a) => (typeof a === "string" ? a : JSON.stringify(a))).join(" "));
    original(...args);
  };
}

afterAll(() => {
  if (leaks.length) throw new Error(`a test secret was printed:\n${leaks.slice(0, 5).join("\n")}`);
});
