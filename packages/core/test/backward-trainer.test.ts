// End-to-end smoke test of replacement training through main's trainer (train/trainer.ts) on the native
// step: a student replacement initialised near a random teacher learns the teacher's mapping (loss falls),
// and a run interrupted after a few steps and resumed ends with bitwise the same weights.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { native } from '../src/native.js';
import { PairCache } from '../src/train/pair-cache.js';
import { trainReplacement } from '../src/train/trainer.js';
import { randn, rng } from './backward-helpers.js';

const n = native();
const T = 8, D = 16, F = 24, H = 4, Hk = 2, Dh = 4;
const semantics = {
  hidden: D, heads: H, kvHeads: Hk, headDim: Dh, intermediate: F, norm: 'rms' as const, normEps: 1e-5,
  activation: 'silu' as const, gatedMlp: true, preNorm: true, attnScale: 0,
};
const shapes: Record<string, number[]> = {
  'attn_norm.weight': [D], 'q.weight': [H * Dh, D], 'k.weight': [Hk * Dh, D], 'v.weight': [Hk * Dh, D],
  'o.weight': [D, H * Dh], 'mlp_norm.weight': [D], 'gate.weight': [F, D], 'up.weight': [F, D], 'down.weight': [D, F],
};
const invFreq = Float32Array.from({ length: Dh / 2 }, (_, i) => 1 / 10000 ** ((2 * i) / Dh));

async function makeData(kind: 'mlp' | 'layer', seed: number) {
  const r = rng(seed);
  const roles = Object.keys(shapes).filter((k) => kind === 'layer' || !/^(attn_norm|q|k|v|o)\./.test(k));
  const teacher: Record<string, Float32Array> = {}, student: Record<string, Float32Array> = {};
  for (const role of roles) {
    const size = shapes[role]!.reduce((a, b) => a * b, 1);
    teacher[role] = role.includes('norm') ? new Float32Array(size).fill(1) : randn(r, size, 0.3);
    student[role] = Float32Array.from(teacher[role]!, (v) => v + 0.1 * r.normal());
  }
  const spec = { ...semantics, batch: 1, seqLen: T, useRope: true, ropeAttentionScaling: 1 };
  const pos = Int32Array.from({ length: T }, (_, i) => i);
  const cache = (blocks: number) => new PairCache({ blocks, rows: T, hidden: D, dtype: 'f32', budgetBytes: 1 << 30, dir: os.tmpdir() });
  const train = cache(12), val = cache(4);
  for (const c of [train, val])
    for (let b = 0; b < c.blocks; b++) {
      const x = randn(r, T * D), y = new Float32Array(T * D);
      await n.replacementForward(kind, spec, teacher, y, x, pos, null, invFreq);
      c.add(x, y);
    }
  const sub = Object.fromEntries(roles.map((k) => [k, shapes[k]!]));
  return { student, train, val, shapes: sub };
}

for (const kind of ['mlp', 'layer'] as const) {
  test(`${kind}: the student's validation loss falls towards the teacher`, async () => {
    const d = await makeData(kind, kind === 'mlp' ? 1 : 2);
    const res = await trainReplacement({
      kind, semantics, ropeInvFreq: invFreq, ropeAttentionScaling: 1, init: d.student, shapes: d.shapes,
      train: d.train, validation: d.val, lr: 1e-2, minLr: 1e-3, microBatch: 2, gradAccum: 2, epochs: 20, seed: 5, evalEvery: 5,
    });
    const first = res.history[0]!, last = res.history[res.history.length - 1]!;
    assert.ok(res.history.every((h) => Number.isFinite(h.loss)));
    assert.ok(res.bestValLoss! < 0.5 * first.loss, `validation ${res.bestValLoss} vs first training loss ${first.loss}`);
    assert.ok(last.loss < first.loss, `loss ${first.loss} -> ${last.loss}`);
    d.train.close(); d.val.close();
  });
}

test('layer: an interrupted and resumed run ends with bitwise the same weights', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'streamline-train-'));
  try {
    const base = async () => makeData('layer', 3);
    const opts = (d: Awaited<ReturnType<typeof base>>) => ({
      kind: 'layer' as const, semantics, ropeInvFreq: invFreq, ropeAttentionScaling: 1, init: d.student, shapes: d.shapes,
      train: d.train, validation: d.val, lr: 5e-3, minLr: 1e-3, microBatch: 2, gradAccum: 1, epochs: 2, seed: 9, evalEvery: 2,
    });
    const a = await base();
    const full = await trainReplacement(opts(a));
    const b = await base();
    const ctl = new AbortController();
    const ckpt = path.join(dir, 'ckpt.bin');
    const part = await trainReplacement({ ...opts(b), checkpointFile: ckpt, signal: ctl.signal, onStep: (s) => { if (s.step === 4) ctl.abort(); } });
    assert.ok(part.interrupted && fs.existsSync(ckpt));
    const c = await base();
    const resumed = await trainReplacement({ ...opts(c), checkpointFile: ckpt, resume: true });
    assert.is(resumed.steps, full.steps);
    for (const role of Object.keys(full.weights)) {
      const x = full.weights[role as keyof typeof full.weights]!, y = resumed.weights[role as keyof typeof resumed.weights]!;
      assert.ok(Buffer.from(x.buffer, x.byteOffset, x.byteLength).equals(Buffer.from(y.buffer, y.byteOffset, y.byteLength)), role);
    }
    for (const d of [a, b, c]) { d.train.close(); d.val.close(); }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

// readBf16 hands out the stored bits (the CUDA trainer's stageBf16 widens them): widened, they are read()'s values,
// from memory (views of the cache's own buffer, no copy) and from disk; with and without targets; f32 caches refuse.
test('pair cache: readBf16 widens to read(), readInto writes it in place, from memory and disk', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sl-pairs-'));
  try {
    const r = rng(11);
    const xs = [randn(r, T * D), randn(r, T * D)], ys = [randn(r, T * D), randn(r, T * D)];
    xs[1]![3] = NaN;
    for (const budget of [1 << 20, 1]) {
      for (const targets of [true, false]) {
        const c = new PairCache({ blocks: 2, rows: T, hidden: D, budgetBytes: budget, dir, targets });
        xs.forEach((x, i) => c.add(x, ys[i]!));
        const what = `${c.location}${targets ? '' : ', no targets'}`;
        for (let i = 0; i < 2; i++) {
          const raw = c.readBf16(i), want = c.read(i);
          const wx = new Float32Array(T * D), wy = new Float32Array(raw.y.length);
          n.convertFloats(wx, 'f32', raw.x, 'bf16');
          if (targets) n.convertFloats(wy, 'f32', raw.y, 'bf16');
          assert.equal(Buffer.from(wx.buffer), Buffer.from(want.x.buffer), `${what}: x of block ${i}`);
          assert.equal(Buffer.from(wy.buffer), Buffer.from(want.y.buffer), `${what}: y of block ${i}`);
          assert.is(raw.y.length, targets ? T * D : 0, what);
        }
        if (c.location === 'memory') assert.is(c.readBf16(0).x.buffer, c.readBf16(0).x.buffer, 'a view, not a copy');
        c.close();
      }
    }
    const f32 = new PairCache({ blocks: 1, rows: T, hidden: D, dtype: 'f32', budgetBytes: 1 << 20, dir });
    assert.throws(() => f32.readBf16(0), (e: { code?: string }) => e.code === 'E_STATE');
    // readInto (the trainer's batch assembly) writes read()'s values into slices of a larger array, for both dtypes.
    for (const dtype of ['f32', 'bf16'] as const) {
      for (const budget of [1 << 20, 1]) {
        const c = new PairCache({ blocks: 2, rows: T, hidden: D, dtype, budgetBytes: budget, dir });
        xs.forEach((x, i) => c.add(x, ys[i]!));
        const bx = new Float32Array(3 * T * D).fill(7), by = new Float32Array(3 * T * D).fill(7);
        c.readInto(1, bx.subarray(T * D, 2 * T * D), by.subarray(T * D, 2 * T * D));
        const want = c.read(1);
        assert.equal(Buffer.from(bx.slice(T * D, 2 * T * D).buffer), Buffer.from(want.x.buffer), `${dtype} ${c.location}: x`);
        assert.equal(Buffer.from(by.slice(T * D, 2 * T * D).buffer), Buffer.from(want.y.buffer), `${dtype} ${c.location}: y`);
        assert.ok(bx.subarray(0, T * D).every((v) => v === 7) && bx.subarray(2 * T * D).every((v) => v === 7), 'only its slice');
        if (dtype === 'f32') assert.equal(Array.from(want.x), Array.from(xs[1]!).map((v) => (Number.isNaN(v) ? NaN : v)), 'f32 keeps the values');
        assert.throws(() => c.readInto(0, bx.subarray(0, 5), by), (e: { code?: string }) => e.code === 'E_SHAPE');
        c.close();
      }
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
