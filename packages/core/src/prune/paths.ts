/**
 * The places a prune run writes, checked before any work: the output folder (export.ts checkOutput), the training
 * checkpoint, the pair cache and the training log. A bad path must fail in seconds, not after hours of scoring and
 * training, and nothing may delete or overwrite the source model, the data being read, or an unrelated file.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { DeviceMessage } from '../device.js';
import { StreamlineError } from '../errors.js';
import { folderProblem, isInside, nearestExisting } from '../fs-paths.js';
import { isTrainCheckpoint } from '../train/trainer.js';
import { checkOutput } from './export.js';

/** What checkRunPaths looks at (a subset of PruneOptions). */
export interface RunPaths {
  outDir: string;
  force?: boolean;
  calib?: string;
  trainData?: string;
  logFile?: string;
  checkpointFile?: string;
  cacheDir?: string;
  resume?: boolean;
  onLog?: (m: DeviceMessage) => void;
}

/** `p` resolved, with the symlinks of its nearest existing ancestor resolved too (the path itself may not exist yet). */
function realish(p: string): string {
  const existing = nearestExisting(p);
  return path.join(fs.realpathSync(existing), path.relative(existing, path.resolve(p)));
}

/**
 * @throws StreamlineError E_OUTPUT, E_OUTPUT_EXISTS, E_OUTPUT_INSIDE_SOURCE (checkOutput, and the data or the
 *   checkpoint/cache inside the source), E_INVALID_OPTION (log, checkpoint or cache inside the output), E_CHECKPOINT.
 */
export function checkRunPaths(source: string, o: RunPaths): void {
  checkOutput(source, o.outDir, o.force ?? false);
  const out = realish(o.outDir), src = fs.realpathSync(source);
  // The export replaces the output folder as a whole: it must not hold the data this run reads.
  for (const [flag, data] of [['--calib', o.calib], ['--train-data', o.trainData]] as const) {
    if (data && fs.existsSync(data) && isInside(out, fs.realpathSync(data)))
      throw new StreamlineError('E_OUTPUT_EXISTS', `output ${o.outDir} holds the ${flag} data ${data}, which replacing it would delete; choose another output folder`);
  }
  // Files written during training would make the output folder non-empty (the export then refused it) or be
  // deleted with it; --json and --report are written after the export and may go there.
  for (const [flag, file] of [['--log', o.logFile], ['--checkpoint', o.checkpointFile], ['--cache-dir', o.cacheDir]] as const) {
    if (!file) continue;
    if (isInside(out, realish(file)))
      throw new StreamlineError('E_INVALID_OPTION', `${flag} ${file} is inside the output folder ${o.outDir}, which the export replaces; put it next to the output instead`);
    if (flag !== '--log' && isInside(src, realish(file)))
      throw new StreamlineError('E_OUTPUT_INSIDE_SOURCE', `${flag === '--checkpoint' ? 'training checkpoint' : '--cache-dir'} ${file} is inside the source model directory ${source}; choose another place`, { file });
  }
  if (o.checkpointFile) checkCheckpointFile(o.checkpointFile, o.resume === true, o.onLog);
  if (o.cacheDir) checkCacheDir(o.cacheDir);
}

/**
 * The checkpoint is written over on Ctrl-C and removed after a finished run, so it must not be some other file
 * (a typo such as the model's tokenizer.json was deleted).
 */
function checkCheckpointFile(file: string, resume: boolean, onLog?: (m: DeviceMessage) => void): void {
  if (fs.existsSync(file)) {
    if (!isTrainCheckpoint(file))
      throw new StreamlineError('E_CHECKPOINT', `${file} exists and is not a Streamline training checkpoint; it would be overwritten on Ctrl-C and removed after training. Choose another --checkpoint`, { file });
  } else if (resume) {
    onLog?.({ level: 'warning', message: `--resume: no checkpoint at ${file}; training starts from the beginning` });
  }
}

/** The pair cache may spill there during training: its nearest existing folder must be a writable folder. */
function checkCacheDir(dir: string): void {
  const problem = folderProblem(nearestExisting(dir));
  if (problem) throw new StreamlineError('E_OUTPUT', `--cache-dir ${dir}: ${problem.why}`, { file: dir, ...(problem.cause ? { cause: problem.cause } : {}) });
}
