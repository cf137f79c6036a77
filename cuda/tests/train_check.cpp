// Training-step checks (issue 9): the GPU TrainStep against the CPU step (streamline::replacement_step, then
// clip_grad_norm and adamw_step) for the mlp replacement (SwiGLU/RMSNorm; OPT-style ReLU with LayerNorm and biases)
// and the layer replacement (GQA with RoPE and a padded batch; an odd-sized OPT-style layer with every bias), on the
// fallback GEMM and on cuBLASLt; a 30-step training run whose loss curve must follow the CPU's within 1 %; the C API
// through dlopen; with a model directory, a short run of a layer replacement initialised from kjv-llama's layer 7 on
// its real boundary states (h[7] -> h[9]). The CPU half (--cpu-selftest) measures what bf16 rounding of weights and inputs alone does to the
// CPU step, the evidence behind the tolerances.
#include <dlfcn.h>
#include <unistd.h>

#include <array>

#include "cublaslt_loader.h"
#include "cpu_ref.h"
#include "harness.h"
#include "layer_util.h"
#include "replacement.cuh"
#include "safetensors.h"
#include "streamline/replacement.h"
#include "streamline/train.h"
#include "streamline_cuda.h"

namespace harness {

namespace sc = streamline::cuda;
using streamline::Activation;
using streamline::DType;
using streamline::ReplacementKind;
using streamline::ReplacementSpec;
constexpr int kRoles = streamline::kRoleCount;
constexpr double kGradFloor = 1e-2;  // see worst_role

namespace {

struct Case {
  const char* name;
  ReplacementKind kind;
  ReplacementSpec s;
  bool biases;  // linear biases (q/k/v/o for a layer, up/down) and LayerNorm biases
};

ReplacementSpec spec(size_t B, size_t T, size_t D, size_t H, size_t Hk, size_t Dh, size_t F, bool ln, Activation act,
                     bool gated, bool rope) {
  ReplacementSpec s;
  s.B = B; s.T = T; s.D = D; s.H = H; s.Hk = Hk; s.Dh = Dh; s.F = F;
  s.layer_norm = ln; s.norm_eps = 1e-5f; s.act = act; s.gated = gated; s.use_rope = rope;
  s.attn_scale = Dh ? float(1.0 / std::sqrt(double(Dh))) : 1.f;
  return s;
}

std::vector<Case> cases() {
  return {
      {"mlp swiglu rmsnorm", ReplacementKind::MLP, spec(2, 13, 96, 0, 0, 0, 200, false, Activation::SiLU, true, false), false},
      {"mlp opt relu layernorm+biases", ReplacementKind::MLP, spec(3, 9, 80, 0, 0, 0, 176, true, Activation::ReLU, false, false), true},
      {"layer llama gqa rope padded", ReplacementKind::Layer, spec(2, 37, 128, 4, 2, 32, 256, false, Activation::SiLU, true, true), false},
      {"layer opt-style odd sizes, all biases", ReplacementKind::Layer, spec(3, 19, 72, 3, 1, 24, 100, true, Activation::GELUTanh, false, false), true},
  };
}

using Params = std::array<std::vector<float>, kRoles>;

bool role_used(const Case& c, int r) {
  using namespace streamline;
  const bool layer = c.kind == ReplacementKind::Layer;
  switch (r) {
    case kRoleAttnNormW: case kRoleQW: case kRoleKW: case kRoleVW: case kRoleOW: return layer;
    case kRoleAttnNormB: return layer && c.s.layer_norm;
    case kRoleQB: case kRoleKB: case kRoleVB: case kRoleOB: return layer && c.biases;
    case kRoleMlpNormW: case kRoleUpW: case kRoleDownW: return true;
    case kRoleMlpNormB: return c.s.layer_norm;
    case kRoleGateW: return c.s.gated;
    case kRoleUpB: case kRoleDownB: return c.biases;
    default: return false;
  }
}

Params make_params(const Case& c, Rng& r) {
  using namespace streamline;
  Params p;
  for (int role = 0; role < kRoles; role++) {
    if (!role_used(c, role)) continue;
    size_t rows = 0, cols = 0;
    role_shape(c.s, role, &rows, &cols);
    const bool norm_w = role == kRoleAttnNormW || role == kRoleMlpNormW;
    p[role] = randn(rows * cols, r, cols > 1 ? float(1.0 / std::sqrt(double(cols))) : 0.1f);
    if (norm_w)
      for (auto& v : p[role]) v += 1.f;
  }
  return p;
}

streamline::ReplacementParams cpu_params(const Params& p) {
  streamline::ReplacementParams v{};
  for (int r = 0; r < kRoles; r++) v[r] = p[r].empty() ? nullptr : p[r].data();
  return v;
}
streamline::ReplacementGrads cpu_grads(Params& g) {
  streamline::ReplacementGrads v{};
  for (int r = 0; r < kRoles; r++) v[r] = g[r].empty() ? nullptr : g[r].data();
  return v;
}
Params zeros_like(const Params& p) {
  Params g;
  for (int r = 0; r < kRoles; r++) g[r].assign(p[r].size(), 0.f);
  return g;
}

struct Batch {
  std::vector<float> x, target;
  std::vector<int32_t> pos;
  std::vector<uint8_t> mask;
  size_t B;
};

// Rows after the first are right-padded by different amounts; targets: 0.5 x + noise (loss and dy of order one, so
// the comparison measures the gradient arithmetic rather than cancellation), or a teacher's output.
Batch make_batch(const Case& c, size_t B, Rng& r, const Params* teacher, const std::vector<float>& inv) {
  const size_t T = c.s.T, D = c.s.D, M = B * T;
  Batch b;
  b.B = B;
  b.x = randn(M * D, r);
  b.pos.resize(M);
  b.mask.assign(M, 1);
  for (size_t i = 0; i < B; i++) {
    const size_t len = i == 0 ? T : T - (i * 5) % T / 2 - 1;
    for (size_t t = 0; t < T; t++) {
      b.pos[i * T + t] = int32_t(t);
      b.mask[i * T + t] = t < len;
    }
  }
  if (teacher) {
    ReplacementSpec s = c.s;
    s.B = B;
    b.target.resize(M * D);
    streamline::replacement_forward(c.kind, s, cpu_params(*teacher), b.target.data(), b.x.data(), b.pos.data(),
                                    b.mask.data(), inv.data());
  } else {
    std::vector<float> n = randn(M * D, r);
    b.target.resize(M * D);
    for (size_t i = 0; i < M * D; i++) b.target[i] = 0.5f * b.x[i] + 0.5f * n[i];
  }
  return b;
}

std::vector<float> inv_freq(const Case& c) {
  std::vector<float> inv(c.s.Dh / 2 + 1, 0.f);
  for (size_t i = 0; i < c.s.Dh / 2; i++) inv[i] = float(1.0 / std::pow(10000.0, 2.0 * double(i) / double(c.s.Dh)));
  return inv;
}

double cpu_step(const Case& c, const Params& p, Params& g, const Batch& b, const std::vector<float>& inv, float scale) {
  ReplacementSpec s = c.s;
  s.B = b.B;
  s.grad_scale = scale;
  return streamline::replacement_step(c.kind, s, cpu_params(p), cpu_grads(g), b.x.data(), b.target.data(), b.pos.data(),
                                      b.mask.data(), inv.data());
}

// clip_grad_norm + adamw_step over the present roles (role order); returns the norm before clipping.
double cpu_apply(Params& p, Params& g, Params& m, Params& v, const streamline::AdamWOptions& opt, double clip) {
  std::vector<float*> gs;
  std::vector<size_t> ns;
  std::vector<streamline::AdamWTensor> ts;
  for (int r = 0; r < kRoles; r++) {
    if (p[r].empty()) continue;
    gs.push_back(g[r].data());
    ns.push_back(g[r].size());
    ts.push_back({p[r].data(), g[r].data(), m[r].data(), v[r].data(), p[r].size()});
  }
  const double norm = streamline::clip_grad_norm(gs, ns, clip);
  streamline::adamw_step(ts, opt);
  for (auto& x : g) std::fill(x.begin(), x.end(), 0.f);
  return norm;
}

std::array<const float*, kRoles> gpu_view(const Params& p) {
  std::array<const float*, kRoles> v{};
  for (int r = 0; r < kRoles; r++) v[r] = p[r].empty() ? nullptr : p[r].data();
  return v;
}

double gpu_step(sc::TrainStep& t, const Batch& b, float scale) {
  return t.step(b.x.data(), b.target.data(), b.pos.data(), b.mask.data(), b.B, scale);
}

Params gpu_grads(const sc::TrainStep& t, const Params& like) {
  Params g = zeros_like(like);
  for (int r = 0; r < kRoles; r++)
    if (!g[r].empty()) t.get_grad(r, g[r].data());
  return g;
}
Params gpu_params(const sc::TrainStep& t, const Params& like) {
  Params g = zeros_like(like);
  for (int r = 0; r < kRoles; r++)
    if (!g[r].empty()) t.get_param(r, g[r].data());
  return g;
}

// Worst error over the present roles: ||a - b|| / max(||b||, floor * ||b over all roles||). floor = 0 is the plain
// relative L2 error. Gradients use floor = 1e-2: a role whose gradient is mathematically (near) zero, such as k.bias
// without RoPE (softmax ignores a per-query constant), is measured against 1 % of the whole gradient instead of
// against its own rounding noise. *worst receives the role name.
Compare worst_role(const Params& a, const Params& b, std::string* worst, double floor = 0) {
  double total = 0;
  for (int r = 0; r < kRoles; r++)
    for (float v : b[r]) total += double(v) * v;
  Compare w;
  for (int r = 0; r < kRoles; r++) {
    if (a[r].empty()) continue;
    Compare c = compare(a[r].data(), b[r].data(), a[r].size());
    double num = 0, den = 0;
    for (size_t i = 0; i < a[r].size(); i++) {
      const double d = double(a[r][i]) - b[r][i];
      if (std::isfinite(d)) num += d * d;
      den += double(b[r][i]) * b[r][i];
    }
    const double scale = std::max(std::sqrt(den), floor * std::sqrt(total));
    c.rel_l2 = scale > 0 ? std::sqrt(num) / scale : std::sqrt(num);
    if (c.nan_mismatch > w.nan_mismatch || c.rel_l2 > w.rel_l2 || !(c.rel_l2 == c.rel_l2)) {
      w = c;
      *worst = streamline::role_name(r);
    }
  }
  return w;
}

// One optimiser step of two micro-batches (full, then one row fewer: partial batches and accumulation), loss,
// gradients, the norm and the updated parameters.
void check_case(const Case& c, bool use_lt) {
  Rng r(1000 + uint64_t(c.s.D));
  const Params p0 = make_params(c, r);
  const std::vector<float> inv = inv_freq(c);
  const Batch b1 = make_batch(c, c.s.B, r, nullptr, inv), b2 = make_batch(c, c.s.B - 1, r, nullptr, inv);
  const std::string nm = fmt("%s (%s)", c.name, use_lt ? "cublaslt" : "fallback");
  const float w1 = float(c.s.B) / float(2 * c.s.B - 1), w2 = float(c.s.B - 1) / float(2 * c.s.B - 1);

  Params pc = p0, gc = zeros_like(p0), mc = zeros_like(p0), vc = zeros_like(p0);
  const double lc1 = cpu_step(c, pc, gc, b1, inv, w1), lc2 = cpu_step(c, pc, gc, b2, inv, w2);

  sc::TrainStep t(c.kind, c.s, gpu_view(p0), c.s.use_rope ? inv.data() : nullptr, use_lt);
  const double lg1 = gpu_step(t, b1, w1), lg2 = gpu_step(t, b2, w2);
  const double lerr = std::max(std::fabs(lg1 - lc1) / lc1, std::fabs(lg2 - lc2) / lc2);
  record("train", nm + ": loss of two micro-batches", lerr <= kTolTrainLoss, lerr, kTolTrainLoss,
         fmt("gpu %.6g %.6g cpu %.6g %.6g", lg1, lg2, lc1, lc2));
  Params gg = gpu_grads(t, p0);
  std::string worst;
  Compare gerr = worst_role(gg, gc, &worst, kGradFloor);
  record("train", nm + ": accumulated gradients (worst role)", gerr.nan_mismatch == 0 && gerr.rel_l2 <= kTolTrainGrad,
         gerr.rel_l2, kTolTrainGrad, worst);

  // The optimiser on its own: the CPU's clip + AdamW applied to the GPU's gradients must give the GPU's update.
  Params pe = p0, ge = gg, me = zeros_like(p0), ve = zeros_like(p0);
  streamline::AdamWOptions opt;
  opt.lr = 1e-3;
  opt.weight_decay = 1e-2;
  opt.step = 1;
  double sumsq = 0;
  for (const auto& x : gg)
    for (float v : x) sumsq += double(v) * v;
  const double clip = 0.5 * std::sqrt(sumsq);  // clipping active
  const double norm_e = cpu_apply(pe, ge, me, ve, opt, clip);
  const double norm_g = t.apply(opt, clip);
  const double nerr = std::fabs(norm_g - norm_e) / norm_e;
  record("train", nm + ": gradient norm before clipping", nerr <= kTolTrainNorm, nerr, kTolTrainNorm);
  Params pg = gpu_params(t, p0);
  Compare perr = worst_role(pg, pe, &worst);
  record("train", nm + ": clip + AdamW vs the CPU on the same gradients", perr.nan_mismatch == 0 && perr.rel_l2 <= kTolExactish,
         perr.rel_l2, kTolExactish, worst);
  Params gz = gpu_grads(t, p0);
  bool zero = true;
  for (const auto& x : gz)
    for (float v : x) zero = zero && v == 0.f;
  record("train", nm + ": gradients zeroed after apply", zero, 0, 0);
  // End to end against the CPU's own step: the update (p1 - p0) over all parameters together. Adam's first step is
  // close to -lr * sign(g), so elements whose gradient is within the rounding noise of zero flip (all of k.bias
  // without RoPE, whose gradient is exactly zero): a loose bound on the whole update, not per role.
  cpu_apply(pc, gc, mc, vc, opt, clip);
  Params dg = pg, dc = pc;
  for (int k = 0; k < kRoles; k++)
    for (size_t i = 0; i < dg[k].size(); i++) {
      dg[k][i] -= p0[k][i];
      dc[k][i] -= p0[k][i];
    }
  double num = 0, den = 0;
  size_t nan = 0;
  for (int k = 0; k < kRoles; k++)
    for (size_t i = 0; i < dg[k].size(); i++) {
      const double d = double(dg[k][i]) - dc[k][i];
      nan += std::isnan(d) ? 1 : 0;
      num += std::isnan(d) ? 0 : d * d;
      den += double(dc[k][i]) * dc[k][i];
    }
  const double derr = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  record("train", nm + ": update vs the CPU's full step (all parameters)", nan == 0 && derr <= kTolTrainUpdate, derr,
         kTolTrainUpdate);
}

// Edge cases: a batch without a real token (loss 0, no gradient, as on the CPU) and a NaN input on a real token (the
// loss is NaN on both, and apply leaves the weights alone).
void check_edges(bool use_lt) {
  const Case c = cases()[2];
  Rng r(77);
  const Params p0 = make_params(c, r);
  const std::vector<float> inv = inv_freq(c);
  Batch b = make_batch(c, c.s.B, r, nullptr, inv);
  sc::TrainStep t(c.kind, c.s, gpu_view(p0), inv.data(), use_lt);
  Batch empty = b;
  std::fill(empty.mask.begin(), empty.mask.end(), 0);
  const double l0 = gpu_step(t, empty, 1.f);
  Params g0 = gpu_grads(t, p0);
  bool zero = true;
  for (const auto& x : g0)
    for (float v : x) zero = zero && v == 0.f;
  record("train", "no real token: loss 0 and no gradient (as the CPU)", l0 == 0.0 && zero, l0, 0);
  Batch bn = b;
  bn.x[3 * c.s.D + 5] = NAN;  // token 3 of row 0 is real
  Params gc = zeros_like(p0);
  const double lc = cpu_step(c, p0, gc, bn, inv, 1.f);
  const double lg = gpu_step(t, bn, 1.f);
  record("train", "NaN in a real token: NaN loss on GPU and CPU", std::isnan(lg) && std::isnan(lc), 0, 0,
         fmt("gpu %g cpu %g", lg, lc));
  streamline::AdamWOptions opt;
  const double n = t.apply(opt, 1.0);
  Params pg = gpu_params(t, p0);
  std::string role;
  Compare same = worst_role(pg, p0, &role);
  record("train", "non-finite gradient norm: apply updates nothing", !std::isfinite(n) && same.rel_l2 == 0 &&
         same.nan_mismatch == 0, same.rel_l2, 0);
}

// 30 optimiser steps (two micro-batches each) on fixed random data towards a teacher of the same architecture: GPU
// and CPU loss curves within kTolTrainCurve of each other at every step.
void check_training_run(const Case& c, bool use_lt) {
  Rng r(4242);
  const Params p0 = make_params(c, r), teacher = make_params(c, r);
  const std::vector<float> inv = inv_freq(c);
  std::vector<Batch> data;
  for (int i = 0; i < 4; i++) data.push_back(make_batch(c, c.s.B, r, &teacher, inv));
  Params pc = p0, gc = zeros_like(p0), mc = zeros_like(p0), vc = zeros_like(p0);
  sc::TrainStep t(c.kind, c.s, gpu_view(p0), c.s.use_rope ? inv.data() : nullptr, use_lt);
  const int steps = 30;
  double worst = 0, first = 0, last = 0;
  for (int k = 0; k < steps; k++) {
    const Batch& a = data[size_t(2 * k) % 4];
    const Batch& b = data[size_t(2 * k + 1) % 4];
    const double lc = 0.5 * (cpu_step(c, pc, gc, a, inv, 0.5f) + cpu_step(c, pc, gc, b, inv, 0.5f));
    const double lg = 0.5 * (gpu_step(t, a, 0.5f) + gpu_step(t, b, 0.5f));
    streamline::AdamWOptions opt;
    opt.lr = 1e-3;
    opt.step = k + 1;
    cpu_apply(pc, gc, mc, vc, opt, 1.0);
    t.apply(opt, 1.0);
    worst = std::max(worst, std::fabs(lg - lc) / lc);
    if (k == 0) first = lc;
    last = lc;
  }
  record("train", fmt("%s (%s): 30-step loss curve vs CPU", c.name, use_lt ? "cublaslt" : "fallback"),
         worst <= kTolTrainCurve, worst, kTolTrainCurve, fmt("CPU loss %.4g -> %.4g", first, last));
}

void check_capi_train() {
  char exe[4096];
  const ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  std::string dir = n > 0 ? std::string(exe, size_t(n)) : std::string(".");
  dir = dir.substr(0, dir.rfind('/'));
  const std::string so = dir + "/streamline_cuda.so";
  void* h = dlopen(so.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    record("train", "C API: dlopen " + so, false, 0, 0, dlerror());
    return;
  }
#define SYM(name) auto name = reinterpret_cast<decltype(&::name)>(dlsym(h, #name))
  SYM(streamline_cuda_train_create); SYM(streamline_cuda_train_destroy); SYM(streamline_cuda_train_step);
  SYM(streamline_cuda_train_apply); SYM(streamline_cuda_train_get_params); SYM(streamline_cuda_train_get_grads);
  SYM(streamline_cuda_last_error);
#undef SYM
  if (!streamline_cuda_train_create || !streamline_cuda_train_destroy || !streamline_cuda_train_step ||
      !streamline_cuda_train_apply || !streamline_cuda_train_get_params || !streamline_cuda_train_get_grads ||
      !streamline_cuda_last_error) {
    record("train", "C API: symbols", false, 0, 0, "missing exports in " + so);
    dlclose(h);
    return;
  }
  const Case c = cases()[2];
  Rng r(5150);
  const Params p0 = make_params(c, r);
  const std::vector<float> inv = inv_freq(c);
  const Batch b = make_batch(c, c.s.B, r, nullptr, inv);
  const bool lt = sc::lt::api() != nullptr;
  // The in-process class as the reference: the same code, so the results must be identical.
  sc::TrainStep t(c.kind, c.s, gpu_view(p0), inv.data(), lt);
  const double lref = gpu_step(t, b, 1.f);
  Params gref = gpu_grads(t, p0);
  streamline::AdamWOptions opt;
  opt.lr = 2e-4;
  const double nref = t.apply(opt, 5.0);
  Params pref = gpu_params(t, p0);

  streamline_cuda_train_spec s{};
  s.batch = int64_t(c.s.B); s.seq_len = int64_t(c.s.T); s.hidden = int64_t(c.s.D); s.heads = int64_t(c.s.H);
  s.kv_heads = int64_t(c.s.Hk); s.head_dim = int64_t(c.s.Dh); s.intermediate = int64_t(c.s.F);
  s.norm = 0; s.activation = 0; s.gated = 1; s.use_rope = 1; s.use_cublaslt = lt ? 1 : 0;
  s.norm_eps = c.s.norm_eps; s.attn_scale = 0.f; s.rope_attention_scaling = 1.f;
  const float* hp[STREAMLINE_CUDA_TRAIN_ROLES];
  for (int k = 0; k < kRoles; k++) hp[k] = p0[k].empty() ? nullptr : p0[k].data();
  streamline_cuda_train* tr = nullptr;
  double loss = 0, norm = 0;
  bool ok = streamline_cuda_train_create(1, &s, hp, inv.data(), &tr) == 0 &&
            streamline_cuda_train_step(tr, b.x.data(), b.target.data(), b.pos.data(), b.mask.data(), int64_t(b.B), 1.f,
                                       &loss) == 0;
  Params g = zeros_like(p0), p = zeros_like(p0);
  for (int k = 0; k < kRoles && ok; k++)
    if (!g[k].empty()) ok = streamline_cuda_train_get_grads(tr, k, g[k].data(), int64_t(g[k].size())) == 0;
  streamline_cuda_adamw o{opt.lr, opt.beta1, opt.beta2, opt.eps, opt.weight_decay, 5.0, 1};
  ok = ok && streamline_cuda_train_apply(tr, &o, &norm) == 0;
  for (int k = 0; k < kRoles && ok; k++)
    if (!p[k].empty()) ok = streamline_cuda_train_get_params(tr, k, p[k].data(), int64_t(p[k].size())) == 0;
  record("train", "C API: create / step / get_grads / apply / get_params through dlopen", ok, 0, 0,
         ok ? "" : streamline_cuda_last_error());
  if (ok) {
    std::string w;
    const Compare cg = worst_role(g, gref, &w), cp = worst_role(p, pref, &w);
    record("train", "C API: same loss, gradients, norm and weights as the in-process step",
           loss == lref && norm == nref && cg.rel_l2 == 0 && cp.rel_l2 == 0 && cg.nan_mismatch == 0 && cp.nan_mismatch == 0,
           std::max(cg.rel_l2, cp.rel_l2), 0);
  }
  std::vector<float> tmp(10);
  const int bad = tr ? streamline_cuda_train_get_params(tr, STREAMLINE_CUDA_TRAIN_Q_W, tmp.data(), 10) : 0;
  std::string msg = streamline_cuda_last_error();
  record("train", "C API: wrong numel returns -1 naming the role", bad == -1 && msg.find("q.weight") != std::string::npos, 0, 0, msg);
  const int bad2 = tr ? streamline_cuda_train_get_params(tr, STREAMLINE_CUDA_TRAIN_UP_B, tmp.data(), 10) : 0;
  msg = streamline_cuda_last_error();
  record("train", "C API: an absent role returns -1", bad2 == -1 && msg.find("up.bias") != std::string::npos, 0, 0, msg);
  streamline_cuda_train* t2 = nullptr;
  const int bad3 = streamline_cuda_train_create(7, &s, hp, inv.data(), &t2);
  msg = streamline_cuda_last_error();
  record("train", "C API: a bad kind returns -1 with a message", bad3 == -1 && !t2 && msg.find("kind") != std::string::npos, 0, 0, msg);
  hp[STREAMLINE_CUDA_TRAIN_GATE_W] = nullptr;
  const int bad4 = streamline_cuda_train_create(1, &s, hp, inv.data(), &t2);
  msg = streamline_cuda_last_error();
  record("train", "C API: a missing gate.weight is rejected", bad4 == -1 && msg.find("gate.weight") != std::string::npos, 0, 0, msg);
  if (tr) streamline_cuda_train_destroy(tr);
  dlclose(h);
}

// A Llama checkpoint's window [7, 9): the layer replacement initialised from layer 7 (the official default) and
// trained on R(h[7]) ~ h[9], the boundary states of random token batches through the f32 CPU layers.
struct RealWindow {
  Case c;
  Params p0;
  std::vector<float> inv;
  std::vector<Batch> data;
  double layer7_err = 0;  // replacement_forward(layer 7) vs the reference layer on h[7]: the role mapping is right
};

bool load_window(const std::string& dir, RealWindow& w) {
  Json cfg = parse_json(read_text_file(dir + "/config.json"));
  const Json* mt = cfg.get("model_type");
  if (!mt || mt->kind != Json::String || mt->str != "llama") return false;
  SafeTensors st(dir + "/model.safetensors");
  const size_t D = size_t(cfg.number_or("hidden_size", 0)), L = size_t(cfg.number_or("num_hidden_layers", 0));
  const size_t H = size_t(cfg.number_or("num_attention_heads", 0));
  const size_t Hk = size_t(cfg.number_or("num_key_value_heads", double(H)));
  const size_t Dh = size_t(cfg.number_or("head_dim", double(D / H))), F = size_t(cfg.number_or("intermediate_size", 0));
  const size_t V = size_t(cfg.number_or("vocab_size", 0));
  const float eps = float(cfg.number_or("rms_norm_eps", 1e-6));
  if (L < 9 || !D || !H || !F || !V) return false;
  const size_t B = 2, T = 64;
  ref::LayerSpecRef ls{B, T, D, H, Hk, Dh, F, Dh, true, true, true, true, false, Activation::SiLU, eps, 1.f / std::sqrt(float(Dh))};
  Inputs in = make_inputs(ls, cfg.number_or("rope_theta", 10000.0));
  w.c = Case{"kjv-llama layer 7 window [7, 9)", ReplacementKind::Layer,
             spec(B, T, D, H, Hk, Dh, F, false, Activation::SiLU, true, true), false};
  w.c.s.norm_eps = eps;
  w.inv = in.inv;
  const char* names[] = {"input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.k_proj.weight",
                         "self_attn.v_proj.weight", "self_attn.o_proj.weight", "post_attention_layernorm.weight",
                         "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight"};
  const int roles[] = {streamline::kRoleAttnNormW, streamline::kRoleQW, streamline::kRoleKW, streamline::kRoleVW,
                       streamline::kRoleOW, streamline::kRoleMlpNormW, streamline::kRoleGateW, streamline::kRoleUpW,
                       streamline::kRoleDownW};
  auto layer = [&](size_t k) {
    Params p;
    for (int i = 0; i < 9; i++) {
      const StTensor* t = st.find("model.layers." + std::to_string(k) + "." + names[i]);
      if (!t) throw std::runtime_error(dir + ": no " + names[i] + " in layer " + std::to_string(k));
      DType dt;
      if (!t->has_dtype(&dt)) throw std::runtime_error("unsupported dtype " + t->dtype);
      p[roles[i]].resize(t->numel());
      for (size_t j = 0; j < t->numel(); j++) p[roles[i]][j] = ref::wget(t->data, dt, j);
    }
    return p;
  };
  auto weights_ref = [](const Params& p) {
    ref::LayerWeightsRef lw;
    lw.n1w = p[streamline::kRoleAttnNormW]; lw.qw = p[streamline::kRoleQW]; lw.kw = p[streamline::kRoleKW];
    lw.vw = p[streamline::kRoleVW]; lw.ow = p[streamline::kRoleOW]; lw.n2w = p[streamline::kRoleMlpNormW];
    lw.gw = p[streamline::kRoleGateW]; lw.uw = p[streamline::kRoleUpW]; lw.dw = p[streamline::kRoleDownW];
    return lw;
  };
  const StTensor* emb = st.find("model.embed_tokens.weight");
  if (!emb) throw std::runtime_error(dir + ": no model.embed_tokens.weight");
  DType edt;
  emb->has_dtype(&edt);
  std::vector<ref::LayerWeightsRef> lws;
  for (size_t k = 0; k < 9; k++) lws.push_back(weights_ref(layer(k)));
  w.p0 = layer(7);
  Rng r(777);
  for (int bi = 0; bi < 2; bi++) {
    std::vector<int32_t> ids(B * T);
    for (auto& id : ids) id = int32_t(r.next() % V);
    std::vector<float> h(B * T * D), h7;
    ref::embedding_forward(h.data(), ids.data(), emb->data, edt, B * T, V, D);
    for (size_t k = 0; k < 9; k++) {
      if (k == 7) h7 = h;
      ref::decoder_layer(h, ls, lws[k], in.cos.data(), in.sin.data(), in.mask.data(), false);
      if (k == 7 && bi == 0) {  // the replacement's forward with layer 7's weights is layer 7
        std::vector<float> y(h.size());
        streamline::replacement_forward(ReplacementKind::Layer, w.c.s, cpu_params(w.p0), y.data(), h7.data(),
                                        in.pos.data(), in.mask.data(), in.inv.data());
        w.layer7_err = compare_real(y, h, in.mask, D).rel_l2;
      }
    }
    w.data.push_back(Batch{h7, h, in.pos, in.mask, B});
  }
  return true;
}

// 10 optimiser steps, the official defaults (lr 2e-4, weight decay 1e-3, clip 5), alternating the two batches.
// gpu = nullptr: the CPU run against itself with bf16-rounded weights in the step (the selftest's prediction).
double window_curve(const RealWindow& w, sc::TrainStep* gpu, bool round_weights, double* first, double* last) {
  Params pa = w.p0, ga = zeros_like(w.p0), ma = ga, va = ga;
  Params pb = w.p0, gb = ga, mb = ga, vb = ga;
  double worst = 0;
  for (int k = 0; k < 10; k++) {
    const Batch& b = w.data[size_t(k) % w.data.size()];
    const double la = cpu_step(w.c, pa, ga, b, w.inv, 1.f);
    double lb;
    if (gpu) {
      lb = gpu_step(*gpu, b, 1.f);
    } else {
      Params pr = pb;
      if (round_weights)
        for (auto& x : pr) x = round_bf16(x);
      lb = cpu_step(w.c, pr, gb, b, w.inv, 1.f);
    }
    streamline::AdamWOptions opt;
    opt.step = k + 1;
    cpu_apply(pa, ga, ma, va, opt, 5.0);
    if (gpu) gpu->apply(opt, 5.0);
    else cpu_apply(pb, gb, mb, vb, opt, 5.0);
    worst = std::max(worst, std::fabs(lb - la) / la);
    if (k == 0) *first = la;
    *last = la;
  }
  return worst;
}

void check_window(const std::string& dir, bool use_lt) {
  RealWindow w;
  if (!load_window(dir, w)) {
    record("train", dir + ": real-window run", true, 0, 0, "skipped: not a Llama checkpoint with >= 9 layers");
    return;
  }
  sc::TrainStep t(w.c.kind, w.c.s, gpu_view(w.p0), w.inv.data(), use_lt);
  double first = 0, last = 0;
  const double worst = window_curve(w, &t, false, &first, &last);
  record("train", fmt("%s: 10-step loss curve vs CPU", w.c.name), worst <= kTolTrainCurve, worst, kTolTrainCurve,
         fmt("CPU loss %.4g -> %.4g", first, last));
}

}  // namespace

void run_train_step_checks(bool use_cublaslt) {
  auto guard = [](const std::string& name, auto&& fn) {
    try {
      fn();
    } catch (const std::exception& e) {
      record("train", name + ": uncaught exception", false, NAN, 0, e.what());
    }
  };
  for (const Case& c : cases()) {
    guard(std::string(c.name) + " (fallback)", [&] { check_case(c, false); });
    if (use_cublaslt) guard(std::string(c.name) + " (cublaslt)", [&] { check_case(c, true); });
  }
  guard("edges", [&] { check_edges(use_cublaslt); });
}

void run_train_curve_checks(bool use_cublaslt, bool quick, const std::string& model_dir) {
  auto guard = [](const std::string& name, auto&& fn) {
    try {
      fn();
    } catch (const std::exception& e) {
      record("train", name + ": uncaught exception", false, NAN, 0, e.what());
    }
  };
  guard("training run", [&] { check_training_run(cases()[2], use_cublaslt); });
  if (!quick) guard("training run mlp", [&] { check_training_run(cases()[1], use_cublaslt); });
  if (!model_dir.empty()) guard("real window", [&] { check_window(model_dir, use_cublaslt); });
}

void run_train_checks(bool quick, const std::string& model_dir) {
  std::printf("train checks%s\n", quick ? " (quick)" : "");
  auto guard = [](const std::string& name, auto&& fn) {
    try {
      fn();
    } catch (const std::exception& e) {
      record("train", name + ": uncaught exception", false, NAN, 0, e.what());
    }
  };
  const bool lt = sc::lt::api() != nullptr;
  run_train_step_checks(lt);
  run_train_curve_checks(lt, quick, model_dir);
  guard("C API", [] { check_capi_train(); });
  std::fflush(stdout);
}

// CPU half: the restated role tables agree with replacement.h, and what rounding weights and inputs to bf16 does
// to the CPU step (loss, gradients, a 30-step curve), the scale the GPU tolerances are set against.
int cpu_train_selftest(const std::string& model_dir) {
  int fail = 0;
  auto expect = [&](bool ok, const std::string& what) {
    fail += ok ? 0 : 1;
    std::printf("%s cpu-selftest: %s\n", ok ? "ok  " : "FAIL", what.c_str());
  };
  {
    const ReplacementSpec s = cases()[3].s;
    bool same = true;
    for (int r = 0; r < kRoles; r++) {
      size_t a = 0, b = 0, c = 0, d = 0;
      streamline::role_shape(s, r, &a, &b);
      sc::train_role_shape(s, r, &c, &d);
      same = same && a == c && b == d && std::string(streamline::role_name(r)) == sc::train_role_name(r);
    }
    expect(same, "train role names and shapes agree with replacement.h");
  }
  auto round_params = [](Params p) {
    for (auto& x : p)
      if (!x.empty()) x = round_bf16(x);
    return p;
  };
  for (const Case& c : cases()) {
    Rng r(1000 + uint64_t(c.s.D));
    const Params p0 = make_params(c, r);
    const std::vector<float> inv = inv_freq(c);
    Batch b = make_batch(c, c.s.B, r, nullptr, inv);
    Params g32 = zeros_like(p0), g16 = zeros_like(p0);
    const double l32 = cpu_step(c, p0, g32, b, inv, 1.f);
    Batch b16 = b;
    b16.x = round_bf16(b.x);
    const double l16 = cpu_step(c, round_params(p0), g16, b16, inv, 1.f);
    std::string worst;
    Compare e = worst_role(g16, g32, &worst, kGradFloor);
    const double lerr = std::fabs(l16 - l32) / l32;
    std::printf("     cpu-selftest: %s: bf16-rounded weights and input change the loss by %.2e, gradients by %.2e (%s)\n",
                c.name, lerr, e.rel_l2, worst.c_str());
    // The first AdamW update from each gradient (same clip), compared over all parameters.
    Params pa = p0, pb = p0, ma = zeros_like(p0), va = ma, mb = ma, vb = ma;
    streamline::AdamWOptions opt;
    opt.lr = 1e-3;
    opt.weight_decay = 1e-2;
    cpu_apply(pa, g32, ma, va, opt, 1.0);
    cpu_apply(pb, g16, mb, vb, opt, 1.0);
    double num = 0, den = 0;
    for (int k = 0; k < kRoles; k++)
      for (size_t i = 0; i < pa[k].size(); i++) {
        const double d = double(pb[k][i]) - pa[k][i], u = double(pa[k][i]) - p0[k][i];
        num += d * d;
        den += u * u;
      }
    const double uerr = std::sqrt(num / den);
    std::printf("     cpu-selftest: %s: first AdamW update from those gradients differs by %.2e (all parameters)\n",
                c.name, uerr);
    expect(lerr < kTolTrainLoss && e.rel_l2 < kTolTrainGrad && uerr < kTolTrainUpdate,
           fmt("%s: bf16 rounding of weights and input alone stays inside the GPU tolerances", c.name));
  }
  // The 30-step run of check_training_run with gradients taken at bf16-rounded weights (f32 masters updated), as the
  // GPU does, against the f32 CPU run.
  for (int ci : {2, 1}) {
    const Case c = cases()[size_t(ci)];
    Rng r(4242);
    const Params p0 = make_params(c, r), teacher = make_params(c, r);
    const std::vector<float> inv = inv_freq(c);
    std::vector<Batch> data;
    for (int i = 0; i < 4; i++) data.push_back(make_batch(c, c.s.B, r, &teacher, inv));
    Params pa = p0, ga = zeros_like(p0), ma = zeros_like(p0), va = zeros_like(p0);
    Params pb = p0, gb = zeros_like(p0), mb = zeros_like(p0), vb = zeros_like(p0);
    double worst = 0, first = 0, last = 0;
    for (int k = 0; k < 30; k++) {
      const Batch& a = data[size_t(2 * k) % 4];
      const Batch& b = data[size_t(2 * k + 1) % 4];
      const double la = 0.5 * (cpu_step(c, pa, ga, a, inv, 0.5f) + cpu_step(c, pa, ga, b, inv, 0.5f));
      const Params pr = round_params(pb);
      const double lb = 0.5 * (cpu_step(c, pr, gb, a, inv, 0.5f) + cpu_step(c, pr, gb, b, inv, 0.5f));
      streamline::AdamWOptions opt;
      opt.lr = 1e-3;
      opt.step = k + 1;
      cpu_apply(pa, ga, ma, va, opt, 1.0);
      cpu_apply(pb, gb, mb, vb, opt, 1.0);
      worst = std::max(worst, std::fabs(lb - la) / la);
      if (k == 0) first = la;
      last = la;
    }
    std::printf("     cpu-selftest: %s: 30-step curve with bf16 weights in the step differs by at most %.2e "
                "(loss %.4g -> %.4g)\n", c.name, worst, first, last);
    expect(worst < kTolTrainCurve, fmt("%s: bf16 weights alone keep the 30-step curve within the GPU tolerance", c.name));
  }
  if (!model_dir.empty()) {
    try {
      RealWindow w;
      if (load_window(model_dir, w)) {
        expect(w.layer7_err < 1e-5, fmt("%s: replacement_forward with layer 7's weights is the reference layer 7 "
                                        "(rel err %.2e)", w.c.name, w.layer7_err));
        double first = 0, last = 0;
        const double worst = window_curve(w, nullptr, true, &first, &last);
        std::printf("     cpu-selftest: %s: 10-step curve with bf16 weights in the step differs by at most %.2e "
                    "(loss %.4g -> %.4g)\n", w.c.name, worst, first, last);
        expect(worst < kTolTrainCurve && last < first,
               fmt("%s: loss falls and bf16 weights alone stay within the GPU tolerance", w.c.name));
      }
    } catch (const std::exception& e) {
      expect(false, std::string("real window: ") + e.what());
    }
  }
  return fail;
}

}  // namespace harness
