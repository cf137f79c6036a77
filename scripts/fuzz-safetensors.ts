// Runs N fuzz cases (default 100, seed 3) through the memory-mapped safetensors reader and the native float
// conversion, writing each case to a temporary file. Used by scripts/fuzz-valgrind.sh; prints a summary line.
// Usage: node --conditions=@streamline/source --import tsx scripts/fuzz-safetensors.ts [cases] [seed]
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openSafetensors } from '../packages/core/src/index.js';
import { checkCase, fuzzCase } from '../packages/core/test/_fuzz-corpus.js';

const cases = Number(process.argv[2] ?? 100), seed = Number(process.argv[3] ?? 3);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'streamline-fuzz-'));
const outcomes: Record<string, number> = {};
try {
  for (let i = 0; i < cases; i++) {
    const file = path.join(dir, `case-${i}.safetensors`);
    fs.writeFileSync(file, fuzzCase(seed, i));
    const code = checkCase(fs.readFileSync(file), file, () => openSafetensors(file));
    outcomes[code] = (outcomes[code] ?? 0) + 1;
  }
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
console.log(`fuzz: ${cases} cases, seed ${seed}: ${JSON.stringify(outcomes)}`);
