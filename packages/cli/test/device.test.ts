// `--device` on the commands that run forward passes. On this GPU-less machine `--device cuda` falls back to the
// CPU with a warning naming the missing piece and gives exactly the results of `--device cpu`; `auto` works; a bad
// value is an option error (E_INVALID_OPTION, exit code 2). The JSON outputs say which device ran. With the
// test-only CPU implementation of the CUDA C API (streamline_cuda_cpu.so) the CLI's CUDA path runs for real, in a
// child process (the backend library is chosen once per process), and reports "cuda" and its peak memory.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { runtimeInfo } from '@streamline/core';
import { demoPaths } from '../src/demo/paths.js';
import { main } from '../src/program.js';
import { writeCharTokenizer } from '../../core/test/_helpers.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const p = demoPaths();
const tmp = mkdtempSync(path.join(os.tmpdir(), 'streamline-device-'));
const cudaUsable = runtimeInfo().cuda.available;
const scoreArgs = (json: string, ...extra: string[]) => ['score', p.model, '--calib', p.train, '--samples', '2', '--seq-len', '64', '--n', '4', '--json', json, '-q', ...extra];
const evalArgs = (json: string, ...extra: string[]) => ['eval', p.model, '--task', `verses=${p.task}`, '--limit', '4', '--seq-len', '64', '--json', json, ...extra];

/** Runs the CLI in this process; returns the exit code and what went to stderr. */
async function cli(args: string[]): Promise<{ code: number; stderr: string }> {
  let stderr = '';
  const out = process.stdout.write, err = process.stderr.write;
  process.stdout.write = (() => true) as typeof process.stdout.write;
  process.stderr.write = ((s: string) => { stderr += s; return true; }) as typeof process.stderr.write;
  try {
    return { code: await main(['node', 'streamline', ...args]), stderr };
  } finally {
    process.stdout.write = out;
    process.stderr.write = err;
  }
}
const read = (f: string) => JSON.parse(readFileSync(f, 'utf8'));

test('--device gpu is an option error naming the allowed values, on every command that takes --device', async () => {
  for (const args of [scoreArgs(path.join(tmp, 'x.json')), ['prune', p.model, '-o', path.join(tmp, 'x'), '--calib', p.train, '--dry-run'], evalArgs(path.join(tmp, 'y.json')), ['demo', '--quick']]) {
    const r = await cli([...args, '--device', 'gpu']);
    assert.is(r.code, 2, args[0]);
    assert.is(r.stderr.trim(), 'error [E_INVALID_OPTION]: --device expects auto, cpu or cuda, got "gpu"', args[0]);
  }
});

test('score: --device cuda without a usable GPU warns once, names the missing piece, and equals --device cpu', async () => {
  const cpu = await cli(scoreArgs(path.join(tmp, 'cpu.json'), '--device', 'cpu'));
  const cuda = await cli(scoreArgs(path.join(tmp, 'cuda.json'), '--device', 'cuda'));
  const auto = await cli(scoreArgs(path.join(tmp, 'auto.json')));
  for (const r of [cpu, cuda, auto]) assert.is(r.code, 0, r.stderr);
  const [a, b, c] = ['cpu', 'cuda', 'auto'].map((k) => read(path.join(tmp, `${k}.json`)));
  assert.is(a.device, 'cpu');
  assert.is(cpu.stderr, '');
  if (cudaUsable) {
    assert.is(b.device, 'cuda');
    assert.ok(b.gpuPeakBytes > 0);
    return;
  }
  assert.is(b.device, 'cpu');
  assert.is(c.device, 'cpu');
  assert.ok(!('gpuPeakBytes' in b));
  const warnings = cuda.stderr.split('\n').filter((l) => l.startsWith('warning:'));
  assert.is(warnings.length, 1, cuda.stderr);
  assert.match(warnings[0]!, /^warning: --device cuda: CUDA cannot be used: (not compiled|the CUDA backend library could not be loaded|no usable NVIDIA driver|no GPU|no cuBLASLt)\b.*; running on the CPU$/);
  assert.is(auto.stderr, '', 'auto falls back quietly when not on a terminal');
  assert.equal(b.matrix, a.matrix);
  assert.equal(b.windows, a.windows);
  assert.equal(c.matrix, a.matrix);
});

test('eval and prune --dry-run: --device cuda falls back with the same numbers; the JSON says device cpu', async () => {
  if (cudaUsable) { console.log('skip: CUDA is usable here'); return; }
  const e1 = await cli(evalArgs(path.join(tmp, 'e-cpu.json'), '--device', 'cpu'));
  const e2 = await cli(evalArgs(path.join(tmp, 'e-cuda.json'), '--device', 'cuda'));
  for (const r of [e1, e2]) assert.is(r.code, 0, r.stderr);
  const [a, b] = [read(path.join(tmp, 'e-cpu.json')), read(path.join(tmp, 'e-cuda.json'))];
  assert.is(a.device, 'cpu');
  assert.is(b.device, 'cpu');
  assert.equal(b.tasks, a.tasks);
  assert.match(e2.stderr, /warning: --device cuda: CUDA cannot be used: /);
  const pr = await cli(['prune', p.model, '-o', path.join(tmp, 'pruned'), '--calib', p.train, '--samples', '2', '--seq-len', '64', '--n', '4', '--dry-run', '-q', '--device', 'cuda', '--json', path.join(tmp, 'p.json')]);
  assert.is(pr.code, 0, pr.stderr);
  assert.is(read(path.join(tmp, 'p.json')).device, 'cpu');
  assert.is(pr.stderr.split('\n').filter((l) => l.startsWith('warning:')).length, 1, 'one warning for the whole prune');
});

const fake = path.join(repoRoot, 'packages', 'core', 'build', 'testlib', 'streamline_cuda_cpu.so');
test('through the CUDA C API (test backend): score and eval report device cuda and peak memory, with the CPU numbers', () => {
  if (!existsSync(fake)) { console.log(`skip: ${fake} not built`); return; }
  const run = (args: string[]) => spawnSync(process.execPath, ['--conditions=@streamline/source', '--import', 'tsx', path.join(repoRoot, 'packages/cli/src/bin.ts'), ...args],
    { cwd: repoRoot, encoding: 'utf8', env: { ...process.env, NO_COLOR: '1', STREAMLINE_CUDA_LIBRARY: fake } });
  const s = run(scoreArgs(path.join(tmp, 'fake.json'), '--device', 'cuda'));
  assert.is(s.status, 0, s.stderr);
  assert.is(s.stderr, '');
  const [cpu, gpu] = [read(path.join(tmp, 'cpu.json')), read(path.join(tmp, 'fake.json'))];
  assert.is(gpu.device, 'cuda');
  assert.ok(gpu.gpuPeakBytes > 0, 'peak device memory in the JSON');
  assert.equal(gpu.matrix, cpu.matrix);
  if (cudaUsable) return;
  const e = run(evalArgs(path.join(tmp, 'e-fake.json')));
  assert.is(e.status, 0, e.stderr);
  const [ea, eb] = [read(path.join(tmp, 'e-cpu.json')), read(path.join(tmp, 'e-fake.json'))];
  assert.is(eb.device, 'cuda');
  assert.ok(eb.gpuPeakBytes > 0);
  assert.equal(eb.tasks, ea.tasks);
});

test('prune: the training runs where --device says (cuda through the test backend, both losses), with the CPU weights; the fallbacks train on the CPU', () => {
  const args = (out: string, ...extra: string[]) => ['prune', p.model, '-o', path.join(tmp, out), '--calib', p.train, '--samples', '2', '--seq-len', '64',
    '--train-samples', '6', '--range', '5:7', '--replacement', 'mlp', '--micro-batch', '2', '-q', '--json', path.join(tmp, `${out}.json`), ...extra];
  const run = (a: string[], env: Record<string, string> = {}) => spawnSync(process.execPath, ['--conditions=@streamline/source', '--import', 'tsx', path.join(repoRoot, 'packages/cli/src/bin.ts'), ...a],
    { cwd: repoRoot, encoding: 'utf8', env: { ...process.env, NO_COLOR: '1', ...env } });
  const weights = (out: string) => readFileSync(path.join(tmp, out, 'model.safetensors'));
  const cpu = run(args('t-cpu', '--device', 'cpu'));
  assert.is(cpu.status, 0, cpu.stderr);
  assert.is(read(path.join(tmp, 't-cpu.json')).training.device, 'cpu');
  if (!cudaUsable) {
    const fb = run(args('t-fallback', '--device', 'cuda'));
    assert.is(fb.status, 0, fb.stderr);
    assert.is(read(path.join(tmp, 't-fallback.json')).training.device, 'cpu');
    assert.ok(weights('t-fallback').equals(weights('t-cpu')), 'fallback: the CPU weights');
  }
  if (!existsSync(fake) || cudaUsable) return;
  const gpu = run(args('t-fake', '--device', 'cuda'), { STREAMLINE_CUDA_LIBRARY: fake });
  assert.is(gpu.status, 0, gpu.stderr);
  assert.is(gpu.stderr, '');
  const j = read(path.join(tmp, 't-fake.json'));
  assert.equal([j.device, j.training.device], ['cuda', 'cuda']);
  assert.ok(weights('t-fake').equals(weights('t-cpu')), 'the test backend is the CPU arithmetic: bitwise the CPU weights');
  // --loss lm trains on the GPU path too (the test backend's lm functions are the CPU's: bitwise the CPU weights); a
  // backend built before them (the old test library) trains on the CPU after one warning.
  const cpuLm = run(args('t-cpu-lm', '--device', 'cpu', '--loss', 'lm'));
  assert.is(cpuLm.status, 0, cpuLm.stderr);
  const lm = run(args('t-fake-lm', '--device', 'cuda', '--loss', 'lm'), { STREAMLINE_CUDA_LIBRARY: fake });
  assert.is(lm.status, 0, lm.stderr);
  assert.is(lm.stderr, '');
  const jl = read(path.join(tmp, 't-fake-lm.json'));
  assert.equal([jl.device, jl.training.device, jl.training.loss], ['cuda', 'cuda', 'lm']);
  assert.ok(weights('t-fake-lm').equals(weights('t-cpu-lm')), 'lm: bitwise the CPU weights');
  const old = fake.replace(/\.so$/, '_old.so');
  if (!existsSync(old)) return;
  const lmOld = run(args('t-old-lm', '--device', 'cuda', '--loss', 'lm'), { STREAMLINE_CUDA_LIBRARY: old });
  assert.is(lmOld.status, 0, lmOld.stderr);
  assert.match(lmOld.stderr, /^warning: --loss lm: the replacement trains on the CPU \(this CUDA backend library lacks streamline_cuda_train_step_lm/m);
  assert.is(read(path.join(tmp, 't-old-lm.json')).training.device, 'cpu');
  assert.ok(weights('t-old-lm').equals(weights('t-cpu-lm')), 'lm fallback: the CPU weights');
});

test('eval of a model the backend cannot run (Qwen3 q/k norm on a library without it): one message, the CPU numbers, device cpu in the JSON', () => {
  const old = fake.replace(/\.so$/, '_old.so');
  if (!existsSync(old) || cudaUsable) { console.log(`skip: ${old} not built (or a real GPU is present)`); return; }
  const model = path.join(tmp, 'qwen3');
  cpSync(path.join(repoRoot, 'test', 'fixtures', 'models', 'qwen3'), model, { recursive: true });
  writeCharTokenizer(model);
  const text = path.join(tmp, 'q.txt');
  writeFileSync(text, 'In the beginning God created the heaven and the earth. And the earth was without form, and void.');
  const run = (out: string, ...extra: string[]) => spawnSync(process.execPath, ['--conditions=@streamline/source', '--import', 'tsx', path.join(repoRoot, 'packages/cli/src/bin.ts'),
    'eval', model, '--baseline', model, '--ppl', text, '--seq-len', '32', '--json', path.join(tmp, out), ...extra], { cwd: repoRoot, encoding: 'utf8', env: { ...process.env, NO_COLOR: '1', STREAMLINE_CUDA_LIBRARY: old } });
  const cpu = run('q-cpu.json', '--device', 'cpu'), cuda = run('q-cuda.json', '--device', 'cuda');
  assert.is(cpu.status, 0, cpu.stderr);
  assert.is(cuda.status, 0, cuda.stderr);
  assert.is(cpu.stderr, '');
  const warnings = cuda.stderr.split('\n').filter((l) => l.startsWith('warning:'));
  assert.is(warnings.length, 1, cuda.stderr);
  assert.match(warnings[0]!, /q\/k norm/);
  const [a, b] = [read(path.join(tmp, 'q-cpu.json')), read(path.join(tmp, 'q-cuda.json'))];
  assert.is(b.device, 'cpu', 'the JSON names the device that ran');
  assert.not.ok('gpuPeakBytes' in b);
  assert.equal(b.ppl, a.ppl);
});

test.run();
