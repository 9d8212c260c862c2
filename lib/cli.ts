/**
 * One command-line style for every command in cli/ and every program in jobs/: options parsed
 * by `node:util`'s `parseArgs` from one declarative spec, `--help` printing the usage (exit 0),
 * the same flags for the same things (`--stack`, `--json`, `--subscription`), "did you mean"
 * for a misspelled flag, one line per user error and never a stack trace, and one set of exit
 * codes ({@link EXIT}, README "Exit codes").
 */
import { parseArgs } from "node:util";
import { closestName } from "../infra/vm-sizes";
import { maskProcessOutput, registerEnvSecrets } from "./secrets";

/** Exit codes of every command and program (README "Exit codes"). */
export const EXIT = {
  /** Done. */
  OK: 0,
  /** Failed: invalid config or data (the message names key, file and line), a check failed, the job or operation failed, the endpoint refused. */
  FAILED: 1,
  /** Usage: unknown or missing option, bad value, unknown stack, missing or invalid environment variable of a program. */
  USAGE: 2,
  /** The deadline passed first (the message says what was seen last). */
  DEADLINE: 3,
  /** Azure or credential error: 401/403, not found, retries exhausted, an answer that is not JSON. */
  AZURE: 4,
} as const;

/** The exit codes as the help of every command lists them. */
export const EXIT_CODES_TEXT =
  "Exit codes: 0 done; 1 failed (invalid config or data, a check, the job or the call failed); 2 usage;\n" +
  "            3 deadline passed; 4 Azure or credential error.";

/** A bad command line or program environment (exit {@link EXIT.USAGE}). */
export class UsageError extends Error {
  /** @param message - what is wrong, in one line. */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** One option of a command. */
export interface OptionSpec {
  type: "string" | "boolean";
  /** One-letter alias. */
  short?: string;
  /** Placeholder of the value in the help, e.g. `<name>`. */
  value?: string;
  /** What it does, its unit and default, for the help. */
  description: string;
}

/** A command: its name, one-line usage, what it does, options and positionals. */
export interface CommandSpec {
  /** As the user types it, e.g. `npm run plan --` or `npx tsx jobs/set-traffic.ts`. */
  usage: string;
  /** Name used as the prefix of every message, e.g. `plan`. */
  name: string;
  /** What the command does (a few lines). */
  summary: string;
  options: Record<string, OptionSpec>;
  /** Positional arguments: placeholder for the usage line and how many are allowed (default none). */
  positionals?: { value: string; max: number; description: string };
  /** More text after the options (environment variables, examples). */
  details?: string;
}

/** `--stack <name>`: the same everywhere. */
export const STACK_OPTION: OptionSpec = {
  type: "string",
  short: "s",
  value: "<name>",
  description: "stack: the file Pulumi.<name>.yaml (default dev)",
};

/** `--json`: the same everywhere. */
export const JSON_OPTION: OptionSpec = { type: "boolean", description: "print data as JSON instead of text" };

/** `--subscription <id>`: the same everywhere, a GUID. */
export const SUBSCRIPTION_OPTION: OptionSpec = {
  type: "string",
  value: "<id>",
  description: "Azure subscription id (a GUID)",
};

const HELP_OPTION: OptionSpec = { type: "boolean", short: "h", description: "this help" };

/**
 * The help text of a command: usage line, summary, options (with `-h, --help`), details and
 * the exit codes.
 */
export function helpText(spec: CommandSpec): string {
  const options: Record<string, OptionSpec> = { ...spec.options, help: HELP_OPTION };
  const rows = Object.entries(options).map(([name, o]) => [`${o.short ? `-${o.short}, ` : "    "}--${name}${o.value ? ` ${o.value}` : ""}`, o.description]);
  const width = Math.max(...rows.map(([left]) => left.length)) + 2;
  const positional = spec.positionals ? ` ${spec.positionals.value}` : "";
  return [
    `Usage: ${spec.usage} [options]${positional}`,
    "",
    spec.summary,
    "",
    "Options:",
    ...rows.map(([left, right]) => `  ${left.padEnd(width)}${right}`),
    ...(spec.positionals ? ["", `${spec.positionals.value}: ${spec.positionals.description}`] : []),
    ...(spec.details ? ["", spec.details] : []),
    "",
    EXIT_CODES_TEXT,
  ].join("\n");
}

/** ` (did you mean X?)` for a near miss of one of `known` (infra/vm-sizes.ts `closestName`), or `""`. */
export function suggestion(word: string, known: readonly string[], format: (s: string) => string = (s) => s): string {
  const hit = closestName(word, known);
  return hit ? ` (did you mean ${format(hit)}?)` : "";
}

/** The parsed command line: option values by name, positionals, and whether `--help` was asked. */
export interface ParsedCommandLine {
  values: Record<string, string | boolean | undefined>;
  positionals: string[];
  help: boolean;
}

/**
 * Parses `argv` (without node and script) with `node:util`'s `parseArgs` (strict) against the
 * spec, plus `-h, --help`.
 *
 * @throws UsageError with one line: an unknown option (with "did you mean"), an option without
 *   its value, a value given to a flag, or too many positionals.
 */
export function parseCommandLine(spec: CommandSpec, argv: readonly string[]): ParsedCommandLine {
  const options: Record<string, OptionSpec> = { ...spec.options, help: HELP_OPTION };
  const config = Object.fromEntries(
    Object.entries(options).map(([name, o]) => [name, o.short ? { type: o.type, short: o.short } : { type: o.type }]),
  ) as Record<string, { type: "string" | "boolean"; short?: string }>;
  let parsed: { values: Record<string, string | boolean | undefined>; positionals: string[] };
  try {
    parsed = parseArgs({ args: [...argv], options: config, strict: true, allowPositionals: true }) as typeof parsed;
  } catch (e) {
    const err = e as Error & { code?: string };
    const unknown = /Unknown option '([^']+)'/.exec(err.message)?.[1];
    if (unknown) {
      const names = Object.keys(options).map((n) => `--${n}`);
      throw new UsageError(`unknown option ${unknown}${suggestion(unknown.replace(/=.*$/, ""), names)}`);
    }
    const option = /Option '(-\w, )?(--[\w-]+)/.exec(err.message)?.[2];
    if (err.code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE" && option) {
      const o = options[option.slice(2)];
      if (o?.type === "boolean") throw new UsageError(`${option} takes no value`);
      const dash = /ambiguous/.test(err.message) ? `; a value starting with '-' is written ${option}=<value>, e.g. ${option}=${argv[argv.indexOf(option) + 1] ?? "-1"}` : "";
      throw new UsageError(`${option} needs a value${o?.value ? ` (${o.value})` : ""}${dash}`);
    }
    throw new UsageError(err.message.split(". ")[0]);
  }
  const help = parsed.values.help === true;
  const max = spec.positionals?.max ?? 0;
  if (!help && parsed.positionals.length > max) {
    const extra = parsed.positionals[max];
    throw new UsageError(
      max === 0
        ? `unexpected argument '${extra}'${extra.startsWith("-") ? "" : " (this command takes options only)"}`
        : `too many arguments: '${parsed.positionals.slice(max).join(" ")}'`,
    );
  }
  for (const [name, value] of Object.entries(parsed.values)) {
    if (typeof value === "string" && value.trim() === "") throw new UsageError(`--${name} needs a value${options[name]?.value ? ` (${options[name].value})` : ""}`);
  }
  return { values: parsed.values, positionals: parsed.positionals, help };
}

const GUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

/**
 * Checks a `--subscription` value: a GUID.
 * @throws UsageError naming the value and the expected form.
 */
export function checkSubscriptionId(id: string, flag = "--subscription"): string {
  if (!GUID.test(id)) throw new UsageError(`${flag} '${id}' is not a subscription id (a GUID such as 00000000-0000-0000-0000-000000000000)`);
  return id;
}

/**
 * Checks a `--stack` value: a name Pulumi accepts (letters, digits, `.`, `_`, `-`).
 * @throws UsageError naming the value.
 */
export function checkStackName(stack: string): string {
  if (!/^[A-Za-z0-9._-]+$/.test(stack)) throw new UsageError(`--stack '${stack}' is not a valid stack name (letters, digits, '.', '_' and '-')`);
  return stack;
}

/**
 * The exit code of an error a command caught, and its one line: a {@link UsageError} is usage
 * (2); a stack file or config error (`StackFileError`, `ConfigError`) and anything else is a
 * failure (1); a `DeadlineError` 3; an `ArmError` 4. Errors are told apart by name so this
 * module needs none of theirs.
 */
export function exitCodeOf(e: unknown): number {
  const name = (e as Error | undefined)?.name;
  if (e instanceof UsageError || name === "UsageError") return EXIT.USAGE;
  if (name === "DeadlineError") return EXIT.DEADLINE;
  if (name === "ArmError") return EXIT.AZURE;
  return EXIT.FAILED;
}

/**
 * Reports a caught error as `<name>: <message>` (plus the usage line for a usage error) and
 * returns its exit code ({@link exitCodeOf}). Never prints a stack trace.
 */
export function reportError(spec: CommandSpec, e: unknown, err: (line: string) => void, context = ""): number {
  const code = exitCodeOf(e);
  err(`${spec.name}: ${context}${(e as Error)?.message ?? String(e)}`);
  if (code === EXIT.USAGE) err(`Usage: ${spec.usage} [options]${spec.positionals ? ` ${spec.positionals.value}` : ""}   (--help for the options)`);
  return code;
}

/**
 * The command line of a program in jobs/ (configured by environment variables): `--help`
 * prints the help and gives 0; anything it does not take is a usage error (2, one line).
 *
 * @returns `{ exit }` when the program should stop with that code, else its positionals.
 */
export function programCommandLine(spec: CommandSpec, argv: readonly string[], out: (l: string) => void, err: (l: string) => void): { exit: number } | { positionals: string[] } {
  try {
    const { help, positionals } = parseCommandLine(spec, argv);
    if (help) {
      out(helpText(spec));
      return { exit: EXIT.OK };
    }
    return { positionals };
  } catch (e) {
    return { exit: reportError(spec, e, err) };
  }
}

/** The deadline of a program's process: the variable that sets it (seconds) and its default. */
export interface ProcessDeadline {
  /** Environment variable, e.g. `WAIT_DEADLINE_SECONDS`. */
  variable: string;
  /** Seconds when the variable is unset or blank. */
  defaultSeconds: number;
}

/**
 * How long past its deadline a program may take to end by itself (to print what it saw last
 * and give its own exit code) before {@link runAsMain} ends the process.
 */
export const HARD_DEADLINE_GRACE_MS = 3_000;

/**
 * After `main` has returned, how long the process may take to end by itself (stdout draining)
 * before it is ended: a request that outlived its program (a token request the deadline
 * abandoned, a socket a server never closes) must not keep `pulumi up` waiting.
 */
export const EXIT_DRAIN_MS = 1_000;

/**
 * Seconds of a {@link ProcessDeadline} read from `env`, or `undefined` when the value is not a
 * positive number (the program itself reports that as a usage error).
 */
export function processDeadlineSeconds(deadline: ProcessDeadline, env: Record<string, string | undefined> = process.env): number | undefined {
  const raw = env[deadline.variable];
  if (raw === undefined || raw.trim() === "") return deadline.defaultSeconds;
  const n = Number(raw);
  return Number.isFinite(n) && n > 0 ? n : undefined;
}

/** Options of {@link runAsMain}. */
export interface RunOptions {
  /**
   * The program's deadline: once it is {@link HARD_DEADLINE_GRACE_MS} past, the process prints
   * `Gave up waiting … (deadline N s)` and exits 3, whatever is still pending (a hung token
   * endpoint, a request the server never answers). The timer is unref'd: it never keeps a
   * finished process alive.
   */
  deadline?: ProcessDeadline;
}

/** Calls `done` once everything written so far to stdout and stderr has been handed to the OS. */
function afterFlush(done: () => void): void {
  let left = 2;
  const one = () => {
    if (--left === 0) done();
  };
  process.stdout.write("", one);
  process.stderr.write("", one);
}

/**
 * Runs a command's `main` as the process entry point:
 *
 * - every secret of the environment (lib/secrets.ts `SECRET_ENV_VARS`) and every token
 *   registered later is masked, in every form, in all the process writes to stdout and stderr;
 * - sets the exit code `main` returns, and ends the process {@link EXIT_DRAIN_MS} later if
 *   something left running (a token request, a socket) would keep it alive;
 * - with `options.deadline`, ends the process with exit 3 at the deadline plus
 *   {@link HARD_DEADLINE_GRACE_MS}, whatever is pending;
 * - an error that escapes `main` (a bug, not a user error) still prints one line, never a stack
 *   trace (set `PHI3_DEBUG=1` for the trace), and exits 1.
 */
export function runAsMain(name: string, main: () => Promise<number>, exit: "set" | "exit" = "set", options: RunOptions = {}): void {
  registerEnvSecrets(process.env);
  maskProcessOutput();
  if (options.deadline) {
    const seconds = processDeadlineSeconds(options.deadline);
    if (seconds !== undefined) {
      const hard = setTimeout(() => {
        process.stderr.write(
          `${name}: Gave up waiting for what was still pending (a token or an answer) at the deadline (deadline ${Number(seconds.toFixed(3))} s, ${options.deadline!.variable}); ending the process.\n`,
        );
        process.exit(EXIT.DEADLINE);
      }, Math.min(2 ** 31 - 1, Math.ceil(seconds * 1000) + HARD_DEADLINE_GRACE_MS));
      hard.unref();
    }
  }
  const finish = (code: number) => {
    process.exitCode = code;
    // "exit": end as soon as stdout and stderr are flushed. A bare process.exit() drops what a pipe
    // has not taken yet (Node 22 cut `npm run plan | ...` short by its last lines); an empty write's
    // callback runs once everything written before it is out.
    if (exit === "exit") return afterFlush(() => process.exit(code));
    setTimeout(() => process.exit(code), EXIT_DRAIN_MS).unref();
  };
  main().then(finish, (e: unknown) => {
    const err = e as Error;
    process.stderr.write(`${name}: unexpected error: ${err?.message ?? String(e)}\n`);
    if (process.env.PHI3_DEBUG === "1" && err?.stack) process.stderr.write(`${err.stack}\n`);
    finish(EXIT.FAILED);
  });
}

/** What a program of jobs/ prints to: one line at a time, stdout and stderr. */
export interface JobOutput {
  log: (line: string) => void;
  error: (line: string) => void;
}

/** A program of jobs/: its command line and the deadline variable that bounds its process. */
export interface JobSpec extends CommandSpec {
  deadline: ProcessDeadline;
}

/**
 * The entry point of a program of jobs/ (the ones `pulumi up` runs, configured by environment
 * variables): `--help` and usage errors by `spec` ({@link programCommandLine}), then
 * `run(positionals, process.env, console output)`.
 *
 * @returns `main`: resolves to the exit code (it never throws for a user error).
 */
export function jobMain(spec: JobSpec, run: (positionals: string[], env: NodeJS.ProcessEnv, out: JobOutput) => Promise<number>): () => Promise<number> {
  return async () => {
    const cl = programCommandLine(spec, process.argv.slice(2), console.log, console.error);
    if ("exit" in cl) return cl.exit;
    return run(cl.positionals, process.env, { log: (line) => console.log(line), error: (line) => console.error(line) });
  };
}

/**
 * Starts a program of jobs/ as the process: {@link runAsMain} with the exit code set (not
 * forced) and the process ended at `spec.deadline` whatever is pending.
 */
export function runJobAsMain(spec: JobSpec, main: () => Promise<number>): void {
  runAsMain(spec.name, main, "set", { deadline: spec.deadline });
}
