/**
 * Path checks shared by everything that writes: the export's output folder, prune's checkpoint, cache and log
 * placement, and the CLI's --json/--report/--plot files. Each caller words its own error around the answer.
 */
import fs from 'node:fs';
import path from 'node:path';

/** child is parent or lies below it (both already resolved the same way). */
export function isInside(parent: string, child: string): boolean {
  const rel = path.relative(parent, child);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

/** p resolved, or its nearest ancestor that exists (what a path not yet created will be made in). */
export function nearestExisting(p: string): string {
  let dir = path.resolve(p);
  while (!fs.existsSync(dir) && path.dirname(dir) !== dir) dir = path.dirname(dir);
  return dir;
}

/**
 * Why files cannot be created in the existing path dir: `${dir} is not a folder`, or `folder ${dir} is not writable
 * (CODE)` (W_OK also reports a read-only file system, which permissions alone would not show); null when they can.
 */
export function folderProblem(dir: string): { why: string; cause?: unknown } | null {
  if (!fs.statSync(dir).isDirectory()) return { why: `${dir} is not a folder` };
  try {
    fs.accessSync(dir, fs.constants.W_OK | fs.constants.X_OK);
    return null;
  } catch (e) {
    return { why: `folder ${dir} is not writable (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, cause: e };
  }
}
