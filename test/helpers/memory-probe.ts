// Child process of memory.test.ts: runs a streamed forward pass (mode "forward") or a scoring pass (mode
// "score") over a model and prints the peak anonymous resident memory (RssAnon) sampled after every layer.
// Memory-mapped weights are file-backed pages (RssFile), so RssAnon is what the engine itself holds.
import fs from 'node:fs';
import { embed, loadModel, makeTokenBatch, runLayers, scoreLayers } from '../../packages/core/src/index.js';

const [mode, dir] = process.argv.slice(2);
const rssAnon = () => Number(/RssAnon:\s+(\d+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'))![1]) * 1024;
let peak = 0;
const gc = (globalThis as { gc?: () => void }).gc;
const sample = () => { gc?.(); peak = Math.max(peak, rssAnon()); };
const model = await loadModel(dir!);
const blocks = Array.from({ length: 2 }, (_, b) => Int32Array.from({ length: 256 }, (_, i) => (i * 7 + b * 13) % 500));
if (mode === 'forward') {
  for (let rep = 0; rep < 2; rep++) {
    const h0 = await embed(model.description, makeTokenBatch(blocks));
    await runLayers(model.description, h0, 0, model.layers, { onProgress: sample });
  }
} else {
  for (let rep = 0; rep < 2; rep++) await scoreLayers(model.description, { blocks, n: 2, matrix: false, batchSize: 2, onProgress: sample });
}
sample();
console.log(JSON.stringify({ peak, layers: model.layers }));
