// `streamline inspect` end to end: spawns the CLI from source on fixtures written by the core writer and on the
// demo model (skipped when ../shared is absent).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { kjvLlama, makeTinyModel, repoRoot, TINY_LLAMA, tmpDir } from '../../core/test/_helpers.js';

function cli(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['--conditions=@streamline/source', '--import', 'tsx', 'packages/cli/src/bin.ts', ...args], {
    cwd: repoRoot, encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('bad input: a missing path and an invalid model exit non-zero with one error line', async () => {
  const missing = cli('inspect', '/nonexistent/model');
  assert.is.not(missing.code, 0);
  assert.match(missing.stderr, /^error \[E_IO\]: .*\/nonexistent\/model/);
  assert.is(missing.stderr.trim().split('\n').length, 1);
  const dir = tmpDir('cli-bad');
  await makeTinyModel(dir, TINY_LLAMA, { drop: ['model.norm.weight'], reshape: { 'lm_head.weight': [41, 16] } });
  const r = cli('inspect', dir);
  assert.is.not(r.code, 0);
  assert.match(r.stderr, /^error \[E_MODEL_TENSORS\]: .*missing model\.norm\.weight.*lm_head\.weight has shape \[41, 16\]/);
  assert.match(r.stdout, /FAILED: 1 missing, 1 wrong shape/);
  fs.rmSync(dir, { recursive: true });
});

test('a sharded fixture written by the writer passes inspect, in text and JSON', async () => {
  const dir = tmpDir('cli-shard');
  await makeTinyModel(dir, TINY_LLAMA, { write: { maxShardBytes: 4096 } });
  const r = cli('inspect', dir, '--json');
  assert.is(r.code, 0, r.stderr);
  const report = JSON.parse(r.stdout);
  assert.ok(report.valid);
  assert.ok(report.files.length > 1);
  assert.is(report.modelType, 'llama');
  const file = cli('inspect', path.join(dir, report.files[0]));
  assert.is(file.code, 0, file.stderr);
  assert.match(file.stdout, /tensors\s+\d+\nparameters\s+[\d,]+\ndtypes\s+bf16/);
  fs.rmSync(dir, { recursive: true });
});

test('RoPE scaling types: yarn and longrope named on the blocks line and in JSON; the default is not', () => {
  const fixtures = path.join(repoRoot, 'test', 'fixtures', 'models');
  assert.match(cli('inspect', path.join(fixtures, 'qwen3-yarn')).stdout, /blocks\s+RMSNorm, silu, RoPE \(yarn\)\n/);
  assert.match(cli('inspect', path.join(fixtures, 'phi3-longrope-short')).stdout, /RoPE \(longrope\)\n/);
  assert.match(cli('inspect', path.join(fixtures, 'qwen3')).stdout, /RoPE\n/);
  assert.equal(JSON.parse(cli('inspect', path.join(fixtures, 'llama-yarn-mscale'), '--json').stdout).rope, { type: 'yarn', theta: 10000, rotaryDim: 16 });
});

test('sliding windows: which layers use one, in text and JSON (null without)', () => {
  const fixtures = path.join(repoRoot, 'test', 'fixtures', 'models');
  const qwen = cli('inspect', path.join(fixtures, 'qwen2-window'));
  assert.match(qwen.stdout, /blocks\s+RMSNorm, silu, RoPE, sliding window 4 on layers \[1, 3\)\n/);
  // mistral: 4096 > max_position_embeddings 256, true to the config but masking nothing
  assert.match(cli('inspect', path.join(fixtures, 'mistral')).stdout, /sliding window 4096 on every layer \(no effect: not shorter than max positions\)/);
  const json = (name: string) => JSON.parse(cli('inspect', path.join(fixtures, name), '--json').stdout).slidingWindow;
  assert.equal(json('qwen2-window'), { size: 4, layers: [1, 2] });
  assert.equal(json('mistral-window'), { size: 5, layers: [0, 1, 2] });
  assert.is(json('qwen2-bias'), null, 'use_sliding_window false');
  assert.is(json('llama-gqa'), null);
});

test('streamline inspect ../shared/models/kjv-llama: llama with 12,853,504 parameters', () => {
  if (!fs.existsSync(kjvLlama)) { console.log('skip: ../shared not found'); return; }
  const r = cli('inspect', kjvLlama);
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stdout, /architecture\s+LlamaForCausalLM \(model_type llama\)/);
  assert.match(r.stdout, /parameters\s+12,853,504 total/);
  assert.match(r.stdout, /check\s+ok/);
});

test.run();
