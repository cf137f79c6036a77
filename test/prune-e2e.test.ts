// prune end to end on the demo model (../shared/models/kjv-llama, bf16 weights):
// - every replacement kind exports a directory that passes inspect, and its logits on held-out text equal the
//   in-memory pruned model's (bf16: bit for bit, because the model in memory already uses the rounded weights);
// - the on-disk pair cache gives the same result as the in-memory one;
// - safety: non-empty output without --force, output inside the source.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { forwardDescription, inspect, loadModel, openCheckpoint, prune, readTextDocuments, type PruneOptions } from '../packages/core/src/index.js';
import { kjvData, kjvModel, skipWithoutShared } from './_shared.js';

if (!skipWithoutShared('prune-e2e.test.ts')) {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'streamline-prune-'));
  const base = (out: string): PruneOptions => ({
    outDir: path.join(tmp, out), calib: path.join(kjvData, 'train.jsonl'), samples: 4, seqLen: 128, trainSamples: 8,
    n: 4, lr: 1e-3, seed: 3,
  });
  let heldOut: Int32Array[] = [];

  test('setup: held-out text', async () => {
    const model = await loadModel(kjvModel);
    const docs = await readTextDocuments(path.join(kjvData, 'test.jsonl'), 'text');
    const ids = model.tokenizer!.encode(docs.slice(0, 3).join('\n\n'));
    heldOut = [ids.slice(0, 100), ids.slice(100, 164)];
  });

  for (const kind of ['none', 'linear', 'mlp', 'layer'] as const) {
    test(`${kind}: exported checkpoint passes inspect and reproduces the in-memory pruned model's logits`, async () => {
      const model = await loadModel(kjvModel);
      const r = await prune(model, { ...base(kind), replacement: kind });
      const rep = inspect(r.exported!.outDir);
      assert.ok(rep.kind === 'model' && rep.valid, 'inspect');
      assert.is(rep.kind === 'model' && rep.layers, r.plan.layersAfter);
      const manifest = JSON.parse(fs.readFileSync(path.join(r.exported!.outDir, 'streamline.json'), 'utf8'));
      assert.equal(manifest.range, r.plan.window);
      assert.is(manifest.replacement, kind);
      assert.ok(Object.keys(manifest.source.files).includes('model.safetensors'));
      const exported = await loadModel(r.exported!.outDir);
      const a = await forwardDescription(r.pruned!, heldOut, { logits: true });
      const b = await forwardDescription(exported.description, heldOut, { logits: true });
      let worst = 0;
      for (let i = 0; i < a.logits!.length; i++) worst = Math.max(worst, Math.abs(a.logits![i]! - b.logits![i]!));
      assert.ok(worst === 0, `max |Δ logit| = ${worst}`);
      assert.ok(a.logits!.every(Number.isFinite));
      if (kind !== 'none') assert.ok(r.heldOut!.pplAfter > 0 && Number.isFinite(r.heldOut!.pplAfter));
    });
  }

  test('the on-disk pair cache gives bitwise the same replacement as the in-memory cache', async () => {
    const model = await loadModel(kjvModel);
    const mem = await prune(model, { ...base('mem'), replacement: 'mlp', cacheBudget: 1 << 30 });
    const disk = await prune(model, { ...base('disk'), replacement: 'mlp', cacheBudget: 1024, cacheDir: path.join(tmp, 'cache') });
    assert.is(mem.training!.cache, 'memory');
    assert.is(disk.training!.cache, 'disk');
    assert.equal(disk.training!.history.map((h) => h.loss), mem.training!.history.map((h) => h.loss));
    const a = openCheckpoint(mem.exported!.outDir), b = openCheckpoint(disk.exported!.outDir);
    for (const name of a.names()) assert.ok(Buffer.from(a.tensor(name).data).equals(Buffer.from(b.tensor(name).data)), name);
    assert.equal(fs.readdirSync(path.join(tmp, 'cache')), [], 'the cache file is removed afterwards');
  });

  test('--loss lm: trains the layer replacement on the next-token loss (validation = NLL), x-only cache; refused for linear', async () => {
    const model = await loadModel(kjvModel);
    const r = await prune(model, { ...base('lm'), replacement: 'layer', loss: 'lm', range: { start: 9, end: 13 }, n: undefined });
    assert.ok(r.training!.history.every((h) => Number.isFinite(h.loss)));
    // The validation loss is a mean next-token NLL on held-out blocks: log of their perplexity after pruning.
    assert.ok(Math.abs(r.training!.bestValLoss! - Math.log(r.heldOut!.pplAfter)) < 0.05 * Math.log(r.heldOut!.pplAfter),
      `best validation NLL ${r.training!.bestValLoss} vs log held-out ppl ${Math.log(r.heldOut!.pplAfter)}`);
    const manifest = JSON.parse(fs.readFileSync(path.join(r.exported!.outDir, 'streamline.json'), 'utf8'));
    assert.is(manifest.training.options.loss, 'lm');
    let code = '';
    try { await prune(model, { ...base('lm-linear'), replacement: 'linear', loss: 'lm' }); } catch (e: any) { code = e.code; }
    assert.is(code, 'E_INVALID_OPTION');
  });

  test('refuses a non-empty output without force, and an output inside the source', async () => {
    const model = await loadModel(kjvModel);
    const out = path.join(tmp, 'busy');
    fs.mkdirSync(out);
    fs.writeFileSync(path.join(out, 'keep.txt'), 'x');
    let code = '';
    try { await prune(model, { ...base('busy'), replacement: 'none', range: { start: 2, end: 4 }, n: undefined }); } catch (e: any) { code = e.code; }
    assert.is(code, 'E_OUTPUT_EXISTS');
    assert.ok(fs.existsSync(path.join(out, 'keep.txt')), 'nothing was touched');
    code = '';
    try { await prune(model, { ...base('x'), outDir: path.join(kjvModel, 'pruned'), replacement: 'none', range: { start: 2, end: 4 }, n: undefined }); } catch (e: any) { code = e.code; }
    assert.is(code, 'E_OUTPUT_INSIDE_SOURCE');
  });

  test('cleanup', () => { fs.rmSync(tmp, { recursive: true, force: true }); });
}

test.run();
