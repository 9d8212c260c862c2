import * as pulumi from "@pulumi/pulumi";
import { COMMAND_SECRET_OUTPUTS } from "./shell";
import * as local from "@pulumi/command/local";
import { preflightInput } from "./quota";
import { programCredentialEnv, StackConfig } from "./config";

/** Arguments of {@link Preflight}. */
export interface PreflightArgs {
  config: StackConfig;
  /** Subscription `pulumi up` deploys to (from `authorization.getClientConfig`). */
  subscriptionId: pulumi.Input<string>;
}

/**
 * The first step of `pulumi up`: `jobs/preflight.ts`, run by `@pulumi/command`, checks the
 * subscription with the checks of `npm run doctor` (lib/preflight.ts; ARM REST, Azure ML
 * 2025-12-01): VM sizes offered and not retired, quota per family with the 20% online
 * reservation, providers, names free or the stack's own (soft-deleted vault or workspace
 * included), pinned model versions present. It depends on nothing; the workspace and identity
 * components depend on {@link done}, so every costly resource (clusters, jobs, endpoint,
 * deployments, Prompt flow hub) waits for it and is never created when it fails.
 * It runs on create and again whenever what it checks changes (`update`); never in preview.
 */
export class Preflight extends pulumi.ComponentResource {
  /** The check; depend on it to run only after it passed. */
  public readonly done: pulumi.Resource;

  constructor(name: string, args: PreflightArgs, opts?: pulumi.ComponentResourceOptions) {
    super("phi3:infra:Preflight", name, {}, opts);
    const run = "npx --no-install tsx jobs/preflight.ts";
    this.done = new local.Command(
      `${name}-check`,
      {
        create: run,
        update: run,
        environment: {
          AZURE_SUBSCRIPTION_ID: args.subscriptionId,
          PULUMI_STACK: pulumi.getStack(),
          PREFLIGHT_INPUT: JSON.stringify(preflightInput(args.config)),
          ...programCredentialEnv(),
        },
        logging: "stdoutAndStderr",
      },
      // What the program prints is kept in the state: secret there, whatever it holds (it masks secrets itself too).
      { parent: this, additionalSecretOutputs: [...COMMAND_SECRET_OUTPUTS] },
    );
    this.registerOutputs({});
  }
}
