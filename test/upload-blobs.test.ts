/**
 * jobs/upload-blobs.ts against a fake Blob endpoint on 127.0.0.1: Put Blob with an Entra ID
 * bearer token (storage scope), what the `private` profile uses once shared-key access is off.
 */
import * as crypto from "crypto";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { main, parseUploads, STORAGE_SCOPE, uploadBlobs } from "../jobs/upload-blobs";
import { fakeCredential, startFakeArm, type FakeArm } from "./helpers/fake-arm";

let fake: FakeArm;
let dir: string;
let out: string[];
let err: string[];
const CONTAINER = "/stx/azureml-blobstore-0000";

beforeEach(async () => {
  fake = await startFakeArm();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "phi3-upload-"));
  fs.writeFileSync(path.join(dir, "a.py"), "print('a')\n");
  fs.writeFileSync(path.join(dir, "train file.jsonl"), '{"messages": []}\n');
  out = [];
  err = [];
});
afterEach(async () => {
  await fake.close();
});

const uploads = () => [
  { file: path.join(dir, "a.py"), blob: "LocalUpload/abc/finetuning_dir/a.py" },
  { file: path.join(dir, "train file.jsonl"), blob: "LocalUpload/def/train file.jsonl" },
];

describe("upload-blobs", () => {
  it("PUTs each file as a block blob with a storage-scoped bearer token and its MD5", async () => {
    fake.route("PUT", /^\/stx\/azureml-blobstore-0000\//, { status: 201 });
    const credential = fakeCredential();
    await uploadBlobs(fake.baseUrl + CONTAINER, uploads(), { credential, log: (l) => out.push(l) });
    const puts = fake.requestsTo("PUT", /./);
    expect(puts.map((r) => r.path)).toEqual([`${CONTAINER}/LocalUpload/abc/finetuning_dir/a.py`, `${CONTAINER}/LocalUpload/def/train%20file.jsonl`]);
    expect(puts[0].headers).toMatchObject({ authorization: `Bearer ${credential.token}`, "x-ms-blob-type": "BlockBlob", "x-ms-version": "2023-11-03" });
    expect(puts[0].headers["content-md5"]).toBe(crypto.createHash("md5").update("print('a')\n").digest("base64"));
    expect(puts[0].body).toBe("print('a')\n");
    expect(credential.scopes.every((s) => s === STORAGE_SCOPE)).toBe(true);
    expect(out.join("\n")).not.toContain(credential.token);
  });

  it("retries a throttled or failing request", async () => {
    fake.route("PUT", /./, [{ status: 503, headers: { "retry-after": "0" } }, { status: 201 }]);
    await uploadBlobs(fake.baseUrl + CONTAINER, uploads().slice(0, 1), { credential: fakeCredential(), log: (l) => out.push(l) });
    expect(fake.requestsTo("PUT", /./)).toHaveLength(2);
  });

  it("a missing data role exits 4 naming the role, without printing the token", async () => {
    fake.route("PUT", /./, { status: 403, headers: { "x-ms-error-code": "AuthorizationPermissionMismatch" } });
    const credential = fakeCredential();
    const code = await main({ BLOB_CONTAINER_URL: fake.baseUrl + CONTAINER, UPLOADS: JSON.stringify(uploads()) }, { credential, log: (l) => out.push(l), err: (l) => err.push(l) });
    expect(code).toBe(4);
    expect(err.join("\n")).toMatch(/HTTP 403 AuthorizationPermissionMismatch\b.*Storage Blob Data Contributor/);
    expect([...out, ...err].join("\n")).not.toContain(credential.token);
  });

  it("a bad environment exits 2 without a request", async () => {
    expect(await main({ BLOB_CONTAINER_URL: fake.baseUrl }, { credential: fakeCredential(), err: (l) => err.push(l) })).toBe(2);
    expect(await main({ BLOB_CONTAINER_URL: fake.baseUrl, UPLOADS: "[]" }, { credential: fakeCredential(), err: (l) => err.push(l) })).toBe(2);
    expect(() => parseUploads('[{"file": 1}]')).toThrow(/UPLOADS\[0\]/);
    expect(fake.requests).toEqual([]);
  });

  it("never sends a token over plain HTTP", async () => {
    await expect(uploadBlobs("http://storage.invalid/c", uploads().slice(0, 1), { credential: fakeCredential(), log: () => undefined, maxRetries: 0 })).rejects.toThrow(/non-https|non-TLS/);
  });
});
