// Two replacement-training steps against the float64 PyTorch autograd fixtures of test/fixtures/train (issue 5):
// loss, every parameter gradient, the global gradient norm, the clip coefficient and the AdamW updates, for the
// `mlp` and `layer` replacements, with and without clipping. Metric: normwise max relative error
// max|ours − golden| / max|golden|; the fixture README suggests 1e-4 for loss and gradients, 1e-3 for updates.
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { openSafetensors } from '../src/index.js';
import { native } from '../src/native.js';
import { repoRoot } from './_helpers.js';

const n = native();
const dir = path.join(repoRoot, 'test', 'fixtures', 'train');
const ROLE: Record<string, string> = {
  'input_layernorm.weight': 'attn_norm.weight', 'self_attn.q_proj.weight': 'q.weight', 'self_attn.k_proj.weight': 'k.weight',
  'self_attn.v_proj.weight': 'v.weight', 'self_attn.o_proj.weight': 'o.weight', 'post_attention_layernorm.weight': 'mlp_norm.weight',
  'mlp.gate_proj.weight': 'gate.weight', 'mlp.up_proj.weight': 'up.weight', 'mlp.down_proj.weight': 'down.weight',
  'self_attn.q_norm.weight': 'q_norm.weight', 'self_attn.k_norm.weight': 'k_norm.weight',
  // layer-postnorm's synthetic Gemma post-sublayer norms, stored under their role names
  'post_attn_norm.weight': 'post_attn_norm.weight', 'post_mlp_norm.weight': 'post_mlp_norm.weight',
};
const B = 2, T = 16, D = 32, H = 4, Hk = 2, F = 64;
// The source model of each fixture (test/fixtures/models): llama-gqa, or qwen3 for the q/k-norm layer.
const SOURCE = {
  'llama-gqa': { Dh: 8, normEps: 1e-5, theta: 10000 },
  qwen3: { Dh: 16, normEps: 1e-6, theta: 1e6 },
};

function normwise(ours: ArrayLike<number>, gold: ArrayLike<number>): number {
  let d = 0, g = 0;
  for (let i = 0; i < gold.length; i++) {
    if (!Number.isFinite(ours[i]!)) return Infinity;
    d = Math.max(d, Math.abs(ours[i]! - gold[i]!));
    g = Math.max(g, Math.abs(gold[i]!));
  }
  return d / g;
}

for (const name of ['mlp', 'mlp-clip', 'layer', 'layer-clip', 'layer-qknorm', 'layer-postnorm']) {
  test(`${name}: two steps (loss, gradients, norm, clip coefficient, AdamW updates) match f64 autograd`, async () => {
    const f = openSafetensors(path.join(dir, `${name}.safetensors`));
    const m = f.metadata;
    const kind = name.startsWith('layer') ? 'layer' : 'mlp';
    const { Dh, normEps, theta } = SOURCE[name.endsWith('qknorm') ? 'qwen3' : 'llama-gqa'];
    if (name.endsWith('qknorm')) assert.ok(m.source!.includes('qwen3'), m.source);
    if (name.endsWith('postnorm')) assert.ok(f.names().includes('param.post_attn_norm.weight') && f.names().includes('param.post_mlp_norm.weight'), 'the post norms are parameters');
    const hf = f.names().filter((k) => k.startsWith('param.')).map((k) => k.slice('param.'.length));
    const params: Record<string, Float32Array> = {}, mom: Float32Array[] = [], vel: Float32Array[] = [];
    for (const k of hf) params[ROLE[k]!] = f.tensor(`param.${k}`).toFloat32();
    for (const k of hf) mom.push(new Float32Array(params[ROLE[k]!]!.length)), vel.push(new Float32Array(params[ROLE[k]!]!.length));
    const spec = {
      batch: B, seqLen: T, hidden: D, heads: H, kvHeads: Hk, headDim: Dh, intermediate: F, norm: 'rms' as const,
      normEps, activation: 'silu' as const, gatedMlp: true, preNorm: true, useRope: true, attnScale: 1 / Math.sqrt(Dh),
      ropeAttentionScaling: 1,
    };
    const positions = Int32Array.from({ length: B * T }, (_, i) => i % T);
    const invFreq = Float32Array.from({ length: Dh / 2 }, (_, i) => 1 / theta ** ((2 * i) / Dh));
    const report: string[] = [];
    for (const step of [1, 2]) {
      const sfx = step === 1 ? '' : '2';
      const grads: Record<string, Float32Array> = Object.fromEntries(Object.entries(params).map(([r, p]) => [r, new Float32Array(p.length)]));
      const loss = await n.replacementStep(kind, spec, params, grads, f.tensor(`x${sfx}`).toFloat32(), f.tensor(`target${sfx}`).toFloat32(),
        positions, null, kind === 'layer' ? invFreq : null);
      const gl = f.tensor(`loss${sfx}`).toFloat32()[0]!;
      assert.ok(Math.abs(loss - gl) <= 1e-5 * gl, `step ${step} loss ${loss} vs ${gl}`);
      for (const k of hf) {
        const e = normwise(grads[ROLE[k]!]!, f.tensor(`grad${sfx}.${k}`).toFloat32());
        report.push(`grad${sfx} ${k} ${e.toExponential(1)}`);
        assert.ok(e <= 1e-4, `step ${step} gradient of ${k}: ${e}`);
      }
      const list = hf.map((k) => grads[ROLE[k]!]!);
      const norm = n.gradNorm(list), gnorm = f.tensor(`grad_norm${sfx}`).toFloat32()[0]!;
      assert.ok(Math.abs(norm - gnorm) <= 1e-5 * gnorm, `step ${step} grad norm ${norm} vs ${gnorm}`);
      const clip = n.clipGradNorm(list, Number(m.max_grad_norm));
      const gcoef = f.tensor(`clip_coef${sfx}`).toFloat32()[0]!;
      assert.ok(Math.abs(clip.scale - gcoef) <= 1e-5 * gcoef, `step ${step} clip coefficient ${clip.scale} vs ${gcoef}`);
      assert.is(clip.scale < 1, name.endsWith('-clip'));
      const before = hf.map((k) => params[ROLE[k]!]!.slice());
      n.adamwStep(hf.map((k) => params[ROLE[k]!]!), list, mom, vel, {
        lr: Number(m.lr), beta1: Number(m.beta1), beta2: Number(m.beta2), eps: Number(m.eps), weightDecay: Number(m.weight_decay), step,
      });
      hf.forEach((k, i) => {
        const p = params[ROLE[k]!]!, delta = p.map((v, j) => v - before[i]![j]!);
        const e = normwise(delta, f.tensor(`delta${step}.${k}`).toFloat32());
        report.push(`delta${step} ${k} ${e.toExponential(1)}`);
        assert.ok(e <= 1e-3, `step ${step} update of ${k}: ${e}`);
      });
    }
    if (process.env.STREAMLINE_TEST_VERBOSE) console.log(`  ${name}: ${report.join(', ')}`);
  });
}

test.run();
