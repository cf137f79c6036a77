// Backward kernels and the optimiser on the GPU (issue 9): the CPU contract of streamline::*_backward (ops.h) and
// streamline::adamw_step / clip_grad_norm (train.h) plus a stream, device pointers throughout, f32 tensors.
// Accumulation rules are the CPU's: everything accumulates into d* buffers except linear dx (overwritten),
// attention dq/dk/dv (overwritten), rope_backward (in place) and mse's da (overwritten).
//
// f32 throughout, except attention_backward_tc (bf16 tensor cores, backward_attention_tc.cu), which the f32
// attention_backward is the reference and the fallback for.
#pragma once
#include "common.cuh"
#include "streamline/ops.h"
#include "streamline/train.h"

namespace streamline {
namespace cuda {

// ---- f32 contract (ops.h) ---------------------------------------------------------------------------------
// dw/db: sums over rows in a fixed order (per-column block reduction, then a fixed-order sum of the partials), so
// results do not depend on the launch configuration.
void rmsnorm_backward(float* dx, float* dw, const float* dy, const float* x, const float* w, size_t M, size_t D,
                      float eps, cudaStream_t s);
void layernorm_backward(float* dx, float* dw, float* db, const float* dy, const float* x, const float* w, size_t M,
                        size_t D, float eps, cudaStream_t s);
void activation_backward(float* dx, const float* dy, const float* x, size_t n, Activation act, cudaStream_t s);
void gated_backward(float* dgate, float* dup, const float* dy, const float* gate, const float* up, size_t n,
                    Activation act, cudaStream_t s);
// The training step's MLP activation backward, fused with the casts its GEMMs need: dgate_bf/dup_bf = bf16 of what
// gated_backward (gate != nullptr) or activation_backward (gate == nullptr: d(up) = dy · act'(up)) would add into
// zeroed buffers; dgate/dup (optional) receive the same values in f32. Everything written, not accumulated.
void mlp_activation_backward_bf16(bf16* dgate_bf, bf16* dup_bf, float* dgate, float* dup, const float* dy,
                                  const float* gate, const float* up, size_t n, Activation act, cudaStream_t s);
// rot: the leading dims of each head that were rotated (0 = all Dh); cos/sin are [M, rot/2]. The rest pass unchanged.
void rope_backward(float* dx, const float* cos, const float* sin, size_t M, size_t nheads, size_t Dh, cudaStream_t s,
                   size_t rot = 0);
// Flash-style: recomputes P tile by tile from q, k and lse (no T x T matrix in global memory). dq, dk, dv
// overwritten; out and lse from attention_forward with the same window (0 = none: plain causal; i - j < window
// otherwise). dk/dv of a KV head sum over its H/Hk query heads.
void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                        const float* v, const float* out, const float* lse, const uint8_t* key_mask, size_t B,
                        size_t T, size_t H, size_t Hk, size_t Dh, float scale, size_t window, cudaStream_t s);
// The same on bf16 tensor cores for the training step: q/k/v bf16 rows with strides (TrainStep's packed q|k|v
// rows), out bf16 with a stride, dout f32 dense [B*T, H*Dh] (rounded to bf16 once for the products); dq [B*T, H*Dh],
// dk/dv [B*T, Hk*Dh] f32, overwritten, deterministic. P and dS are rounded to bf16 for the products, and a NaN
// input row reaches the zero products of its whole 64-row tile (exactly how: backward_attention_tc.cu). Only when
// attention_backward_tc_supported(): Dh a multiple of 16 up to 128, strides multiples of 8, 16-byte aligned rows.
bool attention_backward_tc_supported(size_t Dh, size_t q_stride, size_t kv_stride, size_t out_stride, const void* q,
                                     const void* k, const void* v, const void* out);
void attention_backward_tc(float* dq, float* dk, float* dv, const float* dout, const bf16* q, size_t q_stride,
                           const bf16* k, const bf16* v, size_t kv_stride, const bf16* out, size_t out_stride,
                           const float* lse, const uint8_t* key_mask, size_t B, size_t T, size_t H, size_t Hk,
                           size_t Dh, float scale, size_t window, cudaStream_t s);
// first_real[b] (device, B ints) = index of the first real key of batch row b (T when none, 0 without a mask): where
// a query's visible keys begin. Shared by the f32 and the tensor-core attention backward.
void attention_first_real_keys(int* first_real, const uint8_t* key_mask, size_t B, size_t T, cudaStream_t s);
// last_real[b*T + t] (device, B*T ints) = the latest real key at or before t (-1 when none; key_mask not null): a
// query i sees a key under a sliding window W exactly when last_real >= i + 1 - W.
void attention_last_real_keys(int* last_real, const uint8_t* key_mask, size_t B, size_t T, cudaStream_t s);
// The same in a fresh stream-ordered allocation (the caller frees it with cudaFreeAsync on s) when the kernels need it
// (a window W != 0 and a key mask), else nullptr. Shared by the f32 and the tensor-core attention backward.
int* attention_window_scratch(int W, const uint8_t* key_mask, size_t B, size_t T, cudaStream_t s);
// da[n] = 2 (a - b) / n (overwritten, when da != nullptr); *loss_dev (f64, device) = mean((a - b)^2), summed in f64
// in a fixed order. row_mask[n / D rows] (optional, 1 = counted): masked rows get da = 0 and do not count in n.
void mse_forward_backward(float* da, double* loss_dev, const float* a, const float* b, size_t rows, size_t D,
                          const uint8_t* row_mask, cudaStream_t s);

// ---- optimiser (train.h) ------------------------------------------------------------------------------------
// One AdamW update of one tensor with torch.optim.AdamW's f32 arithmetic (scalars formed in f64 on the host,
// rounded to f32), exactly as streamline::adamw_step does it per element: bitwise equal to the CPU.
void adamw_update(float* param, const float* grad, float* m, float* v, size_t n, const AdamWOptions& opt,
                  cudaStream_t s);
// sumsq_dev (f64, device, one value) += sum(g^2) over fixed blocks in a fixed order (deterministic).
void grad_sumsq(double* sumsq_dev, const float* g, size_t n, cudaStream_t s);
// clip_grad_norm_ on the device without a host round trip: scale = max_norm / (sqrt(*sumsq_dev) + 1e-6); when
// scale < 1, g *= float(scale). Call once per gradient tensor after all grad_sumsq calls.
void clip_by_global_norm(float* g, size_t n, const double* sumsq_dev, double max_norm, cudaStream_t s);

}  // namespace cuda
}  // namespace streamline
