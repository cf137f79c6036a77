// Locating ../shared (the demo model and its corpus). Tests that need it skip with a message when it is absent.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const candidates = [path.resolve(repoRoot, '../shared'), process.env.STREAMLINE_SHARED].filter((p): p is string => !!p);
export const shared = candidates.find((p) => fs.existsSync(path.join(p, 'models', 'kjv-llama', 'config.json')));
export const kjvModel = shared ? path.join(shared, 'models', 'kjv-llama') : '';
export const kjvData = shared ? path.join(shared, 'data', 'kjv') : '';

/** Prints the skip message and returns true when ../shared is missing. */
export function skipWithoutShared(what: string): boolean {
  if (shared) return false;
  console.log(`skip: ../shared not found; ${what} needs ../shared/models/kjv-llama`);
  return true;
}
