/**
 * Imported first by cli/plan.ts: loads `@pulumi/pulumi` and the azure-native ML module (which
 * the program needs anyway) and records when they were loaded, so `npm run bench` can compare
 * the plan's wall time with the time to load those two in the same process.
 */
import "@pulumi/pulumi";
import "@pulumi/azure-native/machinelearningservices";

/** Milliseconds from process start until both modules were loaded. */
export const LOADED_AT_MS = performance.now();
