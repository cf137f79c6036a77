// The `lm` objective (lm_loss.h). A frozen layer's backward is the replacement `layer` backward (replacement.cpp)
// run on f32 copies of its weights with no gradient buffers and the input gradient requested; its forward is
// recomputed there from the stored input. The head's cross-entropy runs in row chunks of about 32 Mi logits.
#include "streamline/lm_loss.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "streamline/convert.h"
#include "streamline/error.h"
#include "streamline/matmul.h"
#include "streamline/scratch.h"
#include "streamline/threads.h"

namespace streamline {

namespace {

// f32 copies of weights and the loss's work buffers come from the scratch cache: the same sizes every micro-batch.
using fvec = scratch_vector<float>;

fvec to_f32(const WeightView& w) {
  fvec out;
  if (!w) return out;
  out.resize(w.numel());
  convert_floats(out.data(), DType::F32, w.data, w.dtype, out.size());
  return out;
}
const float* ptr(const fvec& v) { return v.empty() ? nullptr : v.data(); }

void norm_forward(float* y, const float* x, const HeadSpec& s, const float* w, const float* b, size_t M) {
  if (s.norm == NormKind::Rms) rmsnorm_forward(y, x, w, DType::F32, M, s.hidden, s.norm_eps);
  else layernorm_forward(y, x, w, b, DType::F32, M, s.hidden, s.norm_eps);
}

}  // namespace

LayerSpec layer_spec_of(const ReplacementSpec& s) {
  LayerSpec l;
  l.batch = s.B, l.seq_len = s.T, l.hidden = s.D, l.heads = s.H, l.kv_heads = s.Hk, l.head_dim = s.Dh;
  l.intermediate = s.F;
  l.norm = s.layer_norm ? NormKind::Layer : NormKind::Rms;
  l.norm_eps = s.norm_eps, l.act = s.act, l.gated_mlp = s.gated, l.pre_norm = true, l.use_rope = s.use_rope;
  l.attn_scale = s.attn_scale, l.rope_attention_scaling = s.rope_attention_scaling, l.window = s.window;
  l.rotary_dim = s.rotary;
  return l;
}

LayerSpec tail_layer_spec(const FrozenTail& tail, size_t k) {
  LayerSpec l = tail.layer;
  l.window = k < tail.windows.size() ? tail.windows[k] : 0;
  if (k < tail.rope_scalings.size()) l.rope_attention_scaling = tail.rope_scalings[k];
  return l;
}

const float* tail_inv_freq(const FrozenTail& tail, size_t k, const float* shared) {
  return k < tail.inv_freqs.size() && !tail.inv_freqs[k].empty() ? tail.inv_freqs[k].data() : shared;
}

void frozen_layer_backward(float* dx, const float* dy, const float* x, const LayerSpec& s, const LayerWeights& w,
                           const int32_t* positions, const uint8_t* key_mask, const float* inv_freq) {
  validate_layer(s, w);
  if (!s.pre_norm) throw Error("E_UNSUPPORTED", "frozen layer backward: post-norm layers (OPT do_layer_norm_before = false) are not supported");
  if (w.gate_b) throw Error("E_UNSUPPORTED", "frozen layer backward: gate.bias (Llama mlp_bias) is not supported");
  if (s.use_rope && (!positions || !inv_freq))
    throw Error("E_SHAPE", "frozen layer backward: positions and rope inverse frequencies are required with RoPE");
  ReplacementSpec rs;
  rs.B = s.batch, rs.T = s.seq_len, rs.D = s.hidden, rs.H = s.heads, rs.Hk = s.kv_heads, rs.Dh = s.head_dim;
  rs.F = s.intermediate, rs.layer_norm = s.norm == NormKind::Layer, rs.norm_eps = s.norm_eps, rs.act = s.act;
  rs.gated = s.gated_mlp, rs.use_rope = s.use_rope, rs.rope_attention_scaling = s.rope_attention_scaling;
  rs.window = s.window, rs.rotary = s.rotary_dim;
  rs.attn_scale = s.attn_scale != 0.f ? s.attn_scale : 1.f / std::sqrt(float(s.head_dim));
  const WeightView* views[kRoleCount] = {&w.attn_norm_w, &w.attn_norm_b, &w.q_w, &w.q_b, &w.k_w, &w.k_b, &w.v_w,
                                         &w.v_b, &w.o_w, &w.o_b, &w.mlp_norm_w, &w.mlp_norm_b, &w.gate_w, &w.up_w,
                                         &w.up_b, &w.down_w, &w.down_b, &w.q_norm_w, &w.k_norm_w,
                                         &w.post_attn_norm_w, &w.post_mlp_norm_w};
  std::vector<fvec> f32(kRoleCount);
  ReplacementParams p{};
  for (int r = 0; r < kRoleCount; r++) {
    f32[r] = to_f32(*views[r]);
    p[r] = ptr(f32[r]);
  }
  const size_t n = s.batch * s.seq_len * s.hidden;
  replacement_step_with(ReplacementKind::Layer, rs, p, ReplacementGrads{}, x, positions, key_mask, inv_freq,
                        [&](const float*, float* d) { std::memcpy(d, dy, n * sizeof(float)); return 0.0; }, dx);
}

double head_loss_backward(float* dh, const float* x, size_t M, const HeadSpec& s, const HeadWeights& w,
                          const int32_t* targets, float grad_scale) {
  validate_head(s, w);
  if (s.proj_dim || w.project_out)
    throw Error("E_UNSUPPORTED", "head loss backward: OPT project_out (word_embed_proj_dim != hidden) is not supported by --loss lm");
  const size_t D = s.hidden, V = s.vocab;
  if (dh) std::fill(dh, dh + M * D, 0.f);
  size_t count = 0;
  for (size_t m = 0; m < M; m++) {
    if (targets[m] < 0) continue;
    if (size_t(targets[m]) >= V)
      throw Error("E_TOKEN_RANGE", "head loss: target " + std::to_string(targets[m]) + " at row " + std::to_string(m) +
                                       " is outside the vocabulary [0, " + std::to_string(V) + ")");
    count++;
  }
  if (count == 0) return -1.0;
  fvec nw = to_f32(w.norm_w), nb = to_f32(w.norm_b);
  fvec wf = dh && w.lm_head.dtype != DType::F32 ? to_f32(w.lm_head) : fvec();
  const float* W = dh ? (wf.empty() ? static_cast<const float*>(w.lm_head.data) : wf.data()) : nullptr;
  const size_t chunk = std::max<size_t>(1, std::min(M, (size_t(32) << 20) / V));
  fvec hn(chunk * D), logits(chunk * V), dhn(dh ? chunk * D : 0);
  std::vector<double> nll(M, 0.0);
  const double scale = double(grad_scale) / double(count);
  for (size_t m0 = 0; m0 < M; m0 += chunk) {
    const size_t mc = std::min(chunk, M - m0);
    const float* xc = x + m0 * D;
    if (s.final_norm) norm_forward(hn.data(), xc, s, ptr(nw), ptr(nb), mc);
    else std::copy(xc, xc + mc * D, hn.data());
    linear_forward(logits.data(), hn.data(), w.lm_head.data, w.lm_head.dtype, nullptr, mc, V, D);
    parallel_for(mc, 4, [&](size_t b, size_t e, int) {
      for (size_t i = b; i < e; i++) {
        float* lg = logits.data() + i * V;
        const int32_t t = targets[m0 + i];
        if (t < 0) {
          std::fill(lg, lg + V, 0.f);
          continue;
        }
        float mx = lg[0];
        for (size_t v = 1; v < V; v++) mx = std::max(mx, lg[v]);
        double sum = 0;
        for (size_t v = 0; v < V; v++) sum += std::exp(double(lg[v]) - mx);
        const double lse = double(mx) + std::log(sum);
        nll[m0 + i] = lse - double(lg[t]);
        for (size_t v = 0; v < V; v++) lg[v] = float(std::exp(double(lg[v]) - lse) * scale);
        lg[t] -= float(scale);
      }
    });
    if (!dh) continue;
    gemm_f32(dhn.data(), logits.data(), W, mc, D, V, /*b_transposed=*/false, /*accumulate=*/false);
    float* dc = dh + m0 * D;
    if (!s.final_norm) std::copy(dhn.data(), dhn.data() + mc * D, dc);
    else if (s.norm == NormKind::Rms) rmsnorm_backward(dc, nullptr, dhn.data(), xc, ptr(nw), mc, D, s.norm_eps);
    else layernorm_backward(dc, nullptr, nullptr, dhn.data(), xc, ptr(nw), mc, D, s.norm_eps);
  }
  double loss = 0;
  for (double v : nll) loss += v;
  return loss / double(count);
}

double lm_loss_step(ReplacementKind kind, const ReplacementSpec& s, const ReplacementParams& p,
                    const ReplacementGrads& g, const float* x, const FrozenTail& tail, const int32_t* targets,
                    const int32_t* positions, const uint8_t* key_mask, const float* inv_freq) {
  const size_t M = s.B * s.T, n = M * s.D;
  auto loss_fn = [&](const float* y, float* dy) -> double {
    const size_t L = tail.layers.size();
    std::vector<fvec> inputs(L);  // the only activations kept: each frozen layer's input
    fvec cur(y, y + n);
    for (size_t k = 0; k < L; k++) {
      inputs[k] = cur;
      decoder_layer_forward(cur.data(), inputs[k].data(), tail_layer_spec(tail, k), tail.layers[k], positions, key_mask,
                            tail_inv_freq(tail, k, inv_freq), nullptr);
    }
    fvec d(n), dprev(n);
    double loss = head_loss_backward(d.data(), cur.data(), M, tail.head, tail.head_w, targets, s.grad_scale);
    if (loss < 0) return -1.0;
    for (size_t k = L; k-- > 0;) {
      frozen_layer_backward(dprev.data(), d.data(), inputs[k].data(), tail_layer_spec(tail, k), tail.layers[k],
                            positions, key_mask, tail_inv_freq(tail, k, inv_freq));
      std::swap(d, dprev);
      inputs[k].clear();
      inputs[k].shrink_to_fit();
    }
    std::memcpy(dy, d.data(), n * sizeof(float));
    return loss;
  };
  return replacement_step_with(kind, s, p, g, x, positions, key_mask, inv_freq, loss_fn, nullptr);
}

double lm_loss_eval(ReplacementKind kind, const ReplacementSpec& s, const ReplacementParams& p, const float* x,
                    const FrozenTail& tail, const int32_t* targets, const int32_t* positions,
                    const uint8_t* key_mask, const float* inv_freq) {
  const size_t M = s.B * s.T;
  if (M == 0 || s.D == 0) return 0.0;
  fvec h(M * s.D);
  replacement_forward(kind, s, p, h.data(), x, positions, key_mask, inv_freq);
  for (size_t k = 0; k < tail.layers.size(); k++)
    decoder_layer_forward(h.data(), h.data(), tail_layer_spec(tail, k), tail.layers[k], positions, key_mask,
                          tail_inv_freq(tail, k, inv_freq), nullptr);
  double loss = head_loss_backward(nullptr, h.data(), M, tail.head, tail.head_w, targets);
  return loss < 0 ? 0.0 : loss;
}

}  // namespace streamline
