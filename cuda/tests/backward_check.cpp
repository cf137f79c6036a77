// Backward kernels and the optimiser (cuda/backward.cuh) against the CPU references: streamline::ref::*_backward
// (ops.h, f64 accumulation) and streamline::adamw_step / grad_norm / clip_grad_norm (train.h). Sweeps odd sizes,
// padding masks (left, right, random, a fully padded row), GQA ratios and NaN inputs. Overwritten outputs are
// poisoned first; accumulated ones (norm dx/dw/db, activation dx, gated dgate/dup) start from random values that
// the reference accumulates onto too, so an element the kernel never touched differs from it.
// Also the benchmarks of these kernels (run_backward_benchmarks, in the bench group).
#include <cstdlib>

#include "activation.cuh"
#include "attention.cuh"
#include "backward.cuh"
#include "convert.cuh"
#include "harness.h"
#include "streamline/ops.h"
#include "streamline/train.h"

namespace harness {

namespace sc = streamline::cuda;
namespace cref = streamline::ref;
using streamline::Activation;
using streamline::cuda::bf16;

namespace {
const cudaStream_t S = nullptr;

// Elements whose values differ, for outputs that must be another computation's exactly: equal bits, or both NaN, or
// both zero (a fused kernel that writes x where the composition added x to a zeroed buffer turns −0 into +0 there).
template <typename T> size_t value_mismatches(const T* a, const T* b, size_t n) {
  static_assert(sizeof(T) == 2 || sizeof(T) == 4, "bf16 bits or f32");
  const uint32_t abs_mask = sizeof(T) == 2 ? 0x7fffu : 0x7fffffffu, inf = sizeof(T) == 2 ? 0x7f80u : 0x7f800000u;
  size_t bad = 0;
  for (size_t i = 0; i < n; i++) {
    uint32_t x = 0, y = 0;
    std::memcpy(&x, a + i, sizeof(T));
    std::memcpy(&y, b + i, sizeof(T));
    if (x == y || ((x & abs_mask) > inf && (y & abs_mask) > inf) || ((x & abs_mask) == 0 && (y & abs_mask) == 0)) continue;
    bad++;
  }
  return bad;
}

// Relative difference of two scalars, NaN-aware (both NaN: 0; one NaN: infinity).
double rel_diff(double a, double b) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b) ? 0.0 : INFINITY;
  if (a == b) return 0.0;
  return std::fabs(a - b) / std::max(std::fabs(b), 1e-300);
}

void check_norm_backward(bool quick) {
  Rng r(21);
  const size_t shapes[][2] = {{1, 5}, {3, 64}, {67, 5}, {1, 4096}, {67, 4096}, {130, 300}};
  for (auto& sh : shapes) {
    const size_t M = sh[0], D = sh[1];
    for (int kind = 0; kind < 2; kind++) {       // 0 RMSNorm, 1 LayerNorm
      for (int variant = 0; variant < 4; variant++) {  // 0 plain, 1 no weight, 2 NaN in x, 3 NaN in dy + dx == nullptr
        if (quick && variant == 1 && M * D > 1000) continue;
        std::vector<float> x = randn(M * D, r, 2.f), dy = randn(M * D, r), w = randn(D, r, 0.2f);
        for (auto& v : w) v += 1.f;
        if (kind == 1)
          for (size_t i = 0; i < M * D; i++) x[i] += 0.5f;  // a mean to subtract
        if (variant == 2) x[(M / 2) * D + D / 2] = NAN;  // that row's dx and every dw column (x̂ of the row is NaN)
        if (variant == 3) dy[(M / 2) * D + D / 3] = NAN;
        const bool no_w = variant == 1, no_dx = variant == 3;
        std::vector<float> dx0 = randn(M * D, r, 0.5f), dw0 = randn(D, r, 0.5f), db0 = randn(D, r, 0.5f);
        std::vector<float> dx = dx0, dw = dw0, db = db0;
        DevBuf gx = dev(x), gdy = dev(dy), gw = dev(w), gdx = dev(dx0), gdw = dev(dw0), gdb = dev(db0);
        const float eps = 1e-5f;
        const float* wp = no_w ? nullptr : w.data();
        const float* gwp = no_w ? nullptr : gw.as<float>();
        float* rdx = no_dx ? nullptr : dx.data();
        float* gdxp = no_dx ? nullptr : gdx.as<float>();
        if (kind == 0) {
          cref::rmsnorm_backward(rdx, dw.data(), dy.data(), x.data(), wp, M, D, eps);
          sc::rmsnorm_backward(gdxp, gdw.as<float>(), gdy.as<float>(), gx.as<float>(), gwp, M, D, eps, S);
        } else {
          cref::layernorm_backward(rdx, dw.data(), db.data(), dy.data(), x.data(), wp, M, D, eps);
          sc::layernorm_backward(gdxp, gdw.as<float>(), gdb.as<float>(), gdy.as<float>(), gx.as<float>(), gwp, M, D,
                                 eps, S);
        }
        H_CHECK(cudaGetLastError());
        const char* vn[] = {"", " no weight", " NaN in x", " NaN in dy, no dx"};
        const std::string nm = fmt("%s M=%zu D=%zu%s", kind ? "layernorm" : "rmsnorm", M, D, vn[variant]);
        if (!no_dx) check("bwd-norm", nm + " dx", compare(host<float>(gdx, M * D).data(), dx.data(), M * D), kTolBwdNorm);
        check("bwd-norm", nm + " dw", compare(host<float>(gdw, D).data(), dw.data(), D), kTolBwdNorm);
        if (kind == 1) check("bwd-norm", nm + " db", compare(host<float>(gdb, D).data(), db.data(), D), kTolBwdNorm);
      }
      if (quick && M * D > 100000) break;
    }
  }
  // dw/db only (dx == nullptr, the frozen-input case) and determinism: two runs, identical bits.
  {
    const size_t M = 300, D = 777;
    std::vector<float> x = randn(M * D, r), dy = randn(M * D, r), w = randn(D, r);
    DevBuf gx = dev(x), gdy = dev(dy), gw = dev(w), a(D * 4), b(D * 4), c(D * 4), d(D * 4);
    for (const DevBuf* p : {&a, &b, &c, &d}) H_CHECK(cudaMemset(p->p, 0, p->bytes));
    sc::layernorm_backward(nullptr, a.as<float>(), b.as<float>(), gdy.as<float>(), gx.as<float>(), gw.as<float>(), M, D, 1e-5f, S);
    sc::layernorm_backward(nullptr, c.as<float>(), d.as<float>(), gdy.as<float>(), gx.as<float>(), gw.as<float>(), M, D, 1e-5f, S);
    const std::vector<float> ha = host<float>(a, D), hb = host<float>(b, D), hc = host<float>(c, D), hd = host<float>(d, D);
    const size_t bad = bit_mismatches(ha.data(), hc.data(), D) + bit_mismatches(hb.data(), hd.data(), D);
    record("bwd-norm", "layernorm dw/db deterministic (two runs, same bits)", bad == 0, double(bad), 0);
  }
}

// The training step's fused MLP activation kernels must be exactly the composition of the kernels checked above and
// a cast: mlp_hidden_bf16 = cast(gated_forward | activation_forward); mlp_activation_backward_bf16 = cast of
// gated_backward | activation_backward into zeroed buffers, with the optional f32 copies equal to those buffers.
void check_mlp_activation_fused(const DevBuf& gx, const DevBuf& gup, const DevBuf& gdy, size_t n, Activation act,
                                const char* name) {
  using bits16 = uint16_t;
  for (int gated = 0; gated < 2; gated++) {
    const float* gate = gated ? gx.as<float>() : nullptr;
    const float* up = gated ? gup.as<float>() : gx.as<float>();
    const std::string nm = fmt("%s%s n=%zu", gated ? "gated " : "", name, n);
    DevBuf f32(n * 4), ref16(n * 2), fused16(n * 2);
    if (gated) sc::gated_forward(f32.as<float>(), gate, up, n, act, S);
    else sc::activation_forward(f32.as<float>(), up, n, act, S);
    sc::cast_bf16(ref16.as<bf16>(), f32.as<float>(), n, S);
    H_CHECK(cudaMemset(fused16.p, 0x7b, n * 2));
    sc::mlp_hidden_bf16(fused16.as<bf16>(), gate, up, n, act, S);
    H_CHECK(cudaGetLastError());
    size_t bad = value_mismatches(host<bits16>(fused16, n).data(), host<bits16>(ref16, n).data(), n);
    record("bwd-act", "mlp_hidden_bf16 " + nm + " = cast(forward)", bad == 0, double(bad), 0);

    // The composition: zeroed buffers, the accumulating kernel, then the casts.
    DevBuf zg(n * 4), zu(n * 4), rg16(n * 2), ru16(n * 2);
    H_CHECK(cudaMemset(zg.p, 0, n * 4));
    H_CHECK(cudaMemset(zu.p, 0, n * 4));
    if (gated) sc::gated_backward(zg.as<float>(), zu.as<float>(), gdy.as<float>(), gate, up, n, act, S);
    else sc::activation_backward(zu.as<float>(), gdy.as<float>(), up, n, act, S);
    sc::cast_bf16(rg16.as<bf16>(), zg.as<float>(), n, S);
    sc::cast_bf16(ru16.as<bf16>(), zu.as<float>(), n, S);
    for (int f32_copies = 0; f32_copies < 2; f32_copies++) {
      DevBuf g16(n * 2), u16(n * 2), gf(n * 4), uf(n * 4);
      // Poisoned with ~1.3e36, a value no input gives: an element left unwritten fails.
      for (const DevBuf* p : {&g16, &u16, &gf, &uf}) H_CHECK(cudaMemset(p->p, 0x7b, p->bytes));
      sc::mlp_activation_backward_bf16(gated ? g16.as<bf16>() : nullptr, u16.as<bf16>(),
                                       gated && f32_copies ? gf.as<float>() : nullptr,
                                       f32_copies ? uf.as<float>() : nullptr, gdy.as<float>(), gate, up, n, act, S);
      H_CHECK(cudaGetLastError());
      const std::string v = nm + (f32_copies ? " (with f32 copies)" : "");
      bad = value_mismatches(host<bits16>(u16, n).data(), host<bits16>(ru16, n).data(), n);
      if (gated) bad += value_mismatches(host<bits16>(g16, n).data(), host<bits16>(rg16, n).data(), n);
      if (f32_copies) {
        bad += value_mismatches(host<float>(uf, n).data(), host<float>(zu, n).data(), n);
        if (gated) bad += value_mismatches(host<float>(gf, n).data(), host<float>(zg, n).data(), n);
      }
      record("bwd-act", "mlp_activation_backward_bf16 " + v + " = cast(backward into zeros)", bad == 0, double(bad), 0);
    }
  }
}

void check_activation_backward() {
  Rng r(22);
  const Activation acts[] = {Activation::SiLU, Activation::ReLU, Activation::GELU, Activation::GELUTanh};
  const char* names[] = {"silu", "relu", "gelu", "gelu_tanh"};
  for (size_t n : {size_t(1), size_t(7), size_t(1000), size_t(1 << 18) + 3}) {
    std::vector<float> x = randn(n, r, 3.f), up = randn(n, r, 2.f), dy = randn(n, r);
    x[n / 2] = NAN;
    if (n > 4) { x[1] = INFINITY; x[2] = -INFINITY; x[3] = 0.f; dy[n - 1] = NAN; }
    const std::vector<float> d0 = randn(n, r, 0.5f), d1 = randn(n, r, 0.5f);
    DevBuf gx = dev(x), gup = dev(up), gdy = dev(dy);
    for (int a = 0; a < 4; a++) {
      std::vector<float> rx = d0;
      cref::activation_backward(rx.data(), dy.data(), x.data(), n, acts[a]);
      DevBuf gdx = dev(d0);
      sc::activation_backward(gdx.as<float>(), gdy.as<float>(), gx.as<float>(), n, acts[a], S);
      check("bwd-act", fmt("%s n=%zu (NaN/inf/0 in x, NaN in dy)", names[a], n), compare(host<float>(gdx, n).data(), rx.data(), n), kTolBwdAct);
      for (int which = 0; which < 3; which++) {  // both, dgate only, dup only
        std::vector<float> rg = d0, ru = d1;
        cref::gated_backward(which == 2 ? nullptr : rg.data(), which == 1 ? nullptr : ru.data(), dy.data(), x.data(),
                             up.data(), n, acts[a]);
        DevBuf gg = dev(d0), gu = dev(d1);
        sc::gated_backward(which == 2 ? nullptr : gg.as<float>(), which == 1 ? nullptr : gu.as<float>(), gdy.as<float>(),
                           gx.as<float>(), gup.as<float>(), n, acts[a], S);
        const char* wn[] = {"", " (dgate only)", " (dup only)"};
        check("bwd-act", fmt("gated %s n=%zu dgate%s", names[a], n, wn[which]), compare(host<float>(gg, n).data(), rg.data(), n), kTolBwdAct);
        check("bwd-act", fmt("gated %s n=%zu dup%s", names[a], n, wn[which]), compare(host<float>(gu, n).data(), ru.data(), n), kTolBwdAct);
      }
      check_mlp_activation_fused(gx, gup, gdy, n, acts[a], names[a]);
    }
  }
}

void check_rope_backward() {
  Rng r(23);
  // {M, heads, Dh, rot}: rot 0 = whole heads; partial (Phi-4-mini's 0.75, an odd rot/2) leaves dims [rot, Dh) as they are
  const size_t cases[][4] = {{1, 1, 2, 0},   {5, 3, 6, 0},    {3, 2, 5, 0},     {37, 8, 64, 0},   {67, 8, 80, 0},
                             {129, 32, 128, 0}, {16, 4, 256, 0}, {37, 8, 64, 48}, {5, 3, 24, 18}, {129, 32, 128, 96}};
  for (auto& c : cases) {
    const size_t M = c[0], nh = c[1], Dh = c[2], rot = c[3];
    const size_t half = (rot ? rot : Dh) / 2;  // odd Dh: the last element stays as it is
    std::vector<float> cs(M * half), sn(M * half);
    for (size_t i = 0; i < M * half; i++) {
      const float a = r.sym(100.f);
      cs[i] = std::cos(a) * 1.1f, sn[i] = std::sin(a) * 1.1f;  // attention_scaling != 1
    }
    std::vector<float> d = randn(M * nh * Dh, r);
    d[d.size() / 2] = NAN;  // NaN stays in its rotation pair
    DevBuf gd = dev(d), gc = dev(cs), gs = dev(sn);
    sc::rope_backward(gd.as<float>(), gc.as<float>(), gs.as<float>(), M, nh, Dh, S, rot);
    cref::rope_backward(d.data(), cs.data(), sn.data(), M, nh, Dh, rot);
    check("bwd-rope", fmt("M=%zu heads=%zu Dh=%zu rot=%zu (one NaN)", M, nh, Dh, rot), compare(host<float>(gd, d.size()).data(), d.data(), d.size()), kTolExactish);
  }
}

void check_mse() {
  Rng r(24);
  const size_t shapes[][2] = {{1, 5}, {3, 64}, {67, 4096}, {1000, 33}};
  for (auto& sh : shapes) {
    const size_t rows = sh[0], D = sh[1], n = rows * D;
    for (int mk = 0; mk < 4; mk++) {  // no mask, some rows masked, every row masked, NaN in a (no mask)
      std::vector<float> a = randn(n, r), b = randn(n, r);
      std::vector<uint8_t> mask(rows, 1);
      if (mk == 1) for (size_t i = 0; i < rows; i++) mask[i] = (i % 3) != 1;
      if (mk == 2) std::fill(mask.begin(), mask.end(), 0);
      if (mk == 3) a[n / 2] = NAN;
      // Reference: the counted rows compacted, then the contract's mean; masked rows get da = 0.
      std::vector<float> ca, cb;
      for (size_t i = 0; i < rows; i++)
        if (mask[i]) { ca.insert(ca.end(), a.begin() + i * D, a.begin() + (i + 1) * D); cb.insert(cb.end(), b.begin() + i * D, b.begin() + (i + 1) * D); }
      std::vector<float> cda(ca.size()), rda(n, 0.f);
      const double rloss = cref::mse_forward_backward(cda.data(), ca.data(), cb.data(), ca.size());
      for (size_t i = 0, k = 0; i < rows; i++)
        if (mask[i]) { std::copy(cda.begin() + k * D, cda.begin() + (k + 1) * D, rda.begin() + i * D); k++; }
      DevBuf ga = dev(a), gb = dev(b), gm = dev(mask), gda(n * 4), gl(8);
      gda.poison();
      gl.poison();
      sc::mse_forward_backward(gda.as<float>(), gl.as<double>(), ga.as<float>(), gb.as<float>(), rows, D,
                               mk == 0 || mk == 3 ? nullptr : gm.as<uint8_t>(), S);
      double loss = 0;
      gl.download(&loss, 8);
      const char* mn[] = {"", " rows masked", " all rows masked", " NaN in a"};
      const std::string nm = fmt("rows=%zu D=%zu%s", rows, D, mn[mk]);
      const double e = rel_diff(loss, rloss);
      record("bwd-mse", nm + " loss", e <= kTolF64Sum, e, kTolF64Sum, fmt("gpu %.17g ref %.17g", loss, rloss));
      check("bwd-mse", nm + " da", compare(host<float>(gda, n).data(), rda.data(), n), kTolExactish);
    }
  }
  // Loss only (da == nullptr).
  const size_t n = 4097;
  std::vector<float> a = randn(n, r), b = randn(n, r);
  const double rloss = cref::mse_forward_backward(nullptr, a.data(), b.data(), n);
  DevBuf ga = dev(a), gb = dev(b), gl(8);
  sc::mse_forward_backward(nullptr, gl.as<double>(), ga.as<float>(), gb.as<float>(), 1, n, nullptr, S);
  double loss = 0;
  gl.download(&loss, 8);
  const double e = rel_diff(loss, rloss);
  record("bwd-mse", "loss only (da == nullptr)", e <= kTolF64Sum, e, kTolF64Sum);
}

// AdamW: several consecutive steps on the GPU and the CPU from the same state, bitwise equal after each.
void check_adamw() {
  Rng r(25);
  struct Case { double lr, beta1, beta2, eps, wd; long long step0; const char* what; };
  const Case cases[] = {{2e-4, 0.9, 0.999, 1e-8, 1e-3, 1, "defaults, steps 1..4"},
                        {2e-4, 0.9, 0.999, 1e-8, 0.0, 1, "no weight decay, steps 1..4"},
                        {5e-5, 0.9, 0.999, 1e-8, 1e-3, 1000, "steps 1000..1003"},
                        {1e-2, 0.3, 0.99, 1e-6, 0.1, 2, "beta1 0.3 (lerp upper branch), steps 2..5"}};
  for (size_t n : {size_t(1), size_t(7), size_t(1000), size_t(100003)}) {
    for (const Case& c : cases) {
      std::vector<float> p = randn(n, r, 0.05f), m = randn(n, r, 1e-3f), v(n);
      for (auto& x : v) x = std::fabs(r.normal()) * 1e-6f;
      if (c.step0 == 1) std::fill(m.begin(), m.end(), 0.f), std::fill(v.begin(), v.end(), 0.f);
      DevBuf gp = dev(p), gm = dev(m), gv = dev(v), gg(n * 4);
      size_t bad = 0;
      for (long long st = c.step0; st < c.step0 + 4; st++) {
        std::vector<float> g = randn(n, r, 1e-2f);
        if (n > 6) { g[0] = 0.f; g[1] = 1e-40f; g[2] = -3e3f; g[3] = 1e-20f; }  // zero, denormal, large, tiny
        if (n > 6 && st == c.step0 + 2) g[5] = NAN;  // NaN reaches p, m, v of that element only
        gg.upload(g.data(), n * 4);
        streamline::AdamWOptions o;
        o.lr = c.lr, o.beta1 = c.beta1, o.beta2 = c.beta2, o.eps = c.eps, o.weight_decay = c.wd, o.step = st;
        streamline::adamw_step({streamline::AdamWTensor{p.data(), g.data(), m.data(), v.data(), n}}, o);
        sc::adamw_update(gp.as<float>(), gg.as<float>(), gm.as<float>(), gv.as<float>(), n, o, S);
        bad += bit_mismatches(host<float>(gp, n).data(), p.data(), n) + bit_mismatches(host<float>(gm, n).data(), m.data(), n) +
               bit_mismatches(host<float>(gv, n).data(), v.data(), n);
      }
      record("bwd-adamw", fmt("n=%zu %s: bitwise p, m, v", n, c.what), bad == 0, double(bad), 0,
             fmt("%zu elements differ in their bits", bad));
    }
  }
}

// grad_sumsq over several tensors, then clip_by_global_norm, against grad_norm / clip_grad_norm.
void check_clip() {
  Rng r(26);
  const std::vector<size_t> sizes = {1, 5, 16384, 16385, 1000003};
  for (int variant = 0; variant < 3; variant++) {  // clipped, not clipped, NaN gradient (never clipped)
    std::vector<std::vector<float>> g;
    for (size_t n : sizes) g.push_back(randn(n, r, 1e-2f));
    if (variant == 2) g[3][7] = NAN;
    const double max_norm = variant == 1 ? 1e6 : 1.0;
    std::vector<DevBuf> gd;
    for (auto& x : g) gd.push_back(dev(x));
    DevBuf sum(8);
    H_CHECK(cudaMemset(sum.p, 0, 8));
    for (size_t t = 0; t < g.size(); t++) sc::grad_sumsq(sum.as<double>(), gd[t].as<float>(), sizes[t], S);
    double s = 0;
    sum.download(&s, 8);
    std::vector<float*> ptrs;
    for (auto& x : g) ptrs.push_back(x.data());
    const double norm_ref = streamline::grad_norm(ptrs, sizes);
    for (size_t t = 0; t < g.size(); t++) sc::clip_by_global_norm(gd[t].as<float>(), sizes[t], sum.as<double>(), max_norm, S);
    streamline::clip_grad_norm(ptrs, sizes, max_norm);
    const char* vn[] = {"clipped (max_norm 1)", "not clipped (max_norm 1e6)", "NaN gradient (no clip)"};
    const double e = rel_diff(std::sqrt(s), norm_ref);
    record("bwd-clip", fmt("%s: global norm", vn[variant]), e <= kTolF64Sum, e, kTolF64Sum, fmt("gpu %.17g ref %.17g", std::sqrt(s), norm_ref));
    for (size_t t = 0; t < g.size(); t++)
      check("bwd-clip", fmt("%s: tensor of %zu", vn[variant], sizes[t]), compare(host<float>(gd[t], sizes[t]).data(), g[t].data(), sizes[t]), kTolExactish);
    // Determinism: the same sum, bit for bit, on a second pass.
    DevBuf sum2(8);
    H_CHECK(cudaMemset(sum2.p, 0, 8));
    for (size_t t = 0; t < g.size(); t++) sc::grad_sumsq(sum2.as<double>(), gd[t].as<float>(), sizes[t], S);
    DevBuf sum3(8);
    H_CHECK(cudaMemset(sum3.p, 0, 8));
    for (size_t t = 0; t < g.size(); t++) sc::grad_sumsq(sum3.as<double>(), gd[t].as<float>(), sizes[t], S);
    double s2 = 0, s3 = 0;
    sum2.download(&s2, 8);
    sum3.download(&s3, 8);
    record("bwd-clip", fmt("%s: grad_sumsq deterministic", vn[variant]), std::memcmp(&s2, &s3, 8) == 0 || (std::isnan(s2) && std::isnan(s3)), 0, 0);
  }
}

// Masks: 0 none, 1 right padded, 2 left padded, 3 random, 4 row 0 left padded and row 1 fully padded.
std::vector<uint8_t> bwd_mask(size_t B, size_t T, int kind, Rng& r) {
  std::vector<uint8_t> m(B * T, 1);
  for (size_t b = 0; b < B; b++) {
    const size_t pad = (b * 5 + 3) % (T > 1 ? T : 1);  // < T: at least one real token
    for (size_t t = 0; t < T; t++) {
      if (kind == 1) m[b * T + t] = t < T - pad;
      else if (kind == 2) m[b * T + t] = t >= pad;
      else if (kind == 3) m[b * T + t] = (r.next() % 4) != 0;
      else if (kind == 4) m[b * T + t] = b == 1 ? 0 : t >= pad;
    }
  }
  return m;
}

// The attention backward checks' NaN cases (batch 0): 1 in q (query T/2, head 0), 2 in k (a padding key when there is
// one, else key T/3), 3 in dO (the last element).
void inject_attention_nan(int nan, std::vector<float>& q, std::vector<float>& k, std::vector<float>& dout,
                          const uint8_t* mask, size_t T, size_t Dh, size_t Hd, size_t Kd) {
  if (nan == 1) q[(T / 2) * Hd + Dh / 2] = NAN;
  if (nan == 2) {
    size_t t = T / 3;
    if (mask)
      for (size_t j = 0; j < T; j++)
        if (!mask[j]) {
          t = j;
          break;
        }
    k[t * Kd + Dh / 3] = NAN;
  }
  if (nan == 3) dout[(T - 1) * Hd + Hd - 1] = NAN;
}

// Sliding-window cases come after the plain causal ones (W = 0), so those draw the same inputs as before. Windows
// (tiles of 32 keys in the f32 kernel, 64 in the tensor-core one): one key, inside a tile, straddling tiles, over a
// tile, and at least T (must equal no window); the masks (random ones especially) leave windows with no real key.
std::string window_name(size_t W) { return W ? fmt(" window=%zu", W) : std::string(); }

// With a window of one key, P = 1 and dS = P·(dP − D) = dO·v − dO·O = 0: dq and dk are zero in exact arithmetic,
// and the kernel and the reference both hold only the rounding left by that cancellation (f32: ~1e-7 of |dO||v| per
// score), so a relative error means nothing. Checked absolutely instead, against the scale of the gradient that is
// not zero: max |out − ref| <= tol · max |dv_ref|, and NaN exactly where the reference has NaN.
void check_cancelled(const char* group, const std::string& name, const std::vector<float>& out,
                     const std::vector<float>& ref, const std::vector<float>& dv_ref, double tol) {
  double scale = 0;
  for (float x : dv_ref)
    if (std::isfinite(x)) scale = std::max(scale, double(std::fabs(x)));
  const Compare c = compare(out.data(), ref.data(), ref.size());
  const double err = scale > 0 ? c.max_abs / scale : c.max_abs;
  record(group, name + " (window 1: zero up to rounding, absolute)", c.nan_mismatch == 0 && err <= tol, err, tol,
         fmt("max_abs %.3g, dv scale %.3g, %zu NaN mismatches", c.max_abs, scale, c.nan_mismatch));
}

// A backward attention case's name in the records: shape, mask (bwd_mask's kinds), NaN injection, window.
std::string bwd_attention_case(size_t B, size_t T, size_t H, size_t Hk, size_t Dh, int mk, int nan, size_t W) {
  static const char* const masks[] = {"none", "right", "left", "random", "fully padded row"};
  static const char* const nans[] = {"", " NaN in q", " NaN in k", " NaN in dO"};
  return fmt("B=%zu T=%zu H=%zu Hk=%zu Dh=%zu mask=%s%s", B, T, H, Hk, Dh, masks[mk], nans[nan]) + window_name(W);
}

// dq, dk, dv of one case against the reference; with a window of one key, dq and dk by check_cancelled.
void check_dqkv(const char* group, const std::string& base, size_t W, const std::vector<float>& hq,
                const std::vector<float>& hk, const std::vector<float>& hv, const std::vector<float>& rq,
                const std::vector<float>& rk, const std::vector<float>& rv, double tol) {
  if (W == 1) {
    check_cancelled(group, "dq " + base, hq, rq, rv, tol);
    check_cancelled(group, "dk " + base, hk, rk, rv, tol);
  } else {
    check(group, "dq " + base, compare(hq.data(), rq.data(), rq.size()), tol);
    check(group, "dk " + base, compare(hk.data(), rk.data(), rk.size()), tol);
  }
  check(group, "dv " + base, compare(hv.data(), rv.data(), rv.size()), tol);
}

void check_attention_backward(bool quick) {
  Rng r(27);
  struct C { size_t B, T, H, Hk, Dh, W = 0; };
  const C cases[] = {{1, 1, 1, 1, 16},  {2, 17, 4, 1, 16},  {1, 70, 8, 1, 64},  {2, 33, 4, 4, 80},
                     {1, 130, 8, 2, 128}, {2, 65, 8, 8, 64},  {1, 40, 2, 1, 256}, {3, 31, 4, 2, 5},
                     {2, 97, 8, 1, 128}, {1, 64, 4, 4, 32},
                     {2, 97, 4, 1, 64, 1}, {2, 70, 4, 2, 16, 5}, {1, 130, 4, 2, 128, 39}, {2, 100, 8, 2, 32, 70},
                     {2, 33, 4, 4, 80, 33}, {3, 31, 4, 2, 5, 12}, {2, 40, 2, 1, 256, 17}};
  for (const C& c : cases) {
    for (int mk = 0; mk < 5; mk++) {
      if (mk == 4 && c.B < 2) continue;
      if (quick && (mk == 1 || mk == 3)) continue;
      for (int nan = 0; nan < 4; nan++) {  // none, in q, in k (a padding key when there is one), in dO
        if (quick && nan > 1) break;
        if (nan && c.T < 3) break;
        const size_t M = c.B * c.T, Hd = c.H * c.Dh, Kd = c.Hk * c.Dh;
        const float scale = 1.f / std::sqrt(float(c.Dh));
        std::vector<float> q = randn(M * Hd, r), k = randn(M * Kd, r), v = randn(M * Kd, r), dout = randn(M * Hd, r);
        std::vector<uint8_t> mask = bwd_mask(c.B, c.T, mk, r);
        const uint8_t* mp = mk ? mask.data() : nullptr;
        // Forward on the CPU (f32 out, lse with -inf on queries that see nothing): the inputs of both backwards.
        std::vector<float> out(M * Hd), lse(c.B * c.H * c.T);
        cref::attention_forward(out.data(), lse.data(), q.data(), k.data(), v.data(), mp, c.B, c.T, c.H, c.Hk, c.Dh, scale,
                                c.W);
        inject_attention_nan(nan, q, k, dout, mp, c.T, c.Dh, Hd, Kd);
        std::vector<float> rq(M * Hd), rk(M * Kd), rv(M * Kd);
        cref::attention_backward(rq.data(), rk.data(), rv.data(), dout.data(), q.data(), k.data(), v.data(), out.data(),
                                 lse.data(), mp, c.B, c.T, c.H, c.Hk, c.Dh, scale, c.W);
        DevBuf gq = dev(q), gk = dev(k), gv = dev(v), gdo = dev(dout), go = dev(out), gl = dev(lse), gm = dev(mask);
        DevBuf dq(M * Hd * 4), dk(M * Kd * 4), dv(M * Kd * 4);
        dq.poison(), dk.poison(), dv.poison();
        sc::attention_backward(dq.as<float>(), dk.as<float>(), dv.as<float>(), gdo.as<float>(), gq.as<float>(),
                               gk.as<float>(), gv.as<float>(), go.as<float>(), gl.as<float>(), mk ? gm.as<uint8_t>() : nullptr,
                               c.B, c.T, c.H, c.Hk, c.Dh, scale, c.W, S);
        H_CHECK(cudaGetLastError());
        const std::string base = bwd_attention_case(c.B, c.T, c.H, c.Hk, c.Dh, mk, nan, c.W);
        const std::vector<float> hq = host<float>(dq, M * Hd), hk = host<float>(dk, M * Kd), hv = host<float>(dv, M * Kd);
        check_dqkv("bwd-attention", base, c.W, hq, hk, hv, rq, rk, rv, kTolBwdAttn);
        if (nan == 0 && mk == 3) {  // determinism: a second run gives the same bits
          sc::attention_backward(dq.as<float>(), dk.as<float>(), dv.as<float>(), gdo.as<float>(), gq.as<float>(),
                                 gk.as<float>(), gv.as<float>(), go.as<float>(), gl.as<float>(), gm.as<uint8_t>(), c.B, c.T,
                                 c.H, c.Hk, c.Dh, scale, c.W, S);
          const size_t bad = bit_mismatches(host<float>(dq, M * Hd).data(), hq.data(), M * Hd) +
                             bit_mismatches(host<float>(dk, M * Kd).data(), hk.data(), M * Kd) +
                             bit_mismatches(host<float>(dv, M * Kd).data(), hv.data(), M * Kd);
          record("bwd-attention", "deterministic (second run, same bits) " + base, bad == 0, double(bad), 0);
        }
      }
    }
  }
}

// Where the tensor-core kernel's tile products put NaN beyond the reference (backward_attention_tc.cu): the zero
// products of the pairs j <= i extend to tile(j) <= tile(i) (64-row tiles). A NaN element q[i][d] of a visible
// query reaches dk[j][d], dO[i][d] reaches dv[j][d], and k[j][d] reaches dq[i][d], for every key j < T of the tiles
// up to i's. Applied to the reference's outputs, this is the exact NaN pattern the kernel must produce.
// With a sliding window W (< T), the tile pairs visited are those with i0 < j0 + 63 + W (tile starts), and a query
// is visible when a real key lies in its window.
void tc_nan_spread(float* rq, float* rk, float* rv, const float* q, const float* k, const float* dout,
                   const uint8_t* mask, size_t B, size_t T, size_t H, size_t Hk, size_t Dh, size_t W) {
  const size_t nrep = H / Hk, tile = 64;
  if (W >= T) W = 0;
  for (size_t b = 0; b < B; b++) {
    for (size_t i = 0; i < T; i++) {
      bool visible = false;
      for (size_t j = streamline::window_first_key(i, W); j <= i; j++) visible = visible || !mask || mask[b * T + j];
      if (!visible) continue;
      for (size_t h = 0; h < H; h++)
        for (size_t d = 0; d < Dh; d++) {
          const size_t qi = ((b * T + i) * H + h) * Dh + d;
          const bool qn = std::isnan(q[qi]), on = std::isnan(dout[qi]);
          for (size_t j = 0; j < T && j / tile <= i / tile; j++) {
            if (W && i / tile * tile >= j / tile * tile + tile - 1 + W) continue;  // tile pair not visited
            const size_t kj = ((b * T + j) * Hk + h / nrep) * Dh + d;
            if (qn) rk[kj] = NAN;
            if (on) rv[kj] = NAN;
            if (std::isnan(k[kj])) rq[qi] = NAN;
          }
        }
    }
  }
}

// The bf16 tensor-core backward against the f64 reference on the same bf16-rounded q/k/v and O (dO stays f32: the
// kernel rounds it), and against the f32 kernel on those inputs. q/k/v live in one packed row like TrainStep's
// q|k|v, O has a padded row stride.
void check_attention_backward_tc(bool quick) {
  Rng r(29);
  struct C { size_t B, T, H, Hk, Dh, W = 0; };
  const C cases[] = {{1, 1, 1, 1, 16},   {2, 17, 4, 1, 16},  {1, 70, 4, 2, 32}, {2, 33, 2, 2, 80},
                     {1, 130, 4, 1, 64}, {2, 65, 4, 2, 128}, {1, 129, 2, 2, 48},
                     {1, 130, 4, 2, 64, 1}, {2, 97, 4, 1, 32, 20}, {1, 200, 2, 2, 64, 94}, {2, 150, 4, 2, 48, 130},
                     {1, 70, 4, 2, 32, 70}};
  for (const C& c : cases) {
    for (int mk = 0; mk < 5; mk++) {
      if (mk == 4 && c.B < 2) continue;
      if (quick && (mk == 1 || mk == 3)) continue;
      for (int nan = 0; nan < 4; nan++) {  // none, in q, in k (a padding key when there is one), in dO
        if (quick && nan > 1) break;
        if (nan && c.T < 3) break;
        const size_t M = c.B * c.T, Hd = c.H * c.Dh, Kd = c.Hk * c.Dh, Nqkv = Hd + 2 * Kd, ostride = Hd + 8;
        const float scale = 1.f / std::sqrt(float(c.Dh));
        std::vector<float> q = round_bf16(randn(M * Hd, r)), k = round_bf16(randn(M * Kd, r)),
                           v = round_bf16(randn(M * Kd, r)), dout = randn(M * Hd, r);
        std::vector<uint8_t> mask = bwd_mask(c.B, c.T, mk, r);
        const uint8_t* mp = mk ? mask.data() : nullptr;
        std::vector<float> out(M * Hd), lse(c.B * c.H * c.T);
        cref::attention_forward(out.data(), lse.data(), q.data(), k.data(), v.data(), mp, c.B, c.T, c.H, c.Hk, c.Dh, scale,
                                c.W);
        out = round_bf16(out);
        inject_attention_nan(nan, q, k, dout, mp, c.T, c.Dh, Hd, Kd);
        std::vector<float> rq(M * Hd), rk(M * Kd), rv(M * Kd);
        cref::attention_backward(rq.data(), rk.data(), rv.data(), dout.data(), q.data(), k.data(), v.data(), out.data(),
                                 lse.data(), mp, c.B, c.T, c.H, c.Hk, c.Dh, scale, c.W);
        tc_nan_spread(rq.data(), rk.data(), rv.data(), q.data(), k.data(), dout.data(), mp, c.B, c.T, c.H, c.Hk, c.Dh,
                      c.W);
        std::vector<float> qkv(M * Nqkv), outp(M * ostride, 0.f);
        for (size_t m = 0; m < M; m++) {
          std::copy(q.begin() + m * Hd, q.begin() + (m + 1) * Hd, qkv.begin() + m * Nqkv);
          std::copy(k.begin() + m * Kd, k.begin() + (m + 1) * Kd, qkv.begin() + m * Nqkv + Hd);
          std::copy(v.begin() + m * Kd, v.begin() + (m + 1) * Kd, qkv.begin() + m * Nqkv + Hd + Kd);
          std::copy(out.begin() + m * Hd, out.begin() + (m + 1) * Hd, outp.begin() + m * ostride);
        }
        DevBuf gqkv = dev(to_bf16(qkv)), go = dev(to_bf16(outp)), gdo = dev(dout), gl = dev(lse), gm = dev(mask);
        const sc::bf16* pq = gqkv.as<sc::bf16>();
        DevBuf dq(M * Hd * 4), dk(M * Kd * 4), dv(M * Kd * 4);
        dq.poison(), dk.poison(), dv.poison();
        auto run = [&] {
          sc::attention_backward_tc(dq.as<float>(), dk.as<float>(), dv.as<float>(), gdo.as<float>(), pq, Nqkv, pq + Hd,
                                    pq + Hd + Kd, Nqkv, go.as<sc::bf16>(), ostride, gl.as<float>(),
                                    mk ? gm.as<uint8_t>() : nullptr, c.B, c.T, c.H, c.Hk, c.Dh, scale, c.W, S);
        };
        run();
        H_CHECK(cudaGetLastError());
        const std::string base = bwd_attention_case(c.B, c.T, c.H, c.Hk, c.Dh, mk, nan, c.W);
        const std::vector<float> hq = host<float>(dq, M * Hd), hk = host<float>(dk, M * Kd), hv = host<float>(dv, M * Kd);
        check_dqkv("bwd-attention-tc", base, c.W, hq, hk, hv, rq, rk, rv, kTolBwdAttnTc);
        // The f32 kernel on the same rounded inputs (its own NaN placement is the reference's: no NaN cases here).
        // Not at T = 1: with one key O = v and dS = P·(dO·v − D) is exactly 0 in the reference; the two kernels
        // leave different rounding noise (1e-8), and relative to each other that is 100 %.
        if (nan || c.T == 1) continue;
        DevBuf fq = dev(q), fk = dev(k), fv = dev(v), fo = dev(out), f_dq(M * Hd * 4), f_dk(M * Kd * 4), f_dv(M * Kd * 4);
        sc::attention_backward(f_dq.as<float>(), f_dk.as<float>(), f_dv.as<float>(), gdo.as<float>(), fq.as<float>(),
                               fk.as<float>(), fv.as<float>(), fo.as<float>(), gl.as<float>(), mk ? gm.as<uint8_t>() : nullptr,
                               c.B, c.T, c.H, c.Hk, c.Dh, scale, c.W, S);
        const Compare eq = compare(hq.data(), host<float>(f_dq, M * Hd).data(), M * Hd);
        const Compare ek = compare(hk.data(), host<float>(f_dk, M * Kd).data(), M * Kd);
        const Compare ev = compare(hv.data(), host<float>(f_dv, M * Kd).data(), M * Kd);
        if (c.W != 1) {  // window 1: both are rounding noise (see check_cancelled)
          check("bwd-attention-tc", "vs f32 kernel dq " + base, eq, kTolBwdAttnTc);
          check("bwd-attention-tc", "vs f32 kernel dk " + base, ek, kTolBwdAttnTc);
        }
        check("bwd-attention-tc", "vs f32 kernel dv " + base, ev, kTolBwdAttnTc);
        if (mk == 3 || mk == 4 || (quick && mk == 2)) {  // determinism: a second run gives the same bits
          dq.poison(), dk.poison(), dv.poison();
          run();
          const size_t bad = bit_mismatches(host<float>(dq, M * Hd).data(), hq.data(), M * Hd) +
                             bit_mismatches(host<float>(dk, M * Kd).data(), hk.data(), M * Kd) +
                             bit_mismatches(host<float>(dv, M * Kd).data(), hv.data(), M * Kd);
          record("bwd-attention-tc", "deterministic (second run, same bits) " + base, bad == 0, double(bad), 0);
        }
      }
    }
  }
  // What attention_backward_tc_supported() accepts: TrainStep falls back to the f32 kernel on the rest.
  const bool ok = sc::attention_backward_tc_supported(128, 6144, 6144, 4096, nullptr, nullptr, nullptr, nullptr) &&
                  !sc::attention_backward_tc_supported(5, 8, 8, 8, nullptr, nullptr, nullptr, nullptr) &&
                  !sc::attention_backward_tc_supported(256, 256, 256, 256, nullptr, nullptr, nullptr, nullptr) &&
                  !sc::attention_backward_tc_supported(64, 68, 64, 64, nullptr, nullptr, nullptr, nullptr) &&
                  sc::attention_backward_tc_supported(80, 240, 240, 80, nullptr, nullptr, nullptr, nullptr);
  record("bwd-attention-tc", "supported(): Dh % 16 == 0, Dh <= 128, strides % 8, 16-byte rows", ok, ok ? 0 : 1, 0);
}

}  // namespace

void run_backward_checks(bool quick) {
  std::printf("backward checks%s\n", quick ? " (quick)" : "");
  // STREAMLINE_BWD_ONLY=<name> runs one sub-group (the CPU emulation is slow).
  const char* only = std::getenv("STREAMLINE_BWD_ONLY");
  auto guard = [only](const char* name, auto&& fn) {
    if (only && *only && std::strcmp(only, name) != 0) return;
    try {
      fn();
    } catch (const std::exception& e) {
      record(name, "uncaught exception", false, NAN, 0, e.what());
    }
  };
  guard("bwd-norm", [&] { check_norm_backward(quick); });
  guard("bwd-act", [] { check_activation_backward(); });
  guard("bwd-rope", [] { check_rope_backward(); });
  guard("bwd-mse", [] { check_mse(); });
  guard("bwd-adamw", [] { check_adamw(); });
  guard("bwd-clip", [] { check_clip(); });
  guard("bwd-attention", [&] { check_attention_backward(quick); });
  guard("bwd-attention-tc", [&] { check_attention_backward_tc(quick); });
  std::fflush(stdout);
}

// ---- benchmarks ---------------------------------------------------------------------------------------------
void run_backward_benchmarks(bool quick) {
  std::printf("backward benchmarks%s\n", quick ? " (quick)" : "");
  Rng r(28);
  auto fill = [&](const DevBuf& b, size_t n, float scale) {
    std::vector<float> h = randn(n, r, scale);
    b.upload(h.data(), n * 4);
  };
  // Attention backward, Llama-3.1-8B heads: B=1, T=2048, H=32, Hk=8, Dh=128 (f32).
  {
    const size_t B = 1, T = quick ? 1024 : 2048, H = 32, Hk = 8, Dh = 128, M = B * T;
    const float scale = 1.f / std::sqrt(float(Dh));
    DevBuf q(M * H * Dh * 4), k(M * Hk * Dh * 4), v(M * Hk * Dh * 4), o(M * H * Dh * 4), dout(M * H * Dh * 4),
        lse(B * H * T * 4), dq(M * H * Dh * 4), dk(M * Hk * Dh * 4), dv(M * Hk * Dh * 4);
    fill(q, M * H * Dh, 1.f), fill(k, M * Hk * Dh, 1.f), fill(v, M * Hk * Dh, 1.f), fill(dout, M * H * Dh, 1.f);
    sc::attention_forward(o.as<float>(), lse.as<float>(), q.as<float>(), k.as<float>(), v.as<float>(), nullptr, B, T, H,
                          Hk, Dh, scale, 0, S);
    const double ms = time_ms([&] {
      sc::attention_backward(dq.as<float>(), dk.as<float>(), dv.as<float>(), dout.as<float>(), q.as<float>(),
                             k.as<float>(), v.as<float>(), o.as<float>(), lse.as<float>(), nullptr, B, T, H, Hk, Dh, scale, 0, S);
    }, 2, 5, S);
    // FLOPs of the five products of the backward (2.5x the forward's 4·B·H·Dh·T(T+1)/2), the usual convention;
    // the kernel does seven (S and dP are recomputed in both passes).
    const double flops = 2.5 * 4.0 * double(B * H * Dh) * double(T) * double(T + 1) / 2.0;
    bench_record(fmt("attention backward f32 B=1 T=%zu H=32 Hk=8 Dh=128", T), ms, "ms",
                 fmt("%.2f TFLOP/s (5-product convention)", flops / (ms * 1e-3) / 1e12));
  }
  // Attention backward at the 8B training step's shape (B = 8): the bf16 tensor-core kernel TrainStep runs, on its
  // packed q|k|v rows, against the f32 kernel on f32 copies of the same values. Input values repeat a 1 M pattern
  // (speed does not depend on them; generating 100 M normals would take seconds).
  {
    const size_t B = quick ? 2 : 8, T = 2048, H = 32, Hk = 8, Dh = 128, M = B * T, Hd = H * Dh, Kd = Hk * Dh;
    const size_t N = Hd + 2 * Kd;
    const float scale = 1.f / std::sqrt(float(Dh));
    const std::vector<float> pat = round_bf16(randn(size_t(1) << 20, r));
    std::vector<float> qkv(M * N), dout(M * Hd);
    for (size_t i = 0; i < qkv.size(); i++) qkv[i] = pat[i % pat.size()];
    for (size_t i = 0; i < dout.size(); i++) dout[i] = pat[(i * 3 + 1) % pat.size()];
    std::vector<float> q32(M * Hd), k32(M * Kd), v32(M * Kd);
    for (size_t m = 0; m < M; m++) {
      std::copy(qkv.begin() + m * N, qkv.begin() + m * N + Hd, q32.begin() + m * Hd);
      std::copy(qkv.begin() + m * N + Hd, qkv.begin() + m * N + Hd + Kd, k32.begin() + m * Kd);
      std::copy(qkv.begin() + m * N + Hd + Kd, qkv.begin() + (m + 1) * N, v32.begin() + m * Kd);
    }
    DevBuf gqkv = dev(to_bf16(qkv)), gdo = dev(dout), fq = dev(q32), fk = dev(k32), fv = dev(v32), fo(M * Hd * 4),
        lse(B * H * T * 4), dq(M * Hd * 4), dk(M * Kd * 4), dv(M * Kd * 4);
    qkv = q32 = k32 = v32 = std::vector<float>();
    // O and lse from the f32 forward; both backwards read O rounded to bf16 (what TrainStep saves).
    sc::attention_forward(fo.as<float>(), lse.as<float>(), fq.as<float>(), fk.as<float>(), fv.as<float>(), nullptr, B,
                          T, H, Hk, Dh, scale, 0, S);
    const std::vector<uint16_t> obh = to_bf16(host<float>(fo, M * Hd));
    DevBuf obf = dev(obh);
    fo.upload(from_bf16(obh).data(), M * Hd * 4);
    const sc::bf16* q = gqkv.as<sc::bf16>();
    const double tc_ms = time_ms([&] {
      sc::attention_backward_tc(dq.as<float>(), dk.as<float>(), dv.as<float>(), gdo.as<float>(), q, N, q + Hd,
                                q + Hd + Kd, N, obf.as<sc::bf16>(), Hd, lse.as<float>(), nullptr, B, T, H, Hk, Dh, scale, 0, S);
    }, 2, 5, S);
    const double f32_ms = time_ms([&] {
      sc::attention_backward(dq.as<float>(), dk.as<float>(), dv.as<float>(), gdo.as<float>(), fq.as<float>(),
                             fk.as<float>(), fv.as<float>(), fo.as<float>(), lse.as<float>(), nullptr, B, T, H, Hk, Dh,
                             scale, 0, S);
    }, 1, 3, S);
    const double flops = 2.5 * 4.0 * double(B * H * Dh) * double(T) * double(T + 1) / 2.0;
    bench_record(fmt("attention backward bf16 tc B=%zu T=2048 H=32 Hk=8 Dh=128", B), tc_ms, "ms",
                 fmt("%.1f TFLOP/s (5-product convention), %.1fx the f32 kernel", flops / (tc_ms * 1e-3) / 1e12,
                     f32_ms / tc_ms));
    bench_record(fmt("attention backward f32 B=%zu T=2048 H=32 Hk=8 Dh=128", B), f32_ms, "ms",
                 fmt("%.2f TFLOP/s (5-product convention)", flops / (f32_ms * 1e-3) / 1e12));
  }
  // Norm backward at [16384, 4096] with dw (and db): bytes the kernels must move at least (x, dy read; dx read and
  // written) against the time.
  {
    const size_t M = quick ? 4096 : 16384, D = 4096, n = M * D;
    DevBuf x(n * 4), dy(n * 4), dx(n * 4), w(D * 4), dw(D * 4), db(D * 4);
    fill(x, n, 1.f), fill(dy, n, 1.f), fill(dx, n, 1.f), fill(w, D, 1.f), fill(dw, D, 1.f), fill(db, D, 1.f);
    for (int kind = 0; kind < 2; kind++) {
      const double ms = time_ms([&] {
        if (kind == 0) sc::rmsnorm_backward(dx.as<float>(), dw.as<float>(), dy.as<float>(), x.as<float>(), w.as<float>(), M, D, 1e-5f, S);
        else sc::layernorm_backward(dx.as<float>(), dw.as<float>(), db.as<float>(), dy.as<float>(), x.as<float>(), w.as<float>(), M, D, 1e-5f, S);
      }, 2, 7, S);
      const double bytes = 4.0 * double(n) * 4.0;
      bench_record(fmt("%s backward [%zu, %zu] dx+dw%s", kind ? "layernorm" : "rmsnorm", M, D, kind ? "+db" : ""), ms, "ms",
                   fmt("%.2f TB/s over the minimal %.0f MB", bytes / (ms * 1e-3) / 1e12, bytes / 1e6));
    }
  }
  // AdamW over a replacement MLP's parameters (3 x 4096 x 14336, 176M) and the gradient norm over the same.
  {
    const size_t n = quick ? (size_t(1) << 24) : size_t(3) * 4096 * 14336;
    DevBuf p(n * 4), g(n * 4), m(n * 4), v(n * 4), sum(8);
    // Zeros: the speed does not depend on the values, and every update stays finite.
    H_CHECK(cudaMemset(g.p, 0, n * 4));
    H_CHECK(cudaMemset(m.p, 0, n * 4));
    H_CHECK(cudaMemset(v.p, 0, n * 4));
    H_CHECK(cudaMemset(p.p, 0, n * 4));
    streamline::AdamWOptions o;
    o.step = 10;
    const double ms = time_ms([&] { sc::adamw_update(p.as<float>(), g.as<float>(), m.as<float>(), v.as<float>(), n, o, S); }, 2, 7, S);
    bench_record(fmt("adamw_update n=%zu", n), ms, "ms", fmt("%.2f TB/s (7 x 4 bytes per element)", 28.0 * double(n) / (ms * 1e-3) / 1e12));
    const double ms2 = time_ms([&] {
      H_CHECK(cudaMemsetAsync(sum.p, 0, 8, S));
      sc::grad_sumsq(sum.as<double>(), g.as<float>(), n, S);
    }, 2, 7, S);
    bench_record(fmt("grad_sumsq n=%zu", n), ms2, "ms", fmt("%.2f TB/s", 4.0 * double(n) / (ms2 * 1e-3) / 1e12));
  }
}

}  // namespace harness
