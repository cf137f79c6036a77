/**
 * Option parsing shared by the commands: one message shape for bad values ("--flag expects …, got …"), thrown as
 * StreamlineError E_INVALID_OPTION so main() prints `error [E_INVALID_OPTION]: …` and exits non-zero.
 */
import { Option } from 'commander';
import { DEVICE_OPTIONS, resolveDevice, StreamlineError, type DeviceOption, type ResolvedDevice } from '@streamline/core';
import { note } from './progress.js';

export function bad(message: string): never {
  throw new StreamlineError('E_INVALID_OPTION', message);
}

/** Parser for an integer option ≥ min. */
export function intOption(flag: string, min: number) {
  return (v: string): number => {
    if (!/^\d+$/.test(v.trim())) bad(`${flag} expects an integer ≥ ${min}, got "${v}"`);
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n < min) bad(`${flag} expects an integer ≥ ${min}, got "${v}"`);
    return n;
  };
}

/** Parser for a number in the open interval (lo, hi). */
export function fractionOption(flag: string, lo = 0, hi = 1) {
  return (v: string): number => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n) || n <= lo || n >= hi) bad(`${flag} expects a number in (${lo}, ${hi}), got "${v}"`);
    return n;
  };
}

/** Parser for a positive number. */
export function positiveOption(flag: string, allowZero = false) {
  return (v: string): number => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n) || n < 0 || (!allowZero && n === 0)) bad(`${flag} expects a ${allowZero ? 'non-negative' : 'positive'} number, got "${v}"`);
    return n;
  };
}

/** Parser for START:END (0-based, half-open). */
export function rangeOption(flag: string) {
  return (v: string): { start: number; end: number } => {
    const m = /^\s*(\d+)\s*:\s*(\d+)\s*$/.exec(v);
    if (!m) bad(`${flag} expects START:END (0-based, half-open, e.g. 20:28), got "${v}"`);
    const start = Number(m[1]), end = Number(m[2]);
    if (end <= start) bad(`${flag} expects START < END, got "${v}"`);
    return { start, end };
  };
}

/** Parser for a byte size: 512M, 8G, 1.5GiB, or a plain number of bytes. */
export function bytesOption(flag: string) {
  return (v: string): number => {
    const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?\s*$/i.exec(v);
    if (!m) bad(`${flag} expects a size such as 512M or 8G, got "${v}"`);
    const mult = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g' | 't']!;
    return Math.floor(Number(m[1]) * mult);
  };
}

/** `--device <auto|cpu|cuda>` for the commands that run forward passes (a bad value is E_INVALID_OPTION). */
export function deviceOption(): Option {
  return new Option('--device <device>', 'where the forward passes (and prune\'s mse training) run: auto (CUDA when a GPU, its driver and cuBLASLt are usable, else the CPU), cpu, or cuda (falls back to the CPU with a warning naming what is missing, or why this model cannot run there: Qwen3 q/k norm or Gemma 3 post norms on a backend library built before them)')
    .argParser((v: string): DeviceOption => {
      if (!(DEVICE_OPTIONS as readonly string[]).includes(v)) bad(`--device expects auto, cpu or cuda, got "${v}"`);
      return v as DeviceOption;
    })
    .default('auto');
}

/**
 * Resolves --device once per command. A fallback from `cuda` prints a warning (even with --quiet: the user asked for
 * the GPU); from `auto` an info line, shown only on a terminal without --quiet. `modelUnsupported` (core's
 * cudaUnsupported) is why the CUDA backend cannot run the loaded model (Qwen3's q/k norm or Gemma 3's post norms on a library built before them), so
 * the one message names it.
 */
export function commandDevice(requested: DeviceOption, quiet?: boolean, modelUnsupported: string | null = null): ResolvedDevice {
  return resolveDevice(requested, (m) => {
    if (m.level === 'warning') note(`warning: ${m.message}`);
    else if (!quiet && process.stderr.isTTY) note(m.message);
  }, modelUnsupported);
}
