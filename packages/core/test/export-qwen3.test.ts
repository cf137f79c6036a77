// Exports of a Qwen3 model (test/fixtures/models/qwen3: GQA, head_dim 16 != hidden/heads, q/k norms far from 1):
// every replacement kind writes a checkpoint that `inspect` accepts, whose config keeps model_type qwen3 and
// head_dim, whose layers keep q_norm/k_norm (a `layer` replacement exports its trained ones), and whose logits read
// back equal the pruned model's in memory. (Against scripts/fixtures/hf_reference.py the export agrees to the
// fixtures' tolerance: checked by hand, see docs/adding-an-architecture.md step 7.)
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { inspect, loadModel, prune, type ModelReport } from '../src/index.js';
import { loadCharFixture, logitsOf, maxAbsDiff, tmpDir, writeCalibText, writeCharTokenizer } from './_helpers.js';

const tmp = tmpDir('export-qwen3');
const calib = writeCalibText(tmp);
const tokens = Int32Array.from({ length: 20 }, (_, i) => 2 + ((i * 37 + 11) % 95));


const readF32 = (v: { data: Uint8Array; dtype: string }) => {
  assert.is(v.dtype, 'f32');
  return new Float32Array(v.data.slice().buffer);
};

const runs = [
  { name: 'none', replacement: 'none' as const, range: { start: 1, end: 3 } },
  { name: 'linear', replacement: 'linear' as const, range: { start: 1, end: 3 } },
  { name: 'mlp', replacement: 'mlp' as const, range: { start: 1, end: 3 } },
  { name: 'layer', replacement: 'layer' as const, range: { start: 1, end: 3 } },
  { name: 'layer, --loss lm', replacement: 'layer' as const, range: { start: 0, end: 2 }, loss: 'lm' as const },
];

for (const r of runs) {
  test(`qwen3 ${r.name}: the export is valid, keeps model_type/head_dim/q_norm/k_norm, and gives the in-memory logits`, async () => {
    const model = await loadCharFixture('qwen3', tmp);
    const out = path.join(tmp, r.name.replace(/[^a-z]+/g, '-'));
    const res = await prune(model, { outDir: out, calib, samples: 2, seqLen: 16, trainSamples: 4, epochs: 1, lr: 1e-2, range: r.range,
      replacement: r.replacement, device: 'cpu', ...(r.loss ? { loss: r.loss } : {}) });
    writeCharTokenizer(out);  // the fixture has none; the export copies what the source has
    const rep = inspect(out) as ModelReport;
    assert.ok(rep.valid, `inspect: ${JSON.stringify({ missing: rep.missing, wrongShape: rep.wrongShape, unexpected: rep.unexpected })}`);
    const cfg = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8'));
    const keptCount = r.replacement === 'none' || r.replacement === 'linear' ? 2 : 3;
    assert.equal([cfg.model_type, cfg.head_dim, cfg.num_hidden_layers, cfg.architectures], ['qwen3', 16, keptCount, ['Qwen3ForCausalLM']]);
    const exported = await loadModel(out);
    for (const [i, l] of exported.description.layers.entries()) {
      const w = l.weights();
      assert.ok(w['q_norm.weight'] && w['k_norm.weight'], `layer ${i} has q_norm and k_norm`);
      assert.equal([...w['q_norm.weight'].shape], [16]);
    }
    if (r.replacement === 'layer') {
      // The replacement sits at index start; its norms are the trained ones (moved from the source layer's).
      const src = model.description.layers[r.range.start]!.weights(), got = exported.description.layers[r.range.start]!.weights();
      for (const role of ['q_norm.weight', 'k_norm.weight'] as const) {
        const a = readF32(src[role]!), b = readF32(got[role]!);
        assert.ok(b.some((v, i) => v !== a[i]), `${role} was trained and exported`);
        assert.ok(b.every(Number.isFinite), `${role} finite`);
      }
    }
    const a = await logitsOf(res.pruned!, tokens), b = await logitsOf(exported.description, tokens), worst = maxAbsDiff(a, b);
    assert.ok(a.every(Number.isFinite), 'finite logits');
    assert.ok(worst === 0, `logits of the export vs the pruned model in memory differ by up to ${worst}`);
  });
}

test.run();
