/**
 * The one rule for numbers and booleans in the stack config, used by every schema that has
 * them (infra/config.ts, autoscale.ts, distribution.ts, security.ts):
 *
 *   A key whose value is a number or true/false also accepts the same value written as text
 *   (`"3"`, `"1e-5"`, `"false"`), because that is how `pulumi config set --path ... 3` stores
 *   it. Nothing else is converted: a key whose value is text stays text (a tag value `"true"`
 *   is the text "true"), and text that does not spell a number or a boolean is refused with
 *   the key named.
 *
 * `test/config.test.ts` walks the whole schema and fails when a number or boolean is declared
 * without these helpers, so the rule cannot drift apart again (README "Configuration").
 */
import { z } from "zod";

/** Text that spells a decimal number (JSON's and YAML's spellings: `3`, `-0.5`, `1e-5`, `.5`). */
export const NUMBER_TEXT = /^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$/;

/** Text spelling a number → that number; anything else unchanged (the type check reports it). */
export const fromPulumiNumber = (v: unknown): unknown => (typeof v === "string" && v.length <= 64 && NUMBER_TEXT.test(v.trim()) ? Number(v) : v);

/** `"true"` / `"false"` → the boolean; anything else unchanged. */
export const fromPulumiBoolean = (v: unknown): unknown => (v === "true" ? true : v === "false" ? false : v);

/** Marker the schema walk of the tests looks for: a number or boolean schema built here. */
export const PULUMI_TEXT_RULE = Symbol.for("phi3-finetune.pulumiTextRule");

function mark<T extends z.ZodType>(s: T): T {
  (s as unknown as Record<symbol, boolean>)[PULUMI_TEXT_RULE] = true;
  return s;
}

/** A number (also as text); `refine` adds bounds to the inner `z.number()`. */
export function num(refine: (n: z.ZodNumber) => z.ZodNumber = (n) => n, typeError = "must be a number") {
  return mark(z.preprocess(fromPulumiNumber, mark(refine(z.number({ error: typeError })))));
}

/** An integer from `min` to `max` (also as text). */
export function int(min: number, max: number, typeError?: string) {
  return num(
    (n) =>
      n
        .int({ error: "must be an integer" })
        .min(min, { error: `must be >= ${min}` })
        .max(max, { error: `must be <= ${max}` }),
    typeError,
  );
}

/** true or false (also as the text "true" / "false"). */
export function bool() {
  return mark(z.preprocess(fromPulumiBoolean, mark(z.boolean({ error: "must be true or false" }))));
}
