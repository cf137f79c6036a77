// A model with Qwen3's per-head q/k norm never runs on the CUDA backend, which does not implement it: with the
// CPU-emulated backend (streamline_cuda_cpu.so, as in cuda-path.test.ts) CUDA is "available", so each refusal here is
// the model's, not the machine's. `auto` moves to the CPU with an info line, `cuda` with a warning naming the q/k
// norm, and the results are the CPU's; the engine, the bindings and the trainer refuse on their own too, so a caller
// that skips resolveDevice gets an error instead of a layer with its norms dropped.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as core from '../src/index.js';
import { CudaEngine, cudaUnsupported } from '../src/engine/cuda.js';
import { native } from '../src/native.js';
import { PairCache } from '../src/train/pair-cache.js';
import { trainReplacement } from '../src/train/trainer.js';
import { loadCharFixture, repoRoot, writeCalibText } from './_helpers.js';

const fake = path.join(repoRoot, 'packages', 'core', 'build', 'testlib', 'streamline_cuda_cpu.so');
process.env.STREAMLINE_CUDA_LIBRARY = fake;  // read at the first cudaInfo() of the process

const tmp = mkdtempSync(path.join(os.tmpdir(), 'streamline-cuda-qknorm-'));
const calib = writeCalibText(tmp);
const QK = /q\/k norm \(q_norm\/k_norm\)/;
const code = async (f: () => unknown) => { try { await f(); return ['none', '']; } catch (e) { return [(e as { code: string }).code, (e as Error).message]; } };

if (!existsSync(fake)) {
  console.log(`skip: ${fake} not built (CMake option STREAMLINE_CUDA_CPU_TEST)`);
} else {
  test('resolveDevice with a model the backend cannot run: auto → cpu (info), cuda → cpu (warning), cpu silent', async () => {
    assert.is(core.runtimeInfo().cuda.available, true, 'the test backend is usable');
    const model = await core.loadModel(path.join(repoRoot, 'test', 'fixtures', 'models', 'qwen3'));
    const why = cudaUnsupported(model.description);
    assert.match(why ?? '', QK);
    assert.is(cudaUnsupported((await core.loadModel(path.join(repoRoot, 'test', 'fixtures', 'models', 'qwen2-bias'))).description), null);
    for (const [want, level] of [['auto', 'info'], ['cuda', 'warning'], ['cpu', null]] as const) {
      const logs: core.DeviceMessage[] = [];
      const r = core.resolveDevice(want, (m) => logs.push(m), why);
      assert.equal([r.device, r.missing], ['cpu', want === 'cpu' ? null : why]);
      assert.equal(logs.map((m) => m.level), level ? [level] : []);
      if (level) assert.match(logs[0]!.message, QK);
    }
  });

  test('qwen3: scoring and log-probs with device cuda / auto run on the CPU, say why once, and give the CPU results', async () => {
    const model = await core.loadModel(path.join(repoRoot, 'test', 'fixtures', 'models', 'qwen3'));
    const d = model.description;
    const blocks = [Int32Array.from({ length: 24 }, (_, i) => (i * 7 + 1) % d.vocab), Int32Array.from({ length: 17 }, (_, i) => (i * 5 + 3) % d.vocab)];
    const cpu = await core.scoreLayers(d, { blocks, n: 1, batchSize: 2, device: 'cpu' });
    const logs: core.DeviceMessage[] = [];
    const gpu = await core.scoreLayers(d, { blocks, n: 1, batchSize: 2, device: 'cuda', onLog: (m) => logs.push(m) });
    assert.is(gpu.device, 'cpu');
    assert.equal(gpu.matrix, cpu.matrix);
    assert.equal(logs.map((m) => m.level), ['warning']);
    assert.match(logs[0]!.message, /^--device cuda: CUDA cannot be used: .*q\/k norm.*; running on the CPU$/);
    const info: core.DeviceMessage[] = [];
    const lpAuto = await model.tokenLogprobs(blocks, { batchSize: 2, device: 'auto', onLog: (m) => info.push(m) });
    assert.equal(lpAuto, await model.tokenLogprobs(blocks, { batchSize: 2, device: 'cpu' }));
    assert.equal(info.map((m) => m.level), ['info']);
    assert.match(info[0]!.message, /^device: cpu \(CUDA not used: .*q\/k norm/);
  });

  test('the engine and the bindings refuse q/k norms themselves (no silent drop past resolveDevice)', async () => {
    const model = await core.loadModel(path.join(repoRoot, 'test', 'fixtures', 'models', 'qwen3'));
    const d = model.description, n = native();
    assert.throws(() => new CudaEngine(d), (e: unknown) => core.isStreamlineError(e, 'E_UNSUPPORTED') && QK.test((e as Error).message));
    // Layer upload into a CUDA context: the C API's roles array has no slot for the norms.
    const T = 8, spec = core.nativeLayerSpec(d.semantics, 1, T, true, 1);
    const views = d.layers[0]!.weights();
    const ctx = await n.cudaContext(spec);
    const [c1, m1] = await code(() => ctx.uploadLayer(0, views as never));
    ctx.destroy();
    assert.is(c1, 'E_UNSUPPORTED');
    assert.match(m1!, /q_norm\.weight\/k_norm\.weight/);
    // The CUDA trainer: params with q/k norm roles are refused (its C API keeps 17 roles).
    const params: Record<string, Float32Array> = {};
    for (const [r, v] of Object.entries(views)) {
      params[r] = new Float32Array(v!.shape.reduce((a, b) => a * b, 1));
      n.convertFloats(params[r]!, 'f32', v!.data, v!.dtype);
    }
    const inv = core.ropeFrequencies(d.rope!, T).invFreq;
    const [c2, m2] = await code(() => n.cudaTrainer('layer', core.nativeLayerSpec(d.semantics, 2, T, true, 1), params, inv));
    assert.is(c2, 'E_UNSUPPORTED');
    assert.match(m2!, /params\['q_norm\.weight'\]: the CUDA trainer does not learn q\/k norms/);
  });

  test('trainReplacement with device cuda and a q/k-norm layer trains on the CPU with a warning, bitwise the cpu run', async () => {
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
    assert.is(gpu.device, 'cpu');
    assert.equal(logs.map((m) => m.level), ['warning']);
    assert.match(logs[0]!.message, /q\/k norm \(q_norm\/k_norm\): the replacement trains on the CPU/);
    for (const r of Object.keys(init)) assert.equal(gpu.weights[r as keyof typeof gpu.weights], cpu.weights[r as keyof typeof cpu.weights], r);
    // Training moved the norms (they are parameters, not constants).
    const moved = (r: string) => cpu.weights[r as keyof typeof cpu.weights]!.some((v, i) => v !== init[r]![i]);
    assert.ok(moved('q_norm.weight') && moved('k_norm.weight'), 'q_norm/k_norm were trained');
  });

  test('prune on the qwen3 fixture with device cuda: one warning, then everything as on the CPU (layer replacement)', async () => {
    const model = await loadCharFixture('qwen3', tmp);
    const logs: core.DeviceMessage[] = [];
    const o = { calib, samples: 2, seqLen: 16, trainSamples: 4, epochs: 1, range: { start: 1, end: 3 }, replacement: 'layer' as const, seed: 3 };
    const gpu = await core.prune(model, { ...o, outDir: path.join(tmp, 'prune-cuda'), device: 'cuda', onLog: (m) => logs.push(m) });
    const cpu = await core.prune(model, { ...o, outDir: path.join(tmp, 'prune-cpu'), device: 'cpu' });
    assert.equal([gpu.device, gpu.training!.device], ['cpu', 'cpu']);
    assert.equal(logs.filter((m) => m.level === 'warning').map((m) => QK.test(m.message)), [true]);
    const x = core.openCheckpoint(cpu.exported!.outDir), y = core.openCheckpoint(gpu.exported!.outDir);
    assert.equal(y.names(), x.names());
    for (const t of x.names()) assert.ok(Buffer.from(x.tensor(t).data).equals(Buffer.from(y.tensor(t).data)), t);
  });

  test.after(() => rmSync(tmp, { recursive: true, force: true }));
}

test.run();
