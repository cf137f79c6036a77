// Killing `streamline prune` (SIGKILL) at random points while it exports never leaves a directory at the
// output path that looks finished; rerunning succeeds (and removes the interrupted run's temporary directory).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { inspect } from '../packages/core/src/index.js';
import { kjvData, kjvModel, repoRoot, skipWithoutShared } from './_shared.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function runPrune(out: string) {
  return spawn(process.execPath, ['--conditions=@streamline/source', '--import', 'tsx', path.join(repoRoot, 'packages/cli/src/bin.ts'),
    'prune', kjvModel, '-o', out, '--replacement', 'none', '--range', '4:8', '--calib', path.join(kjvData, 'validation.jsonl'),
    '--samples', '2', '--train-samples', '2', '--seq-len', '64', '-q'], { stdio: 'ignore' });
}

if (!skipWithoutShared('export-kill.test.ts')) {
  test('SIGKILL during export never leaves a complete-looking output; rerun succeeds', async () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'streamline-kill-'));
    const out = path.join(tmp, 'pruned');
    let killedDuringExport = 0;
    for (const delay of [0, 15, 40, 80, 160]) {
      const child = runPrune(out);
      const exited = new Promise<void>((r) => child.on('exit', () => r()));
      // Wait for the export's temporary directory, then kill after `delay` ms.
      let seen = false;
      for (let i = 0; i < 6000 && child.exitCode === null; i++) {
        if (fs.readdirSync(tmp).some((n) => n.startsWith('.pruned.streamline-tmp-'))) { seen = true; break; }
        await sleep(5);
      }
      await sleep(delay);
      child.kill('SIGKILL');
      await exited;
      if (seen) killedDuringExport++;
      if (fs.existsSync(out)) {
        // The rename is the last step: whatever is at the output path is complete.
        assert.ok(fs.existsSync(path.join(out, 'streamline.json')), 'an output without its manifest');
        const r = inspect(out);
        assert.ok(r.kind === 'model' && r.valid, 'the output at the final path is complete');
        fs.rmSync(out, { recursive: true });
      }
    }
    assert.ok(killedDuringExport >= 3, `only ${killedDuringExport} kills landed during the export`);
    const child = runPrune(out);
    const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
    assert.is(code, 0);
    const r = inspect(out);
    assert.ok(r.kind === 'model' && r.valid && r.layers === 12);
    assert.equal(fs.readdirSync(tmp).filter((n) => n.includes('streamline-tmp')), [], 'stale temporary directories removed');
    fs.rmSync(tmp, { recursive: true, force: true });
  });
}

test.run();
