// writeFileAtomic: temp file in the same directory, then rename; nothing left behind on failure.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { writeFileAtomic } from '../src/ui/files.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'streamline-files-'));

test('writeFileAtomic: a path below a regular file fails with E_WRITE naming the file, no temp file left', async () => {
  const blocker = path.join(dir, 'blocker');
  writeFileSync(blocker, 'x');
  const target = path.join(blocker, 'report.html');
  try {
    await writeFileAtomic(target, 'y');
    assert.unreachable('should throw');
  } catch (e) {
    assert.is((e as { code?: string }).code, 'E_WRITE');
    assert.ok((e as Error).message.includes(target));
  }
  const ro = path.join(dir, 'target-is-dir');
  writeFileSync(path.join(dir, 'keep'), 'k');
  await writeFileAtomic(path.join(ro, 'inner'), 'z');
  try {
    await writeFileAtomic(ro, 'cannot replace a directory');
    assert.unreachable('should throw');
  } catch (e) {
    assert.is((e as { code?: string }).code, 'E_WRITE');
  }
  assert.equal(readdirSync(dir).filter((f) => f.endsWith('.tmp')), []);
});

test('writeFileAtomic: writes text and bytes, replaces, creates parent directories', async () => {
  const file = path.join(dir, 'a', 'b', 'report.html');
  await writeFileAtomic(file, '<p>one</p>');
  assert.is(readFileSync(file, 'utf8'), '<p>one</p>');
  await writeFileAtomic(file, new Uint8Array([0x89, 0x50, 0x4e, 0x47]));
  assert.equal([...readFileSync(file)], [0x89, 0x50, 0x4e, 0x47]);
  assert.equal(readdirSync(path.dirname(file)), ['report.html'], 'no temp file left');
});

test.after(() => rmSync(dir, { recursive: true, force: true }));
test.run();
