// The CLI on models and inputs an independent checker would try (tiny models of unusual shapes, written here with a
// character tokenizer, so ../shared is not needed): every failure is one line `error [E_CODE]: message` with exit
// status 2, before any long work where the input allows it, and nothing half-written is left behind.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { loadModel, prune } from '../../core/src/index.js';
import { makeTinyModel, repoRoot, TINY_LLAMA, TINY_OPT, tmpDir, writeCalibText, writeCharTokenizer } from '../../core/test/_helpers.js';

function cli(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['--conditions=@streamline/source', '--import', 'tsx', 'packages/cli/src/bin.ts', ...args], {
    cwd: repoRoot, encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Exit status 2 and exactly one stderr line `error [code]: …` matching `message`. */
function fails(r: ReturnType<typeof cli>, code: string, message?: RegExp): void {
  assert.is(r.code, 2, `exit status (stderr: ${r.stderr})`);
  const lines = r.stderr.trim().split('\n');
  assert.is(lines.length, 1, `one stderr line, got:\n${r.stderr}`);
  assert.match(lines[0]!, new RegExp(`^error \\[${code}\\]: `));
  if (message) assert.match(lines[0]!, message);
}

const tmp = tmpDir('cli-bad-input');
const calib = writeCalibText(tmp);
const LLAMA = { ...TINY_LLAMA, vocab_size: 101, num_hidden_layers: 4 };

/** Overwrites every element of the named bf16 tensors of dir/model.safetensors with `bits`. */
function patchTensors(dir: string, names: string[], bits: number, count = Infinity): void {
  const file = path.join(dir, 'model.safetensors');
  const bytes = fs.readFileSync(file);
  const n = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8'));
  for (const name of names) {
    const [begin, end] = header[name].data_offsets as [number, number];
    for (let o = begin, k = 0; o < end && k < count; o += 2, k++) bytes.writeUInt16LE(bits, 8 + n + o);
  }
  fs.writeFileSync(file, bytes);
}

async function model(name: string, config: Record<string, unknown>): Promise<string> {
  const dir = path.join(tmp, name);
  await makeTinyModel(dir, config);
  writeCharTokenizer(dir);
  return dir;
}

test('--warmup longer than the run fails before scoring, naming the steps and the options that set them', async () => {
  const dir = await model('llama-warmup', LLAMA);
  const out = path.join(tmp, 'warmup-out');
  // 4 training samples: 1 held out, 3 blocks, 1 per step, 1 epoch = 3 steps.
  const r = cli('prune', dir, '-o', out, '--calib', calib, '--samples', '2', '--seq-len', '16', '--train-samples', '4', '--n', '1', '--warmup', '1000', '-q');
  fails(r, 'E_INVALID_OPTION', /--warmup 1000 is not in \[0, 3\]: the run takes 3 optimiser steps \(3 training blocks/);
  assert.not.ok(fs.existsSync(out), 'nothing written');
  const ok = cli('prune', dir, '-o', out, '--calib', calib, '--samples', '2', '--seq-len', '16', '--train-samples', '4', '--n', '1', '--warmup', '3', '-q');
  assert.is(ok.code, 0, ok.stderr);
});

test('too little training data fails before the scoring pass', async () => {
  const dir = await model('llama-short-train', LLAMA);
  const r = cli('prune', dir, '-o', path.join(tmp, 'short-train-out'), '--calib', calib, '--samples', '2', '--seq-len', '16', '--n', '1',
    '--replacement', 'none', '--train-samples', '100000');
  fails(r, 'E_DATA_TOO_SMALL', /^error \[E_DATA_TOO_SMALL\]: training data .* lower --train-samples or --seq-len/);
  // The stages the run reached (the CLI's status lines do not name them all): the data stage, never the scoring.
  const stages: string[] = [];
  const err = await prune(await loadModel(dir), { outDir: path.join(tmp, 'short-train-out'), calib, samples: 2, seqLen: 16, n: 1,
    replacement: 'none', trainSamples: 100000, onStage: (s: string) => stages.push(s) }).then(() => null, (e: { code?: string }) => e);
  assert.is(err?.code, 'E_DATA_TOO_SMALL');
  assert.equal(stages, ['data']);
});

test('a file where the model directory goes is E_MODEL_DIR, not a safetensors header error', () => {
  fails(cli('score', calib, '--calib', calib, '-q'), 'E_MODEL_DIR', /is a file, not a model directory/);
  fails(cli('eval', path.join(tmp, 'nope'), '--ppl', calib), 'E_MODEL_DIR', /does not exist/);
});

test('prune -o below a regular file fails with E_OUTPUT before scoring, not with a stack trace after training', async () => {
  const dir = await model('llama', LLAMA);
  const r = cli('prune', dir, '-o', path.join(calib, 'out'), '--calib', calib, '--samples', '2', '--seq-len', '16', '--n', '1', '-q');
  fails(r, 'E_OUTPUT', /is not a folder/);
  assert.not.match(r.stderr, /score|E_INTERNAL/);
});

test('a gated MLP with biases (Llama mlp_bias): mlp/layer train with the gate bias held at zero; --loss lm is refused up front', async () => {
  const dir = await model('llama-mlp-bias', { ...LLAMA, mlp_bias: true });
  const args = ['--calib', calib, '--samples', '2', '--seq-len', '16', '--train-samples', '4', '--n', '1', '-q'];
  for (const kind of ['mlp', 'layer']) {
    // The native trainer has no gate.bias role: this failed after scoring with E_NATIVE_ARG.
    const out = path.join(tmp, `mlp-bias-${kind}`);
    const r = cli('prune', dir, '-o', out, '--replacement', kind, ...args);
    assert.is(r.code, 0, r.stderr);
    const inspected = cli('inspect', out, '--json');
    assert.ok(JSON.parse(inspected.stdout).valid, inspected.stdout);
  }
  const out = path.join(tmp, 'mlp-bias-lm');
  fails(cli('prune', dir, '-o', out, '--replacement', 'layer', '--loss', 'lm', ...args), 'E_UNSUPPORTED', /mlp_bias/);
  assert.not.ok(fs.existsSync(out), 'nothing written');
});

test('a one-layer model has no window: E_RANGE naming the layer count', async () => {
  const dir = await model('llama-1', { ...LLAMA, num_hidden_layers: 1 });
  fails(cli('score', dir, '--calib', calib, '--samples', '2', '--seq-len', '16', '--n', '1', '-q'), 'E_RANGE', /1 decoder layer/);
  fails(cli('score', dir, '--calib', calib, '--samples', '2', '--seq-len', '16', '-q'), 'E_RANGE', /1 decoder layer/);
});

test('sliding-window attention: inputs longer than the window run with the window applied, shorter ones as without', async () => {
  const mistral = { ...LLAMA, architectures: ['MistralForCausalLM'], model_type: 'mistral' };
  // same weights (the generator is seeded), with and without a 16-key window
  const windowed = await model('mistral-window', { ...mistral, sliding_window: 16 });
  const full = await model('mistral-full', { ...mistral, sliding_window: null });
  const matrix = (dir: string, seqLen: string) => {
    const json = path.join(tmp, `${path.basename(dir)}-${seqLen}.json`);
    const r = cli('score', dir, '--calib', calib, '--samples', '2', '--seq-len', seqLen, '--n', '1', '-q', '--json', json);
    assert.is(r.code, 0, r.stderr);
    return JSON.parse(fs.readFileSync(json, 'utf8')).matrix as number[][];
  };
  assert.equal(matrix(windowed, '16'), matrix(full, '16'), 'no query sees more than 16 keys: the window masks nothing');
  assert.not.equal(matrix(windowed, '32'), matrix(full, '32'), 'beyond 16 keys the window changes the states');
  // Qwen2 declares a window but uses it only with use_sliding_window.
  const qwen = { ...LLAMA, architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', sliding_window: 16 };
  const off = await model('qwen2-no-window', { ...qwen, use_sliding_window: false });
  const on = await model('qwen2-window', { ...qwen, use_sliding_window: true, max_window_layers: 0 });
  const offFull = await model('qwen2-no-window-null', { ...qwen, use_sliding_window: false, sliding_window: null });
  assert.equal(matrix(off, '32'), matrix(offFull, '32'));
  assert.not.equal(matrix(on, '32'), matrix(off, '32'));
});

test('eval: rolling perplexity of an empty file is E_DATA_TOO_SMALL naming it, not ppl null with exit 0', async () => {
  const dir = await model('llama-eval', LLAMA);
  const empty = path.join(tmp, 'empty.txt');
  fs.writeFileSync(empty, '');
  const json = path.join(tmp, 'empty.json');
  fails(cli('eval', dir, '--ppl', empty, '--ppl-mode', 'rolling', '--json', json), 'E_DATA_TOO_SMALL', /empty\.txt/);
  assert.not.ok(fs.existsSync(json));
});

test('eval: a model whose weights hold NaN is E_NUMERIC, not a perplexity written as null with exit 0', async () => {
  const dir = await model('llama-nan', LLAMA);
  patchTensors(dir, ['model.layers.1.self_attn.q_proj.weight'], 0x7fc0, 1);  // one bf16 NaN
  const json = path.join(tmp, 'nan.json');
  fails(cli('eval', dir, '--ppl', calib, '--seq-len', '32', '--json', json), 'E_NUMERIC', /NaN/);
  assert.not.ok(fs.existsSync(json));
});

test('output files (--json, --report, --plot, --log, --checkpoint) that cannot be written fail before the work', async () => {
  const dir = await model('llama-files', LLAMA);
  const below = path.join(calib, 'x');  // below a regular file
  const args = ['--calib', calib, '--samples', '2', '--seq-len', '16', '--n', '1', '-q'];
  fails(cli('score', dir, ...args, '--json', below), 'E_WRITE', /--json .*is not a folder/);
  fails(cli('score', dir, ...args, '--json', tmp), 'E_WRITE', /it is a folder/);
  fails(cli('score', dir, ...args, '--plot', path.join(tmp, 'map.jpg')), 'E_PLOT_FORMAT');
  const out = path.join(tmp, 'files-out');
  for (const flag of ['--report', '--log', '--checkpoint']) {
    fails(cli('prune', dir, '-o', out, ...args, flag, below), 'E_WRITE', new RegExp(`${flag} `));
    assert.not.ok(fs.existsSync(out), `${flag}: nothing written`);
  }
  fails(cli('prune', dir, '-o', out, ...args, '--cache-dir', below), 'E_OUTPUT', /--cache-dir/);
  fails(cli('prune', dir, '-o', out, ...args, '--cache-dir', path.join(dir, 'cache')), 'E_OUTPUT_INSIDE_SOURCE', /--cache-dir/);
  fails(cli('eval', dir, '--ppl', calib, '--seq-len', '16', '--log-samples', below), 'E_WRITE', /--log-samples/);
});

test('--checkpoint naming another file: refused before training, the file is neither overwritten nor deleted', async () => {
  const dir = await model('llama-ckpt', LLAMA);
  const args = ['--calib', calib, '--samples', '2', '--seq-len', '16', '--train-samples', '4', '--n', '1', '-q'];
  const out = path.join(tmp, 'ckpt-out');
  // A finished run removes its checkpoint: pointed at the model's tokenizer.json, it used to delete it.
  fails(cli('prune', dir, '-o', out, ...args, '--checkpoint', path.join(dir, 'tokenizer.json')), 'E_OUTPUT_INSIDE_SOURCE', /checkpoint/);
  assert.ok(fs.existsSync(path.join(dir, 'tokenizer.json')));
  const precious = path.join(tmp, 'notes.txt');
  fs.writeFileSync(precious, 'keep me\n');
  for (const resume of [[], ['--resume']]) {
    fails(cli('prune', dir, '-o', out, ...args, '--checkpoint', precious, ...resume), 'E_CHECKPOINT', /not a Streamline training checkpoint/);
    assert.is(fs.readFileSync(precious, 'utf8'), 'keep me\n');
  }
  const ok = cli('prune', dir, '-o', out, ...args, '--checkpoint', path.join(tmp, 'none.ckpt'), '--resume');
  assert.is(ok.code, 0, ok.stderr);
  assert.match(ok.stderr, /warning: --resume: no checkpoint at .*none\.ckpt; training starts from the beginning/);
});

test('too little training data names --train-samples, not the scoring option --samples', async () => {
  const dir = await model('llama-train-data', LLAMA);
  fails(cli('prune', dir, '-o', path.join(tmp, 'train-data-out'), '--calib', calib, '--samples', '2', '--seq-len', '16', '--n', '1',
    '--train-samples', '100000', '-q'), 'E_DATA_TOO_SMALL', /^error \[E_DATA_TOO_SMALL\]: training data .*lower --train-samples or --seq-len/);
});

test('linear replacement with a singular system (fewer tokens than the hidden size, --ridge 0) is E_LINEAR_SOLVE, not E_INTERNAL', async () => {
  const dir = await model('llama-linear-solve', LLAMA);
  fails(cli('prune', dir, '-o', path.join(tmp, 'linear-solve-out'), '--replacement', 'linear', '--ridge', '0', '--calib', calib,
    '--samples', '2', '--seq-len', '8', '--train-samples', '2', '--n', '1', '-q'), 'E_LINEAR_SOLVE', /ridge/);
});

test('post-norm OPT with tied embeddings: linear fits no window, refused before scoring; the mlp message offers only none', async () => {
  const dir = await model('opt-post-tied', { ...TINY_OPT, vocab_size: 101, num_hidden_layers: 3, do_layer_norm_before: false, tie_word_embeddings: true });
  const args = ['--calib', calib, '--samples', '2', '--seq-len', '16', '--n', '1', '-q'];
  fails(cli('prune', dir, '-o', path.join(tmp, 'opt-post-out'), '--replacement', 'linear', ...args), 'E_REPLACEMENT', /ties its embeddings\. Use --replacement none$/);
  fails(cli('prune', dir, '-o', path.join(tmp, 'opt-post-out'), '--replacement', 'mlp', ...args), 'E_REPLACEMENT', /Use --replacement none$/);
  const ok = cli('prune', dir, '-o', path.join(tmp, 'opt-post-out'), '--replacement', 'none', ...args);
  assert.is(ok.code, 0, ok.stderr);
});

test('--range 0:N with linear on tied embeddings is refused before the data and pair stages', async () => {
  const dir = await model('llama-tied', { ...LLAMA, tie_word_embeddings: true });
  const r = cli('prune', dir, '-o', path.join(tmp, 'tied-out'), '--replacement', 'linear', '--range', '0:2', '--calib', calib, '--samples', '2', '--seq-len', '16');
  fails(r, 'E_REPLACEMENT', /tied to the LM head/);
  assert.not.match(r.stderr, /data|pairs/);
});

test('prune -o DIR --force where DIR holds the calibration data: refused, the data survives', async () => {
  const dir = await model('llama-force', LLAMA);
  const data = path.join(tmp, 'data-dir');
  fs.mkdirSync(data);
  const text = path.join(data, 'calib.txt');
  fs.copyFileSync(calib, text);
  fails(cli('prune', dir, '-o', data, '--force', '--calib', text, '--samples', '2', '--seq-len', '16', '--n', '1', '--replacement', 'none', '-q'),
    'E_OUTPUT_EXISTS', /--calib data/);
  assert.ok(fs.existsSync(text));
});

test('--log inside the output folder is refused up front (it made the folder non-empty and the export failed after training)', async () => {
  const dir = await model('llama-log-inside', LLAMA);
  const out = path.join(tmp, 'log-inside-out');
  fails(cli('prune', dir, '-o', out, '--log', path.join(out, 'train.jsonl'), '--calib', calib, '--samples', '2', '--seq-len', '16',
    '--train-samples', '4', '--n', '1', '--replacement', 'mlp', '-q'), 'E_INVALID_OPTION', /--log .*inside the output folder/);
  assert.not.ok(fs.existsSync(out));
  // --json is written after the export and may go inside it.
  const ok = cli('prune', dir, '-o', out, '--json', path.join(out, 'result.json'), '--calib', calib, '--samples', '2', '--seq-len', '16',
    '--train-samples', '4', '--n', '1', '--replacement', 'mlp', '-q');
  assert.is(ok.code, 0, ok.stderr);
  assert.ok(fs.existsSync(path.join(out, 'result.json')));
});

test('a --sparsity out of reach is reported on stderr with what the chosen window removes (the run still succeeds)', async () => {
  const dir = await model('llama-sparsity', LLAMA);
  const r = cli('prune', dir, '-o', path.join(tmp, 'sparsity-out'), '--sparsity', '0.9', '--replacement', 'none', '--calib', calib,
    '--samples', '2', '--seq-len', '16', '--dry-run', '-q');
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stderr, /^warning: --sparsity 0\.9 asked for; the closest window removes \d+\.\d% net \(3 of 4 layers, none replacement\)$/m);
});

test('linear on tied embeddings when the best window starts at layer 0: the best window starting later is used, with a warning', async () => {
  const dir = await model('llama-tied-identity0', { ...LLAMA, num_hidden_layers: 3, tie_word_embeddings: true });
  // Layer 0 adds nothing (zero output projections): cos(h[0], h[1]) = 1, the best window of one layer is [0, 1).
  patchTensors(dir, ['model.layers.0.self_attn.o_proj.weight', 'model.layers.0.mlp.down_proj.weight'], 0);
  const json = path.join(tmp, 'tied-identity0.json');
  const r = cli('prune', dir, '-o', path.join(tmp, 'tied-identity0-out'), '--replacement', 'linear', '--n', '1', '--calib', calib,
    '--samples', '2', '--seq-len', '16', '--json', json, '-q');
  assert.is(r.code, 0, r.stderr);
  const out = JSON.parse(fs.readFileSync(json, 'utf8'));
  assert.equal(out.score.best, { ...out.score.best, start: 0, end: 1 });
  assert.ok(out.plan.window.start > 0, JSON.stringify(out.plan.window));
  assert.match(r.stderr, /warning: the best window \[0, 1\) cannot take the linear replacement \(tied embeddings\); using the best window that can/);
});

test('linear on post-norm OPT with untied embeddings: only a window at layer 0 can take it, so that one is used', async () => {
  const dir = await model('opt-post-untied', { ...TINY_OPT, vocab_size: 101, num_hidden_layers: 3, word_embed_proj_dim: 16, do_layer_norm_before: false, tie_word_embeddings: false });
  // Layer 2 made nearly the identity (no attention or MLP output, plain norms: h[3] is h[2] centred and scaled), so
  // [2, 3) scores best.
  const l2 = (t: string) => `model.decoder.layers.2.${t}`;
  patchTensors(dir, ['self_attn.out_proj.weight', 'self_attn.out_proj.bias', 'fc2.weight', 'fc2.bias', 'self_attn_layer_norm.bias', 'final_layer_norm.bias'].map(l2), 0);
  patchTensors(dir, ['self_attn_layer_norm.weight', 'final_layer_norm.weight'].map(l2), 0x3f80);
  const json = path.join(tmp, 'opt-post-untied.json');
  const r = cli('prune', dir, '-o', path.join(tmp, 'opt-post-untied-out'), '--replacement', 'linear', '--n', '1', '--calib', calib,
    '--samples', '2', '--seq-len', '16', '--json', json, '-q');
  assert.is(r.code, 0, r.stderr);
  const out = JSON.parse(fs.readFileSync(json, 'utf8'));
  assert.equal(out.plan.window, { start: 0, end: 1 });
  assert.ok(out.score.best.start > 0, JSON.stringify(out.score.best));
  assert.match(r.stderr, /cannot take the linear replacement \(post-norm layers leave no MLP output to fold into\); using the best window that can, \[0, 1\)/);
});

test.after(() => fs.rmSync(tmp, { recursive: true, force: true }));
test.run();
