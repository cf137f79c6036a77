// Test helpers (not a test file): crafted safetensors bytes, a seeded PRNG, temporary directories and tiny
// random model directories written by the project's own writer.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { embed, getAdapter, head, loadModel, makeTokenBatch, parseModelConfig, runLayers, Tensor, writeSafetensors, type LoadedModel, type ModelDescription, type WriteOptions } from '../src/index.js';
import type { LoadedTokenizer } from '../src/tokenizer.js';
import { f32View } from '../src/prune/pruned-model.js';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const sharedDir = path.resolve(repoRoot, '../shared');
export const kjvLlama = path.join(sharedDir, 'models', 'kjv-llama');

/** Safetensors bytes from a header (object or raw string) and data; `headerLength` overrides the length field. */
export function craft(header: object | string, data: Uint8Array | number = 0, opts: { headerLength?: bigint; pad?: boolean } = {}): Uint8Array {
  let text = typeof header === 'string' ? header : JSON.stringify(header);
  if (opts.pad !== false) while ((8 + Buffer.byteLength(text)) % 8) text += ' ';
  const h = Buffer.from(text, 'utf8');
  const d = typeof data === 'number' ? new Uint8Array(data).map((_, i) => (i * 7 + 3) & 255) : data;
  const out = new Uint8Array(8 + h.length + d.length);
  new DataView(out.buffer).setBigUint64(0, opts.headerLength ?? BigInt(h.length), true);
  out.set(h, 8);
  out.set(d, 8 + h.length);
  return out;
}

/** mulberry32: small, seeded, good enough for fuzzing and random weights. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function tmpDir(tag: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `streamline-${tag}-`));
}

export const TINY_LLAMA = {
  architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: 16, intermediate_size: 24, num_hidden_layers: 3,
  num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 40, max_position_embeddings: 64, rms_norm_eps: 1e-5,
  tie_word_embeddings: false, torch_dtype: 'bfloat16',
};

export const TINY_OPT = {
  architectures: ['OPTForCausalLM'], model_type: 'opt', hidden_size: 16, ffn_dim: 32, num_hidden_layers: 2,
  num_attention_heads: 4, vocab_size: 40, max_position_embeddings: 30, word_embed_proj_dim: 8, do_layer_norm_before: true,
};

/**
 * Writes a random model directory with every tensor the config implies (via the adapter), through the writer.
 * `drop` removes tensors, `reshape` gives some another shape, `extra` adds tensors, `rename` maps names.
 */
export async function makeTinyModel(dir: string, config: Record<string, unknown>, opts: {
  drop?: string[]; reshape?: Record<string, number[]>; extra?: Record<string, number[]>; write?: WriteOptions;
  dtype?: 'f32' | 'bf16'; rename?: (name: string) => string;
} = {}): Promise<void> {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config, null, 2));
  const c = parseModelConfig(config);
  const expected = getAdapter(c.modelType).expectedTensors(c).filter((e) => e.required);
  const rnd = prng(7);
  const shapes: [string, number[]][] = expected.filter((e) => !opts.drop?.includes(e.name)).map((e) => [e.name, opts.reshape?.[e.name] ?? e.shape]);
  for (const [n, s] of Object.entries(opts.extra ?? {})) shapes.push([n, s]);
  const entries = shapes.map(([name, shape]) => ({
    name: opts.rename ? opts.rename(name) : name, dtype: opts.dtype ?? 'bf16' as const, shape,
    load: () => Tensor.fromFloat32(Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => rnd() - 0.5), shape, opts.dtype ?? 'bf16'),
  }));
  await writeSafetensors(dir, entries, opts.write);
}

/**
 * The test fixtures of test/fixtures/models have no tokenizer.json: this one maps one character to one token, inside
 * the model's vocabulary. `dir` stands for the tokenizer's folder.
 */
export function charTokenizer(vocab: number, dir: string): LoadedTokenizer {
  return {
    encode: (text: string) => Int32Array.from(text, (c) => c.charCodeAt(0) % vocab),
    decode: (ids: ArrayLike<number>) => Array.from(ids as number[], (i) => String.fromCharCode(i)).join(''),
    bosId: undefined, eosId: undefined, padId: undefined, vocabSize: vocab, modelMaxLength: undefined, dir,
  } as unknown as LoadedTokenizer;
}

/** A fixture model of test/fixtures/models with the character tokenizer above. */
export async function loadCharFixture(name: string, dir: string): Promise<LoadedModel> {
  const m = await loadModel(path.join(repoRoot, 'test', 'fixtures', 'models', name));
  return { ...m, tokenizer: charTokenizer(m.description.vocab, dir) };
}

/** Runs fn with the given environment variables set (the CUDA test backend's hooks) and removes them afterwards. */
export async function withEnv<T>(vars: Record<string, string>, fn: () => Promise<T>): Promise<T> {
  Object.assign(process.env, vars);
  try {
    return await fn();
  } finally {
    for (const k of Object.keys(vars)) delete process.env[k];
  }
}

/** A calibration text file in dir: enough varied text for 10 blocks of 48 tokens (one character per token). */
export function writeCalibText(dir: string): string {
  const file = path.join(dir, 'calib.txt');
  fs.writeFileSync(file, Array.from({ length: 40 }, (_, i) => `verse ${i}: ${'and the evening and the morning were the day '.slice(i % 7)}${i * 37}`).join('\n\n'));
  return file;
}

/**
 * A real tokenizer.json (BPE without merges: one printable ASCII character or newline per token, ids 2..97; 0 = <unk>,
 * 1 = <s> added in front) so that tiny models run through the CLI without ../shared. Needs a vocabulary of ≥ 98.
 */
export function writeCharTokenizer(dir: string): void {
  const chars = ['<unk>', '<s>', ...Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i)), '\n'];
  const special = (id: number, content: string) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify({
    version: '1.0', truncation: null, padding: null, added_tokens: [special(0, '<unk>'), special(1, '<s>')], normalizer: null, pre_tokenizer: null,
    post_processor: {
      type: 'TemplateProcessing', single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [{ Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }],
      special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } },
    },
    decoder: null,
    model: { type: 'BPE', dropout: null, unk_token: '<unk>', continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false,
      byte_fallback: false, vocab: Object.fromEntries(chars.map((c, i) => [c, i])), merges: [] },
  }));
  fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ bos_token: '<s>' }));
}

/** The logits [T, V] of one token sequence through every layer and the head (for export vs in-memory comparisons). */
export async function logitsOf(desc: ModelDescription, tokens: Int32Array): Promise<Float32Array> {
  const h = await runLayers(desc, await embed(desc, makeTokenBatch([tokens])), 0, desc.layers.length);
  return (await head(desc, h, { logits: true })).logits!.slice(0, tokens.length * desc.vocab);
}

/** max |a[i] − b[i]| (NaN when any pair involves NaN). */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let worst = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (Number.isNaN(d)) return NaN;
    worst = Math.max(worst, d);
  }
  return worst;
}

/**
 * desc with Gemma-style post-sublayer norms on every layer (post_attn_norm / post_mlp_norm, seeded f32 weights far from
 * 1) and semantics.postNorms set, as a family adapter with them describes its layers; the rest is desc's.
 */
export function withPostNorms(desc: ModelDescription, seed = 5): ModelDescription {
  const D = desc.semantics.hidden, rnd = prng(seed);
  const layers = desc.layers.map((l) => {
    const pa = Float32Array.from({ length: D }, () => 0.3 + 0.5 * rnd()), pm = Float32Array.from({ length: D }, () => 1.5 + 0.5 * rnd());
    const extra = { 'post_attn_norm.weight': f32View(pa, [D]), 'post_mlp_norm.weight': f32View(pm, [D]) };
    return { ...l, weights: () => ({ ...l.weights(), ...extra }) };
  });
  return { ...desc, semantics: { ...desc.semantics, postNorms: true }, layers };
}

/** Normwise max relative error over real tokens of [B, T, X] tensors (ours is [B*T', X] with T' = padded length). */
export function normwiseError(ours: Float32Array, oursT: number, gold: Float32Array, B: number, T: number, X: number, lengths: number[]): number {
  let maxDiff = 0, maxGold = 0;
  for (let b = 0; b < B; b++)
    for (let t = 0; t < lengths[b]!; t++)
      for (let x = 0; x < X; x++) {
        const a = ours[(b * oursT + t) * X + x]!, e = gold[(b * T + t) * X + x]!;
        if (!Number.isFinite(a)) return Infinity;
        maxDiff = Math.max(maxDiff, Math.abs(a - e));
        maxGold = Math.max(maxGold, Math.abs(e));
      }
  return maxDiff / maxGold;
}
