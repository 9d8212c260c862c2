/**
 * Runs before every test file (vitest.config.mts setupFiles): watches everything the tests and
 * the code under test write to stdout, stderr or the console, and fails the file if one of the
 * tests' secrets appears in any form a server may echo it (lib/secrets.ts: plain, URL-encoded,
 * base64, JSON-escaped). The secrets are the fake bearer token and the endpoint keys the tests
 * hand to the programs and commands.
 */
import { afterAll } from "vitest";
import { containsSecret } from "../../lib/secrets";

/** Every secret the tests give the code under test. */
export const TEST_SECRETS = [
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
