// Replacement training on the CUDA path (issue 9) without a GPU: STREAMLINE_CUDA_LIBRARY points the loader at
// streamline_cuda_cpu.so, whose training functions are the CPU trainer's own replacement_step, clip_grad_norm and
// adamw_step. So prune with device 'cuda' must export bitwise the weights of device 'cpu', with the same losses:
// a difference is a bug in the TypeScript path (data order, micro-batches, gradient scale, schedule, clipping,
// validation, best weights) or the binding, not precision. The GPU's precision is checked by cuda/tests on a GPU.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as core from '../src/index.js';
import { native, type NativeHeadWeights, type NativeLayerWeights } from '../src/native.js';
import { PairCache } from '../src/train/pair-cache.js';
import { trainReplacement } from '../src/train/trainer.js';
import { loadCharFixture, repoRoot, withEnv, writeCalibText } from './_helpers.js';

const fake = path.join(repoRoot, 'packages', 'core', 'build', 'testlib', 'streamline_cuda_cpu.so');
process.env.STREAMLINE_CUDA_LIBRARY = fake;  // read at the first cudaInfo() of the process

const tmp = mkdtempSync(path.join(os.tmpdir(), 'streamline-cuda-train-'));
const calib = writeCalibText(tmp);

const fixture = (name: string): Promise<core.LoadedModel> => loadCharFixture(name, tmp);

// The binding-level lm tests' common ground: the llama-gqa fixture, an mlp replacement initialised from its layer 0,
// layer 2 as the frozen tail with the model's head, RoPE frequencies, and `code`, which turns a call's rejection into
// [error code, message] (['none', ''] when it resolves).
async function lmBindingSetup() {
  const model = await fixture('llama-gqa');
  const d = model.description;
  const n = native();
  const T = 8, D = d.semantics.hidden, V = d.vocab, Dh = d.semantics.headDim;
  const w = d.layers[0]!.weights();
  const params: Record<string, Float32Array> = {};
  for (const r of ['mlp_norm.weight', 'gate.weight', 'up.weight', 'down.weight'] as const) {
    params[r] = new Float32Array(w[r]!.shape.reduce((a, b) => a * b, 1));
    n.convertFloats(params[r]!, 'f32', w[r]!.data, w[r]!.dtype);
  }
  const invFreq = Float32Array.from({ length: Dh / 2 }, (_, i) => 1 / 10000 ** ((2 * i) / Dh));
  const g = d.global();
  const layer = d.layers[2]!.weights() as never as NativeLayerWeights;
  const head = { 'final_norm.weight': g['final_norm.weight']!, 'lm_head.weight': (g['lm_head.weight'] ?? g['embed.weight'])! } as NativeHeadWeights;
  const code = async (f: () => unknown) => { try { await f(); return ['none', '']; } catch (e) { return [(e as { code: string }).code, (e as Error).message]; } };
  return { d, n, T, D, V, params, invFreq, layer, head, code };
}

// Several optimiser steps with micro-batches (the last one short), accumulation, warmup, clipping that bites, and
// validation every other step, so every piece of the loop is exercised.
const base = (out: string, kind: 'mlp' | 'layer'): core.PruneOptions => ({
  outDir: path.join(tmp, out), calib, samples: 2, seqLen: 48, trainSamples: 10, range: { start: 1, end: 2 }, replacement: kind,
  lr: 5e-3, minLr: 1e-3, warmup: 1, clip: 0.05, microBatch: 2, gradAccum: 2, epochs: 2, evalEvery: 2, seed: 5,
});

if (!existsSync(fake)) {
  console.log(`skip: ${fake} not built (CMake option STREAMLINE_CUDA_CPU_TEST)`);
} else {
  for (const name of ['llama-gqa', 'qwen2-bias']) {
    for (const kind of ['mlp', 'layer'] as const) {
      // The cuda run collects its pairs 3 blocks per forward (batchSize), the cpu run one by one: the same pairs.
      test(`${name} ${kind}: prune with device cuda trains bitwise the weights of device cpu`, async () => {
        const model = await fixture(name);
        const cpu = await core.prune(model, { ...base(`${name}-${kind}-cpu`, kind), device: 'cpu' });
        const gpu = await core.prune(model, { ...base(`${name}-${kind}-cuda`, kind), device: 'cuda', batchSize: 3 });
        assert.is(cpu.training!.device, 'cpu');
        assert.is(gpu.training!.device, 'cuda');
        assert.is(gpu.device, 'cuda');
        assert.ok(cpu.training!.steps >= 4, `${cpu.training!.steps} steps`);
        assert.equal(gpu.training!.history.map((h) => [h.step, h.loss, h.valLoss, h.lr]), cpu.training!.history.map((h) => [h.step, h.loss, h.valLoss, h.lr]));
        assert.is(gpu.training!.bestStep, cpu.training!.bestStep);
        const a = core.openCheckpoint(cpu.exported!.outDir), b = core.openCheckpoint(gpu.exported!.outDir);
        assert.equal(b.names(), a.names());
        for (const t of a.names()) assert.ok(Buffer.from(a.tensor(t).data).equals(Buffer.from(b.tensor(t).data)), t);
        const manifest = JSON.parse(readFileSync(path.join(gpu.exported!.outDir, 'streamline.json'), 'utf8'));
        assert.is(manifest.training.device, 'cuda');
      });
    }
  }

  // Sliding windows (qwen2-window: layer 0 full, layers 1 and 2 with a 4-key window; blocks of 48 tokens). The `layer`
  // replacement of [1, 2) starts as a copy of layer 1, so its first loss is ~0 only if training applies layer 1's
  // window (measured: 1.4e-5, the bf16 pair cache's rounding; 0.39 with full attention); for lm the frozen layer 2 keeps its
  // own window. The cuda path passes both to the backend (train_set_windows <replacement> <tail...>) and trains
  // bitwise what the CPU trains; a backend without train_set_windows trains on the CPU, with a warning.
  for (const loss of ['mse', 'lm'] as const) {
    test(`qwen2-window layer, loss ${loss}: windows reach training on both devices; an older backend falls back to the CPU`, async () => {
      const model = await fixture('qwen2-window');
      const o = { ...base(`window-${loss}`, 'layer'), loss, warmup: 0 };
      const cpu = await core.prune(model, { ...o, outDir: path.join(tmp, `window-${loss}-cpu`), device: 'cpu' });
      if (loss === 'mse') assert.ok(cpu.training!.history[0]!.loss < 1e-3, `first loss ${cpu.training!.history[0]!.loss}`);
      const calls = path.join(tmp, `calls-window-${loss}.log`);
      const gpu = await withEnv({ STREAMLINE_CUDA_CPU_CALLS: calls }, () =>
        core.prune(model, { ...o, outDir: path.join(tmp, `window-${loss}-cuda`), device: 'cuda' }));
      assert.is(gpu.training!.device, 'cuda');
      bitwiseSame(cpu, gpu, `window ${loss}`);
      const set = readFileSync(calls, 'utf8').split('\n').filter((l) => l.startsWith('train_set_windows'));
      assert.equal(set, [loss === 'lm' ? 'train_set_windows 4 4' : 'train_set_windows 4']);
      const n = native();
      const open = n.cudaTrainer;
      const logs: core.DeviceMessage[] = [];
      n.cudaTrainer = async (...a: Parameters<typeof open>) => {
        const t = await open(...a);
        Object.defineProperty(t, 'hasWindows', { value: () => false });
        return t;
      };
      try {
        const old = await core.prune(model, { ...o, outDir: path.join(tmp, `window-${loss}-old`), device: 'cuda', onLog: (m) => logs.push(m) });
        assert.is(old.training!.device, 'cpu');
        bitwiseSame(cpu, old, `window ${loss}, old backend`);
      } finally {
        n.cudaTrainer = open;
      }
      assert.ok(logs.some((m) => m.level === 'warning' && /train_set_windows/.test(m.message)), JSON.stringify(logs));
    });
  }

  // Validation runs on the device (streamline_cuda_train_eval), as many blocks per call as the trainer takes (3
  // held-out blocks, micro-batch 2: calls of 2 and 1), each block's loss the CPU's bitwise. The backend's call log
  // shows that the weights come back only for a new best (one getParams per role), never to validate. The learning
  // rate is far too high on purpose: the validation loss then rises after the first steps, so not every validation
  // sets a new best.
  test('validation on cuda: the CPU validation losses, eval calls per validation, weights downloaded only for a new best', async () => {
    const model = await fixture('llama-gqa');
    const o = { ...base('eval-calls', 'layer'), validationFraction: 0.3, epochs: 4, evalEvery: 1, lr: 3, minLr: 3, clip: 5 };
    const cpu = await core.prune(model, { ...o, outDir: path.join(tmp, 'eval-calls-cpu'), device: 'cpu' });
    const calls = path.join(tmp, 'calls-eval.log');
    const r = await withEnv({ STREAMLINE_CUDA_CPU_CALLS: calls }, () => core.prune(model, { ...o, device: 'cuda' }));
    assert.is(r.training!.device, 'cuda');
    assert.equal(r.training!.history.map((h) => [h.loss, h.valLoss]), cpu.training!.history.map((h) => [h.loss, h.valLoss]));
    const a = core.openCheckpoint(cpu.exported!.outDir), b = core.openCheckpoint(r.exported!.outDir);
    for (const t of a.names()) assert.ok(Buffer.from(a.tensor(t).data).equals(Buffer.from(b.tensor(t).data)), t);
    const lines = readFileSync(calls, 'utf8').trim().split('\n');
    const vals = r.training!.history.filter((h) => h.valLoss !== undefined);
    let best = Infinity, bests = 0;
    for (const h of vals) if (h.valLoss! < best) { best = h.valLoss!; bests++; }
    assert.ok(vals.length >= 3 && bests >= 1 && bests < vals.length, `${vals.length} validations, ${bests} new bests: ${vals.map((h) => h.valLoss).join(' ')}`);
    assert.equal(lines.filter((l) => l.startsWith('train_eval')), vals.flatMap(() => ['train_eval 2', 'train_eval 1']));
    const gets = lines.filter((l) => l.startsWith('train_get_params'));
    const roles = new Set(gets).size;
    assert.ok(roles >= 9, `${roles} roles downloaded`);
    assert.is(gets.length, bests * roles, `${gets.length} role downloads for ${bests} new bests`);
  });

  // The trainer as a backend without prefetch for the lm loss opens it (hasStageLm() false, everything else the
  // test backend's), for the unpipelined lm loop in the same process.
  const withoutStageLm = async <R>(f: () => Promise<R>): Promise<R> => {
    const n = native();
    const open = n.cudaTrainer;
    n.cudaTrainer = async (...a: Parameters<typeof open>) => {
      const t = await open(...a);
      // Defined, not assigned: the addon's methods are read-only on the prototype, which blocks a plain assignment.
      Object.defineProperty(t, 'hasStageLm', { value: () => false });
      return t;
    };
    try {
      return await f();
    } finally {
      n.cudaTrainer = open;
    }
  };
  const bitwiseSame = (a: core.PruneResult, b: core.PruneResult, what: string) => {
    assert.equal(b.training!.history.map((h) => [h.step, h.loss, h.valLoss, h.lr]), a.training!.history.map((h) => [h.step, h.loss, h.valLoss, h.lr]), what);
    assert.is(b.training!.bestStep, a.training!.bestStep, what);
    const x = core.openCheckpoint(a.exported!.outDir), y = core.openCheckpoint(b.exported!.outDir);
    assert.equal(y.names(), x.names(), what);
    for (const t of x.names()) assert.ok(Buffer.from(x.tensor(t).data).equals(Buffer.from(y.tensor(t).data)), `${what}: ${t}`);
  };

  // --loss lm on cuda (streamline_cuda_train_set_lm_tail / step_lm / eval_lm, and the prefetch train_stage_lm /
  // train_step_lm_staged): the test backend's lm functions are the CPU's lm_loss_step / lm_loss_eval, so a run must be
  // the CPU run bitwise: weights, losses, validation losses (3 held-out blocks: evalLm calls of 2 and 1), best step;
  // and so must the unpipelined loop of a backend without the staged lm functions. The tail is uploaded once; no step
  // goes through the mse functions; with prefetch every training micro-batch is staged and stepped once, with no
  // stepLm, and without it every one is a stepLm.
  for (const kind of ['mlp', 'layer'] as const) {
    test(`--loss lm ${kind}: prune on cuda trains on the GPU path, bitwise the cpu run (gradAccum 2, validation)`, async () => {
      const model = await fixture('llama-gqa');
      const logs: core.DeviceMessage[] = [];
      const o = { ...base(`lm-${kind}`, kind), loss: 'lm' as const, validationFraction: 0.3 };
      const cpu = await core.prune(model, { ...o, outDir: path.join(tmp, `lm-${kind}-cpu`), device: 'cpu' });
      const calls = path.join(tmp, `calls-lm-${kind}.log`);
      process.env.STREAMLINE_CUDA_CPU_CALLS = calls;
      const unpiped = path.join(tmp, `calls-lm-${kind}-unpiped.log`);
      let gpu: core.PruneResult, plain: core.PruneResult;
      try {
        gpu = await core.prune(model, { ...o, outDir: path.join(tmp, `lm-${kind}-cuda`), device: 'cuda', onLog: (m) => logs.push(m) });
        process.env.STREAMLINE_CUDA_CPU_CALLS = unpiped;
        plain = await withoutStageLm(() => core.prune(model, { ...o, outDir: path.join(tmp, `lm-${kind}-cuda-unpiped`), device: 'cuda', onLog: (m) => logs.push(m) }));
      } finally {
        delete process.env.STREAMLINE_CUDA_CPU_CALLS;
      }
      assert.equal(logs.filter((m) => m.level === 'warning'), []);
      assert.ok(logs.some((m) => /training pairs kept in GPU memory/.test(m.message)), 'says where the pairs are');
      assert.is(plain.training!.device, 'cuda');
      bitwiseSame(plain, gpu, 'prefetched vs unpipelined');
      assert.is(cpu.training!.device, 'cpu');
      assert.is(gpu.training!.device, 'cuda');
      assert.is(gpu.training!.loss, 'lm');
      assert.ok(cpu.training!.steps >= 4, `${cpu.training!.steps} steps`);
      const vals = cpu.training!.history.filter((h) => h.valLoss !== undefined);
      assert.ok(vals.length >= 2 && vals.every((h) => h.valLoss! > 0), 'validated with the lm loss');
      assert.equal(gpu.training!.history.map((h) => [h.step, h.loss, h.valLoss, h.lr]), cpu.training!.history.map((h) => [h.step, h.loss, h.valLoss, h.lr]));
      assert.is(gpu.training!.bestStep, cpu.training!.bestStep);
      const a = core.openCheckpoint(cpu.exported!.outDir), b = core.openCheckpoint(gpu.exported!.outDir);
      assert.equal(b.names(), a.names());
      for (const t of a.names()) assert.ok(Buffer.from(a.tensor(t).data).equals(Buffer.from(b.tensor(t).data)), t);
      const lines = readFileSync(calls, 'utf8').trim().split('\n');
      // llama-gqa has 3 layers and the window is [1, 2): one frozen layer after it.
      assert.equal(lines.filter((l) => l.startsWith('train_set_lm_tail')), ['train_set_lm_tail 1']);
      assert.is(lines.filter((l) => l.startsWith('train_stage_lm ')).length, micros(gpu), 'every micro-batch staged once');
      assert.is(lines.filter((l) => l === 'train_step_lm_staged end').length, micros(gpu), 'and stepped once');
      assert.not.ok(lines.some((l) => l.startsWith('train_step_lm ')), 'no unstaged lm step');
      assert.equal(lines.filter((l) => l.startsWith('train_eval_lm')), vals.flatMap(() => ['train_eval_lm 2', 'train_eval_lm 1']));
      assert.not.ok(lines.some((l) => /^train_(stage|step_staged|eval|step) /.test(l)), 'no mse step, stage or eval');
      const plainLines = readFileSync(unpiped, 'utf8').trim().split('\n');
      assert.is(plainLines.filter((l) => l.startsWith('train_step_lm ')).length, micros(gpu), 'unpipelined: one stepLm per micro-batch');
      assert.not.ok(plainLines.some((l) => /^train_(stage|step_staged|step_lm_staged)/.test(l)), 'unpipelined: nothing staged');
    });
  }

  // An interrupted cuda lm run saves the checkpoint of an mse run (weights and moments through getState); resumed on
  // cuda it ends bitwise as the uninterrupted run, and so does a cuda -> cpu resume.
  test('--loss lm: interrupt on cuda and resume on cuda or cpu, bitwise the uninterrupted run', async () => {
    const model = await fixture('llama-gqa');
    const o = (out: string) => ({ ...base(out, 'layer' as const), loss: 'lm' as const });
    const hist = (r: core.PruneResult) => r.training!.history.map((h) => [h.step, h.loss, h.valLoss, h.lr]);
    const whole = await core.prune(model, { ...o('lm-whole'), device: 'cuda' });
    assert.is(whole.training!.device, 'cuda');
    const want = core.openCheckpoint(whole.exported!.outDir);
    for (const to of ['cuda', 'cpu'] as const) {
      const ckpt = path.join(tmp, `ckpt-lm-${to}`);
      const ac = new AbortController();
      let c1 = 'none', m1 = '';
      try {
        await core.prune(model, { ...o(`lm-int-${to}`), checkpointFile: ckpt, device: 'cuda', signal: ac.signal, onTrainStep: (s: core.StepRecord) => { if (s.step === 2) ac.abort(); } });
      } catch (e) {
        c1 = (e as { code: string }).code; m1 = (e as Error).message;
      }
      assert.is(c1, 'E_INTERRUPTED', to);
      assert.match(m1, /state saved to/, to);
      const resumed = await core.prune(model, { ...o(`lm-int-${to}`), checkpointFile: ckpt, device: to, resume: true, force: true });
      assert.is(resumed.training!.device, to);
      assert.equal(hist(resumed), hist(whole), to);
      const got = core.openCheckpoint(resumed.exported!.outDir);
      for (const t of want.names()) assert.ok(Buffer.from(got.tensor(t).data).equals(Buffer.from(want.tensor(t).data)), `${to} ${t}`);
      assert.not.ok(existsSync(ckpt), to);
    }
  });

  // A Ctrl-C checkpoint has one format on both devices (the CUDA trainer's weights and AdamW moments come through
  // getState/setState), so every pairing of the interrupted and the resuming device ends with the uninterrupted
  // run's weights and history, bitwise.
  for (const kind of ['mlp', 'layer'] as const) {
    test(`${kind}: interrupt and resume on cuda, cpu -> cuda and cuda -> cpu end bitwise as an uninterrupted run`, async () => {
      const model = await fixture('llama-gqa');
      const stopAfter = (k: number) => {
        const ac = new AbortController();
        return { signal: ac.signal, onTrainStep: (s: core.StepRecord) => { if (s.step === k) ac.abort(); } };
      };
      const code = async (f: () => Promise<unknown>) => { try { await f(); return ['none', '']; } catch (e) { return [(e as { code: string }).code, (e as Error).message]; } };
      const hist = (r: core.PruneResult) => r.training!.history.map((h) => [h.step, h.loss, h.valLoss, h.lr]);
      const whole = await core.prune(model, { ...base(`${kind}-whole-cuda`, kind), device: 'cuda' });
      const wholeCpu = await core.prune(model, { ...base(`${kind}-whole-cpu`, kind), device: 'cpu' });
      const want = core.openCheckpoint(whole.exported!.outDir), wantCpu = core.openCheckpoint(wholeCpu.exported!.outDir);
      for (const t of want.names()) assert.ok(Buffer.from(want.tensor(t).data).equals(Buffer.from(wantCpu.tensor(t).data)), `cuda vs cpu ${t}`);
      for (const [from, to] of [['cuda', 'cuda'], ['cpu', 'cuda'], ['cuda', 'cpu']] as const) {
        const what = `${from} -> ${to}`;
        const ckpt = path.join(tmp, `ckpt-${kind}-${from}-${to}`);
        const o = { ...base(`${kind}-int-${from}-${to}`, kind), checkpointFile: ckpt };
        const [c1, m1] = await code(() => core.prune(model, { ...o, device: from, ...stopAfter(2) }));
        assert.is(c1, 'E_INTERRUPTED', what);
        assert.match(m1!, /state saved to/, what);
        assert.ok(existsSync(ckpt), what);
        const resumed = await core.prune(model, { ...o, device: to, resume: true, force: true });
        assert.is(resumed.training!.device, to, what);
        assert.is(resumed.training!.steps, whole.training!.steps, what);
        assert.equal(hist(resumed), hist(whole), what);
        assert.is(resumed.training!.bestStep, whole.training!.bestStep, what);
        const got = core.openCheckpoint(resumed.exported!.outDir);
        assert.equal(got.names(), want.names(), what);
        for (const t of want.names()) assert.ok(Buffer.from(got.tensor(t).data).equals(Buffer.from(want.tensor(t).data)), `${what} ${t}`);
        assert.not.ok(existsSync(ckpt), `${what}: a completed run removes the checkpoint`);
      }
    });
  }

  test('the binding: getParams/getGrads, bad arguments, busy and destroyed trainers as coded errors', async () => {
    const model = await fixture('llama-gqa');
    const d = model.description;
    const n = native();
    const T = 8, D = d.semantics.hidden;
    const w = d.layers[0]!.weights();
    const params: Record<string, Float32Array> = {};
    for (const r of ['mlp_norm.weight', 'gate.weight', 'up.weight', 'down.weight'] as const) {
      params[r] = new Float32Array(w[r]!.data.buffer, w[r]!.data.byteOffset, w[r]!.data.byteLength / 4).slice();
    }
    const spec = { ...core.nativeLayerSpec(d.semantics, 2, T, false, 1) };
    const code = async (f: () => unknown) => { try { await f(); return 'none'; } catch (e) { return (e as { code: string }).code; } };
    assert.is(await code(() => n.cudaTrainer('conv' as never, spec, params, null)), 'E_NATIVE_ARG');
    assert.is(await code(() => n.cudaTrainer('mlp', spec, { ...params, 'up.weight': new Float32Array(3) }, null)), 'E_SHAPE');
    assert.is(await code(() => n.cudaTrainer('mlp', { ...spec, gradScale: 0.5 }, params, null)), 'E_NATIVE_ARG');
    const t = await n.cudaTrainer('mlp', spec, params, null);
    const x = Float32Array.from({ length: T * D }, (_, i) => Math.sin(i * 0.3)), y = Float32Array.from(x, (v) => v * 0.5);
    // One step equals replacementStep on the same inputs (gradients) and, after apply, clip + adamwStep.
    const grads = Object.fromEntries(Object.entries(params).map(([r, p]) => [r, new Float32Array(p.length)]));
    const want = await n.replacementStep('mlp', { ...spec, batch: 1 }, params, grads, x, y, null, null, null, 0.5);
    assert.is(await t.step(x, y, null, null, 1, 0.5), want);
    assert.equal(await t.getGrads('up.weight'), grads['up.weight']);
    // eval between micro-batches: each block's replacementLoss, gradients untouched.
    assert.ok(t.hasEval());
    const x2 = new Float32Array(2 * T * D), y2 = new Float32Array(2 * T * D);
    x2.set(x); x2.set(y, T * D); y2.set(y); y2.set(x, T * D);
    const mask2 = Uint8Array.from({ length: 2 * T }, (_, i) => (i % T < 5 ? 1 : 0));
    const one = (v: Float32Array, b: number) => v.subarray(b * T * D, (b + 1) * T * D);
    const losses = await t.eval(x2, y2, null, mask2, 2);
    assert.instance(losses, Float64Array);
    for (const b of [0, 1])
      assert.is(losses[b], await n.replacementLoss('mlp', { ...spec, batch: 1 }, params, one(x2, b), one(y2, b), null, mask2.subarray(b * T, (b + 1) * T), null), `block ${b}`);
    assert.ok(losses[0]! > 0 && losses[1]! > 0);
    assert.equal(await t.eval(x2, y2, null, new Uint8Array(2 * T), 2), new Float64Array(2), 'no real token: 0');
    assert.equal(await t.getGrads('up.weight'), grads['up.weight'], 'eval leaves the gradients');
    assert.is(await code(() => t.eval(x2, y2, null, null, 3)), 'E_SHAPE');
    assert.is(await code(() => t.eval(x2.subarray(1), y2, null, null, 2)), 'E_SHAPE');
    assert.is(await code(() => t.step(x, y, null, null, 3, 1)), 'E_SHAPE');
    assert.is(await code(() => t.step(x.subarray(1), y, null, null, 1, 1)), 'E_SHAPE');
    assert.is(await code(() => t.getParams('q.weight')), 'E_NATIVE_ARG');
    const pending = t.apply({ lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, maxNorm: 1e-3, step: 1 });
    assert.is(await code(() => t.getParams('up.weight')), 'E_CUDA_BUSY');
    assert.is(await code(() => t.destroy()), 'E_CUDA_BUSY');
    const norm = await pending;
    const list = Object.keys(params).sort();
    const ps = list.map((r) => params[r]!), gs = list.map((r) => grads[r]!);
    assert.is(norm, n.clipGradNorm(gs, 1e-3).norm);
    const ms = ps.map((p) => new Float32Array(p.length)), vs = ps.map((p) => new Float32Array(p.length));
    n.adamwStep(ps, gs, ms, vs, { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, step: 1 });
    for (const r of list) assert.equal(await t.getParams(r as never), params[r], r);
    // getState returns the weights and both moments; setState into a fresh trainer continues identically.
    assert.ok(t.hasState());
    const states = [];
    for (const [i, r] of list.entries()) {
      const st = await t.getState(r as never);
      assert.equal([st.param, st.m, st.v], [ps[i], ms[i], vs[i]], r);
      states.push(st);
    }
    const u = await n.cudaTrainer('mlp', spec, Object.fromEntries(list.map((r) => [r, new Float32Array(params[r]!.length)])), null);
    for (const [i, r] of list.entries()) await u.setState(r as never, states[i]!);
    const opt2 = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, maxNorm: 1, step: 2 };
    assert.is(await u.step(x, y, null, null, 1, 1), await t.step(x, y, null, null, 1, 1));
    assert.is(await u.apply(opt2), await t.apply(opt2));
    for (const r of list) assert.equal(await u.getState(r as never), await t.getState(r as never), r);
    assert.is(await code(() => u.getState('q.weight' as never)), 'E_NATIVE_ARG');
    assert.is(await code(() => u.setState('up.weight', { ...states[list.indexOf('up.weight')]!, m: new Float32Array(3) })), 'E_SHAPE');
    assert.is(await code(() => u.setState('up.weight', null as never)), 'E_NATIVE_ARG');
    u.destroy();
    assert.equal(await t.getGrads('up.weight'), new Float32Array(params['up.weight']!.length), 'apply zeroes the gradients');
    assert.is(await code(() => t.apply({ lr: 1e-3, beta1: 1, beta2: 0.999, eps: 1e-8, weightDecay: 0, maxNorm: 1, step: 2 })), 'E_NATIVE_ARG');
    t.destroy();
    t.destroy();
    assert.is(await code(() => t.getParams('up.weight')), 'E_CUDA');
  });

  // Micro-batches (of 2 blocks, base's microBatch) in the first `steps` optimiser steps of a run, from its token counts.
  const micros = (r: core.PruneResult, steps = Infinity) =>
    r.training!.history.slice(0, steps).reduce((k, h, i, all) => k + Math.ceil((h.tokens - (i ? all[i - 1]!.tokens : 0)) / 48 / 2), 0);

  // Prefetch: with a backend that has stage, the trainer uploads micro-batch i+1 while step i runs, across optimiser
  // steps too. The test backend's step_staged waits (up to the hook's time) for a stage issued after it began, so the
  // log is deterministic: every step but the run's last ends after the next batch's stage, and the weights are still
  // the CPU trainer's bitwise.
  test('prefetch: stage(i+1) is issued before step i is awaited, across optimiser steps, bitwise the cpu weights', async () => {
    const model = await fixture('llama-gqa');
    const o = base('prefetch', 'layer');
    const cpu = await core.prune(model, { ...o, outDir: path.join(tmp, 'prefetch-cpu'), device: 'cpu' });
    const calls = path.join(tmp, 'calls-prefetch.log');
    const r = await withEnv({ STREAMLINE_CUDA_CPU_CALLS: calls, STREAMLINE_CUDA_CPU_WAIT_STAGE_MS: '3000' }, () => core.prune(model, { ...o, device: 'cuda' }));
    assert.equal(r.training!.history.map((h) => [h.step, h.loss, h.valLoss, h.lr]), cpu.training!.history.map((h) => [h.step, h.loss, h.valLoss, h.lr]));
    const a = core.openCheckpoint(cpu.exported!.outDir), b = core.openCheckpoint(r.exported!.outDir);
    for (const t of a.names()) assert.ok(Buffer.from(a.tensor(t).data).equals(Buffer.from(b.tensor(t).data)), t);
    const lines = readFileSync(calls, 'utf8').trim().split('\n');
    assert.not.ok(lines.some((l) => l.startsWith('train_step ')), 'no unstaged step');
    const seq = lines.filter((l) => l.startsWith('train_stage') || l === 'train_step_staged end');
    const stages = seq.filter((l) => l.startsWith('train_stage')).length, ends = seq.length - stages;
    assert.is(stages, ends, 'every staged batch is stepped once');
    assert.ok(seq.filter((l) => l.startsWith('train_stage')).every((l) => l.endsWith(' kept')), 'the pairs kept on the GPU');
    assert.is(r.training!.pairs, 'gpu');
    assert.is(ends, micros(r), 'one stepStaged per micro-batch');
    let seen = 0;
    for (const [i, l] of seq.entries()) {
      if (l.startsWith('train_stage')) { seen++; continue; }
      const done = seq.slice(0, i).filter((x) => x === 'train_step_staged end').length;  // steps finished before this one
      if (done + 1 < ends) assert.ok(seen >= done + 2, `step ${done} ended before micro-batch ${done + 1} was staged: ${seq.join(', ')}`);
    }
  });

  // Where the pairs come from on cuda: kept in GPU memory when they fit (uploaded once, staged by index); else a bf16
  // cache reaches the backend as stored (stageBf16: one block per sequence, widened there), from memory or disk; an
  // f32 cache, or a backend without the bf16 stages, stages f32 arrays. Widening is exact: every run from the bf16
  // cache gives the same bits, for both losses.
  test('prefetch: pairs kept on the GPU, else the bf16 cache staged as stored (memory, disk), else f32; the same bits', async () => {
    const model = await fixture('llama-gqa');
    const n = native();
    const open = n.cudaTrainer;
    for (const loss of ['mse', 'lm'] as const) {
      const run = async (name: string, extra: Partial<core.PruneOptions>, env: Record<string, string> = {}, noBf16 = false) => {
        const calls = path.join(tmp, `calls-${name}-${loss}.log`);
        if (noBf16) {
          n.cudaTrainer = async (...a: Parameters<typeof open>) => {
            const t = await open(...a);
            Object.defineProperty(t, 'hasStageBf16', { value: () => false });
            return t;
          };
        }
        try {
          const r = await withEnv({ STREAMLINE_CUDA_CPU_CALLS: calls, ...env }, () => core.prune(model, { ...base(`${name}-${loss}`, 'mlp'), loss, ...extra, device: 'cuda' }));
          const stages = readFileSync(calls, 'utf8').trim().split('\n').filter((l) => l.startsWith('train_stage'));
          assert.ok(stages.length > 0, `${name} ${loss}: staged`);
          const tags = new Set(stages.map((l) => l.split(' ').slice(2).join(' ')));
          return { r, tags: [...tags] };
        } finally {
          n.cudaTrainer = open;
        }
      };
      const full = { STREAMLINE_CUDA_CPU_FREE_BYTES: '1' };  // no room on the "GPU" for the pairs
      const gpu = await run('pfk-gpu', {});
      const mem = await run('pfk-mem', {}, full);
      const disk = await run('pfk-disk', { cacheBudget: 1 }, full);
      const old = await run('pfk-old', {}, full, true);
      const f32 = await run('pfk-f32', { cacheDtype: 'f32' });
      assert.equal([gpu.tags, gpu.r.training!.pairs], [['kept'], 'gpu'], `${loss}: kept on the GPU`);
      assert.equal([mem.tags, mem.r.training!.pairs], [['bf16'], 'memory'], `${loss}: bf16 from memory`);
      assert.equal([disk.tags, disk.r.training!.pairs], [['bf16'], 'disk'], `${loss}: bf16 from disk`);
      assert.equal(old.tags, [''], `${loss}: a backend without stageBf16 stages f32`);
      assert.equal([f32.tags, f32.r.training!.pairs], [[''], 'memory'], `${loss}: an f32 cache stages f32, never kept`);
      bitwiseSame(gpu.r, mem.r, `${loss}: memory vs kept`);
      bitwiseSame(gpu.r, disk.r, `${loss}: disk vs kept`);
      bitwiseSame(gpu.r, old.r, `${loss}: f32 staging of the bf16 cache vs kept`);
    }
  });

  // An interrupted pipelined run stops with the next step's first micro-batch staged and never stepped: nothing is
  // consumed twice or lost, and the resumed run (pipelined again) ends bitwise as the uninterrupted one.
  test('prefetch: interrupt with a staged batch and resume, bitwise the uninterrupted run', async () => {
    const model = await fixture('llama-gqa');
    const whole = await core.prune(model, { ...base('pf-whole', 'mlp'), device: 'cuda' });
    const ckpt = path.join(tmp, 'ckpt-prefetch');
    const o = { ...base('pf-int', 'mlp'), checkpointFile: ckpt };
    const calls = path.join(tmp, 'calls-prefetch-int.log');
    const ac = new AbortController();
    const code = await withEnv({ STREAMLINE_CUDA_CPU_CALLS: calls }, () => core.prune(model, { ...o, device: 'cuda', signal: ac.signal, onTrainStep: (s: core.StepRecord) => { if (s.step === 2) ac.abort(); } }).then(() => 'none', (e: { code: string }) => e.code));
    assert.is(code, 'E_INTERRUPTED');
    const lines = readFileSync(calls, 'utf8').trim().split('\n');
    const stages = lines.filter((l) => l.startsWith('train_stage')).length, ends = lines.filter((l) => l === 'train_step_staged end').length;
    assert.is(ends, micros(whole, 2), 'the micro-batches of the first two optimiser steps');
    assert.is(stages, ends + 1, "step 3's first micro-batch was staged, never stepped");
    const resumed = await core.prune(model, { ...o, device: 'cuda', resume: true, force: true });
    assert.equal(resumed.training!.history.map((h) => [h.step, h.loss, h.valLoss, h.lr]), whole.training!.history.map((h) => [h.step, h.loss, h.valLoss, h.lr]));
    const want = core.openCheckpoint(whole.exported!.outDir), got = core.openCheckpoint(resumed.exported!.outDir);
    for (const t of want.names()) assert.ok(Buffer.from(got.tensor(t).data).equals(Buffer.from(want.tensor(t).data)), t);
  });

  // Collects the unhandled rejections while f runs (and one turn after, when Node reports them).
  const unhandledDuring = async (f: () => Promise<void>): Promise<unknown[]> => {
    const seen: unknown[] = [];
    const on = (e: unknown) => { seen.push(e); };
    process.on('unhandledRejection', on);
    try {
      await f();
      await new Promise((resolve) => setTimeout(resolve, 50));
    } finally {
      process.off('unhandledRejection', on);
    }
    return seen;
  };

  // A staged step that fails while the next micro-batch is being staged: the run rejects with the step's E_CUDA
  // (no unhandled rejection, nothing left in flight), like a failing step without the pipeline. The test backend
  // returns that stage only after the step has failed, so the step's rejection arrives while the stage is awaited.
  test('prefetch: a step failing during the next stage rejects the run with E_CUDA, no unhandled rejection', async () => {
    const model = await fixture('llama-gqa');
    process.env.STREAMLINE_CUDA_CPU_FAIL_STAGED = '3';
    let err: { code?: string; message?: string } = {};
    const unhandled = await unhandledDuring(async () => {
      try {
        await core.prune(model, { ...base('pf-fail', 'mlp'), device: 'cuda' });
      } catch (e) {
        err = e as typeof err;
      } finally {
        delete process.env.STREAMLINE_CUDA_CPU_FAIL_STAGED;
      }
    });
    assert.is(err.code, 'E_CUDA');
    assert.match(err.message ?? '', /step_staged: injected failure/);
    assert.equal(unhandled, []);
  });

  // Prefetch for --loss lm (streamline_cuda_train_stage_lm): the same pipeline as mse, so the same log order. The
  // wait hook makes every lm staged step but the run's last end after the next micro-batch's stageLm; the weights,
  // losses and validation losses are the CPU's bitwise.
  test('prefetch --loss lm: stageLm(i+1) is issued before step i is awaited, across optimiser steps, bitwise the cpu run', async () => {
    const model = await fixture('llama-gqa');
    const o = { ...base('pf-lm', 'layer'), loss: 'lm' as const, validationFraction: 0.3 };
    const cpu = await core.prune(model, { ...o, outDir: path.join(tmp, 'pf-lm-cpu'), device: 'cpu' });
    const calls = path.join(tmp, 'calls-pf-lm.log');
    const r = await withEnv({ STREAMLINE_CUDA_CPU_CALLS: calls, STREAMLINE_CUDA_CPU_WAIT_STAGE_MS: '3000' }, () => core.prune(model, { ...o, device: 'cuda' }));
    assert.is(r.training!.device, 'cuda');
    bitwiseSame(cpu, r, 'cuda vs cpu');
    const lines = readFileSync(calls, 'utf8').trim().split('\n');
    assert.not.ok(lines.some((l) => /^train_(step_lm|step|stage) /.test(l)), 'no unstaged step, no mse stage');
    const seq = lines.filter((l) => l.startsWith('train_stage_lm ') || l === 'train_step_lm_staged end');
    const stages = seq.filter((l) => l.startsWith('train_stage_lm')).length, ends = seq.length - stages;
    assert.is(stages, ends, 'every staged batch is stepped once');
    assert.ok(seq.filter((l) => l.startsWith('train_stage_lm')).every((l) => l.endsWith(' kept')), 'the pairs kept on the GPU');
    assert.is(ends, micros(r), 'one stepLmStaged per micro-batch');
    let seen = 0;
    for (const [i, l] of seq.entries()) {
      if (l.startsWith('train_stage_lm')) { seen++; continue; }
      const done = seq.slice(0, i).filter((x) => x === 'train_step_lm_staged end').length;
      if (done + 1 < ends) assert.ok(seen >= done + 2, `step ${done} ended before micro-batch ${done + 1} was staged: ${seq.join(', ')}`);
    }
  });

  // An interrupted pipelined lm run stops with the next step's first micro-batch staged and never stepped; resumed
  // (pipelined again) it ends bitwise as the uninterrupted run.
  test('prefetch --loss lm: interrupt with a staged batch and resume, bitwise the uninterrupted run', async () => {
    const model = await fixture('llama-gqa');
    const o = (out: string) => ({ ...base(out, 'mlp'), loss: 'lm' as const });
    const whole = await core.prune(model, { ...o('pf-lm-whole'), device: 'cuda' });
    const ckpt = path.join(tmp, 'ckpt-pf-lm');
    const calls = path.join(tmp, 'calls-pf-lm-int.log');
    const ac = new AbortController();
    const code = await withEnv({ STREAMLINE_CUDA_CPU_CALLS: calls }, () => core.prune(model, { ...o('pf-lm-int'), checkpointFile: ckpt, device: 'cuda', signal: ac.signal, onTrainStep: (s: core.StepRecord) => { if (s.step === 2) ac.abort(); } }).then(() => 'none', (e: { code: string }) => e.code));
    assert.is(code, 'E_INTERRUPTED');
    const lines = readFileSync(calls, 'utf8').trim().split('\n');
    const stages = lines.filter((l) => l.startsWith('train_stage_lm ')).length, ends = lines.filter((l) => l === 'train_step_lm_staged end').length;
    assert.is(ends, micros(whole, 2), 'the micro-batches of the first two optimiser steps');
    assert.is(stages, ends + 1, "step 3's first micro-batch was staged, never stepped");
    const resumed = await core.prune(model, { ...o('pf-lm-int'), checkpointFile: ckpt, device: 'cuda', resume: true, force: true });
    bitwiseSame(whole, resumed, 'resumed vs whole');
    assert.not.ok(existsSync(ckpt));
  });

  // The same for an lm staged step (the mse test above, with stageLm / stepLmStaged).
  test('prefetch --loss lm: a step failing during the next stage rejects the run with E_CUDA, no unhandled rejection', async () => {
    const model = await fixture('llama-gqa');
    process.env.STREAMLINE_CUDA_CPU_FAIL_STAGED = '3';
    let err: { code?: string; message?: string } = {};
    const unhandled = await unhandledDuring(async () => {
      try {
        await core.prune(model, { ...base('pf-lm-fail', 'mlp'), loss: 'lm', device: 'cuda' });
      } catch (e) {
        err = e as typeof err;
      } finally {
        delete process.env.STREAMLINE_CUDA_CPU_FAIL_STAGED;
      }
    });
    assert.instance(err, core.StreamlineError);
    assert.is(err.code, 'E_CUDA');
    assert.match(err.message ?? '', /step_lm_staged: injected failure/);
    assert.equal(unhandled, []);
  });

  // stageLm/stepLmStaged against stepLm on a second trainer (same inputs, same order: losses and accumulated gradients
  // bitwise), an mlp trainer whose frozen layer uses RoPE. The two input slots are shared with stage: a third batch of
  // either loss fails, a staged step refuses the other loss's batch and leaves it staged, and a stage overlaps only the
  // staged step of its own loss. A target outside the vocabulary fails at stageLm, naming the row, and stages nothing.
  test('the binding: stageLm/stepLmStaged equal stepLm, share the slots with stage, refuse the other loss, misuse as coded errors', async () => {
    const { d, n, T, D, V, params, invFreq, layer, head, code } = await lmBindingSetup();
    const spec = core.nativeLayerSpec(d.semantics, 2, T, true, 1);
    const t = await n.cudaTrainer('mlp', spec, params, invFreq), u = await n.cudaTrainer('mlp', spec, params, invFreq);
    assert.ok(t.hasStageLm());
    const xs = [0, 1, 2].map((k) => Float32Array.from({ length: 2 * T * D }, (_, i) => Math.sin(i * 0.37 + k)));
    const tg = [0, 1, 2].map((k) => Int32Array.from({ length: 2 * T }, (_, i) => (i % T === T - 1 ? -1 : (i * 7 + k) % V)));
    const y = Float32Array.from(xs[2]!, (v) => v * 0.5);
    const pos = Int32Array.from({ length: 2 * T }, (_, i) => i % T);
    const mask = Uint8Array.from({ length: 2 * T }, (_, i) => (i < T || i % T < 6 ? 1 : 0));
    const one = <A extends Float32Array | Int32Array>(a: A, k: number) => a.subarray(0, T * k) as A;
    const [c0, m0] = await code(() => t.stageLm(xs[0]!, tg[0]!, pos, mask, 2));
    assert.is(c0, 'E_CUDA', 'stageLm without a tail');
    assert.match(m0, /no lm tail \(call train_set_lm_tail first\)/);
    await t.setLmTail([layer], head);
    await u.setLmTail([layer], head);
    assert.match((await code(() => t.stepLmStaged(1)))[1], /no staged batch/, 'nothing staged');
    assert.is((await code(() => t.stageLm(xs[0]!, tg[0]!, pos, mask, 3)))[0], 'E_SHAPE', 'batch over the spec');
    assert.is((await code(() => t.stageLm(xs[0]!, tg[0]!.subarray(1), pos, mask, 2)))[0], 'E_SHAPE', 'targets of the wrong size');
    assert.is((await code(() => t.stageLm(xs[0]!, tg[0]!, null, mask, 2)))[0], 'E_NATIVE_ARG', 'RoPE needs positions');
    const bad = tg[0]!.slice();
    bad[5] = V;
    const [c1, m1] = await code(() => t.stageLm(xs[0]!, bad, pos, mask, 2));
    assert.is(c1, 'E_CUDA');
    assert.match(m1, new RegExp(`train_stage_lm: targets\\[5\\] = ${V} is outside the vocabulary \\[0, ${V}\\)`));
    assert.match((await code(() => t.stepLmStaged(1)))[1], /no staged batch/, 'the refused batch was not staged');
    // An mse batch, then an lm one: the slots are full for both losses, and each staged step refuses the other's batch.
    await t.stage(xs[2]!, y, pos, null, 2);
    await t.stageLm(xs[0]!, tg[0]!, pos, mask, 2);
    assert.match((await code(() => t.stageLm(xs[1]!, tg[1]!, pos, null, 2)))[1], /both input slots/, 'a third (lm) batch');
    assert.match((await code(() => t.stage(xs[1]!, y, pos, null, 2)))[1], /both input slots/, 'a third (mse) batch');
    assert.is((await code(() => t.stepLm(xs[1]!, tg[1]!, pos, null, 2, 1)))[0], 'E_CUDA', 'stepLm needs a free slot too');
    const [c2, m2] = await code(() => t.stepLmStaged(1));
    assert.is(c2, 'E_CUDA');
    assert.match(m2, /step_lm_staged: the oldest staged batch was staged for the mse loss \(step_staged takes it\)/);
    assert.is(await t.stepStaged(0.5), await u.step(xs[2]!, y, pos, null, 2, 0.5), 'the mse batch stayed staged');
    const [c3, m3] = await code(() => t.stepStaged(1));
    assert.is(c3, 'E_CUDA');
    assert.match(m3, /step_staged: the oldest staged batch was staged for the lm loss \(step_lm_staged takes it\)/);
    // An lm step in flight: stageLm may run, an mse stage may not, nor anything else.
    const pending = t.stepLmStaged(0.5);
    assert.is((await code(() => t.stage(xs[2]!, y, pos, null, 2)))[0], 'E_CUDA_BUSY', 'an mse stage during an lm staged step');
    assert.is((await code(() => t.stepLmStaged(1)))[0], 'E_CUDA_BUSY');
    assert.is((await code(() => t.evalLm(xs[1]!, tg[1]!, pos, null, 2)))[0], 'E_CUDA_BUSY');
    const staging = t.stageLm(one(xs[1]!, D), one(tg[1]!, 1), one(pos, 1), null, 1);
    assert.is((await code(() => t.stageLm(xs[2]!, tg[2]!, pos, null, 2)))[0], 'E_CUDA_BUSY', 'one stage at a time');
    assert.is((await code(() => t.destroy()))[0], 'E_CUDA_BUSY');
    await staging;
    const l0 = await pending;
    const l1 = await t.stepLmStaged(0.25);
    // An lm stage in flight (alone): an mse staged step may not overlap it. The refusal is synchronous, so the stage is
    // still in flight when it is checked.
    const staging2 = t.stageLm(xs[2]!, tg[2]!, pos, null, 2);
    assert.is((await code(() => t.stepStaged(1)))[0], 'E_CUDA_BUSY', 'an mse staged step during an lm stage');
    await staging2;
    const l2 = await t.stepLmStaged(1);
    assert.is(l0, await u.stepLm(xs[0]!, tg[0]!, pos, mask, 2, 0.5));
    assert.is(l1, await u.stepLm(one(xs[1]!, D), one(tg[1]!, 1), one(pos, 1), null, 1, 0.25));
    assert.is(l2, await u.stepLm(xs[2]!, tg[2]!, pos, null, 2, 1));
    assert.ok(l0 > 0 && l1 > 0 && l2 > 0);
    for (const r of Object.keys(params)) assert.equal(await t.getGrads(r as never), await u.getGrads(r as never), r);
    t.destroy();
    u.destroy();
  });

  test('the binding: stage/stepStaged equal step, overlap allowed only between them, misuse as coded errors', async () => {
    const model = await fixture('llama-gqa');
    const d = model.description;
    const n = native();
    const T = 8, D = d.semantics.hidden;
    const w = d.layers[0]!.weights();
    const params: Record<string, Float32Array> = {};
    for (const r of ['mlp_norm.weight', 'gate.weight', 'up.weight', 'down.weight'] as const)
      params[r] = new Float32Array(w[r]!.data.buffer, w[r]!.data.byteOffset, w[r]!.data.byteLength / 4).slice();
    const spec = { ...core.nativeLayerSpec(d.semantics, 2, T, false, 1) };
    const code = async (f: () => unknown) => { try { await f(); return 'none'; } catch (e) { return (e as { code: string }).code; } };
    const t = await n.cudaTrainer('mlp', spec, params, null), u = await n.cudaTrainer('mlp', spec, params, null);
    assert.ok(t.hasStage());
    const xs = [0, 1, 2].map((k) => Float32Array.from({ length: 2 * T * D }, (_, i) => Math.sin(i * 0.3 + k)));
    const ys = xs.map((x) => Float32Array.from(x, (v) => v * 0.5));
    const mask = Uint8Array.from({ length: 2 * T }, (_, i) => (i % T < 5 ? 1 : 0));
    assert.is(await code(() => t.stepStaged(1)), 'E_CUDA', 'nothing staged');
    assert.is(await code(() => t.stage(xs[0]!, ys[0]!, null, null, 3)), 'E_SHAPE', 'batch over the spec');
    assert.is(await code(() => t.stage(xs[0]!.subarray(1), ys[0]!, null, null, 2)), 'E_SHAPE', 'x of the wrong size');
    await t.stage(xs[0]!, ys[0]!, null, mask, 2);
    await t.stage(xs[1]!, ys[1]!, null, null, 2);
    assert.is(await code(() => t.stage(xs[2]!, ys[2]!, null, null, 2)), 'E_CUDA', 'both slots taken');
    assert.is(await code(() => t.step(xs[2]!, ys[2]!, null, null, 2, 1)), 'E_CUDA', 'step and eval need a free slot too');
    // A step in flight: stage may run (the slot it freed stays taken until the step ends), other calls are busy.
    const pending = t.stepStaged(0.5);
    assert.is(await code(() => t.getParams('up.weight')), 'E_CUDA_BUSY');
    assert.is(await code(() => t.stepStaged(1)), 'E_CUDA_BUSY');
    const loss0 = await pending;
    const pending2 = t.stepStaged(0.25);
    const one = (v: Float32Array) => v.subarray(0, T * D);
    const staging = t.stage(one(xs[2]!), one(ys[2]!), null, null, 1);
    assert.is(await code(() => t.stage(xs[2]!, ys[2]!, null, null, 1)), 'E_CUDA_BUSY', 'one stage at a time');
    assert.is(await code(() => t.destroy()), 'E_CUDA_BUSY');
    await staging;
    const loss1 = await pending2;
    const loss2 = await t.stepStaged(1);
    assert.is(loss0, await u.step(xs[0]!, ys[0]!, null, mask, 2, 0.5));
    assert.is(loss1, await u.step(xs[1]!, ys[1]!, null, null, 2, 0.25));
    assert.is(loss2, await u.step(one(xs[2]!), one(ys[2]!), null, null, 1, 1));
    for (const r of Object.keys(params)) assert.equal(await t.getGrads(r as never), await u.getGrads(r as never), r);
    t.destroy();
    u.destroy();
  });

  // stageBf16 / stageLmBf16: one Uint16Array per sequence, widened by the backend; a step on them equals step / stepLm
  // on the widened f32 arrays. Argument errors are coded and stage nothing.
  test('the binding: stageBf16/stageLmBf16 and kept pairs (keepPairs/putPair/stageKept/stageLmKept) equal step/stepLm on the widened states, errors coded', async () => {
    const { d, n, T, D, V, params, invFreq, layer, head, code } = await lmBindingSetup();
    const spec = core.nativeLayerSpec(d.semantics, 2, T, true, 1);
    const t = await n.cudaTrainer('mlp', spec, params, invFreq), u = await n.cudaTrainer('mlp', spec, params, invFreq);
    assert.ok(t.hasStageBf16());
    const bits = (k: number) => Uint16Array.from({ length: T * D }, (_, i) => 0x3f00 + ((i * 37 + k * 11) % 0x180));
    const widen = (rows: Uint16Array[]) => {
      const out = new Float32Array(rows.length * T * D);
      rows.forEach((r, b) => n.convertFloats(out.subarray(b * T * D, (b + 1) * T * D), 'f32', r, 'bf16'));
      return out;
    };
    const xr = [bits(0), bits(1)], yr = [bits(2), bits(3)];
    const pos = Int32Array.from({ length: 2 * T }, (_, i) => i % T);
    const tg = Int32Array.from({ length: 2 * T }, (_, i) => (i % T === T - 1 ? -1 : (i * 5) % V));
    assert.is((await code(() => t.stageBf16([xr[0]!], yr, pos, null, 2)))[0], 'E_SHAPE', 'one row array per sequence');
    assert.is((await code(() => t.stageBf16(xr, [yr[0]!, yr[1]!.subarray(1)], pos, null, 2)))[0], 'E_SHAPE', 'a short row array');
    assert.is((await code(() => t.stageBf16(xr, [yr[0]!, new Float32Array(T * D) as never], pos, null, 2)))[0], 'E_NATIVE_ARG', 'not a Uint16Array');
    assert.is((await code(() => t.stageBf16(xr[0] as never, yr, pos, null, 2)))[0], 'E_NATIVE_ARG', 'not an array');
    assert.match((await code(() => t.stepStaged(1)))[1], /no staged batch/, 'nothing was staged by the refused calls');
    await t.stageBf16(xr, yr, pos, null, 2);
    assert.is(await t.stepStaged(0.5), await u.step(widen(xr), widen(yr), pos, null, 2, 0.5));
    await t.setLmTail([layer], head);
    await u.setLmTail([layer], head);
    await t.stageLmBf16(xr, tg, pos, null, 2);
    assert.is(await t.stepLmStaged(0.5), await u.stepLm(widen(xr), tg, pos, null, 2, 0.5));
    for (const r of Object.keys(params)) assert.equal(await t.getGrads(r as never), await u.getGrads(r as never), r);
    // Kept pairs: put once, staged by index (here in the other order), the same steps again.
    const k = await n.cudaTrainer('mlp', spec, params, invFreq);
    assert.ok(k.hasKeptPairs());
    assert.is(await withEnv({ STREAMLINE_CUDA_CPU_FREE_BYTES: '1' }, () => k.keepPairs(2, true, 0.5)), false, 'no room: not kept');
    assert.is(await k.keepPairs(2, true, 0.5), true);
    assert.match((await code(() => k.keepPairs(2, true, 0.5)))[1], /kept already/);
    assert.is((await code(() => k.keepPairs(2, true, 1.5)))[0], 'E_NATIVE_ARG', 'maxFraction out of (0, 1]');
    await k.putPair(0, xr[0]!, yr[0]!);
    assert.match((await code(() => k.stageKept(Int32Array.of(1, 0), pos, null, 2)))[1], /block 1 \(sequence 0\) was not put/);
    assert.match((await code(() => k.putPair(2, xr[0]!, yr[0]!)))[1], /not among the 2 kept/);
    assert.is((await code(() => k.putPair(1, xr[0]!.subarray(1), yr[0]!)))[0], 'E_SHAPE', 'a short block');
    assert.is((await code(() => k.stageKept(Int32Array.of(0), pos, null, 2)))[0], 'E_SHAPE', 'one index per sequence');
    await k.putPair(1, xr[1]!, yr[1]!);
    await k.stageKept(Int32Array.of(1, 0), pos, null, 2);
    assert.is(await k.stepStaged(0.5), await u.step(widen([xr[1]!, xr[0]!]), widen([yr[1]!, yr[0]!]), pos, null, 2, 0.5));
    await k.setLmTail([layer], head);
    await k.stageLmKept(Int32Array.of(0, 1), tg, pos, null, 2);
    assert.is(await k.stepLmStaged(0.5), await u.stepLm(widen(xr), tg, pos, null, 2, 0.5));
    t.destroy();
    u.destroy();
    k.destroy();
  });

  // The lm functions against the CPU lm binding on the same inputs: stepLm is lmLossStep (loss and gradients bitwise),
  // evalLm each block's lmLossEval alone, for an mlp trainer whose frozen layer uses RoPE (the spec's heads and the
  // inverse frequencies reach the backend for the tail). The tail is copied at setLmTail: the host arrays are
  // overwritten afterwards.
  test('the binding: setLmTail/stepLm/evalLm equal lmLossStep/lmLossEval, the tail is copied, misuse as coded errors', async () => {
    const { d, n, T, D, V, params, invFreq, layer, head, code } = await lmBindingSetup();
    const spec = (B: number) => core.nativeLayerSpec(d.semantics, B, T, true, 1);
    const copy = <V extends { data: ArrayBufferView } | null | undefined>(o: Record<string, V>) =>
      Object.fromEntries(Object.entries(o).filter(([, t]) => t).map(([r, t]) => [r, { ...t!, data: (t!.data as Uint8Array).slice() }]));
    const layerCopy = copy(layer as never) as NativeLayerWeights, headCopy = copy(head as never) as NativeHeadWeights;
    const t = await n.cudaTrainer('mlp', spec(2), params, invFreq);
    assert.ok(t.hasLm());
    const x = Float32Array.from({ length: 2 * T * D }, (_, i) => Math.sin(i * 0.37));
    const targets = Int32Array.from({ length: 2 * T }, (_, i) => (i % T === T - 1 ? -1 : (i * 7) % V));
    const positions = Int32Array.from({ length: 2 * T }, (_, i) => i % T);
    const mask = Uint8Array.from({ length: 2 * T }, (_, i) => (i < T || i % T < 6 ? 1 : 0));
    const [c0, m0] = await code(() => t.stepLm(x, targets, positions, mask, 2, 1));
    assert.is(c0, 'E_CUDA');
    assert.match(m0, /no lm tail \(call train_set_lm_tail first\)/);
    assert.is((await code(() => t.evalLm(x, targets, positions, mask, 2)))[0], 'E_CUDA', 'evalLm without a tail');
    await t.setLmTail([layerCopy], headCopy);
    for (const c of [...Object.values(layerCopy), ...Object.values(headCopy)]) (c!.data as Uint8Array).fill(0x7f);
    const grads = Object.fromEntries(Object.entries(params).map(([r, p]) => [r, new Float32Array(p.length)]));
    const want = await n.lmLossStep('mlp', spec(2), params, grads, x, [layer], head, targets, positions, mask, invFreq, 0.5);
    assert.ok(want > 0);
    assert.is(await t.stepLm(x, targets, positions, mask, 2, 0.5), want);
    for (const r of Object.keys(params)) assert.equal(await t.getGrads(r as never), grads[r], r);
    const losses = await t.evalLm(x, targets, positions, mask, 2);
    assert.instance(losses, Float64Array);
    for (const b of [0, 1]) {
      const one = <A extends Float32Array | Int32Array | Uint8Array>(a: A, k: number) => a.subarray(b * T * k, (b + 1) * T * k) as A;
      assert.is(losses[b], await n.lmLossEval('mlp', spec(1), params, one(x, D), [layer], head, one(targets, 1), one(positions, 1), one(mask, 1), invFreq), `block ${b}`);
    }
    assert.equal(await t.evalLm(x, new Int32Array(2 * T).fill(-1), positions, mask, 2), new Float64Array(2), 'no target: 0');
    for (const r of Object.keys(params)) assert.equal(await t.getGrads(r as never), grads[r], `evalLm leaves the gradients: ${r}`);
    // Bad inputs: a target outside the vocabulary names its row; shapes; the tail's refusals are lmLossStep's.
    const bad = targets.slice();
    bad[5] = V;
    const [c1, m1] = await code(() => t.stepLm(x, bad, positions, mask, 2, 1));
    assert.is(c1, 'E_CUDA');
    assert.match(m1, new RegExp(`targets\\[5\\] = ${V} is outside the vocabulary \\[0, ${V}\\)`));
    assert.is((await code(() => t.evalLm(x, bad, positions, mask, 2)))[0], 'E_CUDA');
    assert.is((await code(() => t.stepLm(x, targets, positions, mask, 3, 1)))[0], 'E_SHAPE', 'batch over the spec');
    assert.is((await code(() => t.stepLm(x, targets.subarray(1), positions, mask, 2, 1)))[0], 'E_SHAPE', 'targets of the wrong size');
    assert.is((await code(() => t.stepLm(x, targets, null, mask, 2, 1)))[0], 'E_NATIVE_ARG', 'RoPE needs positions');
    const F = d.semantics.intermediate;
    const [c2, m2] = await code(() => t.setLmTail([{ ...layer, 'gate.bias': { data: new Float32Array(F), dtype: 'f32', shape: [F] } }], head));
    assert.is(c2, 'E_UNSUPPORTED');
    assert.match(m2, /gate\.bias/);
    const [c3, m3] = await code(() => t.setLmTail([layer], { ...head, 'project_out.weight': { data: new Float32Array(4 * D), dtype: 'f32', shape: [4, D] } }));
    assert.is(c3, 'E_UNSUPPORTED');
    assert.match(m3, /project_out/);
    assert.is((await code(() => t.setLmTail([layer], { 'final_norm.weight': head['final_norm.weight']! })))[0], 'E_SHAPE', 'no lm_head');
    assert.is((await code(() => t.setLmTail([{ ...layer, 'q.weight': { ...layer['q.weight']!, shape: [D, layer['q.weight']!.shape[0]! * 2] } }], head)))[0], 'E_SHAPE');
    // The refused tails changed nothing: the first one still runs.
    const grads2 = Object.fromEntries(Object.entries(params).map(([r, p]) => [r, new Float32Array(p.length)]));
    await t.apply({ lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, maxNorm: 1, step: 1 });
    const p1: Record<string, Float32Array> = {};
    for (const r of Object.keys(params)) p1[r] = await t.getParams(r as never);
    assert.is(await t.stepLm(x, targets, positions, mask, 2, 1), await n.lmLossStep('mlp', spec(2), p1, grads2, x, [layer], head, targets, positions, mask, invFreq, 1));
    t.destroy();
    // An mlp spec without heads cannot describe frozen layers (lmLossStep refuses the same); with none it is fine.
    const { heads: _h, kvHeads: _k, headDim: _d, ...mlpOnly } = spec(1);
    const u = await n.cudaTrainer('mlp', mlpOnly, params, null);
    assert.is((await code(() => u.setLmTail([layer], head)))[0], 'E_NATIVE_ARG');
    await u.setLmTail([], head);
    const one = (a: Float32Array) => a.subarray(0, T * D);
    const g1 = Object.fromEntries(Object.entries(params).map(([r, p]) => [r, new Float32Array(p.length)]));
    assert.is(await u.stepLm(one(x), targets.subarray(0, T), null, null, 1, 1), await n.lmLossStep('mlp', mlpOnly, params, g1, one(x), [], head, targets.subarray(0, T), null, null, null, 1));
    u.destroy();
  });

  // A target outside the vocabulary inside a cuda lm run: the backend's refusal surfaces from trainReplacement as a
  // StreamlineError with its message.
  test('--loss lm on cuda: a target outside the vocabulary rejects the run with a StreamlineError naming the row', async () => {
    const model = await fixture('llama-gqa');
    const d = model.description;
    const n = native();
    const T = 8, D = d.semantics.hidden, V = d.vocab, Dh = d.semantics.headDim;
    const w = d.layers[1]!.weights();
    const init: Record<string, Float32Array> = {}, shapes: Record<string, number[]> = {};
    for (const r of ['mlp_norm.weight', 'gate.weight', 'up.weight', 'down.weight'] as const) {
      init[r] = new Float32Array(w[r]!.shape.reduce((a, b) => a * b, 1));
      n.convertFloats(init[r]!, 'f32', w[r]!.data, w[r]!.dtype);
      shapes[r] = [...w[r]!.shape];
    }
    const train = new PairCache({ blocks: 2, rows: T, hidden: D, dtype: 'f32', budgetBytes: 1 << 24, dir: tmp, targets: false });
    for (let b = 0; b < 2; b++) train.add(Float32Array.from({ length: T * D }, (_, i) => Math.cos(i * 0.1 + b)), new Float32Array(0));
    const tokens = [Int32Array.from({ length: T }, (_, i) => i % V), Int32Array.from({ length: T }, (_, i) => (i === 3 ? V + 2 : i % V))];
    const g = d.global();
    const lm = { layers: [d.layers[2]!.weights() as never as NativeLayerWeights], head: { 'final_norm.weight': g['final_norm.weight']!, 'lm_head.weight': (g['lm_head.weight'] ?? g['embed.weight'])! } as NativeHeadWeights, trainTokens: tokens, validationTokens: [] };
    const invFreq = Float32Array.from({ length: Dh / 2 }, (_, i) => 1 / 10000 ** ((2 * i) / Dh));
    const o = { kind: 'mlp' as const, semantics: d.semantics, ropeInvFreq: invFreq, ropeAttentionScaling: 1, init, shapes, train, validation: null, loss: 'lm' as const, lm, microBatch: 2 };
    let err: unknown = null;
    await trainReplacement({ ...o, device: 'cuda' }).catch((e) => { err = e; });
    assert.instance(err, core.StreamlineError);
    assert.is((err as core.StreamlineError).code, 'E_CUDA');
    // Block 1's row 2 predicts token 3 (row T + 2 of the micro-batch, in either shuffled order: row 2 or T + 2).
    assert.match((err as Error).message, new RegExp(`targets\\[(2|${T + 2})\\] = ${V + 2} is outside the vocabulary \\[0, ${V}\\)`));
    err = null;
    await trainReplacement({ ...o, device: 'cpu' }).catch((e) => { err = e; });
    assert.is((err as { code?: string } | null)?.code, 'E_TOKEN_RANGE', 'the CPU refuses it too');
    train.close();
  });

  test.after(() => rmSync(tmp, { recursive: true, force: true }));
}

test.run();
