// YaRN frequencies (engine/rope.ts) on hand-worked cases, and proof that the two YaRN golden fixtures
// (qwen3-yarn, llama-yarn-mscale; checked within 1e-4 by engine-fixtures.test.ts) would catch a wrong ramp or a
// wrong attention factor: each plausible mistake, applied to the loaded model, moves the logits far past 1e-4.
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { forwardDescription, loadModel, openSafetensors, ropeFrequencies, type ModelDescription, type RopeParams } from '../src/index.js';
import { normwiseError, repoRoot } from './_helpers.js';

type Yarn = Extract<RopeParams['scaling'], { type: 'yarn' }>;
const yarn = (over: Partial<Yarn> = {}): Yarn => ({
  type: 'yarn', factor: 4, originalMaxPositionEmbeddings: 256, attentionFactor: 1.25, betaFast: 32, betaSlow: 1, truncate: true, ...over,
});
/** The frequencies YaRN must give when share[i] of frequency i is divided by the factor (the rest kept). */
const blended = (theta: number, dim: number, factor: number, share: number[]) =>
  Float32Array.from(share, (w, i) => theta ** (-(2 * i) / dim) * (1 - w + w / factor));

test('ramp by hand: theta 1e6, 16 dims, original 256: correction dims 0.14 / 2.15 -> [0, 3]', () => {
  // dim·ln(256 / (2π·32)) / (2 ln 1e6) = 0.140 floors to 0; with 1 rotation 2.147 ceils to 3
  const p: RopeParams = { theta: 1e6, dim: 16, maxPositionEmbeddings: 1024, scaling: yarn() };
  const r = ropeFrequencies(p, 20);
  assert.equal(r.invFreq, blended(1e6, 16, 4, [0, 1 / 3, 2 / 3, 1, 1, 1, 1, 1]));
  assert.is(r.attentionScaling, 1.25);
  // not a function of the sequence length
  assert.equal(ropeFrequencies(p, 1).invFreq, r.invFreq);
  assert.equal(ropeFrequencies(p, 1 << 20).invFreq, r.invFreq);
});

test('ramp by hand: partial rotation uses the rotated dims (12 of 16) for the correction range', () => {
  // 12·ln(64 / 2π) / (2 ln 1e4) = 1.51 ceils to 2: [0, 1/2, 1, ...]; with head_dim 16 it would be [0, 1/3, 2/3, 1]
  const p: RopeParams = { theta: 1e4, dim: 12, maxPositionEmbeddings: 256, scaling: yarn({ originalMaxPositionEmbeddings: 64, factor: 8 }) };
  assert.equal(ropeFrequencies(p, 8).invFreq, blended(1e4, 12, 8, [0, 0.5, 1, 1, 1, 1]));
});

test('ramp by hand: truncate false keeps the fractional range; an empty range gets 0.001 of width', () => {
  // beta 16 / 2 in 128 positions, 16 dims, theta 1e4: [0.2100, 2.0158]
  const lo = (16 * Math.log(128 / (2 * Math.PI * 16))) / (2 * Math.log(1e4)), hi = (16 * Math.log(128 / (2 * Math.PI * 2))) / (2 * Math.log(1e4));
  assert.ok(Math.abs(lo - 0.21) < 1e-3 && Math.abs(hi - 2.0158) < 1e-3);
  const p: RopeParams = { theta: 1e4, dim: 16, maxPositionEmbeddings: 128, scaling: yarn({ originalMaxPositionEmbeddings: 128, factor: 8, betaFast: 16, betaSlow: 2, truncate: false }) };
  const share = Array.from({ length: 8 }, (_, i) => Math.min(1, Math.max(0, (i - lo) / (hi - lo))));
  assert.equal(ropeFrequencies(p, 8).invFreq, blended(1e4, 16, 8, share));
  assert.equal(ropeFrequencies({ ...p, scaling: { ...p.scaling as Yarn, truncate: true } }, 8).invFreq, blended(1e4, 16, 8, [0, 1 / 3, 2 / 3, 1, 1, 1, 1, 1]));
  // original 4: even one rotation needs more than 4 positions at index 0, so low = high = 0 and every
  // frequency but the first is divided
  const tiny: RopeParams = { ...p, scaling: yarn({ originalMaxPositionEmbeddings: 4, factor: 8 }) };
  assert.equal(ropeFrequencies(tiny, 8).invFreq, blended(1e4, 16, 8, [0, 1, 1, 1, 1, 1, 1, 1]));
});

const fixtures = path.join(repoRoot, 'test', 'fixtures', 'models');

/** Worst normwise error of h[L] and the logits against the golden, for the model with its RoPE replaced. */
async function goldenError(name: string, rope: (r: RopeParams) => RopeParams): Promise<number> {
  const model = await loadModel(path.join(fixtures, name));
  const g = openSafetensors(path.join(fixtures, name, 'golden.safetensors'));
  const [B, T] = g.tensor('input_ids').shape as [number, number];
  const ids = g.tensor('input_ids'), mask = g.tensor('attention_mask').data;
  const all = new Int32Array(ids.data.buffer.slice(ids.data.byteOffset, ids.data.byteOffset + ids.nbytes));
  const seqs = Array.from({ length: B }, (_, b) => all.slice(b * T, b * T + mask.slice(b * T, (b + 1) * T).reduce((a, m) => a + m, 0)));
  const desc: ModelDescription = { ...model.description, rope: rope(model.description.rope!) };
  const L = model.layers, lengths = seqs.map((s) => s.length);
  const r = await forwardDescription(desc, seqs, { boundaries: [L], logits: true });
  return Math.max(normwiseError(r.hidden.get(L)!, r.T, g.tensor(`h.${L}`).toFloat32(), B, T, model.config.hiddenSize, lengths),
    normwiseError(r.logits!, r.T, g.tensor('logits').toFloat32(), B, T, model.config.vocabSize, lengths));
}

const mutate = (f: (s: Yarn) => Partial<Yarn>) => (r: RopeParams): RopeParams => ({ ...r, scaling: { ...r.scaling as Yarn, ...f(r.scaling as Yarn) } });

test('the YaRN goldens catch a wrong ramp, factor or attention factor (each > 1e-4; the right one ≤ 1e-4)', async () => {
  const cases: [string, string, (r: RopeParams) => RopeParams][] = [
    ['qwen3-yarn', 'as parsed', (r) => r],
    ['qwen3-yarn', 'truncate off (fractional ramp)', mutate(() => ({ truncate: false }))],
    ['qwen3-yarn', 'correction range from max_position_embeddings (transformers 4.4x)', mutate(() => ({ originalMaxPositionEmbeddings: 1024 }))],
    ['qwen3-yarn', 'no attention factor', mutate(() => ({ attentionFactor: 1 }))],
    ['qwen3-yarn', 'plain RoPE', (r) => ({ ...r, scaling: null })],
    ['llama-yarn-mscale', 'as parsed', (r) => r],
    ['llama-yarn-mscale', 'truncated ramp', mutate(() => ({ truncate: true }))],
    ['llama-yarn-mscale', 'default betas', mutate(() => ({ betaFast: 32, betaSlow: 1 }))],
    ['llama-yarn-mscale', '0.1 ln 8 + 1 (mscale ignored)', mutate(() => ({ attentionFactor: 0.1 * Math.log(8) + 1 }))],
  ];
  const lines: string[] = [], wrong: string[] = [];
  for (const [name, what, f] of cases) {
    const e = await goldenError(name, f);
    lines.push(`${name}, ${what}: ${e.toExponential(2)}`);
    if (what === 'as parsed' ? !(e <= 1e-4) : !(e > 1e-4)) wrong.push(lines.at(-1)!);
  }
  if (process.env.STREAMLINE_SHOW_ERRORS) console.log(lines.join('\n'));
  assert.equal(wrong, [], lines.join('\n'));
});

test.run();
