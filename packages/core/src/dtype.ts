/**
 * Element types of tensors, their sizes, and the names safetensors files use for them.
 * The names are the ones the native addon accepts (`f32`, `f16`, `bf16`, `i32`, `i64`, `u8`, `bool`).
 */

/** An element type. `bool` is stored as one byte per element (0 or 1), like safetensors' `BOOL`. */
export type DType = 'f32' | 'f16' | 'bf16' | 'i32' | 'i64' | 'u8' | 'bool';

/** Every supported dtype, in a fixed order. */
export const DTYPES: readonly DType[] = ['f32', 'f16', 'bf16', 'i32', 'i64', 'u8', 'bool'];

const SIZES: Readonly<Record<DType, number>> = { f32: 4, f16: 2, bf16: 2, i32: 4, i64: 8, u8: 1, bool: 1 };

const TO_SAFETENSORS: Readonly<Record<DType, string>> = {
  f32: 'F32', f16: 'F16', bf16: 'BF16', i32: 'I32', i64: 'I64', u8: 'U8', bool: 'BOOL',
};

const FROM_SAFETENSORS: ReadonlyMap<string, DType> = new Map(
  (Object.entries(TO_SAFETENSORS) as [DType, string][]).map(([d, s]) => [s, d]),
);

/**
 * Safetensors dtype names that the format defines but Streamline does not read (they produce
 * `E_SAFETENSORS_DTYPE` with a message saying so, rather than "unknown").
 */
export const UNSUPPORTED_SAFETENSORS_DTYPES: readonly string[] = [
  'F64', 'I8', 'I16', 'U16', 'U32', 'U64', 'F8_E4M3', 'F8_E5M2', 'F8_E8M0', 'F6_E2M3', 'F6_E3M2', 'F4', 'C64',
];

/** True when `s` names a supported dtype. */
export function isDType(s: unknown): s is DType {
  return typeof s === 'string' && Object.hasOwn(SIZES, s);
}

/** Bytes per element of `dtype`. */
export function dtypeSize(dtype: DType): number {
  return SIZES[dtype];
}

/** True for the floating-point dtypes (`f32`, `f16`, `bf16`), the ones the native converter handles. */
export function isFloatDType(dtype: DType): boolean {
  return dtype === 'f32' || dtype === 'f16' || dtype === 'bf16';
}

/** The safetensors name (`F32`, `BF16`, ...) of a dtype. */
export function toSafetensorsDType(dtype: DType): string {
  return TO_SAFETENSORS[dtype];
}

/** The dtype for a safetensors name, or undefined when Streamline does not support it. */
export function fromSafetensorsDType(name: string): DType | undefined {
  return FROM_SAFETENSORS.get(name);
}
