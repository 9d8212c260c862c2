/**
 * Command lines that Azure ML runs in a shell (`bash -c <command>` on the cluster node), built
 * so that no config value can change what runs: every value is checked against a strict
 * pattern for what it is when the config is parsed (infra/config.ts), and shell-quoted here
 * when the command is built. Pure functions, no Pulumi.
 *
 * Azure ML bindings (`${{inputs.x}}`, `${{outputs.x}}`) stay bare: Azure ML replaces them
 * textually with mount paths it generates (`/mnt/azureml/cr/j/<id>/cap/data-capability/wd/...`,
 * letters, digits, `/`, `_`, `-` only) before the shell sees the command
 * (learn.microsoft.com/azure/machine-learning/concept-expressions: "the expression is evaluated
 * and the value is substituted"). They are the only unquoted `$` a command may hold.
 */

/** Characters that never need quoting in a POSIX shell word (the safe set of Python's `shlex.quote`). */
const SAFE_WORD = /^[A-Za-z0-9@%+=:,./_-]+$/;

/** An Azure ML input/output binding, e.g. `${{inputs.train_file}}`. */
export const BINDING = /^\$\{\{(inputs|outputs)\.[A-Za-z_][A-Za-z0-9_]*\}\}$/;

/**
 * Quote one value as a single POSIX shell word: unchanged when it holds only safe characters
 * (`[A-Za-z0-9@%+=:,./_-]`), else wrapped in single quotes, each `'` written as `'"'"'`
 * (inside single quotes the shell interprets nothing: no `$`, backtick, `;`, newline or glob).
 * The empty string becomes `''`.
 */
export function shellQuote(value: string): string {
  if (value === "") return "''";
  if (SAFE_WORD.test(value)) return value;
  return `'${value.replace(/'/g, `'"'"'`)}'`;
}

/** One word of a job command: an Azure ML binding stays bare, anything else is {@link shellQuote}d. */
export function shellWord(value: string): string {
  return BINDING.test(value) ? value : shellQuote(value);
}

/**
 * A job command line: the program words (literal, written by us, e.g. `python fine_tune.py`)
 * followed by each `[flag, value]` pair, flag and value each one {@link shellWord}. Throws
 * when a flag is not of the form `--name`, so a pair can never smuggle in an operator.
 */
export function commandLine(program: string[], args: [string, string][]): string {
  for (const [flag] of args) {
    if (!/^--[a-z][a-z0-9-]*$/.test(flag)) throw new Error(`commandLine: '${flag}' is not a --flag`);
  }
  return [...program.map(shellQuote), ...args.flatMap(([flag, value]) => [flag, shellWord(value)])].join(" ");
}

/**
 * Split a command line into the words a POSIX shell would pass to the program (quote removal
 * for `'...'`, `"..."` and `\`), refusing anything that would make the shell do more than run
 * one program: unquoted `;`, `&`, `|`, `<`, `>`, `(`, `)`, backtick, newline, `#`, globs
 * (`*`, `?`, `[`), a `$` that does not start an Azure ML binding, and `$`/backtick inside
 * double quotes. Used by tests and checks to prove a built command is one program with the
 * intended arguments. Throws an Error naming the offending character and its offset.
 */
export function splitShellWords(command: string): string[] {
  const words: string[] = [];
  let word: string | undefined;
  let i = 0;
  const fail = (what: string): never => {
    throw new Error(`command has ${what} at offset ${i}: ${JSON.stringify(command)}`);
  };
  const push = (s: string) => {
    word = (word ?? "") + s;
  };
  while (i < command.length) {
    const c = command[i];
    if (c === " " || c === "\t") {
      if (word !== undefined) words.push(word);
      word = undefined;
      i++;
    } else if (c === "'") {
      const end = command.indexOf("'", i + 1);
      if (end < 0) fail("an unterminated single quote");
      push(command.slice(i + 1, end));
      i = end + 1;
    } else if (c === '"') {
      let j = i + 1;
      let s = "";
      for (; j < command.length && command[j] !== '"'; j++) {
        if (command[j] === "$" || command[j] === "`") {
          i = j;
          fail(`an expansion (${command[j]}) inside double quotes`);
        }
        if (command[j] === "\\" && j + 1 < command.length && '"\\$`\n'.includes(command[j + 1])) j++;
        s += command[j];
      }
      if (j >= command.length) fail("an unterminated double quote");
      push(s);
      i = j + 1;
    } else if (c === "\\") {
      if (i + 1 >= command.length || command[i + 1] === "\n") fail("a trailing backslash or line continuation");
      push(command[i + 1]);
      i += 2;
    } else if (c === "$") {
      const m = /^\$\{\{(inputs|outputs)\.[A-Za-z_][A-Za-z0-9_]*\}\}/.exec(command.slice(i));
      if (!m) fail("an expansion ($)");
      push(m![0]);
      i += m![0].length;
    } else if (";&|<>()`\n\r#*?[".includes(c)) {
      // `#` only starts a comment at the start of a word; `[`/`?`/`*` are globs anywhere.
      if (c === "#" && word !== undefined) {
        push(c);
        i++;
        continue;
      }
      fail(`the shell operator ${JSON.stringify(c)}`);
    } else {
      push(c);
      i++;
    }
  }
  if (word !== undefined) words.push(word);
  return words;
}

/**
 * Hugging Face repository ids (`namespace/name` or `name`): letters, digits, `-`, `_`, `.`,
 * 1-96 characters per part, not starting or ending with `-` or `.`, no `--` or `..`
 * (huggingface_hub `validate_repo_id`). Nothing a shell or a path could interpret.
 */
export const HF_REPO_ID = /^(?!.*(--|\.\.))(?:[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?\/)?[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?$/;

/** A `datasets` split slice as prepare_data.py takes it: `train_sft[:1%]` (1-100 percent) or `train_sft[:10]` (rows). */
export const SPLIT_EXPRESSION = /^(train_sft|test_sft|train_gen|test_gen)\[:(100%|[1-9]\d?%|[1-9]\d*)\]$/;

/**
 * Outputs of every `command:local:Command` of the stack that Pulumi keeps encrypted in the state
 * (`additionalSecretOutputs`): what a program printed. The programs mask every secret they know
 * (lib/secrets.ts), and the state keeps their output secret besides, so an echo no program
 * foresaw still never lands in the state file in plain text. @pulumi/command 1.2's Command has
 * `stdout` and `stderr` outputs (top-level properties, as the option requires);
 * `additionalSecretOutputs` is a resource option of every custom resource
 * (https://www.pulumi.com/docs/iac/concepts/resources/options/additionalsecretoutputs/: "named
 * output properties that should be treated as secrets, which means they will be encrypted").
 */
export const COMMAND_SECRET_OUTPUTS = ["stdout", "stderr"] as const;
