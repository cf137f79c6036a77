// docs/cli.md must be exactly the current --help of every command (scripts/gen-cli-docs.mjs regenerates it).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildProgram } from '../src/program.js';
import { cliReference } from '../src/docs.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

test('docs/cli.md has a section for every command, with its --help text', () => {
  const program = buildProgram();
  const docs = readFileSync(path.join(repoRoot, 'docs', 'cli.md'), 'utf8');
  for (const cmd of program.commands) {
    assert.ok(docs.includes(`## streamline ${cmd.name()}\n`), `docs/cli.md lacks a section for "${cmd.name()}"`);
    for (const opt of cmd.options) assert.ok(docs.includes(opt.flags), `docs/cli.md lacks ${cmd.name()} ${opt.flags}`);
  }
});

test('docs/cli.md equals the generated reference (run: pnpm exec tsc -b && node scripts/gen-cli-docs.mjs)', () => {
  const docs = readFileSync(path.join(repoRoot, 'docs', 'cli.md'), 'utf8');
  const want = cliReference(buildProgram());
  if (docs !== want) {
    const a = docs.split('\n'), b = want.split('\n');
    const i = a.findIndex((line, k) => line !== b[k]);
    assert.unreachable(`docs/cli.md differs from the current help at line ${i + 1}:\n  docs: ${a[i]}\n  help: ${b[i]}\nregenerate with: pnpm exec tsc -b && node scripts/gen-cli-docs.mjs`);
  }
});

test.run();
