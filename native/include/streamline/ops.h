// CPU kernels of the transformer forward and backward passes. Contract shared by the fast paths, the plain
// references (namespace ref) and the CUDA backend (same signatures plus a stream).
//
// Dimension letters: M rows (tokens, B*T), D hidden, H query heads, Hk key/value heads, Dh head dim,
// F intermediate, V vocab, B batch, T sequence length. Activations are f32, row-major, contiguous.
// Weights are f32, bf16 or f16 (`wdt`), read in place. Argument order: outputs, then inputs, then dimensions.
#pragma once
#include <cstddef>
#include <cstdint>

#include "streamline/dtype.h"
#include "streamline/matmul.h"

namespace streamline {

enum class Activation : int { SiLU = 0, ReLU = 1, GELU = 2 /* erf */, GELUTanh = 3 };

// ---- forward ----------------------------------------------------------------------------------------------
// Hugging Face LlamaRMSNorm in f32: y = w * (x * rsqrt(mean(x^2) + eps)). w may be nullptr (no scale).
void rmsnorm_forward(float* y, const float* x, const void* w, DType wdt, size_t M, size_t D, float eps);
// y = (x - mean) * rsqrt(var + eps) * w + b (biased variance). w, b may be nullptr.
void layernorm_forward(float* y, const float* x, const void* w, const void* b, DType wdt, size_t M, size_t D, float eps);

// out[M,D] = table[ids[m]]; returns false (and writes nothing for that row) when an id is outside [0, V).
bool embedding_forward(float* out, const int32_t* ids, const void* table, DType wdt, size_t M, size_t V, size_t D);

// cos/sin tables [M, Dh/2] for positions[M]: angle = float(pos) * inv_freq[i] in f32, times attention_scaling.
void rope_tables(float* cos, float* sin, const int32_t* positions, const float* inv_freq, size_t M, size_t half,
                 float attention_scaling);
// In place, rotate-half layout on x[M, nheads, Dh]: x1 = x[:half], x2 = x[half:rot] with half = rot/2;
// out1 = x1*cos - x2*sin, out2 = x2*cos + x1*sin; cos/sin are [M, rot/2]. rot = 0 means Dh; a smaller rot (Phi-3's
// partial_rotary_factor) rotates the leading rot dims of each head and passes the rest through.
void rope_forward(float* x, const float* cos, const float* sin, size_t M, size_t nheads, size_t Dh, size_t rot = 0);

// Causal grouped-query attention. q[B,T,H,Dh], k/v[B,T,Hk,Dh], out[B,T,H,Dh]. key_mask[B,T] (1 = real token,
// 0 = padding; nullptr = all real). Query i attends to keys j <= i with key_mask[j] = 1 and, when window > 0, only
// to the last `window` of them by index: i - j < window (Hugging Face's sliding_window, e.g. Mistral; keys masked by
// the window never enter a sum, like future keys). Softmax in f32 with scores scaled by `scale`. A query with no
// visible key gets zeros. lse[B,H,T] (optional) receives the log-sum-exp of the scaled scores, for the backward pass
// (-inf for a query with no visible key).
void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v, const uint8_t* key_mask,
                       size_t B, size_t T, size_t H, size_t Hk, size_t Dh, float scale, size_t window = 0);
// The first key index query i sees under that window (0 without one).
inline size_t window_first_key(size_t i, size_t window) { return window && i >= window ? i + 1 - window : 0; }

// out[n] = act(x[n]).
void activation_forward(float* y, const float* x, size_t n, Activation act);
// out[n] = act(gate[n]) * up[n] (SwiGLU with SiLU).
void gated_forward(float* y, const float* gate, const float* up, size_t n, Activation act);

// y[M,V] = log_softmax(x[M,V]) over the last dimension (f32, max-subtracted). y may equal x.
void log_softmax_forward(float* y, const float* x, size_t M, size_t V);
// lp[m] = log_softmax(logits[m])[target[m]]; rows with target < 0 get 0.
void token_logprobs(float* lp, const float* logits, const int32_t* target, size_t M, size_t V);

// ---- backward (gradients accumulate into d* buffers unless stated) ----------------------------------------
// Given y = x·W^T + b: dx[M,K] = dy·W (overwritten), dw[N,K] += dy^T·x (f32), db[N] += sum_m dy. dw/db/dx may be nullptr.
void linear_backward(float* dx, float* dw, float* db, const float* dy, const float* x, const float* w, size_t M,
                     size_t N, size_t K);
void rmsnorm_backward(float* dx, float* dw, const float* dy, const float* x, const float* w, size_t M, size_t D, float eps);
void layernorm_backward(float* dx, float* dw, float* db, const float* dy, const float* x, const float* w, size_t M,
                        size_t D, float eps);
void activation_backward(float* dx, const float* dy, const float* x, size_t n, Activation act);
void gated_backward(float* dgate, float* dup, const float* dy, const float* gate, const float* up, size_t n, Activation act);
// Inverse rotation, in place on dx[M, nheads, Dh] (the leading rot dims; rot = 0 means Dh, as in rope_forward).
void rope_backward(float* dx, const float* cos, const float* sin, size_t M, size_t nheads, size_t Dh, size_t rot = 0);
// dq, dk, dv overwritten. out and lse from attention_forward with the same window.
void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                        const float* v, const float* out, const float* lse, const uint8_t* key_mask, size_t B, size_t T,
                        size_t H, size_t Hk, size_t Dh, float scale, size_t window = 0);
// loss = mean((a - b)^2) over n elements (f64 accumulation); da = 2 (a - b) / n when da is not nullptr.
double mse_forward_backward(float* da, const float* a, const float* b, size_t n);

// Plain references of the backward kernels (f64 accumulation, no threads); same semantics as above. As the
// section header says, everything accumulates (dx of the norms, activation_backward, gated_backward included)
// except linear_backward's dx, attention_backward's dq/dk/dv, rope_backward (in place) and mse's da.
namespace ref {
void linear_backward(float* dx, float* dw, float* db, const float* dy, const float* x, const float* w, size_t M,
                     size_t N, size_t K);
void rmsnorm_backward(float* dx, float* dw, const float* dy, const float* x, const float* w, size_t M, size_t D, float eps);
void layernorm_backward(float* dx, float* dw, float* db, const float* dy, const float* x, const float* w, size_t M,
                        size_t D, float eps);
void activation_backward(float* dx, const float* dy, const float* x, size_t n, Activation act);
void gated_backward(float* dgate, float* dup, const float* dy, const float* gate, const float* up, size_t n, Activation act);
void rope_backward(float* dx, const float* cos, const float* sin, size_t M, size_t nheads, size_t Dh, size_t rot = 0);
void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                        const float* v, const float* out, const float* lse, const uint8_t* key_mask, size_t B, size_t T,
                        size_t H, size_t Hk, size_t Dh, float scale, size_t window = 0);
double mse_forward_backward(float* da, const float* a, const float* b, size_t n);
}  // namespace ref

namespace ref {
void rmsnorm_forward(float* y, const float* x, const void* w, DType wdt, size_t M, size_t D, float eps);
void layernorm_forward(float* y, const float* x, const void* w, const void* b, DType wdt, size_t M, size_t D, float eps);
void rope_forward(float* x, const float* cos, const float* sin, size_t M, size_t nheads, size_t Dh, size_t rot = 0);
void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v, const uint8_t* key_mask,
                       size_t B, size_t T, size_t H, size_t Hk, size_t Dh, float scale, size_t window = 0);
void activation_forward(float* y, const float* x, size_t n, Activation act);
void gated_forward(float* y, const float* gate, const float* up, size_t n, Activation act);
void log_softmax_forward(float* y, const float* x, size_t M, size_t V);
}  // namespace ref

}  // namespace streamline
