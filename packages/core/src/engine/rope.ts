/**
 * Rotary position embedding frequencies, with Hugging Face's scaling variants (modeling_rope_utils.py):
 * `default`, `linear`, `dynamic` (NTK-aware, depends on the sequence length), `llama3`, `longrope` (its short or
 * long factors by the sequence length, like dynamic_rope_update's longrope_frequency_update) and `yarn`.
 * Computed in f64 and rounded once to f32; HF computes them in f32 (difference ≤ 1 ulp per frequency).
 */

/** The RoPE fields of a model config, already defaulted. */
export interface RopeParams {
  theta: number;
  /** Rotated dimensions per head (head_dim × partial_rotary_factor). */
  dim: number;
  maxPositionEmbeddings: number;
  scaling: null | {
    type: 'default' | 'linear' | 'dynamic' | 'llama3';
    factor: number;
    lowFreqFactor?: number;
    highFreqFactor?: number;
    originalMaxPositionEmbeddings?: number;
  } | {
    type: 'longrope';
    shortFactor: readonly number[];
    longFactor: readonly number[];
    attentionFactor: number;
    originalMaxPositionEmbeddings: number;
  } | {
    type: 'yarn';
    factor: number;
    originalMaxPositionEmbeddings: number;
    attentionFactor: number;
    betaFast: number;
    betaSlow: number;
    truncate: boolean;
  };
}

/**
 * YaRN (_compute_yarn_parameters): each frequency is a blend of itself (extrapolation) and itself ÷ factor
 * (interpolation). The blend is a linear ramp over the frequency index i (0 ≤ i < dim/2) between the "correction
 * dims" where a frequency turns betaFast and betaSlow times in the original context: below `low` it is kept, above
 * `high` divided by factor. The correction dims are computed on the rotated dims (`dim`), clamped to [0, dim − 1]
 * (dim, not dim/2, as transformers does), and the ramp gets 0.001 of width when low = high.
 */
function yarnFrequencies(inv: Float64Array, dim: number, base: number, s: Extract<RopeParams['scaling'], { type: 'yarn' }>): void {
  const correctionDim = (rotations: number) =>
    (dim * Math.log(s.originalMaxPositionEmbeddings / (rotations * 2 * Math.PI))) / (2 * Math.log(base));
  let low = correctionDim(s.betaFast), high = correctionDim(s.betaSlow);
  if (s.truncate) low = Math.floor(low), high = Math.ceil(high);
  low = Math.max(low, 0);
  high = Math.min(high, dim - 1);
  if (low === high) high += 0.001;
  for (let i = 0; i < inv.length; i++) {
    const ramp = Math.min(1, Math.max(0, (i - low) / (high - low)));
    inv[i] = (inv[i]! / s.factor) * ramp + inv[i]! * (1 - ramp);
  }
}

/** Inverse frequencies (dim/2 values) and the attention scaling factor for a batch whose longest row is seqLen. */
export function ropeFrequencies(p: RopeParams, seqLen: number): { invFreq: Float32Array; attentionScaling: number } {
  const half = p.dim / 2;
  const s = p.scaling;
  let base = p.theta;
  if (s?.type === 'dynamic') {
    // HF grows the base only when the sequence is longer than the original context; we recompute per call,
    // so results never depend on what ran before (HF caches the largest length seen).
    const original = s.originalMaxPositionEmbeddings ?? p.maxPositionEmbeddings;
    if (seqLen > original) base = base * ((s.factor * seqLen) / original - (s.factor - 1)) ** (p.dim / (p.dim - 2));
  }
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / base ** ((2 * i) / p.dim);
  if (s?.type === 'longrope') {
    // HF picks by max(position_ids) + 1; our positions run 0..seqLen-1, so that is seqLen.
    const ext = seqLen > s.originalMaxPositionEmbeddings ? s.longFactor : s.shortFactor;
    for (let i = 0; i < half; i++) inv[i] = inv[i]! / ext[i]!;
    return { invFreq: Float32Array.from(inv), attentionScaling: s.attentionFactor };
  }
  if (s?.type === 'yarn') {
    yarnFrequencies(inv, p.dim, base, s);
    return { invFreq: Float32Array.from(inv), attentionScaling: s.attentionFactor };
  }
  if (s?.type === 'linear') for (let i = 0; i < half; i++) inv[i] = inv[i]! / s.factor;
  if (s?.type === 'llama3') {
    const factor = s.factor, low = s.lowFreqFactor ?? 1, high = s.highFreqFactor ?? 4;
    const old = s.originalMaxPositionEmbeddings ?? 8192;
    const lowWavelen = old / low, highWavelen = old / high;
    for (let i = 0; i < half; i++) {
      const f = inv[i]!, wavelen = (2 * Math.PI) / f;
      let v = wavelen > lowWavelen ? f / factor : f;
      if (!(wavelen < highWavelen) && !(wavelen > lowWavelen)) {
        const smooth = (old / wavelen - low) / (high - low);
        v = ((1 - smooth) * v) / factor + smooth * v;
      }
      inv[i] = v;
    }
  }
  return { invFreq: Float32Array.from(inv), attentionScaling: 1 };
}
