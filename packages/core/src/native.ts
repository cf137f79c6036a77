/**
 * Loads the native addon (node-gyp-build: build/Release, then prebuilds/) and describes its raw exports.
 * Everything here is internal: the public API wraps these with validation and documentation.
 */
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** A tensor as the addon reads it: bytes, a dtype name and a shape. */
export interface NativeTensor {
  data: ArrayBufferView;
  dtype: string;
  shape: readonly number[];
}

/** Raw addon exports; binding files add functions here as they register them. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type NativeAddon = Record<string, any> & NativeScoring & NativeLinalg & {
  cpuInfo(): { avx2: boolean; avx512f: boolean; avx512bf16: boolean; amx: boolean; amxPermitted: boolean; detected: string; level: string; threads: number; blas: string };
  cudaInfo(): { compiled: boolean; loaded: boolean; deviceCount: number; runtimeVersion: number; deviceName: string; available: boolean; reason: string };
  mapFile(path: string): ArrayBuffer;
  convertFloats(dst: ArrayBufferView, dstDtype: string, src: ArrayBufferView, srcDtype: string): void;
  convertFloatsRef(dst: ArrayBufferView, dstDtype: string, src: ArrayBufferView, srcDtype: string): void;
  convertFloatsAsync(dst: ArrayBufferView, dstDtype: string, src: ArrayBufferView, srcDtype: string): Promise<void>;
};

let cached: NativeAddon | undefined;

/**
 * The addon, loaded once. STREAMLINE_NATIVE_PATH points at a specific `.node` file (tests, custom builds).
 * OpenBLAS 0.3.21 misdetects recent CPUs as Prescott and runs 5x slower; when the user has not chosen a core
 * type we pick one from what the CPU supports, before the library initialises.
 */
export function native(): NativeAddon {
  if (cached) return cached;
  if (process.env.OPENBLAS_CORETYPE === undefined) {
    const flags = cpuFlags();
    if (flags.has('avx512f') && flags.has('avx512bw')) process.env.OPENBLAS_CORETYPE = 'SkylakeX';
    else if (flags.has('avx2')) process.env.OPENBLAS_CORETYPE = 'Haswell';
  }
  const explicit = process.env.STREAMLINE_NATIVE_PATH;
  try {
    cached = (explicit ? require(path.resolve(explicit)) : require('node-gyp-build')(packageRoot)) as NativeAddon;
  } catch (e) {
    const err = new Error(
      `could not load the Streamline native addon: ${(e as Error).message}\n` +
        'Possible solutions:\n' +
        '- run `pnpm install` (it builds the addon) or `pnpm run build:native` in the repository;\n' +
        '- install a package version that ships a prebuilt binary for ' + `${process.platform}-${process.arch};\n` +
        '- set STREAMLINE_NATIVE_PATH to a built streamline.node.',
    );
    (err as Error & { code: string }).code = 'E_NATIVE_LOAD';
    throw err;
  }
  return cached;
}

function cpuFlags(): Set<string> {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const text: string = require('node:fs').readFileSync('/proc/cpuinfo', 'utf8');
    const line = text.split('\n').find((l) => l.startsWith('flags'));
    return new Set(line ? line.split(':')[1]!.trim().split(/\s+/) : []);
  } catch {
    return new Set();
  }
}

/** Fused cosine scoring (native/binding/binding_score.cpp). */
export interface NativeScoring {
  /** Adds [sum of cosines, tokens counted, zero-norm tokens] for one pair into out (Float64Array(3)). */
  cosineAccumulate(out: Float64Array, a: Float32Array, b: Float32Array, mask: Uint8Array | null, M: number, D: number, useRef?: boolean): void;
  /** The same for pairs (states[pairs[2p]], states[pairs[2p+1]]), off the JS thread; out has 3 values per pair. */
  cosinePairsAccumulate(out: Float64Array, states: Float32Array[], pairs: Int32Array, mask: Uint8Array | null, M: number, D: number): Promise<void>;
}

/** Least squares for the `linear` replacement (native/binding/binding_linalg.cpp). */
export interface NativeLinalg {
  /** XtX += XᵀX, XtY += XᵀY over unmasked rows, in f64. Async unless useRef (the plain reference, synchronous). */
  normalEquationsAccumulate(XtX: Float64Array, XtY: Float64Array, X: Float32Array, Y: Float32Array, mask: Uint8Array | null, M: number, D: number, E: number, useRef?: boolean): Promise<void> | void;
  /** Solves (XtX + ridge·I) T = XtY into T; rejects with E_LINEAR_SOLVE. */
  solveNormalEquations(T: Float32Array, XtX: Float64Array, XtY: Float64Array, D: number, E: number, ridge: number): Promise<void>;
  /** Wout[D,F] = Tᵀ · Win. */
  foldLeft(Wout: Float32Array, T: Float32Array, Win: NativeTensor, D: number, F: number): Promise<void>;
  /** Eout[V,D] = Ein · T. */
  foldRight(Eout: Float32Array, Ein: NativeTensor, T: Float32Array, V: number, D: number): Promise<void>;
}
