/**
 * The optional output files of a command (--json, --plot, --report), each written atomically (temporary name +
 * rename) so a failed run never leaves half a file. Charts and the report come from ../report.
 */
import type { ComparisonData, ReportData, ScoreData, TrainingData } from '../report/types.js';
import { writeFileAtomic } from './files.js';

export interface OutputContent {
  json?: () => string;
  score?: ScoreData;
  training?: TrainingData;
  comparison?: ComparisonData;
  title: string;
  command: string;
  createdAt: string;
  manifest: Record<string, unknown>;
}

export async function writeOutputs(files: { json?: string | undefined; plot?: string | undefined; report?: string | undefined }, c: OutputContent): Promise<void> {
  if (files.json && c.json) await writeFileAtomic(files.json, c.json());
  if (files.plot && c.score) {
    const { heatmapSvg, writeChart } = await import('../report/index.js');
    const svg = await heatmapSvg({ matrix: c.score.matrix, ...(c.score.best ? { best: c.score.best } : {}), title: `Boundary similarity — ${c.score.model}` });
    await writeChart(files.plot, svg);
  }
  if (files.report) {
    const { renderReport } = await import('../report/index.js');
    const { VERSION } = await import('../version.js');
    const data: ReportData = {
      title: c.title, command: c.command, createdAt: c.createdAt, tool: { name: 'streamline', version: VERSION }, manifest: c.manifest,
      ...(c.score ? { score: c.score } : {}), ...(c.training ? { training: c.training } : {}), ...(c.comparison ? { comparison: c.comparison } : {}),
    };
    await writeFileAtomic(files.report, await renderReport(data));
  }
}

/** The command line as the user typed it (`streamline <args>`), for reports; arguments with spaces are quoted. */
export function commandLine(argv: readonly string[] = process.argv): string {
  return ['streamline', ...argv.slice(2).map((a) => (/[\s"'$`\\]/.test(a) ? `'${a.replace(/'/g, `'\\''`)}'` : a))].join(' ');
}
