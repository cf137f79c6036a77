// Per-layer RoPE (LayerSource.rope) on the CUDA path, with the CPU-emulated backend (streamline_cuda_cpu.so, as in
// cuda-path.test.ts): CudaEngine rebuilds the context's RoPE tables with set_inputs before a layer whose rope differs
// from the tables', so every result must be the CPU path's bitwise; a difference means a layer ran with another
// layer's frequencies (or the hidden state was disturbed by set_inputs).
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as core from '../src/index.js';
import { cudaUnsupported } from '../src/engine/cuda.js';
import { openModelDir } from '../src/model-dir.js';
import { native } from '../src/native.js';
import type { ModelDescription } from '../src/index.js';
import { loadCharFixture, repoRoot, withEnv, writeCalibText } from './_helpers.js';

const fake = path.join(repoRoot, 'packages', 'core', 'build', 'testlib', 'streamline_cuda_cpu.so');
process.env.STREAMLINE_CUDA_LIBRARY = fake;  // read at the first cudaInfo() of the process

const fixtures = path.join(repoRoot, 'test', 'fixtures', 'models');
/** The fixture with its sliding layers (qwen2-window: 1 and 2; mistral-window: all) on base 100, linear factor 2. */
function describeWith(name: string, sliding: boolean): ModelDescription {
  const md = openModelDir(path.join(fixtures, name));
  const r = md.config.rope!;
  const config = sliding ? { ...md.config, ropeByLayerType: { sliding_attention: { theta: 100, rotaryDim: r.rotaryDim, scaling: { type: 'linear', factor: 2 } } } } : md.config;
  return core.describeModel({ ...md, config } as typeof md);
}
const seqs = (d: ModelDescription) => [45, 20, 70].map((n, s) => Int32Array.from({ length: n }, (_, i) => (i * (7 + s) + 3 * s + 1) % d.vocab));

/**
 * Counts setInputs calls on the CUDA contexts created meanwhile. The binding's methods are read-only, so the addon's
 * cudaContext is wrapped: contexts come back behind a proxy that counts and forwards to the real object.
 */
function countSetInputs(): { n: number; restore: () => void } {
  const n = native() as unknown as Record<string, unknown>;
  const orig = n.cudaContext as (spec: unknown) => Promise<object>;
  const counter = { n: 0, restore: () => { n.cudaContext = orig; } };
  n.cudaContext = async (spec: unknown) => {
    const ctx = await orig.call(n, spec) as Record<string | symbol, unknown>;
    return new Proxy(ctx, {
      get(target, prop) {
        const v = target[prop];
        if (typeof v !== 'function') return v;
        return (...a: unknown[]) => {
          if (prop === 'setInputs') counter.n++;
          return (v as (...x: unknown[]) => unknown).apply(target, a);
        };
      },
    });
  };
  return counter;
}

if (!existsSync(fake)) {
  console.log(`skip: ${fake} not built (CMake option STREAMLINE_CUDA_CPU_TEST)`);
} else {
  test('per-layer ropes: the model stays on the CUDA path', () => {
    assert.is(core.runtimeInfo().cuda.available, true, 'the test backend is usable');
    assert.is(cudaUnsupported(describeWith('qwen2-window', true)), null);
  });

  for (const name of ['qwen2-window', 'mistral-window']) {
    test(`${name} with its own rope on sliding layers: scoring and log-probs on cuda are bitwise the CPU`, async () => {
      const d = describeWith(name, true);
      const blocks = seqs(d);
      for (const batchSize of [1, 2]) {
        const cpu = await core.scoreLayers(d, { blocks, n: 1, batchSize, device: 'cpu' });
        const gpu = await core.scoreLayers(d, { blocks, n: 1, batchSize, device: 'cuda' });
        assert.is(gpu.device, 'cuda');
        assert.equal(gpu.matrix, cpu.matrix, `matrix, batch size ${batchSize}`);
      }
      const lpCpu = await core.tokenLogprobs(d, blocks, { batchSize: 2, device: 'cpu' });
      const lpGpu = await core.tokenLogprobs(d, blocks, { batchSize: 2, device: 'cuda' });
      assert.equal(lpGpu, lpCpu);
      // The per-layer rope matters for these inputs: one rope for every layer gives other log-probs.
      const plain = await core.tokenLogprobs(describeWith(name, false), blocks, { batchSize: 2, device: 'cuda' });
      let diff = 0;
      for (const [i, lp] of plain.entries()) for (let t = 0; t < lp.length; t++) diff = Math.max(diff, Math.abs(lp[t]! - lpGpu[i]![t]!));
      console.log(`  ${name}: max |Δ log p| per-layer rope vs one rope on cuda: ${diff.toExponential(3)}`);
      assert.ok(diff > 1e-3, `per-layer rope changes log-probs (${diff})`);
    });
  }

  test('set_inputs runs only where the rope changes: once per batch, plus once per change between layers', async () => {
    const counter = countSetInputs();
    try {
      // qwen2-window: [full, sliding, sliding] → load (model's rope) + one switch at layer 1, per batch.
      const d = describeWith('qwen2-window', true);
      const blocks = seqs(d);
      await core.tokenLogprobs(d, blocks, { batchSize: 3, device: 'cuda' });
      assert.is(counter.n, 2);
      counter.n = 0;
      await core.tokenLogprobs(describeWith('qwen2-window', false), blocks, { batchSize: 3, device: 'cuda' });
      assert.is(counter.n, 1, 'one rope for all layers: set once at load');
      // a layer replacement at layer 1 keeps the sliding rope; the linear fold's kept layer 2 too
      counter.n = 0;
      const pruned = core.prunedDescription(d, 1, 2, { kind: 'layer', weights: d.layers[1]!.weights() });
      const gpu = await core.tokenLogprobs(pruned, blocks, { batchSize: 3, device: 'cuda' });
      assert.is(counter.n, 2);
      assert.equal(gpu, await core.tokenLogprobs(pruned, blocks, { batchSize: 3, device: 'cpu' }));
    } finally {
      counter.restore();
    }
  });

  test('pruned with an `mlp` block between ropes: the main context\'s tables follow the layers', async () => {
    const d = describeWith('qwen2-window', true);
    const w = d.layers[1]!.weights();
    const mlpRoles = Object.fromEntries(Object.entries(w).filter(([r]) => /^(mlp_norm|gate|up|down)\./.test(r)));
    // [layer 0 (full), mlp, layer 2 (sliding)]; and [mlp, layer 1, layer 2] where the first decoder layer is sliding
    for (const [s, e] of [[1, 2], [0, 1]] as const) {
      const pruned = core.prunedDescription(d, s, e, { kind: 'mlp', weights: mlpRoles } as never);
      const blocks = seqs(d);
      const cpu = await core.tokenLogprobs(pruned, blocks, { batchSize: 2, device: 'cpu' });
      const gpu = await core.tokenLogprobs(pruned, blocks, { batchSize: 2, device: 'cuda' });
      assert.equal(gpu, cpu, `mlp at [${s}, ${e})`);
    }
  });

  // Training: the replacement rotates like layer start (one rope: the GPU trainer's own tables). An lm tail whose frozen
  // layers rotate otherwise goes to the GPU trainer with their frequencies (spec.tailRopeInvFreq ->
  // train_set_lm_tail_rope at setLmTail): both ranges train on cuda with no warning, bitwise the CPU run (the test
  // backend runs the CPU's lm step with the tail ropes it was handed). cuda-train-old.test.ts: a library without the
  // function falls back to the CPU with a warning naming it.
  test('prune --loss lm with per-layer ropes on cuda: on the GPU whether or not the tail rotates like R, bitwise the CPU', async () => {
    const tmp = mkdtempSync(path.join(os.tmpdir(), 'streamline-cuda-rope-lm-'));
    try {
      const model = { ...await loadCharFixture('qwen2-window', tmp), description: describeWith('qwen2-window', true) };
      const calib = writeCalibText(tmp);
      // [1, 2): R sliding, tail layer 2 sliding (one rope); [0, 1): R full, tail layers 1 and 2 sliding (their own)
      for (const [range, mixed] of [[{ start: 1, end: 2 }, false], [{ start: 0, end: 1 }, true]] as const) {
        for (const replacement of ['layer', 'mlp'] as const) {
          const what = `${replacement} [${range.start}, ${range.end})`;
          const logs: core.DeviceMessage[] = [], calls = path.join(tmp, `calls-${replacement}-${range.start}.txt`);
          const o = { calib, samples: 2, seqLen: 16, trainSamples: 4, epochs: 1, range, replacement, loss: 'lm' as const, seed: 3 };
          const gpu = await withEnv({ STREAMLINE_CUDA_CPU_CALLS: calls }, () =>
            core.prune(model, { ...o, outDir: path.join(tmp, `cuda-${replacement}-${range.start}`), device: 'cuda', onLog: (m) => logs.push(m) }));
          const cpu = await core.prune(model, { ...o, outDir: path.join(tmp, `cpu-${replacement}-${range.start}`), device: 'cpu' });
          assert.equal([gpu.device, gpu.training!.device], ['cuda', 'cuda'], what);
          assert.equal(logs.filter((m) => m.level === 'warning').map((m) => m.message), [], what);
          const lines = readFileSync(calls, 'utf8').split('\n');
          // the tail's own ropes reached the trainer only where the tail has them (then for both of its layers)
          assert.is(lines.includes('train_set_lm_tail_rope 2'), mixed, `${what}: ${lines.filter((l) => l.startsWith('train_set_lm')).join(' | ')}`);
          const x = core.openCheckpoint(cpu.exported!.outDir), y = core.openCheckpoint(gpu.exported!.outDir);
          assert.equal(y.names(), x.names(), what);
          for (const t of x.names()) assert.ok(Buffer.from(x.tensor(t).data).equals(Buffer.from(y.tensor(t).data)), `${what} ${t}`);
        }
      }
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });

  test('cudaTrainer with per-layer tail ropes: checked as lmLossStep checks them, one entry per frozen layer at setLmTail', async () => {
    assert.is(native().cudaInfo().lmTailRope, true);
    const d = describeWith('qwen2-window', true);
    const T = 8, half = d.semantics.headDim / 2;
    const base = core.nativeLayerSpec(d.semantics, 1, T, true, 1);
    const w = d.layers[1]!.weights();
    const params: Record<string, Float32Array> = {};
    for (const r of ['mlp_norm.weight', 'gate.weight', 'up.weight', 'down.weight'] as const) {
      params[r] = new Float32Array(w[r]!.shape.reduce((a, b) => a * b, 1));
      native().convertFloats(params[r]!, 'f32', w[r]!.data, w[r]!.dtype);
    }
    const code = async (f: () => unknown) => { try { await f(); return ['none', '']; } catch (e) { return [(e as { code: string }).code, (e as Error).message]; } };
    const open = (extra: object) => native().cudaTrainer('mlp', { ...base, ...extra } as never, params, new Float32Array(half).fill(0.5));
    const own = new Float32Array(half).fill(0.25);
    // bad entries are refused at cudaTrainer, before the backend sees them
    assert.equal((await code(() => open({ tailRopeInvFreq: [new Float32Array(half + 1)] })))[0], 'E_SHAPE');
    assert.equal((await code(() => open({ tailRopeInvFreq: own })))[0], 'E_NATIVE_ARG');
    assert.equal((await code(() => open({ tailRopeInvFreq: [own, null], tailRopeAttentionScaling: [1] })))[0], 'E_NATIVE_ARG');
    assert.equal((await code(() => open({ tailRopeAttentionScaling: [1, NaN] })))[0], 'E_NATIVE_ARG');
    const [c0, m0] = await code(() => native().cudaTrainer('mlp', { ...core.nativeLayerSpec(d.semantics, 1, T, false, 1), tailRopeInvFreq: [own] } as never, params, null));
    assert.is(c0, 'E_NATIVE_ARG');
    assert.match(m0!, /without RoPE/);
    // two entries: a tail of two layers takes them, a tail of one is refused with both counts named
    const t = await open({ tailRopeInvFreq: [own, null], tailRopeAttentionScaling: [1.5, 1] });
    try {
      const g = d.global();
      const head = { 'final_norm.weight': g['final_norm.weight']!, 'lm_head.weight': g['lm_head.weight'] ?? g['embed.weight']! };
      await t.setLmTail([d.layers[1]!.weights(), d.layers[2]!.weights()] as never, head as never);
      const [c1, m1] = await code(() => t.setLmTail([d.layers[2]!.weights()] as never, head as never));
      assert.is(c1, 'E_NATIVE_ARG');
      assert.match(m1!, /1 frozen layers, but the trainer's spec\.tailRopeInvFreq \/ tailRopeAttentionScaling have 2 entries/);
    } finally {
      t.destroy();
    }
  });
}

test.run();
