import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  formatJsonlIssues,
  MAX_ISSUES_PER_FILE,
  packingCheck,
  validateChatJsonl,
  validateChatJsonlFile,
} from "../infra/jsonl";

const FIX = join(__dirname, "fixtures", "data");

const row = (...messages: unknown[]) => JSON.stringify({ messages });
const u = (content: unknown) => ({ role: "user", content });
const a = (content: unknown) => ({ role: "assistant", content });
const s = (content: unknown) => ({ role: "system", content });

describe("validateChatJsonl: single rows", () => {
  const good: [string, string][] = [
    ["user + assistant", row(u("q"), a("a"))],
    ["system first", row(s("be brief"), u("q"), a("a"))],
    ["multi-turn", row(u("q1"), a("a1"), u("q2"), a("a2"))],
    ["Chinese text", row(u("微软的总部在哪里？"), a("雷德蒙德。"))],
    ["emoji", row(u("mood? 🎉"), a("🥳"))],
    ["extra keys are tolerated", JSON.stringify({ messages: [u("q"), a("a")], id: 7 })],
    ["leading/trailing spaces around the JSON", `  ${row(u("q"), a("a"))}\t`],
  ];
  it.each(good)("accepts %s", (_name, line) => {
    expect(validateChatJsonl(line + "\n", "f.jsonl")).toMatchObject({ rows: 1, errors: [] });
  });

  // [name, line, every message expected (as substrings, one per issue, in order)]
  const bad: [string, string, string[]][] = [
    ["truncated JSON", '{"messages": [', ["invalid JSON: "]],
    ["trailing comma", '{"messages": [],}', ["invalid JSON"]],
    ["not an object (array)", "[1,2]", ['expected a JSON object like {"messages": [...]}, got an array']],
    ["not an object (string)", '"hello"', ["got a string"]],
    ["null", "null", ["got null"]],
    ["no messages key", '{"prompt":"q","completion":"a"}', ['missing "messages" array (keys present: "prompt", "completion")']],
    ["messages not an array", '{"messages": "hi"}', ['"messages" must be an array, got a string']],
    ["messages empty", '{"messages": []}', ['"messages" is empty']],
    ["message not an object", row("hi", u("q"), a("a")), ['messages[0]: expected an object with "role" and "content", got a string']],
    [
      "bad role",
      row(u("q"), { role: "bot", content: "a" }),
      ['messages[1]: role "bot" is not allowed (allowed: system, user, assistant)', 'no "assistant" message'],
    ],
    ["missing role", row({ content: "q" }, a("a")), ['messages[0]: missing "role"', 'no "user" message']],
    ["numeric role", row({ role: 1, content: "q" }, u("q"), a("a")), ['messages[0]: "role" must be a string']],
    ["empty content", row(u(""), a("a")), ['messages[0]: "content" is empty']],
    ["whitespace-only content", row(u("q"), a(" \n\t ")), ['messages[1]: "content" is empty']],
    ["missing content", row({ role: "user" }, a("a")), ['messages[0]: missing "content"']],
    ["content not a string", row(u(["x"]), a("a")), ['messages[0]: "content" must be a string, got an array']],
    ["no user turn", row(s("sys"), a("a")), ['no "user" message']],
    ["no assistant turn", row(u("q")), ['no "assistant" message']],
    ["system not first", row(u("q"), s("late"), a("a")), ['messages[1]: a "system" message is only allowed as the first']],
    [
      "several problems in one row",
      row({ role: "bot", content: "" }, s("x")),
      ['role "bot"', '"content" is empty', "messages[1]: a \"system\"", 'no "user"', 'no "assistant"'],
    ],
  ];
  it.each(bad)("rejects %s", (_name, line, expected) => {
    const r = validateChatJsonl(line, "f.jsonl");
    expect(r.rows).toBe(1);
    expect(r.errors).toHaveLength(expected.length);
    r.errors.forEach((e, i) => {
      expect(e.file).toBe("f.jsonl");
      expect(e.line).toBe(1);
      expect(e.message).toContain(expected[i]);
    });
  });

  it("includes the JSON parser's own message", () => {
    let parserMessage = "";
    try {
      JSON.parse('{"a":}');
    } catch (e) {
      parserMessage = (e as Error).message;
    }
    const r = validateChatJsonl('{"a":}', "f");
    expect(r.errors[0].message).toBe(`invalid JSON: ${parserMessage}`);
  });
});

describe("validateChatJsonl: whole files", () => {
  const ok = row(u("q"), a("a"));

  it("counts rows and accepts a trailing newline", () => {
    expect(validateChatJsonl(`${ok}\n${ok}\n${ok}\n`, "f")).toMatchObject({ rows: 3, errors: [] });
    expect(validateChatJsonl(`${ok}\n${ok}`, "f")).toMatchObject({ rows: 2, errors: [] });
  });

  it("keeps line numbers right with CRLF endings and blank lines", () => {
    const text = [ok, "", "  ", "{bad", ok, "\t", '{"messages": []}', ""].join("\r\n");
    const r = validateChatJsonl(text, "f");
    expect(r.rows).toBe(4);
    expect(r.errors.map((e) => e.line)).toEqual([4, 7]);
    // CRLF must not leak into content checks or JSON parsing of good lines
    expect(r.errors[0].message).toMatch(/^invalid JSON/);
    expect(r.errors[1].message).toContain('"messages" is empty');
  });

  it("strips a UTF-8 BOM at the start (line 1 stays valid)", () => {
    expect(validateChatJsonl(`\uFEFF${ok}\r\n${ok}\r\n`, "f")).toMatchObject({ rows: 2, errors: [] });
  });

  it("does not accept a BOM in the middle of the file", () => {
    const r = validateChatJsonl(`${ok}\n\uFEFF${ok}\n`, "f");
    expect(r.errors.map((e) => e.line)).toEqual([2]);
  });

  it("reports an empty file and a blank-only file", () => {
    for (const text of ["", "\n\n", "\uFEFF", " \r\n\t\r\n"]) {
      const r = validateChatJsonl(text, "empty.jsonl");
      expect(r.rows).toBe(0);
      expect(r.errors).toHaveLength(1);
      expect(r.errors[0].message).toMatch(/empty file/);
    }
  });

  it("collects the errors of every line, not only the first", () => {
    const text = Array.from({ length: 10 }, (_, i) => (i % 2 === 0 ? "{oops" : ok)).join("\n");
    const r = validateChatJsonl(text, "f");
    expect(r.rows).toBe(10);
    expect(r.errors.map((e) => e.line)).toEqual([1, 3, 5, 7, 9]);
  });

  it(`caps at ${MAX_ISSUES_PER_FILE} issues with an "and N more" summary`, () => {
    const text = Array.from({ length: 250 }, () => "x").join("\n");
    const r = validateChatJsonl(text, "f");
    expect(r.rows).toBe(250);
    expect(r.errors).toHaveLength(MAX_ISSUES_PER_FILE + 1);
    expect(r.errors[MAX_ISSUES_PER_FILE - 1].line).toBe(MAX_ISSUES_PER_FILE);
    const last = r.errors[MAX_ISSUES_PER_FILE];
    expect(last.message).toContain("and 150 more issues");
    expect(last.line).toBe(MAX_ISSUES_PER_FILE + 1);
  });

  it("does not add a summary at exactly the cap", () => {
    const text = Array.from({ length: MAX_ISSUES_PER_FILE }, () => "x").join("\n");
    const r = validateChatJsonl(text, "f");
    expect(r.errors).toHaveLength(MAX_ISSUES_PER_FILE);
    expect(r.errors.some((e) => e.message.includes("more issue"))).toBe(false);
  });
});

describe("validateChatJsonlFile on fixtures", () => {
  it("accepts train.jsonl (56 rows, non-ASCII, system turns, multi-turn)", () => {
    const r = validateChatJsonlFile(join(FIX, "train.jsonl"));
    expect(r).toMatchObject({ rows: 56, errors: [] });
  });

  it("accepts test.jsonl (12 rows)", () => {
    expect(validateChatJsonlFile(join(FIX, "test.jsonl"))).toMatchObject({ rows: 12, errors: [] });
  });

  it("reports every error of bad/mixed.jsonl with CRLF-proof line numbers", () => {
    const path = join(FIX, "bad", "mixed.jsonl");
    const r = validateChatJsonlFile(path);
    expect(r.rows).toBe(7);
    expect(r.errors.every((e) => e.file === path)).toBe(true);
    expect(r.errors.map((e) => [e.line, e.message.replace(/:.*$/s, "")])).toEqual([
      [3, "invalid JSON"],
      [4, "messages[0]"],
      [4, "messages[1]"],
      [4, 'no "user" message'],
      [6, 'missing "messages" array (keys present'],
      [7, "messages[1]"],
      [8, "expected a JSON object like {\"messages\""],
      [9, '"messages" is empty'],
    ]);
    expect(r.errors[1].message).toContain('role "bot" is not allowed');
    expect(r.errors[2].message).toContain('"content" is empty');
  });

  it("reports empty and blank-only files", () => {
    for (const name of ["empty.jsonl", "blank-only.jsonl"]) {
      const r = validateChatJsonlFile(join(FIX, "bad", name));
      expect(r.rows).toBe(0);
      expect(r.errors).toHaveLength(1);
      expect(r.errors[0].message).toMatch(/^empty file/);
    }
  });

  it("reports invalid UTF-8 on the line that has it", () => {
    const r = validateChatJsonlFile(join(FIX, "bad", "invalid-utf8.jsonl"));
    expect(r.rows).toBe(2);
    expect(r.errors).toEqual([
      expect.objectContaining({ line: 2, message: expect.stringContaining("invalid UTF-8") }),
    ]);
  });

  const dir = mkdtempSync(join(tmpdir(), "jsonl-test-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("reads the file as UTF-8 with BOM and CRLF", () => {
    const path = join(dir, "bom.jsonl");
    writeFileSync(path, Buffer.from(`\uFEFF${row(u("你好"), a("👋"))}\r\n\r\n${row(u("q"), a("a"))}\r\n`, "utf8"));
    expect(validateChatJsonlFile(path)).toMatchObject({ rows: 2, errors: [] });
  });

  it("throws the fs error for a missing file", () => {
    expect(() => validateChatJsonlFile(join(dir, "nope.jsonl"))).toThrow(/ENOENT/);
  });
});

describe("token bounds and packing", () => {
  it("counts the template's tokens and bounds content tokens by UTF-8 bytes", () => {
    // One row, no system turn: <s>, <|endoftext|>, packing separator (3) + inserted system turn (4)
    // + per message 4 template tokens; content "ab" = 2 bytes (+1) and "你好" = 6 bytes (+1).
    const r = validateChatJsonl(row(u("ab"), a("你好")), "f");
    expect(r.tokens).toEqual({ upperBound: 3 + 4 + (2 + 1 + 4) + (6 + 1 + 4), estimate: 3 + 4 + (1 + 4) + (1 + 4) });
    const withSystem = validateChatJsonl(row(s("x"), u("ab"), a("cd")), "f");
    expect(withSystem.tokens.upperBound).toBe(3 + (1 + 1 + 4) + 2 * (2 + 1 + 4));
  });

  it("counts only valid rows", () => {
    const r = validateChatJsonl([row(u("ab"), a("cd")), row(u("only a question"))].join("\n"), "f");
    expect(r.errors).toHaveLength(1);
    expect(r.tokens).toEqual(validateChatJsonl(row(u("ab"), a("cd")), "f").tokens);
  });

  it.each([
    [{ upperBound: 100, estimate: 30 }, 128, "error", /at most 100 tokens.*maxSeqLength = 128/],
    [{ upperBound: 400, estimate: 100 }, 128, "warning", /about 100 tokens \(at most 400\)/],
    [{ upperBound: 400, estimate: 200 }, 128, undefined, undefined],
  ] as const)("%j against %i tokens: %s", (tokens, seq, kind, message) => {
    const result = packingCheck("data.testFile: t.jsonl", tokens, seq);
    if (kind === undefined) return expect(result).toEqual({});
    expect(Object.keys(result)).toEqual([kind]);
    expect(result[kind]).toMatch(message!);
    expect(result[kind]).toMatch(/^data\.testFile: t\.jsonl /);
  });

  it("the example stack's test split fills sequences of 512, likely not of 2048, certainly not of 8192", () => {
    const test = validateChatJsonlFile(join(FIX, "test.jsonl")).tokens;
    expect(packingCheck("t", test, 512)).toEqual({});
    expect(Object.keys(packingCheck("t", test, 2048))).toEqual(["warning"]);
    expect(Object.keys(packingCheck("t", test, 8192))).toEqual(["error"]);
  });
});

describe("formatJsonlIssues", () => {
  it("prints file:line: message, one per line", () => {
    expect(
      formatJsonlIssues([
        { file: "a.jsonl", line: 3, message: "invalid JSON: x" },
        { file: "b.jsonl", line: 0, message: "empty file: no data lines" },
      ]),
    ).toBe("a.jsonl:3: invalid JSON: x\nb.jsonl: empty file: no data lines");
    expect(formatJsonlIssues([])).toBe("");
  });
});
