// Qwen3's per-head q/k norm on the CUDA path, with the CPU-emulated backend (streamline_cuda_cpu.so, as in
// cuda-path.test.ts): its upload_layer_qk_norm hands the norms to the CPU layer, so every result must be the CPU
// path's bitwise; a difference is a plumbing bug (norms dropped, stale in a slot, the wrong layer's). A backend built
// before the function is refused with the remedy in cuda-train-old.test.ts (one library per process).
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
import { loadCharFixture, repoRoot, withEnv, writeCalibText } from './_helpers.js';

const fake = path.join(repoRoot, 'packages', 'core', 'build', 'testlib', 'streamline_cuda_cpu.so');
process.env.STREAMLINE_CUDA_LIBRARY = fake;  // read at the first cudaInfo() of the process

const tmp = mkdtempSync(path.join(os.tmpdir(), 'streamline-cuda-qknorm-'));
const calib = writeCalibText(tmp);
const code = async (f: () => unknown) => { try { await f(); return ['none', '']; } catch (e) { return [(e as { code: string }).code, (e as Error).message]; } };

if (!existsSync(fake)) {
  console.log(`skip: ${fake} not built (CMake option STREAMLINE_CUDA_CPU_TEST)`);
} else {
  test('cudaUnsupported: null for qwen3 with a backend that has upload_layer_qk_norm; resolveDevice keeps cuda', async () => {
    assert.is(core.runtimeInfo().cuda.available, true, 'the test backend is usable');
    assert.is(core.runtimeInfo().cuda.qkNorm, true);
    for (const name of ['qwen3', 'qwen3-window', 'qwen2-bias']) {
      const model = await core.loadModel(path.join(repoRoot, 'test', 'fixtures', 'models', name));
      assert.is(cudaUnsupported(model.description), null, name);
    }
    const logs: core.DeviceMessage[] = [];
    assert.equal(core.resolveDevice('cuda', (m) => logs.push(m), null).device, 'cuda');
    assert.equal(logs, []);
  });

  test('qwen3 / qwen3-window: scoring and log-probs on cuda are bitwise the CPU (q/k norms uploaded per slot)', async () => {
    for (const name of ['qwen3', 'qwen3-window']) {
      const model = await core.loadModel(path.join(repoRoot, 'test', 'fixtures', 'models', name));
      const d = model.description;
      const blocks = [Int32Array.from({ length: 24 }, (_, i) => (i * 7 + 1) % d.vocab), Int32Array.from({ length: 17 }, (_, i) => (i * 5 + 3) % d.vocab)];
      const cpu = await core.scoreLayers(d, { blocks, n: 1, batchSize: 2, device: 'cpu' });
      const logs: core.DeviceMessage[] = [];
      const gpu = await core.scoreLayers(d, { blocks, n: 1, batchSize: 2, device: 'cuda', onLog: (m) => logs.push(m) });
      assert.is(gpu.device, 'cuda', name);
      assert.equal(gpu.matrix, cpu.matrix, name);
      assert.equal(logs, [], name);
      const lp = await model.tokenLogprobs(blocks, { batchSize: 2, device: 'cuda' });
      assert.equal(lp, await model.tokenLogprobs(blocks, { batchSize: 2, device: 'cpu' }), name);
    }
  });

  test("the binding: a slot's q/k norms come with its layer and go with the next upload", async () => {
    const model = await core.loadModel(path.join(repoRoot, 'test', 'fixtures', 'models', 'qwen3'));
    const d = model.description, n = native();
    assert.not.throws(() => new CudaEngine(d));
    const T = 8, D = d.semantics.hidden, spec = core.nativeLayerSpec(d.semantics, 1, T, true, 1);
    const views = d.layers[1]!.weights();
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
    const plain = Object.fromEntries(Object.entries(views).filter(([r]) => r !== 'q_norm.weight' && r !== 'k_norm.weight'));
    const withNorm = await run(views), without = await run(plain);
    assert.equal(withNorm, await cpu(views));
    assert.equal(without, await cpu(plain));
    assert.ok(withNorm.some((v, i) => v !== without[i]), 'the norms change the layer');
  });

  test('trainReplacement with device cuda and a q/k-norm layer trains on cuda (train_set_qk_norm), bitwise the cpu run', async () => {
    const model = await core.loadModel(path.join(repoRoot, 'test', 'fixtures', 'models', 'qwen3'));
    const d = model.description, n = native();
    const T = 8, D = d.semantics.hidden;
    const w = d.layers[1]!.weights();
    const init: Record<string, Float32Array> = {}, shapes: Record<string, number[]> = {};
    for (const [r, v] of Object.entries(w)) {
      init[r] = new Float32Array(v!.shape.reduce((a, b) => a * b, 1));
      n.convertFloats(init[r]!, 'f32', v!.data, v!.dtype);
      shapes[r] = [...v!.shape];
    }
    assert.ok(init['q_norm.weight'] && init['k_norm.weight'], 'the source layer has q/k norms');
    const run = async (device: core.Device, logs: core.DeviceMessage[]) => {
      const train = new PairCache({ blocks: 4, rows: T, hidden: D, dtype: 'f32', budgetBytes: 1 << 24, dir: tmp, targets: true });
      for (let b = 0; b < 4; b++)
        train.add(Float32Array.from({ length: T * D }, (_, i) => Math.cos(i * 0.1 + b)), Float32Array.from({ length: T * D }, (_, i) => Math.sin(i * 0.07 - b)));
      try {
        return await trainReplacement({
          kind: 'layer', semantics: d.semantics, ropeInvFreq: core.ropeFrequencies(d.rope!, T).invFreq, ropeAttentionScaling: 1,
          init, shapes, train, validation: null, loss: 'mse', microBatch: 2, lr: 1e-2, device, onLog: (m) => logs.push(m),
        });
      } finally {
        train.close();
      }
    };
    const logs: core.DeviceMessage[] = [];
    const gpu = await run('cuda', logs), cpu = await run('cpu', []);
    assert.is(gpu.device, 'cuda');
    assert.equal(logs.filter((m) => m.level === 'warning'), []);
    for (const r of Object.keys(init)) assert.equal(gpu.weights[r as keyof typeof gpu.weights], cpu.weights[r as keyof typeof cpu.weights], r);
    // Training moved the norms (they are parameters, not constants).
    const moved = (r: string) => cpu.weights[r as keyof typeof cpu.weights]!.some((v, i) => v !== init[r]![i]);
    assert.ok(moved('q_norm.weight') && moved('k_norm.weight'), 'q_norm/k_norm were trained');
  });

  test('prune on the qwen3 fixture with device cuda: scoring, pairs and layer training on cuda, no warning, the CPU export', async () => {
    const model = await loadCharFixture('qwen3', tmp);
    const logs: core.DeviceMessage[] = [];
    const o = { calib, samples: 2, seqLen: 16, trainSamples: 4, epochs: 1, range: { start: 1, end: 3 }, replacement: 'layer' as const, seed: 3 };
    const gpu = await core.prune(model, { ...o, outDir: path.join(tmp, 'prune-cuda'), device: 'cuda', onLog: (m) => logs.push(m) });
    const cpu = await core.prune(model, { ...o, outDir: path.join(tmp, 'prune-cpu'), device: 'cpu' });
    assert.equal([gpu.device, gpu.training!.device], ['cuda', 'cuda']);
    assert.equal(logs.filter((m) => m.level === 'warning'), []);
    const x = core.openCheckpoint(cpu.exported!.outDir), y = core.openCheckpoint(gpu.exported!.outDir);
    assert.equal(y.names(), x.names());
    for (const t of x.names()) assert.ok(Buffer.from(x.tensor(t).data).equals(Buffer.from(y.tensor(t).data)), t);
  });

  test("prune --loss lm on qwen3 with device cuda: the frozen tail's q/k norms go to the GPU trainer; bitwise the CPU run", async () => {
    const model = await loadCharFixture('qwen3', tmp);
    for (const replacement of ['mlp', 'layer'] as const) {
      const logs: core.DeviceMessage[] = [], calls = path.join(tmp, `calls-lm-${replacement}.txt`);
      const o = { calib, samples: 2, seqLen: 16, trainSamples: 4, epochs: 1, range: { start: 1, end: 2 }, replacement, loss: 'lm' as const, seed: 3 };
      const gpu = await withEnv({ STREAMLINE_CUDA_CPU_CALLS: calls }, () =>
        core.prune(model, { ...o, outDir: path.join(tmp, `prune-lm-cuda-${replacement}`), device: 'cuda', onLog: (m) => logs.push(m) }));
      const cpu = await core.prune(model, { ...o, outDir: path.join(tmp, `prune-lm-cpu-${replacement}`), device: 'cpu' });
      assert.equal([gpu.device, gpu.training!.device], ['cuda', 'cuda'], replacement);
      assert.equal(logs.filter((m) => m.level === 'warning'), [], replacement);
      // Layers 2 and 3 form the tail, both with norms.
      assert.ok(readFileSync(calls, 'utf8').split('\n').includes('train_set_lm_tail_qk_norm 2'), replacement);
      const x = core.openCheckpoint(cpu.exported!.outDir), y = core.openCheckpoint(gpu.exported!.outDir);
      for (const t of x.names()) assert.ok(Buffer.from(x.tensor(t).data).equals(Buffer.from(y.tensor(t).data)), `${replacement} ${t}`);
    }
  });

  test.after(() => rmSync(tmp, { recursive: true, force: true }));
}

test.run();
