// Native check of the forward kernels without Node: every fast path against its reference on a few shapes
// (odd sizes, GQA, padding), plus a decoder layer smoke run. Built as streamline_native_check; meant to be
// run under AddressSanitizer (cmake -DSTREAMLINE_ASAN=ON). `streamline_native_check bench` instead times
// one Llama-3.2-1B-shaped layer (bf16 weights, 1 x 2048 tokens).
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "streamline/matmul.h"
#include "streamline/model.h"
#include "streamline/ops.h"
#include "streamline/threads.h"

using namespace streamline;

namespace {

int failures = 0;
std::mt19937 rng(1234);

std::vector<float> randn(size_t n, float s = 1.0f) {
  std::normal_distribution<float> d(0.0f, s);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

void expect_close(const char* what, const std::vector<float>& a, const std::vector<float>& b, double tol) {
  double worst = 0;
  size_t at = 0;
  for (size_t i = 0; i < a.size(); i++) {
    double d = std::fabs(double(a[i]) - double(b[i])) / (1.0 + std::fabs(double(b[i])));
    if (!(d <= worst)) { worst = d; at = i; }  // NaN is the worst
  }
  bool ok = a.size() == b.size() && worst <= tol;
  if (!ok) failures++;
  std::printf("%s %-48s worst %.3g at %zu\n", ok ? "ok  " : "FAIL", what, worst, at);
}

void check_norms() {
  for (size_t D : {1, 7, 64, 257}) {
    size_t M = 5;
    auto x = randn(M * D, 3.0f), w = randn(D), b = randn(D);
    std::vector<float> y(M * D), r(M * D);
    rmsnorm_forward(y.data(), x.data(), w.data(), DType::F32, M, D, 1e-6f);
    ref::rmsnorm_forward(r.data(), x.data(), w.data(), DType::F32, M, D, 1e-6f);
    expect_close(("rmsnorm D=" + std::to_string(D)).c_str(), y, r, 1e-6);
    layernorm_forward(y.data(), x.data(), w.data(), b.data(), DType::F32, M, D, 1e-5f);
    ref::layernorm_forward(r.data(), x.data(), w.data(), b.data(), DType::F32, M, D, 1e-5f);
    expect_close(("layernorm D=" + std::to_string(D)).c_str(), y, r, 1e-6);
  }
}

void check_attention() {
  struct C { size_t B, T, H, Hk, Dh; bool mask; } cases[] = {
      {1, 1, 1, 1, 8, false}, {2, 37, 4, 2, 16, true}, {1, 130, 8, 2, 64, true}, {3, 70, 6, 6, 12, true},
      {1, 200, 4, 1, 32, false}};
  for (auto c : cases) {
    size_t M = c.B * c.T;
    auto q = randn(M * c.H * c.Dh), k = randn(M * c.Hk * c.Dh), v = randn(M * c.Hk * c.Dh);
    std::vector<uint8_t> mask(M, 1);
    if (c.mask)
      for (size_t b = 0; b < c.B; b++)
        for (size_t t = 0; t < c.T; t++) mask[b * c.T + t] = (t < b * 3) ? 0 : 1;  // left padding
    std::vector<float> o(M * c.H * c.Dh), ro(o.size()), l(c.B * c.H * c.T), rl(l.size());
    float scale = 1.0f / std::sqrt(float(c.Dh));
    attention_forward(o.data(), l.data(), q.data(), k.data(), v.data(), c.mask ? mask.data() : nullptr, c.B, c.T, c.H,
                      c.Hk, c.Dh, scale);
    ref::attention_forward(ro.data(), rl.data(), q.data(), k.data(), v.data(), c.mask ? mask.data() : nullptr, c.B,
                           c.T, c.H, c.Hk, c.Dh, scale);
    char name[96];
    std::snprintf(name, sizeof name, "attention B%zu T%zu H%zu Hk%zu Dh%zu%s", c.B, c.T, c.H, c.Hk, c.Dh,
                  c.mask ? " masked" : "");
    expect_close(name, o, ro, 2e-5);
    for (auto& x : l) if (std::isinf(x)) x = -1e30f;
    for (auto& x : rl) if (std::isinf(x)) x = -1e30f;
    expect_close((std::string(name) + " lse").c_str(), l, rl, 2e-5);
  }
}

void check_elementwise() {
  size_t n = 1003;
  auto x = randn(n, 4.0f), u = randn(n);
  std::vector<float> y(n), r(n);
  for (Activation a : {Activation::SiLU, Activation::ReLU, Activation::GELU, Activation::GELUTanh}) {
    activation_forward(y.data(), x.data(), n, a);
    ref::activation_forward(r.data(), x.data(), n, a);
    expect_close(("activation " + std::to_string(int(a))).c_str(), y, r, 1e-6);
    gated_forward(y.data(), x.data(), u.data(), n, a);
    ref::gated_forward(r.data(), x.data(), u.data(), n, a);
    expect_close(("gated " + std::to_string(int(a))).c_str(), y, r, 1e-6);
  }
  size_t M = 3, V = 1001;
  auto lg = randn(M * V, 5.0f);
  std::vector<float> ls(M * V), rs(M * V);
  log_softmax_forward(ls.data(), lg.data(), M, V);
  ref::log_softmax_forward(rs.data(), lg.data(), M, V);
  expect_close("log_softmax V=1001", ls, rs, 1e-6);
  std::vector<int32_t> tgt = {5, -1, 1000};
  std::vector<float> lp(M), want = {rs[5], 0.0f, rs[2 * V + 1000]};
  token_logprobs(lp.data(), lg.data(), tgt.data(), M, V);
  expect_close("token_logprobs", lp, want, 1e-6);
  // rope
  size_t Mr = 9, nh = 3, Dh = 10;
  std::vector<int32_t> pos(Mr);
  for (size_t i = 0; i < Mr; i++) pos[i] = int32_t(i * 7);
  std::vector<float> inv(Dh / 2), cs(Mr * Dh / 2), sn(Mr * Dh / 2);
  for (size_t i = 0; i < Dh / 2; i++) inv[i] = std::pow(10000.0f, -float(2 * i) / float(Dh));
  rope_tables(cs.data(), sn.data(), pos.data(), inv.data(), Mr, Dh / 2, 1.0f);
  auto xr = randn(Mr * nh * Dh), xr2 = xr;
  rope_forward(xr.data(), cs.data(), sn.data(), Mr, nh, Dh);
  ref::rope_forward(xr2.data(), cs.data(), sn.data(), Mr, nh, Dh);
  expect_close("rope", xr, xr2, 0);
}

WeightView view(const std::vector<uint16_t>& d, std::vector<int64_t> shape) {
  WeightView w;
  w.data = d.data();
  w.dtype = DType::BF16;
  w.shape = std::move(shape);
  return w;
}

std::vector<uint16_t> randbf(size_t n, float s) {
  auto f = randn(n, s);
  std::vector<uint16_t> h(n);
  for (size_t i = 0; i < n; i++) h[i] = f32_to_bf16(f[i]);
  return h;
}

int bench(size_t T, int reps) {
  LayerSpec s;
  s.batch = 1; s.seq_len = T; s.hidden = 2048; s.heads = 32; s.kv_heads = 8; s.head_dim = 64; s.intermediate = 8192;
  s.norm_eps = 1e-5f;
  const size_t D = s.hidden, F = s.intermediate, QD = 2048, KD = 512, M = T;
  std::vector<uint16_t> n1 = randbf(D, 1), n2 = randbf(D, 1), q = randbf(QD * D, 0.02f), k = randbf(KD * D, 0.02f),
                        v = randbf(KD * D, 0.02f), o = randbf(D * QD, 0.02f), g = randbf(F * D, 0.02f),
                        u = randbf(F * D, 0.02f), dn = randbf(D * F, 0.02f);
  LayerWeights w;
  w.attn_norm_w = view(n1, {int64_t(D)}); w.mlp_norm_w = view(n2, {int64_t(D)});
  w.q_w = view(q, {int64_t(QD), int64_t(D)}); w.k_w = view(k, {int64_t(KD), int64_t(D)});
  w.v_w = view(v, {int64_t(KD), int64_t(D)}); w.o_w = view(o, {int64_t(D), int64_t(QD)});
  w.gate_w = view(g, {int64_t(F), int64_t(D)}); w.up_w = view(u, {int64_t(F), int64_t(D)});
  w.down_w = view(dn, {int64_t(D), int64_t(F)});
  validate_layer(s, w);
  auto x = randn(M * D);
  std::vector<float> out(M * D), inv(32);
  std::vector<int32_t> pos(M);
  for (size_t i = 0; i < M; i++) pos[i] = int32_t(i);
  for (size_t i = 0; i < 32; i++) inv[i] = std::pow(500000.0f, -float(2 * i) / 64.0f);
  double best = 1e30;
  for (int r = 0; r < reps; r++) {
    auto t0 = std::chrono::steady_clock::now();
    decoder_layer_forward(out.data(), x.data(), s, w, pos.data(), nullptr, inv.data(), nullptr);
    double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::min(best, dt);
    std::printf("layer T=%zu: %.3f s\n", T, dt);
  }
  // attention alone
  auto qa = randn(M * QD), ka = randn(M * KD), va = randn(M * KD);
  std::vector<float> oa(M * QD);
  auto t0 = std::chrono::steady_clock::now();
  attention_forward(oa.data(), nullptr, qa.data(), ka.data(), va.data(), nullptr, 1, T, 32, 8, 64, 0.125f);
  double ta = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  double attn_flop = 4.0 * 32 * 64 * double(T) * double(T + 1) / 2;
  std::printf("attention alone: %.3f s, %.1f GFLOP/s\n", ta, attn_flop / ta / 1e9);
  auto t1 = std::chrono::steady_clock::now();
  std::vector<float> ym(M * F);
  linear_forward(ym.data(), x.data(), g.data(), DType::BF16, nullptr, M, F, D);
  double tl = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
  std::printf("gate linear alone: %.3f s, %.1f GFLOP/s\n", tl, 2.0 * M * F * D / tl / 1e9);
  double flop = 2.0 * M * D * (QD + 2 * KD + QD + 3 * F) + attn_flop;
  std::printf("{\"tokens_per_s\": %.1f, \"gflops\": %.1f, \"seconds\": %.3f}\n", T / best, flop / best / 1e9, best);
  return 0;
}

void check_layer_smoke() {
  LayerSpec s;
  s.batch = 2; s.seq_len = 5; s.hidden = 16; s.heads = 4; s.kv_heads = 2; s.head_dim = 4; s.intermediate = 24;
  const int64_t D = 16, F = 24;
  std::vector<uint16_t> n1 = randbf(D, 1), n2 = randbf(D, 1), q = randbf(D * D, 0.2f), k = randbf(8 * D, 0.2f),
                        v = randbf(8 * D, 0.2f), o = randbf(D * D, 0.2f), g = randbf(F * D, 0.2f),
                        u = randbf(F * D, 0.2f), dn = randbf(D * F, 0.2f);
  LayerWeights w;
  w.attn_norm_w = view(n1, {D}); w.mlp_norm_w = view(n2, {D});
  w.q_w = view(q, {D, D}); w.k_w = view(k, {8, D}); w.v_w = view(v, {8, D}); w.o_w = view(o, {D, D});
  w.gate_w = view(g, {F, D}); w.up_w = view(u, {F, D}); w.down_w = view(dn, {D, F});
  validate_layer(s, w);
  auto x = randn(10 * D);
  std::vector<float> out(10 * D), inv = {1.0f, 0.01f}, res(10 * D), mo(10 * D);
  std::vector<int32_t> pos = {0, 1, 2, 3, 4, 0, 1, 2, 3, 4};
  std::vector<uint8_t> mask = {1, 1, 1, 1, 1, 0, 0, 1, 1, 1};
  LayerCaptures cap{res.data(), mo.data()};
  decoder_layer_forward(out.data(), x.data(), s, w, pos.data(), mask.data(), inv.data(), &cap);
  bool finite = true;
  for (float f : out) finite &= std::isfinite(f);
  std::printf("%s decoder layer smoke (finite outputs)\n", finite ? "ok  " : "FAIL");
  if (!finite) failures++;
  // in place: out aliases x
  auto x2 = x;
  decoder_layer_forward(x2.data(), x2.data(), s, w, pos.data(), mask.data(), inv.data(), nullptr);
  expect_close("decoder layer in place == out of place", x2, out, 0);
  HeadSpec hs;
  hs.hidden = 16; hs.vocab = 11;
  std::vector<uint16_t> lm = randbf(11 * D, 0.3f);
  HeadWeights hw;
  hw.norm_w = view(n1, {D});
  hw.lm_head = view(lm, {11, D});
  validate_head(hs, hw);
  std::vector<float> logits(10 * 11), lp(10), ls(10 * 11);
  std::vector<int32_t> tg = {1, 2, 3, -1, 10, 0, 0, 4, 5, 6};
  head_forward(out.data(), 10, hs, hw, tg.data(), logits.data(), lp.data());
  log_softmax_forward(ls.data(), logits.data(), 10, 11);
  std::vector<float> want(10);
  for (size_t m = 0; m < 10; m++) want[m] = tg[m] < 0 ? 0.0f : ls[m * 11 + size_t(tg[m])];
  expect_close("head log-probs", lp, want, 1e-6);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && !std::strcmp(argv[1], "bench")) {
    size_t T = argc > 2 ? size_t(std::atoi(argv[2])) : 2048;
    return bench(T, argc > 3 ? std::atoi(argv[3]) : 3);
  }
  if (argc > 1 && !std::strcmp(argv[1], "linear")) {  // [2048, 2048] x [8192, 2048]^T, f32 vs bf16 weights
    size_t M = argc > 2 ? size_t(std::atoi(argv[2])) : 2048, N = 8192, K = 2048;
    auto x = randn(M * K), wf = randn(N * K, 0.02f);
    std::vector<uint16_t> wb(N * K);
    for (size_t i = 0; i < wb.size(); i++) wb[i] = f32_to_bf16(wf[i]);
    std::vector<float> y(M * N);
    for (int r = 0; r < 3; r++)
      for (DType dt : {DType::F32, DType::BF16}) {
        auto t0 = std::chrono::steady_clock::now();
        linear_forward(y.data(), x.data(), dt == DType::F32 ? (const void*)wf.data() : (const void*)wb.data(), dt, nullptr, M, N, K);
        double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::printf("linear %s M=%zu: %.3f s, %.1f GFLOP/s\n", dtype_name(dt), M, t, 2.0 * M * N * K / t / 1e9);
      }
    return 0;
  }
  if (argc > 1 && !std::strcmp(argv[1], "attn")) {  // attention alone at Llama-3.2-1B head shapes
    size_t T = argc > 2 ? size_t(std::atoi(argv[2])) : 2048;
    auto q = randn(T * 2048), k = randn(T * 512), v = randn(T * 512);
    std::vector<float> o(T * 2048);
    int reps = argc > 3 ? std::atoi(argv[3]) : 3;
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
      auto t0 = std::chrono::steady_clock::now();
      attention_forward(o.data(), nullptr, q.data(), k.data(), v.data(), nullptr, 1, T, 32, 8, 64, 0.125f);
      double ta = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      best = std::min(best, ta);
    }
    std::printf("attention T=%zu: best %.3f s, %.1f GFLOP/s\n", T, best, 4.0 * 32 * 64 * double(T) * double(T + 1) / 2 / best / 1e9);
    return 0;
  }
  check_norms();
  check_attention();
  check_elementwise();
  check_layer_smoke();
  std::printf("%d failure(s)\n", failures);
  return failures ? 1 : 0;
}
