// Post-sublayer norms (Gemma post_attn_norm / post_mlp_norm) on the CUDA path, with the CPU-emulated backend
// (streamline_cuda_cpu.so, as in cuda-path.test.ts) standing in for a usable GPU: its upload_layer_post_norm hands the
// norms to the CPU layer, so every result must be the CPU path's bitwise; a difference is a plumbing bug (norms
// dropped, stale in a slot, the wrong layer's, the wrong RoPE per layer). A backend built before the function falls
// back with the remedy in cuda-train-old.test.ts (one library per process). Training: the layer and mlp
// replacements learn their post norms on the GPU path (train_set_post_norm), an lm tail's frozen layers keep theirs
// (train_set_lm_tail_post_norm).
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as core from '../src/index.js';
import { CudaEngine, cudaUnsupported } from '../src/engine/cuda.js';
import { native } from '../src/native.js';
import { PairCache } from '../src/train/pair-cache.js';
import { trainReplacement } from '../src/train/trainer.js';
import { loadCharFixture, repoRoot, withEnv, withPostNorms, writeCalibText } from './_helpers.js';

const fake = path.join(repoRoot, 'packages', 'core', 'build', 'testlib', 'streamline_cuda_cpu.so');
process.env.STREAMLINE_CUDA_LIBRARY = fake;  // read at the first cudaInfo() of the process

const tmp = mkdtempSync(path.join(os.tmpdir(), 'streamline-cuda-postnorm-'));
const calib = writeCalibText(tmp);
const fixture = async (name: string) => (await core.loadModel(path.join(repoRoot, 'test', 'fixtures', 'models', name))).description;

if (!existsSync(fake)) {
  console.log(`skip: ${fake} not built (CMake option STREAMLINE_CUDA_CPU_TEST)`);
} else {
  test('cudaUnsupported: null for post-norm models with a backend that has upload_layer_post_norm; CudaEngine opens', async () => {
    assert.is(core.runtimeInfo().cuda.available, true, 'the test backend is usable');
    assert.is(core.runtimeInfo().cuda.postNorm, true);
    for (const name of ['gemma3', 'gemma3-types']) {
      const d = await fixture(name);
      assert.ok(d.semantics.postNorms, name);
      assert.is(cudaUnsupported(d), null, name);
      assert.not.throws(() => new CudaEngine(d));
    }
    assert.is(cudaUnsupported(withPostNorms(await fixture('llama-gqa'))), null);
    const logs: core.DeviceMessage[] = [];
    assert.equal(core.resolveDevice('cuda', (m) => logs.push(m), null).device, 'cuda');
    assert.equal(logs, []);
  });

  test('gemma3 / gemma3-types / llama-gqa with post norms: scoring and log-probs on cuda are bitwise the CPU', async () => {
    const models: [string, core.ModelDescription][] = [
      ['gemma3', await fixture('gemma3')], ['gemma3-types', await fixture('gemma3-types')],
      ['llama-gqa + post norms', withPostNorms(await fixture('llama-gqa'))]];
    for (const [name, d] of models) {
      const blocks = [Int32Array.from({ length: 24 }, (_, i) => (i * 7 + 1) % d.vocab), Int32Array.from({ length: 17 }, (_, i) => (i * 5 + 3) % d.vocab)];
      const cpu = await core.scoreLayers(d, { blocks, n: 1, batchSize: 2, device: 'cpu' });
      const logs: core.DeviceMessage[] = [];
      const gpu = await core.scoreLayers(d, { blocks, n: 1, batchSize: 2, device: 'cuda', onLog: (m) => logs.push(m) });
      assert.is(gpu.device, 'cuda', name);
      assert.equal(gpu.matrix, cpu.matrix, name);
      assert.equal(logs, [], name);
      const lp = await core.tokenLogprobs(d, blocks, { batchSize: 2, device: 'cuda' });
      assert.equal(lp, await core.tokenLogprobs(d, blocks, { batchSize: 2, device: 'cpu' }), name);
    }
  });

  test("the binding: a slot's post norms come with its layer and go with the next upload", async () => {
    const d = await fixture('gemma3'), n = native();
    const T = 8, D = d.semantics.hidden, spec = core.nativeLayerSpec(d.semantics, 1, T, true, 1);
    const views = d.layers[1]!.weights();
    assert.ok(views['post_attn_norm.weight'] && views['post_mlp_norm.weight'], 'the layer has post norms');
    const h0 = Float32Array.from({ length: T * D }, (_, i) => Math.sin(i * 0.37));
    const positions = Int32Array.from({ length: T }, (_, i) => i);
    const inv = core.ropeFrequencies(d.rope!, T).invFreq;
    const run = async (weights: Record<string, unknown>) => {
      const ctx = await n.cudaContext(spec);
      try {
        ctx.setInputs(positions, null, inv, 1);
        await ctx.uploadHidden(h0);
        await ctx.uploadLayer(0, views as never);  // with norms first: the next upload must clear them
        await ctx.uploadLayer(0, weights as never);
        await ctx.runLayer(0);
        const out = new Float32Array(T * D);
        await ctx.downloadHidden(out);
        return out;
      } finally {
        ctx.destroy();
      }
    };
    const cpu = async (weights: Record<string, unknown>) => {
      const out = new Float32Array(T * D);
      await n.decoderLayerForward(out, h0, spec, weights as never, positions, null, inv, null);
      return out;
    };
    const plain = Object.fromEntries(Object.entries(views).filter(([r]) => r !== 'post_attn_norm.weight' && r !== 'post_mlp_norm.weight'));
    const withNorm = await run(views), without = await run(plain);
    assert.equal(withNorm, await cpu(views));
    assert.equal(without, await cpu(plain));
    assert.ok(withNorm.some((v, i) => v !== without[i]), 'the norms change the layer');
    // An mlp block takes post_mlp_norm alone.
    const mspec = { ...spec, mlpOnly: true };
    const mw = Object.fromEntries(Object.entries(views).filter(([r]) => ['mlp_norm.weight', 'gate.weight', 'up.weight', 'down.weight', 'post_mlp_norm.weight'].includes(r)));
    const ctx = await n.cudaContext(mspec);
    try {
      await ctx.uploadHidden(h0);
      await ctx.uploadLayer(0, mw as never);
      await ctx.runLayer(0);
      const out = new Float32Array(T * D), want = new Float32Array(T * D);
      await ctx.downloadHidden(out);
      await n.mlpBlockForward(want, h0, mspec, mw as never);
      assert.equal(out, want);
    } finally {
      ctx.destroy();
    }
  });

  test('trainReplacement with device cuda and post-norm layer / mlp replacements trains on cuda (train_set_post_norm), bitwise the cpu run', async () => {
    const d = await fixture('gemma3'), n = native();
    const T = 8, D = d.semantics.hidden;
    const w = d.layers[1]!.weights();
    for (const kind of ['layer', 'mlp'] as const) {
      const keep = (r: string) => kind === 'layer' || ['mlp_norm.weight', 'gate.weight', 'up.weight', 'down.weight', 'post_mlp_norm.weight'].includes(r);
      const init: Record<string, Float32Array> = {}, shapes: Record<string, number[]> = {};
      for (const [r, v] of Object.entries(w)) {
        if (!keep(r)) continue;
        init[r] = new Float32Array(v!.shape.reduce((a, b) => a * b, 1));
        n.convertFloats(init[r]!, 'f32', v!.data, v!.dtype);
        shapes[r] = [...v!.shape];
      }
      assert.ok(init['post_mlp_norm.weight'] && (kind === 'mlp' || init['post_attn_norm.weight']), 'the source layer has post norms');
      const run = async (device: core.Device, logs: core.DeviceMessage[]) => {
        const train = new PairCache({ blocks: 4, rows: T, hidden: D, dtype: 'f32', budgetBytes: 1 << 24, dir: tmp, targets: true });
        for (let b = 0; b < 4; b++)
          train.add(Float32Array.from({ length: T * D }, (_, i) => Math.cos(i * 0.1 + b)), Float32Array.from({ length: T * D }, (_, i) => Math.sin(i * 0.07 - b)));
        try {
          return await trainReplacement({
            kind, semantics: d.semantics, ropeInvFreq: kind === 'layer' ? core.ropeFrequencies(d.rope!, T).invFreq : null, ropeAttentionScaling: 1,
            init, shapes, train, validation: null, loss: 'mse', microBatch: 2, lr: 1e-2, device, onLog: (m) => logs.push(m),
          });
        } finally {
          train.close();
        }
      };
      const logs: core.DeviceMessage[] = [];
      const gpu = await run('cuda', logs), cpu = await run('cpu', []);
      assert.is(gpu.device, 'cuda', kind);
      assert.equal(logs.filter((m) => m.level === 'warning'), [], kind);
      for (const r of Object.keys(init)) assert.equal(gpu.weights[r as keyof typeof gpu.weights], cpu.weights[r as keyof typeof cpu.weights], `${kind} ${r}`);
      const moved = (r: string) => cpu.weights[r as keyof typeof cpu.weights]!.some((v, i) => v !== init[r]![i]);
      assert.ok(moved('post_mlp_norm.weight') && (kind === 'mlp' || moved('post_attn_norm.weight')), `${kind}: the post norms were trained`);
    }
  });

  test('prune on gemma3 with device cuda (layer and mlp, mse and lm): training on cuda, no warning, the CPU export bitwise', async () => {
    const model = await loadCharFixture('gemma3', tmp);
    for (const replacement of ['layer', 'mlp'] as const) {
      for (const loss of ['mse', 'lm'] as const) {
        const what = `${replacement} ${loss}`;
        const logs: core.DeviceMessage[] = [], calls = path.join(tmp, `calls-${replacement}-${loss}.txt`);
        // gemma3's layers are sliding, sliding, full, sliding: with lm, R rotates like the sliding layer 1 and the tail
        // mixes the full layer 2 (rope_theta) with the sliding layer 3 (rope_local_base_freq), Gemma 3's case
        const range = { start: 1, end: 2 };
        const o = { calib, samples: 2, seqLen: 16, trainSamples: 4, epochs: 1, range, replacement, loss, seed: 3 };
        const gpu = await withEnv({ STREAMLINE_CUDA_CPU_CALLS: calls }, () =>
          core.prune(model, { ...o, outDir: path.join(tmp, `prune-${replacement}-${loss}-cuda`), device: 'cuda', onLog: (m) => logs.push(m) }));
        const cpu = await core.prune(model, { ...o, outDir: path.join(tmp, `prune-${replacement}-${loss}-cpu`), device: 'cpu' });
        assert.equal([gpu.device, gpu.training!.device], ['cuda', 'cuda'], what);
        assert.equal(logs.filter((m) => m.level === 'warning'), [], what);
        const lines = readFileSync(calls, 'utf8').split('\n');
        assert.ok(lines.includes('train_set_post_norm'), `${what}: the replacement's post norms went to the GPU trainer`);
        // Layers 2 and 3 are the lm tail, with post norms, and layer 2 with a rope of its own.
        if (loss === 'lm') assert.ok(lines.includes('train_set_lm_tail_post_norm 2') && lines.includes('train_set_lm_tail_rope 2'), what);
        const x = core.openCheckpoint(cpu.exported!.outDir), y = core.openCheckpoint(gpu.exported!.outDir);
        assert.equal(y.names(), x.names(), what);
        for (const t of x.names()) assert.ok(Buffer.from(x.tensor(t).data).equals(Buffer.from(y.tensor(t).data)), `${what} ${t}`);
      }
    }
  });

  test.after(() => rmSync(tmp, { recursive: true, force: true }));
}

test.run();
