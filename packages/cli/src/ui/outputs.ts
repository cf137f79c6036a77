/**
 * The optional output files of a command (--json, --plot, --report), each written atomically
 * (temporary name + rename) so a failed run never leaves half a file.
 */
import fs from 'node:fs';
import path from 'node:path';
import { StreamlineError } from '@streamline/core';

export interface OutputContent {
  json?: () => string;
  /** Score data for the heat map and the report's score section. */
  score?: Record<string, unknown>;
  training?: Record<string, unknown>;
  comparison?: Record<string, unknown>;
  title: string;
  command: string;
  createdAt: string;
  manifest: Record<string, unknown>;
}

export function writeAtomic(file: string, content: string | Uint8Array): void {
  const dir = path.dirname(path.resolve(file));
  if (!fs.existsSync(dir)) throw new StreamlineError('E_OUTPUT', `cannot write ${file}: folder ${dir} does not exist`);
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.tmp`);
  fs.writeFileSync(tmp, content);
  fs.renameSync(tmp, file);
}

export async function writeOutputs(files: { json?: string | undefined; plot?: string | undefined; report?: string | undefined }, c: OutputContent): Promise<void> {
  if (files.json && c.json) writeAtomic(files.json, c.json());
  if (files.plot || files.report) throw new StreamlineError('E_UNAVAILABLE', '--plot and --report are not available in this build yet');
}
