/**
 * Output files of the CLI (reports, plots, JSON): written atomically, so a reader or an interrupted run never
 * sees a half-written file.
 */
import { existsSync, statSync } from 'node:fs';
import { mkdir, open, rename, unlink } from 'node:fs/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { folderProblem, nearestExisting, StreamlineError } from '@streamline/core';

/**
 * Writes `content` to `file` through a temporary file in the same directory (same file system) that is flushed
 * and then renamed over the target. Creates missing parent directories. The temporary file is removed on failure.
 * @throws StreamlineError E_WRITE naming the file when the directory cannot be created or the file written.
 * @example await writeFileAtomic('runs/demo/report.html', html);
 */
export async function writeFileAtomic(file: string, content: string | Uint8Array): Promise<void> {
  const target = path.resolve(file);
  const dir = path.dirname(target);
  const tmp = path.join(dir, `.${path.basename(target)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    await mkdir(dir, { recursive: true });
    const handle = await open(tmp, 'wx', 0o644);
    try {
      await handle.writeFile(content);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, target);
  } catch (e) {
    await unlink(tmp).catch(() => {});
    const reason = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
    throw new StreamlineError('E_WRITE', `could not write ${file}: ${reason}`, { file, cause: e });
  }
}

/**
 * Checks, before any long work, that each output file can be written later: the file is not a folder, and its nearest
 * existing parent is a writable folder (writeFileAtomic creates the missing ones). A plot must end in .svg or .png.
 * Without it, `--json /dev/full/x` or a misspelt `--plot x.jpg` failed only after scoring or hours of training.
 * @throws StreamlineError E_WRITE naming the option and the file; E_PLOT_FORMAT for a plot of another kind.
 */
export function checkOutputFiles(files: Record<string, string | undefined>): void {
  for (const [flag, file] of Object.entries(files)) {
    if (!file) continue;
    if (flag === '--plot' && !/\.(svg|png)$/i.test(file)) throw new StreamlineError('E_PLOT_FORMAT', `plot file ${file} must end in .svg or .png`, { file });
    const target = path.resolve(file);
    const fail = (why: string): never => { throw new StreamlineError('E_WRITE', `${flag} ${file} cannot be written: ${why}`, { file }); };
    if (existsSync(target) && statSync(target).isDirectory()) fail('it is a folder');
    const problem = folderProblem(nearestExisting(path.dirname(target)));
    if (problem) fail(problem.why);
  }
}
