/**
 * Presentation of computed results: charts (SVG via Vega-Lite), PNG (resvg) and the self-contained HTML report.
 * No maths of the method lives here; the data arrives computed.
 */
export { heatmapSvg, windowScoresSvg, trainingCurvesSvg, blockInfluenceSvg } from './charts.js';
export type { HeatmapOptions, WindowScoresOptions, TrainingCurvesOptions, BlockInfluenceOptions } from './charts.js';
export { svgToPng, pngAvailable } from './png.js';
export type { PngOptions } from './png.js';
export { writeChart } from './output.js';
export { renderReport } from './report.js';
export type { RenderReportOptions } from './report.js';
export { escapeHtml, formatNumber, formatRange } from './format.js';
export type {
  ReportData, ScoreData, ScoreMetric, WindowScore, TrainingData, TrainingRun, TrainingStep, ComparisonData,
} from './types.js';
