import path from "node:path";
import { defineConfig } from "vitest/config";

// The fake Azure servers of the tests (test/helpers/fake-arm.ts) speak TLS with a test-only
// loopback certificate; every test process and every program a test starts trusts it through
// Node's NODE_EXTRA_CA_CERTS, read at process start (so it is set here, before the forks).
process.env.NODE_EXTRA_CA_CERTS = path.resolve(import.meta.dirname, "test/fixtures/tls/loopback.crt");

// pool "forks" (the default) with isolation: Pulumi's runtime state is per process and
// worker threads break its closure serialisation (shared/REFERENCE.md).
export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Every file: nothing the tests print may hold a test secret in any form.
    setupFiles: ["test/helpers/secret-sweep.ts"],
    pool: "forks",
    isolate: true,
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
