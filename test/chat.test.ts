import { spawn } from "node:child_process";
import { createServer, IncomingMessage, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { afterEach, describe, expect, it } from "vitest";
import {
  askEndpoint,
  BUILT_IN_DEFAULTS,
  buildPayload,
  contextOverflow,
  conversationPrompt,
  displayUrl,
  dropOldestTurn,
  EndpointError,
  main,
  maskSecret,
  parseAnswer,
  parseArgs,
  resolveEndpoint,
  type ChatMessage,
  type PulumiRunner,
} from "../cli/chat";

const KEY = "k3y-SUPER-secret-0123456789abcdef";

interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage["headers"];
  body: string;
}

interface TestServer {
  url: string;
  seen: Seen[];
  close(): Promise<void>;
}

const servers: TestServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

/** Loopback scoring server; `reply(n, req)` handles the n-th request (0-based). */
async function scoringServer(reply: (n: number, seen: Seen, res: ServerResponse) => void): Promise<TestServer> {
  const seen: Seen[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const s = { method: req.method ?? "", url: req.url ?? "", headers: req.headers, body: Buffer.concat(chunks).toString("utf8") };
      seen.push(s);
      reply(seen.length - 1, s, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  const ts: TestServer = {
    url: `http://127.0.0.1:${port}/score`,
    seen,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  servers.push(ts);
  return ts;
}

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) {
  res.writeHead(status, { "Content-Type": "application/json", ...headers });
  res.end(typeof body === "string" ? body : JSON.stringify(body));
}

const ask = (uri: string, extra: Partial<Parameters<typeof askEndpoint>[0]> = {}) =>
  askEndpoint({
    uri,
    key: KEY,
    payload: { input_data: ["hi"] },
    timeoutMs: 2000,
    retries: 3,
    backoffBaseMs: 1,
    ...extra,
  });

async function rejection(p: Promise<unknown>): Promise<EndpointError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(EndpointError);
    expect((e as Error).message).not.toContain(KEY);
    return e as EndpointError;
  }
  throw new Error("expected a rejection");
}

describe("parseArgs", () => {
  it("has the documented defaults", () => {
    expect(parseArgs(["Who", "founded", "Microsoft?"])).toEqual({
      question: "Who founded Microsoft?",
      interactive: false,
      help: false,
      temperature: 0.7,
      retries: 4,
    });
    expect(BUILT_IN_DEFAULTS).toEqual({ maxNewTokens: 128, timeoutSeconds: 90 });
    expect(parseArgs([]).question).toBeUndefined();
    expect(parseArgs(["--shape", "chat", "q"]).shape).toBe("chat");
    expect(parseArgs(["--shape", "chat-list", "q"]).shape).toBe("chat-list");
    expect(parseArgs(["q"]).shape).toBeUndefined(); // the stack's chatDefaults.payloadShape, else prompt-list
  });

  it("reads every option in both --opt value and --opt=value forms", () => {
    const a = parseArgs(["-i", "--stack", "dev", "--temperature=0", "--max-new-tokens", "64", "--shape=prompt-list", "--timeout", "2.5", "--retries=0", "q"]);
    expect(a).toMatchObject({ interactive: true, stack: "dev", temperature: 0, maxNewTokens: 64, shape: "prompt-list", timeoutSec: 2.5, retries: 0, question: "q" });
    expect(parseArgs(["--", "--not-an-option", "x"]).question).toBe("--not-an-option x");
    expect(parseArgs(["--help"]).help).toBe(true);
  });

  it.each([
    [["--shape", "completion"], /--shape must be one of prompt-list, chat, chat-list/],
    [["--temperature=-1"], /--temperature must be a number >= 0/],
    [["--temperature", "-1"], /--temperature needs a value \(<n>\); a value starting with '-' is written --temperature=<value>, e.g. --temperature=-1/],
    [["--temperature", "hot"], /--temperature/],
    [["--max-new-tokens", "1.5"], /integer >= 1/],
    [["--timeout", "0"], /seconds > 0/],
    [["--retries=-2"], /integer >= 0/],
    [["--retries"], /--retries needs a value/],
    [["--verbose"], /unknown option --verbose/],
  ])("rejects %j", (argv, message) => {
    expect(() => parseArgs(argv)).toThrow(message);
  });
});

describe("buildPayload / parseAnswer", () => {
  const conv: ChatMessage[] = [
    { role: "user", content: "Who founded Microsoft?" },
    { role: "assistant", content: "Bill Gates and Paul Allen." },
    { role: "user", content: "When?" },
  ];
  const opts = { temperature: 0.2, maxNewTokens: 50 };

  it("chat shape sends the whole history", () => {
    expect(buildPayload("chat", conv, opts)).toEqual({
      input_data: { input_string: conv, parameters: { temperature: 0.2, max_new_tokens: 50, do_sample: true } },
    });
  });

  it("prompt-list shape writes the conversation into one prompt, in Phi-3's turn format", () => {
    expect(buildPayload("prompt-list", conv, opts)).toEqual({
      input_data: ["Who founded Microsoft?<|end|>\n<|assistant|>\nBill Gates and Paul Allen.<|end|>\n<|user|>\nWhen?"],
      params: { temperature: 0.2, max_new_tokens: 50, do_sample: true, return_full_text: false },
    });
    expect(buildPayload("prompt-list", conv.slice(2), opts)).toMatchObject({ input_data: ["When?"] });
  });

  it("temperature 0 means greedy decoding in both shapes (transformers refuses temperature 0 with sampling)", () => {
    const greedy = { temperature: 0, maxNewTokens: 8 };
    expect(buildPayload("prompt-list", conv, greedy)).toMatchObject({ params: { temperature: 0, do_sample: false } });
    expect(buildPayload("chat", conv, greedy)).toMatchObject({ input_data: { parameters: { temperature: 0, do_sample: false } } });
    expect(buildPayload("chat", conv, { temperature: 0.01, maxNewTokens: 8 })).toMatchObject({ input_data: { parameters: { do_sample: true } } });
  });

  it("conversationPrompt needs a user turn first and last and no system turn", () => {
    expect(() => conversationPrompt([])).toThrow(/start and end with a user turn/);
    expect(() => conversationPrompt(conv.slice(0, 2))).toThrow(/start and end with a user turn/);
    expect(() => conversationPrompt(conv.slice(1))).toThrow(/start and end with a user turn/);
    expect(() => conversationPrompt([conv[0], { role: "system", content: "s" }, conv[2]])).toThrow(/system turn/);
  });

  it("refuses a conversation without a user message", () => {
    expect(() => buildPayload("chat", [{ role: "system", content: "x" }], opts)).toThrow(/no user message/);
  });

  it.each([
    ["chat", '{"output": "Bill Gates"}', "Bill Gates"],
    ["chat", '"bare string"', "bare string"],
    ["chat", JSON.stringify(JSON.stringify({ output: "double" })), "double"],
    ["prompt-list", '["first", "second"]', "first"],
    ["prompt-list", '[{"0": "zero"}]', "zero"],
    ["prompt-list", '[{"generated_text": "gen"}]', "gen"],
  ] as const)("%s answer %s", (shape, body, expected) => {
    expect(parseAnswer(shape, body)).toBe(expected);
  });

  it.each([
    ["chat", "<html>oops</html>", /not JSON/],
    ["chat", '{"answer": "x"}', /expected \{"output"/],
    ["chat", '["x"]', /try --shape prompt-list/],
    ["prompt-list", "[]", /expected a list/],
    ["prompt-list", "[42]", /expected a list/],
    ["prompt-list", '{"output": "x"}', /try --shape chat/],
  ] as const)("%s rejects %s", (shape, body, message) => {
    expect(() => parseAnswer(shape, body)).toThrow(message);
  });
});

describe("maskSecret / displayUrl", () => {
  it("masks raw and URL-encoded secrets", () => {
    expect(maskSecret(`a ${KEY} b ${KEY}`, KEY)).toBe("a *** b ***");
    expect(maskSecret("x=a%2Bb%2F", "a+b/")).toBe("x=***");
    expect(maskSecret("nothing", undefined)).toBe("nothing");
  });
  it("drops user info and query from URLs", () => {
    expect(displayUrl(`https://u:${KEY}@h.example/score?key=${KEY}#f`)).toBe("https://h.example/score");
    expect(displayUrl("::")).toBe("<invalid URL>");
  });
});

describe("askEndpoint against a loopback server", () => {
  it("posts the chat payload with bearer auth and JSON content type", async () => {
    const srv = await scoringServer((_n, _s, res) => json(res, 200, { output: "Bill Gates and Paul Allen" }));
    const payload = buildPayload("chat", [{ role: "user", content: "Who founded Microsoft?" }], { temperature: 0.7, maxNewTokens: 128 });
    const text = await ask(srv.url, { payload });
    expect(parseAnswer("chat", text)).toBe("Bill Gates and Paul Allen");
    expect(srv.seen).toHaveLength(1);
    expect(srv.seen[0].method).toBe("POST");
    expect(srv.seen[0].url).toBe("/score");
    expect(srv.seen[0].headers.authorization).toBe(`Bearer ${KEY}`);
    expect(srv.seen[0].headers["content-type"]).toBe("application/json");
    expect(JSON.parse(srv.seen[0].body)).toEqual({
      input_data: {
        input_string: [{ role: "user", content: "Who founded Microsoft?" }],
        parameters: { temperature: 0.7, max_new_tokens: 128, do_sample: true },
      },
    });
  });

  it("posts the prompt-list payload and reads a list answer", async () => {
    const srv = await scoringServer((_n, _s, res) => json(res, 200, ["Paul Allen and Bill Gates"]));
    const payload = buildPayload("prompt-list", [{ role: "user", content: "Who founded Microsoft?" }], { temperature: 0.7, maxNewTokens: 128 });
    expect(parseAnswer("prompt-list", await ask(srv.url, { payload }))).toBe("Paul Allen and Bill Gates");
    expect(srv.seen[0].headers.authorization).toBe(`Bearer ${KEY}`);
    expect(srv.seen[0].body).toBe(
      '{"input_data":["Who founded Microsoft?"],"params":{"temperature":0.7,"max_new_tokens":128,"do_sample":true,"return_full_text":false}}',
    );
  });

  it("401: says the key was rejected, does not retry, never echoes the key", async () => {
    const srv = await scoringServer((_n, s, res) => json(res, 401, { error: `bad token ${s.headers.authorization}` }));
    const err = await rejection(ask(srv.url));
    expect(err.kind).toBe("auth");
    expect(err.status).toBe(401);
    expect(err.message).toMatch(/rejected the key \(HTTP 401\)/);
    expect(err.message).toContain("pulumi stack output endpointKey --show-secrets");
    expect(srv.seen).toHaveLength(1);
  });

  it("403 is an auth error too", async () => {
    const srv = await scoringServer((_n, _s, res) => json(res, 403, "forbidden"));
    expect((await rejection(ask(srv.url))).kind).toBe("auth");
  });

  it("429 with Retry-After: 0, then success", async () => {
    const srv = await scoringServer((n, _s, res) =>
      n === 0 ? json(res, 429, { error: "too many" }, { "Retry-After": "0" }) : json(res, 200, { output: "ok" }),
    );
    const waits: number[] = [];
    const text = await ask(srv.url, { backoffBaseMs: 5000, onRetry: (i) => waits.push(i.waitMs) });
    expect(parseAnswer("chat", text)).toBe("ok");
    expect(srv.seen).toHaveLength(2);
    expect(waits).toEqual([0]); // Retry-After wins over the 5 s backoff
    expect(srv.seen[1].body).toBe(srv.seen[0].body);
  });

  it("503 twice, then success, with exponential backoff", async () => {
    const srv = await scoringServer((n, _s, res) => (n < 2 ? json(res, 503, "warming up") : json(res, 200, { output: "ready" })));
    const waits: number[] = [];
    const text = await ask(srv.url, { backoffBaseMs: 3, onRetry: (i) => waits.push(i.waitMs) });
    expect(parseAnswer("chat", text)).toBe("ready");
    expect(srv.seen).toHaveLength(3);
    expect(waits).toEqual([3, 6]);
  });

  it("caps the wait at maxBackoffMs", async () => {
    const srv = await scoringServer((n, _s, res) => (n === 0 ? json(res, 429, "", { "Retry-After": "3600" }) : json(res, 200, { output: "ok" })));
    const waits: number[] = [];
    await ask(srv.url, { maxBackoffMs: 10, onRetry: (i) => waits.push(i.waitMs) });
    expect(waits).toEqual([10]);
  });

  it("gives up after the retries with the last status", async () => {
    const srv = await scoringServer((_n, s, res) => json(res, 503, `overloaded (${s.headers.authorization})`));
    const err = await rejection(ask(srv.url, { retries: 2 }));
    expect(srv.seen).toHaveLength(3);
    expect(err.kind).toBe("busy");
    expect(err.message).toMatch(/still busy after 3 attempts: HTTP 503/);
    expect(err.message).toContain("Bearer ***"); // body quoted, key masked
  });

  it("other non-2xx: status and the first 300 characters of the masked body, no retry", async () => {
    const long = `${KEY} ` + "x".repeat(1000);
    const srv = await scoringServer((_n, _s, res) => json(res, 500, long));
    const err = await rejection(ask(srv.url));
    expect(srv.seen).toHaveLength(1);
    expect(err.kind).toBe("http");
    expect(err.message).toMatch(/^HTTP 500 from http:\/\/127\.0\.0\.1:\d+\/score: \*\*\* x+\.\.\.$/);
    // The key is masked first, then the body is cut at 300 characters (issue 18): "*** " and 296 x.
    expect(err.message.match(/x/g)!.length).toBe(300 - "*** ".length);
  });

  it("times out with a clear message naming the seconds", async () => {
    const srv = await scoringServer(() => {
      /* never answers */
    });
    const started = Date.now();
    const err = await rejection(ask(srv.url, { timeoutMs: 150 }));
    expect(Date.now() - started).toBeLessThan(2000);
    expect(err.kind).toBe("timeout");
    expect(err.message).toMatch(/within 0\.15 s \(timeout\).*--timeout/);
  });

  it("unreachable server: network error without the key", async () => {
    const srv = await scoringServer(() => undefined);
    await srv.close();
    const err = await rejection(ask(srv.url));
    expect(err.kind).toBe("network");
    expect(err.message).toMatch(/could not reach http:\/\/127\.0\.0\.1/);
  });

  it.each([
    ["a key that is not a valid header value", `${KEY.slice(0, 8)}\n${KEY.slice(8)}`, "http://127.0.0.1:9/score?code=SIG"],
    ["a URL with credentials and query", KEY, `http://user:${KEY}@127.0.0.1:9/score?code=SIG`],
  ])("masks the key and the URL's secrets in fetch errors: %s", async (_name, key, uri) => {
    let err: EndpointError | undefined;
    try {
      await askEndpoint({ uri, key, payload: {}, timeoutMs: 500, retries: 0, backoffBaseMs: 1 });
    } catch (e) {
      err = e as EndpointError;
    }
    expect(err).toBeInstanceOf(EndpointError);
    expect(err!.kind).toBe("network");
    expect(err!.message).not.toContain(key);
    expect(err!.message).not.toContain(KEY.slice(8));
    expect(err!.message).not.toContain("SIG");
  });
});

describe("resolveEndpoint", () => {
  const noPulumi: PulumiRunner = async () => null;

  it("uses ENDPOINT_URI / ENDPOINT_KEY (trimmed) without calling pulumi", async () => {
    let called = false;
    const r = await resolveEndpoint({ ENDPOINT_URI: " https://e.example/score ", ENDPOINT_KEY: `${KEY}\n` }, async () => {
      called = true;
      return "{}";
    });
    expect(r).toEqual({ uri: "https://e.example/score", key: KEY, source: "env" });
    expect(called).toBe(false);
  });

  it("reads scoringUri / endpointKey from the stack, passing --stack", async () => {
    const calls: string[][] = [];
    const runner: PulumiRunner = async (args) => {
      calls.push(args);
      return JSON.stringify({ scoringUri: "https://p.example/score", endpointKey: KEY, other: 1 });
    };
    expect(await resolveEndpoint({}, runner, "dev")).toEqual({ uri: "https://p.example/score", key: KEY, source: "pulumi" });
    expect(calls).toEqual([["stack", "output", "--json", "--show-secrets", "--stack", "dev"]]);
    await resolveEndpoint({}, runner);
    expect(calls[1]).toEqual(["stack", "output", "--json", "--show-secrets"]);
  });

  it("reads the stack output chatDefaults (sized for the serving hardware) and ignores a malformed one", async () => {
    const outputs = { scoringUri: "https://p.example/score", endpointKey: KEY, chatDefaults: { maxNewTokens: 64, timeoutSeconds: 200 } };
    expect((await resolveEndpoint({}, async () => JSON.stringify(outputs))).defaults).toEqual({ maxNewTokens: 64, timeoutSeconds: 200 });
    const bad = { ...outputs, chatDefaults: { maxNewTokens: "64", timeoutSeconds: 200 } };
    expect((await resolveEndpoint({}, async () => JSON.stringify(bad))).defaults).toBeUndefined();
  });

  it("an env value overrides the stack output", async () => {
    const runner: PulumiRunner = async () => JSON.stringify({ scoringUri: "https://p.example/score", endpointKey: "stack-key" });
    expect(await resolveEndpoint({ ENDPOINT_URI: "http://127.0.0.1:1/score" }, runner)).toEqual({
      uri: "http://127.0.0.1:1/score",
      key: "stack-key",
      source: "pulumi",
    });
  });

  it("clear message when neither env nor pulumi is available", async () => {
    await expect(resolveEndpoint({}, noPulumi)).rejects.toThrow(/ENDPOINT_URI and ENDPOINT_KEY are not set and the pulumi CLI is not on PATH/);
    await expect(resolveEndpoint({ ENDPOINT_URI: "https://x" }, noPulumi)).rejects.toThrow(/ENDPOINT_KEY is not set/);
  });

  it("clear messages for missing, encrypted or bad outputs and CLI failures", async () => {
    await expect(resolveEndpoint({}, async () => JSON.stringify({ scoringUri: "https://p" }))).rejects.toThrow(/no output "endpointKey"/);
    await expect(resolveEndpoint({}, async () => JSON.stringify({ scoringUri: "https://p", endpointKey: "[secret]" }))).rejects.toThrow(/\[secret\]/);
    await expect(resolveEndpoint({}, async () => "warning: not json")).rejects.toThrow(/did not print a JSON object/);
    await expect(resolveEndpoint({}, async () => JSON.stringify({ scoringUri: "ftp://p", endpointKey: "k" }))).rejects.toThrow(/http\(s\) URL/);
    await expect(
      resolveEndpoint({}, async () => {
        throw new Error("error: no stack named 'nope' found");
      }, "nope"),
    ).rejects.toThrow(/no stack named 'nope'[\s\S]*ENDPOINT_URI/);
  });
});

/** Captures what main() writes. */
function sink(isTTY = false) {
  const chunks: string[] = [];
  return { isTTY, write: (c: string) => chunks.push(c), text: () => chunks.join("") };
}

/**
 * Exact request body of the default shape (prompt-list, fine_tune.py's MLflow signature)
 * for one question with the default generation parameters.
 */
const promptListBody = (question: string, temperature = 0.7) =>
  JSON.stringify({
    input_data: [question],
    params: { temperature, max_new_tokens: 128, do_sample: true, return_full_text: false },
  });

/** True when the body is the prompt-list shape: a list of strings plus params. */
const isPromptList = (body: string) => {
  const b = JSON.parse(body) as { input_data?: unknown; params?: unknown };
  return Array.isArray(b.input_data) && b.input_data.every((x) => typeof x === "string") && typeof b.params === "object";
};

describe("main (in process)", () => {
  const env = (uri: string) => ({ ENDPOINT_URI: uri, ENDPOINT_KEY: KEY });
  const noPulumi: PulumiRunner = async () => null;

  it("one question, default shape: prompt-list body, list answer on stdout only, exit 0", async () => {
    // Answers like fine_tune.py's MLflow model: a list for a prompt-list body, 400 otherwise.
    const srv = await scoringServer((_n, s, res) =>
      isPromptList(s.body) ? json(res, 200, ["Bill Gates and Paul Allen"]) : json(res, 400, "schema mismatch"),
    );
    const out = sink();
    const err = sink();
    const code = await main(["Who founded Microsoft?"], env(srv.url), { stdout: out, stderr: err, stdin: new PassThrough(), runPulumi: noPulumi });
    expect(code).toBe(0);
    expect(out.text()).toBe("Bill Gates and Paul Allen\n");
    expect(err.text()).toBe("");
    expect(srv.seen).toHaveLength(1);
    expect(srv.seen[0].body).toBe(promptListBody("Who founded Microsoft?"));
  });

  it("takes max_new_tokens from the stack's chatDefaults unless --max-new-tokens is given", async () => {
    const srv = await scoringServer((_n, _s, res) => json(res, 200, ["ok"]));
    const stack: PulumiRunner = async () =>
      JSON.stringify({ scoringUri: srv.url, endpointKey: KEY, chatDefaults: { maxNewTokens: 64, timeoutSeconds: 200 } });
    const io = () => ({ stdout: sink(), stderr: sink(), stdin: new PassThrough(), runPulumi: stack });
    expect(await main(["q"], {}, io())).toBe(0);
    expect(await main(["--max-new-tokens", "16", "q"], {}, io())).toBe(0);
    expect(srv.seen.map((s) => JSON.parse(s.body).params.max_new_tokens)).toEqual([64, 16]);
  });

  it("one question, --shape chat: chat body, {output} answer on stdout only, exit 0", async () => {
    const srv = await scoringServer((_n, _s, res) => json(res, 200, { output: "Bill Gates" }));
    const out = sink();
    const err = sink();
    const code = await main(["--shape", "chat", "Who founded Microsoft?"], env(srv.url), { stdout: out, stderr: err, stdin: new PassThrough(), runPulumi: noPulumi });
    expect(code).toBe(0);
    expect(out.text()).toBe("Bill Gates\n");
    expect(err.text()).toBe("");
    expect(JSON.parse(srv.seen[0].body).input_data.input_string).toEqual([{ role: "user", content: "Who founded Microsoft?" }]);
  });

  it("--help documents the shapes and the default (the stack's, else prompt-list)", async () => {
    const out = sink();
    expect(await main(["--help"], {}, { stdout: out, stderr: sink(), stdin: new PassThrough() })).toBe(0);
    expect(out.text()).toMatch(/--shape prompt-list\|chat\|chat-list\s+payload shape \(default: the stack output chatDefaults\.payloadShape, else prompt-list/);
  });

  it("sends the stack's payload shape (chat-list for the managed mode's model) unless --shape says otherwise", async () => {
    const srv = await scoringServer((_n, _s, res) => json(res, 200, ["managed answer"]));
    const stack: PulumiRunner = async () =>
      JSON.stringify({ scoringUri: srv.url, endpointKey: KEY, chatDefaults: { maxNewTokens: 256, timeoutSeconds: 200, payloadShape: "chat-list" } });
    const out = sink();
    expect(await main(["--temperature", "0", "q"], {}, { stdout: out, stderr: sink(), stdin: new PassThrough(), runPulumi: stack })).toBe(0);
    expect(out.text()).toBe("managed answer\n");
    expect(JSON.parse(srv.seen[0].body)).toEqual({
      input_data: { input_string: [[{ role: "user", content: "q" }]], parameters: { temperature: 0, max_new_tokens: 256, do_sample: false } },
      params: {},
    });
    expect(await main(["--shape", "prompt-list", "q"], {}, { stdout: sink(), stderr: sink(), stdin: new PassThrough(), runPulumi: stack })).toBe(0);
    expect(JSON.parse(srv.seen[1].body).input_data).toEqual(["q"]);
  });

  it("retries are reported on stderr, spinner only on a TTY stderr, key never written", async () => {
    const srv = await scoringServer((n, _s, res) => (n === 0 ? json(res, 503, "", { "Retry-After": "0" }) : json(res, 200, ["ok"])));
    const out = sink();
    const err = sink(true);
    const code = await main(["q"], env(srv.url), { stdout: out, stderr: err, stdin: new PassThrough(), runPulumi: noPulumi, backoffBaseMs: 1 });
    expect(code).toBe(0);
    expect(out.text()).toBe("ok\n");
    expect(err.text()).toContain("waiting for the endpoint");
    expect(err.text()).toContain("endpoint busy (HTTP 503), retry 1/4");
    expect(out.text() + err.text()).not.toContain(KEY);
    expect(srv.seen[1].body).toBe(promptListBody("q")); // the retry resends the same default body
    const plain = sink(false);
    const plainOut = sink();
    expect(await main(["q"], env(srv.url), { stdout: plainOut, stderr: plain, stdin: new PassThrough(), runPulumi: noPulumi })).toBe(0);
    expect(plainOut.text()).toBe("ok\n");
    expect(plain.text()).not.toContain("waiting");
  });

  it("401: exit 1 with the rejected-key message on stderr, nothing on stdout", async () => {
    const srv = await scoringServer((_n, s, res) => json(res, 401, `denied ${s.headers.authorization}`));
    const out = sink();
    const err = sink();
    const code = await main(["q"], env(srv.url), { stdout: out, stderr: err, stdin: new PassThrough(), runPulumi: noPulumi });
    expect(code).toBe(1);
    expect(out.text()).toBe("");
    expect(err.text()).toMatch(/rejected the key/);
    expect(err.text()).not.toContain(KEY);
  });

  it("no configuration: exit 2 (a missing environment variable is usage) with a clear message", async () => {
    const err = sink();
    const code = await main(["q"], {}, { stdout: sink(), stderr: err, stdin: new PassThrough(), runPulumi: noPulumi });
    expect(code).toBe(2);
    expect(err.text()).toMatch(/No endpoint configured/);
  });

  it("usage error: exit 2", async () => {
    const err = sink();
    expect(await main(["--shape", "x"], {}, { stdout: sink(), stderr: err, stdin: new PassThrough() })).toBe(2);
    expect(err.text()).toMatch(/Usage:/);
  });

  it("reads the question from piped stdin", async () => {
    const srv = await scoringServer((_n, _s, res) => json(res, 200, ["piped answer"]));
    const stdin = new PassThrough();
    stdin.end("Who founded Microsoft?\n");
    const out = sink();
    const code = await main(["--shape", "prompt-list"], env(srv.url), { stdout: out, stderr: sink(), stdin, runPulumi: noPulumi });
    expect(code).toBe(0);
    expect(out.text()).toBe("piped answer\n");
    expect(JSON.parse(srv.seen[0].body).input_data).toEqual(["Who founded Microsoft?"]);
  });

  it("interactive --shape chat: keeps the history in the chat payload and stops at exit", async () => {
    const srv = await scoringServer((n, _s, res) => json(res, 200, { output: `answer ${n + 1}` }));
    const stdin = new PassThrough();
    stdin.end("Who founded Microsoft?\n\nWhen?\nexit\nignored after exit\n");
    const out = sink();
    const err = sink();
    const code = await main(["-i", "--shape", "chat", "--temperature", "0"], env(srv.url), { stdout: out, stderr: err, stdin, runPulumi: noPulumi });
    expect(code).toBe(0);
    expect(out.text()).toBe("answer 1\nanswer 2\n");
    expect(srv.seen).toHaveLength(2);
    expect(JSON.parse(srv.seen[1].body)).toEqual({
      input_data: {
        input_string: [
          { role: "user", content: "Who founded Microsoft?" },
          { role: "assistant", content: "answer 1" },
          { role: "user", content: "When?" },
        ],
        parameters: { temperature: 0, max_new_tokens: 128, do_sample: false },
      },
    });
    expect(err.text()).toContain("you> ");
    expect(err.text()).not.toContain(KEY);
  });

  it("interactive --shape chat: Ctrl-D (end of input) quits; a failed turn is reported and left out of the history", async () => {
    const srv = await scoringServer((n, _s, res) => (n === 0 ? json(res, 500, "boom") : json(res, 200, { output: "fine" })));
    const stdin = new PassThrough();
    stdin.end("first\nsecond\n");
    const out = sink();
    const err = sink();
    const code = await main(["-i", "--shape", "chat"], env(srv.url), { stdout: out, stderr: err, stdin, runPulumi: noPulumi });
    expect(code).toBe(0);
    expect(out.text()).toBe("fine\n");
    expect(err.text()).toMatch(/HTTP 500 .*boom/);
    expect(JSON.parse(srv.seen[1].body).input_data.input_string).toEqual([{ role: "user", content: "second" }]);
  });
});

describe("context-length trimming (issue 20)", () => {
  const u = (content: string): ChatMessage => ({ role: "user", content });
  const a = (content: string): ChatMessage => ({ role: "assistant", content });
  const sys: ChatMessage = { role: "system", content: "be brief" };

  it.each([
    ["drops the oldest user turn and its answer", [u("1"), a("A1"), u("2"), a("A2"), u("3")], [u("2"), a("A2"), u("3")]],
    ["keeps a leading system message", [sys, u("1"), a("A1"), u("2")], [sys, u("2")]],
    ["nothing left to drop: only the last question", [u("1")], undefined],
    ["nothing left to drop: system + last question", [sys, u("1")], undefined],
  ] as [string, ChatMessage[], ChatMessage[] | undefined][])("dropOldestTurn: %s", (_name, given, expected) => {
    expect(dropOldestTurn(given)).toEqual(expected);
  });

  it("contextOverflow reads the served model's 400 and nothing else", () => {
    const msg = 'HTTP 400 from x: {"error": "context_length_exceeded: the prompt has 4010 tokens and max_new_tokens is 256: 4266 tokens, over the model\'s context length of 4096 by 170 tokens; shorten"}';
    expect(contextOverflow(new EndpointError(msg, "http", 400))).toBe(170);
    expect(contextOverflow(new EndpointError("HTTP 400 from x: params.top_p must be in (0, 1]", "http", 400))).toBeUndefined();
    expect(contextOverflow(new EndpointError(msg, "http", 500))).toBeUndefined();
    expect(contextOverflow(new Error(msg))).toBeUndefined();
  });

  it("interactive: drops the oldest turns until the conversation fits, says so, and keeps the trimmed history", async () => {
    // A model with room for two prompt turns: longer conversations are refused with the overflow.
    const srv = await scoringServer((_n, s, res) => {
      const prompt: string = JSON.parse(s.body).input_data[0];
      const turns = prompt.split("<|user|>").length;
      if (turns > 2) return json(res, 400, { error: `context_length_exceeded: the prompt has 5000 tokens and max_new_tokens is 8: 5008 tokens, over the model's context length of 4096 by ${(turns - 2) * 100} tokens` });
      return json(res, 200, [`answer ${srv.seen.length}`]);
    });
    const out = sink();
    const err = sink();
    const stdin = new PassThrough();
    stdin.end("Q1\nQ2\nQ3\nexit\n");
    const code = await main(["-i"], { ENDPOINT_URI: srv.url, ENDPOINT_KEY: KEY }, { stdout: out, stderr: err, stdin, runPulumi: async () => null });
    expect(code).toBe(0);
    const prompts = srv.seen.map((s) => JSON.parse(s.body).input_data[0] as string);
    expect(prompts[0]).toBe("Q1");
    expect(prompts[1]).toBe(conversationPrompt([u("Q1"), a("answer 1"), u("Q2")]));
    // Q3 with the whole history is over by 100 tokens: Q1 and its answer go, Q2 stays.
    expect(prompts[2]).toBe(conversationPrompt([u("Q1"), a("answer 1"), u("Q2"), a("answer 2"), u("Q3")]));
    expect(prompts[3]).toBe(conversationPrompt([u("Q2"), a("answer 2"), u("Q3")]));
    expect(prompts).toHaveLength(4);
    expect(err.text()).toContain("chat: the conversation is 100 tokens over the model's context: dropped the oldest turn (1 so far)");
    expect(out.text()).toBe("answer 1\nanswer 2\nanswer 4\n");
  });

  it("a single question over the context fails with the model's message (nothing to drop)", async () => {
    const srv = await scoringServer((_n, _s, res) =>
      json(res, 400, { error: "context_length_exceeded: the prompt has 5000 tokens and max_new_tokens is 8: 5008 tokens, over the model's context length of 4096 by 912 tokens" }),
    );
    const err = sink();
    expect(await main(["long"], { ENDPOINT_URI: srv.url, ENDPOINT_KEY: KEY }, { stdout: sink(), stderr: err, stdin: new PassThrough(), runPulumi: async () => null })).toBe(1);
    expect(err.text()).toContain("by 912 tokens");
    expect(srv.seen).toHaveLength(1);
  });
});

describe("main (in process), interactive default shape", () => {
  it("prompt-list: each turn sends the conversation so far in one prompt and reads a list answer", async () => {
    const srv = await scoringServer((n, s, res) => (isPromptList(s.body) ? json(res, 200, [`answer ${n + 1}`]) : json(res, 400, "schema mismatch")));
    const stdin = new PassThrough();
    stdin.end("Who founded Microsoft?\nWhen?\nexit\n");
    const out = sink();
    const err = sink();
    const code = await main(["-i"], { ENDPOINT_URI: srv.url, ENDPOINT_KEY: KEY }, { stdout: out, stderr: err, stdin, runPulumi: async () => null });
    expect(code).toBe(0);
    expect(out.text()).toBe("answer 1\nanswer 2\n");
    expect(err.text()).toContain("(shape prompt-list)");
    expect(srv.seen.map((s) => s.body)).toEqual([
      promptListBody("Who founded Microsoft?"),
      promptListBody("Who founded Microsoft?<|end|>\n<|assistant|>\nanswer 1<|end|>\n<|user|>\nWhen?"),
    ]);
    expect(err.text()).not.toContain(KEY);
  });
});

describe("end to end: npx tsx cli/chat.ts", () => {
  function run(args: string[], env: Record<string, string>) {
    return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
      const child = spawn("npx", ["tsx", "cli/chat.ts", ...args], {
        cwd: join(__dirname, ".."),
        env: { ...process.env, ENDPOINT_URI: "", ENDPOINT_KEY: "", PATH: process.env.PATH ?? "", ...env },
        stdio: ["ignore", "pipe", "pipe"],
      });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
      child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
      child.on("error", reject);
      child.on("close", (code) => resolve({ code, stdout, stderr }));
    });
  }

  it("default shape: sends the prompt-list body, prints the list answer; the key is absent from stdout and stderr", async () => {
    const srv = await scoringServer((_n, s, res) =>
      s.headers.authorization !== `Bearer ${KEY}`
        ? json(res, 401, "no")
        : isPromptList(s.body)
          ? json(res, 200, ["Hello from the endpoint"])
          : json(res, 400, "schema mismatch"),
    );
    const r = await run(["hi"], { ENDPOINT_URI: srv.url, ENDPOINT_KEY: KEY });
    expect(r.stdout).toBe("Hello from the endpoint\n");
    expect(r.code).toBe(0);
    expect(r.stdout + r.stderr).not.toContain(KEY);
    expect(srv.seen).toHaveLength(1);
    expect(srv.seen[0].headers["content-type"]).toBe("application/json");
    expect(srv.seen[0].body).toBe(promptListBody("hi"));
  });

  it("--shape chat: sends the chat body and prints the {output} answer", async () => {
    const srv = await scoringServer((_n, s, res) =>
      s.headers.authorization === `Bearer ${KEY}` ? json(res, 200, { output: "Hello from the endpoint" }) : json(res, 401, "no"),
    );
    const r = await run(["--shape", "chat", "hi"], { ENDPOINT_URI: srv.url, ENDPOINT_KEY: KEY });
    expect(r.stdout).toBe("Hello from the endpoint\n");
    expect(r.code).toBe(0);
    expect(r.stdout + r.stderr).not.toContain(KEY);
    expect(JSON.parse(srv.seen[0].body).input_data.input_string).toEqual([{ role: "user", content: "hi" }]);
  });

  it("exits 1 on a rejected key, without printing it", async () => {
    const srv = await scoringServer((_n, s, res) => json(res, 401, `invalid ${s.headers.authorization}`));
    const r = await run(["hi"], { ENDPOINT_URI: srv.url, ENDPOINT_KEY: KEY });
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).toMatch(/rejected the key/);
    expect(r.stdout + r.stderr).not.toContain(KEY);
  });
});
