/**
 * Which backend runs the forward passes: the one resolver behind every `device` option (scoring, log-probabilities,
 * prune's pair collection) and the CLI's `--device`. 'cpu' is always the CPU; 'cuda' and 'auto' use the CUDA backend
 * when runtimeInfo().cuda.available, and otherwise fall back to the CPU with one message saying which piece is
 * missing (a warning for 'cuda', an info line for 'auto').
 */
import { StreamlineError } from './errors.js';
import { native } from './native.js';
import { runtimeInfo, type RuntimeInfo } from './runtime.js';

/** What a caller may ask for. */
export type DeviceOption = 'auto' | 'cpu' | 'cuda';
/** What actually runs. */
export type Device = 'cpu' | 'cuda';
export const DEVICE_OPTIONS: readonly DeviceOption[] = ['auto', 'cpu', 'cuda'];

/** A message about the device choice, for the caller's log channel (library code never prints). */
export interface DeviceMessage {
  level: 'warning' | 'info';
  message: string;
}

export interface ResolvedDevice {
  requested: DeviceOption;
  device: Device;
  /** Why CUDA is not used, when it was asked for (or 'auto') and is unavailable; null otherwise. */
  missing: string | null;
}

/** Options shared by the APIs that run forward passes. */
export interface DeviceOptions {
  /** 'auto' (default): CUDA when usable, else the CPU; 'cpu'; 'cuda' (falls back to the CPU with a warning). */
  device?: DeviceOption;
  /** Receives the one message of a fallback (see resolveDevice). */
  onLog?: (m: DeviceMessage) => void;
}

/**
 * Checks a device option value.
 * @throws StreamlineError E_INVALID_OPTION naming the allowed values.
 */
export function checkDeviceOption(v: unknown, name = '--device'): DeviceOption {
  if (typeof v === 'string' && (DEVICE_OPTIONS as readonly string[]).includes(v)) return v as DeviceOption;
  throw new StreamlineError('E_INVALID_OPTION', `${name} must be auto, cpu or cuda, got ${typeof v === 'string' ? `'${v}'` : String(v)}`);
}

/**
 * The piece that keeps the CUDA backend from running, in words, from cudaInfo(): the backend was not compiled into
 * this build, there is no (usable) NVIDIA driver, no GPU, or no cuBLASLt. Null when CUDA is available.
 */
export function cudaMissingPiece(c: RuntimeInfo['cuda']): string | null {
  if (c.available) return null;
  const r = c.reason;
  if (!c.compiled) return `not compiled: this build of the addon has no CUDA backend (${r || 'streamline_cuda.so not found'})`;
  if (/not available|lacks/.test(r)) return `the CUDA backend library could not be loaded: ${r.replace(/^CUDA backend library not available \((.*)\)$/s, '$1')}`;
  if (/cublas/i.test(r)) return `no cuBLASLt: the GPU needs libcublasLt from the CUDA toolkit (${r})`;
  // cudaGetDeviceCount: 35 insufficient driver, 34 stub library (no driver installed), 100 no device.
  if (/error 3[45]\b|driver/i.test(r)) return `no usable NVIDIA driver (${r})`;
  if (/error 100\b|no CUDA device/i.test(r) || c.deviceCount === 0) return `no GPU (${r || 'no CUDA device found'})`;
  return r || 'the CUDA backend reports no usable device';
}

/**
 * Resolves a device option to what will run, reporting a fallback through onLog exactly once per call.
 * `modelUnsupported` (engine/cuda.ts cudaUnsupported) says why the CUDA backend cannot run this particular model;
 * then 'cuda' falls back with a warning and 'auto' with an info line, naming that reason.
 * @throws StreamlineError E_INVALID_OPTION for a value other than auto, cpu or cuda.
 * @example
 * const d = resolveDevice('cuda', (m) => console.error(m.message)); // d.device === 'cpu' on a machine without a GPU
 */
export function resolveDevice(requested: DeviceOption | undefined = 'auto', onLog?: (m: DeviceMessage) => void,
  modelUnsupported: string | null = null): ResolvedDevice {
  const want = checkDeviceOption(requested, 'device');
  if (want === 'cpu') return { requested: want, device: 'cpu', missing: null };
  // A model the backend cannot run is named before the machine's state: it would not run on any GPU.
  const missing = modelUnsupported ?? cudaMissingPiece(runtimeInfo().cuda);
  if (missing === null) return { requested: want, device: 'cuda', missing: null };
  onLog?.(want === 'cuda'
    ? { level: 'warning', message: `--device cuda: CUDA cannot be used: ${missing}; running on the CPU` }
    : { level: 'info', message: `device: cpu (CUDA not used: ${missing})` });
  return { requested: want, device: 'cpu', missing };
}

/** Device memory held by the CUDA backend (bytes): now, and the peak since the last reset. */
export interface GpuMemory {
  current: number;
  peak: number;
}

/**
 * The CUDA backend's device-memory counters (its own allocations: activations, weight slots, staging, head), or
 * null when CUDA is unavailable. resetPeak starts a new peak after reading.
 */
export function gpuMemory(resetPeak = false): GpuMemory | null {
  if (!runtimeInfo().cuda.available) return null;
  return native().cudaMemory(resetPeak);
}
