// f64 forward of the `mlp` and `layer` replacements (and so of a frozen pre-norm decoder layer) in plain
// JavaScript, the ground truth of backward-replacement.test.ts and lm-loss.test.ts. Not a test file itself.
import {
  actF64, attentionF64, layernormF64, linearF64, rmsnormF64, ropeF64, type ActName, type F64,
} from './backward-helpers.js';

export interface Spec {
  batch: number; seqLen: number; hidden: number; heads: number; kvHeads: number; headDim: number;
  intermediate: number; norm: 'rms' | 'layer'; normEps: number; activation: ActName; gatedMlp: boolean;
  preNorm: boolean; useRope: boolean; attnScale: number; ropeAttentionScaling: number; gradScale?: number;
  /** Sliding window (keys per query; absent or 0: full causal). */
  window?: number;
  /** Partial RoPE: the leading rotaryDim dims of each head rotate (Phi-3 partial_rotary_factor); absent: headDim. */
  rotaryDim?: number;
}
export type Kind = 'mlp' | 'layer';
export type Params = Record<string, Float32Array>;

/**
 * qkNorm: Qwen3's per-head q_norm/k_norm weights [headDim] (layer only). postNorms: Gemma's post-sublayer norms
 * post_mlp_norm.weight [hidden] and, for a layer, post_attn_norm.weight [hidden].
 */
export function shapes(kind: Kind, s: Spec, biases: boolean, qkNorm = false, postNorms = false): Record<string, number> {
  const D = s.hidden, F = s.intermediate, Q = s.heads * s.headDim, KV = s.kvHeads * s.headDim;
  const r: Record<string, number> = { 'mlp_norm.weight': D, 'up.weight': F * D, 'down.weight': D * F };
  if (s.gatedMlp) r['gate.weight'] = F * D;
  if (s.norm === 'layer') r['mlp_norm.bias'] = D;
  if (biases) Object.assign(r, { 'up.bias': F, 'down.bias': D });
  if (kind === 'layer') {
    Object.assign(r, { 'attn_norm.weight': D, 'q.weight': Q * D, 'k.weight': KV * D, 'v.weight': KV * D, 'o.weight': D * Q });
    if (s.norm === 'layer') r['attn_norm.bias'] = D;
    if (biases) Object.assign(r, { 'q.bias': Q, 'k.bias': KV, 'v.bias': KV, 'o.bias': D });
    if (qkNorm) Object.assign(r, { 'q_norm.weight': s.headDim, 'k_norm.weight': s.headDim });
    if (postNorms) r['post_attn_norm.weight'] = D;
  }
  if (postNorms) r['post_mlp_norm.weight'] = D;
  return r;
}

function norm(s: Spec, x: F64, w: F64 | undefined, b: F64 | undefined, M: number): F64 {
  return s.norm === 'layer' ? layernormF64(x, w ?? null, b ?? null, M, s.hidden, s.normEps) : rmsnormF64(x, w ?? null, M, s.hidden, s.normEps);
}

function mlpF64(s: Spec, P: Record<string, F64>, x: F64, M: number): F64 {
  const D = s.hidden, F = s.intermediate;
  const nx = norm(s, x, P['mlp_norm.weight'], P['mlp_norm.bias'], M);
  const up = linearF64(nx, P['up.weight']!, P['up.bias'] ?? null, M, F, D);
  let mid: F64;
  if (s.gatedMlp) {
    const gate = linearF64(nx, P['gate.weight']!, null, M, F, D);
    mid = gate.map((g, i) => actF64(g, s.activation) * up[i]!);
  } else {
    mid = up.map((u) => actF64(u, s.activation));
  }
  let down = linearF64(mid, P['down.weight']!, P['down.bias'] ?? null, M, D, F);
  // Gemma's post_feedforward_layernorm: the MLP output is normed (weight only) before the residual add
  if (P['post_mlp_norm.weight']) down = norm(s, down, P['post_mlp_norm.weight'], undefined, M);
  return x.map((v, i) => v + down[i]!);
}

export function forwardF64(kind: Kind, s: Spec, P: Record<string, F64>, x: F64, pos: Int32Array, mask: Uint8Array | null,
  invFreq: Float32Array): F64 {
  const M = s.batch * s.seqLen, D = s.hidden;
  if (kind === 'mlp') return mlpF64(s, P, x, M);
  const { heads: H, kvHeads: Hk, headDim: Dh } = s, Q = H * Dh, KV = Hk * Dh;
  const a = norm(s, x, P['attn_norm.weight'], P['attn_norm.bias'], M);
  let q = linearF64(a, P['q.weight']!, P['q.bias'] ?? null, M, Q, D);
  let k = linearF64(a, P['k.weight']!, P['k.bias'] ?? null, M, KV, D);
  const v = linearF64(a, P['v.weight']!, P['v.bias'] ?? null, M, KV, D);
  if (P['q_norm.weight']) {  // HF Qwen3: RMSNorm over head_dim of each head's row, before RoPE
    q = rmsnormF64(q, P['q_norm.weight'], M * H, Dh, s.normEps);
    k = rmsnormF64(k, P['k_norm.weight']!, M * Hk, Dh, s.normEps);
  }
  if (s.useRope) {
    const rot = s.rotaryDim ?? Dh, half = rot / 2, cos = new Float64Array(M * half), sin = new Float64Array(M * half);
    for (let m = 0; m < M; m++)
      for (let i = 0; i < half; i++) {
        const ang = Math.fround(pos[m]! * invFreq[i]!); // rope_tables: f32 angle
        cos[m * half + i] = Math.cos(ang) * s.ropeAttentionScaling;
        sin[m * half + i] = Math.sin(ang) * s.ropeAttentionScaling;
      }
    q = ropeF64(q, cos, sin, M, H, Dh, rot);
    k = ropeF64(k, cos, sin, M, Hk, Dh, rot);
  }
  const { out } = attentionF64(q, k, v, mask, s.batch, s.seqLen, H, Hk, Dh, s.attnScale, s.window ?? 0);
  let o = linearF64(out, P['o.weight']!, P['o.bias'] ?? null, M, D, Q);
  if (P['post_attn_norm.weight']) o = norm(s, o, P['post_attn_norm.weight'], undefined, M);  // Gemma post_attention_layernorm
  return mlpF64(s, P, x.map((xv, i) => xv + o[i]!), M);
}
