import { defineConfig } from "vitest/config";

// pool "forks" (the default) with isolation: Pulumi's runtime state is per process and
// worker threads break its closure serialisation (shared/REFERENCE.md).
export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    pool: "forks",
    isolate: true,
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
