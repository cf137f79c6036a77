// Plain-loop CPU references for the CUDA harness (see cpu_ref.h for why these are local for now).
#include "cpu_ref.h"

#include <cmath>
#include <limits>

#include "streamline/matmul.h"

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
  bool ok = true;
  for (size_t m = 0; m < M; m++) {
    if (ids[m] < 0 || size_t(ids[m]) >= V) { ok = false; continue; }
    for (size_t d = 0; d < D; d++) out[m * D + d] = wget(table, wdt, size_t(ids[m]) * D + d);
  }
  return ok;
}

void rmsnorm_forward(float* y, const float* x, const void* w, DType wdt, size_t M, size_t D, float eps) {
  for (size_t m = 0; m < M; m++) {
    double ss = 0;
    for (size_t d = 0; d < D; d++) ss += double(x[m * D + d]) * x[m * D + d];
    const float inv = 1.f / std::sqrt(float(ss / double(D)) + eps);
    for (size_t d = 0; d < D; d++) {
      const float n = x[m * D + d] * inv;
      y[m * D + d] = w ? wget(w, wdt, d) * n : n;
    }
  }
}

void layernorm_forward(float* y, const float* x, const void* w, const void* b, DType wdt, size_t M, size_t D, float eps) {
  for (size_t m = 0; m < M; m++) {
    double s = 0;
    for (size_t d = 0; d < D; d++) s += x[m * D + d];
    const float mean = float(s / double(D));
    double v = 0;
    for (size_t d = 0; d < D; d++) v += double(x[m * D + d] - mean) * (x[m * D + d] - mean);
    const float inv = 1.f / std::sqrt(float(v / double(D)) + eps);
    for (size_t d = 0; d < D; d++) {
      float o = (x[m * D + d] - mean) * inv;
      if (w) o *= wget(w, wdt, d);
      if (b) o += wget(b, wdt, d);
      y[m * D + d] = o;
    }
  }
}

void rope_tables(float* c, float* s, const int32_t* pos, const float* inv, size_t M, size_t half, float scaling) {
  for (size_t m = 0; m < M; m++)
    for (size_t j = 0; j < half; j++) {
      const float a = float(pos[m]) * inv[j];
      c[m * half + j] = std::cos(a) * scaling;
      s[m * half + j] = std::sin(a) * scaling;
    }
}

void rope_forward(float* x, const float* c, const float* s, size_t M, size_t nheads, size_t Dh, size_t rot) {
  const size_t half = rot / 2;
  for (size_t m = 0; m < M; m++)
    for (size_t h = 0; h < nheads; h++) {
      float* p = x + (m * nheads + h) * Dh;
      for (size_t j = 0; j < half; j++) {
        const float x1 = p[j], x2 = p[j + half], cc = c[m * half + j], ss = s[m * half + j];
        p[j] = x1 * cc - x2 * ss;
        p[j + half] = x2 * cc + x1 * ss;
      }
    }
}

void attention_forward(float* out, size_t os, float* lse, const float* q, size_t qs, const float* k, const float* v,
                       size_t kvs, const uint8_t* mask, size_t B, size_t T, size_t H, size_t Hk, size_t Dh, float scale) {
  std::vector<float> sc(T);
  std::vector<double> acc(Dh);
  for (size_t b = 0; b < B; b++)
    for (size_t h = 0; h < H; h++) {
      const size_t kh = h / (H / Hk);
      for (size_t i = 0; i < T; i++) {
        const float* qi = q + (b * T + i) * qs + h * Dh;
        float mx = -std::numeric_limits<float>::infinity();
        bool any = false;
        for (size_t j = 0; j <= i; j++) {
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
        if (!any) {
          for (size_t e = 0; e < Dh; e++) oi[e] = 0.f;
          if (lse) lse[(b * H + h) * T + i] = -std::numeric_limits<float>::infinity();
          continue;
        }
        double sum = 0;
        std::fill(acc.begin(), acc.end(), 0.0);
        for (size_t j = 0; j <= i; j++) {
          if (mask && !mask[b * T + j]) continue;
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
  switch (a) {
    case Activation::SiLU: return x / (1.f + std::exp(-x));
    case Activation::ReLU: return x > 0.f ? x : (std::isnan(x) ? x : 0.f);
    case Activation::GELU: return 0.5f * x * (1.f + std::erf(x * 0.70710678118654752f));
    default: {
      const float k = 0.7978845608028654f;
      return 0.5f * x * (1.f + std::tanh(k * (x + 0.044715f * x * x * x)));
    }
  }
}

void log_softmax_forward(float* y, const float* x, size_t M, size_t V) {
  for (size_t m = 0; m < M; m++) {
    const float* r = x + m * V;
    float mx = -std::numeric_limits<float>::infinity();
    bool nan = false;
    for (size_t i = 0; i < V; i++) { if (r[i] > mx) mx = r[i]; nan |= std::isnan(r[i]); }
    double s = 0;
    for (size_t i = 0; i < V; i++) s += std::exp(double(r[i]) - mx);
    const float ls = nan ? NAN : float(std::log(s));
    for (size_t i = 0; i < V; i++) y[m * V + i] = (r[i] - mx) - ls;
  }
}

void token_logprobs(float* lp, const float* logits, const int32_t* target, size_t M, size_t V) {
  std::vector<float> row(V);
  for (size_t m = 0; m < M; m++) {
    if (target[m] < 0 || size_t(target[m]) >= V) { lp[m] = 0.f; continue; }
    log_softmax_forward(row.data(), logits + m * V, 1, V);
    lp[m] = row[size_t(target[m])];
  }
}

void cosine_accumulate(Cos* acc, const float* a, const float* b, const uint8_t* mask, size_t M, size_t D) {
  for (size_t m = 0; m < M; m++) {
    if (mask && !mask[m]) continue;
    double ab = 0, aa = 0, bb = 0;
    for (size_t d = 0; d < D; d++) {
      const double x = a[m * D + d], y = b[m * D + d];
      ab += x * y; aa += x * x; bb += y * y;
    }
    acc->count++;
    if (aa == 0 || bb == 0) { acc->zeros++; continue; }
    acc->sum += ab / (std::sqrt(aa) * std::sqrt(bb));
  }
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
    if (s.use_rope) {
      rope_forward(q.data(), cos, sin, M, s.H, s.Dh, s.rot);
      rope_forward(k.data(), cos, sin, M, s.Hk, s.Dh, s.rot);
    }
    round_inplace(q, emu); round_inplace(k, emu); round_inplace(v, emu);
    std::vector<float> a(M * Hd);
    attention_forward(a.data(), Hd, nullptr, q.data(), Hd, k.data(), v.data(), Kd, mask, s.B, s.T, s.H, s.Hk, s.Dh, s.scale);
    round_inplace(a, emu);
    linear(t, a, w.ow, w.ob, M, D, Hd);
    for (size_t i = 0; i < M * D; i++) h[i] += t[i];
    if (!s.pre_norm) { std::vector<float> n; norm(n, h, s, w.n1w, w.n1b, M); h = n; }
  }
  if (s.pre_norm) norm(x, h, s, w.n2w, w.n2b, M);
  else x = h;
  round_inplace(x, emu);
  std::vector<float> u, g, y(M * F);
  linear(u, x, w.uw, {}, M, F, D);
  round_inplace(u, emu);
  if (s.gated) { linear(g, x, w.gw, {}, M, F, D); round_inplace(g, emu); }
  for (size_t m = 0; m < M; m++)
    for (size_t f = 0; f < F; f++) {
      float uu = u[m * F + f] + (w.ub.empty() ? 0.f : w.ub[f]);
      y[m * F + f] = s.gated ? act(g[m * F + f], s.act) * uu : act(uu, s.act);
    }
  round_inplace(y, emu);
  linear(t, y, w.dw, w.db, M, D, F);
  for (size_t i = 0; i < M * D; i++) h[i] += t[i];
  if (!s.pre_norm) { std::vector<float> n; norm(n, h, s, w.n2w, w.n2b, M); h = n; }
}

}  // namespace ref
}  // namespace harness
