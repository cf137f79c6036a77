// Rotary position embedding on the GPU: tables and rotate-half application (contract of streamline::rope_tables /
// rope_forward plus a stream), and the fused form the decoder layer uses on its packed bf16 QKV rows
// (bias add + rotation of q and k heads, partial rotary dimensions supported).
#pragma once
#include "common.cuh"

namespace streamline {
namespace cuda {

// cos/sin[M, half]: angle = float(positions[m]) * inv_freq[i] (f32), times attention_scaling.
void rope_tables(float* cos, float* sin, const int32_t* positions, const float* inv_freq, size_t M, size_t half,
                 float attention_scaling, cudaStream_t s);
// In place on x[M, nheads, Dh] (f32), rotating all Dh dims: out1 = x1*cos - x2*sin, out2 = x2*cos + x1*sin.
void rope_forward(float* x, const float* cos, const float* sin, size_t M, size_t nheads, size_t Dh, cudaStream_t s);

// Packed rows qkv[M, (H + 2 Hk) * Dh] (bf16, row stride `stride` elements): adds bias[(H + 2 Hk) * Dh] (f32, may be
// nullptr), then rotates the first rot_dim dims of each q and k head with cos/sin[M, rot_dim/2] (nullptr = no RoPE).
// Values are computed in f32 and rounded to bf16 once.
void qkv_bias_rope_bf16(bf16* qkv, size_t stride, const float* bias, const float* cos, const float* sin, size_t M,
                        size_t H, size_t Hk, size_t Dh, size_t rot_dim, cudaStream_t s);

// The same with Qwen3's per-head q/k RMSNorm between the bias and the rotation: each q head's Dh values (x + bias)
// become q_norm[j] * (x * rsqrt(mean(x^2) + eps)), k heads likewise with k_norm (both f32 [Dh], required), in f32;
// then the rotation, and one rounding to bf16. H + Hk floats of dynamic shared memory.
void qkv_bias_norm_rope_bf16(bf16* qkv, size_t stride, const float* bias, const float* q_norm, const float* k_norm,
                             float eps, const float* cos, const float* sin, size_t M, size_t H, size_t Hk, size_t Dh,
                             size_t rot_dim, cudaStream_t s);

}  // namespace cuda
}  // namespace streamline
