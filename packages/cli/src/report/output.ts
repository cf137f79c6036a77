/**
 * Writing a chart where the user asked for it (`--plot FILE`): the extension picks the format.
 */
import path from 'node:path';
import { StreamlineError } from '@streamline/core';
import { writeFileAtomic } from '../ui/files.js';
import { svgToPng, type PngOptions } from './png.js';

/**
 * Writes `svg` to `file` as SVG (`.svg`) or PNG (`.png`, rendered with resvg), atomically.
 * @returns the format written.
 * @throws StreamlineError E_PLOT_FORMAT for another extension (the message names the option value);
 *   E_PNG_UNAVAILABLE / E_PNG_RENDER from {@link svgToPng}; E_WRITE from writeFileAtomic.
 * @example await writeChart(opts.plot, await heatmapSvg({ matrix, best }));
 */
export async function writeChart(file: string, svg: string, png: PngOptions = {}): Promise<'svg' | 'png'> {
  const ext = path.extname(file).toLowerCase();
  if (ext === '.svg') {
    await writeFileAtomic(file, svg);
    return 'svg';
  }
  if (ext === '.png') {
    await writeFileAtomic(file, await svgToPng(svg, png));
    return 'png';
  }
  throw new StreamlineError('E_PLOT_FORMAT', `plot file ${file} must end in .svg or .png`, { file });
}
