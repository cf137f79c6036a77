// Forward + backward of the `mlp` and `layer` replacements (see replacement.h), built from the kernels of ops.h
// with f32 master weights. Saved activations: the normed inputs, q/k (after RoPE), v, the attention output and
// its log-sum-exp, the q/k projections before their per-head norm (Qwen3 q_norm/k_norm, when present), the residual
// after attention, the MLP's gate/up/hidden values, and each sub-block's output before its post-sublayer norm (when
// there is one); nothing is recomputed except the attention probabilities
// (blockwise, inside attention_backward). The same code gives the input
// gradient of a frozen layer (lm_loss.cpp: null gradient buffers, dx requested).
#include "streamline/replacement.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "streamline/matmul.h"
#include "streamline/scratch.h"
#include "streamline/threads.h"

namespace streamline {

namespace {

const char* const kRoleNames[kRoleCount] = {
    "attn_norm.weight", "attn_norm.bias", "q.weight", "q.bias", "k.weight", "k.bias", "v.weight", "v.bias",
    "o.weight", "o.bias", "mlp_norm.weight", "mlp_norm.bias", "gate.weight", "up.weight", "up.bias",
    "down.weight", "down.bias", "q_norm.weight", "k_norm.weight", "post_attn_norm.weight", "post_mlp_norm.weight"};

// Work buffers come from the scratch cache (scratch.h): the same sizes every micro-batch.
using fvec = scratch_vector<float>;

struct Saved {
  // attention block (layer only)
  fvec a, q, k, v, attn, lse, h1, cos, sin;
  fvec q_pre, k_pre;  // q(a), k(a) before the per-head q/k norm (only with q_norm/k_norm)
  fvec o_pre;  // o(attn) before post_attn_norm (only with it)
  // MLP block
  fvec n2, gate, up, mid;
  fvec m_pre;  // MLP output before post_mlp_norm (only with it)
};

// The training forward: one BLAS call per product (row invariance buys nothing for a fixed training batch; the
// per-64-row calls cost ~1/3 of an mlp step's forward).
void train_linear(float* y, const float* x, const float* w, const float* bias, size_t M, size_t N, size_t K,
                  bool accumulate = false) {
  linear_forward(y, x, w, DType::F32, bias, M, N, K, accumulate, /*row_invariant=*/false);
}

void norm_forward(const ReplacementSpec& s, float* y, const float* x, const float* w, const float* b, size_t M) {
  if (s.layer_norm) layernorm_forward(y, x, w, b, DType::F32, M, s.D, s.norm_eps);
  else rmsnorm_forward(y, x, w, DType::F32, M, s.D, s.norm_eps);
}

// dx += d norm(x)/dx · dy, dw/db += their gradients (each nullable).
void norm_backward(const ReplacementSpec& s, float* dx, float* dw, float* db, const float* dy, const float* x,
                   const float* w, size_t M) {
  if (s.layer_norm) layernorm_backward(dx, dw, db, dy, x, w, M, s.D, s.norm_eps);
  else rmsnorm_backward(dx, dw, dy, x, w, M, s.D, s.norm_eps);
}

// y = x + post(pre) when the post-sublayer norm w is present, else y = x + pre (then pre_saved stays empty).
// pre_saved keeps the norm's input for its backward; y may not alias x or pre.
void add_post_normed(const ReplacementSpec& s, float* y, const float* x, const float* w, fvec& pre, fvec& pre_saved,
                     size_t M) {
  const size_t n = M * s.D;
  if (w) {
    pre_saved.assign(pre.begin(), pre.end());
    norm_forward(s, pre.data(), pre_saved.data(), w, nullptr, M);
  }
  parallel_for(n, 1 << 16, [&](size_t b, size_t e, int) {
    for (size_t i = b; i < e; i++) y[i] = x[i] + pre[i];
  });
}

// The gradient reaching a sub-block's output before its post-sublayer norm: dy itself without the norm (then dpre is
// not touched and dy is returned), else written into dpre (zeroed here), with the norm's weight gradient into dw.
const float* post_norm_backward(const ReplacementSpec& s, fvec& dpre, float* dw, const float* dy, const float* w,
                                const fvec& pre_saved, size_t M) {
  if (!w) return dy;
  dpre.assign(M * s.D, 0.f);
  norm_backward(s, dpre.data(), dw, nullptr, dy, pre_saved.data(), w, M);
  return dpre.data();
}

// y = x + MLP(norm(x)); y may not alias x.
void mlp_forward(const ReplacementSpec& s, const ReplacementParams& p, float* y, const float* x, Saved& A, size_t M) {
  const size_t D = s.D, F = s.F;
  A.n2.resize(M * D);
  norm_forward(s, A.n2.data(), x, p[kRoleMlpNormW], p[kRoleMlpNormB], M);
  A.up.resize(M * F);
  A.mid.resize(M * F);
  train_linear(A.up.data(), A.n2.data(), p[kRoleUpW], p[kRoleUpB], M, F, D);
  if (s.gated) {
    A.gate.resize(M * F);
    train_linear(A.gate.data(), A.n2.data(), p[kRoleGateW], nullptr, M, F, D);
    gated_forward(A.mid.data(), A.gate.data(), A.up.data(), M * F, s.act);
  } else {
    activation_forward(A.mid.data(), A.up.data(), M * F, s.act);
  }
  if (!p[kRolePostMlpNormW]) {  // the common case adds in place: no [M, D] output buffer
    std::memcpy(y, x, M * D * sizeof(float));
    train_linear(y, A.mid.data(), p[kRoleDownW], p[kRoleDownB], M, D, F, /*accumulate=*/true);
    return;
  }
  fvec m(M * D);
  train_linear(m.data(), A.mid.data(), p[kRoleDownW], p[kRoleDownB], M, D, F);
  add_post_normed(s, y, x, p[kRolePostMlpNormW], m, A.m_pre, M);
}

// Gradients of the MLP block's parameters for upstream dy (the gradient with respect to x is not needed:
// a replacement's input is data; a layer's MLP input gradient is computed by the caller's path when needed).
// dx_norm (optional, [M, D]) receives += the gradient that flows into x through the norm.
void mlp_backward(const ReplacementSpec& s, const ReplacementParams& p, const ReplacementGrads& g, const float* dy,
                  const float* x, const Saved& A, size_t M, float* dx_norm) {
  const size_t D = s.D, F = s.F;
  fvec dmid(M * F), dup(M * F, 0.f), dn(M * D), dm;
  const float* dmo = post_norm_backward(s, dm, g[kRolePostMlpNormW], dy, p[kRolePostMlpNormW], A.m_pre, M);
  linear_backward(dmid.data(), g[kRoleDownW], g[kRoleDownB], dmo, A.mid.data(), p[kRoleDownW], M, D, F);
  if (s.gated) {
    fvec dgate(M * F, 0.f);
    gated_backward(dgate.data(), dup.data(), dmid.data(), A.gate.data(), A.up.data(), M * F, s.act);
    linear_backward(dn.data(), g[kRoleGateW], nullptr, dgate.data(), A.n2.data(), p[kRoleGateW], M, F, D);
    linear_backward(nullptr, g[kRoleUpW], g[kRoleUpB], dup.data(), A.n2.data(), p[kRoleUpW], M, F, D);
    gemm_f32(dn.data(), dup.data(), p[kRoleUpW], M, D, F, false, /*accumulate=*/true);
  } else {
    activation_backward(dup.data(), dmid.data(), A.up.data(), M * F, s.act);
    linear_backward(dn.data(), g[kRoleUpW], g[kRoleUpB], dup.data(), A.n2.data(), p[kRoleUpW], M, F, D);
  }
  norm_backward(s, dx_norm, g[kRoleMlpNormW], g[kRoleMlpNormB], dn.data(), x, p[kRoleMlpNormW], M);
}

// h1 = x + o(attn(rope(q(a)), rope(k(a)), v(a))), a = norm(x); o(...) post-normed with post_attn_norm.
void attn_forward(const ReplacementSpec& s, const ReplacementParams& p, float* h1, const float* x, Saved& A, size_t M,
                  const int32_t* positions, const uint8_t* key_mask, const float* inv_freq) {
  const size_t D = s.D, Q = s.H * s.Dh, KV = s.Hk * s.Dh;
  A.a.resize(M * D);
  norm_forward(s, A.a.data(), x, p[kRoleAttnNormW], p[kRoleAttnNormB], M);
  A.q.resize(M * Q);
  A.k.resize(M * KV);
  A.v.resize(M * KV);
  train_linear(A.q.data(), A.a.data(), p[kRoleQW], p[kRoleQB], M, Q, D);
  train_linear(A.k.data(), A.a.data(), p[kRoleKW], p[kRoleKB], M, KV, D);
  train_linear(A.v.data(), A.a.data(), p[kRoleVW], p[kRoleVB], M, KV, D);
  if (p[kRoleQNormW]) {  // per-head rows [M·H, Dh]; the norm's input is kept for its backward
    A.q_pre.assign(A.q.begin(), A.q.end());
    A.k_pre.assign(A.k.begin(), A.k.end());
    rmsnorm_forward(A.q.data(), A.q_pre.data(), p[kRoleQNormW], DType::F32, M * s.H, s.Dh, s.norm_eps);
    rmsnorm_forward(A.k.data(), A.k_pre.data(), p[kRoleKNormW], DType::F32, M * s.Hk, s.Dh, s.norm_eps);
  }
  if (s.use_rope) {
    const size_t rot = s.rotary ? s.rotary : s.Dh, half = rot / 2;
    A.cos.resize(M * half);
    A.sin.resize(M * half);
    rope_tables(A.cos.data(), A.sin.data(), positions, inv_freq, M, half, s.rope_attention_scaling);
    rope_forward(A.q.data(), A.cos.data(), A.sin.data(), M, s.H, s.Dh, rot);
    rope_forward(A.k.data(), A.cos.data(), A.sin.data(), M, s.Hk, s.Dh, rot);
  }
  A.attn.resize(M * Q);
  A.lse.resize(s.B * s.H * s.T);
  attention_forward(A.attn.data(), A.lse.data(), A.q.data(), A.k.data(), A.v.data(), key_mask, s.B, s.T, s.H, s.Hk,
                    s.Dh, s.attn_scale, s.window);
  if (!p[kRolePostAttnNormW]) {
    std::memcpy(h1, x, M * D * sizeof(float));
    train_linear(h1, A.attn.data(), p[kRoleOW], p[kRoleOB], M, D, Q, /*accumulate=*/true);
    return;
  }
  fvec o(M * D);
  train_linear(o.data(), A.attn.data(), p[kRoleOW], p[kRoleOB], M, D, Q);
  add_post_normed(s, h1, x, p[kRolePostAttnNormW], o, A.o_pre, M);
}

// dx_norm (optional, [M, D]) receives += the gradient that flows into x through the attention norm.
void attn_backward(const ReplacementSpec& s, const ReplacementParams& p, const ReplacementGrads& g, const float* dh,
                   const float* x, const Saved& A, size_t M, const uint8_t* key_mask, float* dx_norm) {
  const size_t D = s.D, Q = s.H * s.Dh, KV = s.Hk * s.Dh;
  fvec dattn(M * Q), dq(M * Q), dk(M * KV), dv(M * KV), da(M * D), dop;
  const float* dout = post_norm_backward(s, dop, g[kRolePostAttnNormW], dh, p[kRolePostAttnNormW], A.o_pre, M);
  linear_backward(dattn.data(), g[kRoleOW], g[kRoleOB], dout, A.attn.data(), p[kRoleOW], M, D, Q);
  attention_backward(dq.data(), dk.data(), dv.data(), dattn.data(), A.q.data(), A.k.data(), A.v.data(), A.attn.data(),
                     A.lse.data(), key_mask, s.B, s.T, s.H, s.Hk, s.Dh, s.attn_scale, s.window);
  if (s.use_rope) {
    rope_backward(dq.data(), A.cos.data(), A.sin.data(), M, s.H, s.Dh, s.rotary);
    rope_backward(dk.data(), A.cos.data(), A.sin.data(), M, s.Hk, s.Dh, s.rotary);
  }
  if (p[kRoleQNormW]) {  // dq/dk become the gradients of the projections; the weight gradients sum over all rows
    fvec dqp(M * Q, 0.f), dkp(M * KV, 0.f);
    rmsnorm_backward(dqp.data(), g[kRoleQNormW], dq.data(), A.q_pre.data(), p[kRoleQNormW], M * s.H, s.Dh, s.norm_eps);
    rmsnorm_backward(dkp.data(), g[kRoleKNormW], dk.data(), A.k_pre.data(), p[kRoleKNormW], M * s.Hk, s.Dh, s.norm_eps);
    std::swap(dq, dqp);
    std::swap(dk, dkp);
  }
  linear_backward(da.data(), g[kRoleQW], g[kRoleQB], dq.data(), A.a.data(), p[kRoleQW], M, Q, D);
  linear_backward(nullptr, g[kRoleKW], g[kRoleKB], dk.data(), A.a.data(), p[kRoleKW], M, KV, D);
  gemm_f32(da.data(), dk.data(), p[kRoleKW], M, D, KV, false, true);
  linear_backward(nullptr, g[kRoleVW], g[kRoleVB], dv.data(), A.a.data(), p[kRoleVW], M, KV, D);
  gemm_f32(da.data(), dv.data(), p[kRoleVW], M, D, KV, false, true);
  norm_backward(s, dx_norm, g[kRoleAttnNormW], g[kRoleAttnNormB], da.data(), x, p[kRoleAttnNormW], M);
}

void forward_saved(ReplacementKind kind, const ReplacementSpec& s, const ReplacementParams& p, float* y, const float* x,
                   const int32_t* positions, const uint8_t* key_mask, const float* inv_freq, Saved& A) {
  const size_t M = s.B * s.T;
  if (kind == ReplacementKind::MLP) {
    mlp_forward(s, p, y, x, A, M);
  } else {
    A.h1.resize(M * s.D);
    attn_forward(s, p, A.h1.data(), x, A, M, positions, key_mask, inv_freq);
    mlp_forward(s, p, y, A.h1.data(), A, M);
  }
}

// MSE over real tokens (all rows when key_mask is nullptr): per-row sums in f64, added in row order, so the
// result does not depend on the thread count. dy (optional) receives grad_scale · 2(y − t)/(real·D) on real rows
// (padding rows are left as they are). Returns −1 when there is no real token.
double masked_mse(const ReplacementSpec& s, const float* y, const float* target, const uint8_t* key_mask, float* dy) {
  const size_t M = s.B * s.T, D = s.D;
  size_t real = 0;
  for (size_t m = 0; m < M; m++) real += (!key_mask || key_mask[m]) ? 1 : 0;
  if (real == 0) return -1.0;
  std::vector<double> rows(M, 0.0);
  const double scale = 2.0 / double(real * D) * double(s.grad_scale);
  parallel_for(M, 8, [&](size_t b, size_t e, int) {
    for (size_t m = b; m < e; m++) {
      if (key_mask && !key_mask[m]) continue;
      double acc = 0;
      for (size_t i = 0; i < D; i++) {
        double d = double(y[m * D + i]) - double(target[m * D + i]);
        acc += d * d;
        if (dy) dy[m * D + i] = float(scale * d);
      }
      rows[m] = acc;
    }
  });
  double loss = 0;
  for (double r : rows) loss += r;
  return loss / double(real * D);
}

}  // namespace

const char* role_name(int role) { return role >= 0 && role < kRoleCount ? kRoleNames[role] : "?"; }

void role_shape(const ReplacementSpec& s, int role, size_t* rows, size_t* cols) {
  const size_t Q = s.H * s.Dh, KV = s.Hk * s.Dh;
  size_t r = s.D, c = 1;
  switch (role) {
    case kRoleQW: r = Q, c = s.D; break;
    case kRoleQB: r = Q; break;
    case kRoleKW: case kRoleVW: r = KV, c = s.D; break;
    case kRoleKB: case kRoleVB: r = KV; break;
    case kRoleOW: r = s.D, c = Q; break;
    case kRoleGateW: case kRoleUpW: r = s.F, c = s.D; break;
    case kRoleUpB: r = s.F; break;
    case kRoleDownW: r = s.D, c = s.F; break;
    case kRoleQNormW: case kRoleKNormW: r = s.Dh; break;
    default: break;  // norms, o.bias, down.bias: [D]
  }
  *rows = r;
  *cols = c;
}

void replacement_forward(ReplacementKind kind, const ReplacementSpec& s, const ReplacementParams& p, float* y,
                         const float* x, const int32_t* positions, const uint8_t* key_mask, const float* inv_freq) {
  Saved A;
  forward_saved(kind, s, p, y, x, positions, key_mask, inv_freq, A);
}

double replacement_step_with(ReplacementKind kind, const ReplacementSpec& s, const ReplacementParams& p,
                             const ReplacementGrads& g, const float* x, const int32_t* positions,
                             const uint8_t* key_mask, const float* inv_freq, const OutputLoss& loss_fn, float* dx,
                             float* y_out) {
  const size_t M = s.B * s.T, D = s.D;
  if (M == 0 || D == 0) return 0.0;
  Saved A;
  fvec ybuf(y_out ? 0 : M * D);
  float* y = y_out ? y_out : ybuf.data();
  forward_saved(kind, s, p, y, x, positions, key_mask, inv_freq, A);

  fvec dy(M * D, 0.f);
  double loss = loss_fn(y, dy.data());
  if (loss < 0) {  // nothing to learn from (no real token)
    if (dx) std::fill(dx, dx + M * D, 0.f);
    return 0.0;
  }

  if (kind == ReplacementKind::MLP) {
    if (dx) std::memcpy(dx, dy.data(), M * D * sizeof(float));  // residual
    mlp_backward(s, p, g, dy.data(), x, A, M, dx);
  } else {
    fvec dh(dy);  // residual: dL/dh1 = dy + (MLP path through the norm)
    mlp_backward(s, p, g, dy.data(), A.h1.data(), A, M, dh.data());
    if (dx) std::memcpy(dx, dh.data(), M * D * sizeof(float));
    attn_backward(s, p, g, dh.data(), x, A, M, key_mask, dx);
  }
  return loss;
}

double replacement_step(ReplacementKind kind, const ReplacementSpec& s, const ReplacementParams& p,
                        const ReplacementGrads& g, const float* x, const float* target, const int32_t* positions,
                        const uint8_t* key_mask, const float* inv_freq, float* y_out) {
  return replacement_step_with(
      kind, s, p, g, x, positions, key_mask, inv_freq,
      [&](const float* y, float* dy) { return masked_mse(s, y, target, key_mask, dy); }, nullptr, y_out);
}

double replacement_loss(ReplacementKind kind, const ReplacementSpec& s, const ReplacementParams& p, const float* x,
                        const float* target, const int32_t* positions, const uint8_t* key_mask, const float* inv_freq) {
  const size_t M = s.B * s.T;
  if (M == 0 || s.D == 0) return 0.0;
  fvec y(M * s.D);
  replacement_forward(kind, s, p, y.data(), x, positions, key_mask, inv_freq);
  double loss = masked_mse(s, y.data(), target, key_mask, nullptr);
  return loss < 0 ? 0.0 : loss;
}

}  // namespace streamline
