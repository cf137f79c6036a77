/**
 * Where the bundled demo model and data live: `demo/` at the root of the @streamline/cli package (next to
 * `src/` in a clone, next to `dist/` in the published package), found relative to this module.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { StreamlineError } from '@streamline/core';

/** Absolute paths of the bundled demo files. */
export interface DemoPaths {
  /** The `demo/` folder. */
  root: string;
  /** kjv-llama: a 16-layer Llama model directory (config.json, model.safetensors, tokenizer.json). */
  model: string;
  /** The KJV data folder (README.md, train/validation/test.jsonl). */
  data: string;
  /** Training chapters, one `{"text": …}` per line. */
  train: string;
  validation: string;
  test: string;
  /** The `kjv-verse-endings` multiple-choice task (500 items, `{context, choices, gold}`). */
  task: string;
}

/**
 * Resolves the bundled demo files relative to the package (works from `src/` under tsx and from `dist/`).
 * @param root the `demo/` folder; default: the package's own.
 * @throws StreamlineError E_DEMO_MISSING naming the first missing file.
 * @example const { model, train } = demoPaths(); // …/packages/cli/demo/kjv-llama, …/demo/kjv/train.jsonl
 */
export function demoPaths(root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'demo')): DemoPaths {
  const data = path.join(root, 'kjv');
  const p: DemoPaths = {
    root,
    model: path.join(root, 'kjv-llama'),
    data,
    train: path.join(data, 'train.jsonl'),
    validation: path.join(data, 'validation.jsonl'),
    test: path.join(data, 'test.jsonl'),
    task: path.join(data, 'kjv-verse-endings', 'test.jsonl'),
  };
  for (const f of [path.join(p.model, 'config.json'), path.join(p.model, 'model.safetensors'), path.join(p.model, 'tokenizer.json'), p.train, p.test, p.task]) {
    if (!existsSync(f)) {
      throw new StreamlineError('E_DEMO_MISSING', `the bundled demo file ${f} is missing; reinstall @streamline/cli or restore packages/cli/demo/ from git`, { file: f });
    }
  }
  return p;
}
