// Replacement training on a CUDA backend built before streamline_cuda_train_eval, train_get_state/set_state, the lm
// functions, the sliding-window calls, the q/k norm calls, upload_layer_post_norm, train_set_rotary_dim and
// train_set_lm_tail_rope existed: streamline_cuda_cpu_old.so is the test backend (native/tests/cuda_cpu) compiled without them.
// The binding resolves them optionally; the trainer then validates on the CPU with downloaded weights (still the CPU
// run's numbers bitwise), saves no checkpoint on interruption, refuses to resume on cuda, and trains --loss lm on the
// CPU after a warning. One backend library per
// process, hence a file of its own.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as core from '../src/index.js';
import { native } from '../src/native.js';
import { PairCache } from '../src/train/pair-cache.js';
import { trainReplacement } from '../src/train/trainer.js';
import { loadCharFixture, repoRoot, withEnv, writeCalibText } from './_helpers.js';

const old = path.join(repoRoot, 'packages', 'core', 'build', 'testlib', 'streamline_cuda_cpu_old.so');
process.env.STREAMLINE_CUDA_LIBRARY = old;  // read at the first cudaInfo() of the process

const tmp = mkdtempSync(path.join(os.tmpdir(), 'streamline-cuda-train-old-'));
const calib = writeCalibText(tmp);

const fixture = (name: string): Promise<core.LoadedModel> => loadCharFixture(name, tmp);

const base = (out: string): core.PruneOptions => ({
  outDir: path.join(tmp, out), calib, samples: 2, seqLen: 48, trainSamples: 10, range: { start: 1, end: 2 }, replacement: 'layer',
  lr: 5e-3, minLr: 1e-3, warmup: 1, clip: 0.05, microBatch: 2, gradAccum: 2, epochs: 2, evalEvery: 2, seed: 5, validationFraction: 0.3,
});
const hist = (r: core.PruneResult) => r.training!.history.map((h) => [h.step, h.loss, h.valLoss, h.lr]);
const code = async (f: () => unknown) => { try { await f(); return ['none', '']; } catch (e) { return [(e as { code: string }).code, (e as Error).message]; } };

if (!existsSync(old)) {
  console.log(`skip: ${old} not built (CMake option STREAMLINE_CUDA_CPU_TEST)`);
} else {
  test('the binding: an old backend trains, but has no eval and no state functions (E_UNSUPPORTED)', async () => {
    assert.is(core.runtimeInfo().cuda.available, true);
    const d = (await fixture('llama-gqa')).description;
    const n = native();
    const T = 8, D = d.semantics.hidden;
    const w = d.layers[0]!.weights();
    const params: Record<string, Float32Array> = {};
    for (const r of ['mlp_norm.weight', 'gate.weight', 'up.weight', 'down.weight'] as const)
      params[r] = new Float32Array(w[r]!.data.buffer, w[r]!.data.byteOffset, w[r]!.data.byteLength / 4).slice();
    const t = await n.cudaTrainer('mlp', core.nativeLayerSpec(d.semantics, 1, T, false, 1), params, null);
    const x = Float32Array.from({ length: T * D }, (_, i) => Math.sin(i * 0.3)), y = Float32Array.from(x, (v) => v * 0.5);
    assert.ok((await t.step(x, y, null, null, 1, 1)) > 0);
    assert.is(t.hasEval(), false);
    assert.is(t.hasState(), false);
    const [c1, m1] = await code(() => t.eval(x, y, null, null, 1));
    assert.is(c1, 'E_UNSUPPORTED');
    assert.match(m1!, /lacks streamline_cuda_train_eval/);
    assert.is((await code(() => t.getState('up.weight')))[0], 'E_UNSUPPORTED');
    assert.is(t.hasLm(), false);
    const [c2, m2] = await code(() => t.setLmTail([], {}));
    assert.is(c2, 'E_UNSUPPORTED');
    assert.match(m2!, /lacks streamline_cuda_train_step_lm/);
    assert.is((await code(() => t.stepLm(x, new Int32Array(T), null, null, 1)))[0], 'E_UNSUPPORTED');
    assert.is((await code(() => t.evalLm(x, new Int32Array(T), null, null, 1)))[0], 'E_UNSUPPORTED');
    assert.is(t.hasStageLm(), false);
    const [c3, m3] = await code(() => t.stageLm(x, new Int32Array(T), null, null, 1));
    assert.is(c3, 'E_UNSUPPORTED');
    assert.match(m3!, /lacks streamline_cuda_train_stage_lm/);
    assert.is((await code(() => t.stepLmStaged(1)))[0], 'E_UNSUPPORTED');
    assert.is(t.hasStageBf16(), false);
    assert.is(t.hasKeptPairs(), false);
    assert.is((await code(() => t.keepPairs(1, true, 0.5)))[0], 'E_UNSUPPORTED');
    const [c4, m4] = await code(() => t.stageBf16([new Uint16Array(x.length)], [new Uint16Array(x.length)], null, null, 1));
    assert.is(c4, 'E_UNSUPPORTED');
    assert.match(m4!, /lacks streamline_cuda_train_stage_bf16/);
    assert.is((await code(() => t.stageLmBf16([new Uint16Array(x.length)], new Int32Array(T), null, null, 1)))[0], 'E_UNSUPPORTED');
    assert.is(t.hasWindows(), false);
    const [c5, m5] = await code(() => t.setWindows(0, []));
    assert.is(c5, 'E_UNSUPPORTED');
    assert.match(m5!, /lacks streamline_cuda_train_set_windows/);
    t.destroy();
  });

  test('prune on cuda: validation on the CPU from downloaded weights, bitwise the CPU run', async () => {
    const model = await fixture('llama-gqa');
    const cpu = await core.prune(model, { ...base('cpu'), device: 'cpu' });
    const calls = path.join(tmp, 'calls.log');
    const gpu = await withEnv({ STREAMLINE_CUDA_CPU_CALLS: calls }, () => core.prune(model, { ...base('cuda'), device: 'cuda' }));
    assert.is(gpu.training!.device, 'cuda');
    assert.equal(hist(gpu), hist(cpu));
    const a = core.openCheckpoint(cpu.exported!.outDir), b = core.openCheckpoint(gpu.exported!.outDir);
    for (const t of a.names()) assert.ok(Buffer.from(a.tensor(t).data).equals(Buffer.from(b.tensor(t).data)), t);
    // Every validation downloads every role once (a new best reuses that download).
    const gets = readFileSync(calls, 'utf8').trim().split('\n').filter((l) => l.startsWith('train_get_params'));
    const vals = gpu.training!.history.filter((h) => h.valLoss !== undefined).length;
    assert.ok(vals >= 2);
    assert.is(gets.length, vals * new Set(gets).size);
  });

  test('interrupted on cuda: no checkpoint (the moments cannot be read back); resume on cuda is refused', async () => {
    const model = await fixture('llama-gqa');
    const ckpt = path.join(tmp, 'ckpt');
    const stopAt2 = () => {
      const ac = new AbortController();
      return { signal: ac.signal, onTrainStep: (s: core.StepRecord) => { if (s.step === 2) ac.abort(); } };
    };
    const [c1, m1] = await code(() => core.prune(model, { ...base('int-cuda'), checkpointFile: ckpt, device: 'cuda', ...stopAt2() }));
    assert.is(c1, 'E_INTERRUPTED');
    assert.match(m1!, /no checkpoint saved/);
    assert.not.ok(existsSync(ckpt));
    // A checkpoint saved on the CPU cannot be resumed here: the AdamW moments have no way onto the device.
    const [c2] = await code(() => core.prune(model, { ...base('int-cpu'), checkpointFile: ckpt, device: 'cpu', ...stopAt2() }));
    assert.is(c2, 'E_INTERRUPTED');
    assert.ok(existsSync(ckpt));
    const [c3, m3] = await code(() => core.prune(model, { ...base('resume-cuda'), checkpointFile: ckpt, device: 'cuda', resume: true, force: true }));
    assert.is(c3, 'E_UNSUPPORTED');
    assert.match(m3!, /cannot load AdamW moments/);
    // ... and on the CPU it finishes as an uninterrupted CPU run.
    const done = await core.prune(model, { ...base('resume-cpu'), checkpointFile: ckpt, device: 'cpu', resume: true, force: true });
    const whole = await core.prune(model, { ...base('whole-cpu'), device: 'cpu' });
    assert.equal(hist(done), hist(whole));
  });

  test('--loss lm on cuda: the replacement trains on the CPU after one warning naming the missing function, with the CPU result', async () => {
    const model = await fixture('llama-gqa');
    const logs: core.DeviceMessage[] = [];
    const o = { ...base('lm'), loss: 'lm' as const, epochs: 1 };
    const cpu = await core.prune(model, { ...o, outDir: path.join(tmp, 'lm-cpu'), device: 'cpu' });
    const gpu = await core.prune(model, { ...o, outDir: path.join(tmp, 'lm-cuda'), device: 'cuda', onLog: (m) => logs.push(m) });
    assert.is(gpu.device, 'cuda');
    assert.is(gpu.training!.device, 'cpu');
    assert.equal(logs.map((m) => m.level), ['warning']);
    assert.match(logs[0]!.message, /--loss lm: the replacement trains on the CPU \(this CUDA backend library lacks streamline_cuda_train_step_lm.*rebuild it\)/);
    assert.equal(hist(gpu), hist(cpu));
    const a = core.openCheckpoint(cpu.exported!.outDir), b = core.openCheckpoint(gpu.exported!.outDir);
    for (const t of a.names()) assert.ok(Buffer.from(a.tensor(t).data).equals(Buffer.from(b.tensor(t).data)), t);
  });

  // Nor has it the sliding-window calls: a forward that needs a window (blocks longer than it) is refused with the
  // remedy; a model whose window masks nothing (mistral: 4096 > the padded blocks) runs on the GPU as before.
  test('sliding windows: refused with the remedy where they would mask something, run where they mask nothing', async () => {
    const blocks = (vocab: number) => [0, 1].map((s) => Int32Array.from({ length: 40 }, (_, i) => (i * 5 + s) % vocab));
    const windowed = (await fixture('qwen2-window')).description;  // window 4 on layers 1 and 2
    const [c, m] = await code(() => core.scoreLayers(windowed, { blocks: blocks(windowed.vocab), n: 1, device: 'cuda' }));
    assert.is(c, 'E_UNSUPPORTED');
    assert.match(m!, /lacks streamline_cuda_set_window .*rebuild it, or use --device cpu/);
    const wide = (await fixture('mistral')).description;
    const r = await core.scoreLayers(wide, { blocks: blocks(wide.vocab), n: 1, device: 'cuda' });
    assert.is(r.device, 'cuda');
  });

  test('qwen3 (q/k norm): the forward falls back with the missing function named; the binding refuses the norms', async () => {
    assert.is(core.runtimeInfo().cuda.qkNorm, false);
    const model = await fixture('qwen3');
    const d = model.description;
    const why = core.cudaUnsupported(d);
    assert.match(why ?? '', /lacks streamline_cuda_upload_layer_qk_norm .*q\/k norm \(q_norm\/k_norm\) of qwen3.*rebuild it/);
    const logs: core.DeviceMessage[] = [];
    const blocks = [Int32Array.from({ length: 16 }, (_, i) => (i * 7 + 1) % d.vocab)];
    const r = await core.scoreLayers(d, { blocks, n: 1, device: 'cuda', onLog: (m) => logs.push(m) });
    assert.is(r.device, 'cpu');
    assert.equal(r.matrix, (await core.scoreLayers(d, { blocks, n: 1, device: 'cpu' })).matrix);
    assert.equal(logs.map((m) => m.level), ['warning']);
    assert.match(logs[0]!.message, /upload_layer_qk_norm/);
    // Past resolveDevice: uploading a layer with norms into a context is refused, not run without them.
    const n = native(), T = 8;
    const ctx = await n.cudaContext(core.nativeLayerSpec(d.semantics, 1, T, true, 1));
    const [c1, m1] = await code(() => ctx.uploadLayer(0, d.layers[0]!.weights() as never));
    ctx.destroy();
    assert.is(c1, 'E_UNSUPPORTED');
    assert.match(m1!, /lacks streamline_cuda_upload_layer_qk_norm .*rebuild it, or use --device cpu/);
    // The trainer: params with q/k norms are refused (the trainer checks cudaInfo().trainQkNorm and trains on the CPU).
    assert.is(n.cudaInfo().trainQkNorm, false);
    const views = d.layers[1]!.weights(), params: Record<string, Float32Array> = {};
    for (const [r, v] of Object.entries(views)) {
      params[r] = new Float32Array(v!.shape.reduce((a, b) => a * b, 1));
      n.convertFloats(params[r]!, 'f32', v!.data, v!.dtype);
    }
    const [c2, m2] = await code(() => n.cudaTrainer('layer', core.nativeLayerSpec(d.semantics, 1, T, true, 1), params, core.ropeFrequencies(d.rope!, T).invFreq));
    assert.is(c2, 'E_UNSUPPORTED');
    assert.match(m2!, /lacks streamline_cuda_train_set_qk_norm/);
    // A model without q/k norms is unaffected.
    assert.is(core.cudaUnsupported((await fixture('qwen2-bias')).description), null);
  });

  test('gemma3 (post norms): the forward falls back with the missing function named; the binding refuses the norms', async () => {
    assert.is(core.runtimeInfo().cuda.postNorm, false);
    const d = (await fixture('gemma3')).description;
    const why = core.cudaUnsupported(d);
    assert.match(why ?? '', /lacks streamline_cuda_upload_layer_post_norm .*post_attn_norm\/post_mlp_norm\) of gemma3_text.*rebuild it/);
    const logs: core.DeviceMessage[] = [];
    const blocks = [Int32Array.from({ length: 16 }, (_, i) => (i * 7 + 1) % d.vocab)];
    const r = await core.scoreLayers(d, { blocks, n: 1, device: 'cuda', onLog: (m) => logs.push(m) });
    assert.is(r.device, 'cpu');
    assert.equal(r.matrix, (await core.scoreLayers(d, { blocks, n: 1, device: 'cpu' })).matrix);
    assert.equal(logs.map((m) => m.level), ['warning']);
    assert.match(logs[0]!.message, /upload_layer_post_norm/);
    // Past resolveDevice: a layer with post norms (q/k norms removed, which this library lacks too) is refused.
    const n = native(), T = 8;
    const ctx = await n.cudaContext(core.nativeLayerSpec(d.semantics, 1, T, true, 1));
    const { 'q_norm.weight': _q, 'k_norm.weight': _k, ...w } = d.layers[0]!.weights();
    const [c1, m1] = await code(() => ctx.uploadLayer(0, w as never));
    ctx.destroy();
    assert.is(c1, 'E_UNSUPPORTED');
    assert.match(m1!, /lacks streamline_cuda_upload_layer_post_norm .*rebuild it, or use --device cpu/);
    // The trainer: post-norm params are refused by the binding; trainReplacement trains on the CPU after one warning
    // naming the missing function, with the CPU run's weights.
    assert.is(n.cudaInfo().trainPostNorm, false);
    const init: Record<string, Float32Array> = {}, shapes: Record<string, number[]> = {};
    for (const [r, v] of Object.entries(d.layers[1]!.weights())) {
      if (!['mlp_norm.weight', 'gate.weight', 'up.weight', 'down.weight', 'post_mlp_norm.weight'].includes(r)) continue;
      init[r] = new Float32Array(v!.shape.reduce((a, b) => a * b, 1));
      n.convertFloats(init[r]!, 'f32', v!.data, v!.dtype);
      shapes[r] = [...v!.shape];
    }
    const [c2, m2] = await code(() => n.cudaTrainer('mlp', core.nativeLayerSpec(d.semantics, 1, T, false, 1), init, null));
    assert.is(c2, 'E_UNSUPPORTED');
    assert.match(m2!, /lacks streamline_cuda_train_set_post_norm/);
    const D = d.semantics.hidden;
    const run = async (device: core.Device, logs: core.DeviceMessage[]) => {
      const train = new PairCache({ blocks: 2, rows: T, hidden: D, dtype: 'f32', budgetBytes: 1 << 24, dir: tmp, targets: true });
      for (let b = 0; b < 2; b++)
        train.add(Float32Array.from({ length: T * D }, (_, i) => Math.cos(i * 0.1 + b)), Float32Array.from({ length: T * D }, (_, i) => Math.sin(i * 0.07 - b)));
      try {
        return await trainReplacement({ kind: 'mlp', semantics: d.semantics, ropeInvFreq: null, ropeAttentionScaling: 1, init, shapes, train,
          validation: null, loss: 'mse', microBatch: 2, lr: 1e-2, device, onLog: (m) => logs.push(m) });
      } finally {
        train.close();
      }
    };
    const tlogs: core.DeviceMessage[] = [];
    const gpu = await run('cuda', tlogs), cpu = await run('cpu', []);
    assert.is(gpu.device, 'cpu');
    assert.equal(tlogs.map((m) => m.level), ['warning']);
    assert.match(tlogs[0]!.message, /lacks streamline_cuda_train_set_post_norm/);
    for (const r of Object.keys(init)) assert.equal(gpu.weights[r as keyof typeof gpu.weights], cpu.weights[r as keyof typeof cpu.weights], r);
  });

  test('phi3-partial (partial RoPE): the trainer falls back to the CPU naming train_set_rotary_dim; the binding refuses it', async () => {
    assert.is(native().cudaInfo().trainRotaryDim, false);
    const model = await fixture('phi3-partial');
    const logs: core.DeviceMessage[] = [];
    const o = { calib, samples: 2, seqLen: 16, trainSamples: 4, epochs: 1, n: 1, replacement: 'layer' as const, seed: 5 };
    const gpu = await core.prune(model, { ...o, outDir: path.join(tmp, 'partial-cuda'), device: 'cuda', onLog: (m) => logs.push(m) });
    const cpu = await core.prune(model, { ...o, outDir: path.join(tmp, 'partial-cpu'), device: 'cpu' });
    assert.equal([gpu.device, gpu.training!.device], ['cuda', 'cpu']);
    const warnings = logs.filter((m) => m.level === 'warning').map((m) => m.message);
    assert.is(warnings.length, 1);
    assert.match(warnings[0]!, /partial rotary embedding \(12 of 16 dims per head\).*lacks streamline_cuda_train_set_rotary_dim/);
    const x = core.openCheckpoint(cpu.exported!.outDir), y = core.openCheckpoint(gpu.exported!.outDir);
    assert.equal(y.names(), x.names());
    for (const t of x.names()) assert.ok(Buffer.from(x.tensor(t).data).equals(Buffer.from(y.tensor(t).data)), t);
    // Past the trainer's check: a partial spec is refused rather than trained with whole heads rotated.
    const d = model.description, n = native(), T = 8;
    const views = d.layers[1]!.weights(), params: Record<string, Float32Array> = {};
    for (const [r, v] of Object.entries(views)) {
      params[r] = new Float32Array(v!.shape.reduce((a, b) => a * b, 1));
      n.convertFloats(params[r]!, 'f32', v!.data, v!.dtype);
    }
    const [c, m] = await code(() => n.cudaTrainer('layer', core.nativeLayerSpec(d.semantics, 1, T, true, 1), params, core.ropeFrequencies(d.rope!, T).invFreq));
    assert.is(c, 'E_UNSUPPORTED');
    assert.match(m!, /rotaryDim 12 < headDim 16.*lacks streamline_cuda_train_set_rotary_dim/);
  });

  // Per-layer RoPE in the lm tail (Gemma 3's sliding and full layers): the library lacks train_set_lm_tail_rope (and the
  // lm functions): the trainer names that function, trains on the CPU with the CPU run's weights; the binding refuses
  // the spec rather than rotate every frozen layer like the replacement.
  test('lm tail with per-layer RoPE: the trainer falls back to the CPU naming train_set_lm_tail_rope; the binding refuses the spec', async () => {
    const n = native();
    assert.is(n.cudaInfo().lmTailRope, false);
    const d = (await fixture('llama-gqa')).description;
    const T = 8, D = d.semantics.hidden;
    const rope = core.ropeFrequencies(d.rope!, T);
    const own = { invFreq: Float32Array.from(rope.invFreq, (v) => v * 0.25), attentionScaling: 1.3 };
    const init: Record<string, Float32Array> = {}, shapes: Record<string, number[]> = {};
    for (const [r, v] of Object.entries(d.layers[1]!.weights())) {
      if (!['mlp_norm.weight', 'gate.weight', 'up.weight', 'down.weight'].includes(r)) continue;
      init[r] = new Float32Array(v!.shape.reduce((a, b) => a * b, 1));
      n.convertFloats(init[r]!, 'f32', v!.data, v!.dtype);
      shapes[r] = [...v!.shape];
    }
    const [c0, m0] = await code(() => n.cudaTrainer('mlp', { ...core.nativeLayerSpec(d.semantics, 1, T, true, 1), tailRopeInvFreq: [own.invFreq] } as never, init, rope.invFreq));
    assert.is(c0, 'E_UNSUPPORTED');
    assert.match(m0!, /lacks streamline_cuda_train_set_lm_tail_rope/);
    const tail = d.layers.slice(2);
    const g = d.global();
    const head = { 'final_norm.weight': g['final_norm.weight']!, 'lm_head.weight': g['lm_head.weight'] ?? g['embed.weight']! };
    const ids = [0, 1].map((b) => Int32Array.from({ length: T }, (_, i) => (i * 3 + b * 5 + 1) % d.vocab));
    const run = async (device: core.Device, logs: core.DeviceMessage[]) => {
      const train = new PairCache({ blocks: 2, rows: T, hidden: D, dtype: 'f32', budgetBytes: 1 << 24, dir: tmp, targets: false });
      for (let b = 0; b < 2; b++) train.add(Float32Array.from({ length: T * D }, (_, i) => Math.cos(i * 0.1 + b)), new Float32Array(0));
      try {
        return await trainReplacement({ kind: 'mlp', semantics: d.semantics, ropeInvFreq: rope.invFreq, ropeAttentionScaling: rope.attentionScaling,
          init, shapes, train, validation: null, loss: 'lm', microBatch: 2, lr: 1e-2, device, onLog: (m) => logs.push(m),
          lm: { layers: tail.map((l) => l.weights()) as never, head: head as never, ropes: tail.map((_, k) => (k === 0 ? own : null)),
                trainTokens: ids, validationTokens: [] } });
      } finally {
        train.close();
      }
    };
    const logs: core.DeviceMessage[] = [];
    const gpu = await run('cuda', logs), cpu = await run('cpu', []);
    assert.is(gpu.device, 'cpu');
    assert.equal(logs.map((m) => m.level), ['warning']);
    assert.match(logs[0]!.message, /per-layer RoPE.*the replacement trains on the CPU \(this CUDA backend library lacks streamline_cuda_train_set_lm_tail_rope/);
    for (const r of Object.keys(init)) assert.equal(gpu.weights[r as keyof typeof gpu.weights], cpu.weights[r as keyof typeof cpu.weights], r);
  });

  test.after(() => rmSync(tmp, { recursive: true, force: true }));
}

test.run();
