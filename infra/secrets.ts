/**
 * Secret config values stay secret end to end (issue 14, point 3). Pulumi hands the program
 * every config value as plain text (`pulumi.runtime.allConfig()`) and marks secrets per
 * top-level key: a `pulumi config set --secret --path 'phi3-finetune:serving.deployments[0].environmentVariables.HF_TOKEN'`
 * makes the whole `phi3-finetune:serving` key secret. So the loader asks which keys are secret
 * and the components wrap, with `pulumi.secret`, the values that may hold secrets:
 * - `tags` secret: every user tag value (resource tags; left out of job bodies, which Studio shows);
 * - `serving` secret: every deployment's `environmentVariables` value.
 * The rest of a secret `serving` names Azure resources and sizes, and any other key names
 * resources or reaches job commands and the plan: such a key stored as a secret is refused,
 * naming it, rather than silently printed.
 */
import * as pulumi from "@pulumi/pulumi";

/** Keys that may be stored as secrets, and what of them is secret. */
export const SECRET_CAPABLE_KEYS = {
  tags: "every tag value",
  serving: "every serving.deployments[].environmentVariables value",
} as const;

/** Which secret-capable values are secret in this stack. */
export interface SecretMarks {
  /** User tag values (`tags` is a secret key). */
  tags: boolean;
  /** Deployment environment variable values (`serving` is a secret key). */
  environmentVariables: boolean;
}

/** No secrets (what `parseConfig` callers without a runtime get). */
export const NO_SECRETS: SecretMarks = { tags: false, environmentVariables: false };

/**
 * The marks of a stack whose secret keys (without namespace) are `secretKeys`, and a problem
 * (`<key>: ...`, unqualified; the caller qualifies it) for every secret key that cannot stay secret.
 */
export function secretMarks(secretKeys: string[]): { marks: SecretMarks; problems: { key: string; message: string }[] } {
  const problems = secretKeys
    .filter((k) => !(k in SECRET_CAPABLE_KEYS))
    .map((key) => ({
      key,
      message:
        "is stored as a secret, but its value names Azure resources, goes into job commands or is printed by the plan, so it cannot stay secret; " +
        `keep secrets in ${Object.entries(SECRET_CAPABLE_KEYS).map(([k, what]) => `${k} (${what})`).join(" or ")}`,
    }));
  return { marks: { tags: secretKeys.includes("tags"), environmentVariables: secretKeys.includes("serving") }, problems };
}

/** Resource tags: `base` (the stack's own tags) plus the user's, their values secret when `tags` is. */
export type Tags = Record<string, pulumi.Input<string>>;

/** The user's tags as resource inputs: each value a `pulumi.secret` when marked. */
export function secretTags(tags: Record<string, string>, marks: SecretMarks): Tags {
  return marks.tags ? Object.fromEntries(Object.entries(tags).map(([k, v]) => [k, pulumi.secret(v)])) : { ...tags };
}

/** Tags that may go where Azure shows them in plain text (job bodies): secret values left out. */
export function plainTags(tags: Record<string, string>, marks: SecretMarks): Record<string, string> {
  return marks.tags ? {} : { ...tags };
}

/** A deployment's environment variables as resource inputs: each value a `pulumi.secret` when marked. */
export function secretEnvironment(env: Record<string, string>, marks: SecretMarks): Record<string, pulumi.Input<string>> {
  return marks.environmentVariables ? Object.fromEntries(Object.entries(env).map(([k, v]) => [k, pulumi.secret(v)])) : { ...env };
}

/** Which project keys (without namespace) Pulumi marked secret, from the runtime's secret-key list. */
export function runtimeSecretKeys(project: string, keys: string[]): string[] {
  // Pulumi's own check (PULUMI_CONFIG_SECRET_KEYS), not exported in the typings.
  const { isConfigSecret } = require("@pulumi/pulumi/runtime/config") as { isConfigSecret: (k: string) => boolean };
  return keys.filter((k) => isConfigSecret(`${project}:${k}`));
}
