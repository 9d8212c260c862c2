/**
 * Uploads local files to Blob Storage with Microsoft Entra ID (a bearer token of the identity
 * running `pulumi up`), for storage accounts whose shared-key access is off (the `private`
 * profile), where azure-native's `storage.Blob` fails: it signs with the account key
 * (`KeyBasedAuthenticationNotPermitted`, pulumi/pulumi-azure-native#2015). Run by
 * `@pulumi/command` from the Training component (`npx tsx jobs/upload-blobs.ts`).
 *
 * Blob REST `Put Blob` (x-ms-version 2023-11-03, BlockBlob, one request per file: up to
 * 5000 MiB), token scope `https://storage.azure.com/.default`; the identity needs Storage Blob
 * Data Contributor on the container (the stack grants it to the deployer) and network line of
 * sight to the account (with public network access off: a machine in the network, README).
 * Retries 408/429/5xx and network errors with `@azure/core-rest-pipeline`'s retry policies;
 * blob paths are content hashes, so a re-run overwrites with the same bytes.
 *
 * Env: BLOB_CONTAINER_URL (`https://<account>.blob.core.windows.net/<container>`),
 * UPLOADS (JSON `[{"file": "<project-relative path>", "blob": "<blob name>"}]`).
 * Exit codes: 0 uploaded, 2 bad environment, 4 storage or credential error.
 */
import * as crypto from "crypto";
import * as fs from "fs";
import type { TokenCredential } from "@azure/identity";
import {
  createHttpHeaders,
  createPipelineFromOptions,
  createPipelineRequest,
  createDefaultHttpClient,
  type HttpClient,
  type PipelinePolicy,
} from "@azure/core-rest-pipeline";
import { defaultCredential, EXIT_ARM, EXIT_CONFIG, EXIT_OK, missingEnv, type Env } from "../lib/arm";

/** Blob service REST version sent with every request. */
export const STORAGE_API_VERSION = "2023-11-03";
/** OAuth scope of Azure Storage. */
export const STORAGE_SCOPE = "https://storage.azure.com/.default";
/** Put Blob's size limit (one request per file). */
export const MAX_PUT_BLOB_BYTES = 5000 * 1024 * 1024;

/** One file to upload. */
export interface Upload {
  file: string;
  blob: string;
}

/** Parse and check UPLOADS: a non-empty array of `{file, blob}` strings. Throws an Error naming the problem. */
export function parseUploads(raw: string | undefined): Upload[] {
  let v: unknown;
  try {
    v = JSON.parse(raw ?? "");
  } catch {
    throw new Error("UPLOADS is not JSON");
  }
  if (!Array.isArray(v) || v.length === 0) throw new Error("UPLOADS must be a non-empty array of {file, blob}");
  return v.map((u, i) => {
    if (!u || typeof u.file !== "string" || typeof u.blob !== "string" || !u.file || !u.blob) throw new Error(`UPLOADS[${i}] must be {file, blob} strings`);
    return { file: u.file, blob: u.blob };
  });
}

/** Bearer-token policy for storage; refuses to send a token over plain HTTP except to loopback (tests). */
function storageBearerPolicy(credential: TokenCredential): PipelinePolicy {
  return {
    name: "storageBearerToken",
    async sendRequest(request, next) {
      const url = new URL(request.url);
      if (url.protocol !== "https:" && !["127.0.0.1", "localhost", "[::1]"].includes(url.hostname)) {
        throw new Error(`refusing to send a token to ${url.origin} over plain HTTP`);
      }
      const token = await credential.getToken(STORAGE_SCOPE);
      if (!token) throw new Error("the credential returned no token for Azure Storage");
      request.headers.set("authorization", `Bearer ${token.token}`);
      return next(request);
    },
  };
}

/**
 * Upload every file to `<containerUrl>/<blob>` (Put Blob, BlockBlob, Content-MD5). Logs one
 * line per file (never the token). Throws an Error with the HTTP status and storage error code
 * on the first failure after retries.
 */
export async function uploadBlobs(
  containerUrl: string,
  uploads: Upload[],
  deps: { credential: TokenCredential; httpClient?: HttpClient; log: (line: string) => void; maxRetries?: number },
): Promise<void> {
  const pipeline = createPipelineFromOptions({ retryOptions: { maxRetries: deps.maxRetries ?? 5, retryDelayInMs: 1000, maxRetryDelayInMs: 30000 } });
  pipeline.addPolicy(storageBearerPolicy(deps.credential));
  const httpClient = deps.httpClient ?? createDefaultHttpClient();
  const base = containerUrl.replace(/\/+$/, "");
  for (const u of uploads) {
    const body = fs.readFileSync(u.file);
    if (body.length > MAX_PUT_BLOB_BYTES) throw new Error(`${u.file} is ${body.length} bytes; Put Blob takes at most ${MAX_PUT_BLOB_BYTES}`);
    const url = `${base}/${u.blob.split("/").map(encodeURIComponent).join("/")}`;
    const request = createPipelineRequest({
      url,
      method: "PUT",
      body,
      allowInsecureConnection: url.startsWith("http://"),
      headers: createHttpHeaders({
        "x-ms-version": STORAGE_API_VERSION,
        "x-ms-blob-type": "BlockBlob",
        "content-type": "application/octet-stream",
        "content-md5": crypto.createHash("md5").update(body).digest("base64"),
      }),
    });
    const response = await pipeline.sendRequest(httpClient, request);
    if (response.status !== 201) {
      const code = response.headers.get("x-ms-error-code") ?? "";
      throw new Error(`PUT ${u.blob}: HTTP ${response.status}${code ? ` ${code}` : ""}${code === "AuthorizationPermissionMismatch" ? " (the identity running pulumi up needs Storage Blob Data Contributor on the container; the stack grants it, wait for the role to propagate)" : ""}`);
    }
    deps.log(`uploaded ${u.file} -> ${u.blob} (${body.length} bytes)`);
  }
}

/** Entry point: read the environment, upload, return the exit code. */
export async function main(env: Env, deps: { credential?: TokenCredential; httpClient?: HttpClient; log?: (l: string) => void; err?: (l: string) => void } = {}): Promise<number> {
  const log = deps.log ?? ((l: string) => process.stdout.write(l + "\n"));
  const err = deps.err ?? ((l: string) => process.stderr.write(l + "\n"));
  const missing = missingEnv(env, ["BLOB_CONTAINER_URL", "UPLOADS"]);
  if (missing.length) {
    err(`error: missing environment variables: ${missing.join(", ")}`);
    return EXIT_CONFIG;
  }
  let uploads: Upload[];
  try {
    uploads = parseUploads(env.UPLOADS);
  } catch (e) {
    err(`error: ${(e as Error).message}`);
    return EXIT_CONFIG;
  }
  try {
    await uploadBlobs(env.BLOB_CONTAINER_URL!, uploads, { credential: deps.credential ?? defaultCredential(), httpClient: deps.httpClient, log });
    return EXIT_OK;
  } catch (e) {
    err(`error: ${(e as Error).message}`);
    return EXIT_ARM;
  }
}

if (require.main === module) {
  main(process.env).then((code) => process.exit(code));
}
