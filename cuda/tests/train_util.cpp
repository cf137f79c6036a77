// Definitions of train_util.h: the training-step test cases and their CPU references.
#include "train_util.h"

#include <cmath>
#include <cstring>
#include <exception>
#include <thread>

namespace harness {
namespace tr {


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
    case kRoleQNormW: case kRoleKNormW: return layer && c.qk_norm;
    case kRolePostAttnNormW: return layer && c.post_norm;
    case kRolePostMlpNormW: return c.post_norm;
    default: return false;
  }
}

void set_post_norms(sc::TrainStep& t, const Case& c, const Params& p) {
  using namespace streamline;
  if (!c.post_norm) return;
  t.set_post_norm(p[kRolePostAttnNormW].empty() ? nullptr : p[kRolePostAttnNormW].data(), p[kRolePostMlpNormW].data());
}

Params make_params(const Case& c, Rng& r) {
  using namespace streamline;
  Params p;
  for (int role = 0; role < kAllRoles; role++) {
    if (!role_used(c, role)) continue;
    size_t rows = 0, cols = 0;
    role_shape(c.s, role, &rows, &cols);
    const bool norm_w = role == kRoleAttnNormW || role == kRoleMlpNormW || role == kRoleQNormW || role == kRoleKNormW;
    // Gemma's effective post norm weights (1 + w) spread far from 1, so a dropped or misplaced one shows.
    const bool post = role == kRolePostAttnNormW || role == kRolePostMlpNormW;
    p[role] = randn(rows * cols, r, cols > 1 ? float(1.0 / std::sqrt(double(cols))) : post ? 0.5f : 0.1f);
    if (post)
      for (auto& v : p[role]) v += 1.f;
    if (norm_w)
      for (auto& v : p[role]) v += 1.f;
  }
  return p;
}

streamline::ReplacementParams cpu_params(const Params& p) {
  streamline::ReplacementParams v{};
  for (int r = 0; r < kAllRoles; r++) v[r] = p[r].empty() ? nullptr : p[r].data();
  return v;
}
streamline::ReplacementGrads cpu_grads(Params& g) {
  streamline::ReplacementGrads v{};
  for (int r = 0; r < kAllRoles; r++) v[r] = g[r].empty() ? nullptr : g[r].data();
  return v;
}
Params zeros_like(const Params& p) {
  Params g;
  for (int r = 0; r < kAllRoles; r++) g[r].assign(p[r].size(), 0.f);
  return g;
}


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
  // Partial RoPE (s.rotary < Dh): rot/2 frequencies over rot (Phi-3's), zero-padded to Dh/2 so that a TrainStep
  // created with whole heads (gpu_spec) reads real memory before set_rotary_dim narrows it.
  const size_t rot = c.s.rotary ? c.s.rotary : c.s.Dh;
  std::vector<float> inv(c.s.Dh / 2 + 1, 0.f);
  for (size_t i = 0; i < rot / 2; i++) inv[i] = float(1.0 / std::pow(10000.0, 2.0 * double(i) / double(rot)));
  return inv;
}

ReplacementSpec gpu_spec(const ReplacementSpec& s) {
  ReplacementSpec g = s;
  g.rotary = 0;
  return g;
}

void narrow_rope(sc::TrainStep& t, const ReplacementSpec& s, const std::vector<float>& inv) {
  if (s.use_rope && s.rotary != 0 && s.rotary != s.Dh) t.set_rotary_dim(s.rotary, inv.data());
}

ReplacementSpec with_rot(ReplacementSpec s, size_t rot) {
  s.rotary = rot;
  return s;
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
  for (int r = 0; r < kAllRoles; r++) {
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
  for (int r = 0; r < kAllRoles; r++)
    if (!g[r].empty()) t.get_grad(r, g[r].data());
  return g;
}
Params gpu_params(const sc::TrainStep& t, const Params& like) {
  Params g = zeros_like(like);
  for (int r = 0; r < kAllRoles; r++)
    if (!g[r].empty()) t.get_param(r, g[r].data());
  return g;
}

// Worst error over the present roles: ||a - b|| / max(||b||, floor * ||b over all roles||). floor = 0 is the plain
// relative L2 error. Gradients use floor = 1e-2: a role whose gradient is mathematically (near) zero, such as k.bias
// without RoPE (softmax ignores a per-query constant), is measured against 1 % of the whole gradient instead of
// against its own rounding noise. *worst receives the role name.
Compare worst_role(const Params& a, const Params& b, std::string* worst, double floor) {
  double total = 0;
  for (int r = 0; r < kAllRoles; r++)
    for (float v : b[r]) total += double(v) * v;
  Compare w;
  for (int r = 0; r < kAllRoles; r++) {
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

streamline_cuda_train_spec capi_train_spec(const ReplacementSpec& s, bool use_cublaslt) {
  streamline_cuda_train_spec c{};
  c.batch = int64_t(s.B), c.seq_len = int64_t(s.T), c.hidden = int64_t(s.D), c.heads = int64_t(s.H);
  c.kv_heads = int64_t(s.Hk), c.head_dim = int64_t(s.Dh), c.intermediate = int64_t(s.F);
  c.norm = s.layer_norm ? 1 : 0, c.activation = int32_t(s.act), c.gated = s.gated ? 1 : 0;
  c.use_rope = s.use_rope ? 1 : 0, c.use_cublaslt = use_cublaslt ? 1 : 0;
  c.norm_eps = s.norm_eps, c.attn_scale = 0.f, c.rope_attention_scaling = s.rope_attention_scaling;
  return c;
}

Bf16Rows bf16_rows(const std::vector<float>& v, size_t B, size_t TD) {
  Bf16Rows r;
  for (size_t b = 0; b < B; b++) r.data.push_back(to_bf16(std::vector<float>(v.begin() + b * TD, v.begin() + (b + 1) * TD)));
  for (const auto& d : r.data) r.ptrs.push_back(d.data());
  return r;
}

std::vector<double> pipelined(size_t n, const std::function<void(size_t)>& stage,
                              const std::function<double(size_t)>& step) {
  std::vector<double> out;
  if (n == 0) return out;
  stage(0);
  for (size_t i = 0; i < n; i++) {
    std::exception_ptr err;
    std::thread next([&] {
      try {
        if (i + 1 < n) stage(i + 1);
      } catch (...) {
        err = std::current_exception();
      }
    });
    try {
      out.push_back(step(i));
    } catch (...) {
      next.join();
      throw;
    }
    next.join();
    if (err) std::rethrow_exception(err);
  }
  return out;
}

bool same_losses(const std::vector<double>& a, const std::vector<double>& b, std::string* detail) {
  bool same = a.size() == b.size();
  for (size_t i = 0; i < a.size() && i < b.size(); i++) {
    same = same && (a[i] == b[i] || (std::isnan(a[i]) && std::isnan(b[i])));
    *detail += fmt("%s%.17g/%.17g", i ? ", " : "", a[i], b[i]);
  }
  return same;
}

bool same_bits(const Params& a, const Params& b) {
  for (int k = 0; k < kAllRoles; k++)
    if (a[k].size() != b[k].size() || (!a[k].empty() && std::memcmp(a[k].data(), b[k].data(), a[k].size() * 4) != 0))
      return false;
  return true;
}

void guard(const std::string& name, const std::function<void()>& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    record("train", name + ": uncaught exception", false, NAN, 0, e.what());
  }
}

// One optimiser step of two micro-batches (full, then one row fewer: partial batches and accumulation), loss,
// gradients, the norm and the updated parameters.

}  // namespace tr
}  // namespace harness
