// Architecture adapters: tensor names by role, expected tensors and shapes, parameter counts, prefix detection.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { GLOBAL_ROLES, LAYER_ROLES, gemma3, getAdapter, isStreamlineError, llama, mistral, opt, parseModelConfig, phi3, qwen2, qwen3, SUPPORTED_MODEL_TYPES } from '../src/index.js';
import { TINY_LLAMA, TINY_OPT } from './_helpers.js';

test('bad input: unknown model type', () => {
  assert.throws(() => getAdapter('gpt_neox'), (e: unknown) => isStreamlineError(e, 'E_CONFIG_UNSUPPORTED') && e.message.includes('llama, mistral, qwen2, qwen3, phi3, gemma, gemma3_text, opt'));
  assert.equal([...SUPPORTED_MODEL_TYPES], ['llama', 'mistral', 'qwen2', 'qwen3', 'phi3', 'gemma', 'gemma3_text', 'opt']);
  // hasOwn, not `in`: a model_type named like an Object.prototype member gets the plain message
  assert.throws(() => getAdapter('toString'), (e: unknown) => isStreamlineError(e, 'E_CONFIG_UNSUPPORTED') && e.message.startsWith("model_type 'toString' is not supported (supported:"));
  // The MoE sibling shares a prefix, not a layout: refused by name.
  assert.throws(() => getAdapter('qwen3_moe'), (e: unknown) => isStreamlineError(e, 'E_CONFIG_UNSUPPORTED') && e.message.includes("model_type 'qwen3_moe' is not supported"));
});

test('every adapter names only known roles; role tables are complete for the families', () => {
  for (const a of [llama, mistral, qwen2, qwen3, phi3, gemma3, opt]) {
    for (const r of Object.keys(a.layerNames)) assert.ok((LAYER_ROLES as readonly string[]).includes(r), `${a.modelType} ${r}`);
    for (const r of Object.keys(a.globalNames)) assert.ok((GLOBAL_ROLES as readonly string[]).includes(r), `${a.modelType} ${r}`);
  }
  assert.is(llama.layerTensorName('q.weight', 3), 'model.layers.3.self_attn.q_proj.weight');
  assert.is(llama.layerTensorName('mlp_norm.weight', 0), 'model.layers.0.post_attention_layernorm.weight');
  assert.is(llama.layerTensorName('attn_norm.bias', 0), undefined);
  assert.is(llama.globalTensorName('final_norm.weight'), 'model.norm.weight');
  assert.is(qwen2.layerTensorName('k.bias', 1), 'model.layers.1.self_attn.k_proj.bias');
  assert.is(opt.layerTensorName('up.weight', 2), 'model.decoder.layers.2.fc1.weight');
  assert.is(opt.layerTensorName('mlp_norm.bias', 2), 'model.decoder.layers.2.final_layer_norm.bias');
  assert.is(opt.layerTensorName('o.weight', 0), 'model.decoder.layers.0.self_attn.out_proj.weight');
  assert.is(opt.globalTensorName('pos_embed.weight'), 'model.decoder.embed_positions.weight');
  assert.is(opt.globalTensorName('final_norm.weight', { stripModelPrefix: true }), 'decoder.final_layer_norm.weight');
  assert.is(opt.globalTensorName('lm_head.weight', { stripModelPrefix: true }), 'lm_head.weight');
});

test('llama expected tensors: GQA shapes, lm_head required when untied, parameter count per layer', () => {
  const c = parseModelConfig(TINY_LLAMA);
  const ex = llama.expectedTensors(c);
  const by = new Map(ex.map((e) => [e.name, e]));
  assert.equal(by.get('model.layers.0.self_attn.k_proj.weight')!.shape, [8, 16]);
  assert.equal(by.get('model.layers.2.mlp.down_proj.weight')!.shape, [16, 24]);
  assert.ok(by.get('lm_head.weight')!.required);
  assert.is(ex.filter((e) => e.layer === 1).length, 9);
  assert.is(llama.layerParamCount(c), 16 + 16 * 16 + 8 * 16 * 2 + 16 * 16 + 16 + 3 * 24 * 16);
  const tied = parseModelConfig({ ...TINY_LLAMA, tie_word_embeddings: true });
  assert.not.ok(llama.expectedTensors(tied).find((e) => e.role === 'lm_head.weight')!.required);
});

test('qwen2 has q/k/v biases but no o bias; mistral none; llama mlp_bias adds gate/up/down biases', () => {
  const q = parseModelConfig({ ...TINY_LLAMA, model_type: 'qwen2' });
  const roles = new Set(qwen2.expectedTensors(q).filter((e) => e.layer === 0).map((e) => e.role));
  assert.ok(roles.has('q.bias') && roles.has('k.bias') && roles.has('v.bias') && !roles.has('o.bias'));
  const m = parseModelConfig({ ...TINY_LLAMA, model_type: 'mistral' });
  assert.not.ok(mistral.expectedTensors(m).some((e) => e.role.endsWith('.bias')));
  const b = parseModelConfig({ ...TINY_LLAMA, mlp_bias: true });
  assert.equal(llama.expectedTensors(b).filter((e) => e.layer === 0 && e.role.endsWith('.bias')).map((e) => e.role), ['gate.bias', 'up.bias', 'down.bias']);
});

test('qwen3 expected tensors: q_norm/k_norm [head_dim] per layer, no biases by default, head_dim 128 when absent', () => {
  const c = parseModelConfig({ ...TINY_LLAMA, model_type: 'qwen3', head_dim: 6 });
  const ex = qwen3.expectedTensors(c).filter((e) => e.layer === 1);
  const by = new Map(ex.map((e) => [e.role, e]));
  assert.is(by.get('q_norm.weight')!.name, 'model.layers.1.self_attn.q_norm.weight');
  assert.is(by.get('k_norm.weight')!.name, 'model.layers.1.self_attn.k_norm.weight');
  assert.equal([by.get('q_norm.weight')!.shape, by.get('k_norm.weight')!.shape], [[6], [6]]);
  assert.equal(by.get('q.weight')!.shape, [c.numHeads * 6, 16]);
  assert.not.ok(ex.some((e) => e.role.endsWith('.bias')));
  assert.ok(qwen3.traits(c).qkNorm);
  assert.not.ok(llama.traits(parseModelConfig(TINY_LLAMA)).qkNorm);
  const biased = parseModelConfig({ ...TINY_LLAMA, model_type: 'qwen3', attention_bias: true });
  assert.equal(qwen3.expectedTensors(biased).filter((e) => e.layer === 0 && e.role.endsWith('.bias')).map((e) => e.role), ['q.bias', 'k.bias', 'v.bias', 'o.bias']);
  assert.is(biased.headDim, 128);
  assert.is(qwen3.layerParamCount(c) - llama.layerParamCount(parseModelConfig({ ...TINY_LLAMA, head_dim: 6 })), 12);
});

test('gemma3_text expected tensors: four norms per layer (pre and post of each sub-block), q/k norms, tied head', () => {
  const c = parseModelConfig({ ...TINY_LLAMA, model_type: 'gemma3_text', head_dim: 6, tie_word_embeddings: undefined });
  const by = new Map(gemma3.expectedTensors(c).filter((e) => e.layer === 1).map((e) => [e.role, e]));
  assert.equal([...by.keys()].filter((r) => r.includes('norm')).map((r) => [r, by.get(r)!.name.slice('model.layers.1.'.length), by.get(r)!.shape]), [
    ['attn_norm.weight', 'input_layernorm.weight', [16]], ['mlp_norm.weight', 'pre_feedforward_layernorm.weight', [16]],
    ['q_norm.weight', 'self_attn.q_norm.weight', [6]], ['k_norm.weight', 'self_attn.k_norm.weight', [6]],
    ['post_attn_norm.weight', 'post_attention_layernorm.weight', [16]], ['post_mlp_norm.weight', 'post_feedforward_layernorm.weight', [16]],
  ]);
  assert.not.ok(gemma3.expectedTensors(c).find((e) => e.role === 'lm_head.weight')!.required, 'tied by default');
  assert.equal([gemma3.traits(c).postNorms, gemma3.traits(c).qkNorm, gemma3.normWeightOffset, llama.normWeightOffset], [true, true, 1, undefined]);
  assert.is(gemma3.layerParamCount(c) - qwen3.layerParamCount(parseModelConfig({ ...TINY_LLAMA, model_type: 'qwen3', head_dim: 6 })), 32);
});

test('opt expected tensors: positions with offset 2, project_in/out when word_embed_proj_dim differs, post-norm without final norm', () => {
  const c = parseModelConfig(TINY_OPT);
  const by = new Map(opt.expectedTensors(c).map((e) => [e.role + (e.layer ?? ''), e]));
  assert.equal(by.get('pos_embed.weight')!.shape, [32, 16]);
  assert.equal(by.get('embed.weight')!.shape, [40, 8]);
  assert.equal(by.get('project_in.weight')!.shape, [16, 8]);
  assert.equal(by.get('project_out.weight')!.shape, [8, 16]);
  assert.equal(by.get('final_norm.bias')!.shape, [16]);
  assert.not.ok(by.get('lm_head.weight')!.required, 'OPT ties embeddings by default');
  assert.equal(by.get('up.bias0')!.shape, [32]);
  const post = parseModelConfig({ ...TINY_OPT, do_layer_norm_before: false, word_embed_proj_dim: 16, enable_bias: false });
  const roles = new Set(opt.expectedTensors(post).map((e) => e.role));
  assert.ok(!roles.has('final_norm.weight') && !roles.has('project_in.weight') && !roles.has('q.bias') && roles.has('mlp_norm.weight'));
  assert.is(opt.layerParamCount(c), 4 * (16 * 16 + 16) + 2 * 32 * 16 + 32 + 16 + 4 * 16);
});

test('naming detection: checkpoints without the model. prefix (decoder.layers...)', () => {
  assert.equal(opt.detectNaming(['decoder.layers.0.fc1.weight', 'decoder.embed_tokens.weight']), { stripModelPrefix: true });
  assert.equal(opt.detectNaming(['model.decoder.layers.0.fc1.weight', 'lm_head.weight']), {});
  assert.equal(llama.detectNaming(['layers.0.self_attn.q_proj.weight', 'embed_tokens.weight']), { stripModelPrefix: true });
  assert.equal(opt.layerTensorName('q.weight', 1, { stripModelPrefix: true }), 'decoder.layers.1.self_attn.q_proj.weight');
  assert.ok(llama.isIgnoredTensor('model.layers.0.self_attn.rotary_emb.inv_freq'));
});

test.run();
