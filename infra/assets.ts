import * as fs from "fs";
import * as path from "path";
import { sha256 } from "./naming";

/** Files never uploaded as part of a code asset (caches and editor leftovers). */
const IGNORED = /(^|\/)(__pycache__|\.pytest_cache|\.ipynb_checkpoints|\.DS_Store)(\/|$)|\.pyc$/;

/** A file of a folder, with its path relative to the folder (POSIX separators). */
export interface FolderFile {
  relativePath: string;
  absolutePath: string;
}

/**
 * List the files of a folder recursively, sorted by relative path, skipping caches.
 * Throws when the folder does not exist or holds no file.
 */
export function listFolder(dir: string): FolderFile[] {
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new Error(`${dir}: folder not found`);
  const out: FolderFile[] = [];
  const walk = (rel: string) => {
    for (const entry of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
      const r = rel ? `${rel}/${entry.name}` : entry.name;
      if (IGNORED.test(r)) continue;
      if (entry.isDirectory()) walk(r);
      else if (entry.isFile()) out.push({ relativePath: r, absolutePath: path.join(dir, r) });
    }
  };
  walk("");
  out.sort((a, b) => (a.relativePath < b.relativePath ? -1 : 1));
  if (out.length === 0) throw new Error(`${dir}: folder holds no file`);
  return out;
}

/**
 * Content hash of a folder: SHA-256 over each file's relative path and bytes, in sorted
 * order. Independent of timestamps, permissions and the checkout location.
 */
export function hashFolder(dir: string): string {
  return sha256(...listFolder(dir).flatMap((f) => [f.relativePath, fs.readFileSync(f.absolutePath)]));
}

/** Content hash of one file's bytes. Throws when the file cannot be read. */
export function hashFile(file: string): string {
  return sha256(fs.readFileSync(file));
}

/** Short form of a hash for names and versions (first `n` hex digits). */
export function short(hash: string, n = 12): string {
  return hash.slice(0, n);
}
