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
 * It runs on the machinery of the ARM client (lib/arm.ts `armClientFromEnv` with the storage
 * scope): `@azure/core-rest-pipeline`'s retries of 408/429/5xx and dropped connections (a drop in
 * the middle of an answer too: Put Blob is idempotent, and the blob paths are content hashes, so
 * a re-run writes the same bytes), a per-request timeout, a token request bounded in time and by
 * the deadline, and every secret masked in every form. The whole upload runs under one deadline
 * (`UPLOAD_DEADLINE_SECONDS`, default 3600), and the process ends at it whatever is pending.
 *
 * Env: BLOB_CONTAINER_URL (`https://<account>.blob.core.windows.net/<container>`),
 * UPLOADS (JSON `[{"file": "<project-relative path>", "blob": "<blob name>"}]`),
 * UPLOAD_DEADLINE_SECONDS (optional, default 3600).
 * Exit codes: 0 uploaded, 2 bad environment, 3 deadline passed, 4 storage or credential error.
 */
import * as crypto from "crypto";
import * as fs from "fs";
import type { TokenCredential } from "@azure/identity";
import type { HttpClient } from "@azure/core-rest-pipeline";
import {
  ArmError,
  armClientFromEnv,
  deadlineSecondsFromEnv,
  DeadlineError,
  defaultCredential,
  EXIT_ARM,
  EXIT_CONFIG,
  EXIT_DEADLINE,
  EXIT_OK,
  missingEnv,
  type Env,
  type ScriptDeps,
} from "../lib/arm";
import { CredentialConfigError } from "../lib/credential";
import { jobMain, runJobAsMain, type JobSpec } from "../lib/cli";
import { maskRegistered, registerEnvSecrets } from "../lib/secrets";

/** Default of `UPLOAD_DEADLINE_SECONDS`: the whole upload, token requests included. */
export const UPLOAD_DEADLINE_SECONDS = 3600;

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

/** Dependencies of {@link uploadBlobs} (tests inject the credential, transport and retry settings). */
export interface UploadDeps extends Partial<ScriptDeps> {
  credential?: TokenCredential;
  httpClient?: HttpClient;
  log: (line: string) => void;
  /** Absolute deadline (epoch ms); none by default. */
  deadlineAt?: number;
}

/**
 * Upload every file to `<containerUrl>/<blob>` (Put Blob, BlockBlob, Content-MD5), with a
 * storage-scoped bearer token, over https only. Logs one line per file (never a secret).
 *
 * @throws ArmError (service `Blob Storage`) with the HTTP status and the storage error code
 *   (`x-ms-error-code`) on the first failure after retries; DeadlineError past `deadlineAt`;
 *   Error when a file is larger than Put Blob takes.
 */
export async function uploadBlobs(containerUrl: string, uploads: Upload[], deps: UploadDeps): Promise<void> {
  const base = containerUrl.replace(/\/+$/, "");
  const client = armClientFromEnv({}, { maxRetries: 5, backoffBaseMs: 1000, maxBackoffMs: 30_000, ...deps }, "phi3-finetune/upload-blobs", deps.deadlineAt, {
    scope: STORAGE_SCOPE,
    baseUrl: base,
    service: "Blob Storage",
  });
  for (const u of uploads) {
    const body = fs.readFileSync(u.file);
    if (body.length > MAX_PUT_BLOB_BYTES) throw new Error(`${u.file} is ${body.length} bytes; Put Blob takes at most ${MAX_PUT_BLOB_BYTES}`);
    await client.putBytes(`/${u.blob.split("/").map(encodeURIComponent).join("/")}`, body, {
      "x-ms-version": STORAGE_API_VERSION,
      "x-ms-blob-type": "BlockBlob",
      "content-type": "application/octet-stream",
      "content-md5": crypto.createHash("md5").update(body).digest("base64"),
    });
    deps.log(`uploaded ${u.file} -> ${u.blob} (${body.length} bytes)`);
  }
}

/** Entry point: read the environment, upload, return the exit code. Never throws. */
export async function main(
  env: Env,
  deps: { credential?: TokenCredential; httpClient?: HttpClient; log?: (l: string) => void; err?: (l: string) => void; now?: () => number } & Partial<ScriptDeps> = {},
): Promise<number> {
  registerEnvSecrets(env);
  const log = deps.log ?? ((l: string) => process.stdout.write(l + "\n"));
  const err = deps.err ?? ((l: string) => process.stderr.write(l + "\n"));
  const say = (l: string) => err(maskRegistered(l));
  const missing = missingEnv(env, ["BLOB_CONTAINER_URL", "UPLOADS"]);
  if (missing.length) {
    say(`upload-blobs: missing environment variables: ${missing.join(", ")}`);
    return EXIT_CONFIG;
  }
  let uploads: Upload[];
  let deadlineSeconds: number;
  try {
    uploads = parseUploads(env.UPLOADS);
    deadlineSeconds = deadlineSecondsFromEnv(env, UPLOAD_BLOBS_COMMAND.deadline);
    if (!/^https:\/\/[^/]+/.test(env.BLOB_CONTAINER_URL!.trim())) throw new Error(`BLOB_CONTAINER_URL must be an https URL (got "${env.BLOB_CONTAINER_URL}"): tokens are sent over TLS only`);
  } catch (e) {
    say(`upload-blobs: ${(e as Error).message}`);
    return EXIT_CONFIG;
  }
  const now = deps.now ?? Date.now;
  try {
    await uploadBlobs(env.BLOB_CONTAINER_URL!.trim(), uploads, {
      ...deps,
      error: say,
      credential: deps.credential ?? defaultCredential(env),
      log: (l) => log(maskRegistered(l)),
      deadlineAt: now() + deadlineSeconds * 1000,
    });
    return EXIT_OK;
  } catch (e) {
    if (e instanceof CredentialConfigError) {
      say(`upload-blobs: ${e.message}`);
      return EXIT_CONFIG;
    }
    if (e instanceof DeadlineError) {
      say(`upload-blobs: Gave up waiting for Blob Storage (deadline ${deadlineSeconds} s): ${e.message}`);
      return EXIT_DEADLINE;
    }
    say(`upload-blobs: ${e instanceof ArmError ? "" : "error: "}${(e as Error).message}`);
    return EXIT_ARM;
  }
}

/** The command line of upload-blobs: configured by its environment (lib/cli.ts style). */
export const UPLOAD_BLOBS_COMMAND: JobSpec = {
  name: "upload-blobs",
  usage: "npx tsx jobs/upload-blobs.ts",
  summary: "Uploads files to Blob Storage with a Microsoft Entra ID token (Put Blob), for accounts whose shared-key access is off.\nRun by `pulumi up` (infra/training.ts); configured by environment variables.",
  options: {},
  details: "Environment: BLOB_CONTAINER_URL (https), UPLOADS (JSON [{file, blob}]) (required); UPLOAD_DEADLINE_SECONDS (default 3600).",
  deadline: { variable: "UPLOAD_DEADLINE_SECONDS", defaultSeconds: UPLOAD_DEADLINE_SECONDS },
};

if (require.main === module) runJobAsMain(UPLOAD_BLOBS_COMMAND, jobMain(UPLOAD_BLOBS_COMMAND, (_, env) => main(env)));
