/**
 * A tiny fake Azure Resource Manager for tests: an HTTPS server on 127.0.0.1 (random port)
 * that records every request and answers from scripted routes. It serves the test-only
 * loopback certificate of test/fixtures/tls/, which vitest.config.mts hands to every test
 * process through NODE_EXTRA_CA_CERTS: the bearer-token policy of @azure/core-rest-pipeline
 * sends tokens over TLS only, so the fake speaks TLS like ARM does.
 */
import https from "node:https";
import type { AddressInfo } from "node:net";
import { onTestFinished, vi } from "vitest";
import type { AccessToken, TokenCredential } from "@azure/identity";
import { LOOPBACK_TLS } from "./tls";

export { LOOPBACK_TLS } from "./tls";

/** A request the fake server received. */
export interface RecordedRequest {
  method: string;
  /** Path without the query string. */
  path: string;
  /** Query parameters. */
  query: Record<string, string>;
  /** Request headers (lower-case names). */
  headers: Record<string, string>;
  /** Parsed JSON body (or raw text, or undefined). */
  body: unknown;
}

/**
 * A scripted answer. `destroy: true` closes the socket without answering (network error);
 * `hang: true` accepts the request and never answers; `trickle: true` sends the headers and
 * then one byte of body every 200 ms, never finishing; `drop: true` sends the headers (with the
 * full `content-length`) and half of the body, then closes the connection (a connection lost in
 * the middle of an answer: core-rest-pipeline's `PARSE_ERROR: Error reading response as text: aborted`).
 */
export interface FakeResponse {
  status?: number;
  body?: unknown;
  headers?: Record<string, string>;
  destroy?: boolean;
  hang?: boolean;
  trickle?: boolean;
  drop?: boolean;
}

/** Computes an answer from the request (may read/modify test state). */
export type FakeHandler = (req: RecordedRequest, server: FakeArm) => FakeResponse | Promise<FakeResponse>;

interface Route {
  method: string;
  path: string | RegExp;
  handler: FakeHandler;
}

/** The running fake ARM server. */
export interface FakeArm {
  /** `http://127.0.0.1:<port>`. */
  baseUrl: string;
  /** Every request received, in order. */
  requests: RecordedRequest[];
  /** Requests that matched no route (answered 404 `FakeArmNoRoute`). */
  unmatched: RecordedRequest[];
  /**
   * Adds a route. `responses` is a handler or a list answered in order (the last one repeats).
   * Later routes take precedence over earlier ones for the same method and path.
   */
  route(method: string, path: string | RegExp, responses: FakeHandler | FakeResponse[] | FakeResponse): void;
  /** Requests with this method whose path equals `path` (or matches the RegExp). */
  requestsTo(method: string, path: string | RegExp): RecordedRequest[];
  /** Stops the server. */
  close(): Promise<void>;
}

function matches(pattern: string | RegExp, path: string): boolean {
  return typeof pattern === "string" ? pattern === path : pattern.test(path);
}

/** Starts a fake ARM server on 127.0.0.1, port 0. */
export async function startFakeArm(): Promise<FakeArm> {
  const routes: Route[] = [];
  const requests: RecordedRequest[] = [];
  const unmatched: RecordedRequest[] = [];
  // eslint-disable-next-line prefer-const
  let fake: FakeArm;

  const server = https.createServer(LOOPBACK_TLS, (req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      void (async () => {
        const url = new URL(req.url ?? "/", "http://127.0.0.1");
        const text = Buffer.concat(chunks).toString("utf8");
        let body: unknown = undefined;
        if (text !== "") {
          try {
            body = JSON.parse(text);
          } catch {
            body = text;
          }
        }
        const headers: Record<string, string> = {};
        for (const [k, v] of Object.entries(req.headers)) headers[k.toLowerCase()] = Array.isArray(v) ? v.join(", ") : String(v ?? "");
        const rec: RecordedRequest = {
          method: req.method ?? "GET",
          path: url.pathname,
          query: Object.fromEntries(url.searchParams.entries()),
          headers,
          body,
        };
        requests.push(rec);
        const route = [...routes].reverse().find((r) => r.method === rec.method && matches(r.path, rec.path));
        let answer: FakeResponse;
        if (!route) {
          unmatched.push(rec);
          answer = { status: 404, body: { error: { code: "FakeArmNoRoute", message: `no route for ${rec.method} ${rec.path}` } } };
        } else {
          try {
            answer = await route.handler(rec, fake);
          } catch (err) {
            answer = { status: 500, body: { error: { code: "FakeArmHandlerError", message: String(err) } } };
          }
        }
        if (answer.destroy) {
          req.socket.destroy();
          return;
        }
        if (answer.hang) return;
        if (answer.trickle) {
          res.writeHead(answer.status ?? 200, { "content-type": "application/json", ...(answer.headers ?? {}) });
          const timer = setInterval(() => (res.destroyed ? clearInterval(timer) : res.write(" ")), 200);
          res.on("close", () => clearInterval(timer));
          return;
        }
        const payload = answer.body === undefined ? "" : typeof answer.body === "string" ? answer.body : JSON.stringify(answer.body);
        if (answer.drop) {
          const bytes = Buffer.from(payload.length >= 2 ? payload : `${payload}{"padding": "so that half of it is something"}`);
          res.writeHead(answer.status ?? 200, { "content-type": "application/json", "content-length": String(bytes.length), ...(answer.headers ?? {}) });
          res.write(bytes.subarray(0, Math.floor(bytes.length / 2)), () => setTimeout(() => req.socket.destroy(), 20));
          return;
        }
        // ARM answers every 401 with a Bearer challenge; clients refresh their token on it.
        const challenge = answer.status === 401 ? { "www-authenticate": 'Bearer authorization_uri="https://login.microsoftonline.com/common", error="invalid_token"' } : {};
        res.writeHead(answer.status ?? 200, {
          "content-type": "application/json",
          ...challenge,
          ...(answer.headers ?? {}),
        });
        res.end(payload);
      })();
    });
  });

  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;

  fake = {
    baseUrl: `https://127.0.0.1:${port}`,
    requests,
    unmatched,
    route(method, path, responses) {
      let handler: FakeHandler;
      if (typeof responses === "function") {
        handler = responses;
      } else {
        const list = Array.isArray(responses) ? [...responses] : [responses];
        let i = 0;
        handler = () => {
          const r = list[Math.min(i, list.length - 1)];
          i++;
          return r;
        };
      }
      routes.push({ method: method.toUpperCase(), path, handler });
    },
    requestsTo(method, path) {
      return requests.filter((r) => r.method === method.toUpperCase() && matches(path, r.path));
    },
    close() {
      return new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      });
    },
  };
  return fake;
}

/** A fake TokenCredential that counts calls and can be made to fail. */
export interface FakeCredential extends TokenCredential {
  /** Number of getToken calls. */
  calls: number;
  /** Scopes requested. */
  scopes: string[];
  /** The token handed out (tests check it never leaks). */
  token: string;
}

/**
 * Creates a fake credential.
 *
 * @param opts - `token` to hand out, `expiresInMs` lifetime (default 1 hour from `now()`),
 *   `fail` to throw a CredentialUnavailableError-like error instead, `now` clock.
 */
export function fakeCredential(opts: { token?: string; expiresInMs?: number; fail?: boolean; now?: () => number } = {}): FakeCredential {
  const cred: FakeCredential = {
    calls: 0,
    scopes: [],
    token: opts.token ?? "eyFAKE.secret-token-value.sig-0123456789",
    async getToken(scopes: string | string[]): Promise<AccessToken | null> {
      cred.calls++;
      cred.scopes.push(...(Array.isArray(scopes) ? scopes : [scopes]));
      if (opts.fail) {
        const e = new Error("No credential in the chain provided a token");
        e.name = "CredentialUnavailableError";
        throw e;
      }
      const now = (opts.now ?? Date.now)();
      return { token: cred.token, expiresOnTimestamp: now + (opts.expiresInMs ?? 3_600_000) };
    },
  };
  return cred;
}

/**
 * A controllable clock: `sleep` advances `now` instantly and records the delays. While the
 * test runs it also stands in for the global `setTimeout` given a delay, which is how
 * @azure/core-rest-pipeline's retry policy and @azure/core-lro wait: such a timer fires on the
 * next turn of the event loop, advances `now` by its delay and is recorded in `sleeps` like
 * the program's own waits, so a test sees every wait the libraries take (Node's own timers,
 * `AbortSignal.timeout` and node:timers/promises are not affected). Restored when the test ends.
 */
export interface FakeClock {
  now: () => number;
  sleep: (ms: number) => Promise<void>;
  sleeps: number[];
  advance(ms: number): void;
}

/** Creates a {@link FakeClock} starting at `start` (epoch ms, default the real time now). */
export function fakeClock(start = Date.now()): FakeClock {
  let t = start;
  const clock: FakeClock = {
    now: () => t,
    sleeps: [],
    async sleep(ms: number) {
      clock.sleeps.push(ms);
      t += ms;
      await new Promise((r) => setImmediate(r));
    },
    advance(ms: number) {
      t += ms;
    },
  };
  const realSetTimeout = globalThis.setTimeout;
  const fake = ((fn: (...a: unknown[]) => void, ms?: number, ...args: unknown[]) => {
    if (typeof ms !== "number" || !(ms >= 0)) return realSetTimeout(fn, ms, ...args);
    clock.sleeps.push(ms);
    t += ms;
    return realSetTimeout(fn, 0, ...args);
  }) as typeof setTimeout;
  globalThis.setTimeout = fake;
  onTestFinished(() => {
    if (globalThis.setTimeout === fake) globalThis.setTimeout = realSetTimeout;
  });
  return clock;
}

/** What {@link routeHealthySubscription} answers with. */
export interface HealthySubscription {
  subscriptionId: string;
  tenantId: string;
  location: string;
  /** Azure ML `locations/{location}/vmSizes` entries. */
  vmSizes: unknown[];
  /** Azure ML `locations/{location}/usages` entries. */
  usages: unknown[];
}

/**
 * Routes of a subscription where everything a stack needs is in place: the subscription is
 * enabled, every provider registered, the VM sizes and usages given, every global name free,
 * no soft-deleted vault, nothing deployed yet in any resource group (404).
 */
export function routeHealthySubscription(fake: FakeArm, s: HealthySubscription): void {
  const sub = s.subscriptionId;
  const notFound = { status: 404, body: { error: { code: "ResourceNotFound", message: "The resource was not found." } } };
  const subBody = { subscriptionId: sub, displayName: "Phi-3 dev", tenantId: s.tenantId, state: "Enabled" };
  fake.route("GET", `/subscriptions/${sub}`, { body: subBody });
  fake.route("GET", "/subscriptions", { body: { value: [subBody] } });
  fake.route("GET", new RegExp(`^/subscriptions/${sub}/providers/Microsoft\\.[A-Za-z]+$`), (req) => ({
    body: { namespace: req.path.split("/").pop(), registrationState: "Registered" },
  }));
  const ml = `/subscriptions/${sub}/providers/Microsoft.MachineLearningServices/locations/${s.location}`;
  fake.route("GET", `${ml}/vmSizes`, { body: { value: s.vmSizes } });
  fake.route("GET", `${ml}/usages`, { body: { value: s.usages } });
  for (const ns of ["Microsoft.Storage", "Microsoft.KeyVault", "Microsoft.ContainerRegistry"]) {
    fake.route("POST", `/subscriptions/${sub}/providers/${ns}/checkNameAvailability`, { body: { nameAvailable: true } });
  }
  fake.route("GET", new RegExp(`^/subscriptions/${sub}/providers/Microsoft\\.KeyVault/locations/${s.location}/deletedVaults/`), notFound);
  fake.route("GET", new RegExp(`^/subscriptions/${sub}/resourceGroups/[^/]+/providers/`), notFound);
}

/**
 * Makes the jitter of @azure/core-rest-pipeline's exponential retry pick its longest delay
 * (`Math.random` just under 1) for the current test, so a test can assert exact waits:
 * retry n then waits `min(max, base * 2^n)`.
 */
export function longestJitter(): void {
  const spy = vi.spyOn(Math, "random").mockReturnValue(0.999999);
  onTestFinished(() => spy.mockRestore());
}
