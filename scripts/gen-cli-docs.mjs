#!/usr/bin/env node
// Writes docs/cli.md from the commander definitions (each command's --help). Run after `pnpm exec tsc -b`.
// packages/cli/test/help-docs.test.ts fails when docs/cli.md differs from this output.
// Usage: node scripts/gen-cli-docs.mjs [--check]
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const file = path.join(root, 'docs', 'cli.md');
const { cliReference } = await import(path.join(root, 'packages', 'cli', 'dist', 'index.js'));
const text = cliReference();
if (process.argv.includes('--check')) {
  let current = '';
  try { current = readFileSync(file, 'utf8'); } catch { /* missing */ }
  if (current !== text) {
    console.error('docs/cli.md is out of date: run `pnpm exec tsc -b && node scripts/gen-cli-docs.mjs`');
    process.exit(1);
  }
  console.log('docs/cli.md is up to date');
} else {
  writeFileSync(file, text);
  console.log(`wrote ${path.relative(root, file)} (${text.split('\n').length} lines)`);
}
