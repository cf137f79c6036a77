// Whole decoder layers and the model head, composed from the kernels in ops.h. Activations are f32
// row-major [M = B*T, D]; weights are views into f32/bf16/f16 storage (e.g. a memory-mapped safetensors
// file) and are read in place. Functions validate shapes with validate_*() and throw streamline::Error
// (E_SHAPE, E_DTYPE, E_TOKEN_RANGE) naming the role; call the validator first to fail before any work.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "streamline/dtype.h"
#include "streamline/ops.h"

namespace streamline {

enum class NormKind : int { Rms = 0, Layer = 1 };

// A weight tensor in place: data == nullptr means absent.
struct WeightView {
  const void* data = nullptr;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  explicit operator bool() const { return data != nullptr; }
  size_t numel() const {
    size_t n = 1;
    for (auto d : shape) n *= size_t(d);
    return n;
  }
};

struct LayerSpec {
  size_t batch = 0, seq_len = 0, hidden = 0, heads = 0, kv_heads = 0, head_dim = 0, intermediate = 0;
  NormKind norm = NormKind::Rms;
  float norm_eps = 1e-5f;
  Activation act = Activation::SiLU;
  bool gated_mlp = true;   // down(act(gate(x)) * up(x)); false: down(act(up(x))) (OPT fc1 = up, fc2 = down)
  bool pre_norm = true;    // false: OPT do_layer_norm_before = false (norm after each residual add)
  bool use_rope = true;
  float attn_scale = 0;    // 0 means 1/sqrt(head_dim)
  float rope_attention_scaling = 1.0f;
  size_t window = 0;       // sliding-window attention: keys per query (i - j < window); 0 = full causal
  size_t rotary_dim = 0;   // RoPE on the leading rotary_dim dims of each head (Phi-3 partial_rotary_factor); 0 = head_dim
};

// One view per role; names in comments are the role strings the binding accepts.
struct LayerWeights {
  WeightView attn_norm_w, attn_norm_b;  // attn_norm.weight, attn_norm.bias   [D]
  WeightView q_w, q_b;                  // q.weight [H*Dh, D], q.bias [H*Dh]
  WeightView k_w, k_b;                  // k.weight [Hk*Dh, D], k.bias [Hk*Dh]
  WeightView v_w, v_b;                  // v.weight [Hk*Dh, D], v.bias [Hk*Dh]
  WeightView o_w, o_b;                  // o.weight [D, H*Dh], o.bias [D]
  WeightView mlp_norm_w, mlp_norm_b;    // mlp_norm.weight, mlp_norm.bias     [D]
  WeightView gate_w, gate_b;            // gate.weight [F, D], gate.bias [F] (gated MLP only; Llama mlp_bias)
  WeightView up_w, up_b;                // up.weight [F, D], up.bias [F]
  WeightView down_w, down_b;            // down.weight [D, F], down.bias [D]
  WeightView q_norm_w, k_norm_w;        // q_norm.weight, k_norm.weight [Dh]: per-head RMSNorm of q/k (Qwen3)
  // post_attn_norm.weight, post_mlp_norm.weight [D]: a norm (the layer's kind and eps, weight only) of each
  // sub-block's output before its residual add (Gemma 2/3 "sandwich" norms); pre-norm layers only.
  WeightView post_attn_norm_w, post_mlp_norm_w;
};

// Checks a weight view: float dtype and exactly the shape `want`; absent is an error only when required.
// Throws Error E_SHAPE / E_DTYPE naming the role. Shared by the layer and head validators.
void check_weight(const WeightView& w, const char* role, const std::vector<int64_t>& want, bool required);

// Role name -> member, for bindings and error messages. Returns nullptr for an unknown role.
WeightView* layer_weight_role(LayerWeights& w, const std::string& role);
const std::vector<std::string>& layer_weight_roles();

// Optional outputs of decoder_layer_forward (each nullptr when not wanted).
struct LayerCaptures {
  // [M, D]: x + attn(...) (before the post-norm when pre_norm is false; x + post_attn_norm(attn(...)) with one)
  float* attn_residual = nullptr;
  // [M, D]: what the MLP half adds to the residual: MLP(...), or post_mlp_norm(MLP(...)) with that norm
  float* mlp_out = nullptr;
};

// Throws streamline::Error on an inconsistent spec or a missing/mis-shaped weight. `mlp_only` checks only
// what mlp_block_forward needs.
void validate_layer(const LayerSpec& spec, const LayerWeights& w, bool mlp_only = false);

// One decoder layer (see model/decoder_layer.cpp for the exact formulas). x, out [M = batch*seq_len, D];
// out may alias x. positions[M] (needed with use_rope), key_mask[M] (1 = real token; nullptr = all real),
// rope_inv_freq[head_dim/2] (needed with use_rope). Scratch is allocated per call.
void decoder_layer_forward(float* out, const float* x, const LayerSpec& spec, const LayerWeights& w,
                           const int32_t* positions, const uint8_t* key_mask, const float* rope_inv_freq,
                           LayerCaptures* captures);

// The MLP half of a layer: pre-norm out = x + MLP(n2(x)) (x + post_mlp_norm(MLP(n2(x))) with that weight);
// post-norm out = n2(x + MLP(x)). out may alias x. mlp_out (nullable, [M, D]) receives what is added to the
// residual. Rows M = batch*seq_len.
void mlp_block_forward(float* out, const float* x, const LayerSpec& spec, const LayerWeights& w,
                       float* mlp_out = nullptr);

// ---- model head: final norm, optional OPT project_out, lm_head, log-probs ------------------------------
struct HeadSpec {
  size_t hidden = 0, vocab = 0;
  size_t proj_dim = 0;  // 0: no project_out; else word_embed_proj_dim
  NormKind norm = NormKind::Rms;
  float norm_eps = 1e-5f;
  bool final_norm = true;  // false: no final norm (OPT post-norm models)
};
struct HeadWeights {
  WeightView norm_w, norm_b;  // final_norm.weight [D], final_norm.bias [D] (bias optional)
  WeightView project_out;     // project_out.weight [proj_dim, D] (only with proj_dim)
  WeightView lm_head;         // lm_head.weight [V, D'] (D' = proj_dim or D); may be the tied embedding
};
void validate_head(const HeadSpec& spec, const HeadWeights& w);
// x[M, D]. logits (nullable) [M, V]; logprobs (nullable) [M] = log_softmax(logits)[targets[m]] (0 when
// targets[m] < 0; targets may be nullptr only when logprobs is). Logits are computed in row chunks so a full
// [M, V] matrix exists only when the caller asks for it. Throws E_TOKEN_RANGE for a target >= V.
void head_forward(const float* x, size_t M, const HeadSpec& spec, const HeadWeights& w, const int32_t* targets,
                  float* logits, float* logprobs);

}  // namespace streamline
