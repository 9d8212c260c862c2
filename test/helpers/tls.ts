/**
 * The test-only TLS key and certificate for 127.0.0.1 / localhost (test/fixtures/tls/, valid
 * for 100 years; they protect nothing). vitest.config.mts hands the certificate to every test
 * process through NODE_EXTRA_CA_CERTS, so the fake Azure servers speak TLS as Azure does.
 */
import { readFileSync } from "node:fs";
import path from "node:path";

export const LOOPBACK_TLS = {
  key: readFileSync(path.join(__dirname, "../fixtures/tls/loopback.key")),
  cert: readFileSync(path.join(__dirname, "../fixtures/tls/loopback.crt")),
};
