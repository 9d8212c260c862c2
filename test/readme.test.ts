/**
 * The README as a newcomer uses it: every ```bash block runs as written (issue 21: the smoke
 * run failed on a missing data/train.jsonl), the first screen stays short (< 15 KB, reference
 * in docs/), every docs/ page it links exists and links back, and docs/layout.md lists every
 * source file (test/layout part below).
 *
 * How the blocks run: each block is one bash script (`set -euo pipefail`) in the project folder.
 * Two things are not run, and the test says so: `npm ci` (already done: the test runs inside
 * `npm test`) and `npm test` itself. A line ending in `&` (a server "in another terminal") runs
 * in the background in its own process group; the next line waits until 127.0.0.1:5001 (the
 * port the README's ENDPOINT_URI names) accepts, and the group is killed when the block ends.
 * ```text blocks need Azure or the Pulumi CLI and are not run.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { ROOT } from "./helpers/stack";

const README = fs.readFileSync(path.join(ROOT, "README.md"), "utf8");

/** The ```bash blocks of a markdown text. */
export function bashBlocks(markdown: string): string[] {
  return [...markdown.matchAll(/^```bash\n([\s\S]*?)^```$/gm)].map((m) => m[1]);
}

/** Lines left out of a run, each with the reason. */
const NOT_RUN: [RegExp, string][] = [
  [/^npm ci && /, "npm ci: done before the tests run"],
  [/^npm test\b/, "npm test: this test runs inside it"],
];

/** A README block as the bash script the test runs. */
export function scriptOf(block: string): string {
  const lines: string[] = ["set -euo pipefail", "set -m", 'trap \'for p in $(jobs -p); do kill -- -"$p" 2>/dev/null || true; done\' EXIT'];
  let waitNext = false;
  for (const raw of block.split("\n")) {
    let line = raw;
    if (!line.trim()) continue;
    if (/^npm test\b/.test(line)) continue;
    line = line.replace(/^npm ci && /, "");
    if (waitNext) {
      lines.push("for _ in $(seq 1 600); do (exec 3<>/dev/tcp/127.0.0.1/5001) 2>/dev/null && break; sleep 1; done");
      waitNext = false;
    }
    lines.push(line);
    if (/&\s*(#.*)?$/.test(line)) waitNext = true;
  }
  return lines.join("\n");
}

describe("README", () => {
  it("is under 15 KB: what it is, the two commands, the local smoke run, deploy; reference in docs/", () => {
    expect(Buffer.byteLength(README)).toBeLessThan(15 * 1024);
    const headings = [...README.matchAll(/^## (.+)$/gm)].map((m) => m[1]);
    expect(headings).toEqual(["The two commands", "Before you pay for an A100 hour: the local smoke run", "Deploy", "Reference"]);
  });

  it("every docs/ page it links exists and links back; every docs/ page is linked", () => {
    const linked = [...new Set([...README.matchAll(/\]\((docs\/[\w-]+\.md)\)/g)].map((m) => m[1]))];
    for (const page of linked) {
      const text = fs.readFileSync(path.join(ROOT, page), "utf8");
      expect(text, page).toContain("](../README.md)");
    }
    const pages = fs.readdirSync(path.join(ROOT, "docs")).filter((f) => f.endsWith(".md")).map((f) => `docs/${f}`);
    expect(pages.filter((p) => !linked.includes(p))).toEqual([]);
  });

  it("the blocks to run are the plan and the smoke run, with only npm ci / npm test left out", () => {
    const blocks = bashBlocks(README);
    expect(blocks).toHaveLength(2);
    const left = blocks.flatMap((b) => b.split("\n")).filter((l) => NOT_RUN.some(([re]) => re.test(l)));
    expect(left).toEqual(["npm ci && npm run plan    # what `pulumi up` would do for the dev stack: blockers, costs, every resource", "npm test                  # what CI runs: the Python environments, vitest, the Python tests"]);
  });

  it.each(bashBlocks(README).map((b, i) => [i, b] as const))("block %i runs as written", async (_i, block) => {
    const model = path.join(ROOT, "out", "model");
    fs.rmSync(model, { recursive: true, force: true });
    // As written, except the local server's port: a free one instead of 5001, so that another
    // serve:local on this machine (or another run of the suite) is never the one answering.
    const port = await freePort();
    const script = scriptOf(block)
      .replace(/127\.0\.0\.1([:/])5001\b/g, `127.0.0.1$1${port}`)
      .replace(/npm run serve:local -- /g, `npm run serve:local -- --port ${port} `);
    try {
      const r = spawnSync("bash", ["-c", script], { cwd: ROOT, encoding: "utf8", timeout: 900_000, env: { ...process.env, FORCE_COLOR: "0" } });
      expect(r.status, `${r.stdout.slice(-3000)}\n${r.stderr.slice(-3000)}`).toBe(0);
      if (/npm run plan/.test(block)) expect(r.stdout).toMatch(/^BLOCKED: `pulumi up` stops in its first minute/m);
      if (/npm run chat/.test(block)) expect(r.stdout.trim().length).toBeGreaterThan(0);
    } finally {
      fs.rmSync(model, { recursive: true, force: true });
    }
  }, 900_000);
});

/** A port nothing listens on now (the OS's pick on 127.0.0.1). */
async function freePort(): Promise<number> {
  const net = await import("node:net");
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe("docs/layout.md lists every source file", () => {
  const table = fs.readFileSync(path.join(ROOT, "docs/layout.md"), "utf8");
  const listed = new Set([...table.matchAll(/`([^`]+)`/g)].map((m) => m[1]));
  const files = (dir: string): string[] =>
    fs.readdirSync(path.join(ROOT, dir), { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? files(`${dir}/${e.name}`) : [`${dir}/${e.name}`]));

  it("every file of index.ts, infra/, jobs/, lib/, cli/ and cli/lib/ by its path; the folders of Python, data, docs, tests and CI by name", () => {
    const sources = ["index.ts", ...["infra", "jobs", "lib", "cli"].flatMap((d) => files(d)).filter((f) => !f.startsWith("cli/local/"))];
    expect(sources.filter((f) => !listed.has(f))).toEqual([]);
    for (const folder of ["cli/local/", "finetuning_dir/", "promptflow/", "data/", "docs/", "test/", ".ci/", ".github/workflows/"]) expect(listed, folder).toContain(folder);
    for (const stack of fs.readdirSync(ROOT).filter((f) => /^Pulumi(\..+)?\.yaml$/.test(f))) expect(listed, stack).toContain(stack);
  });

  it("names no file that does not exist", () => {
    const paths = [...listed].filter((p) => /^[\w./-]+$/.test(p) && /\/|\.(ts|json|yaml|yml|py|txt|md)$/.test(p) && !p.startsWith("."));
    const missing = paths.filter((p) => !fs.existsSync(path.join(ROOT, p)) && !fs.existsSync(path.join(ROOT, "finetuning_dir", p)) && !fs.existsSync(path.join(ROOT, "cli/local", p)) && !fs.existsSync(path.join(ROOT, "promptflow", p)) && !fs.existsSync(path.join(ROOT, "data", p)));
    expect(missing).toEqual([]);
  });
});
