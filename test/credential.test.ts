/**
 * One credential story (lib/credential.ts): the programs `pulumi up` runs authenticate from
 * the same ARM_* settings as the azure-native provider, in its order. Each path is proven end
 * to end: a fake Microsoft Entra token service on 127.0.0.1 issues the tokens, and a fake ARM
 * server accepts only the live ones while wait-for-job reads a job. A GitHub OIDC wait that
 * outlives several token lifetimes keeps succeeding, each Azure token from a fresh GitHub token.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { runWaitForJobFromEnv } from "../jobs/wait-for-job";
import { workspacePath } from "../lib/arm";
import { CredentialConfigError, credentialFromEnv, type CredentialKind } from "../lib/credential";
import { isSecretValue, unwrapSecrets } from "../lib/mock-runtime";
import { startFakeArm, type FakeArm } from "./helpers/fake-arm";
import { startFakeEntra, type FakeEntra } from "./helpers/fake-entra";
import { byName, runStack } from "./helpers/stack";

const WS = { subscriptionId: "11111111-2222-3333-4444-555555555555", resourceGroup: "rg-1", workspace: "ws-1" };
const JOB = "phi3ft-ft-0123456789abcdef";
const JOB_PATH = `${workspacePath(WS)}/jobs/${JOB}`;
const ID = { ARM_CLIENT_ID: "00000000-aaaa-bbbb-cccc-000000000001", ARM_TENANT_ID: "00000000-aaaa-bbbb-cccc-000000000002" };

describe("credentialFromEnv chooses as the provider does", () => {
  const cases: [string, Record<string, string>, CredentialKind][] = [
    ["default credential asked for", { ARM_USE_DEFAULT_AZURE_CREDENTIAL: "true", ARM_CLIENT_SECRET: "x", ...ID }, "default"],
    ["client secret (before OIDC, as the provider)", { ARM_CLIENT_SECRET: "x", ARM_USE_OIDC: "true", ...ID }, "client-secret"],
    ["OIDC with a static token", { ARM_USE_OIDC: "true", ARM_OIDC_TOKEN: "t", ...ID }, "oidc-token"],
    ["OIDC with a token file", { ARM_USE_OIDC: "true", ARM_OIDC_TOKEN_FILE_PATH: "/tmp/x", ...ID }, "oidc-token-file"],
    ["OIDC in GitHub Actions", { ARM_USE_OIDC: "true", ACTIONS_ID_TOKEN_REQUEST_URL: "https://x/?a=1", ACTIONS_ID_TOKEN_REQUEST_TOKEN: "r", ...ID }, "oidc-github"],
    ["managed identity", { ARM_USE_MSI: "true" }, "managed-identity"],
    ["nothing set: the developer's login", {}, "developer-login"],
    ["ARM_USE_OIDC=false is not OIDC", { ARM_USE_OIDC: "false", ...ID }, "developer-login"],
  ];
  it.each(cases)("%s", (_name, env, kind) => {
    expect(credentialFromEnv(env).kind).toBe(kind);
  });

  it.each([
    [{ ARM_USE_OIDC: "true", ARM_OIDC_TOKEN: "t" }, /ARM_USE_OIDC needs ARM_TENANT_ID and ARM_CLIENT_ID/],
    [{ ARM_CLIENT_SECRET: "x", ARM_CLIENT_ID: "c" }, /ARM_CLIENT_SECRET needs ARM_TENANT_ID/],
    [{ ARM_USE_OIDC: "true", ...ID }, /ARM_USE_OIDC needs ARM_OIDC_TOKEN, ARM_OIDC_TOKEN_FILE_PATH, or ACTIONS_ID_TOKEN_REQUEST_URL/],
    [{ ARM_ENVIRONMENT: "mars" }, /ARM_ENVIRONMENT 'mars' is not one of public, usgovernment, china/],
  ])("a method without its settings names what is missing: %j", (env, message) => {
    expect(() => credentialFromEnv(env)).toThrow(CredentialConfigError);
    expect(() => credentialFromEnv(env)).toThrow(message);
  });
});

describe("each path issues the tokens a program uses (fake Entra + fake ARM on 127.0.0.1)", () => {
  let entra: FakeEntra;
  let arm: FakeArm;
  let saved: NodeJS.ProcessEnv;
  let seen: { token: string; live: boolean }[];

  /** A job that completes after `polls` reads, accepting only live tokens of the fake Entra. */
  function routeJob(polls = 2) {
    let n = 0;
    arm.route("GET", JOB_PATH, (req) => {
      const token = (req.headers.authorization ?? "").replace(/^Bearer /, "");
      const live = entra.isLive(token);
      seen.push({ token, live });
      if (!live) return { status: 401, body: { error: { code: "ExpiredAuthenticationToken", message: "expired" } } };
      n++;
      return { status: 200, body: { name: JOB, properties: { jobType: "Command", status: n >= polls ? "Completed" : "Running" } } };
    });
  }

  async function run(env: Record<string, string>) {
    const lines: string[] = [];
    const code = await runWaitForJobFromEnv(
      {
        AZURE_SUBSCRIPTION_ID: WS.subscriptionId,
        AZURE_RESOURCE_GROUP: WS.resourceGroup,
        AZUREML_WORKSPACE: WS.workspace,
        AZUREML_JOB_NAME: JOB,
        ARM_ENDPOINT: arm.baseUrl,
        AZURE_AUTHORITY_HOST: entra.authorityHost,
        WAIT_POLL_SECONDS: "0.05",
        ...env,
      },
      { log: (l) => lines.push(l), backoffBaseMs: 1 },
    );
    return { code, text: lines.join("\n") };
  }

  beforeEach(async () => {
    saved = { ...process.env };
    entra = await startFakeEntra();
    arm = await startFakeArm();
    seen = [];
  });
  afterEach(async () => {
    for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
    Object.assign(process.env, saved);
    await arm.close();
    await entra.close();
  });

  it("client secret (ARM_CLIENT_SECRET)", async () => {
    routeJob();
    const r = await run({ ...ID, ARM_CLIENT_SECRET: "s3cret-value-0123" });
    expect(r.code, r.text).toBe(0);
    expect(entra.issued.map((t) => [t.grant, t.clientId])).toContainEqual(["client_secret", ID.ARM_CLIENT_ID]);
    expect(seen.every((s) => s.live)).toBe(true);
    expect(r.text).not.toContain("s3cret-value-0123");
  });

  it("a wrong client secret fails clearly (exit 4), without the secret", async () => {
    routeJob();
    const r = await run({ ...ID, ARM_CLIENT_SECRET: "wrong-secret-value" });
    expect(r.code).toBe(4);
    expect(r.text).toMatch(/CredentialUnavailable/);
    expect(r.text).not.toContain("wrong-secret-value");
    expect(seen).toEqual([]);
  });

  it("GitHub OIDC (ARM_USE_OIDC, ACTIONS_ID_TOKEN_REQUEST_*): a fresh GitHub token for each Azure token", async () => {
    routeJob();
    const r = await run({ ...ID, ARM_USE_OIDC: "true", ACTIONS_ID_TOKEN_REQUEST_URL: entra.githubOidcUrl, ACTIONS_ID_TOKEN_REQUEST_TOKEN: entra.githubRequestToken });
    expect(r.code, r.text).toBe(0);
    const viaAssertion = entra.issued.filter((t) => t.grant === "client_assertion");
    expect(viaAssertion.length).toBeGreaterThan(0);
    for (const t of viaAssertion) expect(entra.githubTokens).toContain(t.assertion);
    expect(r.text).not.toContain(entra.githubRequestToken);
  });

  it("OIDC with a static token (ARM_OIDC_TOKEN) and with a token file (ARM_OIDC_TOKEN_FILE_PATH)", async () => {
    routeJob(1);
    expect((await run({ ...ID, ARM_USE_OIDC: "true", ARM_OIDC_TOKEN: "static-oidc-token-1" })).code).toBe(0);
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "phi3-oidc-")), "token");
    fs.writeFileSync(file, "static-oidc-from-file\n");
    expect((await run({ ...ID, ARM_USE_OIDC: "true", ARM_OIDC_TOKEN_FILE_PATH: file })).code).toBe(0);
    expect(entra.issued.map((t) => t.assertion)).toEqual(expect.arrayContaining(["static-oidc-token-1", "static-oidc-from-file"]));
  });

  it("managed identity (ARM_USE_MSI, with the identity's client id)", async () => {
    routeJob();
    process.env.IDENTITY_ENDPOINT = entra.identityEndpoint;
    process.env.IDENTITY_HEADER = entra.identityHeader;
    const r = await run({ ARM_USE_MSI: "true", ARM_CLIENT_ID: "uai-client-id" });
    expect(r.code, r.text).toBe(0);
    expect(entra.issued.map((t) => [t.grant, t.clientId])).toContainEqual(["managed_identity", "uai-client-id"]);
  });

  it("the developer's login (no ARM_* set: DefaultAzureCredential, here from AZURE_* variables)", async () => {
    routeJob();
    Object.assign(process.env, { AZURE_TENANT_ID: ID.ARM_TENANT_ID, AZURE_CLIENT_ID: "dev-client", AZURE_CLIENT_SECRET: "s3cret-value-0123", AZURE_AUTHORITY_HOST: entra.authorityHost });
    const r = await run({});
    expect(r.code, r.text).toBe(0);
    expect(entra.issued.map((t) => t.clientId)).toContain("dev-client");
  });

  it("a method missing a setting stops the program with exit 2 before any request", async () => {
    routeJob();
    const r = await run({ ARM_USE_OIDC: "true", ARM_OIDC_TOKEN: "t" });
    expect(r.code).toBe(2);
    expect(r.text).toMatch(/ARM_USE_OIDC needs ARM_TENANT_ID and ARM_CLIENT_ID/);
    expect(arm.requests).toHaveLength(0);
  });

  it("a wait that outlives several token lifetimes keeps succeeding: tokens refresh from fresh GitHub tokens", async () => {
    await entra.close();
    entra = await startFakeEntra({ lifetimeSeconds: 2 });
    // The job completes after ~5 s of polling every 0.25 s: 2.5 token lifetimes.
    const started = Date.now();
    arm.route("GET", JOB_PATH, (req) => {
      const token = (req.headers.authorization ?? "").replace(/^Bearer /, "");
      const live = entra.isLive(token);
      seen.push({ token, live });
      if (!live) return { status: 401, body: { error: { code: "ExpiredAuthenticationToken", message: "expired" } } };
      return { status: 200, body: { name: JOB, properties: { jobType: "Command", status: Date.now() - started > 5000 ? "Completed" : "Running" } } };
    });
    const r = await run({ ...ID, ARM_USE_OIDC: "true", ACTIONS_ID_TOKEN_REQUEST_URL: entra.githubOidcUrl, ACTIONS_ID_TOKEN_REQUEST_TOKEN: entra.githubRequestToken, WAIT_POLL_SECONDS: "0.25" });
    expect(r.code, r.text).toBe(0);
    expect(seen.filter((s) => !s.live)).toEqual([]);
    expect(new Set(seen.map((s) => s.token)).size).toBeGreaterThanOrEqual(3);
    expect(entra.githubTokens.length).toBeGreaterThanOrEqual(3);
  });
});

describe("the stack passes provider settings from its config to the programs, secrets as secrets", () => {
  it("azure-native:clientId / tenantId / useOidc / clientSecret reach every program's environment", async () => {
    const run = await runStack({
      overrides: { "azure-native:clientId": ID.ARM_CLIENT_ID, "azure-native:tenantId": ID.ARM_TENANT_ID, "azure-native:useOidc": "true", "azure-native:clientSecret": "cfg-secret-value" },
    });
    for (const name of ["phi3-preflight-check", "phi3-training-finetune-job", "phi3-serving-traffic"]) {
      const raw = byName(run, name).inputs.environment as Record<string, unknown>;
      // A secret inside makes Pulumi keep the whole environment as a secret in the state.
      expect(isSecretValue(raw) || isSecretValue(raw.ARM_CLIENT_SECRET), `${name}: ARM_CLIENT_SECRET must be a Pulumi secret`).toBe(true);
      const env = unwrapSecrets(raw) as Record<string, unknown>;
      expect(env.ARM_CLIENT_ID).toBe(ID.ARM_CLIENT_ID);
      expect(env.ARM_TENANT_ID).toBe(ID.ARM_TENANT_ID);
      expect(env.ARM_USE_OIDC).toBe("true");
      expect(env.ARM_CLIENT_SECRET).toBe("cfg-secret-value");
    }
  });

  it("nothing is added when the settings come from the environment (the default)", async () => {
    const run = await runStack({});
    const env = byName(run, "phi3-training-finetune-job").inputs.environment as Record<string, unknown>;
    expect(Object.keys(env).filter((k) => k.startsWith("ARM_"))).toEqual([]);
  });
});
