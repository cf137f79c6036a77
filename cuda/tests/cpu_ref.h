// CPU references for the CUDA harness.
//
// Where ops.h has the operation, these forward to the shared references (streamline::ref::..., and the CPU
// embedding/rope_tables/cosine kernels). Local loops remain only for what the contract does not cover: attention on
// strided (packed QKV) rows, partial rotary, token_logprobs through the reference log-softmax, and the decoder layer
// that rounds to bf16 where the GPU does. The local layer agrees with streamline::decoder_layer_forward to 1e-7
// (checked in --cpu-selftest), and the layer checks also compare the GPU with decoder_layer_forward directly.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "streamline/dtype.h"
#include "streamline/ops.h"

namespace harness {
namespace ref {

using streamline::Activation;
using streamline::DType;

float wget(const void* w, DType wdt, size_t i);
bool embedding_forward(float* out, const int32_t* ids, const void* table, DType wdt, size_t M, size_t V, size_t D);
void rmsnorm_forward(float* y, const float* x, const void* w, DType wdt, size_t M, size_t D, float eps);
void layernorm_forward(float* y, const float* x, const void* w, const void* b, DType wdt, size_t M, size_t D, float eps);
void rope_tables(float* cos, float* sin, const int32_t* positions, const float* inv_freq, size_t M, size_t half,
                 float attention_scaling);
// Rotates the first rot dims of each head (ops.h rope_forward with rot).
void rope_forward(float* x, const float* cos, const float* sin, size_t M, size_t nheads, size_t Dh, size_t rot);
// q/k/v/out with row strides (elements) as in the packed layer layout; lse[B,H,T] may be nullptr. window as in
// ops.h (0 = plain causal; else query i sees keys i - window < j <= i).
void attention_forward(float* out, size_t out_stride, float* lse, const float* q, size_t q_stride, const float* k,
                       const float* v, size_t kv_stride, const uint8_t* mask, size_t B, size_t T, size_t H, size_t Hk,
                       size_t Dh, float scale, size_t window = 0);
float act(float x, Activation a);
void log_softmax_forward(float* y, const float* x, size_t M, size_t V);
void token_logprobs(float* lp, const float* logits, const int32_t* target, size_t M, size_t V);
struct Cos { double sum = 0; uint64_t count = 0, zeros = 0; };
void cosine_accumulate(Cos* acc, const float* a, const float* b, const uint8_t* mask, size_t M, size_t D);

// One decoder layer in f32 (the CPU decoder_layer_forward semantics; see cuda/decoder_layer.cuh), in place on h.
// emulate_bf16 rounds to bf16 where the GPU layer does (GEMM inputs, packed qkv, MLP activations, weights).
struct LayerSpecRef {
  size_t B, T, D, H, Hk, Dh, F, rot;
  bool rms, gated, pre_norm, use_rope, mlp_only;
  Activation act;
  float eps, scale;
  size_t window = 0;  // sliding attention window (0 = none)
};
struct LayerWeightsRef {  // f32 host copies, empty vector = absent role
  std::vector<float> n1w, n1b, qw, qb, kw, kb, vw, vb, ow, ob, n2w, n2b, gw, gb, uw, ub, dw, db;
  std::vector<float> qn, kn;  // Qwen3's per-head q/k RMSNorm weights [Dh] (both or neither)
  std::vector<float> pan, pmn;  // Gemma's post_attn_norm / post_mlp_norm [D] (weight only; pan absent in an mlp block)
};
void decoder_layer(std::vector<float>& h, const LayerSpecRef& s, const LayerWeightsRef& w, const float* cos,
                   const float* sin, const uint8_t* mask, bool emulate_bf16);
// The same layer through the project's CPU kernels (streamline::decoder_layer_forward / mlp_block_forward), in
// place on h; partial rotary (rot < Dh) as LayerSpec::rotary_dim; inv_freq[rot/2], positions[M]. Throws streamline::Error
// on bad shapes.
void contract_layer(std::vector<float>& h, const LayerSpecRef& s, const LayerWeightsRef& w, const int32_t* positions,
                    const uint8_t* mask, const float* inv_freq);

}  // namespace ref
}  // namespace harness
