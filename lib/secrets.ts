/**
 * Masking of secrets (the endpoint key, bearer tokens) in every form a server, a proxy or a
 * library may echo them: plain, URL-encoded (upper- and lower-case escapes, `+` for spaces),
 * base64 and base64url at any byte alignment (so a key inside an encoded JSON or
 * `Bearer <key>` blob is caught too), and JSON-escaped (once and twice). Every program and
 * command passes whatever it prints about a failure through {@link maskSecrets}.
 */

/** What a masked secret is replaced with. */
export const MASK = "***";


/** Base64 of `secret` at byte offset 0, 1 and 2, without the characters a neighbour can change. */
function base64Cores(secret: Buffer): string[] {
  const cores: string[] = [];
  for (let offset = 0; offset < 3; offset++) {
    const encoded = Buffer.concat([Buffer.alloc(offset), secret]).toString("base64").replace(/=+$/, "");
    // Characters 0..ceil(offset*4/3) mix the neighbour's bits with the secret's; so do the last
    // group's when the secret does not end on a 3-byte boundary.
    const start = offset === 0 ? 0 : 4;
    const end = (offset + secret.length) % 3 === 0 ? encoded.length : encoded.length - 4;
    if (end - start >= 8) cores.push(encoded.slice(start, end));
  }
  return cores;
}

/**
 * Every form of `secret` that {@link maskSecrets} replaces, longest first (so a longer form is
 * masked before a shorter one inside it).
 *
 * @param secret - the value to hide.
 * @returns the distinct forms (base64 forms only for secrets of 6 characters or more, whose
 *   encoding is long enough to be told apart from ordinary text); empty for an empty secret.
 */
export function secretForms(secret: string): string[] {
  if (secret.length === 0) return [];
  const forms = new Set<string>([secret]);
  const uri = encodeURIComponent(secret);
  forms.add(uri);
  forms.add(uri.replace(/%[0-9A-F]{2}/g, (m) => m.toLowerCase()));
  forms.add(uri.replace(/%20/g, "+"));
  const json = JSON.stringify(secret).slice(1, -1);
  forms.add(json);
  forms.add(JSON.stringify(json).slice(1, -1));
  for (const core of base64Cores(Buffer.from(secret, "utf8"))) {
    forms.add(core);
    forms.add(core.replace(/\+/g, "-").replace(/\//g, "_"));
  }
  return [...forms].filter((f) => f.length > 0).sort((a, b) => b.length - a.length);
}

/**
 * Replaces every form ({@link secretForms}) of every secret in `text` with `mask`.
 *
 * @param text - anything about to be printed, logged or put in an error.
 * @param secrets - values to hide; `undefined` and short values are skipped.
 * @param mask - replacement, default {@link MASK}.
 */
export function maskSecrets(text: string, secrets: readonly (string | undefined | null)[], mask: string = MASK): string {
  let out = text;
  const forms = secrets.flatMap((s) => (s ? secretForms(s) : [])).sort((a, b) => b.length - a.length);
  for (const form of forms) out = out.split(form).join(mask);
  return out;
}

/**
 * Whether `text` contains `secret` in any form {@link maskSecrets} would replace (for tests and
 * sweeps of program output).
 */
export function containsSecret(text: string, secret: string): boolean {
  return secretForms(secret).some((f) => text.includes(f));
}

/**
 * Environment variables whose values are secrets, read by lib/credential.ts (the azure-native
 * provider's names), by @azure/identity (`AZURE_*`, the managed identity's header) and by the
 * clients (`ENDPOINT_KEY`). Every program collects them at start ({@link registerEnvSecrets})
 * and never prints them in any form.
 */
export const SECRET_ENV_VARS = [
  "ARM_CLIENT_SECRET",
  "ARM_CLIENT_CERTIFICATE_PASSWORD",
  "ARM_OIDC_TOKEN",
  "ARM_OIDC_REQUEST_TOKEN",
  "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
  "AZURE_CLIENT_SECRET",
  "AZURE_CLIENT_CERTIFICATE_PASSWORD",
  "IDENTITY_HEADER",
  "MSI_SECRET",
  "ENDPOINT_KEY",
] as const;

/** Values shorter than this are not registered (masking them would mangle ordinary text). */
export const MIN_SECRET_LENGTH = 6;

const registered = new Set<string>();

/**
 * Adds secrets to the process-wide masking set that {@link maskRegistered} and
 * {@link maskProcessOutput} use: values from the environment, tokens issued at run time (Azure
 * bearer tokens, GitHub OIDC tokens fetched for a client assertion, the assertion file's text).
 * Blank and short values are ignored.
 */
export function registerSecret(...values: readonly (string | undefined | null)[]): void {
  for (const v of values) {
    const s = v?.trim();
    if (s && s.length >= MIN_SECRET_LENGTH) {
      registered.add(s);
      if (s !== v && v) registered.add(v);
    }
  }
}

/** The values of {@link SECRET_ENV_VARS} set in `env` (blank ones skipped). */
export function secretsFromEnv(env: Record<string, string | undefined>): string[] {
  return SECRET_ENV_VARS.map((k) => env[k]?.trim()).filter((v): v is string => !!v);
}

/** Registers every secret of `env` ({@link secretsFromEnv}); returns them. */
export function registerEnvSecrets(env: Record<string, string | undefined>): string[] {
  const found = secretsFromEnv(env);
  registerSecret(...found);
  return found;
}

/** The secrets registered so far. */
export function registeredSecrets(): string[] {
  return [...registered];
}

/** {@link maskSecrets} with every registered secret plus `extra`. */
export function maskRegistered(text: string, extra: readonly (string | undefined | null)[] = [], mask: string = MASK): string {
  return maskSecrets(text, [...registered, ...extra], mask);
}

let outputMasked = false;

/**
 * Makes every byte the process writes to stdout and stderr pass through {@link maskRegistered}
 * first: the last line of defence of a program's output (its own lines, a library's warning, an
 * unexpected exception's message). Secrets registered later are masked too. Idempotent.
 */
export function maskProcessOutput(): void {
  if (outputMasked) return;
  outputMasked = true;
  for (const stream of [process.stdout, process.stderr]) {
    const write = stream.write.bind(stream) as (chunk: unknown, ...rest: unknown[]) => boolean;
    (stream as unknown as { write: (chunk: unknown, ...rest: unknown[]) => boolean }).write = (chunk: unknown, ...rest: unknown[]) => {
      if (registered.size === 0) return write(chunk, ...rest);
      const text = typeof chunk === "string" ? chunk : Buffer.from(chunk as Uint8Array).toString("utf8");
      const masked = maskRegistered(text);
      if (masked === text) return write(chunk, ...rest);
      return write(masked, "utf8", ...(typeof rest[0] === "string" ? rest.slice(1) : rest));
    };
  }
}
