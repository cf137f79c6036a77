/**
 * The look shared by the charts and the HTML page: one font stack, one palette, one Vega-Lite config.
 */
import type { Config } from 'vega-lite';

/**
 * System font stack (no web fonts: the report must open offline). Family names are unquoted on purpose:
 * resvg (PNG output) gives up on a list with quoted names, browsers accept both.
 */
export const FONT_STACK =
  'system-ui, -apple-system, Segoe UI, Roboto, Helvetica Neue, Noto Sans, DejaVu Sans, Liberation Sans, Arial, sans-serif';
export const MONO_STACK = 'ui-monospace, "SF Mono", "Cascadia Mono", Menlo, Consolas, "DejaVu Sans Mono", monospace';

export const COLORS = {
  text: '#1f2937',
  muted: '#6b7280',
  faint: '#9ca3af',
  grid: '#eceef2',
  domain: '#cfd4dc',
  primary: '#3867d6',
  /** The chosen window, wherever it appears. */
  accent: '#e8590c',
  neutralBar: '#a9b8d6',
  /** One colour per training run. */
  series: ['#3867d6', '#e8590c', '#2f9e44', '#ae3ec9', '#e03131', '#1098ad', '#f59f00', '#d6336c'],
};

/** Sequential scheme for the boundary-similarity heat map (perceptually uniform, readable in grey). */
export const HEATMAP_SCHEME = 'viridis';

export const VEGA_CONFIG: Config = {
  background: '#ffffff',
  padding: 8,
  font: FONT_STACK,
  view: { stroke: null },
  title: {
    anchor: 'start', fontSize: 15, fontWeight: 600, color: COLORS.text, offset: 12,
    subtitleColor: COLORS.muted, subtitleFontSize: 12, subtitlePadding: 4,
  },
  axis: {
    labelColor: COLORS.muted, labelFontSize: 11, titleColor: COLORS.text, titleFontSize: 12, titleFontWeight: 500,
    titlePadding: 10, gridColor: COLORS.grid, domainColor: COLORS.domain, tickColor: COLORS.domain,
  },
  legend: {
    labelColor: COLORS.muted, labelFontSize: 11, titleColor: COLORS.text, titleFontSize: 12, titleFontWeight: 500,
  },
  range: { category: COLORS.series },
};
