// Causal grouped-query attention on the GPU, flash style: K/V tiles staged in shared memory, online softmax in
// f32, no T x T matrix in global memory. Contract of streamline::attention_forward plus a stream (f32, for
// validation), and a bf16 variant with f32 accumulation for the decoder layer, reading q/k/v straight from the
// packed QKV rows (strides in elements).
//
// Semantics (both): query i of batch b attends to keys j <= i with key_mask[b*T + j] != 0 (nullptr = all real) and,
// when window > 0, i - j < window (sliding window; 0 = plain causal), scores scaled by `scale`; a query with no
// visible key gets zeros and lse = -inf. lse[B,H,T] may be nullptr.
#pragma once
#include "common.cuh"

namespace streamline {
namespace cuda {

// q[B,T,H,Dh], k/v[B,T,Hk,Dh], out[B,T,H,Dh], all f32 and contiguous. Dh <= 256.
void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v, const uint8_t* key_mask,
                       size_t B, size_t T, size_t H, size_t Hk, size_t Dh, float scale, size_t window, cudaStream_t s);

// bf16 tensors addressed by rows: token (b, t) of q starts at q + (b*T + t) * q_stride, head h at + h*Dh; k and v
// share kv_stride; out rows have out_stride. Tensor cores (bf16 mma, f32 accumulate) when Dh is 32, 64, 80, 96, 128 or 256 and the
// strides keep 16-byte alignment; otherwise a scalar kernel with the same semantics.
void attention_forward_bf16(bf16* out, size_t out_stride, float* lse, const bf16* q, size_t q_stride, const bf16* k,
                            const bf16* v, size_t kv_stride, const uint8_t* key_mask, size_t B, size_t T, size_t H,
                            size_t Hk, size_t Dh, float scale, size_t window, cudaStream_t s);

// Which path attention_forward_bf16 takes for these arguments ("wmma-reg", "wmma-smem" or "scalar"), for the harness.
const char* attention_bf16_path(size_t Dh, size_t q_stride, size_t kv_stride, size_t out_stride, const void* q,
                                const void* k, const void* v, const void* out);

// Tensor-core variant: output accumulator in registers (default) or in shared memory (version 1; also selected by
// STREAMLINE_ATTN=smem). Process-wide; for the harness and benchmarks.
void set_attention_variant(bool registers);

}  // namespace cuda
}  // namespace streamline
