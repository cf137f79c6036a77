// Model head: final norm (RMS or LayerNorm with optional bias), optional OPT project_out (no bias), lm_head
// (weight [V, D'], any float dtype, possibly the tied embedding), then logits and/or per-token log-probs.
// Without a logits output, rows go through in chunks of about 32 Mi logits so [M, V] is never materialised.
#include <algorithm>
#include <vector>

#include "streamline/convert.h"
#include "streamline/error.h"
#include "streamline/matmul.h"
#include "streamline/model.h"

namespace streamline {

namespace {


std::vector<float> to_f32(const WeightView& w) {
  std::vector<float> out;
  if (!w) return out;
  out.resize(w.numel());
  convert_floats(out.data(), DType::F32, w.data, w.dtype, out.size());
  return out;
}

}  // namespace

void validate_head(const HeadSpec& s, const HeadWeights& w) {
  if (s.hidden == 0 || s.vocab == 0) throw Error("E_SHAPE", "head spec: hidden and vocab must be positive");
  const int64_t D = int64_t(s.hidden), V = int64_t(s.vocab), P = int64_t(s.proj_dim);
  if (!s.final_norm && (w.norm_w || w.norm_b)) throw Error("E_SHAPE", "final_norm: weights given but spec.norm is 'none'");
  check_weight(w.norm_w, "final_norm.weight", {D}, false);
  check_weight(w.norm_b, "final_norm.bias", {D}, false);
  if (s.norm == NormKind::Rms && w.norm_b) throw Error("E_SHAPE", "final_norm.bias: not used with an RMS norm");
  if (P) check_weight(w.project_out, "project_out.weight", {P, D}, true);
  else if (w.project_out) throw Error("E_SHAPE", "project_out.weight: given but spec.projDim is not set");
  check_weight(w.lm_head, "lm_head.weight", {V, P ? P : D}, true);
}

void head_forward(const float* x, size_t M, const HeadSpec& s, const HeadWeights& w, const int32_t* targets,
                  float* logits, float* logprobs) {
  const size_t D = s.hidden, V = s.vocab, P = s.proj_dim, Dp = P ? P : D;
  if (M == 0 || (!logits && !logprobs)) return;
  if (logprobs && !targets) throw Error("E_SHAPE", "head: log-probs need targets");
  if (logprobs)
    for (size_t m = 0; m < M; m++)
      if (targets[m] >= 0 && size_t(targets[m]) >= V)
        throw Error("E_TOKEN_RANGE", "head: target " + std::to_string(targets[m]) + " at row " + std::to_string(m) +
                                         " is outside the vocabulary [0, " + std::to_string(V) + ")");
  std::vector<float> nw = to_f32(w.norm_w), nb = to_f32(w.norm_b);
  const size_t chunk = logits ? M : std::max<size_t>(1, std::min(M, (size_t(32) << 20) / V));
  std::vector<float> h(chunk * D), p(P ? chunk * Dp : 0), scratch(logits ? 0 : chunk * V);
  for (size_t m0 = 0; m0 < M; m0 += chunk) {
    const size_t mc = std::min(chunk, M - m0);
    if (!s.final_norm) std::copy(x + m0 * D, x + (m0 + mc) * D, h.data());
    else if (s.norm == NormKind::Rms) rmsnorm_forward(h.data(), x + m0 * D, nw.empty() ? nullptr : nw.data(), DType::F32, mc, D, s.norm_eps);
    else layernorm_forward(h.data(), x + m0 * D, nw.empty() ? nullptr : nw.data(), nb.empty() ? nullptr : nb.data(), DType::F32, mc, D, s.norm_eps);
    const float* hin = h.data();
    if (P) {
      linear_forward(p.data(), h.data(), w.project_out.data, w.project_out.dtype, nullptr, mc, P, D);
      hin = p.data();
    }
    float* lg = logits ? logits + m0 * V : scratch.data();
    linear_forward(lg, hin, w.lm_head.data, w.lm_head.dtype, nullptr, mc, V, Dp);
    if (logprobs) token_logprobs(logprobs + m0, lg, targets + m0, mc, V);
  }
}

}  // namespace streamline
