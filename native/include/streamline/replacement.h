// Training step of an `mlp` or `layer` replacement (issue 5): forward with saved activations, MSE loss against
// the target hidden state, backward into f32 gradient buffers (accumulated, for micro-batching).
//   mlp:   y = x + down(act(gate(n)) · up(n))   (gated)   or   y = x + down(act(up(n)))   (plain, e.g. OPT fc1/fc2)
//          with n = norm(x; mlp_norm)
//   layer: h = x + o(attn(rope(q(a)), rope(k(a)), v(a))), a = norm(x; attn_norm)   (pre-norm decoder layer,
//          causal GQA attention with key mask), then y = h + MLP(norm(h; mlp_norm)) as above. With q_norm/k_norm
//          (Qwen3) q(a) and k(a) are RMS-normed per head ([M·H, Dh] and [M·Hk, Dh] rows, eps norm_eps) before RoPE.
//   With post_attn_norm / post_mlp_norm (Gemma 2/3 post-sublayer norms; the spec's norm kind and eps, weight only)
//   the sub-block's output is normed before its residual add: h = x + pn1(o(...)), y = h + pn2(MLP(...)); the mlp
//   replacement takes post_mlp_norm only.
// Linear weights are [out, in] as Hugging Face stores them; biases and norm weights are optional (nullptr).
// The loss is the mean of (y − target)² over the elements of real tokens (key_mask = 1; all when no mask).
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>

#include "streamline/ops.h"

namespace streamline {

enum class ReplacementKind : int { MLP = 0, Layer = 1 };

enum ReplacementRole : int {
  kRoleAttnNormW, kRoleAttnNormB, kRoleQW, kRoleQB, kRoleKW, kRoleKB, kRoleVW, kRoleVB, kRoleOW, kRoleOB,
  kRoleMlpNormW, kRoleMlpNormB, kRoleGateW, kRoleUpW, kRoleUpB, kRoleDownW, kRoleDownB,
  kRoleQNormW, kRoleKNormW,  // [Dh] each; RMS norm only, both or neither (layer only)
  kRolePostAttnNormW,        // [D] (layer only)
  kRolePostMlpNormW,         // [D]
  kRoleCount
};
// The roles of the CUDA trainer's C API (STREAMLINE_CUDA_TRAIN_ROLES, its numbering): all before the q/k norms, which
// it takes through a function of their own.
constexpr int kCudaTrainRoles = kRoleQNormW;
// Every role a CUDA TrainStep can hold: the C API's plus the q/k norms and the post-sublayer norms, which it takes
// through functions of their own (streamline_cuda_train_set_qk_norm / _set_post_norm).
constexpr int kCudaHeldRoles = kRoleCount;
// "attn_norm.weight", "q.bias", …: the role names of LayerRole in packages/core/src/engine/description.ts.
const char* role_name(int role);

struct ReplacementSpec {
  size_t B = 0, T = 0, D = 0;          // batch, sequence length, hidden
  size_t H = 0, Hk = 0, Dh = 0;        // attention (layer only)
  size_t F = 0;                        // intermediate
  bool layer_norm = false;             // false: RMSNorm
  float norm_eps = 1e-5f;
  Activation act = Activation::SiLU;
  bool gated = true;
  bool use_rope = true;                // layer only; inv_freq has Dh/2 entries
  float attn_scale = 1.f;
  float rope_attention_scaling = 1.f;
  size_t window = 0;                   // layer only: sliding-window attention (keys per query; 0 = full causal)
  size_t rotary = 0;                   // layer only: RoPE on the leading dims of each head (0 = Dh); inv_freq has rotary/2
  float grad_scale = 1.f;              // gradients are scaled by this (e.g. 1/accumulation steps); the loss is not
};

using ReplacementParams = std::array<const float*, kRoleCount>;
using ReplacementGrads = std::array<float*, kRoleCount>;

// Shape of a role's tensor for the spec: [rows, cols] (cols = 1 for vectors).
void role_shape(const ReplacementSpec& s, int role, size_t* rows, size_t* cols);

// y[M, D] = R(x). positions[M] (int32) and inv_freq[Dh/2] are read for a layer with RoPE; key_mask[B, T] may be nullptr.
void replacement_forward(ReplacementKind kind, const ReplacementSpec& s, const ReplacementParams& p, float* y,
                         const float* x, const int32_t* positions, const uint8_t* key_mask, const float* inv_freq);

// Forward, loss and backward: returns the loss; grads[r] += grad_scale · dloss/dparam for every non-null pair.
// y (optional, [M, D]) receives the forward output.
double replacement_step(ReplacementKind kind, const ReplacementSpec& s, const ReplacementParams& p,
                        const ReplacementGrads& g, const float* x, const float* target, const int32_t* positions,
                        const uint8_t* key_mask, const float* inv_freq, float* y = nullptr);

// A loss on the output y[M, D]: fills dy (zeroed, [M, D]) with the gradient to propagate (already scaled) and
// returns the loss, or a negative number when there is nothing to learn from (then no gradient is taken).
using OutputLoss = std::function<double(const float* y, float* dy)>;

// replacement_step with any loss on the output. dx (optional, [M, D]) receives dloss/dx (overwritten); grads
// entries may all be nullptr (a frozen layer: input gradient only).
double replacement_step_with(ReplacementKind kind, const ReplacementSpec& s, const ReplacementParams& p,
                             const ReplacementGrads& g, const float* x, const int32_t* positions,
                             const uint8_t* key_mask, const float* inv_freq, const OutputLoss& loss, float* dx,
                             float* y = nullptr);

// Forward and loss only (validation): no gradients, no saved activations beyond one forward.
double replacement_loss(ReplacementKind kind, const ReplacementSpec& s, const ReplacementParams& p, const float* x,
                        const float* target, const int32_t* positions, const uint8_t* key_mask, const float* inv_freq);

}  // namespace streamline
