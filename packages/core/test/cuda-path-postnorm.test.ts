// Post-sublayer norms (Gemma post_attn_norm / post_mlp_norm) stay off the CUDA backend, with the CPU-emulated backend
// (streamline_cuda_cpu.so, as in cuda-path.test.ts) standing in for a usable GPU: cudaUnsupported names them, so
// resolveDevice falls back to the CPU with one message and scoring / log-probs give the CPU's results; CudaEngine
// refuses such a model; and the CUDA bindings refuse the roles as a second guard (never dropped silently).
import { existsSync } from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as core from '../src/index.js';
import { CudaEngine, cudaUnsupported } from '../src/engine/cuda.js';
import { native, type NativeHeadWeights, type NativeLayerWeights } from '../src/native.js';
import { repoRoot, withPostNorms } from './_helpers.js';

const fake = path.join(repoRoot, 'packages', 'core', 'build', 'testlib', 'streamline_cuda_cpu.so');
process.env.STREAMLINE_CUDA_LIBRARY = fake;  // read at the first cudaInfo() of the process

const code = async (f: () => unknown) => { try { await f(); return ['none', '']; } catch (e) { return [(e as { code: string }).code, (e as Error).message]; } };
const REASON = 'post-sublayer norms (Gemma) are not implemented on the CUDA backend (llama)';

if (!existsSync(fake)) {
  console.log(`skip: ${fake} not built (CMake option STREAMLINE_CUDA_CPU_TEST)`);
} else {
  const load = async () => {
    const d = (await core.loadModel(path.join(repoRoot, 'test', 'fixtures', 'models', 'llama-gqa'))).description;
    return { d, p: withPostNorms(d) };
  };

  test('cudaUnsupported names the post norms; resolveDevice falls back once (cuda: warning, auto: info); CudaEngine refuses', async () => {
    assert.is(core.runtimeInfo().cuda.available, true, 'the test backend is usable');
    const { d, p } = await load();
    assert.is(cudaUnsupported(d), null);
    assert.is(cudaUnsupported(p), REASON);
    for (const [want, level] of [['cuda', 'warning'], ['auto', 'info']] as const) {
      const logs: core.DeviceMessage[] = [];
      assert.is(core.resolveDevice(want, (m) => logs.push(m), cudaUnsupported(p)).device, 'cpu');
      assert.equal(logs.map((m) => m.level), [level]);
      assert.match(logs[0]!.message, REASON);
    }
    const [c, m] = await code(() => new CudaEngine(p));
    assert.is(c, 'E_UNSUPPORTED');
    assert.match(m, REASON);
  });

  test('scoring and log-probs with device cuda run on the CPU with the post norms, as device cpu does', async () => {
    const { p } = await load();
    const blocks = [Int32Array.from({ length: 16 }, (_, i) => (i * 7 + 1) % p.vocab), Int32Array.from({ length: 11 }, (_, i) => (i * 5 + 3) % p.vocab)];
    const logs: core.DeviceMessage[] = [];
    const gpu = await core.scoreLayers(p, { blocks, n: 1, batchSize: 2, device: 'cuda', onLog: (m) => logs.push(m) });
    const cpu = await core.scoreLayers(p, { blocks, n: 1, batchSize: 2, device: 'cpu' });
    assert.is(gpu.device, 'cpu');
    assert.equal(gpu.matrix, cpu.matrix);
    assert.equal(logs.map((m) => m.level), ['warning']);
    const lp = await core.tokenLogprobs(p, blocks, { batchSize: 2, device: 'cuda' });
    assert.equal(lp, await core.tokenLogprobs(p, blocks, { batchSize: 2, device: 'cpu' }));
  });

  test('the bindings refuse the roles: uploadLayer, cudaTrainer params, setLmTail layers (E_UNSUPPORTED, naming them)', async () => {
    const { d, p } = await load();
    const n = native(), T = 8;
    const spec = core.nativeLayerSpec(p.semantics, 1, T, true, 1);
    const ctx = await n.cudaContext(spec);
    try {
      const [c, m] = await code(() => ctx.uploadLayer(0, p.layers[1]!.weights() as never));
      assert.is(c, 'E_UNSUPPORTED');
      assert.match(m, 'post_attn_norm.weight/post_mlp_norm.weight');
      assert.equal(await code(() => ctx.uploadLayer(0, d.layers[1]!.weights() as never)), ['none', ''], 'the same layer without them uploads');
    } finally {
      ctx.destroy();
    }
    const w = p.layers[0]!.weights(), params: Record<string, Float32Array> = {};
    for (const r of ['mlp_norm.weight', 'gate.weight', 'up.weight', 'down.weight', 'post_mlp_norm.weight'] as const) {
      params[r] = new Float32Array(w[r]!.shape.reduce((a, b) => a * b, 1));
      n.convertFloats(params[r]!, 'f32', w[r]!.data, w[r]!.dtype);
    }
    const invFreq = core.ropeFrequencies(p.rope!, T).invFreq;
    const [c1, m1] = await code(() => n.cudaTrainer('mlp', spec, params, invFreq));
    assert.is(c1, 'E_UNSUPPORTED');
    assert.match(m1, "params['post_attn_norm.weight'/'post_mlp_norm.weight']");
    const { 'post_mlp_norm.weight': _, ...plain } = params;
    const t = await n.cudaTrainer('mlp', spec, plain, invFreq);
    try {
      const g = p.global();
      const head = { 'final_norm.weight': g['final_norm.weight']!, 'lm_head.weight': (g['lm_head.weight'] ?? g['embed.weight'])! } as NativeHeadWeights;
      const [c2, m2] = await code(() => t.setLmTail([p.layers[2]!.weights() as never as NativeLayerWeights], head));
      assert.is(c2, 'E_UNSUPPORTED');
      assert.match(m2, 'setLmTail: layers[0]: post_attn_norm.weight/post_mlp_norm.weight');
      assert.equal(await code(() => t.setLmTail([d.layers[2]!.weights() as never as NativeLayerWeights], head)), ['none', '']);
    } finally {
      t.destroy();
    }
  });
}

test.run();
