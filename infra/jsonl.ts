// Validator for chat fine-tuning data in the seeds' JSONL format: one JSON object per line,
// `{"messages": [{"role": "system" | "user" | "assistant", "content": "..."}, ...]}`
// (the chat-completion format of the Azure AI Studio / OpenAI fine-tuning docs, the shape
// the seed's `fine_tune.py` feeds to `tokenizer.apply_chat_template`).
//
// Pure functions apart from `validateChatJsonlFile`, which only reads the file.

import { readFileSync } from "node:fs";

/** One problem found in a JSONL file: `line` is 1-based (0 only for whole-file issues). */
export interface JsonlIssue {
  file: string;
  line: number;
  message: string;
}

/**
 * How many tokens the valid rows of a file become once fine_tune.py renders them with Phi-3's
 * chat template, without running a tokenizer. Phi-3's tokenizer (SentencePiece with byte
 * fallback) never spends more than one token per UTF-8 byte plus one per text, so
 * `upperBound` is safe to refuse on; `estimate` assumes ~4 characters per token (English).
 * Both count the template's tokens: `<s>`, `<|role|>\n` and `<|end|>\n` per message, the empty
 * system turn fine_tune.py inserts, and the end-of-text token trl's packing adds per row.
 */
export interface TokenBounds {
  upperBound: number;
  estimate: number;
}

/** Template tokens per message (`<|role|>`, `\n`, `<|end|>`, `\n`). */
const MESSAGE_TEMPLATE_TOKENS = 4;
/** Template tokens per row besides its messages: `<s>`, `<|endoftext|>`, packing's separator. */
const ROW_TEMPLATE_TOKENS = 3;

/** Result of validating one JSONL file. */
export interface JsonlResult {
  /** Number of data lines (non-blank lines), valid or not. */
  rows: number;
  /** Every issue found, in line order, capped at {@link MAX_ISSUES_PER_FILE} plus a summary. */
  errors: JsonlIssue[];
  /** Token counts of the valid rows (see {@link TokenBounds}). */
  tokens: TokenBounds;
}

function rowTokens(messages: Record<string, unknown>[]): TokenBounds {
  const hasSystem = messages[0]?.role === "system";
  const fixed = ROW_TEMPLATE_TOKENS + (hasSystem ? 0 : MESSAGE_TEMPLATE_TOKENS);
  let upperBound = fixed;
  let estimate = fixed;
  for (const m of messages) {
    const content = String(m.content);
    upperBound += Buffer.byteLength(content, "utf8") + 1 + MESSAGE_TEMPLATE_TOKENS;
    estimate += Math.ceil(content.length / 4) + MESSAGE_TEMPLATE_TOKENS;
  }
  return { upperBound, estimate };
}

/**
 * Whether a split can fill one packed training sequence of `maxSeqLength` tokens (trl's
 * `packing=True` drops a remainder shorter than that, so a split with fewer tokens yields no
 * sequence and the job fails with "not enough samples to yield one packed sequence").
 * `error` when even the upper bound is short (certain failure), `warning` when only the
 * estimate is (likely failure); neither when it fits. Messages name `label`.
 */
export function packingCheck(label: string, tokens: TokenBounds, maxSeqLength: number): { error?: string; warning?: string } {
  const fix = "add rows or lower hyperparameters.maxSeqLength";
  if (tokens.upperBound < maxSeqLength) {
    return {
      error: `${label} renders to at most ${tokens.upperBound} tokens, fewer than one packed sequence of hyperparameters.maxSeqLength = ${maxSeqLength}: the fine-tune job would fail before its first step (${fix})`,
    };
  }
  if (tokens.estimate < maxSeqLength) {
    return {
      warning: `${label} renders to about ${tokens.estimate} tokens (at most ${tokens.upperBound}), likely fewer than one packed sequence of hyperparameters.maxSeqLength = ${maxSeqLength} (${fix})`,
    };
  }
  return {};
}

/** Roles accepted in a chat message, in the order they are listed in error messages. */
export const ALLOWED_ROLES = ["system", "user", "assistant"] as const;

/** Issues reported per file before the rest are folded into one "and N more" issue. */
export const MAX_ISSUES_PER_FILE = 100;

const BOM = "\uFEFF";

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  switch (typeof value) {
    case "string":
      return "a string";
    case "number":
      return "a number";
    case "boolean":
      return "a boolean";
    case "object":
      return "an object";
    default:
      return typeof value;
  }
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function quote(value: string, max = 40): string {
  const s = value.length > max ? `${value.slice(0, max)}...` : value;
  return JSON.stringify(s);
}

/** Checks one parsed line; returns its problems as messages (empty when the row is valid). */
function checkRow(value: unknown): string[] {
  if (!isPlainObject(value)) {
    return [`expected a JSON object like {"messages": [...]}, got ${describe(value)}`];
  }
  if (!("messages" in value)) {
    const keys = Object.keys(value);
    const seen = keys.length ? ` (keys present: ${keys.slice(0, 5).map((k) => quote(k)).join(", ")})` : "";
    return [`missing "messages" array${seen}`];
  }
  const messages = value.messages;
  if (!Array.isArray(messages)) {
    return [`"messages" must be an array, got ${describe(messages)}`];
  }
  if (messages.length === 0) {
    return [`"messages" is empty: a row needs at least one user and one assistant message`];
  }

  const problems: string[] = [];
  let users = 0;
  let assistants = 0;
  messages.forEach((m: unknown, i: number) => {
    const at = `messages[${i}]`;
    if (!isPlainObject(m)) {
      problems.push(`${at}: expected an object with "role" and "content", got ${describe(m)}`);
      return;
    }
    const role = m.role;
    const allowed = ALLOWED_ROLES.join(", ");
    if (role === undefined) {
      problems.push(`${at}: missing "role" (allowed: ${allowed})`);
    } else if (typeof role !== "string") {
      problems.push(`${at}: "role" must be a string, got ${describe(role)} (allowed: ${allowed})`);
    } else if (!(ALLOWED_ROLES as readonly string[]).includes(role)) {
      problems.push(`${at}: role ${quote(role)} is not allowed (allowed: ${allowed})`);
    } else if (role === "user") {
      users++;
    } else if (role === "assistant") {
      assistants++;
    } else if (role === "system" && i !== 0) {
      problems.push(`${at}: a "system" message is only allowed as the first message`);
    }
    const content = m.content;
    if (content === undefined) {
      problems.push(`${at}: missing "content"`);
    } else if (typeof content !== "string") {
      problems.push(`${at}: "content" must be a string, got ${describe(content)}`);
    } else if (content.trim() === "") {
      problems.push(`${at}: "content" is empty`);
    }
  });
  if (users === 0) problems.push(`no "user" message: a row needs at least one`);
  if (assistants === 0) problems.push(`no "assistant" message: a row needs at least one`);
  return problems;
}

/**
 * Validates chat fine-tuning data in JSONL form (one `{"messages": [...]}` object per line,
 * the chat-completion format of the Azure AI Studio / OpenAI fine-tuning docs used by the
 * seeds).
 *
 * @param text the whole file content, already decoded. A leading UTF-8 BOM is stripped,
 *   LF and CRLF line endings are accepted, blank (whitespace-only) lines are skipped but
 *   still counted so reported line numbers match an editor's.
 * @param file the name used in every {@link JsonlIssue} (usually the path).
 * @returns `rows`: the number of non-blank lines; `errors`: every problem found in line
 *   order. Per line: invalid JSON (with the parser's message), not an object, missing /
 *   non-array / empty `messages`, a message that is not an object, a role outside
 *   system/user/assistant, a missing / non-string / whitespace-only `content`, no user or
 *   no assistant turn, a system turn not in first position. A file with no data line is
 *   one error. After {@link MAX_ISSUES_PER_FILE} issues the rest are summarised by one
 *   "and N more" issue. Never throws.
 */
export function validateChatJsonl(text: string, file: string): JsonlResult {
  const body = text.startsWith(BOM) ? text.slice(BOM.length) : text;
  const lines = body.split(/\r?\n/);
  const all: JsonlIssue[] = [];
  let rows = 0;
  const tokens: TokenBounds = { upperBound: 0, estimate: 0 };

  lines.forEach((raw, idx) => {
    const line = idx + 1;
    if (raw.trim() === "") return;
    rows++;
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch (e) {
      const why = e instanceof Error ? e.message : String(e);
      all.push({ file, line, message: `invalid JSON: ${why}` });
      return;
    }
    const problems = checkRow(value);
    for (const message of problems) all.push({ file, line, message });
    if (problems.length === 0) {
      const t = rowTokens((value as { messages: Record<string, unknown>[] }).messages);
      tokens.upperBound += t.upperBound;
      tokens.estimate += t.estimate;
    }
  });

  if (rows === 0) {
    all.push({ file, line: 0, message: "empty file: no data lines (expected one JSON object per line)" });
  }

  if (all.length <= MAX_ISSUES_PER_FILE) return { rows, errors: all, tokens };
  const shown = all.slice(0, MAX_ISSUES_PER_FILE);
  const rest = all.length - MAX_ISSUES_PER_FILE;
  const next = all[MAX_ISSUES_PER_FILE];
  shown.push({
    file,
    line: next.line,
    message: `... and ${rest} more issue${rest === 1 ? "" : "s"} not shown (from line ${next.line} on)`,
  });
  return { rows, errors: shown, tokens };
}

/**
 * Reads a JSONL file as UTF-8 and validates it with {@link validateChatJsonl}; issues name
 * the file by `path` as given.
 *
 * Bytes that are not valid UTF-8 are decoded as U+FFFD and reported as one extra issue on
 * the first line that contains them.
 *
 * @param path file system path of the `.jsonl` file.
 * @throws the `fs` error (e.g. ENOENT, EISDIR) when the file cannot be read.
 */
export function validateChatJsonlFile(path: string): JsonlResult {
  const bytes = readFileSync(path);
  const text = bytes.toString("utf8");
  const result = validateChatJsonl(text, path);
  let strictOk = true;
  try {
    new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    strictOk = false;
  }
  if (!strictOk) {
    const line = text.slice(0, text.indexOf("\uFFFD")).split("\n").length;
    const issue: JsonlIssue = { file: path, line, message: "invalid UTF-8 byte sequence (the file must be UTF-8)" };
    const errors = [...result.errors];
    const at = errors.findIndex((e) => e.line > line);
    errors.splice(at === -1 ? errors.length : at, 0, issue);
    return { ...result, errors };
  }
  return result;
}

/**
 * Formats issues one per line as `file:line: message` (`file: message` for whole-file
 * issues with line 0), the usual compiler-style location format editors can jump to.
 *
 * @param issues issues as returned in {@link JsonlResult.errors}, possibly of several files.
 * @returns the lines joined by "\n" (empty string for no issues).
 */
export function formatJsonlIssues(issues: readonly JsonlIssue[]): string {
  return issues.map((i) => (i.line > 0 ? `${i.file}:${i.line}: ${i.message}` : `${i.file}: ${i.message}`)).join("\n");
}
