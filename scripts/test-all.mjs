#!/usr/bin/env node
// Runs every test file (packages/*/test/**/*.test.ts and test/**/*.test.ts) in one uvu process per file group
// and ends with the line CI reads: "N passed, N failed, N skipped".
// Usage: node scripts/test-all.mjs [filter-regex]
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const filter = process.argv[2] ? new RegExp(process.argv[2]) : null;

function collect(dir, out) {
  let entries;
  try { entries = readdirSync(dir); } catch { return out; }
  for (const name of entries) {
    if (name === 'node_modules' || name === 'dist' || name === 'build' || name.startsWith('.')) continue;
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) collect(p, out);
    else if (name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

const files = [];
for (const pkg of readdirSync(path.join(root, 'packages'))) collect(path.join(root, 'packages', pkg, 'test'), files);
collect(path.join(root, 'test'), files);
const selected = files.sort().filter((f) => !filter || filter.test(path.relative(root, f)));

let passed = 0, total = 0, skipped = 0, crashed = 0;
const env = {
  ...process.env,
  NO_COLOR: '1',
  FORCE_COLOR: '0',
  NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --conditions=@streamline/source`.trim(),
};
const uvu = path.join(root, 'node_modules', 'uvu', 'bin.js');
// One process per file: a native crash in one file cannot hide the results of the others.
for (const file of selected) {
  const rel = path.relative(root, file);
  const dir = path.dirname(rel), base = path.basename(rel).replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const r = spawnSync(process.execPath, [uvu, '--no-color', '-r', 'tsx', dir, `^${base}$`], { cwd: root, env, encoding: 'utf8' });
  const out = (r.stdout ?? '') + (r.stderr ?? '');
  const num = (label) => Number((out.match(new RegExp(`${label}:\\s+(\\d+)`)) ?? [])[1] ?? NaN);
  const t = num('Total'), p = num('Passed'), s = num('Skipped');
  const ok = r.status === 0 && Number.isFinite(t);
  process.stdout.write(`${ok ? 'ok  ' : 'FAIL'} ${rel}${Number.isFinite(t) ? `  (${p}/${t}${s ? `, ${s} skipped` : ''})` : ''}\n`);
  if (!ok || p !== t) process.stdout.write(out.split('\n').map((l) => `    ${l}`).join('\n') + '\n');
  if (Number.isFinite(t)) { total += t; passed += p; skipped += s || 0; }
  if (!Number.isFinite(t) || (r.status !== 0 && p === t)) { crashed++; total++; }
}
const failed = total - passed;
console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(failed > 0 || total === 0 ? 1 : 0);
