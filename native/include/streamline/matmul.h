// Linear layers as Hugging Face stores them: y[M,N] = x[M,K] · W[N,K]^T (+ bias[N]).
// x and y are f32 row-major; W is f32, bf16 or f16 (read in place, e.g. straight from a memory-mapped file);
// accumulation is f32. `ref::` is the plain triple loop every fast path is tested against.
#pragma once
#include <cstddef>

#include "streamline/dtype.h"

namespace streamline {

// bias may be nullptr (f32, length N). ldx/ldy are row strides in elements (0 = K / N).
// When accumulate is true, y += x·W^T (+bias) instead of y = ….
void linear_forward(float* y, const float* x, const void* w, DType wdtype, const float* bias, size_t M, size_t N,
                    size_t K, bool accumulate = false);

// Plain f32 GEMM on row-major operands: C[M,N] (+)= A[M,K] · op(B), op(B) = B[K,N] or B[N,K]^T.
void gemm_f32(float* C, const float* A, const float* B, size_t M, size_t N, size_t K, bool b_transposed,
              bool accumulate);

namespace ref {
void linear_forward(float* y, const float* x, const void* w, DType wdtype, const float* bias, size_t M, size_t N,
                    size_t K, bool accumulate = false);
void gemm_f32(float* C, const float* A, const float* B, size_t M, size_t N, size_t K, bool b_transposed,
              bool accumulate);
}  // namespace ref

}  // namespace streamline
