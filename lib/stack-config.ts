/**
 * Reads a stack's configuration from its files as the Pulumi CLI hands it to the program:
 * `Pulumi.yaml`'s project config defaults overlaid with `Pulumi.<stack>.yaml`, keys fully
 * qualified (`phi3-finetune:namePrefix`, `azure-native:location`), objects as JSON strings.
 * Used by the offline plan, the doctor, train:local and the tests; no Pulumi CLI needed.
 *
 * Every problem names the file and line: YAML syntax errors, duplicate keys (the `yaml`
 * library refuses them), a top-level key a stack file does not have (`confg:`, with "did you
 * mean"). `secure:` values (encrypted by `pulumi config set --secret`) cannot be decrypted
 * offline: they are read as {@link SECRET_PLACEHOLDER} and their keys reported as secret, so
 * the plan shows `[secret]`. {@link StackFiles.locate} finds the line of any config key, so a
 * config error can point at it.
 */
import * as fs from "fs";
import * as path from "path";
import { isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node as YamlNode } from "yaml";
import { ConfigError, nameProblem, parseConfig, rawProjectConfig, validateDataFiles, type StackConfig } from "../infra/config";
import { suggestion, UsageError } from "./cli";

/** Keys that would reach an object's prototype if copied (refused; infra/config.ts refuses them inside values). */
const FORBIDDEN_KEYS = new Set(["__proto__", "constructor", "prototype"]);

/** What a `secure:` value reads as offline. */
export const SECRET_PLACEHOLDER = "[secret]";

/** Top-level keys of a Pulumi stack settings file (Pulumi docs, "Pulumi.<stack>.yaml"). */
export const STACK_FILE_KEYS = ["config", "secretsprovider", "encryptedkey", "encryptionsalt", "environment"] as const;

/** A stack file or Pulumi.yaml that cannot be used; the message starts with `file[:line]: `. */
export class StackFileError extends Error {
  /** @param message - `file:line: what is wrong`. */
  constructor(message: string) {
    super(message);
    this.name = "StackFileError";
  }
}

/** What {@link readStackConfig} returns. */
export interface StackFiles {
  /**
   * Problems with values the files give that the config schema cannot see once Pulumi has
   * turned them into text: a YAML `true` or `3` for a key Pulumi.yaml types as a string, a
   * `null`, each with file and line.
   */
  problems: string[];
  /** Project name from Pulumi.yaml. */
  project: string;
  /** Fully qualified config key → value (objects as JSON strings). */
  config: Record<string, string>;
  /** Keys holding a `secure:` value anywhere inside (their value has {@link SECRET_PLACEHOLDER}). */
  secretKeys: string[];
  /** The stack file's name, e.g. `Pulumi.dev.yaml`. */
  stackFile: string;
  /** Whether the stack file has no config at all (empty file or no `config:`). */
  emptyStackFile: boolean;
  /**
   * `file:line` of a config key (fully qualified) and a path inside its value, as deep as the
   * files go; `undefined` when neither file writes it (a default of the program).
   */
  locate(key: string, inner?: readonly (string | number)[]): string | undefined;
}

/** Stack names that have a `Pulumi.<stack>.yaml` in `root`, sorted. */
export function listStacks(root: string): string[] {
  return fs.readdirSync(root).flatMap((f) => /^Pulumi\.(.+)\.yaml$/.exec(f)?.[1] ?? []).sort();
}

interface LoadedFile {
  name: string;
  doc: Document;
  lines: LineCounter;
  value: Record<string, unknown>;
}

function loadYaml(root: string, name: string): LoadedFile {
  const file = path.join(root, name);
  const text = fs.readFileSync(file, "utf8");
  const lines = new LineCounter();
  // `merge: true`: YAML merge keys (`<<: *defaults`) work as in the Pulumi CLI's YAML reader.
  const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: true, prettyErrors: false, merge: true });
  if (doc.errors.length > 0) {
    const e = doc.errors[0];
    const line = e.pos ? lines.linePos(e.pos[0]).line : undefined;
    const what = e.code === "DUPLICATE_KEY" ? "a key appears twice in the same mapping (Pulumi keeps one of them silently; remove the other)" : `invalid YAML: ${e.message.split("\n")[0]}`;
    throw new StackFileError(`${name}${line ? `:${line}` : ""}: ${what}`);
  }
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: 100 }) ?? {};
  } catch (e) {
    // The `yaml` library refuses alias expansion that grows without bound ("billion laughs").
    throw new StackFileError(`${name}: ${(e as Error).message.includes("alias") ? "too many aliases (*name) expand into too much data; write the values out or use fewer aliases" : `cannot be read as data: ${(e as Error).message}`}`);
  }
  if (typeof value !== "object" || Array.isArray(value)) throw new StackFileError(`${name}:1: must be a YAML mapping (key: value lines), got ${Array.isArray(value) ? "a list" : typeof value}`);
  return { name, doc, lines, value: value as Record<string, unknown> };
}

/** The line (1-based) of a node's start. */
function lineOf(f: LoadedFile, node: { range?: [number, number, number] | null } | null | undefined): number | undefined {
  return node?.range ? f.lines.linePos(node.range[0]).line : undefined;
}

/** The key node and value node of `key` in a YAML mapping node. */
function entry(map: unknown, key: string | number): { key?: YamlNode; value?: unknown } | undefined {
  if (isMap(map)) {
    const pair = map.items.find((p) => isPair(p) && isScalar(p.key) && String(p.key.value) === String(key));
    return pair ? { key: pair.key as YamlNode, value: pair.value } : undefined;
  }
  if (isSeq(map) && typeof key === "number") {
    const item = map.items[key];
    return item === undefined ? undefined : { key: item as YamlNode, value: item };
  }
  return undefined;
}

/** Replaces every `{secure: ...}` object by the placeholder; true when one was found. */
function dropSecure(v: unknown): { value: unknown; secret: boolean } {
  if (v && typeof v === "object" && !Array.isArray(v)) {
    const keys = Object.keys(v);
    if (keys.length === 1 && keys[0] === "secure") return { value: SECRET_PLACEHOLDER, secret: true };
    let secret = false;
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) {
      const r = dropSecure(x);
      secret ||= r.secret;
      Object.defineProperty(out, k, { value: r.value, enumerable: true, writable: true, configurable: true });
    }
    return { value: out, secret };
  }
  if (Array.isArray(v)) {
    const items = v.map(dropSecure);
    return { value: items.map((i) => i.value), secret: items.some((i) => i.secret) };
  }
  return { value: v, secret: false };
}

/**
 * Stack config as the Pulumi CLI would hand it to the program, plus where each key is written.
 *
 * @param root - project folder (holding Pulumi.yaml).
 * @param stack - stack name.
 * @throws UsageError when `Pulumi.<stack>.yaml` does not exist (naming the stacks that do, with
 *   "did you mean"); StackFileError (`file:line: ...`) for YAML errors, duplicate keys,
 *   unknown top-level keys or a `config:` that is not a mapping.
 */
export function readStackConfig(root: string, stack: string): StackFiles {
  const stackFile = `Pulumi.${stack}.yaml`;
  if (!fs.existsSync(path.join(root, "Pulumi.yaml"))) throw new StackFileError(`Pulumi.yaml: not found in ${root}`);
  if (!fs.existsSync(path.join(root, stackFile))) {
    const stacks = listStacks(root);
    throw new UsageError(`--stack '${stack}': ${stackFile} not found${suggestion(stack, stacks, (s) => `'${s}'`)}; stacks here: ${stacks.join(", ") || "(none)"}`);
  }
  const project = loadYaml(root, "Pulumi.yaml");
  const projectName = project.value.name;
  if (typeof projectName !== "string" || projectName === "") throw new StackFileError("Pulumi.yaml: no project name (name:)");
  const stackYaml = loadYaml(root, stackFile);

  for (const key of Object.keys(stackYaml.value)) {
    if (!(STACK_FILE_KEYS as readonly string[]).includes(key)) {
      const line = lineOf(stackYaml, entry(stackYaml.doc.contents, key)?.key as never);
      throw new StackFileError(
        `${stackFile}${line ? `:${line}` : ""}: '${key}' is not a key of a stack file${suggestion(key, STACK_FILE_KEYS, (s) => `'${s}:'`)}; ` +
          `a stack file has ${STACK_FILE_KEYS.map((k) => `${k}:`).join(", ")} (the settings go under config:)`,
      );
    }
  }
  const stackConfig = stackYaml.value.config ?? {};
  if (typeof stackConfig !== "object" || Array.isArray(stackConfig) || stackConfig === null) {
    const line = lineOf(stackYaml, entry(stackYaml.doc.contents, "config")?.key as never);
    throw new StackFileError(`${stackFile}${line ? `:${line}` : ""}: config: must be a mapping of key: value lines`);
  }

  const config: Record<string, string> = {};
  const secretKeys = new Set<string>();
  const problems: string[] = [];
  const qualify = (k: string) => (k.includes(":") ? k : `${projectName}:${k}`);
  const str = (v: unknown) => (typeof v === "string" ? v : JSON.stringify(v) ?? String(v));
  for (const [k, spec] of Object.entries<unknown>((project.value.config as Record<string, unknown>) ?? {})) {
    if (spec && typeof spec === "object" && !Array.isArray(spec)) {
      if ("default" in spec) config[qualify(k)] = str((spec as { default: unknown }).default);
    } else if (spec !== undefined) {
      config[qualify(k)] = str(spec);
    }
  }
  const declared: Record<string, string> = { "azure-native:location": "string" };
  for (const [k, spec] of Object.entries<unknown>((project.value.config as Record<string, unknown>) ?? {})) {
    const type = spec && typeof spec === "object" ? (spec as { type?: unknown }).type : undefined;
    if (typeof type === "string") declared[qualify(k)] = type;
  }
  const configNode = entry(stackYaml.doc.contents, "config")?.value;
  // `__proto__` (or constructor, prototype) as a key would set an object's prototype instead of a
  // value when the config is copied: refused with its line, as the schema refuses it deeper down.
  for (const f of [stackYaml, project]) {
    const node = entry(f.doc.contents, "config")?.value;
    if (!isMap(node)) continue;
    for (const p of node.items) {
      if (isPair(p) && isScalar(p.key) && FORBIDDEN_KEYS.has(String(p.key.value).replace(/^[^:]*:/, ""))) {
        const line = lineOf(f, p.key as never);
        problems.push(`${f.name}${line ? `:${line}` : ""}: config: the key "${String(p.key.value)}" is not allowed (it would change how objects behave, not set a value); remove it`);
      }
    }
  }
  for (const [k, v] of Object.entries<unknown>(stackConfig as Record<string, unknown>)) {
    if (FORBIDDEN_KEYS.has(k.replace(/^[^:]*:/, ""))) continue;
    const where = () => {
      const line = lineOf(stackYaml, entry(configNode, k)?.key as never);
      return `${stackFile}${line ? `:${line}` : ""}`;
    };
    if (v === null || v === undefined) {
      problems.push(`${where()}: ${qualify(k)}: has no value (null); give it one or remove the line`);
      continue;
    }
    const want = declared[qualify(k)];
    const got = Array.isArray(v) ? "list" : typeof v === "object" ? "object" : typeof v;
    const secure = got === "object" && Object.keys(v as object).length === 1 && "secure" in (v as object);
    const fits = secure || want === undefined || (want === "string" && got === "string") || (want === "integer" && (got === "number" || (got === "string" && /^-?\d+$/.test(v as string)))) || (want === "boolean" && (got === "boolean" || v === "true" || v === "false"));
    if (!fits) {
      problems.push(`${where()}: ${qualify(k)}: must be ${want === "string" ? "a text" : want === "integer" ? "a whole number" : want}, got the ${got} ${JSON.stringify(v)}${want === "string" && got !== "object" && got !== "list" ? " (quote it if you mean the text)" : ""}`);
      continue;
    }
    const { value, secret } = dropSecure(v);
    if (secret) secretKeys.add(qualify(k));
    config[qualify(k)] = str(value);
  }

  const locate = (key: string, inner: readonly (string | number)[] = []): string | undefined => {
    const bare = key.startsWith(`${projectName}:`) ? key.slice(projectName.length + 1) : key;
    const tries: [LoadedFile, unknown, string[]][] = [
      [stackYaml, entry(stackYaml.doc.contents, "config")?.value, [key, bare]],
      [project, entry(project.doc.contents, "config")?.value, [bare, key]],
    ];
    for (const [file, root, names] of tries) {
      for (const name of names) {
        const top = entry(root, name);
        if (!top) continue;
        let line = lineOf(file, top.key as never);
        let node = top.value;
        // In Pulumi.yaml the value sits under `default:`.
        if (file === project && isMap(node) && entry(node, "default")) node = entry(node, "default")!.value;
        for (const step of inner) {
          const next = entry(node, step);
          if (!next) break;
          line = lineOf(file, next.key as never) ?? line;
          node = next.value;
        }
        return `${file.name}${line ? `:${line}` : ""}`;
      }
    }
    return undefined;
  };

  return { project: projectName, config, secretKeys: [...secretKeys], stackFile, emptyStackFile: Object.keys(stackConfig).length === 0, locate, problems };
}

/**
 * A stack's config read ({@link readStackConfig}) and validated as the program validates it
 * (infra/config.ts: `parseConfig`, the data files, the Azure names), every message with file
 * and line: what plan, doctor and train:local start from, and what the fuzz test drives.
 *
 * @throws UsageError (unknown stack), StackFileError, ConfigError (every problem at once).
 */
export function loadStackConfig(root: string, stack: string): { files: StackFiles; config: StackConfig; warnings: string[] } {
  const files = readStackConfig(root, stack);
  let parsed: { config: StackConfig; warnings: string[] };
  try {
    const prefix = `${files.project}:`;
    const secretKeys = files.secretKeys.filter((k) => k.startsWith(prefix)).map((k) => k.slice(prefix.length));
    parsed = parseConfig(rawProjectConfig(files.config), { locate: files.locate, secretPlaceholder: SECRET_PLACEHOLDER, secretKeys });
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    const empty = files.emptyStackFile ? [`${files.stackFile}: has no config: section (an empty stack file), so every key below has its default or is missing`] : [];
    throw new ConfigError([...empty, ...files.problems, ...e.issues]);
  }
  const data = validateDataFiles(parsed.config, root);
  const names = nameProblem(parsed.config, stack);
  const problems = [...files.problems, ...data.problems, ...(names ? [names] : [])];
  if (problems.length) throw new ConfigError(problems);
  return { files, config: parsed.config, warnings: [...parsed.warnings, ...data.warnings] };
}
