/**
 * The addon on a CPU without AVX: under `qemu-x86_64 -cpu Nehalem` (Debian qemu-user) the built addon (or the
 * prebuild) loads, picks the scalar kernels and OpenBLAS's Nehalem core, and a forward pass of the llama-gqa
 * fixture gives the same hidden states and logits as the native run within 1e-5 relative to the largest
 * magnitude. Natively, forcing each lower kernel level with STREAMLINE_CPU (scalar, avx2) gives the same too.
 * Uses the prebuild (packages/core/prebuilds/linux-x64) when it is at least as new as build/Release.
 * Runs the built JS (packages/core/dist; tsx under qemu is slow) in one qemu process. Skips with a message when
 * qemu-x86_64 or the build is missing.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const script = path.join(repoRoot, 'test', 'qemu', 'forward-logits.mjs');
const qemu = ['/usr/bin/qemu-x86_64', '/usr/local/bin/qemu-x86_64'].find((p) => existsSync(p))
  ?? (spawnSync('sh', ['-c', 'command -v qemu-x86_64'], { encoding: 'utf8' }).stdout.trim() || null);
const dist = path.join(repoRoot, 'packages', 'core', 'dist', 'index.js');
const TOL = 1e-5;
// The shipped (stripped) prebuild when it is at least as new as build/Release, else what node-gyp-build finds.
const prebuild = path.join(repoRoot, 'packages', 'core', 'prebuilds', 'linux-x64', '@streamline+core.node');
const built = path.join(repoRoot, 'packages', 'core', 'build', 'Release', 'streamline.node');
const addon = process.env.STREAMLINE_NATIVE_PATH
  ?? (existsSync(prebuild) && (!existsSync(built) || statSync(prebuild).mtimeMs >= statSync(built).mtimeMs) ? prebuild : undefined);

interface Run { addon: string; level: string; detected: string; blas: string; blasCore: string; mask: number[]; logits: number[]; hidden1: number[] }

function run(label: string, cmd: string[], env: Record<string, string>, tmp: string): Run {
  const out = path.join(tmp, `${label}.json`);
  // No NODE_OPTIONS: the test runner's @streamline/source condition does not apply to the built JS.
  const childEnv = { ...process.env, ...env, NODE_OPTIONS: '', ...(addon ? { STREAMLINE_NATIVE_PATH: addon } : {}) };
  const r = spawnSync(cmd[0]!, [...cmd.slice(1), script, out], { env: childEnv, encoding: 'utf8', timeout: 300_000 });
  if (r.status !== 0) assert.unreachable(`${label}: ${cmd.join(' ')} exited ${r.status ?? r.signal}\n${r.stdout}${r.stderr}`);
  return JSON.parse(readFileSync(out, 'utf8')) as Run;
}

/** max |a - b| over the largest |ref|; NaN or Inf anywhere fails. */
function relDiff(name: string, a: number[], ref: number[]): number {
  assert.is(a.length, ref.length, `${name}: length`);
  let scale = 0, diff = 0;
  for (let i = 0; i < ref.length; i++) {
    if (!Number.isFinite(a[i]!) || !Number.isFinite(ref[i]!)) assert.unreachable(`${name}: non-finite value at ${i}`);
    scale = Math.max(scale, Math.abs(ref[i]!));
    diff = Math.max(diff, Math.abs(a[i]! - ref[i]!));
  }
  assert.ok(scale > 0, `${name}: all zeros`);
  return diff / scale;
}

if (!qemu) {
  console.log('skip: qemu-x86_64 not found (Debian package qemu-user)');
} else if (!existsSync(dist)) {
  console.log('skip: packages/core/dist not built (run `pnpm exec tsc -b`)');
} else {
  test('forward pass: native fast path = forced scalar = forced avx2 = qemu -cpu Nehalem (1e-5 relative)', () => {
    const tmp = mkdtempSync(path.join(os.tmpdir(), 'streamline-qemu-'));
    try {
      const node = process.execPath;
      const ref = run('native', [node], {}, tmp);
      const runs: [string, Run][] = [
        ['STREAMLINE_CPU=scalar', run('scalar', [node], { STREAMLINE_CPU: 'scalar' }, tmp)],
        ['STREAMLINE_CPU=avx2', run('avx2', [node], { STREAMLINE_CPU: 'avx2' }, tmp)],
        ['qemu -cpu Nehalem', run('nehalem', [qemu, '-cpu', 'Nehalem', node], {}, tmp)],
      ];
      const lines = [`addon ${path.relative(repoRoot, ref.addon)}`, `native: level ${ref.level}, openblas ${ref.blasCore || ref.blas}`];
      for (const [name, r] of runs) {
        assert.equal(r.mask, ref.mask, `${name}: mask`);
        const dl = relDiff(`${name} logits`, r.logits, ref.logits);
        const dh = relDiff(`${name} h[1]`, r.hidden1, ref.hidden1);
        lines.push(`${name}: level ${r.level}, openblas ${r.blasCore || r.blas}, logits ${dl.toExponential(2)}, h[1] ${dh.toExponential(2)}`);
        assert.ok(dl <= TOL, `${name}: logits differ by ${dl} relative (> ${TOL})`);
        assert.ok(dh <= TOL, `${name}: h[1] differs by ${dh} relative (> ${TOL})`);
      }
      const [scalar, avx2, nehalem] = runs.map(([, r]) => r);
      assert.is(scalar!.level, 'scalar');
      assert.is(avx2!.level, ref.detected === 'scalar' ? 'scalar' : 'avx2', 'STREAMLINE_CPU=avx2 caps the level at avx2');
      // Nehalem has SSE4.2 but no AVX: the scalar (baseline) kernels and OpenBLAS's Nehalem core.
      assert.is(nehalem!.detected, 'scalar');
      assert.is(nehalem!.level, 'scalar');
      if (nehalem!.blas === 'openblas') assert.is(nehalem!.blasCore, 'Nehalem');
      console.log(lines.map((l) => `  ${l}`).join('\n'));
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
}

test.run();
