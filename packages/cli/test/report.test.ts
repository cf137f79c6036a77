// Charts, PNG and the HTML report: shapes of the SVG output, NaN handling, escaping, self-containment.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  blockInfluenceSvg, escapeHtml, formatNumber, heatmapSvg, renderReport, svgToPng, trainingCurvesSvg, windowScoresSvg,
} from '../src/report/index.js';
import { writeChart } from '../src/report/index.js';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sampleReportData } from './report-sample.js';

const sample = sampleReportData(16);
const score = sample.score!;
const matrix = score.matrix as number[][];
const best = score.best!;

const count = (s: string, sub: string) => s.split(sub).length - 1;
/** The contents of the Vega mark group with this name (its items are the `<path` elements up to the next group). */
function group(svg: string, name: string): string {
  const at = svg.indexOf(`role-mark ${name}_marks"`);
  if (at < 0) return '';
  const open = svg.indexOf('>', at);
  if (svg[open - 1] === '/') return ''; // an empty group: <g ... />
  const end = svg.indexOf('</g>', at);
  return svg.slice(at, end);
}

async function rejects(p: Promise<unknown>, code: string, pattern?: RegExp) {
  try {
    await p;
  } catch (e) {
    assert.is((e as { code?: string }).code, code, (e as Error).message);
    if (pattern) assert.match((e as Error).message, pattern);
    return;
  }
  assert.unreachable(`expected ${code}`);
}

test('heatmapSvg: bad input', async () => {
  await rejects(heatmapSvg({ matrix: [] }), 'E_CHART_DATA', /empty/);
  await rejects(heatmapSvg({ matrix: [[1, 0.5], [0.5]] }), 'E_CHART_DATA', /row 1 has 1 entries, expected 2/);
  await rejects(heatmapSvg({ matrix, best: { start: 14, end: 18, score: 1 } }), 'E_CHART_DATA', /\[14, 18\) is not a window of a 16-layer model/);
  await rejects(heatmapSvg({ matrix, best: { start: 5, end: 5, score: 1 } }), 'E_CHART_DATA');
});

test('heatmapSvg: one cell per boundary pair, axis labels h[0]..h[L], the chosen window marked', async () => {
  const svg = await heatmapSvg({ matrix, best });
  assert.ok(svg.startsWith('<svg'));
  assert.is(count(group(svg, 'cells'), '<path'), 17 * 17);
  assert.is(count(svg, '<title>cos(h['), 17 * 17, 'each cell has a hover title');
  assert.ok(svg.includes('>h[0]<') && svg.includes('>h[16]<') && svg.includes('>h[9]<'));
  assert.ok(svg.includes('boundary h[i]') && svg.includes('boundary h[j]'));
  assert.is(count(group(svg, 'best_cell'), '<path'), 2, 'cells [start][end] and [end][start]');
  assert.is(count(group(svg, 'window_frame'), '<path'), 1);
  assert.ok(svg.includes(`remove [${best.start}, ${best.end})`));
  assert.ok(svg.includes('Gradient legend'), 'colour legend');
  assert.not.match(svg, /NaN|undefined/);
});

test('heatmapSvg: NaN and null cells are left blank, without "NaN" in the output', async () => {
  const partial = matrix.map((row, i) => row.map((v, j) => (j > i + 5 ? NaN : i === 0 && j === 1 ? null : v)));
  let finite = 0;
  for (const row of partial) for (const v of row) if (typeof v === 'number' && Number.isFinite(v)) finite++;
  const svg = await heatmapSvg({ matrix: partial, best: { start: 2, end: 6, score: 0.9 } });
  assert.is(count(group(svg, 'cells'), '<path'), finite);
  assert.not.match(svg, /NaN|null|undefined|Infinity/);
  const none = await heatmapSvg({ matrix: [[NaN, NaN], [NaN, NaN]] });
  assert.is(count(group(none, 'cells'), '<path'), 0);
  assert.not.match(none, /NaN/);
});

test('heatmapSvg: text is escaped', async () => {
  const svg = await heatmapSvg({ matrix, title: '<script>alert("x")</script> & co' });
  assert.not.ok(svg.includes('<script'));
  assert.ok(svg.includes('&lt;script&gt;'));
});

test('windowScoresSvg: bad input, then one point per window and the best highlighted', async () => {
  await rejects(windowScoresSvg({ windows: [], metric: 'cosine' }), 'E_CHART_DATA');
  await rejects(windowScoresSvg({ windows: [{ start: 0, end: 4, score: NaN }], metric: 'cosine' }), 'E_CHART_DATA');
  const svg = await windowScoresSvg({ windows: score.windows, best, metric: 'cosine' });
  assert.is(score.windows.length, 13);
  assert.is(count(group(svg, 'score_points'), '<path'), 12);
  assert.is(count(group(svg, 'best_window'), '<path'), 1);
  assert.ok(svg.includes(`>[${best.start}, ${best.end})<`), 'x labels as [s, e)');
  assert.ok(svg.includes('>[0, 4)<'));
  assert.ok(svg.includes(formatNumber(best.score)), 'best labelled with its score');
  assert.ok(svg.includes('mean cosine'));
  const withNaN = await windowScoresSvg({ windows: [...score.windows, { start: 13, end: 17, score: NaN }], best, metric: 'angular' });
  assert.not.match(withNaN, /NaN/);
  assert.ok(withNaN.includes('angular distance'));
});

test('trainingCurvesSvg: bad input, then a line per run and series, validation points, log axis', async () => {
  await rejects(trainingCurvesSvg({ runs: [] }), 'E_CHART_DATA');
  await rejects(trainingCurvesSvg({ runs: [{ label: 'a', steps: [{ step: 1, loss: NaN, lr: 1 }] }] }), 'E_CHART_DATA');
  const runs = sample.training!.runs;
  const svg = await trainingCurvesSvg({ runs, logY: true });
  assert.is(count(svg, 'role-mark loss_lines_marks'), 4, 'train and validation lines for two runs');
  assert.is(count(group(svg, 'val_points'), '<path'), 10, 'five validation points per run');
  assert.ok(svg.includes('>mlp<') && svg.includes('>layer<'), 'run legend');
  assert.ok(svg.includes('loss (log scale)') && svg.includes('learning rate'));
  const noLr = await trainingCurvesSvg({ runs: [{ label: 'x', steps: [{ step: 1, loss: 0, lr: 1 }, { step: 2, loss: 1, lr: 1 }] }], logY: true, showLr: false });
  assert.not.ok(noLr.includes('learning rate'));
  assert.not.match(noLr, /NaN|Infinity/);
});

test('blockInfluenceSvg: one bar per layer, the window in the accent colour', async () => {
  await rejects(blockInfluenceSvg([]), 'E_CHART_DATA');
  const svg = await blockInfluenceSvg(score.blockInfluence!, { best });
  const bars = group(svg, 'bars');
  assert.is(count(bars, '<path'), 16);
  assert.is(count(bars, 'fill="#e8590c"'), best.end - best.start);
  assert.not.match(await blockInfluenceSvg([0.1, NaN, 0.2]), /NaN/);
});

test('svgToPng: bad options, then a PNG, with and without fonts', async () => {
  const svg = await windowScoresSvg({ windows: score.windows, best, metric: 'cosine' });
  await rejects(svgToPng(svg, { scale: 0 }), 'E_PNG_OPTIONS');
  await rejects(svgToPng('<svg', {}), 'E_PNG_RENDER');
  const png = await svgToPng(svg, { scale: 1 });
  assert.equal([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  const width = new DataView(png.buffer, png.byteOffset).getUint32(16);
  assert.is(width, Number(svg.match(/width="(\d+)"/)![1]));
  const noFonts = await svgToPng(svg, { scale: 1, systemFonts: false });
  assert.ok(noFonts.length > 100 && noFonts.length < png.length, 'renders without text instead of failing');
});

test('writeChart: the extension picks SVG or PNG; anything else is E_PLOT_FORMAT', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'streamline-plot-'));
  try {
    const svg = await blockInfluenceSvg([0.3, 0.1, 0.2]);
    await rejects(writeChart(path.join(dir, 'plot.jpg'), svg), 'E_PLOT_FORMAT', /plot\.jpg must end in \.svg or \.png/);
    assert.is(await writeChart(path.join(dir, 'plot.svg'), svg), 'svg');
    assert.is(readFileSync(path.join(dir, 'plot.svg'), 'utf8'), svg);
    assert.is(await writeChart(path.join(dir, 'out', 'plot.PNG'), svg), 'png');
    assert.equal([...readFileSync(path.join(dir, 'out', 'plot.PNG')).subarray(1, 4)], [0x50, 0x4e, 0x47]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('escapeHtml and formatNumber', () => {
  assert.is(escapeHtml(`<a href="x">'&'</a>`), '&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;');
  assert.is(formatNumber(14230784), '14,230,784');
  assert.is(formatNumber(0.91853), '0.9185');
  assert.is(formatNumber(7.41823), '7.418');
  assert.is(formatNumber(1.5e-5), '1.500e-5');
  assert.is(formatNumber(NaN), '—');
  assert.is(formatNumber(null), '—');
});

test('renderReport: bad input', async () => {
  await rejects(renderReport(null as never), 'E_REPORT_DATA');
  await rejects(renderReport({ title: 3 } as never), 'E_REPORT_DATA');
});

test('renderReport: self-contained page with every section, user text escaped', async () => {
  const evil = '<img src=x onerror=alert(1)>';
  const data = sampleReportData(16);
  data.title = `report ${evil}`;
  data.command = `streamline score ${evil}`;
  data.score!.model = `/models/${evil}`;
  data.manifest = { ...data.manifest, note: evil, nested: { deeper: { value: evil } }, list: [evil] };
  data.comparison!.rows.push({ metric: evil, original: 1, none: null, linear: evil, mlp: 2, layer: 3 });
  data.comparison!.notes = [evil];
  data.training!.runs[0]!.label = evil;
  const html = await renderReport(data);
  assert.ok(html.startsWith('<!doctype html>'));
  assert.not.ok(html.includes('<img'), 'user text never becomes markup');
  assert.ok(html.includes('&lt;img src=x onerror=alert(1)&gt;'));
  assert.not.match(html, /<script|<link|<iframe|src="|@import/);
  assert.not.match(html, /(href|src)="(https?:)?\/\//, 'no external URLs');
  for (const id of ['scores', 'training', 'comparison', 'manifest']) assert.ok(html.includes(`<section id="${id}">`), id);
  assert.is(count(html, '<svg'), 4, 'heat map, window scores, block influence, training curves');
  const ids = [...html.matchAll(/\sid="([^"]+)"/g)].map((m) => m[1]);
  assert.is(new Set(ids).size, ids.length, 'ids are unique across the inline charts');
  assert.not.match(html, /NaN|undefined|\[object Object\]/);
  assert.ok(html.includes('remove [8, 12)'));
  assert.ok(html.includes('<details><summary>Manifest as JSON</summary>'));
});

test('renderReport: sections appear only with their data; a malformed chart becomes a notice', async () => {
  const base = { title: 't', command: 'streamline eval m', createdAt: '2026-11-28T00:00:00Z', tool: { name: 'streamline', version: '0.1.0' }, manifest: {} };
  const bare = await renderReport(base);
  assert.not.ok(bare.includes('id="scores"') || bare.includes('id="training"') || bare.includes('id="comparison"'));
  assert.ok(bare.includes('id="manifest"'));
  assert.is(count(bare, '<svg'), 0);
  const broken = await renderReport({ ...base, score: { ...score, matrix: [[1, 2], [3]], blockInfluence: undefined } });
  assert.ok(broken.includes('Chart unavailable: heat map: matrix row 1 has 1 entries'));
  assert.is(count(broken, '<svg'), 1, 'the window-score chart still renders');
});

test.run();
