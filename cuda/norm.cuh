// RMSNorm and LayerNorm on the GPU (contract of streamline::rmsnorm_forward / layernorm_forward plus a stream),
// and the fused residual variants the decoder layer uses: r = x + delta (+ delta_bias), y = norm(r), with y in
// f32 or bf16 (the next GEMM's input). One block per row; the row is staged in shared memory once.
#pragma once
#include "common.cuh"

namespace streamline {
namespace cuda {

void rmsnorm_forward(float* y, const float* x, const void* w, DType wdt, size_t M, size_t D, float eps, cudaStream_t s);
void layernorm_forward(float* y, const float* x, const void* w, const void* b, DType wdt, size_t M, size_t D,
                       float eps, cudaStream_t s);

enum class NormKind : int { RMS = 0, Layer = 1 };

// General form. x[M,D] f32. If delta != nullptr: r = x + delta (+ delta_bias[D]) is written to r_out (may alias x;
// nullptr = not stored) and normalised; otherwise x itself is normalised. Outputs: y_f32 and/or y_bf16 (either may be
// nullptr; y_f32 may alias x: the row is staged in shared memory before it is written).
// w/b: norm weight and bias (dtype wdt; either may be nullptr). delta_bias is f32.
void norm_rows(NormKind kind, float* y_f32, bf16* y_bf16, float* r_out, const float* x, const float* delta,
               const float* delta_bias, const void* w, const void* b, DType wdt, size_t M, size_t D, float eps,
               cudaStream_t s);

// Post-sublayer ("sandwich") norm at a residual add (Gemma 2/3): r_out[M,D] = x + pn(delta + delta_bias) with pn the
// norm of `kind` with weight pw only (f32 statistics, eps; r_out may alias x), then, when y_bf16 != nullptr,
// y_bf16 = norm(r_out; nw, nb) (nw, nb optional) for the next sub-block. delta_out (optional, may alias delta) keeps
// delta + delta_bias, the norm's input, for a backward. All weights f32 on the device; delta_bias may be nullptr.
void post_norm_rows(NormKind kind, bf16* y_bf16, float* r_out, const float* x, const float* delta,
                    const float* delta_bias, float* delta_out, const float* pw, const float* nw, const float* nb,
                    size_t M, size_t D, float eps, cudaStream_t s);

}  // namespace cuda
}  // namespace streamline
