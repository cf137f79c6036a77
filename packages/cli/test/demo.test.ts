// `streamline demo --quick` end to end through the CLI on the bundled kjv-llama: scoring, pruning with every
// replacement kind, export, evaluation against the original, the JSON document and the report. This is the
// slowest test of the CLI (about half a minute on an idle 2-core machine: the real pipeline, only smaller);
// STREAMLINE_SKIP_DEMO_TEST=1 skips it. Also: demoPaths() finds the bundled files and names a missing one.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { isStreamlineError } from '@streamline/core';
import { demoPaths } from '../src/demo/paths.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

test('demoPaths: the bundled model and data exist; a missing demo folder is E_DEMO_MISSING', () => {
  const p = demoPaths();
  for (const f of [p.model, p.train, p.test, p.task]) assert.ok(existsSync(f), f);
  assert.ok(existsSync(path.join(p.model, 'README.md')), 'model card kept');
  assert.ok(existsSync(path.join(p.data, 'README.md')), 'data README kept');
  assert.throws(() => demoPaths(path.join(os.tmpdir(), 'no-such-demo')), (e: unknown) => isStreamlineError(e, 'E_DEMO_MISSING'));
});

if (process.env.STREAMLINE_SKIP_DEMO_TEST === '1') {
  console.log('skip: demo --quick (STREAMLINE_SKIP_DEMO_TEST=1)');
} else {
  test('demo --quick: a row per kind with finite perplexity, accuracy and stability; JSON and report written', () => {
    const tmp = mkdtempSync(path.join(os.tmpdir(), 'streamline-demo-test-'));
    try {
      const json = path.join(tmp, 'demo.json');
      const report = path.join(tmp, 'report.html');
      const r = spawnSync(process.execPath, [
        '--conditions=@streamline/source', '--import', 'tsx', path.join(repoRoot, 'packages/cli/src/bin.ts'),
        'demo', '--quick', '--out', tmp, '--json', json, '--report', report,
      ], { cwd: repoRoot, encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } });
      assert.is(r.status, 0, `demo failed:\n${r.stderr}\n${r.stdout}`);
      assert.ok(r.stderr.includes('takes about'), 'says up front how long it takes');
      for (const h of ['model', 'test PPL', 'acc_norm', 'stability', 'prune time', 'original']) assert.ok(r.stdout.includes(h), `table lacks "${h}":\n${r.stdout}`);

      const d = JSON.parse(readFileSync(json, 'utf8'));
      assert.equal(d.rows.map((row: { model: string }) => row.model), ['original', 'none', 'linear', 'mlp', 'layer']);
      for (const row of d.rows) {
        for (const k of ['ppl', 'acc', 'layers', 'parameters']) assert.ok(Number.isFinite(row[k]), `${row.model}.${k} = ${row[k]}`);
        assert.ok(row.ppl > 1, `${row.model} perplexity ${row.ppl}`);
        if (row.model !== 'original') {
          assert.ok(Number.isFinite(row.stability) && row.stability >= 0 && row.stability <= 1, `${row.model} stability ${row.stability}`);
          assert.ok(row.layers < 16 && row.parameters < d.rows[0].parameters, `${row.model} is smaller`);
          assert.ok(existsSync(path.join(tmp, row.model, 'config.json')) && existsSync(path.join(tmp, row.model, 'streamline.json')), `${row.model} exported`);
        }
      }
      assert.is(d.score.matrix.length, 17);
      assert.ok(d.runs.find((x: { kind: string }) => x.kind === 'layer').training.history.length > 0, 'training history kept');

      const html = readFileSync(report, 'utf8');
      for (const id of ['scores', 'training', 'comparison', 'manifest']) assert.ok(html.includes(`<section id="${id}">`), `report section ${id}`);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
}

test.run();
