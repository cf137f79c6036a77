// Post-sublayer norms (Gemma 2/3 post_attn_norm / post_mlp_norm) through the core on the CPU, on llama-gqa with such
// norms added to every layer (withPostNorms): the engine applies them, the linear fold refuses them, the trainer learns
// them, and prune exports the trained norms under the family's tensor names (the kept layers' untouched). The GPU
// path (CUDA test backend) is checked in cuda-path-postnorm.test.ts.
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as core from '../src/index.js';
import { openCheckpoint, Tensor, writeSafetensors, type LayerRole, type LoadedModel, type ModelDescription } from '../src/index.js';
import { native } from '../src/native.js';
import { fitLinear } from '../src/prune/linear.js';
import { PairCache } from '../src/train/pair-cache.js';
import { trainReplacement } from '../src/train/trainer.js';
import { loadCharFixture, logitsOf, maxAbsDiff, tmpDir, withPostNorms, writeCalibText } from './_helpers.js';

const n = native();
const tmp = tmpDir('postnorm');
const calib = writeCalibText(tmp);
const tokens = Int32Array.from({ length: 12 }, (_, i) => (i * 5 + 1) % 64);
const f32Of = (v: { data: Uint8Array; dtype: string; shape: readonly number[] }) => {
  const out = new Float32Array(v.shape.reduce((a, b) => a * b, 1));
  n.convertFloats(out, 'f32', v.data, v.dtype);
  return out;
};
// The family's names for the two roles in this test's checkpoint (Gemma's post_feedforward_layernorm for the MLP one).
const POST_NAMES: Partial<Record<LayerRole, string>> = { 'post_attn_norm.weight': 'post_self_attn_layernorm', 'post_mlp_norm.weight': 'post_feedforward_layernorm' };

/** llama-gqa with post norms: a model directory whose checkpoint holds them too, so that prune can export. */
async function postModel(): Promise<LoadedModel> {
  const base = await loadCharFixture('llama-gqa', tmp);
  const dir = path.join(tmp, 'llama-gqa-post');
  fs.mkdirSync(dir, { recursive: true });
  fs.copyFileSync(path.join(base.dir, 'config.json'), path.join(dir, 'config.json'));
  const desc = withPostNorms(base.description);
  const ck = base.modelDir.checkpoint, D = desc.semantics.hidden;
  const entries = ck.names().map((name) => ({ name, dtype: ck.info(name).dtype, shape: ck.info(name).shape, load: () => ck.tensor(name) }));
  desc.layers.forEach((l, i) => {
    for (const [role, stem] of Object.entries(POST_NAMES)) {
      const values = f32Of(l.weights()[role as LayerRole]!);
      entries.push({ name: `model.layers.${i}.${stem}.weight`, dtype: 'f32', shape: [D], load: () => Tensor.fromFloat32(values, [D], 'f32') });
    }
  });
  await writeSafetensors(dir, entries);
  const checkpoint = openCheckpoint(dir);
  const layerTensorName = (role: LayerRole, i: number) => POST_NAMES[role] ? `model.layers.${i}.${POST_NAMES[role]}.weight` : base.modelDir.layerTensorName(role, i);
  return { ...base, dir, description: desc, modelDir: { ...base.modelDir, dir, checkpoint, layerTensorName } };
}

function layerInit(desc: ModelDescription, layer: number, kind: 'mlp' | 'layer') {
  const init: Record<string, Float32Array> = {}, shapes: Record<string, number[]> = {};
  for (const [r, v] of Object.entries(desc.layers[layer]!.weights())) {
    if (kind === 'mlp' && !/^(mlp_norm|gate|up|down|post_mlp_norm)\./.test(r)) continue;
    init[r] = f32Of(v!);
    shapes[r] = [...v!.shape];
  }
  return { init, shapes };
}

test('the engine applies post norms from the weights: the logits move, and only with them', async () => {
  const d = (await loadCharFixture('llama-gqa', tmp)).description, p = withPostNorms(d);
  assert.is(p.semantics.postNorms, true);
  const a = await logitsOf(d, tokens), b = await logitsOf(p, tokens);
  assert.ok(b.every(Number.isFinite));
  assert.ok(maxAbsDiff(a, b) > 1e-2, `post norms change the logits by ${maxAbsDiff(a, b)}`);
});

test('linear replacement: refused when layer start−1 norms its MLP output (the fold would act before that norm)', async () => {
  const p = withPostNorms((await loadCharFixture('llama-gqa', tmp)).description);
  try {
    await fitLinear(p, 2, 3, { blocks: [tokens] });
    assert.unreachable('fitLinear should refuse');
  } catch (e) {
    assert.is((e as { code?: string }).code, 'E_REPLACEMENT');
    assert.match((e as Error).message, 'layer 1 norms its MLP output (post_mlp_norm');
  }
});

test('prune --replacement linear: a window after a layer with post_mlp_norm is refused before any work, the best other one taken', async () => {
  const model = await postModel();
  const o = { calib, samples: 2, seqLen: 16, trainSamples: 4, replacement: 'linear' as const, seed: 3, device: 'cpu' as const };
  try {
    await core.prune(model, { ...o, range: { start: 2, end: 3 }, outDir: path.join(tmp, 'linear-range') });
    assert.unreachable('prune should refuse');
  } catch (e) {
    assert.is((e as { code?: string }).code, 'E_REPLACEMENT');
    assert.match((e as Error).message, "layer 1's MLP output projection, which its post_mlp_norm");
  }
  assert.not.ok(fs.existsSync(path.join(tmp, 'linear-range')), 'nothing written');
  // Every window but [0, 1) follows a post_mlp_norm: the fold goes into the (untied) input embeddings.
  const logs: core.DeviceMessage[] = [];
  const r = await core.prune(model, { ...o, n: 1, outDir: path.join(tmp, 'linear-auto'), onLog: (m) => logs.push(m) });
  assert.equal(r.plan.window, { start: 0, end: 1 });
  if (r.score!.best!.start !== 0) assert.ok(logs.some((m) => m.level === 'warning' && /post_mlp_norm/.test(m.message)), logs.map((m) => m.message).join('; '));
});

for (const kind of ['layer', 'mlp'] as const) {
  test(`trainReplacement (${kind}): the post norms are trained`, async () => {
    const p = withPostNorms((await loadCharFixture('llama-gqa', tmp)).description);
    const T = 8, D = p.semantics.hidden;
    const { init, shapes } = layerInit(p, 1, kind);
    assert.equal(Object.keys(init).filter((r) => r.startsWith('post_')).sort(), kind === 'layer' ? ['post_attn_norm.weight', 'post_mlp_norm.weight'] : ['post_mlp_norm.weight']);
    const run = async (device: core.Device) => {
      const train = new PairCache({ blocks: 4, rows: T, hidden: D, dtype: 'f32', budgetBytes: 1 << 24, dir: tmp, targets: true });
      for (let b = 0; b < 4; b++)
        train.add(Float32Array.from({ length: T * D }, (_, i) => Math.cos(i * 0.1 + b)), Float32Array.from({ length: T * D }, (_, i) => Math.sin(i * 0.07 - b)));
      try {
        return await trainReplacement({
          kind, semantics: p.semantics, ropeInvFreq: core.ropeFrequencies(p.rope!, T).invFreq, ropeAttentionScaling: 1,
          init, shapes, train, validation: null, loss: 'mse', microBatch: 2, lr: 1e-2, device,
          weightDecay: 0,  // so that only a gradient moves the norms
        });
      } finally {
        train.close();
      }
    };
    const cpu = await run('cpu');
    for (const r of Object.keys(init).filter((k) => k.startsWith('post_')))
      assert.ok(cpu.weights[r as LayerRole]!.some((v, i) => v !== init[r]![i]), `${r} was trained`);
    assert.ok(cpu.history.every((s) => Number.isFinite(s.loss)));
  });
}

for (const replacement of ['layer', 'mlp'] as const) {
  test(`prune (${replacement}, CPU): the trained post norms are exported under the family's names, the kept layers' are the source's`, async () => {
    const model = await postModel();
    const out = path.join(tmp, `prune-${replacement}`);
    const r = await core.prune(model, { calib, samples: 2, seqLen: 16, trainSamples: 4, epochs: 1, range: { start: 1, end: 2 }, replacement, seed: 3, outDir: out, device: 'cpu' });
    assert.is(r.training!.device, 'cpu');
    const x = openCheckpoint(r.exported!.outDir), src = model.modelDir.checkpoint;
    const rep = r.pruned.layers[1]!.weights();
    const exported = (role: LayerRole, i: number) => x.tensor(`model.layers.${i}.${POST_NAMES[role]}.weight`).toFloat32();
    // the replacement (new layer 1): its trained post_mlp_norm, and post_attn_norm trained (layer) or layer 1's (mlp)
    assert.equal(exported('post_mlp_norm.weight', 1), f32Of(rep['post_mlp_norm.weight']!));
    assert.ok(exported('post_mlp_norm.weight', 1).some((v, i) => v !== src.tensor('model.layers.1.post_feedforward_layernorm.weight').toFloat32()[i]), 'trained');
    const pa = src.tensor('model.layers.1.post_self_attn_layernorm.weight').toFloat32();
    if (replacement === 'layer') assert.equal(exported('post_attn_norm.weight', 1), f32Of(rep['post_attn_norm.weight']!));
    else assert.equal(exported('post_attn_norm.weight', 1), pa, 'an mlp replacement keeps layer 1\'s (its attention output is zero, and so is its norm)');
    // source layer 2 stays layer 2, untouched
    for (const role of ['post_attn_norm.weight', 'post_mlp_norm.weight'] as LayerRole[])
      assert.equal(exported(role, 2), src.tensor(`model.layers.2.${POST_NAMES[role]}.weight`).toFloat32(), role);
  });
}

test.after(() => fs.rmSync(tmp, { recursive: true, force: true }));

test.run();
