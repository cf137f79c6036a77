/**
 * The report's inline stylesheet: a light theme on the system font stack, cards, aligned numeric tables.
 * No external URLs (the page must open offline) and no script.
 */
import { COLORS, MONO_STACK } from './theme.js';

const CSS_FONT_STACK =
  'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", "Noto Sans", "DejaVu Sans", Arial, sans-serif';

export const REPORT_CSS = `
:root {
  --bg: #f5f6f8; --card: #ffffff; --text: ${COLORS.text}; --muted: ${COLORS.muted}; --faint: ${COLORS.faint};
  --border: #e3e6eb; --rule: #eef0f3; --accent: ${COLORS.accent}; --accent-bg: #fff4e6; --primary: ${COLORS.primary};
  --mono: ${MONO_STACK};
}
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body { margin: 0; background: var(--bg); color: var(--text); font: 15px/1.55 ${CSS_FONT_STACK}; }
code, pre, .mono { font-family: var(--mono); font-size: 0.9em; }
a { color: var(--primary); text-decoration: none; }
a:hover { text-decoration: underline; }

.top { background: var(--card); border-bottom: 1px solid var(--border); }
.wrap { max-width: 1200px; margin: 0 auto; padding: 0 28px; }
.top .wrap { padding-top: 28px; padding-bottom: 0; }
.eyebrow { font-size: 12px; font-weight: 600; letter-spacing: .08em; text-transform: uppercase; color: var(--muted); }
.eyebrow .dot { color: var(--faint); padding: 0 6px; }
h1 { font-size: 28px; line-height: 1.25; margin: 6px 0 10px; font-weight: 700; letter-spacing: -0.01em; }
.cmd { display: inline-block; max-width: 100%; overflow-x: auto; white-space: pre; background: #f3f4f7;
  border: 1px solid var(--border); border-radius: 6px; padding: 6px 10px; color: #374151; }
.when { color: var(--muted); font-size: 13px; margin: 10px 0 0; }
nav.toc { display: flex; gap: 4px; margin-top: 18px; flex-wrap: wrap; }
nav.toc a { color: var(--muted); font-size: 14px; font-weight: 500; padding: 8px 12px; border-bottom: 2px solid transparent; }
nav.toc a:hover { color: var(--text); border-bottom-color: var(--border); text-decoration: none; }

main.wrap { padding-top: 28px; padding-bottom: 56px; }
section { margin: 0 0 40px; scroll-margin-top: 16px; }
h2 { font-size: 20px; margin: 0 0 4px; font-weight: 650; }
.lead { color: var(--muted); margin: 0 0 18px; max-width: 80ch; }
h3 { font-size: 15px; margin: 0 0 12px; font-weight: 600; }

.stats { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: 12px; margin: 24px 0 28px; }
.stat { background: var(--card); border: 1px solid var(--border); border-radius: 10px; padding: 12px 16px; }
.stat .k { font-size: 12px; color: var(--muted); text-transform: uppercase; letter-spacing: .05em; }
.stat .v { font-size: 20px; font-weight: 650; margin-top: 2px; font-variant-numeric: tabular-nums;
  overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.stat .s { font-size: 12px; color: var(--muted); }
.stat.hl { border-color: #ffc078; background: var(--accent-bg); }
.stat.hl .v { color: var(--accent); }

.card { background: var(--card); border: 1px solid var(--border); border-radius: 12px; padding: 20px 22px;
  box-shadow: 0 1px 2px rgba(16, 24, 40, .04); min-width: 0; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(460px, 1fr)); gap: 20px; align-items: start; }
.stack > * + * { margin-top: 20px; }
.hero-grid { grid-template-columns: minmax(0, 640px) minmax(340px, 1fr); }
@media (max-width: 1100px) { .hero-grid { grid-template-columns: 1fr; } }
.chart { overflow-x: auto; }
.chart svg { display: block; max-width: 100%; height: auto; margin: 0 0 0 -8px; }
.chart-missing { color: var(--muted); font-style: italic; padding: 24px; text-align: center; border: 1px dashed var(--border); border-radius: 8px; }
.caption { color: var(--muted); font-size: 13px; margin: 10px 0 0; }

table { border-collapse: collapse; width: 100%; font-size: 14px; }
.table-wrap { overflow-x: auto; }
th, td { padding: 8px 12px; text-align: left; vertical-align: top; }
thead th { font-size: 12px; font-weight: 600; color: var(--muted); text-transform: uppercase; letter-spacing: .04em;
  border-bottom: 1px solid var(--border); white-space: nowrap; }
tbody td { border-bottom: 1px solid var(--rule); }
tbody tr:last-child td { border-bottom: 0; }
tbody tr:hover td { background: #fafbfc; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.label { font-weight: 500; }
td.null { color: var(--faint); }
tr.best td { background: var(--accent-bg); }
tr.best td:first-child { box-shadow: inset 3px 0 0 var(--accent); }
.pill { display: inline-block; font-size: 12px; font-weight: 600; color: var(--accent); background: var(--accent-bg);
  border: 1px solid #ffc078; border-radius: 999px; padding: 0 8px; margin-left: 6px; }
table.kv th { width: 30%; font-size: 13px; font-weight: 500; color: var(--muted); text-transform: none; letter-spacing: 0;
  border-bottom: 1px solid var(--rule); white-space: normal; }
table.kv td { word-break: break-word; }
table.kv td.mono { font-size: 13px; }
.notes { color: var(--muted); font-size: 13px; margin: 12px 0 0; padding-left: 18px; }

details { margin-top: 14px; }
details > summary { cursor: pointer; color: var(--primary); font-weight: 500; font-size: 14px; }
details[open] > summary { margin-bottom: 10px; }
pre.json { background: #f8f9fb; border: 1px solid var(--border); border-radius: 8px; padding: 14px 16px; margin: 0;
  max-height: 520px; overflow: auto; font-size: 12.5px; line-height: 1.5; }

footer { color: var(--faint); font-size: 12px; border-top: 1px solid var(--border); padding-top: 16px; }

@media (max-width: 560px) {
  .wrap { padding: 0 16px; }
  .grid { grid-template-columns: 1fr; }
  h1 { font-size: 22px; }
}
@media print {
  body { background: #fff; }
  .top { border: 0; }
  nav.toc { display: none; }
  .card, .stat { box-shadow: none; break-inside: avoid; }
  details > pre.json { max-height: none; }
}
`;
