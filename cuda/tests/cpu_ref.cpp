// CPU references for the CUDA harness: the shared streamline::ref kernels where the contract matches, local loops
// for what the contract does not cover (strided attention rows, the bf16-emulating layer).
#include "cpu_ref.h"

#include <cmath>
#include <limits>

#include "streamline/cosine.h"
#include "streamline/matmul.h"
#include "streamline/model.h"

namespace harness {
namespace ref {

float wget(const void* w, DType wdt, size_t i) {
  switch (wdt) {
    case DType::BF16: return streamline::bf16_to_f32(static_cast<const uint16_t*>(w)[i]);
    case DType::F16: return streamline::f16_to_f32(static_cast<const uint16_t*>(w)[i]);
    default: return static_cast<const float*>(w)[i];
  }
}

bool embedding_forward(float* out, const int32_t* ids, const void* table, DType wdt, size_t M, size_t V, size_t D) {
  return streamline::embedding_forward(out, ids, table, wdt, M, V, D);
}

void rmsnorm_forward(float* y, const float* x, const void* w, DType wdt, size_t M, size_t D, float eps) {
  streamline::ref::rmsnorm_forward(y, x, w, wdt, M, D, eps);
}

void layernorm_forward(float* y, const float* x, const void* w, const void* b, DType wdt, size_t M, size_t D, float eps) {
  streamline::ref::layernorm_forward(y, x, w, b, wdt, M, D, eps);
}

void rope_tables(float* c, float* s, const int32_t* pos, const float* inv, size_t M, size_t half, float scaling) {
  streamline::rope_tables(c, s, pos, inv, M, half, scaling);
}

void rope_forward(float* x, const float* c, const float* s, size_t M, size_t nheads, size_t Dh, size_t rot) {
  streamline::ref::rope_forward(x, c, s, M, nheads, Dh, rot);
}

void attention_forward(float* out, size_t os, float* lse, const float* q, size_t qs, const float* k, const float* v,
                       size_t kvs, const uint8_t* mask, size_t B, size_t T, size_t H, size_t Hk, size_t Dh, float scale,
                       size_t window) {
  if (os == H * Dh && qs == H * Dh && kvs == Hk * Dh)
    return streamline::ref::attention_forward(out, lse, q, k, v, mask, B, T, H, Hk, Dh, scale, window);
  // Strided rows (q, k, v inside packed QKV rows): the same loops as the shared reference.
  std::vector<float> sc(T);
  std::vector<double> acc(Dh);
  for (size_t b = 0; b < B; b++)
    for (size_t h = 0; h < H; h++) {
      const size_t kh = h / (H / Hk);
      for (size_t i = 0; i < T; i++) {
        const float* qi = q + (b * T + i) * qs + h * Dh;
        const size_t lo = streamline::window_first_key(i, window);
        float mx = -std::numeric_limits<float>::infinity();
        bool any = false;
        for (size_t j = lo; j <= i; j++) {
          if (mask && !mask[b * T + j]) continue;
          const float* kj = k + (b * T + j) * kvs + kh * Dh;
          double d = 0;
          for (size_t e = 0; e < Dh; e++) d += double(qi[e]) * kj[e];
          sc[j] = float(d) * scale;
          // Running max that keeps a NaN once seen (a NaN score must make the row NaN, never be skipped).
          if (!any || (!std::isnan(mx) && (std::isnan(sc[j]) || sc[j] > mx))) mx = sc[j];
          any = true;
        }
        float* oi = out + (b * T + i) * os + h * Dh;
        // As the shared reference: keys whose score is -inf are left out (value rows too), and a row whose visible
        // scores are all -inf is a row without a visible key.
        if (!any || mx == -std::numeric_limits<float>::infinity()) {
          for (size_t e = 0; e < Dh; e++) oi[e] = 0.f;
          if (lse) lse[(b * H + h) * T + i] = -std::numeric_limits<float>::infinity();
          continue;
        }
        double sum = 0;
        std::fill(acc.begin(), acc.end(), 0.0);
        for (size_t j = lo; j <= i; j++) {
          if ((mask && !mask[b * T + j]) || sc[j] == -std::numeric_limits<float>::infinity()) continue;
          const double p = std::exp(double(sc[j]) - mx);
          sum += p;
          const float* vj = v + (b * T + j) * kvs + kh * Dh;
          for (size_t e = 0; e < Dh; e++) acc[e] += p * vj[e];
        }
        for (size_t e = 0; e < Dh; e++) oi[e] = float(acc[e] / sum);
        if (lse) lse[(b * H + h) * T + i] = float(mx + std::log(sum));
      }
    }
}

float act(float x, Activation a) {
  float y;
  streamline::ref::activation_forward(&y, &x, 1, a);
  return y;
}

void log_softmax_forward(float* y, const float* x, size_t M, size_t V) { streamline::ref::log_softmax_forward(y, x, M, V); }

void token_logprobs(float* lp, const float* logits, const int32_t* target, size_t M, size_t V) {
  std::vector<float> row(V);
  for (size_t m = 0; m < M; m++) {
    if (target[m] < 0 || size_t(target[m]) >= V) { lp[m] = 0.f; continue; }
    log_softmax_forward(row.data(), logits + m * V, 1, V);
    lp[m] = row[size_t(target[m])];
  }
}

void cosine_accumulate(Cos* acc, const float* a, const float* b, const uint8_t* mask, size_t M, size_t D) {
  streamline::CosineSum c;
  streamline::ref::cosine_accumulate(&c, a, b, mask, M, D);
  acc->sum += c.sum;
  acc->count += c.count;
  acc->zeros += c.zeros;
}

namespace {
void round_inplace(std::vector<float>& v, bool on) {
  if (!on) return;
  for (float& x : v) x = streamline::bf16_to_f32(streamline::f32_to_bf16(x));
}
void linear(std::vector<float>& y, const std::vector<float>& x, const std::vector<float>& w, const std::vector<float>& b,
            size_t M, size_t N, size_t K) {
  y.assign(M * N, 0.f);
  streamline::linear_forward(y.data(), x.data(), w.data(), DType::F32, b.empty() ? nullptr : b.data(), M, N, K);
}
void norm(std::vector<float>& y, const std::vector<float>& x, const LayerSpecRef& s, const std::vector<float>& w,
          const std::vector<float>& b, size_t M) {
  y.resize(M * s.D);
  const float* wp = w.empty() ? nullptr : w.data();
  if (s.rms) harness::ref::rmsnorm_forward(y.data(), x.data(), wp, DType::F32, M, s.D, s.eps);
  else harness::ref::layernorm_forward(y.data(), x.data(), wp, b.empty() ? nullptr : b.data(), DType::F32, M, s.D, s.eps);
}
}  // namespace

void decoder_layer(std::vector<float>& h, const LayerSpecRef& s, const LayerWeightsRef& w, const float* cos,
                   const float* sin, const uint8_t* mask, bool emu) {
  const size_t M = s.B * s.T, D = s.D, Hd = s.H * s.Dh, Kd = s.Hk * s.Dh, F = s.F;
  std::vector<float> x, t;
  if (!s.mlp_only) {
    if (s.pre_norm) norm(x, h, s, w.n1w, w.n1b, M);
    else x = h;
    round_inplace(x, emu);
    std::vector<float> q, k, v;
    linear(q, x, w.qw, {}, M, Hd, D);
    linear(k, x, w.kw, {}, M, Kd, D);
    linear(v, x, w.vw, {}, M, Kd, D);
    // The GPU rounds the GEMM output to bf16, then adds the bias and rotates in f32, then rounds again.
    round_inplace(q, emu); round_inplace(k, emu); round_inplace(v, emu);
    auto add_bias = [&](std::vector<float>& y, const std::vector<float>& b, size_t N) {
      if (!b.empty()) for (size_t m = 0; m < M; m++) for (size_t n = 0; n < N; n++) y[m * N + n] += b[n];
    };
    add_bias(q, w.qb, Hd); add_bias(k, w.kb, Kd); add_bias(v, w.vb, Kd);
    // Qwen3: each head's row of Dh values RMS-normalised, still in f32 (the GPU rounds once, after RoPE).
    if (!w.qn.empty()) harness::ref::rmsnorm_forward(q.data(), q.data(), w.qn.data(), DType::F32, M * s.H, s.Dh, s.eps);
    if (!w.kn.empty()) harness::ref::rmsnorm_forward(k.data(), k.data(), w.kn.data(), DType::F32, M * s.Hk, s.Dh, s.eps);
    if (s.use_rope) {
      rope_forward(q.data(), cos, sin, M, s.H, s.Dh, s.rot);
      rope_forward(k.data(), cos, sin, M, s.Hk, s.Dh, s.rot);
    }
    round_inplace(q, emu); round_inplace(k, emu); round_inplace(v, emu);
    std::vector<float> a(M * Hd);
    attention_forward(a.data(), Hd, nullptr, q.data(), Hd, k.data(), v.data(), Kd, mask, s.B, s.T, s.H, s.Hk, s.Dh, s.scale,
                      s.window);
    round_inplace(a, emu);
    linear(t, a, w.ow, w.ob, M, D, Hd);
    // Gemma's sandwich norm: the f32 sub-block output (bias included) normed before the add, as the GPU does.
    if (!w.pan.empty()) { std::vector<float> n; norm(n, t, s, w.pan, {}, M); t = n; }
    for (size_t i = 0; i < M * D; i++) h[i] += t[i];
    if (!s.pre_norm) { std::vector<float> n; norm(n, h, s, w.n1w, w.n1b, M); h = n; }
  }
  if (s.pre_norm) norm(x, h, s, w.n2w, w.n2b, M);
  else x = h;
  round_inplace(x, emu);
  std::vector<float> u, g, y(M * F);
  linear(u, x, w.uw, {}, M, F, D);
  round_inplace(u, emu);
  if (s.gated) { linear(g, x, w.gw, {}, M, F, D); round_inplace(g, emu); }  // gate.bias added below, in f32 like the GPU
  for (size_t m = 0; m < M; m++)
    for (size_t f = 0; f < F; f++) {
      float uu = u[m * F + f] + (w.ub.empty() ? 0.f : w.ub[f]);
      const float gg = s.gated ? g[m * F + f] + (w.gb.empty() ? 0.f : w.gb[f]) : 0.f;
      y[m * F + f] = s.gated ? act(gg, s.act) * uu : act(uu, s.act);
    }
  round_inplace(y, emu);
  linear(t, y, w.dw, w.db, M, D, F);
  if (!w.pmn.empty()) { std::vector<float> n; norm(n, t, s, w.pmn, {}, M); t = n; }
  for (size_t i = 0; i < M * D; i++) h[i] += t[i];
  if (!s.pre_norm) { std::vector<float> n; norm(n, h, s, w.n2w, w.n2b, M); h = n; }
}

void contract_layer(std::vector<float>& h, const LayerSpecRef& s, const LayerWeightsRef& w, const int32_t* positions,
                    const uint8_t* mask, const float* inv_freq) {
  streamline::LayerSpec ls;
  ls.batch = s.B; ls.seq_len = s.T; ls.hidden = s.D; ls.heads = s.H; ls.kv_heads = s.Hk; ls.head_dim = s.Dh;
  ls.intermediate = s.F; ls.norm = s.rms ? streamline::NormKind::Rms : streamline::NormKind::Layer; ls.norm_eps = s.eps;
  ls.act = s.act; ls.gated_mlp = s.gated; ls.pre_norm = s.pre_norm; ls.use_rope = s.use_rope; ls.attn_scale = s.scale;
  ls.window = s.window;
  ls.rotary_dim = s.rot == s.Dh ? 0 : s.rot;
  streamline::LayerWeights lw;
  auto view = [](const std::vector<float>& v, std::vector<int64_t> shape) {
    streamline::WeightView wv;
    if (!v.empty()) { wv.data = v.data(); wv.dtype = DType::F32; wv.shape = std::move(shape); }
    return wv;
  };
  const int64_t D = int64_t(s.D), F = int64_t(s.F), Q = int64_t(s.H * s.Dh), K = int64_t(s.Hk * s.Dh);
  if (!s.mlp_only) {
    lw.attn_norm_w = view(w.n1w, {D}); lw.attn_norm_b = view(w.n1b, {D});
    lw.q_w = view(w.qw, {Q, D}); lw.q_b = view(w.qb, {Q}); lw.k_w = view(w.kw, {K, D}); lw.k_b = view(w.kb, {K});
    lw.v_w = view(w.vw, {K, D}); lw.v_b = view(w.vb, {K}); lw.o_w = view(w.ow, {D, Q}); lw.o_b = view(w.ob, {D});
    const int64_t Dh = int64_t(s.Dh);
    lw.q_norm_w = view(w.qn, {Dh}); lw.k_norm_w = view(w.kn, {Dh});
    lw.post_attn_norm_w = view(w.pan, {D});
  }
  lw.post_mlp_norm_w = view(w.pmn, {D});
  lw.mlp_norm_w = view(w.n2w, {D}); lw.mlp_norm_b = view(w.n2b, {D});
  lw.gate_w = view(w.gw, {F, D}); lw.gate_b = view(w.gb, {F}); lw.up_w = view(w.uw, {F, D}); lw.up_b = view(w.ub, {F});
  lw.down_w = view(w.dw, {D, F}); lw.down_b = view(w.db, {D});
  if (s.mlp_only) {
    streamline::validate_layer(ls, lw, true);
    streamline::mlp_block_forward(h.data(), h.data(), ls, lw);
  } else {
    streamline::validate_layer(ls, lw);
    streamline::decoder_layer_forward(h.data(), h.data(), ls, lw, positions, mask, inv_freq, nullptr);
  }
}

}  // namespace ref
}  // namespace harness
