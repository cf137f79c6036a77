#!/usr/bin/env node
// Full-page screenshot of an HTML report in headless Chromium (Debian `chromium`, driven by playwright-core, the
// same flags as test/report-chromium.test.ts), and a check that it rendered: charts present, no console errors,
// no network requests. docs/report-screenshot.png is made this way from a real demo report:
//   node packages/cli/dist/bin.js demo --quick --report /tmp/demo-report.html
//   node scripts/screenshot-report.mjs /tmp/demo-report.html docs/report-screenshot.png
// Usage: node scripts/screenshot-report.mjs REPORT.html OUT.png [--width 1280]
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';

const args = process.argv.slice(2);
const [report, out] = args.filter((a, i) => !a.startsWith('--') && args[i - 1] !== '--width');
const width = Number(args[args.indexOf('--width') + 1]) || 1280;
if (!report || !out) { console.error('usage: node scripts/screenshot-report.mjs REPORT.html OUT.png [--width 1280]'); process.exit(2); }
const CHROMIUM = process.env.STREAMLINE_CHROMIUM ?? '/usr/bin/chromium';
if (!existsSync(CHROMIUM)) { console.error(`${CHROMIUM} not found (bash scripts/setup-chromium.sh installs it)`); process.exit(2); }

const profile = mkdtempSync(path.join(os.tmpdir(), 'streamline-shot-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: CHROMIUM,
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  viewport: { width, height: 900 },
  deviceScaleFactor: 1,
});
let failed = false;
try {
  const page = context.pages()[0] ?? (await context.newPage());
  const errors = [];
  const requests = [];
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') errors.push(`${m.type()}: ${m.text()}`); });
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  page.on('request', (r) => { if (!r.url().startsWith('file:')) requests.push(r.url()); });
  await page.goto(pathToFileURL(path.resolve(report)).href, { waitUntil: 'load' });
  const count = async (sel) => page.locator(sel).count();
  const summary = {
    scoreCharts: await count('#scores svg'),
    heatmapCells: await count('#scores g.cells_marks > path'),
    trainingCharts: await count('#training svg'),
    comparisonTables: await count('#comparison table'),
  };
  await page.screenshot({ path: out, fullPage: true });
  console.log(`wrote ${out}: ${JSON.stringify(summary)}`);
  if (errors.length || requests.length) {
    console.error(`console errors: ${JSON.stringify(errors)}; network requests: ${JSON.stringify(requests)}`);
    failed = true;
  }
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
