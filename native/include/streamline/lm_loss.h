// The `lm` training objective (issue 9): only the replacement is trainable; the next-token loss of the frozen
// rest of the model (the layers after the window and the head) flows back to it as activation gradients. Frozen
// layers get no weight gradients and store only their input: their activations are recomputed in the backward.
//   loss = mean over rows m with targets[m] >= 0 of −log softmax(lm_head(final_norm(h_L[m])))[targets[m]]
// where h_L = frozen layers(R(x)). Shapes and roles as in model.h and replacement.h.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "streamline/model.h"
#include "streamline/replacement.h"

namespace streamline {

// dx[M, D] (overwritten) = dL/dx of one frozen pre-norm decoder layer for upstream dy = dL/dout, recomputing the
// forward from x. Weights of any float dtype (converted to f32 for the call: one layer's weights at a time).
// Throws E_UNSUPPORTED for post-norm layers and gate.bias, and what validate_layer throws.
void frozen_layer_backward(float* dx, const float* dy, const float* x, const LayerSpec& spec, const LayerWeights& w,
                           const int32_t* positions, const uint8_t* key_mask, const float* inv_freq);

// Mean next-token cross-entropy of the head on x[M, D] over rows with targets[m] >= 0, and (when dh is not
// nullptr) dh[M, D] = grad_scale · dloss/dx (overwritten). Logits exist only for a chunk of rows at a time.
// Returns −1 (dh zeroed) when no row has a target. Throws E_UNSUPPORTED for OPT project_out, E_TOKEN_RANGE for
// a target >= V.
double head_loss_backward(float* dh, const float* x, size_t M, const HeadSpec& spec, const HeadWeights& w,
                          const int32_t* targets, float grad_scale = 1.f);

// The frozen rest of the model after the window: decoder layers (same spec as the replacement's, in order)
// and the head. windows[k]: layer k's sliding window (0 = full causal; empty = all 0), which overrides
// layer.window. Layers whose RoPE differs from the replacement's (Gemma 3: sliding and full layers rotate with
// other bases): inv_freqs[k] is layer k's inverse frequencies [rotary / 2] and rope_scalings[k] its attention
// scaling; each empty = every layer uses the replacement's (the inv_freq argument, layer.rope_attention_scaling).
struct FrozenTail {
  LayerSpec layer;
  std::vector<LayerWeights> layers;
  std::vector<size_t> windows;
  std::vector<std::vector<float>> inv_freqs;
  std::vector<float> rope_scalings;
  HeadSpec head;
  HeadWeights head_w;
};

// LayerSpec of a replacement spec (same model, same batch).
LayerSpec layer_spec_of(const ReplacementSpec& s);
// Frozen layer k's spec: tail.layer with its own window and RoPE attention scaling.
LayerSpec tail_layer_spec(const FrozenTail& tail, size_t k);
// Frozen layer k's inverse frequencies: its own, or `shared` (the replacement's) when the tail has none.
const float* tail_inv_freq(const FrozenTail& tail, size_t k, const float* shared);

// One lm-loss training step: forward R(x) → frozen layers (their inputs kept) → head loss; backward in reverse;
// grads[r] += grad_scale · dloss/dparam as in replacement_step. Returns the loss (0 when no row has a target).
double lm_loss_step(ReplacementKind kind, const ReplacementSpec& s, const ReplacementParams& p,
                    const ReplacementGrads& g, const float* x, const FrozenTail& tail, const int32_t* targets,
                    const int32_t* positions, const uint8_t* key_mask, const float* inv_freq);

// Loss only (validation): mean next-token NLL, 0 when no row has a target.
double lm_loss_eval(ReplacementKind kind, const ReplacementSpec& s, const ReplacementParams& p, const float* x,
                    const FrozenTail& tail, const int32_t* targets, const int32_t* positions,
                    const uint8_t* key_mask, const float* inv_freq);

}  // namespace streamline
