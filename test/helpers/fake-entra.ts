/**
 * A fake Microsoft Entra token service for tests, on 127.0.0.1 over TLS (the test certificate
 * of test/fixtures/tls/, trusted through NODE_EXTRA_CA_CERTS): the OpenID configuration and the
 * token endpoint of any tenant (client secret and client assertion grants), a GitHub Actions
 * OIDC token endpoint, and an App Service-style managed identity endpoint. Every token it issues
 * is recorded with its expiry, so a fake ARM server can accept exactly the live ones.
 */
import https from "node:https";
import type { AddressInfo } from "node:net";
import { LOOPBACK_TLS } from "./tls";

/** A token the service issued. */
export interface IssuedToken {
  token: string;
  /** Epoch ms after which it is expired. */
  expiresAt: number;
  /** How it was obtained. */
  grant: "client_secret" | "client_assertion" | "managed_identity";
  clientId?: string;
  /** The client assertion presented (a GitHub OIDC token), if any. */
  assertion?: string;
}

/** The running fake token service. */
export interface FakeEntra {
  /** Authority host, `https://127.0.0.1:<port>`. */
  authorityHost: string;
  /** GitHub's `ACTIONS_ID_TOKEN_REQUEST_URL`. */
  githubOidcUrl: string;
  /** GitHub's `ACTIONS_ID_TOKEN_REQUEST_TOKEN` it accepts. */
  githubRequestToken: string;
  /** `IDENTITY_ENDPOINT` / `IDENTITY_HEADER` of the managed identity endpoint. */
  identityEndpoint: string;
  identityHeader: string;
  /** Every token issued, in order. */
  issued: IssuedToken[];
  /** GitHub OIDC tokens handed out, in order. */
  githubTokens: string[];
  /** Token requests refused (bad secret, unknown assertion). */
  refused: string[];
  /** Epoch ms of the first request received (a program's first network call is for a token). */
  firstRequestAt?: number;
  /** While true, every request is accepted and never answered (a hung token endpoint). */
  hang: boolean;
  /**
   * While set, every token request (and the GitHub OIDC endpoint) is refused with this answer:
   * a proxy or a token service that echoes what it was sent (secret sweeps).
   */
  refuse?: (req: { path: string; body: string; headers: Record<string, string | string[] | undefined> }) => { status: number; body: string; headers?: Record<string, string> };
  /** Whether `token` was issued here and has not expired. */
  isLive(token: string): boolean;
  close(): Promise<void>;
}

/**
 * Starts the service.
 *
 * @param opts - `lifetimeSeconds` of the Azure tokens it issues (default 3600), the client
 *   secret it accepts (default `s3cret-value-0123`), the GitHub request token it accepts.
 */
export async function startFakeEntra(opts: { lifetimeSeconds?: number; clientSecret?: string; githubRequestToken?: string } = {}): Promise<FakeEntra> {
  const lifetime = opts.lifetimeSeconds ?? 3600;
  const secret = opts.clientSecret ?? "s3cret-value-0123";
  let n = 0;
  // eslint-disable-next-line prefer-const
  let fake: FakeEntra;
  const issue = (grant: IssuedToken["grant"], extra: Partial<IssuedToken>) => {
    const t: IssuedToken = { token: `entra-token-${++n}-${Date.now()}`, expiresAt: Date.now() + lifetime * 1000, grant, ...extra };
    fake.issued.push(t);
    return t;
  };
  const server = https.createServer(LOOPBACK_TLS, (req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    fake.firstRequestAt ??= Date.now();
    req.on("end", () => {
      if (fake.hang) return;
      const url = new URL(req.url ?? "/", fake.authorityHost);
      if (fake.refuse && /\/oauth2\/v2\.0\/token$/.test(url.pathname)) {
        const answer = fake.refuse({ path: url.pathname, body: Buffer.concat(chunks).toString("utf8"), headers: req.headers });
        res.writeHead(answer.status, { "content-type": "application/json", ...(answer.headers ?? {}) });
        return res.end(answer.body);
      }
      const send = (status: number, body: unknown) => {
        res.writeHead(status, { "content-type": "application/json" });
        res.end(JSON.stringify(body));
      };
      const m = /^\/([^/]+)\/(v2\.0\/\.well-known\/openid-configuration|oauth2\/v2\.0\/token)$/.exec(url.pathname);
      if (m && m[2].startsWith("v2.0")) {
        const base = `${fake.authorityHost}/${m[1]}`;
        return send(200, {
          issuer: `${base}/v2.0`,
          authorization_endpoint: `${base}/oauth2/v2.0/authorize`,
          token_endpoint: `${base}/oauth2/v2.0/token`,
          end_session_endpoint: `${base}/oauth2/v2.0/logout`,
          jwks_uri: `${base}/discovery/v2.0/keys`,
          response_types_supported: ["code", "id_token", "token"],
          subject_types_supported: ["pairwise"],
          id_token_signing_alg_values_supported: ["RS256"],
          tenant_region_scope: "NA",
          cloud_instance_name: "microsoftonline.com",
        });
      }
      if (m) {
        const form = new URLSearchParams(Buffer.concat(chunks).toString("utf8"));
        const clientId = form.get("client_id") ?? undefined;
        if (form.get("client_secret") !== null) {
          if (form.get("client_secret") !== secret) {
            fake.refused.push("bad client secret");
            return send(401, { error: "invalid_client", error_description: "AADSTS7000215: Invalid client secret provided." });
          }
          const t = issue("client_secret", { clientId });
          return send(200, { token_type: "Bearer", expires_in: lifetime, ext_expires_in: lifetime, access_token: t.token });
        }
        const assertion = form.get("client_assertion");
        if (assertion !== null) {
          if (!fake.githubTokens.includes(assertion) && !assertion.startsWith("static-oidc-")) {
            fake.refused.push(`unknown assertion ${assertion.slice(0, 20)}`);
            return send(401, { error: "invalid_client", error_description: "AADSTS700024: Client assertion is not within its valid time range." });
          }
          const t = issue("client_assertion", { clientId, assertion });
          return send(200, { token_type: "Bearer", expires_in: lifetime, ext_expires_in: lifetime, access_token: t.token });
        }
        return send(400, { error: "invalid_request" });
      }
      if (url.pathname === "/github/token") {
        if (req.headers.authorization !== `Bearer ${fake.githubRequestToken}` || url.searchParams.get("audience") !== "api://AzureADTokenExchange") {
          res.writeHead(403);
          return res.end("{}");
        }
        const value = `gh-oidc-${fake.githubTokens.length + 1}-${Date.now()}`;
        fake.githubTokens.push(value);
        return send(200, { count: 1, value });
      }
      if (url.pathname === "/msi/token") {
        if (req.headers["x-identity-header"] !== fake.identityHeader) return send(401, { error: "no identity header" });
        const t = issue("managed_identity", { clientId: url.searchParams.get("client_id") ?? undefined });
        return send(200, { access_token: t.token, expires_on: String(Math.floor(t.expiresAt / 1000)), resource: url.searchParams.get("resource"), token_type: "Bearer" });
      }
      send(404, { error: "not_found", path: url.pathname });
    });
  });
  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
  const base = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  fake = {
    authorityHost: base,
    githubOidcUrl: `${base}/github/token?api-version=2.0`,
    githubRequestToken: opts.githubRequestToken ?? "gh-request-token-abc123",
    identityEndpoint: `${base}/msi/token`,
    identityHeader: "msi-header-xyz",
    issued: [],
    githubTokens: [],
    refused: [],
    hang: false,
    isLive: (token) => fake.issued.some((t) => t.token === token && t.expiresAt > Date.now()),
    close: () =>
      new Promise<void>((ok) => {
        server.closeAllConnections();
        server.close(() => ok());
      }),
  };
  return fake;
}
