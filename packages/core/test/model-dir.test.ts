// openModelDir and inspect on tiny model directories written by the project's writer, and on the demo model.
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { assertModelValid, inspect, isStreamlineError, openModelDir, openSafetensors, type ModelReport } from '../src/index.js';
import { kjvLlama, makeTinyModel, TINY_LLAMA, TINY_OPT, tmpDir } from './_helpers.js';

const code = (c: string) => (e: unknown) => isStreamlineError(e, c);
const asModel = (r: ReturnType<typeof inspect>) => { assert.is(r.kind, 'model'); return r as ModelReport; };

test('bad input: not a directory, no config, no weights, unsupported model_type', async () => {
  const dir = tmpDir('md');
  assert.throws(() => openModelDir(path.join(dir, 'nope')), code('E_MODEL_DIR'));
  assert.throws(() => inspect(path.join(dir, 'nope')), code('E_IO'));
  assert.throws(() => openModelDir(dir), code('E_CONFIG_MISSING'));
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(TINY_LLAMA));
  assert.throws(() => openModelDir(dir), code('E_CHECKPOINT_MISSING'));
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...TINY_LLAMA, model_type: 'falcon' }));
  assert.throws(() => inspect(dir), code('E_CONFIG_UNSUPPORTED'));
  fs.rmSync(dir, { recursive: true });
});

test('a Hugging Face cache repository folder given as the model names the snapshot to give instead', () => {
  const repo = tmpDir('hub-repo');
  fs.mkdirSync(path.join(repo, 'snapshots', 'f00d'), { recursive: true });
  assert.throws(() => openModelDir(repo), (e: unknown) => isStreamlineError(e, 'E_CONFIG_MISSING') && (e as Error).message.includes(path.join('snapshots', 'f00d')));
  fs.rmSync(repo, { recursive: true });
});

test('a complete tiny llama: valid, parameter counts are sums of element counts, tensors by role', async () => {
  const dir = tmpDir('llama');
  await makeTinyModel(dir, TINY_LLAMA);
  const r = asModel(inspect(dir));
  assert.ok(r.valid);
  const f = openSafetensors(path.join(dir, 'model.safetensors'));
  const sum = f.names().reduce((s, n) => s + f.info(n).shape.reduce((a, b) => a * b, 1), 0);
  assert.is(r.parameters.total, sum);
  assert.equal(r.parameters.perLayer, [r.parameters.expectedPerLayer, r.parameters.expectedPerLayer, r.parameters.expectedPerLayer]);
  assert.is(r.parameters.nonLayer + 3 * r.parameters.expectedPerLayer, sum);
  assert.equal(r.dtypes, { bf16: { tensors: f.names().length, parameters: sum } });
  assert.equal([r.architecture, r.layers, r.kvHeads, r.headDim], ['LlamaForCausalLM', 3, 2, 4]);
  const m = openModelDir(dir);
  assert.equal([...m.layerTensor('k.weight', 2)!.shape], [8, 16]);
  assert.is(m.layerTensor('q.bias', 0), undefined);
  assert.equal([...m.globalTensor('lm_head.weight')!.shape], [40, 16]);
  assert.throws(() => m.layerTensor('q.weight', 3), code('E_MODEL_LAYER'));
  assert.not.ok(m.tokenizerFile);
  assertModelValid(r);
  fs.rmSync(dir, { recursive: true });
});

test('a tiny qwen3: valid with q_norm/k_norm [head_dim] per layer; a missing k_norm or a wrong q_norm shape makes it invalid', async () => {
  const cfg = { ...TINY_LLAMA, architectures: ['Qwen3ForCausalLM'], model_type: 'qwen3', head_dim: 6 };
  const dir = tmpDir('qwen3');
  await makeTinyModel(dir, cfg);
  const r = asModel(inspect(dir));
  assertModelValid(r);
  assert.equal([r.architecture, r.layers, r.kvHeads, r.headDim], ['Qwen3ForCausalLM', 3, 2, 6]);
  const m = openModelDir(dir);
  assert.equal([...m.layerTensor('q_norm.weight', 2)!.shape], [6]);
  assert.equal([...m.layerTensor('k_norm.weight', 0)!.shape], [6]);
  assert.equal([...m.layerTensor('q.weight', 0)!.shape], [24, 16]);
  const bad = tmpDir('qwen3-bad');
  await makeTinyModel(bad, cfg, { drop: ['model.layers.1.self_attn.k_norm.weight'], reshape: { 'model.layers.0.self_attn.q_norm.weight': [4] } });
  const b = asModel(inspect(bad));
  assert.not.ok(b.valid);
  assert.equal(b.missing.map((x) => x.name), ['model.layers.1.self_attn.k_norm.weight']);
  assert.equal(b.wrongShape.map((x) => [x.name, x.expected, x.actual]), [['model.layers.0.self_attn.q_norm.weight', [6], [4]]]);
  fs.rmSync(dir, { recursive: true });
  fs.rmSync(bad, { recursive: true });
});

test('a tiny gemma3_text: valid with four norms per layer; norm roles read as 1 + w (f32), other roles as stored', async () => {
  const cfg = { ...TINY_LLAMA, architectures: ['Gemma3ForCausalLM'], model_type: 'gemma3_text', head_dim: 6, tie_word_embeddings: true };
  const dir = tmpDir('gemma3');
  await makeTinyModel(dir, cfg);
  const r = asModel(inspect(dir));
  assertModelValid(r);
  assert.equal([r.architecture, r.layers, r.headDim, r.tieWordEmbeddings], ['Gemma3ForCausalLM', 3, 6, true]);
  const m = openModelDir(dir);
  for (const [role, name] of [['post_mlp_norm.weight', 'model.layers.2.post_feedforward_layernorm.weight'], ['q_norm.weight', 'model.layers.0.self_attn.q_norm.weight']] as const) {
    const eff = m.layerTensor(role, role === 'q_norm.weight' ? 0 : 2)!, stored = m.checkpoint.tensor(name);
    assert.is(eff.dtype, 'f32');
    assert.equal([...eff.toFloat32()], [...stored.toFloat32()].map((w) => Math.fround(1 + w)), role);
  }
  const fin = m.globalTensor('final_norm.weight')!.toFloat32(), storedFin = m.checkpoint.tensor('model.norm.weight').toFloat32();
  assert.equal([...fin], [...storedFin].map((w) => Math.fround(1 + w)));
  assert.is(m.layerTensor('q.weight', 1)!.dtype, m.checkpoint.tensor('model.layers.1.self_attn.q_proj.weight').dtype, 'projections are zero-copy views');
  fs.rmSync(dir, { recursive: true });
});

test('missing, wrong-shape and unexpected tensors make the report invalid (E_MODEL_TENSORS); inv_freq is ignored', async () => {
  const dir = tmpDir('bad');
  await makeTinyModel(dir, TINY_LLAMA, {
    drop: ['model.layers.1.mlp.up_proj.weight'],
    reshape: { 'model.layers.2.self_attn.v_proj.weight': [16, 16] },
    extra: { 'model.layers.3.mlp.up_proj.weight': [24, 16], 'model.layers.0.self_attn.rotary_emb.inv_freq': [2] },
  });
  const r = asModel(inspect(dir));
  assert.not.ok(r.valid);
  assert.equal(r.missing.map((m) => [m.name, m.layer]), [['model.layers.1.mlp.up_proj.weight', 1]]);
  assert.equal(r.wrongShape, [{ name: 'model.layers.2.self_attn.v_proj.weight', role: 'v.weight', layer: 2, expected: [8, 16], actual: [16, 16] }]);
  assert.equal(r.unexpected, ['model.layers.3.mlp.up_proj.weight']);
  assert.equal(r.ignored, ['model.layers.0.self_attn.rotary_emb.inv_freq']);
  assert.throws(() => assertModelValid(r), (e: unknown) => isStreamlineError(e, 'E_MODEL_TENSORS') && e.message.includes('missing model.layers.1.mlp.up_proj.weight') && e.message.includes('3 tensor problem'));
  assert.throws(() => openModelDir(dir).layerTensor('up.weight', 1), code('E_MODEL_TENSORS'));
  fs.rmSync(dir, { recursive: true });
});

test('tiny OPT without the model. prefix, tied head, project_in/out; sharded output', async () => {
  const dir = tmpDir('opt');
  await makeTinyModel(dir, TINY_OPT, { rename: (n) => n.replace(/^model\./, ''), write: { maxShardBytes: 2048 } });
  const r = asModel(inspect(dir));
  assert.ok(r.valid, JSON.stringify([r.missing, r.unexpected]));
  assert.ok(r.files.length > 1 && r.files.every((f) => /^model-\d{5}-of-\d{5}\.safetensors$/.test(f)));
  assert.equal([r.norm, r.positions, r.activation], ['layer', 'learned', 'relu']);
  const m = openModelDir(dir);
  assert.equal(m.naming, { stripModelPrefix: true });
  assert.is(m.globalTensor('lm_head.weight'), undefined, 'tied: the embedding is the head');
  assert.equal([...m.globalTensor('project_in.weight')!.shape], [16, 8]);
  assert.is(m.layerTensorName('down.weight', 1), 'decoder.layers.1.fc2.weight');
  fs.rmSync(dir, { recursive: true });
});

test('inspect of a bare safetensors file lists tensors, dtypes and parameters', async () => {
  const dir = tmpDir('file');
  await makeTinyModel(dir, TINY_LLAMA, { dtype: 'f32' });
  const r = inspect(path.join(dir, 'model.safetensors'));
  assert.is(r.kind, 'file');
  if (r.kind !== 'file') return;
  assert.is(r.tensors.length, 2 + 1 + 9 * 3);
  assert.is(r.parameters.total, r.tensors.reduce((s, t) => s + t.numel, 0));
  assert.equal(Object.keys(r.dtypes), ['f32']);
  fs.rmSync(dir, { recursive: true });
});

test('the demo model: llama, 12,853,504 parameters = sum of element counts', () => {
  if (!fs.existsSync(kjvLlama)) { console.log('skip: ../shared not found'); return; }
  const r = asModel(inspect(kjvLlama));
  assert.ok(r.valid);
  const f = openSafetensors(path.join(kjvLlama, 'model.safetensors'));
  const sum = f.names().reduce((s, n) => s + f.info(n).shape.reduce((a, b) => a * b, 1), 0);
  assert.is(r.parameters.total, sum);
  assert.is(sum, 12_853_504);
  assert.equal([r.modelType, r.layers, r.tokenizer], ['llama', 16, 'tokenizer.json']);
});

test.run();
