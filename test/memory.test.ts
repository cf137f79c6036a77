// Layer streaming: peak memory of a forward pass and of scoring over a model with twice the layers stays within a
// few percent of the original's (weights are read in place from the memory-mapped checkpoint; only the running
// layer's working set and the activations, or the boundary states the requested pairs need, are held).
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import fs from 'node:fs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { makeTinyModel } from '../packages/core/test/_helpers.js';
import { repoRoot } from './_shared.js';

const base = {
  architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: 768, intermediate_size: 3072,
  num_attention_heads: 12, num_key_value_heads: 12, vocab_size: 512, max_position_embeddings: 512, rms_norm_eps: 1e-5,
  tie_word_embeddings: false, torch_dtype: 'bfloat16',
};
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'streamline-memory-'));

function probe(mode: string, dir: string): number {
  // A fixed malloc mmap threshold keeps glibc from parking freed scratch buffers on the heap (its dynamic
  // threshold would make the peak depend on allocation history, not on what is held); --expose-gc lets the probe
  // collect before each sample so V8's lazy GC does not count as held memory.
  const r = spawnSync(process.execPath, ['--expose-gc', '--conditions=@streamline/source', '--import', 'tsx', path.join(repoRoot, 'test', 'helpers', 'memory-probe.ts'), mode, dir],
    { encoding: 'utf8', env: { ...process.env, STREAMLINE_NUM_THREADS: '2', MALLOC_MMAP_THRESHOLD_: '131072' } });
  assert.is(r.status, 0, r.stderr);
  return JSON.parse(r.stdout.trim().split('\n').pop()!).peak;
}

test('peak memory does not grow with the number of layers (forward and scoring)', async () => {
  const small = path.join(tmp, 'l6'), large = path.join(tmp, 'l12');
  await makeTinyModel(small, { ...base, num_hidden_layers: 6 });
  await makeTinyModel(large, { ...base, num_hidden_layers: 12 });
  const layerBytes = 2 * (4 * 768 * 768 + 3 * 768 * 3072);  // bf16 weights of one layer: 18.9 MB
  for (const mode of ['forward', 'score']) {
    // The smallest of three runs each: a single peak sample can catch a transient scratch buffer.
    const runs = (d: string) => Math.min(probe(mode, d), probe(mode, d), probe(mode, d));
    const a = runs(small), b = runs(large);
    const growth = (b - a) / a;
    console.log(`  ${mode}: peak RssAnon ${(a / 2 ** 20).toFixed(1)} MiB (6 layers) vs ${(b / 2 ** 20).toFixed(1)} MiB (12 layers), ${(100 * growth).toFixed(1)} %`);
    // Holding the 6 extra layers' weights (even as bf16) would add 113 MB, holding even one of them 18 MB. Allocator
    // and V8 noise is a few MiB on a ~45 MiB peak (measured 0.4 to 4.8 MiB over repeated runs on an idle machine: the
    // 6-layer peak alone moves between 43.7 and 46.0 MiB), so the bound is 5 % of the peak or half of one layer's
    // weights.
    const allowed = Math.max(0.05 * a, 0.5 * layerBytes);
    assert.ok(b - a <= allowed, `${mode}: peak grew ${(100 * growth).toFixed(1)} % (${((b - a) / 2 ** 20).toFixed(1)} MiB; one layer is ${(layerBytes / 2 ** 20).toFixed(1)} MiB)`);
  }
  fs.rmSync(tmp, { recursive: true, force: true });
});

test.run();
