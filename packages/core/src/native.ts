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

/** Activation names the backward kernels take (also 0..3 in this order). */
export type NativeActivation = 'silu' | 'relu' | 'gelu' | 'gelu_tanh';

/** One AdamW step as torch.optim.AdamW takes it; `step` is 1-based (the step being taken). */
export interface NativeAdamWOptions {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  step: number;
}

/** Raw addon exports; binding files add functions here as they register them. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type NativeAddon = Record<string, any> & {
  cpuInfo(): { avx2: boolean; avx512f: boolean; avx512bf16: boolean; amx: boolean; amxPermitted: boolean; detected: string; level: string; threads: number; blas: string };
  cudaInfo(): { compiled: boolean; loaded: boolean; deviceCount: number; runtimeVersion: number; deviceName: string; available: boolean; reason: string };
  mapFile(path: string): ArrayBuffer;
  convertFloats(dst: ArrayBufferView, dstDtype: string, src: ArrayBufferView, srcDtype: string): void;
  convertFloatsRef(dst: ArrayBufferView, dstDtype: string, src: ArrayBufferView, srcDtype: string): void;
  convertFloatsAsync(dst: ArrayBufferView, dstDtype: string, src: ArrayBufferView, srcDtype: string): Promise<void>;
  // ---- backward kernels, loss and optimiser (binding_backward.cpp). Arguments: outputs, inputs, dimensions;
  // buffers are Float32Array of exactly the implied length; `null` skips an optional output or input.
  // Gradients accumulate (+=) except linear dx, attention dq/dk/dv, rope (in place) and mse da (overwritten).
  linearBackward(dx: Float32Array | null, dw: Float32Array | null, db: Float32Array | null, dy: Float32Array, x: Float32Array | null, w: Float32Array | null, M: number, N: number, K: number): void;
  linearBackwardRef(dx: Float32Array | null, dw: Float32Array | null, db: Float32Array | null, dy: Float32Array, x: Float32Array | null, w: Float32Array | null, M: number, N: number, K: number): void;
  rmsnormBackward(dx: Float32Array | null, dw: Float32Array | null, dy: Float32Array, x: Float32Array, w: Float32Array | null, M: number, D: number, eps: number): void;
  rmsnormBackwardRef(dx: Float32Array | null, dw: Float32Array | null, dy: Float32Array, x: Float32Array, w: Float32Array | null, M: number, D: number, eps: number): void;
  layernormBackward(dx: Float32Array | null, dw: Float32Array | null, db: Float32Array | null, dy: Float32Array, x: Float32Array, w: Float32Array | null, M: number, D: number, eps: number): void;
  layernormBackwardRef(dx: Float32Array | null, dw: Float32Array | null, db: Float32Array | null, dy: Float32Array, x: Float32Array, w: Float32Array | null, M: number, D: number, eps: number): void;
  activationBackward(dx: Float32Array, dy: Float32Array, x: Float32Array, kind: NativeActivation): void;
  activationBackwardRef(dx: Float32Array, dy: Float32Array, x: Float32Array, kind: NativeActivation): void;
  gatedBackward(dgate: Float32Array | null, dup: Float32Array | null, dy: Float32Array, gate: Float32Array, up: Float32Array, kind: NativeActivation): void;
  gatedBackwardRef(dgate: Float32Array | null, dup: Float32Array | null, dy: Float32Array, gate: Float32Array, up: Float32Array, kind: NativeActivation): void;
  ropeBackward(dx: Float32Array, cos: Float32Array, sin: Float32Array, M: number, nheads: number, Dh: number): void;
  ropeBackwardRef(dx: Float32Array, cos: Float32Array, sin: Float32Array, M: number, nheads: number, Dh: number): void;
  attentionBackward(dq: Float32Array, dk: Float32Array, dv: Float32Array, dout: Float32Array, q: Float32Array, k: Float32Array, v: Float32Array, out: Float32Array, lse: Float32Array, keyMask: Uint8Array | null, B: number, T: number, H: number, Hk: number, Dh: number, scale: number): void;
  attentionBackwardRef(dq: Float32Array, dk: Float32Array, dv: Float32Array, dout: Float32Array, q: Float32Array, k: Float32Array, v: Float32Array, out: Float32Array, lse: Float32Array, keyMask: Uint8Array | null, B: number, T: number, H: number, Hk: number, Dh: number, scale: number): void;
  mseForwardBackward(da: Float32Array | null, a: Float32Array, b: Float32Array): number;
  mseForwardBackwardRef(da: Float32Array | null, a: Float32Array, b: Float32Array): number;
  adamwStep(params: Float32Array[], grads: Float32Array[], m: Float32Array[], v: Float32Array[], options: NativeAdamWOptions): void;
  gradNorm(grads: Float32Array[]): number;
  clipGradNorm(grads: Float32Array[], maxNorm: number): { norm: number; scale: number };
  // ---- end of backward block
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
