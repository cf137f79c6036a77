/**
 * The HTML report in a real browser: renders a realistic sample report (16-layer model, 13 windows, two 50-step
 * training runs, a comparison table) to a temporary file, opens it in headless Chromium (Debian `chromium`,
 * driven by playwright-core; no browser download) and checks that every section has its charts, that the page
 * logged no console error and requested nothing over the network, and takes a full-page screenshot.
 * Skips when /usr/bin/chromium is missing (scripts/setup-chromium.sh installs it).
 * STREAMLINE_UPDATE_SCREENSHOT=1 writes the sample's screenshot to docs/report-screenshot.png; the committed one is of
 * a real `streamline demo` report, taken with scripts/screenshot-report.mjs (same browser flags).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { renderReport } from '../packages/cli/src/report/index.js';
import { sampleReportData } from '../packages/cli/test/report-sample.js';

const CHROMIUM = process.env.STREAMLINE_CHROMIUM ?? '/usr/bin/chromium';
const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

if (!existsSync(CHROMIUM)) {
  console.log(`skip: ${CHROMIUM} not found (install it with scripts/setup-chromium.sh)`);
} else {
  test('sample report renders in headless Chromium with all charts and no console errors', async () => {
    const { chromium } = await import('playwright-core');
    const tmp = mkdtempSync(path.join(os.tmpdir(), 'streamline-report-'));
    try {
      const file = path.join(tmp, 'report.html');
      const data = sampleReportData(16);
      const tricky = 'runs/<demo> & "x"';
      data.manifest = { ...data.manifest, output: tricky };
      await writeFile(file, await renderReport(data));

      const context = await chromium.launchPersistentContext(path.join(tmp, 'profile'), {
        executablePath: CHROMIUM,
        headless: true,
        args: [
          '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
          '--disable-background-networking', '--disable-component-update', '--disable-sync',
        ],
        viewport: { width: 1280, height: 900 },
        deviceScaleFactor: 1,
      });
      try {
        const page = context.pages()[0] ?? (await context.newPage());
        const errors: string[] = [];
        const requests: string[] = [];
        page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') errors.push(`${m.type()}: ${m.text()}`); });
        page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
        page.on('request', (r) => { if (!r.url().startsWith('file:')) requests.push(r.url()); });
        await page.goto(pathToFileURL(file).href, { waitUntil: 'load' });

        assert.is(await page.title(), data.title);
        assert.is(await page.locator('h1').textContent(), data.title);
        const shown = await page.locator('#manifest table.kv td').allTextContents();
        assert.ok(shown.includes(tricky), 'user text is escaped and shown verbatim');
        const svgs = async (sel: string) => page.locator(`${sel} svg`).count();
        assert.is(await svgs('#scores'), 3, 'heat map, window scores and block influence');
        assert.is(await svgs('#training'), 1, 'training curves');
        assert.ok(await page.locator('#comparison table').count() === 1, 'comparison table');
        assert.ok(await page.locator('#manifest table.kv').count() === 1, 'manifest table');
        assert.is(await page.locator('#scores g.cells_marks > path').count(), 17 * 17, 'one heat-map cell per boundary pair');
        assert.is(await page.locator('#scores g.best_cell_marks > path').count(), 2, 'the chosen cell and its mirror');
        for (const box of await Promise.all((await page.locator('section svg').all()).map((l) => l.boundingBox()))) {
          assert.ok(box && box.width > 200 && box.height > 150, `chart drawn at a readable size: ${JSON.stringify(box)}`);
        }
        // Distinct ids across the inline charts (Vega numbers clip paths and gradients per chart).
        const ids = await page.evaluate(() => [...document.querySelectorAll('[id]')].map((e) => e.id));
        assert.is(new Set(ids).size, ids.length, 'element ids are unique');

        const shot = process.env.STREAMLINE_UPDATE_SCREENSHOT === '1'
          ? path.join(repoRoot, 'docs', 'report-screenshot.png') : path.join(tmp, 'report.png');
        await page.screenshot({ path: shot, fullPage: true });
        assert.ok(statSync(shot).size > 50_000, 'screenshot written');

        assert.equal(errors, [], 'no console errors or warnings');
        assert.equal(requests, [], 'no network requests: the report is self-contained');
      } finally {
        await context.close();
      }
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
}

test.run();
