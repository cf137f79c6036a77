// One transformer decoder layer on f32 activations with weights read in place (f32/bf16/f16).
//
// Pre-norm (Llama, Mistral, Qwen2, OPT with do_layer_norm_before):
//   r   = x + o(attn(rope(q(n1(x))), rope(k(n1(x))), v(n1(x))))
//   out = r + down(act(gate(n2(r))) * up(n2(r)))      gated MLP (SwiGLU)
//   out = r + down(act(up(n2(r))))                    plain MLP (OPT fc1 = up, fc2 = down)
// With post_attn_norm / post_mlp_norm (Gemma 2/3 "sandwich" norms) each sub-block's output is normed (the layer's
// norm kind and eps, weight only) before its residual add:
//   r   = x + pn1(o(attn(...)))
//   out = r + pn2(mlp(n2(r)))
// Post-norm (OPT do_layer_norm_before = false):
//   r   = n1(x + o(attn(q(x), k(x), v(x))))
//   out = n2(r + mlp(r))
// Linear layers add their bias when present (Qwen2 q/k/v, OPT everywhere). With q_norm/k_norm (Qwen3) each head's
// row of q(n1(x)) and k(n1(x)) is RMS-normed over head_dim (eps norm_eps) before RoPE. RoPE tables come from
// rope_tables(positions, inv_freq) times rope_attention_scaling, over the leading rotary_dim dims of each head (all
// unless partial, Phi-3's partial_rotary_factor); the caller computes inv_freq [rotary_dim/2] for the
// model's scaling type. Attention is causal with the padding key mask and scale attn_scale
// (1/sqrt(head_dim) when 0). Scratch is allocated per call: about five [M, max(D, H*Dh)] buffers plus two
// [rows, F] MLP buffers (the MLP runs in row chunks of at most 16 Mi floats per buffer).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include "streamline/convert.h"
#include "streamline/error.h"
#include "streamline/matmul.h"
#include "streamline/model.h"
#include "streamline/threads.h"

namespace streamline {

namespace {

const struct { const char* name; WeightView LayerWeights::*member; } kRoles[] = {
    {"attn_norm.weight", &LayerWeights::attn_norm_w}, {"attn_norm.bias", &LayerWeights::attn_norm_b},
    {"q.weight", &LayerWeights::q_w},                 {"q.bias", &LayerWeights::q_b},
    {"k.weight", &LayerWeights::k_w},                 {"k.bias", &LayerWeights::k_b},
    {"v.weight", &LayerWeights::v_w},                 {"v.bias", &LayerWeights::v_b},
    {"o.weight", &LayerWeights::o_w},                 {"o.bias", &LayerWeights::o_b},
    {"mlp_norm.weight", &LayerWeights::mlp_norm_w},   {"mlp_norm.bias", &LayerWeights::mlp_norm_b},
    {"gate.weight", &LayerWeights::gate_w},           {"gate.bias", &LayerWeights::gate_b},
    {"up.weight", &LayerWeights::up_w},
    {"up.bias", &LayerWeights::up_b},                 {"down.weight", &LayerWeights::down_w},
    {"down.bias", &LayerWeights::down_b},
    {"q_norm.weight", &LayerWeights::q_norm_w},       {"k_norm.weight", &LayerWeights::k_norm_w},
    {"post_attn_norm.weight", &LayerWeights::post_attn_norm_w},
    {"post_mlp_norm.weight", &LayerWeights::post_mlp_norm_w},
};


void check_absent(const WeightView& w, const char* role, const char* why) {
  if (w) throw Error("E_SHAPE", std::string(role) + ": not used " + why);
}

std::vector<float> to_f32(const WeightView& w) {
  std::vector<float> out;
  if (!w) return out;
  out.resize(w.numel());
  convert_floats(out.data(), DType::F32, w.data, w.dtype, out.size());
  return out;
}
const float* ptr(const std::vector<float>& v) { return v.empty() ? nullptr : v.data(); }

// Scratch that is fully written before it is read: no zero fill (std::vector would memset ~10 buffers of
// [M, max(D, F)] per layer call).
struct Scratch {
  std::unique_ptr<float[]> p;
  explicit Scratch(size_t n) : p(n ? new float[n] : nullptr) {}
  float* data() { return p.get(); }
  void release() { p.reset(); }
};

void norm(float* y, const float* x, NormKind kind, const std::vector<float>& w, const std::vector<float>& b, size_t M,
          size_t D, float eps) {
  if (kind == NormKind::Rms) rmsnorm_forward(y, x, ptr(w), DType::F32, M, D, eps);
  else layernorm_forward(y, x, ptr(w), ptr(b), DType::F32, M, D, eps);
}

void linear(float* y, const float* x, const WeightView& w, const std::vector<float>& bias, size_t M, size_t N, size_t K) {
  linear_forward(y, x, w.data, w.dtype, ptr(bias), M, N, K);
}

void add_into(float* out, const float* a, const float* b, size_t n) {
  parallel_for(n, 1 << 16, [&](size_t s, size_t e, int) {
    for (size_t i = s; i < e; i++) out[i] = a[i] + b[i];
  });
}

// m[M, D] = MLP(h[M, D]) in row chunks.
void mlp(float* m, const float* h, const LayerSpec& s, const LayerWeights& w, size_t M) {
  const size_t D = s.hidden, F = s.intermediate;
  std::vector<float> up_b = to_f32(w.up_b), down_b = to_f32(w.down_b), gate_b = to_f32(w.gate_b);
  const size_t chunk = std::max<size_t>(1, std::min(M, (size_t(16) << 20) / std::max<size_t>(F, 1)));
  Scratch g(s.gated_mlp ? chunk * F : 0), u(chunk * F);
  for (size_t m0 = 0; m0 < M; m0 += chunk) {
    size_t mc = std::min(chunk, M - m0);
    const float* hc = h + m0 * D;
    linear(u.data(), hc, w.up_w, up_b, mc, F, D);
    if (s.gated_mlp) {
      linear(g.data(), hc, w.gate_w, gate_b, mc, F, D);
      gated_forward(u.data(), g.data(), u.data(), mc * F, s.act);
    } else {
      activation_forward(u.data(), u.data(), mc * F, s.act);
    }
    linear(m + m0 * D, u.data(), w.down_w, down_b, mc, D, F);
  }
}

}  // namespace

WeightView* layer_weight_role(LayerWeights& w, const std::string& role) {
  for (auto& r : kRoles)
    if (role == r.name) return &(w.*(r.member));
  return nullptr;
}

const std::vector<std::string>& layer_weight_roles() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (auto& r : kRoles) v.push_back(r.name);
    return v;
  }();
  return names;
}

void validate_layer(const LayerSpec& s, const LayerWeights& w, bool mlp_only) {
  const int64_t D = int64_t(s.hidden), F = int64_t(s.intermediate);
  if (s.hidden == 0 || s.intermediate == 0) throw Error("E_SHAPE", "spec: hidden and intermediate must be positive");
  if (s.norm_eps < 0 || !std::isfinite(s.norm_eps)) throw Error("E_SHAPE", "spec: normEps must be a finite number >= 0");
  check_weight(w.mlp_norm_w, "mlp_norm.weight", {D}, false);
  check_weight(w.mlp_norm_b, "mlp_norm.bias", {D}, false);
  if (s.norm == NormKind::Rms) check_absent(w.mlp_norm_b, "mlp_norm.bias", "with an RMS norm");
  if (s.gated_mlp) {
    check_weight(w.gate_w, "gate.weight", {F, D}, true);
    check_weight(w.gate_b, "gate.bias", {F}, false);
  } else {
    check_absent(w.gate_w, "gate.weight", "without a gated MLP");
    check_absent(w.gate_b, "gate.bias", "without a gated MLP");
  }
  check_weight(w.up_w, "up.weight", {F, D}, true);
  check_weight(w.up_b, "up.bias", {F}, false);
  check_weight(w.down_w, "down.weight", {D, F}, true);
  check_weight(w.down_b, "down.bias", {D}, false);
  check_weight(w.post_mlp_norm_w, "post_mlp_norm.weight", {D}, false);
  // A post-norm layer already norms after each residual add; a second norm has no defined place there.
  if (!s.pre_norm) check_absent(w.post_mlp_norm_w, "post_mlp_norm.weight", "in a post-norm (OPT-style) layer");
  if (mlp_only) {
    check_absent(w.post_attn_norm_w, "post_attn_norm.weight", "by an MLP block (it has no attention)");
    return;
  }
  const int64_t H = int64_t(s.heads), Hk = int64_t(s.kv_heads), Dh = int64_t(s.head_dim);
  if (H <= 0 || Hk <= 0 || Dh <= 0) throw Error("E_SHAPE", "spec: heads, kvHeads and headDim must be positive");
  if (H % Hk != 0)
    throw Error("E_SHAPE", "spec: heads (" + std::to_string(H) + ") must be a multiple of kvHeads (" + std::to_string(Hk) + ")");
  if (s.use_rope && Dh % 2 != 0) throw Error("E_SHAPE", "spec: headDim must be even with RoPE");
  if (s.rotary_dim % 2 != 0 || int64_t(s.rotary_dim) > Dh)
    throw Error("E_SHAPE", "spec: rotaryDim must be even and at most headDim (0 = headDim)");
  if (!std::isfinite(s.attn_scale) || !std::isfinite(s.rope_attention_scaling))
    throw Error("E_SHAPE", "spec: attnScale and ropeAttentionScaling must be finite");
  check_weight(w.attn_norm_w, "attn_norm.weight", {D}, false);
  check_weight(w.attn_norm_b, "attn_norm.bias", {D}, false);
  if (s.norm == NormKind::Rms) check_absent(w.attn_norm_b, "attn_norm.bias", "with an RMS norm");
  check_weight(w.q_w, "q.weight", {H * Dh, D}, true);
  check_weight(w.q_b, "q.bias", {H * Dh}, false);
  check_weight(w.k_w, "k.weight", {Hk * Dh, D}, true);
  check_weight(w.k_b, "k.bias", {Hk * Dh}, false);
  check_weight(w.v_w, "v.weight", {Hk * Dh, D}, true);
  check_weight(w.v_b, "v.bias", {Hk * Dh}, false);
  check_weight(w.o_w, "o.weight", {D, H * Dh}, true);
  check_weight(w.o_b, "o.bias", {D}, false);
  check_weight(w.q_norm_w, "q_norm.weight", {Dh}, false);
  check_weight(w.k_norm_w, "k_norm.weight", {Dh}, false);
  if (s.norm != NormKind::Rms) {
    check_absent(w.q_norm_w, "q_norm.weight", "with a LayerNorm (q/k norms are RMSNorms)");
    check_absent(w.k_norm_w, "k_norm.weight", "with a LayerNorm (q/k norms are RMSNorms)");
  }
  if (bool(w.q_norm_w) != bool(w.k_norm_w)) throw Error("E_SHAPE", "q_norm.weight and k_norm.weight: give both or neither");
  check_weight(w.post_attn_norm_w, "post_attn_norm.weight", {D}, false);
  if (!s.pre_norm) check_absent(w.post_attn_norm_w, "post_attn_norm.weight", "in a post-norm (OPT-style) layer");
}

void mlp_block_forward(float* out, const float* x, const LayerSpec& s, const LayerWeights& w, float* mlp_out) {
  const size_t M = s.batch * s.seq_len, D = s.hidden;
  if (M == 0) return;
  std::vector<float> nw = to_f32(w.mlp_norm_w), nb = to_f32(w.mlp_norm_b);
  Scratch mbuf(mlp_out ? 0 : M * D);
  float* m = mlp_out ? mlp_out : mbuf.data();
  if (s.pre_norm) {
    Scratch h(M * D);
    norm(h.data(), x, s.norm, nw, nb, M, D, s.norm_eps);
    mlp(m, h.data(), s, w, M);
    if (w.post_mlp_norm_w) norm(m, m, s.norm, to_f32(w.post_mlp_norm_w), {}, M, D, s.norm_eps);
    add_into(out, x, m, M * D);
  } else {
    mlp(m, x, s, w, M);
    add_into(out, x, m, M * D);
    norm(out, out, s.norm, nw, nb, M, D, s.norm_eps);
  }
}

void decoder_layer_forward(float* out, const float* x, const LayerSpec& s, const LayerWeights& w,
                           const int32_t* positions, const uint8_t* key_mask, const float* rope_inv_freq,
                           LayerCaptures* captures) {
  const size_t B = s.batch, T = s.seq_len, M = B * T, D = s.hidden;
  const size_t H = s.heads, Hk = s.kv_heads, Dh = s.head_dim, QD = H * Dh, KD = Hk * Dh;
  if (M == 0) return;
  if (s.use_rope && (!positions || !rope_inv_freq))
    throw Error("E_SHAPE", "decoder layer: positions and rope inverse frequencies are required with RoPE");
  const float scale = s.attn_scale != 0.0f ? s.attn_scale : 1.0f / std::sqrt(float(Dh));

  // ---- attention half
  std::vector<float> n1w = to_f32(w.attn_norm_w), n1b = to_f32(w.attn_norm_b);
  std::vector<float> qb = to_f32(w.q_b), kb = to_f32(w.k_b), vb = to_f32(w.v_b), ob = to_f32(w.o_b);
  Scratch a(M * std::max(D, QD));  // n1(x), later the o-projection output
  Scratch q(M * QD), k(M * KD), v(M * KD), att(M * QD);
  const float* ain = x;
  if (s.pre_norm) {
    norm(a.data(), x, s.norm, n1w, n1b, M, D, s.norm_eps);
    ain = a.data();
  }
  linear(q.data(), ain, w.q_w, qb, M, QD, D);
  linear(k.data(), ain, w.k_w, kb, M, KD, D);
  linear(v.data(), ain, w.v_w, vb, M, KD, D);
  // Rows of [M*heads, Dh]: one norm per head and token, as HF views the projection as [.., heads, head_dim].
  if (w.q_norm_w) rmsnorm_forward(q.data(), q.data(), w.q_norm_w.data, w.q_norm_w.dtype, M * H, Dh, s.norm_eps);
  if (w.k_norm_w) rmsnorm_forward(k.data(), k.data(), w.k_norm_w.data, w.k_norm_w.dtype, M * Hk, Dh, s.norm_eps);
  if (s.use_rope) {
    const size_t rot = s.rotary_dim ? s.rotary_dim : Dh, half = rot / 2;
    Scratch cs(M * half), sn(M * half);
    rope_tables(cs.data(), sn.data(), positions, rope_inv_freq, M, half, s.rope_attention_scaling);
    rope_forward(q.data(), cs.data(), sn.data(), M, H, Dh, rot);
    rope_forward(k.data(), cs.data(), sn.data(), M, Hk, Dh, rot);
  }
  attention_forward(att.data(), nullptr, q.data(), k.data(), v.data(), key_mask, B, T, H, Hk, Dh, scale, s.window);
  q.release(); k.release(); v.release();
  linear(a.data(), att.data(), w.o_w, ob, M, D, QD);
  att.release();
  if (w.post_attn_norm_w) norm(a.data(), a.data(), s.norm, to_f32(w.post_attn_norm_w), {}, M, D, s.norm_eps);
  add_into(out, x, a.data(), M * D);  // out may alias x: elementwise, read before write
  if (captures && captures->attn_residual) std::memcpy(captures->attn_residual, out, M * D * sizeof(float));
  if (!s.pre_norm) norm(out, out, s.norm, n1w, n1b, M, D, s.norm_eps);
  a.release();

  // ---- MLP half, in place on out
  mlp_block_forward(out, out, s, w, captures ? captures->mlp_out : nullptr);
}

}  // namespace streamline
