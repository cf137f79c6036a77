// The lm objective on the GPU (issue 9; cuda/lm_head.cu, cuda/replacement_lm.cu) against the CPU's
// streamline::head_loss_backward / lm_loss_step / lm_loss_eval (native/src/train/lm_loss.cpp):
// - the head alone (final RMSNorm / LayerNorm with bias / none, odd vocabularies, logits chunks that split the batch,
//   rows without a target, a NaN row that must stay in its row);
// - a training step through frozen layers: a `layer` replacement with two frozen Llama-style layers (GQA, RoPE, padded
//   sequences), an `mlp` replacement with one frozen OPT-style layer (LayerNorm, every bias, the f32 attention
//   backward's head size), a window at the end of the model (no frozen layer, no final norm): loss, every gradient,
//   validation losses per sequence, validation leaving the step's state alone;
// - edges: no target (loss 0, no gradient), a target outside the vocabulary, no tail, a gate bias in the tail.
// Frozen matrices and the head are bf16 on both sides (the CPU reads the same bytes); the GPU rounds its GEMM inputs
// to bf16 as in the mse step, so the tolerances are those of the step (harness.h) unless stated.
#include <dlfcn.h>

#include <cmath>
#include <cstring>
#include <exception>
#include <memory>

#include "cublaslt_loader.h"
#include "streamline/lm_loss.h"
#include "streamline_cuda.h"
#include "train_util.h"

namespace harness {

using namespace tr;

namespace {

using streamline::HeadSpec;
using streamline::HeadWeights;
using streamline::LayerWeights;
using streamline::WeightView;
using streamline::DType;

// LayerWeights fields in the decoder layer's role order (decoder_layer.cuh Role, with gate.bias).
WeightView LayerWeights::*const kFields[sc::kRoleCount] = {
    &LayerWeights::attn_norm_w, &LayerWeights::attn_norm_b, &LayerWeights::q_w,        &LayerWeights::q_b,
    &LayerWeights::k_w,         &LayerWeights::k_b,         &LayerWeights::v_w,        &LayerWeights::v_b,
    &LayerWeights::o_w,         &LayerWeights::o_b,         &LayerWeights::mlp_norm_w, &LayerWeights::mlp_norm_b,
    &LayerWeights::gate_w,      &LayerWeights::gate_b,      &LayerWeights::up_w,       &LayerWeights::up_b,
    &LayerWeights::down_w,      &LayerWeights::down_b};

// One frozen layer: matrices stored bf16, vectors f32, viewed by both the CPU (LayerWeights) and the GPU (HostTensor).
struct Frozen {
  std::array<std::vector<uint16_t>, sc::kRoleCount> bf;
  std::array<std::vector<float>, sc::kRoleCount> f32;
  std::array<std::vector<int64_t>, sc::kRoleCount> shape;
  std::array<sc::HostTensor, sc::kRoleCount> host{};
  std::vector<float> qn, kn;  // Qwen3's q/k norms (f32 [Dh]; empty = none)
  sc::HostTensor hqn, hkn;
  std::vector<float> pan, pmn;  // Gemma's post norms (f32 [D]; empty = none)
  sc::HostTensor hpan, hpmn;
  LayerWeights cpu;
};

Frozen make_frozen(const ReplacementSpec& s, bool biases, Rng& r, bool qk_norm = false, bool post_norm = false) {
  const Case c{"frozen", ReplacementKind::Layer, s, biases, qk_norm, post_norm};
  const Params p = make_params(c, r);
  Frozen f;
  if (post_norm) {
    f.pan = p[streamline::kRolePostAttnNormW];
    f.pmn = p[streamline::kRolePostMlpNormW];
    f.cpu.post_attn_norm_w = WeightView{f.pan.data(), DType::F32, {int64_t(s.D)}};
    f.cpu.post_mlp_norm_w = WeightView{f.pmn.data(), DType::F32, {int64_t(s.D)}};
    f.hpan = sc::HostTensor{f.pan.data(), DType::F32, s.D};
    f.hpmn = sc::HostTensor{f.pmn.data(), DType::F32, s.D};
  }
  if (qk_norm) {
    f.qn = p[streamline::kRoleQNormW];
    f.kn = p[streamline::kRoleKNormW];
    f.cpu.q_norm_w = WeightView{f.qn.data(), DType::F32, {int64_t(s.Dh)}};
    f.cpu.k_norm_w = WeightView{f.kn.data(), DType::F32, {int64_t(s.Dh)}};
    f.hqn = sc::HostTensor{f.qn.data(), DType::F32, s.Dh};
    f.hkn = sc::HostTensor{f.kn.data(), DType::F32, s.Dh};
  }
  for (int tr = 0; tr < kRoles; tr++) {
    if (p[tr].empty()) continue;
    const int lr = tr <= streamline::kRoleGateW ? tr : tr + 1;
    size_t rows = 0, cols = 0;
    streamline::role_shape(s, tr, &rows, &cols);
    f.shape[lr] = cols > 1 ? std::vector<int64_t>{int64_t(rows), int64_t(cols)} : std::vector<int64_t>{int64_t(rows)};
    WeightView& v = f.cpu.*kFields[lr];
    v.shape = f.shape[lr];
    if (cols > 1) {
      f.bf[lr] = to_bf16(p[tr]);
      v.data = f.bf[lr].data(), v.dtype = DType::BF16;
      f.host[lr] = sc::HostTensor{f.bf[lr].data(), DType::BF16, p[tr].size()};
    } else {
      f.f32[lr] = p[tr];
      v.data = f.f32[lr].data(), v.dtype = DType::F32;
      f.host[lr] = sc::HostTensor{f.f32[lr].data(), DType::F32, p[tr].size()};
    }
  }
  return f;
}

struct Head {
  std::vector<uint16_t> w;  // [V, D] bf16
  std::vector<float> nw, nb;
  HeadSpec spec;
  HeadWeights cpu;
  sc::HostTensor hw, hnw, hnb;
};

// final_norm: 0 none, 1 the model's norm without bias, 2 with bias (LayerNorm only).
Head make_head(const ReplacementSpec& s, size_t V, int final_norm, Rng& r) {
  Head h;
  h.spec.hidden = s.D, h.spec.vocab = V, h.spec.norm_eps = s.norm_eps;
  h.spec.norm = s.layer_norm ? streamline::NormKind::Layer : streamline::NormKind::Rms;
  h.spec.final_norm = final_norm > 0;
  h.w = to_bf16(randn(V * s.D, r, float(2.0 / std::sqrt(double(s.D)))));
  h.cpu.lm_head = WeightView{h.w.data(), DType::BF16, {int64_t(V), int64_t(s.D)}};
  h.hw = sc::HostTensor{h.w.data(), DType::BF16, V * s.D};
  if (final_norm > 0) {
    h.nw = randn(s.D, r, 0.1f);
    for (auto& v : h.nw) v += 1.f;
    h.cpu.norm_w = WeightView{h.nw.data(), DType::F32, {int64_t(s.D)}};
    h.hnw = sc::HostTensor{h.nw.data(), DType::F32, s.D};
  }
  if (final_norm > 1) {
    h.nb = randn(s.D, r, 0.1f);
    h.cpu.norm_b = WeightView{h.nb.data(), DType::F32, {int64_t(s.D)}};
    h.hnb = sc::HostTensor{h.nb.data(), DType::F32, s.D};
  }
  return h;
}

// Next-token targets: random ids, -1 on each sequence's last row, on padded rows and on a few others.
std::vector<int32_t> make_targets(const Batch& b, size_t T, size_t V, Rng& r) {
  std::vector<int32_t> t(b.B * T);
  for (size_t m = 0; m < t.size(); m++) {
    const bool none = m % T == T - 1 || !b.mask[m] || r.uniform() < 0.1f;
    t[m] = none ? -1 : int32_t(r.next() % V);
  }
  return t;
}

struct LmCase {
  const char* name;
  ReplacementKind kind;
  ReplacementSpec s;
  bool biases;
  size_t frozen, V;
  int final_norm;
  size_t chunk_rows;
  bool qk_norm = false;  // Qwen3: q/k norms in R (a layer) and in every frozen layer
  bool post_norm = false;  // Gemma: post norms in R (post_mlp_norm only for an mlp) and in every frozen layer
  // Per-layer RoPE (Gemma 3's sliding and full layers): frozen layer k rotates with base 1e6 and attention scaling
  // 1.25 where bit k is set, with R's own otherwise (repeated to set_lm_tail_rope, as the addon does); 0 = no call.
  unsigned other_rope = 0;
  size_t rope_tables = 0;  // the distinct tables set_lm_tail_rope should make of it (the dedupe)
};

// The rows set_lm_tail_rope and FrozenTail take for a case's other_rope: [frozen * rot/2] and one scaling per layer.
struct TailRope {
  std::vector<float> rows, scalings;
  std::vector<std::vector<float>> per_layer;  // the CPU's FrozenTail::inv_freqs
};
constexpr double kOtherBase = 1e6;
constexpr float kOtherScaling = 1.25f;
TailRope tail_rope(const ReplacementSpec& s, size_t frozen, unsigned other, const std::vector<float>& inv) {
  TailRope t;
  const size_t rot = s.rotary ? s.rotary : s.Dh, half = rot / 2;
  for (size_t k = 0; k < frozen; k++) {
    std::vector<float> row(inv.begin(), inv.begin() + long(half));
    float sc = s.rope_attention_scaling;
    if (other >> k & 1) {
      for (size_t i = 0; i < half; i++) row[i] = float(1.0 / std::pow(kOtherBase, 2.0 * double(i) / double(rot)));
      sc = kOtherScaling;
    }
    t.rows.insert(t.rows.end(), row.begin(), row.end());
    t.scalings.push_back(sc);
    t.per_layer.push_back(row);
  }
  return t;
}

std::vector<LmCase> lm_cases() {
  return {
      {"lm: layer, 2 frozen llama layers (gqa, rope, padded), rmsnorm head", ReplacementKind::Layer,
       spec(2, 21, 64, 4, 2, 16, 96, false, Activation::SiLU, true, true), false, 2, 97, 1, 7},
      {"lm: mlp, 1 frozen opt-style layer (layernorm, biases, Dh 24), layernorm+bias head", ReplacementKind::MLP,
       spec(2, 11, 72, 3, 3, 24, 80, true, Activation::ReLU, false, false), true, 1, 64, 2, 5},
      {"lm: mlp, 1 frozen llama layer with rope (the mlp trainer's own rope tables)", ReplacementKind::MLP,
       spec(2, 13, 64, 4, 2, 16, 96, false, Activation::SiLU, true, true), false, 1, 80, 1, 6},
      {"lm: layer, window at the end (no frozen layer), no final norm", ReplacementKind::Layer,
       spec(2, 9, 32, 2, 1, 16, 64, false, Activation::GELUTanh, false, true), false, 0, 50, 0, 4},
  };
}

streamline::FrozenTail cpu_tail(const LmCase& c, const std::vector<Frozen>& fr, const Head& h, size_t B,
                                const TailRope* rope = nullptr) {
  streamline::FrozenTail t;
  ReplacementSpec s = c.s;
  s.B = B;
  t.layer = streamline::layer_spec_of(s);
  for (const Frozen& f : fr) t.layers.push_back(f.cpu);
  t.head = h.spec;
  t.head_w = h.cpu;
  if (rope) t.inv_freqs = rope->per_layer, t.rope_scalings = rope->scalings;
  return t;
}

void set_tail(sc::TrainStep& t, const std::vector<Frozen>& fr, const Head& h, size_t V) {
  std::vector<const sc::HostTensor*> layers;
  std::vector<std::pair<sc::HostTensor, sc::HostTensor>> norms, post;
  bool qk = false, pn = false;
  for (const Frozen& f : fr) {
    layers.push_back(f.host.data());
    norms.emplace_back(f.hqn, f.hkn);
    post.emplace_back(f.hpan, f.hpmn);
    qk = qk || f.hqn.data;
    pn = pn || f.hpan.data;
  }
  t.set_lm_tail(layers, h.hnw, h.hnb, h.hw, V);
  if (qk) t.set_lm_tail_qk_norm(norms);
  if (pn) t.set_lm_tail_post_norm(post);
}

// What the step, staging, edge and C API checks start from: R's weights, `frozen` frozen layers, the head, one
// batch and its targets, drawn from one seed.
struct Fixture {
  Case rc;
  Params p0;
  std::vector<float> inv;
  std::vector<Frozen> fr;
  Head h;
  Batch b;
  std::vector<int32_t> tg;
};
Fixture make_fixture(const LmCase& c, uint64_t seed, size_t frozen) {
  Rng r(seed);
  Fixture f{Case{c.name, c.kind, c.s, c.biases}, {}, {}, {}, {}, {}, {}};
  f.p0 = make_params(f.rc, r);
  f.inv = inv_freq(f.rc);
  for (size_t k = 0; k < frozen; k++) f.fr.push_back(make_frozen(c.s, c.biases, r));
  f.h = make_head(c.s, c.V, c.final_norm, r);
  f.b = make_batch(f.rc, c.s.B, r, nullptr, f.inv);
  f.tg = make_targets(f.b, c.s.T, c.V, r);
  return f;
}

// The head alone: LmHead::run against head_loss_backward on the same h (f32) and bf16 weights, once on clean rows
// (loss and dL/dh) and once with a NaN in a row that has a target (NaN loss on both; dL/dh NaN in that row only, at
// the CPU's positions).
void check_head(const LmCase& c, bool use_lt) {
  Rng r(31 + c.V);
  const size_t B = c.s.B, T = c.s.T, D = c.s.D, M = B * T, nan_row = T + 2;
  const Head h = make_head(c.s, c.V, c.final_norm, r);
  const Batch b = make_batch(Case{c.name, c.kind, c.s, c.biases}, B, r, nullptr, {});
  std::vector<int32_t> tg = make_targets(b, T, c.V, r);
  tg[nan_row] = int32_t(c.V / 2);
  size_t count = 0;
  for (int32_t v : tg) count += v >= 0 ? 1 : 0;
  const float scale = 0.75f;
  const std::string nm = fmt("%s head (%s)", c.name, use_lt ? "cublaslt" : "fallback");
  sc::Gemm gemm(use_lt);
  cudaStream_t st;
  H_CHECK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  {
    sc::LmHead head(gemm, st, D, c.V, c.s.layer_norm ? sc::NormKind::Layer : sc::NormKind::RMS, c.s.norm_eps, h.hnw,
                    h.hnb, h.hw, M);
    head.set_chunk_rows(c.chunk_rows);
    // Both sides on x: mean NLL and dL/dh (the CPU's grad_scale · d(mean)/dh; run() takes the per-row scale).
    auto both = [&](const std::vector<float>& x, double* lg, std::vector<float>* dg, double* lc, std::vector<float>* dc) {
      dc->assign(M * D, 0.f);
      *lc = streamline::head_loss_backward(dc->data(), x.data(), M, h.spec, h.cpu, tg.data(), scale);
      DevBuf dx = dev(x), dt = dev(tg), dnll(M * 8), ddh(M * D * 4);
      ddh.poison();
      dnll.poison();
      head.run(dnll.as<double>(), ddh.as<float>(), dx.as<float>(), dt.as<int32_t>(), M, float(scale / double(count)));
      H_CHECK(cudaStreamSynchronize(st));
      double sum = 0;
      for (double v : host<double>(dnll, M)) sum += v;
      *lg = sum / double(count);
      *dg = host<float>(ddh, M * D);
    };
    double lg = 0, lc = 0;
    std::vector<float> dg, dc;
    both(b.x, &lg, &dg, &lc, &dc);
    const double lerr = std::fabs(lg - lc) / std::fabs(lc);
    record("train", nm + ": mean NLL vs head_loss_backward", lerr <= kTolTrainLoss, lerr, kTolTrainLoss,
           fmt("gpu %.7g cpu %.7g", lg, lc));
    check("train", nm + ": dL/dh vs head_loss_backward", compare(dg.data(), dc.data(), M * D), kTolBf16);
    std::vector<float> xn = b.x;
    xn[nan_row * D + 3] = NAN;
    both(xn, &lg, &dg, &lc, &dc);
    record("train", nm + ": a NaN row gives a NaN loss on both", std::isnan(lg) && std::isnan(lc), 0, 0);
    const Compare cn = compare(dg.data(), dc.data(), M * D);
    bool rows_ok = true;
    for (size_t m = 0; m < M; m++)
      for (size_t d = 0; d < D; d++) rows_ok = rows_ok && (m == nan_row) == std::isnan(dg[m * D + d]);
    record("train", nm + ": dL/dh NaN in the NaN row only (as the CPU's), the rest within tolerance",
           rows_ok && cn.nan_mismatch == 0 && cn.rel_l2 <= kTolBf16, cn.rel_l2, kTolBf16);
  }
  H_CHECK(cudaStreamDestroy(st));
}

void check_lm_step(const LmCase& c, bool use_lt) {
  Rng r(900 + c.V);
  const Case rc{c.name, c.kind, c.s, c.biases, c.qk_norm, c.post_norm};
  const Params p0 = make_params(rc, r);
  const std::vector<float> inv = inv_freq(rc);
  std::vector<Frozen> fr;
  for (size_t k = 0; k < c.frozen; k++) fr.push_back(make_frozen(c.s, c.biases, r, c.qk_norm, c.post_norm));
  const Head h = make_head(c.s, c.V, c.final_norm, r);
  const size_t B = c.s.B, T = c.s.T, D = c.s.D;
  const Batch b1 = make_batch(rc, B, r, nullptr, inv), b2 = make_batch(rc, B - 1, r, nullptr, inv);
  const std::vector<int32_t> t1 = make_targets(b1, T, c.V, r), t2 = make_targets(b2, T, c.V, r);
  const float w1 = float(B) / float(2 * B - 1), w2 = float(B - 1) / float(2 * B - 1);
  const std::string nm = fmt("%s (%s)", c.name, use_lt ? "cublaslt" : "fallback");
  const float* ivp = c.s.use_rope ? inv.data() : nullptr;
  const TailRope trope = tail_rope(c.s, c.frozen, c.other_rope, inv);
  const TailRope* tr = c.other_rope ? &trope : nullptr;

  Params gc = zeros_like(p0);
  auto cpu_step_lm = [&](const Batch& b, const std::vector<int32_t>& tg, float scale) {
    ReplacementSpec s = c.s;
    s.B = b.B;
    s.grad_scale = scale;
    return streamline::lm_loss_step(c.kind, s, cpu_params(p0), cpu_grads(gc), b.x.data(), cpu_tail(c, fr, h, b.B, tr),
                                    tg.data(), b.pos.data(), b.mask.data(), ivp);
  };
  const double lc1 = cpu_step_lm(b1, t1, w1), lc2 = cpu_step_lm(b2, t2, w2);

  // rope: false = the tail rotates like R whatever the case says (the check that the per-layer rope matters)
  auto make = [&](bool rope) {
    auto t = std::make_unique<sc::TrainStep>(c.kind, gpu_spec(c.s), gpu_view(p0), ivp, use_lt);
    narrow_rope(*t, c.s, inv);  // before the tail: its frozen layers take the trainer's rotation
    if (!p0[streamline::kRoleQNormW].empty())
      t->set_qk_norm(p0[streamline::kRoleQNormW].data(), p0[streamline::kRoleKNormW].data());
    set_post_norms(*t, rc, p0);
    set_tail(*t, fr, h, c.V);
    if (tr && rope) t->set_lm_tail_rope(c.frozen, tr->rows.data(), tr->scalings.data());
    t->set_lm_chunk_rows(c.chunk_rows);
    return t;
  };
  const std::unique_ptr<sc::TrainStep> tp = make(true);
  sc::TrainStep& t = *tp;
  if (tr)
    record("train", nm + ": set_lm_tail_rope made one table per distinct rope other than R's",
           t.lm_tail_rope_tables() == c.rope_tables, double(t.lm_tail_rope_tables()), double(c.rope_tables));
  // Validation first (before any gradient exists): each sequence against lm_loss_eval of that sequence alone.
  std::vector<double> le(B, -1.0);
  t.eval_lm(b1.x.data(), t1.data(), b1.pos.data(), b1.mask.data(), B, le.data());
  ReplacementSpec s1 = c.s;
  s1.B = 1;
  double eerr = 0;
  std::string detail;
  for (size_t i = 0; i < B; i++) {
    const double lc = streamline::lm_loss_eval(c.kind, s1, cpu_params(p0), b1.x.data() + i * T * D,
                                               cpu_tail(c, fr, h, 1, tr), t1.data() + i * T, b1.pos.data() + i * T,
                                               b1.mask.data() + i * T, ivp);
    eerr = std::max(eerr, std::isfinite(le[i]) ? std::fabs(le[i] - lc) / lc : INFINITY);
    detail += fmt("%sgpu %.6g cpu %.6g", i ? ", " : "", le[i], lc);
  }
  record("train", nm + ": eval_lm per sequence vs lm_loss_eval", eerr <= kTolEvalLoss, eerr, kTolEvalLoss, detail);

  const double lg1 = t.step_lm(b1.x.data(), t1.data(), b1.pos.data(), b1.mask.data(), B, w1);
  const Params g1 = gpu_grads(t, p0);
  std::vector<double> le2(B, -1.0);
  t.eval_lm(b1.x.data(), t1.data(), b1.pos.data(), b1.mask.data(), B, le2.data());
  std::string role;
  const Compare same = worst_role(gpu_grads(t, p0), g1, &role);
  record("train", nm + ": eval_lm between micro-batches keeps the gradients and repeats its losses bitwise",
         le2 == le && same.rel_l2 == 0 && same.nan_mismatch == 0, same.rel_l2, 0, role);
  const double lg2 = t.step_lm(b2.x.data(), t2.data(), b2.pos.data(), b2.mask.data(), B - 1, w2);
  const double lerr = std::max(std::fabs(lg1 - lc1) / lc1, std::fabs(lg2 - lc2) / lc2);
  record("train", nm + ": lm loss of two micro-batches vs lm_loss_step", lerr <= kTolTrainLoss, lerr, kTolTrainLoss,
         fmt("gpu %.6g %.6g cpu %.6g %.6g", lg1, lg2, lc1, lc2));
  const Params gg = gpu_grads(t, p0);
  const Compare gerr = worst_role(gg, gc, &role, kGradFloor);
  // Every role's error in the note: how far the worst stands from the rest.
  std::string roles;
  for (int k = 0; k < kRoles; k++) {
    if (gg[k].empty()) continue;
    Params a, e;
    a[k] = gg[k], e[k] = gc[k];
    for (int j = 0; j < kRoles; j++)
      if (j != k) a[j].clear(), e[j] = gc[j];  // the floor stays relative to the whole gradient
    std::string nm1;
    roles += fmt("%s %.2g; ", streamline::role_name(k), worst_role(a, e, &nm1, kGradFloor).rel_l2);
  }
  record("train", nm + ": accumulated gradients through the frozen rest (worst role)",
         gerr.nan_mismatch == 0 && gerr.rel_l2 <= kTolLmGrad, gerr.rel_l2, kTolLmGrad, role + ": " + roles);
  if (!tr) return;
  // The same two micro-batches with the tail's own rope ignored (every frozen layer rotating like R, as before
  // set_lm_tail_rope existed): far outside the tolerances of the CPU's per-layer step, loss and gradients (which the
  // step with it meets by a wide margin).
  const std::unique_ptr<sc::TrainStep> ti = make(false);
  const double li1 = ti->step_lm(b1.x.data(), t1.data(), b1.pos.data(), b1.mask.data(), B, w1);
  const double li2 = ti->step_lm(b2.x.data(), t2.data(), b2.pos.data(), b2.mask.data(), B - 1, w2);
  const double ierr = std::max(std::fabs(li1 - lc1) / lc1, std::fabs(li2 - lc2) / lc2);
  std::string irole;
  const Compare ig = worst_role(gpu_grads(*ti, p0), gc, &irole, kGradFloor);
  record("train", nm + ": the per-layer rope matters: ignoring it, loss and gradients are > 5 tolerances off the CPU",
         ierr > 5 * kTolTrainLoss && ig.rel_l2 > 5 * kTolLmGrad, ig.rel_l2, 5 * kTolLmGrad,
         fmt("loss %.3g off (with it %.3g), gradients %.3g off (%s; with it %.3g)", ierr, lerr, ig.rel_l2, irole.c_str(),
             gerr.rel_l2));
}

// Prefetch for the lm loss: stage_lm (from a second thread, through 4100-byte staging halves) + step_lm_staged over
// five micro-batches (one without a target, one with a NaN) give step_lm's losses and gradients bitwise; mixing with
// an mse stage is refused and leaves the batch staged; a bad target fails at stage_lm and takes no slot.
void check_lm_staged(const LmCase& c, bool use_lt) {
  Rng r(4000 + c.V);
  const Case rc{c.name, c.kind, c.s, c.biases};
  const Params p0 = make_params(rc, r);
  const std::vector<float> inv = inv_freq(rc);
  const float* ivp = c.s.use_rope ? inv.data() : nullptr;
  std::vector<Frozen> fr;
  for (size_t k = 0; k < c.frozen; k++) fr.push_back(make_frozen(c.s, c.biases, r));
  const Head h = make_head(c.s, c.V, c.final_norm, r);
  std::vector<Batch> bs;
  std::vector<std::vector<int32_t>> tgs;
  for (int i = 0; i < 5; i++) {
    bs.push_back(make_batch(rc, i == 2 ? c.s.B - 1 : c.s.B, r, nullptr, inv));
    tgs.push_back(make_targets(bs.back(), c.s.T, c.V, r));
  }
  std::fill(tgs[1].begin(), tgs[1].end(), -1);  // nothing to learn
  bs[3].x[2 * c.s.D + 1] = NAN;                 // token 2 of sequence 0 (real, with a target unless drawn without)
  sc::TrainStep plain(c.kind, c.s, gpu_view(p0), ivp, use_lt), staged(c.kind, c.s, gpu_view(p0), ivp, use_lt);
  set_tail(plain, fr, h, c.V);
  set_tail(staged, fr, h, c.V);
  staged.set_stage_chunk(4100);
  const std::string nm = fmt("%s (%s)", c.name, use_lt ? "cublaslt" : "fallback");
  auto stage = [&](size_t i) {
    staged.stage_lm(bs[i].x.data(), tgs[i].data(), bs[i].pos.data(), bs[i].mask.data(), bs[i].B);
  };
  std::vector<double> lp, ls;
  for (size_t i = 0; i < bs.size(); i++)
    lp.push_back(plain.step_lm(bs[i].x.data(), tgs[i].data(), bs[i].pos.data(), bs[i].mask.data(), bs[i].B,
                               0.5f + 0.1f * float(i)));
  ls = pipelined(bs.size(), stage, [&](size_t i) { return staged.step_lm_staged(0.5f + 0.1f * float(i)); });
  std::string detail;
  record("train", nm + ": staged lm steps give step_lm's losses bitwise", same_losses(lp, ls, &detail) && lp[1] == 0.0,
         0, 0, detail);
  record("train", nm + ": staged lm steps accumulate step_lm's gradients bitwise",
         same_bits(gpu_grads(plain, p0), gpu_grads(staged, p0)), 0, 0);

  // stage_lm_bf16: x rounded to bf16 as a pair cache holds it, one pointer per sequence; step_lm on the widened values.
  {
    std::vector<Bf16Rows> xr;
    std::vector<std::vector<float>> x32;
    for (const Batch& b : bs) {
      x32.push_back(round_bf16(b.x));
      xr.push_back(bf16_rows(b.x, b.B, c.s.T * c.s.D));
    }
    sc::TrainStep plain16(c.kind, c.s, gpu_view(p0), ivp, use_lt), staged16(c.kind, c.s, gpu_view(p0), ivp, use_lt);
    set_tail(plain16, fr, h, c.V);
    set_tail(staged16, fr, h, c.V);
    staged16.set_stage_chunk(4100);
    std::vector<double> l32, l16;
    for (size_t i = 0; i < bs.size(); i++)
      l32.push_back(plain16.step_lm(x32[i].data(), tgs[i].data(), bs[i].pos.data(), bs[i].mask.data(), bs[i].B,
                                    0.5f + 0.1f * float(i)));
    l16 = pipelined(
        bs.size(),
        [&](size_t i) { staged16.stage_lm_bf16(xr[i].ptrs.data(), tgs[i].data(), bs[i].pos.data(), bs[i].mask.data(), bs[i].B); },
        [&](size_t i) { return staged16.step_lm_staged(0.5f + 0.1f * float(i)); });
    record("train", nm + ": bf16-staged lm steps give step_lm's losses on the widened inputs bitwise",
           same_losses(l32, l16, &detail), 0, 0, detail);
    record("train", nm + ": bf16-staged lm steps accumulate step_lm's gradients bitwise",
           same_bits(gpu_grads(plain16, p0), gpu_grads(staged16, p0)), 0, 0);
    // Kept on the GPU without targets (the lm loss needs x only), staged by index.
    sc::TrainStep kept(c.kind, c.s, gpu_view(p0), ivp, use_lt);
    set_tail(kept, fr, h, c.V);
    size_t nblocks = 0;
    for (const Batch& b : bs) nblocks += b.B;
    const bool ok = kept.keep_pairs(nblocks, false, 0.5);
    std::vector<std::vector<int64_t>> ids(bs.size());
    for (size_t i = 0, k = 0; i < bs.size(); i++)
      for (size_t b = 0; b < bs[i].B; b++, k++) {
        ids[i].push_back(int64_t(k));
        kept.put_pair(k, xr[i].ptrs[b], nullptr);
      }
    std::vector<double> lk;
    if (ok)
      lk = pipelined(
          bs.size(),
          [&](size_t i) { kept.stage_lm_kept(ids[i].data(), tgs[i].data(), bs[i].pos.data(), bs[i].mask.data(), bs[i].B); },
          [&](size_t i) { return kept.step_lm_staged(0.5f + 0.1f * float(i)); });
    const bool mse_refused =
        throws_with([&] { kept.stage_kept(ids[0].data(), bs[0].pos.data(), bs[0].mask.data(), bs[0].B); }, "without targets");
    record("train", nm + ": kept-pair lm steps give step_lm's losses bitwise (mse staging of x-only pairs refused)",
           ok && mse_refused && same_losses(l32, lk, &detail), 0, 0, detail);
    record("train", nm + ": kept-pair lm steps accumulate step_lm's gradients bitwise",
           ok && same_bits(gpu_grads(plain16, p0), gpu_grads(kept, p0)), 0, 0);
  }

  std::vector<float> target(bs[0].x.size(), 0.25f);
  staged.stage(bs[0].x.data(), target.data(), bs[0].pos.data(), bs[0].mask.data(), bs[0].B);
  const bool mixed = throws_with([&] { staged.step_lm_staged(1.f); }, "staged for the mse loss");
  const double lm_mse = staged.step_staged(1.f);  // still staged, and taken by the mse step
  std::vector<int32_t> over = tgs[0];
  over[1] = int32_t(c.V);
  const bool bad = throws_with([&] {
    staged.stage_lm(bs[0].x.data(), over.data(), bs[0].pos.data(), bs[0].mask.data(), bs[0].B);
  }, "outside the vocabulary");
  stage(0);
  stage(0);  // both slots: the bad stage took none
  const bool third = throws_with([&] { stage(0); }, "both input slots");
  const bool wrong = throws_with([&] { staged.step_staged(1.f); }, "staged for the lm loss");
  const double l1 = staged.step_lm_staged(1.f), l2 = staged.step_lm_staged(1.f);
  record("train", nm + ": lm staging misuse: an mse batch refused by step_lm_staged (and kept), a bad target refused "
                       "at stage_lm (no slot taken), a third stage, an lm batch refused by step_staged",
         mixed && std::isfinite(lm_mse) && bad && third && wrong && l1 == l2 && std::isfinite(l1), 0, 0,
         fmt("mixed %d bad %d third %d wrong %d", mixed, bad, third, wrong));
}

void check_lm_edges(bool use_lt) {
  const LmCase c = lm_cases()[0];
  const Fixture f = make_fixture(c, 55, 1);
  const Batch& b = f.b;
  sc::TrainStep t(c.kind, c.s, gpu_view(f.p0), f.inv.data(), use_lt);
  record("train", "lm: step_lm without a tail fails",
         throws_with([&] { t.step_lm(b.x.data(), f.tg.data(), b.pos.data(), b.mask.data(), b.B, 1.f); }, "no lm tail"),
         0, 0);
  Rng r(56);
  Frozen bad = make_frozen(c.s, c.biases, r);
  std::vector<float> gb(c.s.F, 0.5f);
  bad.host[sc::kGateB] = sc::HostTensor{gb.data(), DType::F32, gb.size()};
  record("train", "lm: a frozen gate.bias is refused",
         throws_with([&] { t.set_lm_tail({bad.host.data()}, f.h.hnw, f.h.hnb, f.h.hw, c.V); }, "gate.bias"), 0, 0);
  set_tail(t, f.fr, f.h, c.V);
  std::vector<int32_t> over = f.tg;
  over[3] = int32_t(c.V);
  record("train", "lm: a target outside the vocabulary is refused",
         throws_with([&] { t.step_lm(b.x.data(), over.data(), b.pos.data(), b.mask.data(), b.B, 1.f); },
                     "outside the vocabulary"),
         0, 0);
  // A tail that fails half-way (frozen layer 1's v.weight has the wrong size, after layer 0 was uploaded) leaves the
  // old tail in place and gives back every byte it took.
  const double before = t.step_lm(b.x.data(), f.tg.data(), b.pos.data(), b.mask.data(), b.B, 1.f);
  t.zero_grad();
  const size_t mine = t.device_bytes(), all = sc::device_bytes_current();
  Frozen shortv = make_frozen(c.s, c.biases, r);
  shortv.host[sc::kVW].numel -= 1;
  const bool refused = throws_with([&] {
    t.set_lm_tail({f.fr[0].host.data(), shortv.host.data()}, f.h.hnw, f.h.hnb, f.h.hw, c.V);
  }, "v.weight");
  const double after = t.step_lm(b.x.data(), f.tg.data(), b.pos.data(), b.mask.data(), b.B, 1.f);
  t.zero_grad();
  record("train", "lm: a tail failing half-way keeps the old one and frees what it took",
         refused && after == before && t.device_bytes() == mine && sc::device_bytes_current() == all, 0, 0,
         fmt("loss %.17g / %.17g, bytes %zu / %zu", before, after, mine, t.device_bytes()));
  std::vector<int32_t> none(f.tg.size(), -1);
  const double l0 = t.step_lm(b.x.data(), none.data(), b.pos.data(), b.mask.data(), b.B, 1.f);
  bool zero = true;
  for (const auto& x : gpu_grads(t, f.p0))
    for (float v : x) zero = zero && v == 0.f;
  record("train", "lm: no target: loss 0 and no gradient (as the CPU)", l0 == 0.0 && zero, l0, 0);
}

}  // namespace

// The lm functions of the C API through dlopen, on an mlp trainer whose tail has a RoPE layer (the spec's heads and
// inv_freq reach the tail only through train_create): step and eval bitwise the in-process TrainStep's.
// Sliding windows on the lm path (TrainStep::set_windows: the replacement's and one per frozen layer): a windowed
// step (R 5, tail 3 and 0) against the CPU's lm_loss_step with the same windows (ReplacementSpec::window,
// FrozenTail::windows), loss and gradients; windows >= T run bitwise as none; the windows change the loss, and
// eval_lm's real-target-weighted mean is that step's loss (both run the windows); a tail count that is not the
// tail's is refused; set_lm_tail resets the tail windows to 0 and keeps R's.
void check_lm_windows(bool use_lt) {
  const LmCase c = lm_cases()[0];
  Fixture f = make_fixture(c, 4711, c.frozen);
  const size_t B = c.s.B, T = c.s.T;
  const float* ivp = c.s.use_rope ? f.inv.data() : nullptr;
  auto run = [&](size_t w, std::vector<size_t> tw, bool reset_tail, std::vector<double>* eval) {
    sc::TrainStep t(c.kind, c.s, gpu_view(f.p0), ivp, use_lt);
    set_tail(t, f.fr, f.h, c.V);
    t.set_windows(w, tw);
    if (reset_tail) set_tail(t, f.fr, f.h, c.V);
    if (eval) {
      eval->assign(B, -1.0);
      t.eval_lm(f.b.x.data(), f.tg.data(), f.b.pos.data(), f.b.mask.data(), B, eval->data());
    }
    const double l = t.step_lm(f.b.x.data(), f.tg.data(), f.b.pos.data(), f.b.mask.data(), B, 1.f);
    return std::make_pair(l, gpu_grads(t, f.p0));
  };
  const std::string nm = fmt("%s (%s)", c.name, use_lt ? "cublaslt" : "fallback");
  const auto none = run(0, {0, 0}, false, nullptr), wide = run(T, {T, 5 * T}, false, nullptr);
  std::string role;
  const Compare cw = worst_role(wide.second, none.second, &role);
  record("train", nm + ": windows >= T (R and tail) run bitwise as none",
         wide.first == none.first && cw.rel_l2 == 0 && cw.nan_mismatch == 0, cw.rel_l2, 0, role);
  std::vector<double> le;
  const auto win = run(5, {3, 0}, false, &le);
  double num = 0, den = 0;
  for (size_t i = 0; i < B; i++) {
    double n = 0;
    for (size_t k = 0; k < T; k++) n += f.tg[i * T + k] >= 0 ? 1 : 0;
    num += le[i] * n;
    den += n;
  }
  const double serr = std::fabs(num / den - win.first) / win.first;
  record("train", nm + ": windows R 5, tail 3/0: eval_lm's weighted mean is step_lm's loss", serr <= kTolF64Sum, serr,
         kTolF64Sum, fmt("step %.9g, no window %.9g", win.first, none.first));
  record("train", nm + ": the windows change the lm loss", std::fabs(win.first - none.first) > 1e-4 * none.first,
         std::fabs(win.first - none.first), 0);
  {
    ReplacementSpec s = c.s;
    s.B = B;
    s.window = 5;
    streamline::FrozenTail tail = cpu_tail(c, f.fr, f.h, B);
    tail.windows = {3, 0};
    Params gc = zeros_like(f.p0);
    const double lc = streamline::lm_loss_step(c.kind, s, cpu_params(f.p0), cpu_grads(gc), f.b.x.data(), tail,
                                               f.tg.data(), f.b.pos.data(), f.b.mask.data(), ivp);
    const double lerr = std::fabs(win.first - lc) / lc;
    record("train", nm + ": windows R 5, tail 3/0: lm loss vs lm_loss_step with the same windows",
           lerr <= kTolTrainLoss, lerr, kTolTrainLoss, fmt("gpu %.6g cpu %.6g", win.first, lc));
    const Compare ge = worst_role(win.second, gc, &role, kGradFloor);
    record("train", nm + ": windows R 5, tail 3/0: gradients vs lm_loss_step (worst role)",
           ge.nan_mismatch == 0 && ge.rel_l2 <= kTolLmGrad, ge.rel_l2, kTolLmGrad, role);
  }
  // Only R's window differs from `none` after the reset: the same as setting R 5 and tail 0/0.
  const auto reset = run(5, {3, 0}, true, nullptr), r_only = run(5, {0, 0}, false, nullptr);
  const Compare cr = worst_role(reset.second, r_only.second, &role);
  record("train", nm + ": set_lm_tail resets the tail windows, keeps R's",
         reset.first == r_only.first && cr.rel_l2 == 0 && cr.nan_mismatch == 0 && r_only.first != none.first, cr.rel_l2,
         0);
  sc::TrainStep t(c.kind, c.s, gpu_view(f.p0), ivp, use_lt);
  set_tail(t, f.fr, f.h, c.V);
  record("train", nm + ": a tail window count that is not the tail's is refused",
         throws_with([&] { t.set_windows(5, {3}); }, "frozen layers"), 0, 0);
}

void check_capi_lm() {
  std::string so;
  void* lib = open_backend_library(&so);
  if (!lib) {
    record("train", "C API lm: dlopen " + so, false, 0, 0, dlerror());
    return;
  }
#define SYM(name) auto name = reinterpret_cast<decltype(&::name)>(dlsym(lib, #name))
  SYM(streamline_cuda_train_create); SYM(streamline_cuda_train_destroy); SYM(streamline_cuda_train_set_lm_tail);
  SYM(streamline_cuda_train_step_lm); SYM(streamline_cuda_train_eval_lm); SYM(streamline_cuda_last_error);
  SYM(streamline_cuda_train_get_grads); SYM(streamline_cuda_train_stage_lm); SYM(streamline_cuda_train_step_lm_staged);
  SYM(streamline_cuda_train_set_lm_tail_rope);
#undef SYM
  if (!streamline_cuda_train_create || !streamline_cuda_train_destroy || !streamline_cuda_train_set_lm_tail ||
      !streamline_cuda_train_step_lm || !streamline_cuda_train_eval_lm || !streamline_cuda_last_error ||
      !streamline_cuda_train_get_grads || !streamline_cuda_train_stage_lm || !streamline_cuda_train_step_lm_staged) {
    record("train", "C API lm: symbols", false, 0, 0, "missing exports in " + so);
    dlclose(lib);
    return;
  }
  const LmCase c = lm_cases()[2];
  const Fixture f = make_fixture(c, 8080, 1);
  const Params& p0 = f.p0;
  const std::vector<float>& inv = f.inv;
  const std::vector<Frozen>& fr = f.fr;
  const Head& h = f.h;
  const Batch& b = f.b;
  const std::vector<int32_t>& tg = f.tg;
  const bool lt = sc::lt::api() != nullptr;
  sc::TrainStep t(c.kind, c.s, gpu_view(p0), inv.data(), lt);
  set_tail(t, fr, h, c.V);
  std::vector<double> eref(b.B), ev(b.B, -1.0);
  t.eval_lm(b.x.data(), tg.data(), b.pos.data(), b.mask.data(), b.B, eref.data());
  const double lref = t.step_lm(b.x.data(), tg.data(), b.pos.data(), b.mask.data(), b.B, 1.f);
  const Params gref = gpu_grads(t, p0);

  const streamline_cuda_train_spec s = capi_train_spec(c.s, lt);
  const float* hp[STREAMLINE_CUDA_TRAIN_ROLES];
  for (int k = 0; k < kRoles; k++) hp[k] = p0[k].empty() ? nullptr : p0[k].data();
  std::vector<streamline_cuda_weight> roles(STREAMLINE_CUDA_ROLES);
  for (int k = 0; k < STREAMLINE_CUDA_ROLES; k++)
    roles[k] = streamline_cuda_weight{fr[0].host[k].data, int32_t(fr[0].host[k].dtype), int64_t(fr[0].host[k].numel)};
  const streamline_cuda_weight nw{h.hnw.data, int32_t(h.hnw.dtype), int64_t(h.hnw.numel)},
      hw{h.hw.data, int32_t(h.hw.dtype), int64_t(h.hw.numel)};
  streamline_cuda_train* tr = nullptr;
  double loss = 0;
  bool ok = streamline_cuda_train_create(0, &s, hp, inv.data(), &tr) == 0 &&
            streamline_cuda_train_set_lm_tail(tr, 1, roles.data(), &nw, nullptr, &hw, int64_t(c.V)) == 0 &&
            streamline_cuda_train_eval_lm(tr, b.x.data(), tg.data(), b.pos.data(), b.mask.data(), int64_t(b.B),
                                          ev.data()) == 0 &&
            streamline_cuda_train_step_lm(tr, b.x.data(), tg.data(), b.pos.data(), b.mask.data(), int64_t(b.B), 1.f,
                                          &loss) == 0;
  Params g = zeros_like(p0);
  for (int k = 0; k < kRoles && ok; k++)
    if (!g[k].empty()) ok = streamline_cuda_train_get_grads(tr, k, g[k].data(), int64_t(g[k].size())) == 0;
  record("train", "C API lm: create (mlp, heads + rope) / set_lm_tail / eval_lm / step_lm through dlopen", ok, 0, 0,
         ok ? "" : streamline_cuda_last_error());
  if (ok) {
    std::string role;
    const Compare cg = worst_role(g, gref, &role);
    record("train", "C API lm: loss, eval losses and gradients bitwise the in-process step",
           loss == lref && ev == eref && cg.rel_l2 == 0 && cg.nan_mismatch == 0, cg.rel_l2, 0,
           fmt("loss %.17g vs %.17g", loss, lref));
  }
  std::vector<int32_t> over = tg;
  over[1] = int32_t(c.V);
  const bool refused = ok && streamline_cuda_train_step_lm(tr, b.x.data(), over.data(), b.pos.data(), b.mask.data(),
                                                           int64_t(b.B), 1.f, &loss) != 0 &&
                       std::strstr(streamline_cuda_last_error(), "outside the vocabulary") != nullptr;
  record("train", "C API lm: a target outside the vocabulary returns -1 with the reason", refused, 0, 0,
         ok ? streamline_cuda_last_error() : "");
  if (tr) streamline_cuda_train_destroy(tr);
  // Prefetch through the C API on a fresh trainer: stage_lm + step_lm_staged = the in-process step_lm, bitwise.
  tr = nullptr;
  double staged = -1, again = -1;
  const bool sok = streamline_cuda_train_create(0, &s, hp, inv.data(), &tr) == 0 &&
                   streamline_cuda_train_set_lm_tail(tr, 1, roles.data(), &nw, nullptr, &hw, int64_t(c.V)) == 0 &&
                   streamline_cuda_train_stage_lm(tr, b.x.data(), tg.data(), b.pos.data(), b.mask.data(),
                                                  int64_t(b.B)) == 0 &&
                   streamline_cuda_train_step_lm_staged(tr, 1.f, &staged) == 0;
  const bool drained = sok && streamline_cuda_train_step_lm_staged(tr, 1.f, &again) != 0 &&
                       std::strstr(streamline_cuda_last_error(), "no staged batch") != nullptr;
  record("train", "C API lm: stage_lm + step_lm_staged = the in-process step_lm (loss bitwise); nothing left staged",
         sok && drained && staged == lref, 0, 0,
         sok ? fmt("staged %.17g plain %.17g", staged, lref) : streamline_cuda_last_error());
  if (tr) streamline_cuda_train_destroy(tr);
  // Per-layer RoPE: the frozen layer rotating otherwise than the trainer's tables (train_set_lm_tail_rope) gives the
  // in-process set_lm_tail_rope's step bitwise, another loss than the trainer's rope; a wrong layer count is refused.
  {
    const TailRope other = tail_rope(c.s, 1, 1u, inv);
    sc::TrainStep tp(c.kind, c.s, gpu_view(p0), inv.data(), lt);
    set_tail(tp, fr, h, c.V);
    tp.set_lm_tail_rope(1, other.rows.data(), other.scalings.data());
    const double lrope = tp.step_lm(b.x.data(), tg.data(), b.pos.data(), b.mask.data(), b.B, 1.f);
    const Params grope = gpu_grads(tp, p0);
    tr = nullptr;
    double l = -1;
    bool rok = streamline_cuda_train_set_lm_tail_rope != nullptr &&
               streamline_cuda_train_create(0, &s, hp, inv.data(), &tr) == 0 &&
               streamline_cuda_train_set_lm_tail(tr, 1, roles.data(), &nw, nullptr, &hw, int64_t(c.V)) == 0 &&
               streamline_cuda_train_set_lm_tail_rope(tr, 1, other.rows.data(), other.scalings.data()) == 0 &&
               streamline_cuda_train_step_lm(tr, b.x.data(), tg.data(), b.pos.data(), b.mask.data(), int64_t(b.B), 1.f,
                                             &l) == 0;
    Params gr = zeros_like(p0);
    for (int k = 0; k < kRoles && rok; k++)
      if (!gr[k].empty()) rok = streamline_cuda_train_get_grads(tr, k, gr[k].data(), int64_t(gr[k].size())) == 0;
    record("train", "C API lm: train_set_lm_tail_rope through dlopen: step_lm bitwise the in-process step, not R's rope",
           rok && l == lrope && same_bits(gr, grope) && l != lref, 0, 0,
           rok ? fmt("loss %.17g vs %.17g (R's rope %.9g)", l, lrope, lref)
               : (streamline_cuda_train_set_lm_tail_rope ? streamline_cuda_last_error() : "symbol missing"));
    const bool refused = rok && streamline_cuda_train_set_lm_tail_rope(tr, 2, other.rows.data(), other.scalings.data()) != 0 &&
                         std::strstr(streamline_cuda_last_error(), "the lm tail has 1") != nullptr;
    record("train", "C API lm: train_set_lm_tail_rope with n_layers not the tail's returns -1 with the reason", refused,
           0, 0, rok ? streamline_cuda_last_error() : "");
    if (tr) streamline_cuda_train_destroy(tr);
  }
  dlclose(lib);
}

// Qwen3: q/k norms in the trained layer and the frozen layers (activation gradients through the frozen norms), and in
// the frozen layers of an mlp replacement's tail, through check_lm_step (eval_lm, loss, every gradient).
static std::vector<LmCase> qk_lm_cases() {
  return {
      {"lm: layer qwen3 (q/k norms in R and 2 frozen layers), rmsnorm head", ReplacementKind::Layer,
       spec(2, 21, 64, 4, 2, 16, 96, false, Activation::SiLU, true, true), false, 2, 97, 1, 7, true},
      {"lm: mlp, 1 frozen qwen3 layer (q/k norm, rope, qkv bias)", ReplacementKind::MLP,
       spec(2, 13, 64, 4, 2, 16, 96, false, Activation::SiLU, true, true), true, 1, 80, 1, 6, true},
  };
}

// Gemma: post norms (and q/k norms, GeGLU) in the trained layer and the frozen layers (activation gradients through
// the frozen norms), and post_mlp_norm in an mlp replacement over a frozen Gemma layer, through check_lm_step.
static std::vector<LmCase> post_lm_cases() {
  return {
      {"lm: layer gemma (post + q/k norms in R and 2 frozen layers), rmsnorm head", ReplacementKind::Layer,
       spec(2, 21, 64, 4, 2, 16, 96, false, Activation::GELUTanh, true, true), false, 2, 97, 1, 7, true, true},
      {"lm: mlp with post_mlp_norm, 1 frozen gemma layer", ReplacementKind::MLP,
       spec(2, 13, 64, 4, 2, 16, 96, false, Activation::GELUTanh, true, true), false, 1, 80, 1, 6, true, true},
  };
}

// Partial RoPE in R and in the frozen layers (one rotation for all, the trainer's), and in the frozen layer of an mlp
// replacement's tail (the mlp trainer's own tables).
static std::vector<LmCase> partial_lm_cases() {
  return {
      {"lm: layer phi-4 partial rope 12 of 16 (R and 2 frozen layers), rmsnorm head", ReplacementKind::Layer,
       with_rot(spec(2, 21, 64, 4, 2, 16, 96, false, Activation::SiLU, true, true), 12), false, 2, 97, 1, 7},
      {"lm: mlp, 1 frozen layer with partial rope 12 of 16, biases", ReplacementKind::MLP,
       with_rot(spec(2, 13, 64, 4, 2, 16, 96, false, Activation::SiLU, true, true), 12), true, 1, 80, 1, 6},
  };
}

// Per-layer RoPE in the tail (Gemma 3: sliding layers with rope_local_base_freq, full ones with rope_theta and its
// scaling), through check_lm_step against lm_loss_step with FrozenTail::inv_freqs / rope_scalings: a layer replacement
// over three frozen Llama layers, two of which share another rope (one table for both, the third repeating R's), and
// an mlp replacement over two frozen Gemma-style layers (post and q/k norms: the normed q/k kernel), one of them with
// the other rope.
static std::vector<LmCase> rope_lm_cases() {
  LmCase a{"lm: layer, 3 frozen layers, per-layer rope (1 and 2: base 1e6, scaling 1.25; 0 repeats R's)",
           ReplacementKind::Layer, spec(2, 21, 64, 4, 2, 16, 96, false, Activation::SiLU, true, true), false, 3, 97, 1,
           7};
  a.other_rope = 0b110, a.rope_tables = 1;
  LmCase b{"lm: mlp over 2 frozen gemma layers (post + q/k norms), layer 0 with its own rope", ReplacementKind::MLP,
           spec(2, 13, 64, 4, 2, 16, 96, false, Activation::GELUTanh, true, true), false, 2, 80, 1, 6, true, true};
  b.other_rope = 0b01, b.rope_tables = 1;
  return {a, b};
}

// set_lm_tail_rope beyond the numbers: R's values repeated make no table and run bitwise as no call; another rope
// takes exactly its table's bytes; refusals (a layer count that is not the tail's, a non-finite value, no tail, a
// trainer without RoPE, set_rotary_dim afterwards) change nothing; set_lm_tail resets the tail to R's rope and frees
// the tables.
void check_lm_tail_rope_api(bool use_lt) {
  const LmCase c = rope_lm_cases()[0];
  const Fixture f = make_fixture(c, 5150, c.frozen);
  const size_t B = c.s.B, half = c.s.Dh / 2, M = B * c.s.T;
  const TailRope other = tail_rope(c.s, c.frozen, c.other_rope, f.inv), same = tail_rope(c.s, c.frozen, 0, f.inv);
  const std::string nm = fmt("lm tail rope (%s)", use_lt ? "cublaslt" : "fallback");
  auto run = [&](sc::TrainStep& t) {
    t.zero_grad();
    const double l = t.step_lm(f.b.x.data(), f.tg.data(), f.b.pos.data(), f.b.mask.data(), B, 1.f);
    return std::make_pair(l, gpu_grads(t, f.p0));
  };
  auto bitwise = [](const std::pair<double, Params>& a, const std::pair<double, Params>& b) {
    return a.first == b.first && same_bits(a.second, b.second);
  };
  sc::TrainStep plain(c.kind, c.s, gpu_view(f.p0), f.inv.data(), use_lt);
  set_tail(plain, f.fr, f.h, c.V);
  const auto r0 = run(plain);
  sc::TrainStep t(c.kind, c.s, gpu_view(f.p0), f.inv.data(), use_lt);
  set_tail(t, f.fr, f.h, c.V);
  const size_t b0 = t.device_bytes();
  t.set_lm_tail_rope(c.frozen, same.rows.data(), same.scalings.data());
  record("train", nm + ": R's rope repeated for every layer: no table, no byte, bitwise the step without the call",
         t.lm_tail_rope_tables() == 0 && t.device_bytes() == b0 && bitwise(run(t), r0), 0, 0);
  t.set_lm_tail_rope(c.frozen, other.rows.data(), other.scalings.data());
  const size_t want = 2 * M * half * 4 + half * 4;
  const size_t b1 = t.device_bytes();
  const auto r1 = run(t);
  record("train", nm + ": two layers with one other rope: one table, its bytes exactly (cos, sin, inv_freq)",
         t.lm_tail_rope_tables() == 1 && b1 - b0 == want && r1.first != r0.first, double(b1 - b0), double(want),
         fmt("loss %.9g, R's rope %.9g", r1.first, r0.first));
  std::vector<float> nan_rows = other.rows;
  nan_rows[half + 3] = NAN;
  const bool bad_n = throws_with([&] { t.set_lm_tail_rope(c.frozen - 1, other.rows.data(), other.scalings.data()); },
                                 "layers' RoPE given, the lm tail has 3");
  const bool bad_v = throws_with([&] { t.set_lm_tail_rope(c.frozen, nan_rows.data(), other.scalings.data()); },
                                 "must be finite");
  const bool bad_null = throws_with([&] { t.set_lm_tail_rope(c.frozen, nullptr, other.scalings.data()); }, "required");
  const bool bad_rot = throws_with([&] { t.set_rotary_dim(c.s.Dh, f.inv.data()); }, "per-layer RoPE is set");
  record("train", nm + ": refused (a layer count not the tail's, NaN, no rows, set_rotary_dim after), nothing changed",
         bad_n && bad_v && bad_null && bad_rot && t.device_bytes() == b1 && bitwise(run(t), r1), 0, 0,
         fmt("count %d nan %d null %d rot %d", bad_n, bad_v, bad_null, bad_rot));
  set_tail(t, f.fr, f.h, c.V);
  record("train", nm + ": set_lm_tail resets the tail to R's rope and frees the tables",
         t.lm_tail_rope_tables() == 0 && t.device_bytes() == b0 && bitwise(run(t), r0), double(t.device_bytes()),
         double(b0));
  sc::TrainStep bare(c.kind, c.s, gpu_view(f.p0), f.inv.data(), use_lt);
  const bool no_tail =
      throws_with([&] { bare.set_lm_tail_rope(c.frozen, other.rows.data(), other.scalings.data()); }, "set_lm_tail first");
  const LmCase nr = lm_cases()[1];  // OPT-style: no RoPE
  const Fixture g = make_fixture(nr, 5151, 1);
  sc::TrainStep norope(nr.kind, nr.s, gpu_view(g.p0), nullptr, use_lt);
  set_tail(norope, g.fr, g.h, nr.V);
  const std::vector<float> row(nr.s.Dh / 2, 0.5f), one(1, 1.f);
  const bool no_rope = throws_with([&] { norope.set_lm_tail_rope(1, row.data(), one.data()); }, "without RoPE");
  record("train", nm + ": refused without a tail and on a trainer without RoPE", no_tail && no_rope, 0, 0,
         fmt("no tail %d no rope %d", no_tail, no_rope));
}

void run_train_lm_checks(bool use_cublaslt) {
  for (const LmCase& c : rope_lm_cases()) {
    guard(std::string(c.name) + " (fallback)", [&] { check_lm_step(c, false); });
    if (use_cublaslt) guard(std::string(c.name) + " (cublaslt)", [&] { check_lm_step(c, true); });
  }
  guard("lm tail rope", [&] { check_lm_tail_rope_api(use_cublaslt); });
  for (const LmCase& c : partial_lm_cases()) {
    guard(std::string(c.name) + " (fallback)", [&] { check_lm_step(c, false); });
    if (use_cublaslt) guard(std::string(c.name) + " (cublaslt)", [&] { check_lm_step(c, true); });
  }
  for (const LmCase& c : post_lm_cases()) {
    guard(std::string(c.name) + " (fallback)", [&] { check_lm_step(c, false); });
    if (use_cublaslt) guard(std::string(c.name) + " (cublaslt)", [&] { check_lm_step(c, true); });
  }
  for (const LmCase& c : qk_lm_cases()) {
    guard(std::string(c.name) + " (fallback)", [&] { check_lm_step(c, false); });
    if (use_cublaslt) guard(std::string(c.name) + " (cublaslt)", [&] { check_lm_step(c, true); });
  }
  for (const LmCase& c : lm_cases()) {
    guard(std::string(c.name) + " head (fallback)", [&] { check_head(c, false); });
    if (use_cublaslt) guard(std::string(c.name) + " head (cublaslt)", [&] { check_head(c, true); });
    guard(std::string(c.name) + " (fallback)", [&] { check_lm_step(c, false); });
    if (use_cublaslt) guard(std::string(c.name) + " (cublaslt)", [&] { check_lm_step(c, true); });
  }
  guard("lm edges", [&] { check_lm_edges(use_cublaslt); });
  guard("lm windows", [&] { check_lm_windows(false); });
  guard("lm staged", [&] { check_lm_staged(lm_cases()[0], use_cublaslt); });
  guard("lm staged (mlp)", [&] { check_lm_staged(lm_cases()[2], use_cublaslt); });
}

}  // namespace harness
