/**
 * The charts of `--plot` and `--report`: Vega-Lite specs built from computed data and rendered to SVG strings.
 * Pure presentation: nothing here computes a score; values are looked up and drawn as given.
 * Every function is async (Vega runs its dataflow asynchronously) and throws StreamlineError E_CHART_DATA
 * when the data has the wrong shape.
 */
import type { TopLevelSpec } from 'vega-lite';
import { StreamlineError } from '@streamline/core';
import { renderVegaLite } from './vega.js';
import { COLORS, HEATMAP_SCHEME, VEGA_CONFIG } from './theme.js';
import { formatNumber, formatRange } from './format.js';
import type { ScoreMetric, TrainingRun, WindowScore } from './types.js';

function bad(message: string): StreamlineError {
  return new StreamlineError('E_CHART_DATA', message);
}

const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

/** Axis tick values 0..last, thinned to at most `max` labels, always including the last. */
function ticks(last: number, max = 18): number[] {
  const need = Math.max(1, Math.ceil((last + 1) / max));
  const step = [1, 2, 4, 5, 8, 10, 16, 20, 25, 32, 50, 64, 100].find((s) => s >= need) ?? need;
  const out: number[] = [];
  for (let k = 0; k <= last; k += step) out.push(k);
  if (out[out.length - 1] !== last) {
    if (out.length > 1 && last - out[out.length - 1]! < step * 0.75) out.pop();
    out.push(last);
  }
  return out;
}

const clamp = (v: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, v));

/** Options of {@link heatmapSvg}. */
export interface HeatmapOptions {
  /** (L+1)×(L+1) mean cosine between boundaries h[i] and h[j]; NaN or null cells are drawn blank. */
  matrix: Array<Array<number | null>>;
  /** The chosen window: cell [start][end] is outlined and the block of boundaries h[start..end] framed. */
  best?: WindowScore | null;
  /** Default: "Boundary similarity". */
  title?: string;
  /** Side of the square plot area in pixels (default: about 440, cells between 6 and 28 px). */
  size?: number;
}

/**
 * Heat map of the boundary-similarity matrix: rows h[i], columns h[j], colour = mean cosine, with a colour legend.
 * The chosen window `[start, end)` is marked by outlining cells [start][end] and [end][start] and by a dashed
 * frame around boundaries h[start]..h[end]; the subtitle reads "remove [start, end)".
 * @throws StreamlineError E_CHART_DATA when the matrix is empty or not square, or `best` lies outside it.
 * @example const svg = await heatmapSvg({ matrix, best: { start: 5, end: 9, score: 0.98 } });
 */
export async function heatmapSvg(opts: HeatmapOptions): Promise<string> {
  const { matrix, best } = opts;
  const n = Array.isArray(matrix) ? matrix.length : 0;
  if (n === 0) throw bad('heat map: matrix is empty (expected L+1 rows of L+1 numbers)');
  matrix.forEach((row, i) => {
    if (!Array.isArray(row) || row.length !== n) {
      throw bad(`heat map: matrix row ${i} has ${Array.isArray(row) ? row.length : 'no'} entries, expected ${n} (a square (L+1)×(L+1) matrix)`);
    }
  });
  const L = n - 1;
  if (best && !(Number.isInteger(best.start) && Number.isInteger(best.end) && 0 <= best.start && best.start < best.end && best.end <= L)) {
    throw bad(`heat map: best window ${formatRange(best.start, best.end)} is not a window of a ${L}-layer model`);
  }

  const cells: Array<{ i: number; j: number; v: number; tip: string }> = [];
  let lo = Infinity, hi = -Infinity;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      const v = matrix[i]![j];
      if (!isNum(v)) continue;
      cells.push({ i, j, v, tip: `cos(h[${i}], h[${j}]) = ${formatNumber(v)}` });
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
  }
  if (!(lo < hi)) { lo = Number.isFinite(lo) ? lo - 0.5 : 0; hi = Number.isFinite(hi) ? hi + 0.5 : 1; }

  const cell = opts.size ? opts.size / n : clamp(Math.round(440 / n), 6, 28);
  const side = Math.round(cell * n);
  // Labels like "h[10]" need about 36 px side by side and 18 px stacked.
  const xValues = ticks(L, Math.max(2, Math.floor(side / 36))), yValues = ticks(L, Math.max(2, Math.floor(side / 18)));
  const xScale = { domain: [-0.5, L + 0.5], nice: false, zero: false };
  const yScale = { ...xScale, reverse: true };
  const axis = (title: string, values: number[], overlap: boolean) => ({
    title, values, grid: false, labelExpr: "'h[' + datum.value + ']'", labelAngle: 0, domain: false, ticks: true,
    labelOverlap: overlap,
  });
  // Every layer repeats the axes: Vega-Lite merges layer axes and drops explicit tick values that disagree.
  const xAxis = axis('boundary h[j]', xValues, true), yAxis = axis('boundary h[i]', yValues, true);

  const layers: any[] = [
    {
      name: 'cells',
      data: { values: cells },
      transform: [
        { calculate: 'datum.j - 0.5', as: 'x0' }, { calculate: 'datum.j + 0.5', as: 'x1' },
        { calculate: 'datum.i - 0.5', as: 'y0' }, { calculate: 'datum.i + 0.5', as: 'y1' },
      ],
      mark: { type: 'rect', stroke: '#ffffff', strokeWidth: cell >= 12 ? 0.5 : 0 },
      encoding: {
        x: { field: 'x0', type: 'quantitative', scale: xScale, axis: xAxis },
        x2: { field: 'x1' },
        y: { field: 'y0', type: 'quantitative', scale: yScale, axis: yAxis },
        y2: { field: 'y1' },
        color: {
          field: 'v', type: 'quantitative', title: 'mean cosine',
          scale: { scheme: HEATMAP_SCHEME, domain: [lo, hi], nice: false },
          legend: { orient: 'right', gradientLength: Math.max(120, Math.min(side, 320)), gradientThickness: 12, format: '.2f', tickCount: 5 },
        },
        description: { field: 'tip' },
      },
    },
  ];

  let subtitle: string | undefined;
  if (best) {
    const { start, end } = best;
    const frame = [{ x0: start - 0.5, x1: end + 0.5, y0: start - 0.5, y1: end + 0.5 }];
    const marked = [
      { x0: end - 0.5, x1: end + 0.5, y0: start - 0.5, y1: start + 0.5 },
      { x0: start - 0.5, x1: start + 0.5, y0: end - 0.5, y1: end + 0.5 },
    ];
    const pos = {
      x: { field: 'x0', type: 'quantitative', scale: xScale, axis: xAxis }, x2: { field: 'x1' },
      y: { field: 'y0', type: 'quantitative', scale: yScale, axis: yAxis }, y2: { field: 'y1' },
    };
    layers.push(
      { name: 'window_frame', data: { values: frame },
        mark: { type: 'rect', fill: null, stroke: COLORS.accent, strokeWidth: 1.5, strokeDash: [5, 3] }, encoding: pos },
      { name: 'best_cell', data: { values: marked },
        mark: { type: 'rect', fill: null, stroke: COLORS.accent, strokeWidth: 2.5 }, encoding: pos },
    );
    const c = matrix[start]![end];
    subtitle = `remove ${formatRange(start, end)}` + (isNum(c) ? `  ·  cos(h[${start}], h[${end}]) = ${formatNumber(c)}` : '');
  }

  const spec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: opts.title ?? 'Boundary similarity', ...(subtitle ? { subtitle } : {}) },
    width: side, height: side,
    layer: layers,
  } as TopLevelSpec;
  return renderVegaLite(spec, VEGA_CONFIG);
}

const METRIC_TITLES: Record<ScoreMetric, string> = {
  cosine: 'mean cosine cos(h[start], h[end])',
  angular: 'angular distance arccos(cos) / π',
  bi: 'Block Influence 1 − cos',
};

/** Options of {@link windowScoresSvg}. */
export interface WindowScoresOptions {
  /** Every candidate window, in order of start. Non-finite scores are left out. */
  windows: WindowScore[];
  best?: WindowScore | null;
  metric: ScoreMetric;
  title?: string;
  width?: number;
  height?: number;
}

/**
 * Line chart of the score of each candidate window (x: `[start, end)` in order of start), the chosen one
 * highlighted and labelled with its score.
 * @throws StreamlineError E_CHART_DATA when `windows` is empty.
 * @example const svg = await windowScoresSvg({ windows, best, metric: 'cosine' });
 */
export async function windowScoresSvg(opts: WindowScoresOptions): Promise<string> {
  const { windows, best, metric } = opts;
  if (!Array.isArray(windows) || windows.length === 0) throw bad('window scores: no windows to draw');
  const isBest = (w: WindowScore) => !!best && w.start === best.start && w.end === best.end;
  const rows = [...windows]
    .sort((a, b) => a.start - b.start)
    .map((w) => ({
      label: formatRange(w.start, w.end), score: w.score, best: isBest(w), text: formatNumber(w.score),
      tip: `${formatRange(w.start, w.end)}: ${formatNumber(w.score)}${isBest(w) ? ' (chosen)' : ''}`,
    }))
    .filter((r) => isNum(r.score));
  if (rows.length === 0) throw bad('window scores: no window has a finite score');
  const labels = rows.map((r) => r.label);
  const n = windows[0]!.end - windows[0]!.start;
  const width = opts.width ?? clamp(rows.length * 44, 320, 640);
  const xEnc = {
    field: 'label', type: 'ordinal', sort: labels, title: `window [start, end)`,
    axis: { labelAngle: width / rows.length < 56 ? -40 : 0, labelOverlap: width / rows.length < 16, grid: false },
    scale: { paddingOuter: 0.3 },
  };
  const yEnc = { field: 'score', type: 'quantitative', title: METRIC_TITLES[metric] ?? metric, scale: { zero: false, nice: true } };
  const description = { field: 'tip' };

  const spec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: {
      text: opts.title ?? `Window scores, n = ${n}`,
      subtitle: best ? `chosen: remove ${formatRange(best.start, best.end)}, score ${formatNumber(best.score)}` : 'no window chosen',
    },
    width, height: opts.height ?? 260,
    data: { values: rows },
    encoding: { x: xEnc, y: yEnc },
    layer: [
      { name: 'score_line', mark: { type: 'line', color: COLORS.neutralBar, strokeWidth: 2, interpolate: 'monotone', aria: false } },
      { name: 'score_points',
        mark: { type: 'point', filled: true, size: 48, color: COLORS.primary, opacity: 1 },
        transform: [{ filter: '!datum.best' }], encoding: { description } },
      { name: 'best_window',
        mark: { type: 'point', filled: true, size: 150, color: COLORS.accent, stroke: '#ffffff', strokeWidth: 2, opacity: 1 },
        transform: [{ filter: 'datum.best' }], encoding: { description } },
      { name: 'best_label',
        mark: { type: 'text', dy: -14, fontWeight: 600, fontSize: 12, color: COLORS.accent, aria: false },
        transform: [{ filter: 'datum.best' }],
        encoding: { text: { field: 'text' } } },
    ],
  } as TopLevelSpec;
  return renderVegaLite(spec, VEGA_CONFIG);
}

/** Tick values 1, 2, 5 × 10^k covering the values (a log axis otherwise labels every 1..9 multiple). */
function logTicks(values: number[]): number[] {
  const lo = Math.min(...values), hi = Math.max(...values);
  const out: number[] = [];
  for (let e = Math.floor(Math.log10(lo)) - 1; e <= Math.ceil(Math.log10(hi)); e++) {
    for (const m of [1, 2, 5]) {
      const v = Number((m * 10 ** e).toPrecision(3));
      if (v >= lo * 0.8 && v <= hi * 1.25) out.push(v);
    }
  }
  return out;
}

/** Options of {@link trainingCurvesSvg}. */
export interface TrainingCurvesOptions {
  runs: Array<Pick<TrainingRun, 'label' | 'steps'>>;
  /** Logarithmic loss axis (default false). */
  logY?: boolean;
  /** Add a small learning-rate panel under the loss panel (default true). */
  showLr?: boolean;
  title?: string;
  width?: number;
  height?: number;
}

/**
 * Training loss (solid) and validation loss (dashed, with points) per step, one colour per run, and optionally
 * the learning-rate schedule in a small panel below.
 * @throws StreamlineError E_CHART_DATA when there is no run or no step with a finite loss.
 * @example const svg = await trainingCurvesSvg({ runs: [{ label: 'ffn', steps }], logY: true });
 */
export async function trainingCurvesSvg(opts: TrainingCurvesOptions): Promise<string> {
  if (!Array.isArray(opts.runs) || opts.runs.length === 0) throw bad('training curves: no runs to draw');
  const loss: Array<{ run: string; step: number; loss: number; series: string; tip: string }> = [];
  const lr: Array<{ run: string; step: number; lr: number }> = [];
  for (const run of opts.runs) {
    for (const s of run.steps ?? []) {
      if (!isNum(s.step)) continue;
      if (isNum(s.loss) && (!opts.logY || s.loss > 0)) {
        loss.push({ run: run.label, step: s.step, loss: s.loss, series: 'train', tip: '' });
      }
      if (isNum(s.valLoss) && (!opts.logY || s.valLoss > 0)) {
        const tip = `${run.label}, step ${s.step}: validation loss ${formatNumber(s.valLoss)}`;
        loss.push({ run: run.label, step: s.step, loss: s.valLoss, series: 'validation', tip });
      }
      if (isNum(s.lr)) lr.push({ run: run.label, step: s.step, lr: s.lr });
    }
  }
  if (loss.length === 0) throw bad('training curves: no step has a finite loss');
  const runLabels = opts.runs.map((r) => r.label);
  const width = opts.width ?? 560;
  const color = {
    field: 'run', type: 'nominal', title: 'run', scale: { domain: runLabels },
    legend: { symbolType: 'stroke', symbolStrokeWidth: 3, symbolSize: 300 },
  };
  const stepX = { field: 'step', type: 'quantitative', title: 'step', axis: { grid: false, tickMinStep: 1 } };
  const withLr = (opts.showLr ?? true) && lr.length > 0;
  const hasVal = loss.some((d) => d.series === 'validation');

  const lossPanel = {
    width, height: opts.height ?? 260,
    data: { values: loss },
    encoding: {
      x: withLr ? { ...stepX, title: null } : stepX,
      y: { field: 'loss', type: 'quantitative', title: opts.logY ? 'loss (log scale)' : 'loss',
        scale: opts.logY ? { type: 'log', nice: false } : { zero: false },
        ...(opts.logY ? { axis: { values: logTicks(loss.map((d) => d.loss)), format: '~g' } } : {}) },
      color,
      strokeDash: {
        field: 'series', type: 'nominal', title: 'series',
        scale: { domain: ['train', 'validation'], range: [[1, 0], [6, 4]] },
        ...(hasVal
          ? { legend: { symbolType: 'stroke', symbolStrokeWidth: 2, symbolSize: 300,
              encode: { symbols: { update: { stroke: { value: COLORS.muted } } } } } }
          : { legend: null }),
      },
      detail: { field: 'series' },
    },
    layer: [
      { name: 'loss_lines', mark: { type: 'line', strokeWidth: 2, interpolate: 'linear', aria: false } },
      { name: 'val_points', transform: [{ filter: "datum.series == 'validation'" }],
        mark: { type: 'point', filled: true, size: 36, opacity: 1 }, encoding: { description: { field: 'tip' } } },
    ],
  };
  const panels: any[] = [lossPanel];
  if (withLr) {
    const lrs = lr.map((d) => d.lr);
    panels.push({
      name: 'lr_panel', width, height: 70,
      data: { values: lr },
      mark: { type: 'line', strokeWidth: 1.5, aria: false },
      encoding: {
        x: stepX,
        y: { field: 'lr', type: 'quantitative', title: 'learning rate', scale: { zero: false, nice: false },
          axis: { format: '.1e', values: [...new Set([Math.min(...lrs), Math.max(...lrs)])] } },
        color,
      },
    });
  }
  const spec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: opts.title ?? 'Training', subtitle: hasVal ? 'train loss (solid) and validation loss (dashed)' : 'train loss' },
    ...(panels.length === 1 ? panels[0] : { vconcat: panels, spacing: 16, resolve: { scale: { color: 'shared' } } }),
  } as TopLevelSpec;
  return renderVegaLite(spec, VEGA_CONFIG);
}

/** Options of {@link blockInfluenceSvg}. */
export interface BlockInfluenceOptions {
  /** Layers of this window are drawn in the accent colour. */
  best?: WindowScore | null;
  title?: string;
  width?: number;
  height?: number;
}

/**
 * Bar chart of Block Influence per layer k (`1 − cos(h[k], h[k+1])`, ShortGPT), layers of the chosen window
 * highlighted. Non-finite values are left out.
 * @throws StreamlineError E_CHART_DATA when `bi` is empty.
 * @example const svg = await blockInfluenceSvg(score.blockInfluence, { best: score.best });
 */
export async function blockInfluenceSvg(bi: number[], opts: BlockInfluenceOptions = {}): Promise<string> {
  if (!Array.isArray(bi) || bi.length === 0) throw bad('block influence: no values to draw');
  const best = opts.best;
  const rows = bi
    .map((v, k) => ({ layer: k, bi: v, inWindow: !!best && k >= best.start && k < best.end, tip: `layer ${k}: ${formatNumber(v)}` }))
    .filter((r) => isNum(r.bi));
  if (rows.length === 0) throw bad('block influence: no layer has a finite value');
  const L = bi.length;
  const spec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: {
      text: opts.title ?? 'Block Influence per layer',
      subtitle: '1 − cos(h[k], h[k+1]); low: layer k changes little'
        + (best ? `; window ${formatRange(best.start, best.end)} in orange` : ''),
    },
    width: opts.width ?? clamp(L * 26, 320, 640), height: opts.height ?? 200,
    data: { values: rows },
    layer: [{ name: 'bars', mark: { type: 'bar' } }],
    encoding: {
      x: { field: 'layer', type: 'ordinal', title: 'layer k', sort: null, scale: { domain: Array.from({ length: L }, (_, k) => k) },
        axis: { labelAngle: 0, labelOverlap: true } },
      y: { field: 'bi', type: 'quantitative', title: 'Block Influence' },
      color: {
        field: 'inWindow', type: 'nominal', legend: null,
        scale: { domain: [false, true], range: [COLORS.neutralBar, COLORS.accent] },
      },
      description: { field: 'tip' },
    },
  } as TopLevelSpec;
  return renderVegaLite(spec, VEGA_CONFIG);
}
