/**
 * SVG → PNG with resvg (Rust, prebuilt binary shipped in the npm package; no browser, no system libraries).
 * Loaded on first use: where the binary is unavailable, only PNG output fails, with E_PNG_UNAVAILABLE.
 */
import { StreamlineError } from '@streamline/core';

type ResvgModule = typeof import('@resvg/resvg-js');
let resvg: Promise<ResvgModule> | undefined;

async function load(): Promise<ResvgModule> {
  resvg ??= import('@resvg/resvg-js');
  try {
    return await resvg;
  } catch (e) {
    resvg = undefined;
    throw new StreamlineError(
      'E_PNG_UNAVAILABLE',
      `PNG output needs @resvg/resvg-js with a prebuilt binary for ${process.platform}-${process.arch}, `
        + `which could not be loaded (${(e as Error).message.split('\n')[0]}); write an .svg file instead`,
      { cause: e },
    );
  }
}

/** A sans-serif family likely present on this platform, used where the SVG's font list matches nothing. */
function platformSans(): string {
  if (process.platform === 'darwin') return 'Helvetica';
  if (process.platform === 'win32') return 'Arial';
  return 'DejaVu Sans';
}

/** Options of {@link svgToPng}. */
export interface PngOptions {
  /** Pixel density: 2 (default) draws each SVG pixel as 2×2 device pixels. Range (0, 8]. */
  scale?: number;
  /** Background colour (default: the SVG's own, or transparent). */
  background?: string;
  /** Use the system's fonts (default true; false renders no text, as on a machine without fonts). */
  systemFonts?: boolean;
}

/** True when PNG output works here (the resvg binary loads). */
export async function pngAvailable(): Promise<boolean> {
  try {
    await load();
    return true;
  } catch {
    return false;
  }
}

/**
 * Rasterises an SVG document to PNG bytes, with the system's fonts. On a machine without fonts the text is left
 * out (no error); install one (Debian: fonts-dejavu-core) to get labels.
 * @throws StreamlineError E_PNG_UNAVAILABLE when the resvg binary cannot be loaded on this platform;
 *   E_PNG_RENDER when the SVG cannot be parsed; E_PNG_OPTIONS for a scale outside (0, 8].
 * @example writeFileAtomic('plot.png', await svgToPng(await heatmapSvg({ matrix })));
 */
export async function svgToPng(svg: string, opts: PngOptions = {}): Promise<Uint8Array> {
  const scale = opts.scale ?? 2;
  if (!(Number.isFinite(scale) && scale > 0 && scale <= 8)) {
    throw new StreamlineError('E_PNG_OPTIONS', `PNG scale must be a number in (0, 8], got ${scale}`);
  }
  const { Resvg } = await load();
  try {
    const family = platformSans();
    const r = new Resvg(svg, {
      fitTo: { mode: 'zoom', value: scale },
      font: { loadSystemFonts: opts.systemFonts ?? true, defaultFontFamily: family, sansSerifFamily: family },
      logLevel: 'off',
      ...(opts.background ? { background: opts.background } : {}),
    });
    return new Uint8Array(r.render().asPng());
  } catch (e) {
    throw new StreamlineError('E_PNG_RENDER', `could not render the SVG to PNG: ${(e as Error).message}`, { cause: e });
  }
}
