// Fuzz: 1,200 mutated files (byte flips, truncations, header-length edits, appended/dropped bytes, spliced JSON,
// crafted hostile headers; seeded) through the in-memory reader, and 150 through real files and mmap. Each must
// give a StreamlineError with a known code or a read whose tensors all lie inside the file.
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { openSafetensors } from '../src/index.js';
import { checkCase, fuzzCase } from './_fuzz-corpus.js';
import { tmpDir } from './_helpers.js';

test('1,200 mutated files in memory: typed error or in-bounds read', () => {
  const outcomes = new Map<string, number>();
  for (let i = 0; i < 1200; i++) {
    const code = checkCase(fuzzCase(1, i), `case-${i}`);
    outcomes.set(code, (outcomes.get(code) ?? 0) + 1);
  }
  // The corpus must exercise both outcomes and most error codes, or it is not testing much.
  assert.ok((outcomes.get('ok') ?? 0) > 50, `some cases still read: ${JSON.stringify([...outcomes])}`);
  assert.ok(outcomes.size >= 9, `codes seen: ${JSON.stringify([...outcomes])}`);
});

test('150 mutated files on disk through mmap', () => {
  const dir = tmpDir('fuzz');
  try {
    for (let i = 0; i < 150; i++) {
      const file = path.join(dir, `c${i}.safetensors`);
      fs.writeFileSync(file, fuzzCase(2, i));
      checkCase(fs.readFileSync(file), file, () => openSafetensors(file));
    }
  } finally {
    fs.rmSync(dir, { recursive: true });
  }
});

test.run();
