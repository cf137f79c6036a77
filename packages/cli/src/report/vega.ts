/**
 * Renders a Vega-Lite spec to an SVG string in Node, without a browser: vega-lite compiles the spec to Vega,
 * and a headless Vega view (renderer 'none') serialises the scene graph. Both libraries are loaded on first
 * use, so commands that draw nothing do not pay for importing them (about 0.4 s).
 */
import type { TopLevelSpec, Config } from 'vega-lite';
import { StreamlineError } from '@streamline/core';

type TextWidth = (item: { fontSize?: number; fontWeight?: string | number }, text?: unknown) => number;
type VegaModules = { vega: typeof import('vega'); vl: typeof import('vega-lite') };
let modules: Promise<VegaModules> | undefined;

function load(): Promise<VegaModules> {
  modules ??= Promise.all([import('vega'), import('vega-lite')]).then(([vega, vl]) => {
    // Without node-canvas Vega guesses 0.8 em per character, which makes titles and labels take far more room
    // than they do; Vega's documented hook for this (used by vl-convert) is replacing textMetrics.width.
    // vega's typings do not declare textMetrics (re-exported from vega-scenegraph).
    const metrics = (vega as unknown as { textMetrics?: { width: TextWidth } }).textMetrics;
    if (metrics) {
      metrics.width = (item, text) => sansTextWidth(text == null ? '' : String(text).trim(), item.fontSize ?? 11, item.fontWeight);
    }
    return { vega, vl };
  });
  return modules;
}

// Helvetica/Arial advance widths (1/1000 em) for ASCII 32..126.
const ASCII_WIDTHS = [
  278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278, 556, 556, 556, 556, 556, 556, 556,
  556, 556, 556, 278, 278, 584, 584, 584, 556, 1015, 667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833,
  722, 778, 667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 278, 278, 278, 469, 556, 333, 556, 556, 500, 556,
  556, 278, 556, 556, 222, 222, 500, 222, 833, 556, 556, 556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334,
  260, 334, 584,
];

/**
 * Estimated rendered width of `text` in a sans-serif face: Helvetica metrics widened by 8 % (DejaVu Sans and
 * system UI fonts run wider), 7 % more for bold.
 */
export function sansTextWidth(text: string, fontSize: number, fontWeight?: string | number): number {
  let em = 0;
  for (const ch of text) {
    const c = ch.codePointAt(0)!;
    em += c >= 32 && c <= 126 ? ASCII_WIDTHS[c - 32]! : 600;
  }
  const bold = fontWeight === 'bold' || (typeof fontWeight === 'number' && fontWeight >= 600) || fontWeight === '600' || fontWeight === '700';
  return (em / 1000) * fontSize * 1.08 * (bold ? 1.07 : 1);
}

/** Compiles `spec` (with `config` merged in) and returns the SVG document as a string. */
export async function renderVegaLite(spec: TopLevelSpec, config: Config): Promise<string> {
  const { vega, vl } = await load();
  let compiled;
  try {
    compiled = vl.compile(spec, { config }).spec;
  } catch (e) {
    throw new StreamlineError('E_CHART', `could not compile a chart: ${(e as Error).message}`, { cause: e });
  }
  // Warnings (for example about ignored encodings) would go to the console; keep library code quiet.
  const view = new vega.View(vega.parse(compiled), { renderer: 'none', logLevel: vega.None });
  try {
    return withTooltips(await view.toSVG());
  } finally {
    view.finalize();
  }
}

/**
 * Vega's SVG carries each mark item's description as an aria-label; a `<title>` child instead makes browsers show
 * it on hover too (no script needed) and still names the element for screen readers, in half the bytes (a heat
 * map of an 80-layer model has 6,561 cells). The label is already escaped for an attribute, which is also valid
 * element text.
 */
export function withTooltips(svg: string): string {
  return svg.replace(
    /<(path|text) aria-label="([^"]*)" role="graphics-symbol" aria-roledescription="[^"]*"([^>]*?)\/>/g,
    (_m, tag: string, label: string, attrs: string) => `<${tag}${attrs}><title>${label}</title></${tag}>`,
  );
}
