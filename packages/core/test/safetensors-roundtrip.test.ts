// Writer → reader round trips (every dtype, zero-size and scalar tensors, metadata, shards, lazy producers) and
// the checks on sharded indexes (paths outside the directory, missing files, tensors not where the index says).
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DTYPES, dtypeSize, isStreamlineError, openCheckpoint, openSafetensors, Tensor, writeSafetensors, writeSafetensorsFile, type DType } from '../src/index.js';
import { prng, tmpDir } from './_helpers.js';

function randomTensor(dtype: DType, shape: number[], r: () => number): Tensor {
  const t = Tensor.zeros(dtype, shape);
  for (let i = 0; i < t.data.length; i++) t.data[i] = dtype === 'bool' ? (r() < 0.5 ? 1 : 0) : Math.floor(r() * 256);
  return t;
}

function sample(): Map<string, Tensor> {
  const r = prng(3);
  const m = new Map<string, Tensor>();
  const shapes = [[3, 5], [0], [2, 0, 4], [], [7], [1, 1, 3]];
  for (const dtype of DTYPES) shapes.forEach((s, i) => m.set(`${dtype}.${i}`, randomTensor(dtype, s, r)));
  return m;
}

const code = (c: string) => (e: unknown) => isStreamlineError(e, c);

test('writer: bad input first', async () => {
  const dir = tmpDir('wbad');
  const t = Tensor.zeros('f32', [2]);
  const rejects = async (p: Promise<unknown>, c: string) => {
    try { await p; } catch (e) { assert.ok(isStreamlineError(e, c), `${c}: ${e}`); return; }
    assert.unreachable(c);
  };
  await rejects(writeSafetensors(dir, [{ name: 'a', tensor: t }, { name: 'a', tensor: t }]), 'E_WRITE_ARG');
  await rejects(writeSafetensors(dir, [{ name: '__metadata__', tensor: t }]), 'E_WRITE_ARG');
  await rejects(writeSafetensors(dir, [{ name: '', tensor: t }]), 'E_WRITE_ARG');
  await rejects(writeSafetensors(dir, [{ name: 'a', tensor: t }], { maxShardBytes: 0 }), 'E_WRITE_ARG');
  await rejects(writeSafetensors(dir, [{ name: 'a', tensor: t }], { metadata: { a: 1 as unknown as string } }), 'E_WRITE_ARG');
  await rejects(writeSafetensors(dir, [{ name: 'a', dtype: 'f64' as DType, shape: [1], load: () => t }]), 'E_WRITE_ARG');
  await rejects(writeSafetensors(dir, [{ name: 'a', dtype: 'f32', shape: [-1], load: () => t }]), 'E_SHAPE');
  await rejects(writeSafetensors(dir, [{ name: 'a', dtype: 'f32', shape: [3], load: () => t }]), 'E_WRITE_MISMATCH');
  await rejects(writeSafetensors(dir, [{ name: 'a', dtype: 'bf16', shape: [2], load: () => t }]), 'E_WRITE_MISMATCH');
  try {
    await writeSafetensors(dir, [{ name: 'a', dtype: 'f32', shape: [2], load: () => { throw new Error('producer failed'); } }]);
    assert.unreachable('producer error');
  } catch (e) {
    assert.is((e as Error).message, 'producer failed', 'a producer error passes through unchanged');
  }
  assert.equal(fs.readdirSync(dir), [], 'failed writes leave nothing behind, not even temporary files');
  fs.writeFileSync(path.join(dir, 'model.safetensors'), '');
  await rejects(writeSafetensors(path.join(dir, 'model.safetensors', 'sub'), [{ name: 'a', tensor: t }]), 'E_IO');
  await rejects(writeSafetensors(dir, [{ name: 'a', tensor: t }, { name: 'b', tensor: t }], { maxShardBytes: 8 }), 'E_WRITE_CONFLICT');
  fs.rmSync(dir, { recursive: true });
});

test('round trip: every dtype, zero-size and scalar tensors, metadata; header padded to 8; data aligned', async () => {
  const dir = tmpDir('rt');
  const m = sample();
  const meta = { format: 'pt', 'streamline.note': 'ü ✓ "quoted"' };
  const res = await writeSafetensors(dir, [...m].map(([name, tensor]) => ({ name, tensor })), { metadata: meta });
  assert.equal(res.files, ['model.safetensors']);
  assert.is(res.indexFile, null);
  const file = path.join(dir, 'model.safetensors');
  const raw = fs.readFileSync(file);
  assert.is(Number(raw.readBigUInt64LE(0)) % 8, 0);
  const f = openSafetensors(file);
  assert.equal({ ...f.metadata }, meta);
  assert.equal(new Set(f.names()), new Set(m.keys()));
  for (const [name, t] of m) {
    const back = f.tensor(name);
    assert.is(back.dtype, t.dtype, name);
    assert.equal([...back.shape], [...t.shape], name);
    assert.ok(Buffer.from(back.data).equals(Buffer.from(t.data)), `${name} bytes`);
    assert.ok(back.readonly && back.isAligned(), `${name} is a read-only aligned view`);
  }
  assert.equal(fs.readdirSync(dir), ['model.safetensors']);
  fs.rmSync(dir, { recursive: true });
});

test('sharded round trip with lazy producers called one at a time, in order, and an index', async () => {
  const dir = tmpDir('shard');
  const m = sample();
  const calls: string[] = [];
  let live = 0;
  const entries = [...m].map(([name, t]) => ({
    name, dtype: t.dtype, shape: t.shape,
    load: async () => { calls.push(name); live++; await new Promise((r) => setImmediate(r)); live--; return t; },
  }));
  const progress: number[] = [];
  const res = await writeSafetensors(dir, entries, { maxShardBytes: 64, onProgress: (p) => progress.push(p.done) });
  assert.ok(res.files.length > 2, `${res.files.length} shards`);
  assert.match(res.files[0]!, /^model-00001-of-\d{5}\.safetensors$/);
  assert.is(live, 0);
  assert.equal(calls.slice().sort(), [...m.keys()].sort());
  assert.equal(progress, [...m.keys()].map((_, i) => i + 1));
  const index = JSON.parse(fs.readFileSync(path.join(dir, 'model.safetensors.index.json'), 'utf8'));
  const total = [...m.values()].reduce((s, t) => s + t.nbytes, 0);
  assert.is(index.metadata.total_size, total);
  assert.is(res.totalSize, total);
  for (const f of res.files) {
    const sz = fs.statSync(path.join(dir, f)).size;
    const st = openSafetensors(path.join(dir, f));
    const data = st.names().reduce((s, n) => s + st.info(n).nbytes, 0);
    assert.ok(data <= 64 || st.names().length === 1, `${f} holds ${data} bytes`);
    assert.ok(sz > data);
  }
  const ck = openCheckpoint(dir);
  assert.equal(ck.files, res.files);
  for (const [name, t] of m) assert.ok(Buffer.from(ck.tensor(name).data).equals(Buffer.from(t.data)), name);
  fs.rmSync(dir, { recursive: true });
});

test('writeSafetensorsFile writes one file at an exact path; larger element sizes first keep views aligned', async () => {
  const dir = tmpDir('one');
  const file = path.join(dir, 'x.safetensors');
  await writeSafetensorsFile(file, [
    { name: 'b', tensor: Tensor.zeros('u8', [3]) }, { name: 'h', tensor: Tensor.zeros('bf16', [3]) }, { name: 'q', tensor: Tensor.zeros('i64', [2]) },
  ]);
  const f = openSafetensors(file);
  assert.equal(f.names(), ['q', 'h', 'b']);
  for (const n of f.names()) assert.ok(f.tensor(n).data.byteOffset % dtypeSize(f.tensor(n).dtype) === 0);
  fs.rmSync(dir, { recursive: true });
});

async function shardedDir(): Promise<string> {
  const dir = tmpDir('idx');
  const t = Tensor.fromFloat32([1, 2, 3, 4], [4]);
  await writeSafetensors(dir, [{ name: 'a', tensor: t }, { name: 'b', tensor: t }], { maxShardBytes: 16 });
  return dir;
}

function editIndex(dir: string, edit: (weightMap: Record<string, unknown>) => void): void {
  const file = path.join(dir, 'model.safetensors.index.json');
  const j = JSON.parse(fs.readFileSync(file, 'utf8'));
  edit(j.weight_map);
  fs.writeFileSync(file, JSON.stringify(j));
}

test('E_SAFETENSORS_INDEX: paths outside the directory, missing files, wrong file, bad JSON', async () => {
  const cases: [string, (d: string) => void][] = [
    ['dot-dot', (d) => editIndex(d, (w) => (w.a = '../model-00001-of-00002.safetensors'))],
    ['absolute', (d) => editIndex(d, (w) => (w.a = path.join(d, 'model-00001-of-00002.safetensors')))],
    ['missing file', (d) => editIndex(d, (w) => (w.a = 'model-00009-of-00009.safetensors'))],
    ['tensor not in file', (d) => editIndex(d, (w) => (w.a = 'model-00002-of-00002.safetensors'))],
    ['not a string', (d) => editIndex(d, (w) => (w.a = 3))],
    ['bad JSON', (d) => fs.writeFileSync(path.join(d, 'model.safetensors.index.json'), '{"weight_map": ')],
    ['no weight_map', (d) => fs.writeFileSync(path.join(d, 'model.safetensors.index.json'), '{"metadata": {}}')],
    ['symlink escape', (d) => {
      const outside = tmpDir('outside');
      fs.copyFileSync(path.join(d, 'model-00001-of-00002.safetensors'), path.join(outside, 'x.safetensors'));
      fs.symlinkSync(path.join(outside, 'x.safetensors'), path.join(d, 'link.safetensors'));
      editIndex(d, (w) => (w.a = 'link.safetensors'));
    }],
  ];
  for (const [what, edit] of cases) {
    const dir = await shardedDir();
    edit(dir);
    assert.throws(() => openCheckpoint(dir), (e: unknown) => isStreamlineError(e, 'E_SAFETENSORS_INDEX') && e.message.includes('index.json'), what);
    if (what === 'symlink escape') assert.is(openCheckpoint(dir, { allowSymlinkEscape: true }).tensor('a').numel, 4);
    fs.rmSync(dir, { recursive: true });
  }
});

test('a Hugging Face hub cache snapshot (shards linked to ../../blobs) opens; links elsewhere from a snapshot do not', async () => {
  const src = await shardedDir();
  const repo = path.join(tmpDir('hub'), 'models--org--tiny');
  const snap = path.join(repo, 'snapshots', '0123abc');
  fs.mkdirSync(path.join(repo, 'blobs'), { recursive: true });
  fs.mkdirSync(snap, { recursive: true });
  for (const [i, f] of fs.readdirSync(src).entries()) {
    fs.copyFileSync(path.join(src, f), path.join(repo, 'blobs', `blob${i}`));
    fs.symlinkSync(`../../blobs/blob${i}`, path.join(snap, f));
  }
  assert.is(openCheckpoint(snap).tensor('b').numel, 4);
  // A link out of the blobs folder (here: to the source directory) is still an escape.
  const shard = fs.readdirSync(snap).find((f) => f.endsWith('.safetensors'))!;
  fs.rmSync(path.join(snap, shard));
  fs.symlinkSync(path.join(src, shard), path.join(snap, shard));
  assert.throws(() => openCheckpoint(snap), (e: unknown) => isStreamlineError(e, 'E_SAFETENSORS_INDEX') && e.message.includes('outside the model directory'));
});

test('openCheckpoint: missing weights, a single file given directly', async () => {
  const dir = tmpDir('ck');
  fs.writeFileSync(path.join(dir, 'pytorch_model.bin'), 'x');
  assert.throws(() => openCheckpoint(dir), (e: unknown) => isStreamlineError(e, 'E_CHECKPOINT_MISSING') && e.message.includes('pytorch_model.bin'));
  assert.throws(() => openCheckpoint(path.join(dir, 'nope')), code('E_IO'));
  await writeSafetensors(dir, [{ name: 'w', tensor: Tensor.fromFloat32([1, 2], [2], 'bf16') }]);
  const ck = openCheckpoint(path.join(dir, 'model.safetensors'));
  assert.equal(ck.names(), ['w']);
  assert.equal([...ck.tensor('w').toFloat32()], [1, 2]);
  assert.throws(() => ck.tensor('v'), code('E_SAFETENSORS_NOT_FOUND'));
  fs.rmSync(dir, { recursive: true });
});

test.run();
