import { native } from './native.js';

/** What the native runtime found on this machine. */
export interface RuntimeInfo {
  /**
   * CPU kernel level in use (`scalar`, `avx2`, `avx512`, `avx512bf16`, `amx`) and the detected maximum;
   * blasCore is OpenBLAS's kernel family (e.g. `Haswell`, `SkylakeX`), empty without OpenBLAS.
   */
  cpu: { level: string; detected: string; threads: number; blas: string; blasCore: string; avx2: boolean; avx512f: boolean; avx512bf16: boolean; amx: boolean };
  /**
   * CUDA backend: whether it was compiled, whether a GPU can be used, and why not when it cannot; qkNorm / postNorm:
   * the loaded backend library runs Qwen3's per-head q/k norm / Gemma's post-sublayer norms in the forward (false for
   * a library built before them).
   */
  cuda: { compiled: boolean; available: boolean; deviceCount: number; deviceName: string; runtimeVersion: number; reason: string; qkNorm: boolean; postNorm: boolean };
}

/**
 * Describes the CPU features, kernel level, threads and CUDA availability.
 * @example
 * const info = runtimeInfo(); if (!info.cuda.available) console.log(info.cuda.reason);
 */
export function runtimeInfo(): RuntimeInfo {
  const n = native();
  const c = n.cpuInfo();
  const g = n.cudaInfo();
  return {
    cpu: { level: c.level, detected: c.detected, threads: c.threads, blas: c.blas, blasCore: c.blasCore ?? '', avx2: c.avx2, avx512f: c.avx512f, avx512bf16: c.avx512bf16, amx: c.amx },
    cuda: { compiled: g.compiled, available: g.available, deviceCount: g.deviceCount, deviceName: g.deviceName, runtimeVersion: g.runtimeVersion, reason: g.reason, qkNorm: g.qkNorm, postNorm: g.postNorm },
  };
}
