/**
 * Dependencies point one way (STYLE.md, issue 21): the Pulumi program (index.ts, infra/) imports
 * nothing of the programs, commands or libraries around it; lib/ (shared) imports only infra/;
 * jobs/ (what `up` runs) and cli/ (what a person runs) import lib/ and infra/ but never each other.
 * Read from the import statements of every TypeScript source file.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { ROOT } from "./helpers/stack";

/** Folders each folder may import from (its own included). */
const ALLOWED: Record<string, string[]> = {
  infra: ["infra"],
  lib: ["lib", "infra"],
  jobs: ["jobs", "lib", "infra"],
  cli: ["cli", "lib", "infra"],
};

function sources(folder: string): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const e of fs.readdirSync(path.join(ROOT, dir), { withFileTypes: true })) {
      const rel = path.join(dir, e.name);
      if (e.isDirectory()) walk(rel);
      else if (e.name.endsWith(".ts")) out.push(rel);
    }
  };
  walk(folder);
  return out;
}

/** The project folders a file imports from (relative imports only, resolved from the file). */
export function importedFolders(file: string, text: string): string[] {
  const specs = [...text.matchAll(/(?:from\s+|import\s*\(\s*|require\(\s*)["'](\.{1,2}\/[^"']+)["']/g)].map((m) => m[1]);
  return specs.map((s) => path.relative(ROOT, path.resolve(path.dirname(path.join(ROOT, file)), s)).split(path.sep)[0]);
}

describe("dependencies point one way", () => {
  it("reads imports (the check can fail)", () => {
    expect(importedFolders("infra/x.ts", 'import { a } from "../lib/preflight";\nconst b = require("./y");')).toEqual(["lib", "infra"]);
    expect(importedFolders("cli/lib/x.ts", 'import("../../jobs/submit-job")')).toEqual(["jobs"]);
  });

  it.each(Object.keys(ALLOWED))("%s/ imports only from %s", (folder) => {
    const wrong: string[] = [];
    for (const file of sources(folder)) {
      const text = fs.readFileSync(path.join(ROOT, file), "utf8");
      for (const target of importedFolders(file, text)) {
        if (target in ALLOWED && !ALLOWED[folder].includes(target)) wrong.push(`${file} imports ${target}/`);
      }
    }
    expect(wrong).toEqual([]);
  });
});
