// Linear layers as Hugging Face stores them: y[M,N] = x[M,K] · W[N,K]^T (+ bias[N]).
// x and y are f32 row-major; W is f32, bf16 or f16 (read in place, e.g. straight from a memory-mapped file);
// accumulation is f32. `ref::` is the plain triple loop every fast path is tested against.
#pragma once
#include <cstddef>

#include "streamline/dtype.h"

namespace streamline {

// bias may be nullptr (f32, length N).
// When accumulate is true, y += x·W^T (+bias) instead of y = ….
// row_invariant (default): every row's result depends only on that row, whatever M is, so a sequence scores the same
// in any batch; it costs one BLAS call per 64 rows (the weight is packed again for each). false: one call for the
// whole batch (measured 1.5x faster at 2048 x 8192 x 2048 on two AVX2 cores), for training, where the batch is fixed
// and gradients are sums over it anyway.
void linear_forward(float* y, const float* x, const void* w, DType wdtype, const float* bias, size_t M, size_t N,
                    size_t K, bool accumulate = false, bool row_invariant = true);

// Plain f32 GEMM on row-major operands: C[M,N] (+)= A[M,K] · op(B), op(B) = B[K,N] or B[N,K]^T.
void gemm_f32(float* C, const float* A, const float* B, size_t M, size_t N, size_t K, bool b_transposed,
              bool accumulate);
// C[M,N] (+)= A[K,M]^T · B[K,N]: the weight gradient of a linear layer (dW = dY^T · X) without materialising dY^T;
// BLAS packs the transposed operand itself (an explicit transposition cost a scalar pass and an [N, M] buffer).
void gemm_f32_at(float* C, const float* A, const float* B, size_t M, size_t N, size_t K, bool accumulate);

namespace ref {
void linear_forward(float* y, const float* x, const void* w, DType wdtype, const float* bias, size_t M, size_t N,
                    size_t K, bool accumulate = false);
void gemm_f32(float* C, const float* A, const float* B, size_t M, size_t N, size_t K, bool b_transposed,
              bool accumulate);
}  // namespace ref

}  // namespace streamline
