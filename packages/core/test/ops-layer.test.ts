// Decoder layer, MLP block and head against a straightforward JS f64 implementation of the Hugging Face
// formulas on tiny random layers: Llama-style (pre-norm RMS, SwiGLU, GQA, RoPE), Qwen2-style (q/k/v biases),
// OPT-style (LayerNorm, ReLU fc1/fc2, biases everywhere, pre- and post-norm), and Llama/OPT-pre with post-sublayer
// norms (Gemma 2/3 post_attention_layernorm / post_feedforward_layernorm). f32 weights must agree within
// a max relative error of 1e-4; bf16 weights are compared with the same JS reference run on the
// bf16-rounded weights, so the same tolerance applies (activations stay f32 in both).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { native, type NativeLayerSpec, type NativeLayerWeights, type NativeTensor } from '../src/native.js';
import { bf16Tensor, f32Tensor, fromBf16, randn, rejectsCode, relErr, toBf16 } from './ops-helpers.js';

const n = native();

// '+post': the same layer with post_attn_norm / post_mlp_norm (weights far from 1, so a skipped norm shows).
type Arch = 'llama' | 'qwen2' | 'opt-pre' | 'opt-post' | 'llama+post' | 'opt-pre+post';
interface Layer {
  spec: NativeLayerSpec;
  w: Record<string, Float32Array>;  // f32 master weights by role
  shapes: Record<string, number[]>;
}

function makeLayer(arch: Arch, seed: number): Layer {
  const opt = arch.startsWith('opt');
  const B = 2, T = 9, D = opt ? 24 : 32, H = 4, Hk = opt ? 4 : 2, Dh = opt ? 6 : 8, F = 40;
  const spec: NativeLayerSpec = {
    batch: B, seqLen: T, hidden: D, heads: H, kvHeads: Hk, headDim: Dh, intermediate: F,
    norm: opt ? 'layer' : 'rms', normEps: opt ? 1e-5 : 1e-6, activation: opt ? 'relu' : 'silu',
    gatedMlp: !opt, preNorm: arch !== 'opt-post', useRope: !opt, ropeAttentionScaling: arch.startsWith('llama') ? 1.25 : 1,
  };
  const shapes: Record<string, number[]> = {
    'attn_norm.weight': [D], 'q.weight': [H * Dh, D], 'k.weight': [Hk * Dh, D], 'v.weight': [Hk * Dh, D],
    'o.weight': [D, H * Dh], 'mlp_norm.weight': [D], 'up.weight': [F, D], 'down.weight': [D, F],
  };
  if (!opt) shapes['gate.weight'] = [F, D];
  if (arch === 'qwen2') Object.assign(shapes, { 'q.bias': [H * Dh], 'k.bias': [Hk * Dh], 'v.bias': [Hk * Dh] });
  if (opt)
    Object.assign(shapes, {
      'attn_norm.bias': [D], 'q.bias': [H * Dh], 'k.bias': [Hk * Dh], 'v.bias': [Hk * Dh], 'o.bias': [D],
      'mlp_norm.bias': [D], 'up.bias': [F], 'down.bias': [D],
    });
  const post = arch.endsWith('+post');
  if (post) Object.assign(shapes, { 'post_attn_norm.weight': [D], 'post_mlp_norm.weight': [D] });
  const w: Record<string, Float32Array> = {};
  let s = seed;
  for (const [role, shape] of Object.entries(shapes)) {
    const numel = shape.reduce((a, b) => a * b, 1);
    const fanIn = shape.length === 2 ? shape[1]! : 1;
    w[role] = role.startsWith('post_') ? randn(numel, s++, 0.5).map((x) => 2 + x)
      : role.includes('norm.weight') ? randn(numel, s++, 0.2).map((x) => 1 + x) : randn(numel, s++, role.endsWith('bias') ? 0.1 : 1 / Math.sqrt(fanIn));
  }
  return { spec, w, shapes };
}

function tensors(l: Layer, dtype: 'f32' | 'bf16'): NativeLayerWeights {
  const out: Record<string, NativeTensor> = {};
  for (const [role, data] of Object.entries(l.w)) out[role] = dtype === 'f32' ? f32Tensor(data, l.shapes[role]!) : bf16Tensor(data, l.shapes[role]!);
  return out as NativeLayerWeights;
}

// ---- JS f64 reference -----------------------------------------------------------------------------------
function linear(x: Float64Array, M: number, K: number, w: Float32Array, N: number, b?: Float32Array) {
  const y = new Float64Array(M * N);
  for (let m = 0; m < M; m++)
    for (let j = 0; j < N; j++) {
      let s = b ? b[j]! : 0;
      for (let k = 0; k < K; k++) s += x[m * K + k]! * w[j * K + k]!;
      y[m * N + j] = s;
    }
  return y;
}
function norm(x: Float64Array, M: number, D: number, kind: 'rms' | 'layer', eps: number, w?: Float32Array, b?: Float32Array) {
  const y = new Float64Array(M * D);
  for (let m = 0; m < M; m++) {
    let mean = 0, v = 0;
    if (kind === 'layer') {
      for (let i = 0; i < D; i++) mean += x[m * D + i]!;
      mean /= D;
    }
    for (let i = 0; i < D; i++) v += (x[m * D + i]! - mean) ** 2;
    const r = 1 / Math.sqrt(v / D + eps);
    for (let i = 0; i < D; i++) y[m * D + i] = (x[m * D + i]! - mean) * r * (w ? w[i]! : 1) + (b ? b[i]! : 0);
  }
  return y;
}
const act = (kind: string, v: number) => (kind === 'silu' ? v / (1 + Math.exp(-v)) : Math.max(v, 0));

function jsMlp(h: Float64Array, M: number, s: NativeLayerSpec, w: Record<string, Float32Array>) {
  const D = s.hidden, F = s.intermediate;
  const up = linear(h, M, D, w['up.weight']!, F, w['up.bias']);
  if (s.gatedMlp) {
    const g = linear(h, M, D, w['gate.weight']!, F);
    for (let i = 0; i < up.length; i++) up[i] = act(s.activation, g[i]!) * up[i]!;
  } else {
    for (let i = 0; i < up.length; i++) up[i] = act(s.activation, up[i]!);
  }
  return linear(up, M, F, w['down.weight']!, D, w['down.bias']);
}

function jsLayer(x: Float32Array, s: NativeLayerSpec, w: Record<string, Float32Array>, pos: Int32Array, mask: Uint8Array | null, inv: Float32Array) {
  const { batch: B, seqLen: T, hidden: D, heads: H, kvHeads: Hk, headDim: Dh } = s;
  const M = B * T, eps = s.normEps, kind = s.norm;
  const x64 = Float64Array.from(x);
  const a = s.preNorm ? norm(x64, M, D, kind, eps, w['attn_norm.weight'], w['attn_norm.bias']) : x64;
  const q = linear(a, M, D, w['q.weight']!, H * Dh, w['q.bias']);
  const k = linear(a, M, D, w['k.weight']!, Hk * Dh, w['k.bias']);
  const v = linear(a, M, D, w['v.weight']!, Hk * Dh, w['v.bias']);
  if (s.useRope) {
    const half = Dh / 2, sc = s.ropeAttentionScaling ?? 1;
    const rot = (t: Float64Array, nh: number) => {
      for (let m = 0; m < M; m++)
        for (let h = 0; h < nh; h++)
          for (let i = 0; i < half; i++) {
            const ang = Math.fround(pos[m]! * inv[i]!), c = Math.cos(ang) * sc, sn = Math.sin(ang) * sc;
            const o = (m * nh + h) * Dh, x1 = t[o + i]!, x2 = t[o + half + i]!;
            t[o + i] = x1 * c - x2 * sn;
            t[o + half + i] = x2 * c + x1 * sn;
          }
    };
    rot(q, H);
    rot(k, Hk);
  }
  const scale = s.attnScale || 1 / Math.sqrt(Dh);
  const att = new Float64Array(M * H * Dh);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++) {
      const hk = Math.floor(h / (H / Hk));
      for (let i = 0; i < T; i++) {
        const sc: number[] = [], js: number[] = [];
        for (let j = 0; j <= i; j++) {
          if (mask && !mask[b * T + j]) continue;
          let d = 0;
          for (let e = 0; e < Dh; e++) d += q[((b * T + i) * H + h) * Dh + e]! * k[((b * T + j) * Hk + hk) * Dh + e]!;
          sc.push(d * scale);
          js.push(j);
        }
        if (!sc.length) continue;
        const mx = Math.max(...sc);
        const p = sc.map((z) => Math.exp(z - mx));
        const l = p.reduce((u, z) => u + z, 0);
        for (let c = 0; c < js.length; c++)
          for (let e = 0; e < Dh; e++) att[((b * T + i) * H + h) * Dh + e] += (p[c]! / l) * v[((b * T + js[c]!) * Hk + hk) * Dh + e]!;
      }
    }
  let o = linear(att, M, H * Dh, w['o.weight']!, D, w['o.bias']);
  if (w['post_attn_norm.weight']) o = norm(o, M, D, kind, eps, w['post_attn_norm.weight']);
  const res = new Float64Array(M * D);
  for (let i = 0; i < res.length; i++) res[i] = x64[i]! + o[i]!;
  const r = s.preNorm ? res : norm(res, M, D, kind, eps, w['attn_norm.weight'], w['attn_norm.bias']);
  const h2 = s.preNorm ? norm(r, M, D, kind, eps, w['mlp_norm.weight'], w['mlp_norm.bias']) : r;
  let mlp = jsMlp(h2, M, s, w);
  if (w['post_mlp_norm.weight']) mlp = norm(mlp, M, D, kind, eps, w['post_mlp_norm.weight']);
  let out = new Float64Array(M * D);
  for (let i = 0; i < out.length; i++) out[i] = r[i]! + mlp[i]!;
  if (!s.preNorm) out = norm(out, M, D, kind, eps, w['mlp_norm.weight'], w['mlp_norm.bias']);
  return { out, attnResidual: res, mlpOut: mlp };
}

function inputs(s: NativeLayerSpec, seed: number) {
  const M = s.batch * s.seqLen;
  const x = randn(M * s.hidden, seed);
  // batch 0 full, batch 1 left-padded by 3 with positions starting at 0 on the first real token
  const mask = new Uint8Array(M).fill(1);
  const pos = new Int32Array(M);
  for (let b = 0; b < s.batch; b++)
    for (let t = 0; t < s.seqLen; t++) {
      const padN = b === 1 ? 3 : 0;
      if (t < padN) mask[b * s.seqLen + t] = 0;
      pos[b * s.seqLen + t] = Math.max(0, t - padN);
    }
  const half = s.headDim / 2;
  const inv = new Float32Array(half).map((_, i) => Math.fround(1 / 10000 ** ((2 * i) / s.headDim)));
  return { x, mask, pos, inv, M };
}

function bf16Weights(l: Layer): Record<string, Float32Array> {
  const out: Record<string, Float32Array> = {};
  for (const [k, v] of Object.entries(l.w)) out[k] = fromBf16(toBf16(v));
  return out;
}

for (const arch of ['llama', 'qwen2', 'opt-pre', 'opt-post', 'llama+post', 'opt-pre+post'] as Arch[]) {
  for (const dtype of ['f32', 'bf16'] as const) {
    test(`decoder layer ${arch} (${dtype} weights) matches the f64 reference; captures; in place`, async () => {
      const l = makeLayer(arch, arch.length * 100);
      const { x, mask, pos, inv, M } = inputs(l.spec, 7);
      const D = l.spec.hidden;
      const out = new Float32Array(M * D), attnResidual = new Float32Array(M * D), mlpOut = new Float32Array(M * D);
      const wt = tensors(l, dtype);
      await n.decoderLayerForward(out, x, l.spec, wt, pos, mask, l.spec.useRope ? inv : null, { attnResidual, mlpOut });
      const want = jsLayer(x, l.spec, dtype === 'f32' ? l.w : bf16Weights(l), pos, mask, inv);
      const e = relErr(out, want.out);
      assert.ok(e <= 1e-4, `out: max relative error ${e}`);
      assert.ok(relErr(attnResidual, want.attnResidual) <= 1e-4, `attnResidual ${relErr(attnResidual, want.attnResidual)}`);
      assert.ok(relErr(mlpOut, want.mlpOut) <= 1e-4, `mlpOut ${relErr(mlpOut, want.mlpOut)}`);
      const inPlace = x.slice();
      await n.decoderLayerForward(inPlace, inPlace, l.spec, wt, pos, mask, l.spec.useRope ? inv : null, null);
      assert.equal(Array.from(inPlace), Array.from(out), 'out may alias x');
    });
  }
}

test('decoder layer: NaN in one token reaches only that token and later ones of its own sequence; zero rows', async () => {
  const l = makeLayer('llama', 5);
  const { x, mask, pos, inv, M } = inputs(l.spec, 3);
  const D = l.spec.hidden, T = l.spec.seqLen, wt = tensors(l, 'bf16');
  const clean = new Float32Array(M * D), dirty = new Float32Array(M * D);
  await n.decoderLayerForward(clean, x, l.spec, wt, pos, mask, inv, null);
  const xd = x.slice();
  xd[4 * D + 3] = NaN;  // batch 0, token 4
  await n.decoderLayerForward(dirty, xd, l.spec, wt, pos, mask, inv, null);
  for (let m = 0; m < M; m++) {
    const row = Array.from(dirty.subarray(m * D, (m + 1) * D));
    if (m >= 4 && m < T) assert.ok(row.every(Number.isNaN), `row ${m} should be NaN`);
    else assert.equal(row, Array.from(clean.subarray(m * D, (m + 1) * D)), `row ${m} unchanged`);
  }
  await n.decoderLayerForward(new Float32Array(0), new Float32Array(0), { ...l.spec, batch: 0 }, wt, new Int32Array(0), null, inv, null);
  await n.headForward(new Float32Array(0), 0, { hidden: D, vocab: 5, norm: 'rms', normEps: 1e-6 }, { 'lm_head.weight': f32Tensor(new Float32Array(5 * D), [5, D]) }, new Int32Array(0), new Float32Array(0), new Float32Array(0));
});

test('mlpBlockForward is the MLP half: pre-norm x + MLP(n2(x)) (x + pn2(MLP(n2(x))) with post_mlp_norm), post-norm n2(x + MLP(x))', async () => {
  for (const arch of ['llama', 'opt-post', 'llama+post', 'opt-pre+post'] as Arch[]) {
    const l = makeLayer(arch, 3);
    const { x, M } = inputs(l.spec, 11);
    const D = l.spec.hidden;
    const w: NativeLayerWeights = {};
    for (const role of ['mlp_norm.weight', 'mlp_norm.bias', 'gate.weight', 'up.weight', 'up.bias', 'down.weight', 'down.bias', 'post_mlp_norm.weight'] as const)
      if (l.w[role]) w[role] = f32Tensor(l.w[role]!, l.shapes[role]!);
    const out = new Float32Array(M * D), mo = new Float32Array(M * D);
    const { heads: _h, kvHeads: _k, headDim: _d, ...mlpSpec } = l.spec;
    await n.mlpBlockForward(out, x, mlpSpec, w, mo);
    const x64 = Float64Array.from(x);
    const h = l.spec.preNorm ? norm(x64, M, D, l.spec.norm, l.spec.normEps, l.w['mlp_norm.weight'], l.w['mlp_norm.bias']) : x64;
    let m = jsMlp(h, M, l.spec, l.w);
    if (l.w['post_mlp_norm.weight']) m = norm(m, M, D, l.spec.norm, l.spec.normEps, l.w['post_mlp_norm.weight']);
    let want = new Float64Array(M * D);
    for (let i = 0; i < want.length; i++) want[i] = x64[i]! + m[i]!;
    if (!l.spec.preNorm) want = norm(want, M, D, l.spec.norm, l.spec.normEps, l.w['mlp_norm.weight'], l.w['mlp_norm.bias']);
    assert.ok(relErr(out, want) <= 1e-4, `${arch}: ${relErr(out, want)}`);
    assert.ok(relErr(mo, m) <= 1e-4, `${arch} mlpOut`);
  }
});

test('decoder layer with post norms = explicit composition: x + rmsnorm(attn) (CPU op), then the MLP block, then rmsnorm of its output', async () => {
  const l = makeLayer('llama+post', 21);
  const { x, mask, pos, inv, M } = inputs(l.spec, 5);
  const D = l.spec.hidden, eps = l.spec.normEps;
  const full = tensors(l, 'bf16');
  const { 'post_attn_norm.weight': pn1, 'post_mlp_norm.weight': pn2, ...plain } = full;
  const out = new Float32Array(M * D), attnResidual = new Float32Array(M * D), mlpOut = new Float32Array(M * D);
  await n.decoderLayerForward(out, x, l.spec, full, pos, mask, inv, { attnResidual, mlpOut });
  // The attention output A of the same layer without post norms: attnResidual − x.
  const res0 = new Float32Array(M * D);
  await n.decoderLayerForward(new Float32Array(M * D), x, l.spec, plain, pos, mask, inv, { attnResidual: res0 });
  const A = res0.map((v, i) => v - x[i]!), nA = new Float32Array(M * D);
  n.rmsnormForward(nA, A, pn1!, M, D, eps);
  const h = nA.map((v, i) => v + x[i]!);
  const m = new Float32Array(M * D), nm = new Float32Array(M * D);
  const { heads: _h, kvHeads: _k, headDim: _d, ...mlpSpec } = l.spec;
  await n.mlpBlockForward(new Float32Array(M * D), h, mlpSpec, plain, m);
  n.rmsnormForward(nm, m, pn2!, M, D, eps);
  const want = nm.map((v, i) => v + h[i]!);
  assert.ok(relErr(attnResidual, h) <= 1e-5, `attnResidual = x + pn1(attn): ${relErr(attnResidual, h)}`);
  assert.ok(relErr(mlpOut, nm) <= 1e-5, `mlpOut = pn2(mlp): ${relErr(mlpOut, nm)}`);
  assert.ok(relErr(out, want) <= 1e-5, `out: ${relErr(out, want)}`);
  // The norms matter at this size: without them the composition is far off (what a skipped norm would give).
  const skipped = new Float32Array(M * D);
  await n.decoderLayerForward(skipped, x, l.spec, plain, pos, mask, inv, null);
  assert.ok(relErr(skipped, want) > 0.05, `post norms change the output: ${relErr(skipped, want)}`);
});

test('post norms: refused in a post-norm (OPT-style) layer, post_attn_norm refused by an MLP block, shapes checked', async () => {
  const l = makeLayer('opt-post', 2);
  const { x, mask, pos, M } = inputs(l.spec, 1);
  const D = l.spec.hidden, wt = tensors(l, 'f32'), one = f32Tensor(new Float32Array(D).fill(1), [D]);
  const run = (w: NativeLayerWeights) => (async () => n.decoderLayerForward(new Float32Array(M * D), x, l.spec, w, pos, mask, null, null))();
  await rejectsCode(run({ ...wt, 'post_attn_norm.weight': one }), 'E_SHAPE', 'post_attn_norm.weight: not used in a post-norm (OPT-style) layer');
  await rejectsCode(run({ ...wt, 'post_mlp_norm.weight': one }), 'E_SHAPE', 'post_mlp_norm.weight: not used in a post-norm (OPT-style) layer');
  const { heads: _h, kvHeads: _k, headDim: _d, ...mlpSpec } = l.spec;
  await rejectsCode((async () => n.mlpBlockForward(new Float32Array(M * D), x, mlpSpec, { ...wt, 'post_mlp_norm.weight': one }))(), 'E_SHAPE', 'post_mlp_norm.weight');
  const g = makeLayer('llama+post', 2), gt = tensors(g, 'f32'), gi = inputs(g.spec, 1);
  const { heads: _h2, kvHeads: _k2, headDim: _d2, ...gSpec } = g.spec;
  await rejectsCode((async () => n.mlpBlockForward(new Float32Array(gi.M * g.spec.hidden), gi.x, gSpec, gt))(), 'E_SHAPE', 'post_attn_norm.weight: not used by an MLP block');
  await rejectsCode((async () => n.decoderLayerForward(new Float32Array(gi.M * g.spec.hidden), gi.x, g.spec, { ...gt, 'post_mlp_norm.weight': f32Tensor(new Float32Array(3), [3]) }, gi.pos, gi.mask, gi.inv, null))(), 'E_SHAPE', 'post_mlp_norm.weight');
});

test('decoder layer: bad input rejects with coded errors naming the role or argument', async () => {
  const l = makeLayer('llama', 1);
  const { x, mask, pos, inv, M } = inputs(l.spec, 1);
  const D = l.spec.hidden, out = new Float32Array(M * D);
  const wt = tensors(l, 'f32');
  const call = (o: Partial<{ out: Float32Array; x: Float32Array; spec: NativeLayerSpec; w: NativeLayerWeights; pos: Int32Array | null; mask: Uint8Array | null; inv: Float32Array | null }>) =>
    (async () => n.decoderLayerForward(o.out ?? out, o.x ?? x, o.spec ?? l.spec, o.w ?? wt, o.pos === undefined ? pos : o.pos, o.mask === undefined ? mask : o.mask, o.inv === undefined ? inv : o.inv, null))();
  await rejectsCode(call({ w: { ...wt, 'q.weight': f32Tensor(new Float32Array(16 * 32), [16, 32]) } }), 'E_SHAPE', 'q.weight');
  await rejectsCode(call({ w: { ...wt, 'down.weight': null } }), 'E_SHAPE', 'down.weight');
  await rejectsCode(call({ w: { ...wt, 'qq.weight': wt['q.weight'] } as NativeLayerWeights }), 'E_NATIVE_ARG', 'qq.weight');
  await rejectsCode(call({ w: { ...wt, 'attn_norm.bias': f32Tensor(new Float32Array(D), [D]) } }), 'E_SHAPE', 'attn_norm.bias');
  await rejectsCode(call({ x: new Float32Array(M * D - 1) }), 'E_SHAPE', 'x');
  await rejectsCode(call({ pos: null }), 'E_NATIVE_ARG', 'positions');
  await rejectsCode(call({ pos: new Int32Array(M + 1) }), 'E_SHAPE', 'positions');
  await rejectsCode(call({ mask: new Uint8Array(3) }), 'E_SHAPE', 'keyMask');
  await rejectsCode(call({ inv: new Float32Array(3) }), 'E_SHAPE', 'ropeInvFreq');
  await rejectsCode(call({ spec: { ...l.spec, kvHeads: 3 } }), 'E_SHAPE', 'kvHeads');
  await rejectsCode(call({ spec: { ...l.spec, activation: 'swish' as never } }), 'E_NATIVE_ARG', 'activation');
  await rejectsCode(call({ w: { ...wt, 'up.weight': { data: new Int32Array(40 * 32), dtype: 'i32', shape: [40, 32] } } }), 'E_DTYPE', 'up.weight');
});

test('head: logits and log-probs match f64 (rms; layernorm with bias and project_out); chunked == full', async () => {
  const M = 7, D = 16, V = 23, P = 12;
  const x = randn(M * D, 1, 2);
  const targets = new Int32Array([0, 5, -1, 22, 3, 3, 10]);
  for (const opt of [false, true]) {
    const nw = randn(D, 2, 0.2).map((v) => 1 + v), nb = randn(D, 3, 0.1);
    const proj = randn(P * D, 4, 0.25), lm = randn(V * (opt ? P : D), 5, 0.3);
    const spec = { hidden: D, vocab: V, norm: opt ? 'layer' : 'rms', normEps: 1e-5, ...(opt ? { projDim: P } : {}) } as const;
    const w = {
      'final_norm.weight': f32Tensor(nw, [D]),
      ...(opt ? { 'final_norm.bias': f32Tensor(nb, [D]), 'project_out.weight': f32Tensor(proj, [P, D]) } : {}),
      'lm_head.weight': bf16Tensor(lm, [V, opt ? P : D]),
    };
    const logits = new Float32Array(M * V), lp = new Float32Array(M), lp2 = new Float32Array(M);
    await n.headForward(x, M, spec, w, targets, logits, lp);
    await n.headForward(x, M, spec, w, targets, null, lp2);
    assert.equal(Array.from(lp2), Array.from(lp), 'log-probs without logits output');
    let h = norm(Float64Array.from(x), M, D, spec.norm, 1e-5, nw, opt ? nb : undefined);
    if (opt) h = linear(h, M, D, proj, P);
    const want = linear(h, M, opt ? P : D, fromBf16(toBf16(lm)), V);
    assert.ok(relErr(logits, want) <= 1e-4, `logits ${relErr(logits, want)}`);
    for (let m = 0; m < M; m++) {
      if (targets[m]! < 0) { assert.is(lp[m], 0); continue; }
      let mx = -Infinity, s = 0;
      for (let j = 0; j < V; j++) mx = Math.max(mx, want[m * V + j]!);
      for (let j = 0; j < V; j++) s += Math.exp(want[m * V + j]! - mx);
      const e = want[m * V + targets[m]!]! - mx - Math.log(s);
      assert.ok(Math.abs(lp[m]! - e) <= 1e-4 * (1 + Math.abs(e)), `row ${m}: ${lp[m]} vs ${e}`);
    }
    await rejectsCode((async () => n.headForward(x, M, spec, w, new Int32Array([0, 0, 0, 23, 0, 0, 0]), null, lp))(), 'E_TOKEN_RANGE', 'targets[3] = 23');
    await rejectsCode((async () => n.headForward(x, M, spec, { ...w, 'lm_head.weight': f32Tensor(lm.subarray(0, 10), [10]) }, null, logits, null))(), 'E_SHAPE', 'lm_head.weight');
  }
});

test.run();
