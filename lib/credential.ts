/**
 * One credential story for the azure-native provider and the programs `pulumi up` runs: the
 * programs read the same settings from the same environment variables, in the provider's order
 * (pulumi-azure-native provider/pkg/provider/auth_azidentity.go, `newSingleMethodAuthCredential`
 * and `readAuthConfig`), and build the matching `@azure/identity` credential:
 *
 * 1. `ARM_USE_DEFAULT_AZURE_CREDENTIAL=true` → `DefaultAzureCredential` (tenant `ARM_TENANT_ID`);
 * 2. `ARM_CLIENT_CERTIFICATE_PATH` → `ClientCertificateCredential` (PEM; a .pfx must be converted);
 * 3. `ARM_CLIENT_SECRET` → `ClientSecretCredential`;
 * 4. `ARM_USE_OIDC=true` → `ClientAssertionCredential` whose assertion is `ARM_OIDC_TOKEN`, the
 *    file `ARM_OIDC_TOKEN_FILE_PATH` (read again each time), or a fresh GitHub OIDC token fetched
 *    from `ACTIONS_ID_TOKEN_REQUEST_URL` with `ACTIONS_ID_TOKEN_REQUEST_TOKEN` (audience
 *    `ARM_OIDC_AUDIENCE`, default `api://AzureADTokenExchange`) for every Azure token, so a wait
 *    of hours never holds an expired assertion (the az CLI's OIDC login cannot refresh,
 *    Azure/azure-cli#28708);
 * 5. `ARM_USE_MSI=true` → `ManagedIdentityCredential` (client id `ARM_CLIENT_ID` when set);
 * 6. otherwise the developer's login: `DefaultAzureCredential` (az login, azd, Azure PowerShell,
 *    `AZURE_*` variables, workload or managed identity).
 *
 * Methods 2-4 need `ARM_CLIENT_ID` and `ARM_TENANT_ID`; a missing one is a {@link CredentialConfigError}
 * naming it (the programs exit 2), never a silent fall-through to another identity. The Azure
 * cloud: `ARM_ENVIRONMENT` (public, usgovernment, china), or `AZURE_AUTHORITY_HOST`.
 */
import type { TokenCredential } from "@azure/identity";
import { registerEnvSecrets, registerSecret } from "./secrets";

/** A credential setting that is missing or contradicts another (exit 2). */
export class CredentialConfigError extends Error {
  /** @param message - names the variable and what it needs. */
  constructor(message: string) {
    super(message);
    this.name = "CredentialConfigError";
  }
}

/** Which method {@link credentialFromEnv} chose (for logs and tests). */
export type CredentialKind = "default" | "client-certificate" | "client-secret" | "oidc-token" | "oidc-token-file" | "oidc-github" | "managed-identity" | "developer-login";

/** Microsoft Entra authority hosts by `ARM_ENVIRONMENT` (the provider's cloud names). */
export const AUTHORITY_HOSTS: Record<string, string> = {
  public: "https://login.microsoftonline.com",
  usgovernment: "https://login.microsoftonline.us",
  china: "https://login.chinacloudapi.cn",
};

/** Default audience of a GitHub OIDC token exchanged with Microsoft Entra. */
export const GITHUB_OIDC_AUDIENCE = "api://AzureADTokenExchange";

type Env = Record<string, string | undefined>;

const on = (v: string | undefined) => (v ?? "").trim().toLowerCase() === "true";
const val = (env: Env, name: string) => {
  const v = env[name]?.trim();
  return v ? v : undefined;
};

/**
 * Fetches a GitHub Actions OIDC token (`GET <url>&audience=...` with the request token as
 * bearer; answer `{"value": "<jwt>"}`), for a `ClientAssertionCredential`.
 *
 * @throws Error naming the status (never the request token) when GitHub refuses.
 */
export async function fetchGithubOidcToken(url: string, requestToken: string, audience: string, signal?: AbortSignal): Promise<string> {
  const u = new URL(url);
  u.searchParams.set("audience", audience);
  const res = await fetch(u, { headers: { authorization: `Bearer ${requestToken}`, accept: "application/json" }, signal: signal ?? AbortSignal.timeout(30_000) });
  const text = await res.text();
  if (!res.ok) throw new Error(`GitHub OIDC token request failed: HTTP ${res.status} (does the job have permissions: id-token: write?)`);
  let value: unknown;
  try {
    value = (JSON.parse(text) as { value?: unknown }).value;
  } catch {
    value = undefined;
  }
  if (typeof value !== "string" || value === "") throw new Error("GitHub OIDC token request answered without a token (no JSON {value})");
  // The assertion is as good as a password for the next minutes: masked wherever it may show.
  registerSecret(value);
  return value;
}

/**
 * The credential the environment asks for, chosen in the provider's order (module doc).
 *
 * @param env - the program's environment (`pulumi up` hands its own, plus what the stack adds).
 * @returns the credential and which method it is.
 * @throws CredentialConfigError when a chosen method lacks a setting.
 */
export function credentialFromEnv(env: Env): { credential: TokenCredential; kind: CredentialKind } {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const identity = require("@azure/identity") as typeof import("@azure/identity");
  const cloud = val(env, "ARM_ENVIRONMENT") ?? val(env, "AZURE_ENVIRONMENT");
  if (cloud !== undefined && AUTHORITY_HOSTS[cloud.toLowerCase()] === undefined) {
    throw new CredentialConfigError(`ARM_ENVIRONMENT '${cloud}' is not one of ${Object.keys(AUTHORITY_HOSTS).join(", ")}`);
  }
  const authorityHost = val(env, "AZURE_AUTHORITY_HOST") ?? (cloud ? AUTHORITY_HOSTS[cloud.toLowerCase()] : undefined);
  // Instance discovery asks the public cloud's metadata endpoint about the authority; a
  // sovereign or private authority (and a test's) answers for itself.
  const options = { ...(authorityHost ? { authorityHost, disableInstanceDiscovery: !Object.values(AUTHORITY_HOSTS).includes(authorityHost.replace(/\/+$/, "")) } : {}) };
  // Every secret setting is masked in whatever the process prints from here on (lib/secrets.ts).
  registerEnvSecrets(env);
  const tenantId = val(env, "ARM_TENANT_ID");
  const clientId = val(env, "ARM_CLIENT_ID");
  const need = (method: string) => {
    const missing = [["ARM_TENANT_ID", tenantId], ["ARM_CLIENT_ID", clientId]].filter(([, v]) => !v).map(([k]) => k);
    if (missing.length) throw new CredentialConfigError(`${method} needs ${missing.join(" and ")} (the same variables the azure-native provider reads)`);
    return { tenantId: tenantId!, clientId: clientId! };
  };

  if (on(env.ARM_USE_DEFAULT_AZURE_CREDENTIAL)) {
    return { credential: new identity.DefaultAzureCredential({ ...options, ...(tenantId ? { tenantId } : {}) }), kind: "default" };
  }
  const certificatePath = val(env, "ARM_CLIENT_CERTIFICATE_PATH");
  if (certificatePath) {
    const id = need("ARM_CLIENT_CERTIFICATE_PATH");
    const certificatePassword = val(env, "ARM_CLIENT_CERTIFICATE_PASSWORD");
    return {
      credential: new identity.ClientCertificateCredential(id.tenantId, id.clientId, { certificatePath, ...(certificatePassword ? { certificatePassword } : {}) }, options),
      kind: "client-certificate",
    };
  }
  const secret = val(env, "ARM_CLIENT_SECRET");
  if (secret) {
    const id = need("ARM_CLIENT_SECRET");
    return { credential: new identity.ClientSecretCredential(id.tenantId, id.clientId, secret, options), kind: "client-secret" };
  }
  if (on(env.ARM_USE_OIDC)) {
    const id = need("ARM_USE_OIDC");
    const token = val(env, "ARM_OIDC_TOKEN");
    const file = val(env, "ARM_OIDC_TOKEN_FILE_PATH");
    const url = val(env, "ACTIONS_ID_TOKEN_REQUEST_URL") ?? val(env, "ARM_OIDC_REQUEST_URL");
    const requestToken = val(env, "ACTIONS_ID_TOKEN_REQUEST_TOKEN") ?? val(env, "ARM_OIDC_REQUEST_TOKEN");
    const audience = val(env, "ARM_OIDC_AUDIENCE") ?? GITHUB_OIDC_AUDIENCE;
    if (token) return { credential: new identity.ClientAssertionCredential(id.tenantId, id.clientId, async () => token, options), kind: "oidc-token" };
    if (file) {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const fs = require("fs") as typeof import("fs");
      return { credential: new identity.ClientAssertionCredential(id.tenantId, id.clientId, async () => {
        const assertion = fs.readFileSync(file, "utf8").trim();
        registerSecret(assertion);
        return assertion;
      }, options), kind: "oidc-token-file" };
    }
    if (url && requestToken) {
      return {
        credential: new identity.ClientAssertionCredential(id.tenantId, id.clientId, () => fetchGithubOidcToken(url, requestToken, audience), options),
        kind: "oidc-github",
      };
    }
    throw new CredentialConfigError(
      "ARM_USE_OIDC needs ARM_OIDC_TOKEN, ARM_OIDC_TOKEN_FILE_PATH, or ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN (GitHub sets both in a job with permissions: id-token: write)",
    );
  }
  if (on(env.ARM_USE_MSI)) {
    return { credential: clientId ? new identity.ManagedIdentityCredential({ clientId }) : new identity.ManagedIdentityCredential(), kind: "managed-identity" };
  }
  return { credential: new identity.DefaultAzureCredential({ ...options, ...(tenantId ? { tenantId } : {}) }), kind: "developer-login" };
}
