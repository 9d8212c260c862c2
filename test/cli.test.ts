/**
 * One CLI style for every command and program (lib/cli.ts): `--help` answers with exit 0, and
 * a table of wrong invocations across the commands gives exit 2 (usage) or 1 (config), one
 * line naming the problem first, never a stack trace. In-process (each command's `main`), so
 * the table stays fast.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { PassThrough } from "node:stream";
import { afterEach, describe, expect, it, vi } from "vitest";
import * as bench from "../cli/bench-plan";
import * as chat from "../cli/chat";
import * as doctor from "../cli/doctor";
import * as plan from "../cli/plan";
import * as serveLocal from "../cli/serve-local";
import * as setupPython from "../cli/setup-python";
import * as benchTests from "../cli/bench-tests";
import * as testRepeat from "../cli/test-repeat";
import * as checks from "../cli/checks";
import * as trainLocal from "../cli/train-local";
import * as preflight from "../jobs/preflight";
import * as setTraffic from "../jobs/set-traffic";
import * as submitJob from "../jobs/submit-job";
import * as waitForJob from "../jobs/wait-for-job";
import * as qualityGate from "../jobs/quality-gate";
import * as smokeTest from "../jobs/smoke-test";
import * as deploymentCapacity from "../jobs/deployment-capacity";
import * as uploadBlobs from "../jobs/upload-blobs";
import { EXIT, EXIT_CODES_TEXT, helpText, parseCommandLine, programCommandLine, type CommandSpec } from "../lib/cli";
import { ROOT } from "./helpers/stack";

/** Runs `fn` with stdout/stderr/console captured. */
async function capture(fn: () => Promise<number>): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const spies = [
    vi.spyOn(process.stdout, "write").mockImplementation((c: string | Uint8Array) => ((out += String(c)), true)),
    vi.spyOn(process.stderr, "write").mockImplementation((c: string | Uint8Array) => ((err += String(c)), true)),
    vi.spyOn(console, "log").mockImplementation((...a: unknown[]) => void (out += `${a.join(" ")}\n`)),
    vi.spyOn(console, "error").mockImplementation((...a: unknown[]) => void (err += `${a.join(" ")}\n`)),
  ];
  try {
    const code = await fn();
    return { code, out, err };
  } finally {
    for (const s of spies) s.mockRestore();
  }
}

const cwd = process.cwd();
afterEach(() => process.chdir(cwd));

const noPulumi = async () => null;
const chatIo = () => {
  let out = "";
  let err = "";
  return {
    io: { stdout: { write: (c: string) => (out += c) }, stderr: { write: (c: string) => (err += c) }, stdin: Object.assign(new PassThrough(), { isTTY: false }), runPulumi: noPulumi },
    text: () => ({ out, err }),
  };
};

/** Every command: how to call it in-process with an argv. */
const COMMANDS: Record<string, { spec: CommandSpec; run: (argv: string[], env?: Record<string, string>) => Promise<{ code: number; out: string; err: string }> }> = {
  plan: {
    spec: plan.PLAN_COMMAND,
    run: async (argv) => {
      let out = "";
      let err = "";
      const code = await plan.main(argv, (l) => void (out += `${l}\n`), (l) => void (err += `${l}\n`));
      return { code, out, err };
    },
  },
  doctor: {
    spec: doctor.DOCTOR_COMMAND,
    run: async (argv, env = {}) => {
      let out = "";
      let err = "";
      const code = await doctor.main(argv, { env, out: (l) => (out += `${l}\n`), err: (l) => (err += `${l}\n`), credential: { getToken: async () => null } });
      return { code, out, err };
    },
  },
  chat: {
    spec: chat.CHAT_COMMAND,
    run: async (argv, env = {}) => {
      const { io, text } = chatIo();
      const code = await chat.main(argv, env, io as never);
      return { code, ...text() };
    },
  },
  bench: { spec: bench.BENCH_COMMAND, run: (argv) => capture(() => bench.main(argv)) },
  "train:local": { spec: trainLocal.TRAIN_LOCAL_COMMAND, run: (argv) => capture(() => trainLocal.main(argv)) },
  "serve:local": { spec: serveLocal.SERVE_LOCAL_COMMAND, run: (argv) => capture(() => serveLocal.main(argv)) },
  "setup:python": { spec: setupPython.SETUP_PYTHON_COMMAND, run: (argv) => capture(() => setupPython.main(argv)) },
  "bench:test": { spec: benchTests.BENCH_TEST_COMMAND, run: (argv) => capture(() => benchTests.main(argv)) },
  "test:repeat": { spec: testRepeat.TEST_REPEAT_COMMAND, run: (argv) => capture(() => testRepeat.main(argv)) },
  ...Object.fromEntries(
    (["test", "python", "workflows"] as const).map((check) => [
      checks.CHECKS[check].spec.name,
      {
        spec: checks.CHECKS[check].spec,
        // The steps never run here: a test that reached them fails.
        run: async (argv: string[]) => {
          let out = "";
          let err = "";
          const code = checks.main(check, argv, () => { throw new Error("a step ran"); }, (l) => void (out += `${l}\n`), (l) => void (err += `${l}\n`));
          return { code, out, err };
        },
      },
    ]),
  ),
  "submit-job": { spec: submitJob.SUBMIT_JOB_COMMAND, run: (argv, env = {}) => program(submitJob.SUBMIT_JOB_COMMAND, argv, (d) => submitJob.runSubmitJobFromEnv(env, d)) },
  "wait-for-job": { spec: waitForJob.WAIT_FOR_JOB_COMMAND, run: (argv, env = {}) => program(waitForJob.WAIT_FOR_JOB_COMMAND, argv, (d) => waitForJob.runWaitForJobFromEnv(env, d)) },
  "set-traffic": {
    spec: setTraffic.SET_TRAFFIC_COMMAND,
    run: (argv, env = {}) => program(setTraffic.SET_TRAFFIC_COMMAND, argv, (d, pos) => setTraffic.runSetTrafficFromEnv(pos[0], env, d)),
  },
  preflight: { spec: preflight.PREFLIGHT_COMMAND, run: (argv, env = {}) => program(preflight.PREFLIGHT_COMMAND, argv, (d) => preflight.runPreflightFromEnv(env, d)) },
  "quality-gate": { spec: qualityGate.QUALITY_GATE_COMMAND, run: (argv, env = {}) => program(qualityGate.QUALITY_GATE_COMMAND, argv, (d) => qualityGate.runQualityGateFromEnv(env, d)) },
  "smoke-test": {
    spec: smokeTest.SMOKE_TEST_COMMAND,
    run: (argv, env = {}) => program(smokeTest.SMOKE_TEST_COMMAND, argv, (d, pos) => smokeTest.runSmokeTestFromEnv(pos[0], env, d)),
  },
  "deployment-capacity": {
    spec: deploymentCapacity.DEPLOYMENT_CAPACITY_COMMAND,
    run: (argv, env = {}) => program(deploymentCapacity.DEPLOYMENT_CAPACITY_COMMAND, argv, (d) => deploymentCapacity.runDeploymentCapacityFromEnv(env, d)),
  },
  "upload-blobs": {
    spec: uploadBlobs.UPLOAD_BLOBS_COMMAND,
    run: (argv, env = {}) => program(uploadBlobs.UPLOAD_BLOBS_COMMAND, argv, (d) => uploadBlobs.main(env, { log: d.log, err: d.error })),
  },
};

/** A program of jobs/ as its entry point runs it: the command line first, then the environment. */
async function program(
  spec: CommandSpec,
  argv: string[],
  run: (deps: { log: (l: string) => void; error: (l: string) => void; credential: { getToken: () => Promise<null> } }, positionals: string[]) => Promise<number>,
) {
  let out = "";
  let err = "";
  const log = (l: string) => (out += `${l}\n`);
  const error = (l: string) => (err += `${l}\n`);
  const cl = programCommandLine(spec, argv, log, error);
  const code = "exit" in cl ? cl.exit : await run({ log, error, credential: { getToken: async () => null } }, cl.positionals);
  return { code, out, err };
}

describe("--help everywhere", () => {
  it.each(Object.keys(COMMANDS))("%s --help: usage, options, exit codes; exit 0", async (name) => {
    const r = await COMMANDS[name].run(["--help"]);
    expect(r.code).toBe(0);
    expect(r.out).toContain(`Usage: ${COMMANDS[name].spec.usage}`);
    expect(r.out).toContain("-h, --help");
    expect(r.out).toContain(EXIT_CODES_TEXT.split("\n")[0]);
    expect(r.err).toBe("");
  });

  it("the same flags mean the same things", () => {
    for (const name of ["plan", "doctor", "chat", "bench", "train:local"]) expect(COMMANDS[name].spec.options.stack.short).toBe("s");
    for (const name of ["plan", "doctor", "bench"]) expect(COMMANDS[name].spec.options.json.type).toBe("boolean");
    expect(helpText(plan.PLAN_COMMAND)).toContain("--subscription <id>");
    expect(helpText(doctor.DOCTOR_COMMAND)).toContain("--subscription <id>");
  });
});

const badStackDir = fs.mkdtempSync(path.join(os.tmpdir(), "phi3-cli-"));
fs.copyFileSync(path.join(ROOT, "Pulumi.yaml"), path.join(badStackDir, "Pulumi.yaml"));
fs.writeFileSync(path.join(badStackDir, "Pulumi.typo.yaml"), "confg:\n  azure-native:location: eastus2\n");
fs.writeFileSync(path.join(badStackDir, "Pulumi.badcfg.yaml"), "config:\n  azure-native:location: eastus2\n  phi3-finetune:hyperparameters:\n    epoch: 2\n");
fs.writeFileSync(path.join(badStackDir, "Pulumi.broken.yaml"), "config:\n  azure-native:location: [eastus2\n");
fs.writeFileSync(path.join(badStackDir, "Pulumi.dup.yaml"), "config:\n  azure-native:location: eastus2\n  azure-native:location: westus\n");

const SUB = "00000000-1111-2222-3333-444444444444";
const JOB_ENV = { AZURE_SUBSCRIPTION_ID: SUB, AZURE_RESOURCE_GROUP: "rg", AZUREML_WORKSPACE: "ws", AZUREML_JOB_NAME: "job" };

/** [command, argv, environment, exit code, what the first line must say]. */
const WRONG: [string, string[], Record<string, string>, number, RegExp][] = [
  ["plan", ["--stak", "dev"], {}, 2, /unknown option --stak \(did you mean --stack\?\)/],
  ["plan", ["--stack"], {}, 2, /--stack needs a value/],
  ["plan", ["--stack", "a/b"], {}, 2, /--stack 'a\/b' is not a valid stack name/],
  ["plan", ["--stack", "dve"], {}, 2, /Pulumi\.dve\.yaml not found \(did you mean 'dev'\?\)/],
  ["plan", ["--subscription", "abc"], {}, 2, /--subscription 'abc' is not a subscription id/],
  ["plan", ["--json=yes"], {}, 2, /--json takes no value/],
  ["plan", ["dev"], {}, 2, /unexpected argument 'dev'/],
  ["plan", ["--base", "no-such-ref-xyz"], {}, 2, /--base no-such-ref-xyz: neither a plan file nor a git ref/],
  ["plan", ["--root", badStackDir, "--stack", "typo"], {}, 1, /Pulumi\.typo\.yaml:1: 'confg' is not a key of a stack file \(did you mean 'config:'\?\)/],
  ["plan", ["--root", badStackDir, "--stack", "badcfg"], {}, 1, /Pulumi\.badcfg\.yaml:4: phi3-finetune:hyperparameters\.epoch: unknown key \(did you mean epochs\?\)/],
  ["plan", ["--root", badStackDir, "--stack", "broken"], {}, 1, /Pulumi\.broken\.yaml:\d+: invalid YAML/],
  ["plan", ["--root", badStackDir, "--stack", "dup"], {}, 1, /Pulumi\.dup\.yaml:3: a key appears twice/],
  ["doctor", ["--nope"], {}, 2, /unknown option --nope/],
  ["doctor", ["--subscription", "my-sub"], {}, 2, /--subscription 'my-sub' is not a subscription id/],
  ["doctor", ["--stack", "nope"], {}, 2, /Pulumi\.nope\.yaml not found/],
  ["doctor", ["--subscription", SUB], { ARM_ENDPOINT: "http://127.0.0.1:1" }, 2, /ARM_ENDPOINT must be an https URL/],
  ["doctor", ["--json", "extra"], {}, 2, /unexpected argument 'extra'/],
  ["chat", ["--verbose"], {}, 2, /unknown option --verbose/],
  ["chat", ["--temperature", "hot", "q"], {}, 2, /--temperature must be a number >= 0/],
  ["chat", ["--shape", "completion", "q"], {}, 2, /--shape must be one of prompt-list, chat, chat-list/],
  ["chat", ["--retries=1.5", "q"], {}, 2, /--retries must be an integer >= 0/],
  ["chat", ["--timeut", "5", "q"], {}, 2, /unknown option --timeut \(did you mean --timeout\?\)/],
  ["chat", ["q"], {}, 2, /No endpoint configured/],
  ["chat", ["q"], { ENDPOINT_URI: "not a url", ENDPOINT_KEY: "k" }, 2, /ENDPOINT_URI is not a valid URL/],
  ["bench", ["--runs", "0"], {}, 2, /--runs must be an integer from 1 to 50/],
  ["bench", ["--stack", "nope"], {}, 2, /Pulumi\.nope\.yaml not found/],
  ["bench", ["--run", "2"], {}, 2, /unknown option --run \(did you mean --runs\?\)/],
  ["train:local", ["--train-file", "a"], {}, 2, /missing --eval-file, --output/],
  ["train:local", ["--train-file", "a", "--eval-file", "b", "--output", "c", "--epochs", "0"], {}, 2, /--epochs must be an integer >= 1/],
  ["train:local", ["--train-file", "a", "--eval-file", "b", "--output", "c", "--stack", "nope"], {}, 2, /Pulumi\.nope\.yaml not found/],
  ["serve:local", [], {}, 2, /missing --model/],
  ["serve:local", ["--model", "m", "--port", "http"], {}, 2, /--port must be a port number/],
  ["serve:local", ["--model", "no-such-model-dir"], {}, 2, /--model no-such-model-dir: no such folder/],
  ["setup:python", ["trian"], {}, 2, /unknown environment trian \(did you mean train\?\)/],
  ["test", ["--watch"], {}, 2, /unknown option --watch/],
  ["test:python", ["test_x.py"], {}, 2, /unexpected argument 'test_x\.py'/],
  ["lint:workflows", ["--fix"], {}, 2, /unknown option --fix/],
  ["submit-job", ["--go"], {}, 2, /unknown option --go/],
  ["submit-job", [], JOB_ENV, 2, /missing environment variable AZUREML_JOB_BODY/],
  ["submit-job", [], { ...JOB_ENV, AZUREML_JOB_BODY: "{" }, 2, /AZUREML_JOB_BODY is not valid JSON/],
  ["wait-for-job", [], {}, 2, /missing environment variable\(s\): AZURE_SUBSCRIPTION_ID/],
  ["wait-for-job", [], { ...JOB_ENV, WAIT_DEADLINE_SECONDS: "soon" }, 2, /WAIT_DEADLINE_SECONDS must be a positive number of seconds/],
  ["wait-for-job", [], { ...JOB_ENV, ARM_ENDPOINT: "http://127.0.0.1:1" }, 2, /ARM_ENDPOINT must be an https URL/],
  ["set-traffic", ["sideways"], { ...JOB_ENV, AZUREML_ENDPOINT: "ep-1", TRAFFIC: "{}" }, 2, /mode must be "apply" or "release"/],
  ["set-traffic", ["apply", "now"], {}, 2, /too many arguments: 'now'/],
  ["set-traffic", ["apply"], { ...JOB_ENV, AZUREML_ENDPOINT: "ep-1", TRAFFIC: '{"blue": 90}' }, 2, /TRAFFIC must sum to exactly 100/],
  ["quality-gate", [], JOB_ENV, 2, /missing environment variable\(s\): MLFLOW_TRACKING_URI/],
  ["quality-gate", [], { ...JOB_ENV, MLFLOW_TRACKING_URI: "http://10.0.0.1:5000" }, 2, /MLFLOW_TRACKING_URI must be an https URL .* or http on 127\.0\.0\.1/],
  ["quality-gate", [], { ...JOB_ENV, MLFLOW_TRACKING_URI: "https://x", GATE_MAX_EVAL_LOSS: "low" }, 2, /GATE_MAX_EVAL_LOSS must be a number/],
  ["quality-gate", [], { ...JOB_ENV, MLFLOW_TRACKING_URI: "https://x", GATE_MAX_REGRESSION_PERCENT: "5" }, 2, /GATE_MAX_REGRESSION_PERCENT needs AZUREML_ENDPOINT/],
  ["smoke-test", ["sideways"], {}, 2, /mode must be "deployment" or "endpoint"/],
  ["smoke-test", ["deployment"], { ...JOB_ENV, AZUREML_ENDPOINT: "ep-1" }, 2, /missing environment variable\(s\): SMOKE_PROMPTS, SMOKE_DEPLOYMENT/],
  ["smoke-test", ["endpoint"], { ...JOB_ENV, AZUREML_ENDPOINT: "ep-1", SMOKE_PROMPTS: '["hi"]', SMOKE_MAX_SECONDS: "0" }, 2, /SMOKE_MAX_SECONDS must be a positive number of seconds/],
  ["preflight", [], { AZURE_SUBSCRIPTION_ID: SUB }, 2, /missing environment variable\(s\): PULUMI_STACK, PREFLIGHT_INPUT/],
  ["preflight", [], { AZURE_SUBSCRIPTION_ID: SUB, PULUMI_STACK: "dev", PREFLIGHT_INPUT: "{}" }, 2, /PREFLIGHT_INPUT must be the JSON of preflightInput/],
];

describe("wrong invocations: exit 2 (usage) or 1 (config), one line naming the problem, no stack trace", () => {
  it("the table has at least 30 cases across at least 8 commands", () => {
    expect(WRONG.length).toBeGreaterThanOrEqual(30);
    expect(new Set(WRONG.map(([c]) => c)).size).toBeGreaterThanOrEqual(8);
  });

  it.each(WRONG.map((w, i) => [i, ...w] as const))("#%i %s %j", async (_i, name, argv, env, code, message) => {
    const r = await COMMANDS[name].run([...argv], env);
    expect(r.code).toBe(code);
    const first = r.err.split("\n")[0];
    expect(first).toMatch(message);
    expect(first.startsWith(`${COMMANDS[name].spec.name}: `)).toBe(true);
    expect(r.err).not.toMatch(/\n\s+at .+:\d+:\d+\)?/);
    // A command's usage error shows the usage line; a program in jobs/ is configured by its environment.
    if (code === EXIT.USAGE && !COMMANDS[name].spec.usage.includes("jobs/")) expect(r.err).toMatch(/Usage: /);
  });
});

describe("parseCommandLine", () => {
  const spec: CommandSpec = { name: "x", usage: "x", summary: "", options: { stack: { type: "string", short: "s", description: "" }, json: { type: "boolean", description: "" } } };
  it("reads --opt value, --opt=value and short flags", () => {
    expect(parseCommandLine(spec, ["-s", "dev", "--json"]).values).toMatchObject({ stack: "dev", json: true });
    expect(parseCommandLine(spec, ["--stack=ci"]).values.stack).toBe("ci");
  });
  it("refuses an empty value", () => {
    expect(() => parseCommandLine(spec, ["--stack="])).toThrow(/--stack needs a value/);
  });
});

describe("test:repeat: the loop that proves the suite is green every time", () => {
  const run = async (argv: string[]) => {
    const lines: string[] = [];
    const code = await testRepeat.main(argv, (l) => lines.push(l));
    return { code, text: lines.join("\n") };
  };

  it("counts passed runs and prints the closing line", async () => {
    const r = await run(["--runs", "3", "--command", "true"]);
    expect(r.code).toBe(0);
    expect(r.text).toMatch(/^repeat: 3 passed, 0 failed$/m);
  });

  it("stops at the first failed run, names its log and exits 1", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "phi3-repeat-"));
    const counter = path.join(dir, "n");
    // Fails on its second run only.
    const r = await run(["--runs", "5", "--command", `echo x >> ${counter}; [ $(wc -l < ${counter}) -ne 2 ]`]);
    expect(r.code).toBe(1);
    expect(r.text).toMatch(/^repeat: 1 passed, 1 failed$/m);
    expect(r.text).toMatch(/run 2\/5: FAILED \(exit 1\)/);
    expect(fs.readFileSync(counter, "utf8").trim().split("\n")).toHaveLength(2);
  });

  it("--load keeps a CPU-heavy process running during the runs and ends it after", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "phi3-repeat-"));
    const seen = path.join(dir, "seen");
    // The run sees the companion by its command line; afterwards it is gone.
    const r = await run(["--runs", "1", "--load", "--command", `pgrep -f -c -- "phi3-test-repeat-loa[d] ${process.pid} " > ${seen}`]);
    expect(r.code, r.text).toBe(0);
    expect(Number(fs.readFileSync(seen, "utf8"))).toBeGreaterThanOrEqual(1);
    const after = spawnSync("pgrep", ["-f", "--", `phi3-test-repeat-loa[d] ${process.pid} `], { encoding: "utf8" });
    expect(after.stdout.trim()).toBe("");
  });

  it.each([["0"], ["51"], ["two"]])("--runs %s is a usage error (exit 2)", async (n) => {
    expect((await capture(() => testRepeat.main(["--runs", n]))).code).toBe(2);
  });
});

describe("serve:local on a busy port", () => {
  it("says so in one line and exits 2 before the Python environment or the model load", async () => {
    const net = await import("node:net");
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as { port: number }).port;
    const model = fs.mkdtempSync(path.join(os.tmpdir(), "phi3-model-"));
    try {
      const r = await COMMANDS["serve:local"].run(["--model", model, "--port", String(port)]);
      expect(r.code).toBe(2);
      expect(r.err.split("\n")[0]).toBe(`serve:local: port ${port} on 127.0.0.1 is not free (in use by another program): pick another with --port <port>, or --port 0 for any free one`);
      // Nothing after the check ran: no key file message, no environment build.
      expect(r.err).not.toMatch(/key in|python|venv/i);
    } finally {
      server.close();
      fs.rmSync(model, { recursive: true, force: true });
    }
  });
});

describe("one exit-code table: lib/cli.ts EXIT = docs/commands.md, and each command's error cases use it", () => {
  const doc = fs.readFileSync(path.join(ROOT, "docs/commands.md"), "utf8");
  const rows = [...doc.matchAll(/^\| (\d) \| (\w+) \| (.+) \|$/gm)].map((m) => [m[2], Number(m[1])]);

  it("the documented table is EXIT, code by code", () => {
    expect(Object.fromEntries(rows)).toEqual(EXIT);
  });

  it("every code the error cases above expect is in the table", () => {
    const codes = new Set(rows.map(([, c]) => c));
    for (const [, , , code] of WRONG) expect(codes.has(code)).toBe(true);
  });

  it("doctor without a usable credential exits 4 (AZURE), chat without an endpoint 2 (USAGE)", async () => {
    const doctorRun = await COMMANDS.doctor.run(["--subscription", SUB], {});
    expect(doctorRun.code).toBe(EXIT.AZURE);
    expect(doctorRun.out).toMatch(/FAIL\s+Azure credential/);
    const chatRun = await COMMANDS.chat.run(["q"], {});
    expect(chatRun.code).toBe(EXIT.USAGE);
  });
});

describe("runAsMain: every line reaches a reader on a pipe before the process ends", () => {
  // npm run plan | ... lost its last lines under Node 22 when the process exited at once.
  it.each([
    ["exit", "0"],
    ["exit", "1"],
    ["set", "0"],
  ])("mode %s, exit code %s: 20000 lines, all of them, then the code", (mode, code) => {
    const r = spawnSync(path.join(ROOT, "node_modules/.bin/tsx"), ["test/fixtures/programs/loud.ts"], {
      cwd: ROOT,
      encoding: "utf8",
      maxBuffer: 64 * 1024 * 1024,
      timeout: 120_000,
      env: { ...process.env, LOUD_LINES: "20000", LOUD_MODE: mode, LOUD_CODE: code },
    });
    const lines = r.stdout.split("\n").filter(Boolean);
    expect(lines).toHaveLength(20000);
    expect(lines[19999]).toMatch(/^line 20000 x+$/);
    expect(r.status).toBe(Number(code));
  });
});
