// The TypeScript CUDA path end to end (binding_cuda.cpp → the C API of cuda/streamline_cuda.h → engine/cuda.ts),
// without a GPU: STREAMLINE_CUDA_LIBRARY points the loader at streamline_cuda_cpu.so, a test-only implementation of
// the C API over the CPU kernels (native/tests/cuda_cpu). It runs the CPU path's very kernels on the same inputs,
// so every result must equal the CPU path's exactly: any difference is a plumbing bug (inputs, masks, RoPE tables,
// weight slots and roles, saved states, the head, context reuse across batch shapes), not precision. The GPU's own
// precision is checked by cuda/tests (streamline_cuda_check) on a GPU machine.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as core from '../src/index.js';
import { native } from '../src/native.js';
import { collectPairs } from '../src/prune/collect.js';
import { PairCache } from '../src/train/pair-cache.js';
import { loadCharFixture, repoRoot, withEnv, writeCalibText } from './_helpers.js';

const fake = path.join(repoRoot, 'packages', 'core', 'build', 'testlib', 'streamline_cuda_cpu.so');
// Read once, at the first cudaInfo() of the process (imports above do not ask): set before anything does.
process.env.STREAMLINE_CUDA_LIBRARY = fake;

const fixtures = path.join(repoRoot, 'test', 'fixtures', 'models');
const MODELS = ['llama-gqa', 'llama-gqa-bf16', 'llama-bias', 'llama-dynamic-rope', 'llama-linear-rope', 'llama3-rope-tied', 'mistral',
  'mistral-window', 'qwen2-bias', 'qwen2-bias-bf16', 'qwen2-window', 'phi3', 'phi3-longrope-short', 'phi3-longrope-long', 'phi3-partial', 'opt', 'opt-gelu',
  'opt-postnorm', 'opt-proj', 'qwen3-yarn', 'llama-yarn-mscale', 'gemma'];
// Rows of different lengths (padded in a batch); the longest is the model's maximum, up to 70 (more than one
// ROW_ALIGN block of 64).
const seqs = (d: { vocab: number; maxPositionEmbeddings: number }) => {
  const P = Math.min(70, d.maxPositionEmbeddings);
  return [Math.ceil(P * 0.6), Math.ceil(P * 0.35), P].map((n, s) => Int32Array.from({ length: n }, (_, i) => (i * (7 + s) + 3 * s + 1) % d.vocab));
};

if (!existsSync(fake)) {
  console.log(`skip: ${fake} not built (CMake option STREAMLINE_CUDA_CPU_TEST)`);
} else {
  test('the test backend is what cudaInfo reports, and it is usable', () => {
    const c = core.runtimeInfo().cuda;
    assert.is(c.available, true, c.reason);
    assert.is(c.deviceName, 'CPU (streamline_cuda_cpu test backend)');
    assert.equal(core.resolveDevice('auto'), { requested: 'auto', device: 'cuda', missing: null });
  });

  for (const name of MODELS) {
    test(`${name}: scoring and token log-probs on the CUDA path equal the CPU path`, async () => {
      const model = await core.loadModel(path.join(fixtures, name));
      const blocks = seqs(model.description);
      for (const batchSize of [1, 2]) {
        const cpu = await core.scoreLayers(model.description, { blocks, n: 1, batchSize, device: 'cpu' });
        const gpu = await core.scoreLayers(model.description, { blocks, n: 1, batchSize, device: 'cuda' });
        assert.is(cpu.device, 'cpu');
        assert.is(gpu.device, 'cuda');
        assert.ok(gpu.gpuPeakBytes! > 0, 'peak device memory reported');
        assert.equal(gpu.matrix, cpu.matrix, `matrix, batch size ${batchSize}`);
        assert.equal([gpu.tokens, gpu.zeroNormTokens, gpu.windows], [cpu.tokens, cpu.zeroNormTokens, cpu.windows]);
      }
      // Batches of 2 then 1 sequences of different padded lengths (the second too small for the first context).
      const lpCpu = await model.tokenLogprobs(blocks, { batchSize: 2, device: 'cpu' });
      const lpGpu = await model.tokenLogprobs(blocks, { batchSize: 2, device: 'cuda' });
      assert.equal(lpGpu, lpCpu);
    });
  }

  // tokenLogprobs batches longest first; a batch that fits the open context (no more rows, no longer rows, at least
  // half its tokens) runs in it, padded with masked tokens, keeping the context and its LM head. The backend's call
  // log counts context creations and head uploads; the results stay the CPU's bitwise.
  test('tokenLogprobs on cuda: later batches run in the first context (one LM head upload) when they fit', async () => {
    const calls = path.join(os.tmpdir(), `streamline-cuda-calls-${process.pid}.log`);
    const logged = async <T>(f: () => Promise<T>): Promise<[T, string[]]> => {
      rmSync(calls, { force: true });
      process.env.STREAMLINE_CUDA_CPU_CALLS = calls;
      try {
        const r = await f();
        return [r, existsSync(calls) ? readFileSync(calls, 'utf8').trim().split('\n') : []];
      } finally {
        delete process.env.STREAMLINE_CUDA_CPU_CALLS;
        rmSync(calls, { force: true });
      }
    };
    // Forward lengths (one less than the sequence): P-1, P-6 | P-11, 0.6P-1 | 0.5P-1, 0.3P-1 | 10.
    const lens = (P: number) => [P, P - 5, P - 10, Math.floor(P * 0.6), Math.floor(P * 0.5), Math.floor(P * 0.3), 11];
    const cases = [
      // T 128 for the first four, 64 after: 2 × 64 still fills half of 2 × 128; the single row of 64 does not.
      { name: 'mistral', P: 120, want: ['create 2x128', 'upload_head', 'create 1x64', 'upload_head'] },
      { name: 'llama-dynamic-rope', P: 17, want: ['create 2x64', 'upload_head'] },
      { name: 'opt', P: 65, want: ['create 2x64', 'upload_head'] },
    ];
    for (const c of cases) {
      const model = await core.loadModel(path.join(fixtures, c.name));
      const d = model.description;
      const blocks = lens(c.P).map((n, s) => Int32Array.from({ length: n }, (_, i) => (i * (5 + s) + 2 * s + 1) % d.vocab));
      const cpu = await model.tokenLogprobs(blocks, { batchSize: 2, device: 'cpu' });
      const [gpu, log] = await logged(() => model.tokenLogprobs(blocks, { batchSize: 2, device: 'cuda' }));
      assert.equal(gpu, cpu, c.name);
      assert.equal(log, c.want, c.name);
    }
    // An `mlp` replacement block runs in a second context of the same (padded) shape.
    const model = await core.loadModel(path.join(fixtures, 'mistral'));
    const d = model.description;
    const mlpRoles = Object.fromEntries(Object.entries(d.layers[1]!.weights()).filter(([r]) => /^(mlp_norm|gate|up|down)\./.test(r)));
    const pruned = core.prunedDescription(d, 1, 2, { kind: 'mlp', weights: mlpRoles } as never);
    const blocks = lens(120).map((n, s) => Int32Array.from({ length: n }, (_, i) => (i * (3 + s) + s) % d.vocab));
    const cpu = await core.tokenLogprobs(pruned, blocks, { batchSize: 2, device: 'cpu' });
    const [gpu, log] = await logged(() => core.tokenLogprobs(pruned, blocks, { batchSize: 2, device: 'cuda' }));
    assert.equal(gpu, cpu, 'mlp block');
    assert.equal(log, ['create 2x128', 'create 2x128 mlp', 'upload_head', 'create 1x64', 'create 1x64 mlp', 'upload_head']);
  });

  test('pruned models in memory: an `mlp` replacement block (second context) and a `layer` one', async () => {
    const model = await core.loadModel(path.join(fixtures, 'llama-gqa'));
    const d = model.description;
    const blocks = seqs(d);
    const w = d.layers[1]!.weights();
    const mlpRoles = Object.fromEntries(Object.entries(w).filter(([r]) => /^(mlp_norm|gate|up|down)\./.test(r)));
    for (const r of [{ kind: 'mlp', weights: mlpRoles }, { kind: 'layer', weights: w }, { kind: 'none' }] as const) {
      const pruned = core.prunedDescription(d, 1, 2, r as never);
      const cpu = await core.tokenLogprobs(pruned, blocks, { batchSize: 3, device: 'cpu' });
      const gpu = await core.tokenLogprobs(pruned, blocks, { batchSize: 3, device: 'cuda' });
      assert.equal(gpu, cpu, r.kind);
    }
  });

  // Batches of blocks (collectPairs' batchSize: the weights streamed once per batch) give the same pairs, block by block
  // in order: bitwise on the CPU, and here on the test backend (a real GPU may differ by GEMM rounding). 5 blocks: the
  // last batch is short (it runs padded in the open context on cuda). mistral-window: windows shorter than a block.
  for (const name of ['mistral', 'mistral-window']) {
    test(`${name}: pair collection x = h[start], y = h[end]: the GPU's equal the CPU's, for any batch size`, async () => {
      const model = await core.loadModel(path.join(fixtures, name));
      const d = model.description;
      const blocks = [0, 1, 2, 3, 4].map((s) => Int32Array.from({ length: 32 }, (_, i) => (i * 3 + s * 7) % d.vocab));
      const collect = async (device: 'cpu' | 'cuda', batchSize: number) => {
        const c = new PairCache({ blocks: 5, rows: 32, hidden: d.semantics.hidden, dtype: 'f32', budgetBytes: 1 << 24, dir: '/tmp', keep: false, targets: true });
        await collectPairs(d, 1, 2, blocks, c, { device, batchSize });
        const out = blocks.map((_, b) => c.read(b));
        c.close();
        return out;
      };
      const want = await collect('cpu', 1);
      for (const [device, batchSize] of [['cpu', 2], ['cpu', 4], ['cuda', 1], ['cuda', 3]] as const)
        assert.equal(await collect(device, batchSize), want, `${device}, batch size ${batchSize}`);
      let code = '';
      await collect('cpu', 0).catch((e) => { code = e.code; });
      assert.is(code, 'E_INVALID_OPTION');
    });
  }

  test('the binding: one layer with weights as bare Float32Arrays equals decoderLayerForward on the mapped views', async () => {
    const model = await core.loadModel(path.join(fixtures, 'llama-gqa'));
    const d = model.description;
    const n = native();
    const T = 64, D = d.semantics.hidden;
    const x = Float32Array.from({ length: T * D }, (_, i) => Math.sin(i * 0.37));
    const positions = Int32Array.from({ length: T }, (_, t) => t);
    const mask = Uint8Array.from({ length: T }, (_, t) => (t < 50 ? 1 : 0));
    const rope = core.ropeFrequencies(d.rope!, 50);
    const views = d.layers[0]!.weights();
    const bare = Object.fromEntries(Object.entries(views).map(([r, v]) => [r, new Float32Array(v!.data.buffer, v!.data.byteOffset, v!.data.byteLength / 4)]));
    assert.ok(Object.values(views).every((v) => v!.dtype === 'f32'), 'an f32 fixture');
    const spec = core.nativeLayerSpec(d.semantics, 1, T, true, 1);
    const want = new Float32Array(T * D);
    await n.decoderLayerForward(want, x, spec, views, positions, mask, rope.invFreq, null);
    const ctx = await n.cudaContext(spec);
    ctx.setInputs(positions, mask, rope.invFreq, 1);
    await ctx.uploadHidden(x);
    await ctx.uploadLayer(1, bare);
    await ctx.runLayer(1);
    const got = new Float32Array(T * D);
    await ctx.downloadHidden(got);
    ctx.destroy();
    assert.equal(got, want);
    const c2 = await n.cudaContext(spec);
    let msg = '';
    try { await c2.uploadLayer(0, { ...bare, 'q.weight': new Float32Array(3) }); } catch (e) { msg = `${(e as { code: string }).code} ${(e as Error).message}`; }
    assert.match(msg, /^E_SHAPE q\.weight: expected \d+ elements for this spec, got 3$/);
    c2.destroy();
  });

  test('the binding: bad arguments, busy and closed contexts, backend errors as coded JS errors', async () => {
    const model = await core.loadModel(path.join(fixtures, 'llama-gqa'));
    const d = model.description;
    const spec = core.nativeLayerSpec(d.semantics, 1, 64, true, 1);
    const code = async (f: () => unknown) => { try { await f(); return 'none'; } catch (e) { return (e as { code: string }).code; } };
    const n = native();
    assert.is(await code(() => n.cudaContext({ ...spec, heads: undefined })), 'E_NATIVE_ARG');
    assert.is(await code(() => n.cudaContext({ ...spec, rotDim: 3 })), 'E_SHAPE');
    const ctx = await n.cudaContext(spec);
    const w = d.layers[0]!.weights();
    assert.is(await code(() => ctx.uploadLayer(2 as 0, w as never)), 'E_NATIVE_ARG');
    assert.is(await code(() => ctx.uploadLayer(0, { ...w, 'bogus.weight': w['q.weight'] } as never)), 'E_NATIVE_ARG');
    assert.is(await code(() => ctx.uploadLayer(0, { ...w, 'q.weight': w['k.weight'] } as never)), 'E_SHAPE');
    assert.is(await code(() => ctx.uploadHidden(new Float32Array(5))), 'E_SHAPE');
    // A failure inside the backend: its last_error text, code E_CUDA.
    let msg = '';
    try { await ctx.runLayer(1); } catch (e) { msg = `${(e as { code: string }).code}: ${(e as Error).message}`; }
    assert.is(msg, 'E_CUDA: run_layer: run_layer: no layer uploaded into this slot');
    const first = ctx.uploadLayer(0, w as never);
    assert.is(await code(() => ctx.runLayer(0)), 'E_CUDA_BUSY');
    assert.is(await code(() => ctx.destroy()), 'E_CUDA_BUSY');
    await first;
    await ctx.uploadHead({ hidden: d.semantics.hidden, vocab: d.vocab, norm: d.semantics.norm, normEps: d.semantics.normEps }, { 'lm_head.weight': d.global()['lm_head.weight'] ?? d.global()['embed.weight'] } as never);
    assert.is(await code(() => ctx.headLogprobs(new Int32Array(64).fill(d.vocab), new Float32Array(64))), 'E_TOKEN_RANGE');
    ctx.destroy();
    ctx.destroy();
    assert.is(await code(() => ctx.runLayer(0)), 'E_CUDA');
    const mem = n.cudaMemory();
    assert.ok(mem.peak >= mem.current && mem.current >= 0);
  });

  test('phi3-partial (partial RoPE): prune with device cuda scores and trains on the GPU path (train_set_rotary_dim), no warning, bitwise the CPU export', async () => {
    const tmp = mkdtempSync(path.join(os.tmpdir(), 'streamline-cuda-partial-'));
    try {
      const model = await loadCharFixture('phi3-partial', tmp);
      const calib = writeCalibText(tmp);
      const logs: core.DeviceMessage[] = [];
      const o = { calib, samples: 2, seqLen: 16, trainSamples: 4, epochs: 1, n: 1, replacement: 'layer' as const, seed: 5 };
      const gpu = await core.prune(model, { ...o, outDir: path.join(tmp, 'cuda'), device: 'cuda', onLog: (m) => logs.push(m) });
      const cpu = await core.prune(model, { ...o, outDir: path.join(tmp, 'cpu'), device: 'cpu' });
      assert.equal([gpu.device, gpu.training!.device, cpu.training!.device], ['cuda', 'cuda', 'cpu']);
      assert.equal(gpu.score!.matrix, cpu.score!.matrix, 'scoring on the GPU path equals the CPU');
      assert.equal(logs.filter((m) => m.level === 'warning'), []);
      const x = core.openCheckpoint(cpu.exported!.outDir), y = core.openCheckpoint(gpu.exported!.outDir);
      assert.equal(y.names(), x.names());
      for (const t of x.names()) assert.ok(Buffer.from(x.tensor(t).data).equals(Buffer.from(y.tensor(t).data)), t);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });

  test('phi3-partial --loss lm with device cuda: R and the frozen tail rotate 12 of 16 dims on the GPU trainer (train_set_rotary_dim), bitwise the CPU run', async () => {
    const tmp = mkdtempSync(path.join(os.tmpdir(), 'streamline-cuda-partial-lm-'));
    try {
      const model = await loadCharFixture('phi3-partial', tmp);
      const calib = writeCalibText(tmp);
      for (const replacement of ['mlp', 'layer'] as const) {
        const logs: core.DeviceMessage[] = [], calls = path.join(tmp, `calls-${replacement}.txt`);
        const o = { calib, samples: 2, seqLen: 16, trainSamples: 4, epochs: 1, range: { start: 1, end: 2 }, replacement, loss: 'lm' as const, seed: 3 };
        const gpu = await withEnv({ STREAMLINE_CUDA_CPU_CALLS: calls }, () =>
          core.prune(model, { ...o, outDir: path.join(tmp, `cuda-${replacement}`), device: 'cuda', onLog: (m) => logs.push(m) }));
        const cpu = await core.prune(model, { ...o, outDir: path.join(tmp, `cpu-${replacement}`), device: 'cpu' });
        assert.equal([gpu.device, gpu.training!.device], ['cuda', 'cuda'], replacement);
        assert.equal(logs.filter((m) => m.level === 'warning'), [], replacement);
        assert.ok(readFileSync(calls, 'utf8').split('\n').includes('train_set_rotary_dim 12'), replacement);
        const x = core.openCheckpoint(cpu.exported!.outDir), y = core.openCheckpoint(gpu.exported!.outDir);
        for (const t of x.names()) assert.ok(Buffer.from(x.tensor(t).data).equals(Buffer.from(y.tensor(t).data)), `${replacement} ${t}`);
      }
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
}

test.run();
