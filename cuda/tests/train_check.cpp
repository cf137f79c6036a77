// Training-step checks (issue 9): the GPU TrainStep against the CPU step (streamline::replacement_step, then
// clip_grad_norm and adamw_step) for the mlp replacement (SwiGLU/RMSNorm; OPT-style ReLU with LayerNorm and biases)
// and the layer replacement (GQA with RoPE and a padded batch; an odd-sized OPT-style layer with every bias), on the
// fallback GEMM and on cuBLASLt; the validation forward (eval) against the step and the CPU; a 30-step training run
// whose loss curve must follow the CPU's within 1 %. The real checkpoint window and the C API are in train_real.cpp. The CPU half (--cpu-selftest) measures what bf16 rounding of
// weights and inputs alone does to the CPU step, the evidence behind the tolerances.
#include <cstring>
#include <exception>
#include <functional>

#include "cublaslt_loader.h"
#include "train_util.h"

namespace harness {

using namespace tr;

namespace {

void check_case(const Case& c, bool use_lt) {
  Rng r(1000 + uint64_t(c.s.D));
  const Params p0 = make_params(c, r);
  const std::vector<float> inv = inv_freq(c);
  const Batch b1 = make_batch(c, c.s.B, r, nullptr, inv), b2 = make_batch(c, c.s.B - 1, r, nullptr, inv);
  const std::string nm = fmt("%s (%s)", c.name, use_lt ? "cublaslt" : "fallback");
  const float w1 = float(c.s.B) / float(2 * c.s.B - 1), w2 = float(c.s.B - 1) / float(2 * c.s.B - 1);

  Params pc = p0, gc = zeros_like(p0), mc = zeros_like(p0), vc = zeros_like(p0);
  const double lc1 = cpu_step(c, pc, gc, b1, inv, w1), lc2 = cpu_step(c, pc, gc, b2, inv, w2);

  sc::TrainStep t(c.kind, gpu_spec(c.s), gpu_view(p0), c.s.use_rope ? inv.data() : nullptr, use_lt);
  narrow_rope(t, c.s, inv);
  if (c.qk_norm) t.set_qk_norm(p0[streamline::kRoleQNormW].data(), p0[streamline::kRoleKNormW].data());
  set_post_norms(t, c, p0);
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
  for (int k = 0; k < kAllRoles; k++)
    for (size_t i = 0; i < dg[k].size(); i++) {
      dg[k][i] -= p0[k][i];
      dc[k][i] -= p0[k][i];
    }
  double num = 0, den = 0;
  size_t nan = 0;
  for (int k = 0; k < kAllRoles; k++)
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

// Validation (TrainStep::eval): each sequence's loss under the current weights, nothing else changed. Before the step
// on the same batch it runs the step's own forward, so the real-token-weighted mean of its losses is the step's loss up
// to how the f64 sums are grouped (per sequence vs per 8192 elements). Each loss against the CPU's replacement_loss of
// that sequence alone (what the CPU trainer's validation sums) within kTolEvalLoss. Between micro-batches it must leave
// the accumulated gradients, the weights and a repeated eval bitwise as they were. A sequence without a real token
// gives 0; a NaN in one sequence's real token makes that sequence's loss NaN only (sequences are independent through
// every kernel of the forward).
void check_eval(const Case& c, bool use_lt) {
  Rng r(500 + uint64_t(c.s.D));
  const Params p0 = make_params(c, r);
  const std::vector<float> inv = inv_freq(c);
  const Batch b = make_batch(c, c.s.B, r, nullptr, inv);
  const std::string nm = fmt("%s (%s)", c.name, use_lt ? "cublaslt" : "fallback");
  const size_t B = b.B, T = c.s.T, D = c.s.D;
  sc::TrainStep t(c.kind, gpu_spec(c.s), gpu_view(p0), c.s.use_rope ? inv.data() : nullptr, use_lt);
  narrow_rope(t, c.s, inv);
  if (c.qk_norm) t.set_qk_norm(p0[streamline::kRoleQNormW].data(), p0[streamline::kRoleKNormW].data());
  set_post_norms(t, c, p0);
  auto eval = [&](const Batch& in) {
    std::vector<double> l(B, -1.0);
    t.eval(in.x.data(), in.target.data(), in.pos.data(), in.mask.data(), B, l.data());
    return l;
  };
  const std::vector<double> le = eval(b);

  ReplacementSpec s1 = c.s;
  s1.B = 1;
  double cerr = 0;
  std::string detail;
  for (size_t i = 0; i < B; i++) {
    const double lc = streamline::replacement_loss(c.kind, s1, cpu_params(p0), b.x.data() + i * T * D,
                                                   b.target.data() + i * T * D, b.pos.data() + i * T,
                                                   b.mask.data() + i * T, inv.data());
    cerr = std::max(cerr, std::isnan(le[i]) ? INFINITY : std::fabs(le[i] - lc) / lc);
    detail += fmt("%sgpu %.6g cpu %.6g", i ? ", " : "", le[i], lc);
  }
  record("train", nm + ": eval losses vs the CPU's replacement_loss per sequence", cerr <= kTolEvalLoss, cerr,
         kTolEvalLoss, detail);

  const Params g0 = gpu_grads(t, p0);
  bool zero = true;
  for (const auto& x : g0)
    for (float v : x) zero = zero && v == 0.f;
  const double ls = gpu_step(t, b, 1.f);
  double num = 0, den = 0;
  for (size_t i = 0; i < B; i++) {
    double real = 0;
    for (size_t k = 0; k < T; k++) real += b.mask[i * T + k] ? 1 : 0;
    num += le[i] * real;
    den += real;
  }
  const double serr = std::fabs(num / den - ls) / ls;
  record("train", nm + ": eval before the step = the step's loss (same forward)", zero && serr <= kTolF64Sum, serr,
         kTolF64Sum, fmt("step %.17g, weighted eval %.17g%s", ls, num / den, zero ? "" : "; eval left a gradient"));

  const Params g1 = gpu_grads(t, p0);
  const std::vector<double> le2 = eval(b);
  const Params g2 = gpu_grads(t, p0), p2 = gpu_params(t, p0);
  std::string role;
  const Compare cg = worst_role(g2, g1, &role), cp = worst_role(p2, p0, &role);
  record("train", nm + ": eval between micro-batches keeps gradients, weights and its own losses bitwise",
         le2 == le && cg.rel_l2 == 0 && cg.nan_mismatch == 0 && cp.rel_l2 == 0 && cp.nan_mismatch == 0,
         std::max(cg.rel_l2, cp.rel_l2), 0, role);

  Batch e = b;
  std::fill(e.mask.begin() + std::ptrdiff_t((B - 1) * T), e.mask.begin() + std::ptrdiff_t(B * T), uint8_t(0));
  e.x[2 * D + 1] = NAN;  // token 2 of sequence 0 (never padded)
  const std::vector<double> l3 = eval(e);
  bool others = true;
  for (size_t i = 1; i + 1 < B; i++) others = others && std::isfinite(l3[i]);
  record("train", nm + ": eval edges: NaN stays in its sequence, a sequence without a real token gives 0",
         std::isnan(l3[0]) && l3[B - 1] == 0.0 && others, 0, 0,
         fmt("first %g, last %g", l3[0], l3[B - 1]));
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

// Prefetch (TrainStep::stage / step_staged): the same batches through step() on one trainer and through the staged
// pipeline on another, stage(i+1) on a second thread while step_staged(i) runs, as the binding drives it. The losses and
// the accumulated gradients must agree bitwise (same kernels on the same bytes; NaN where step() has NaN), including
// a batch without a real token, a NaN input and a short batch. The small cases stage through 4100-byte halves, so
// every array crosses many chunk boundaries and ends in a partial chunk; big runs the default 16 MiB halves with
// arrays just over one half (GPU only: too slow for the CPU emulation). Then the misuse errors.
void check_staged(const Case& c, bool use_lt, bool big) {
  Rng r(900 + uint64_t(c.s.D));
  const Params p0 = make_params(c, r);
  const std::vector<float> inv = inv_freq(c);
  const std::string nm = fmt("%s (%s)%s", c.name, use_lt ? "cublaslt" : "fallback", big ? " big" : "");
  std::vector<Batch> bs;
  for (int i = 0; i < 5; i++) bs.push_back(make_batch(c, i == 2 ? c.s.B - 1 > 0 ? c.s.B - 1 : 1 : c.s.B, r, nullptr, inv));
  std::fill(bs[1].mask.begin(), bs[1].mask.end(), uint8_t(0));  // no real token
  bs[3].x[3 * c.s.D + 5] = NAN;                                   // token 3 of row 0 is real
  sc::TrainStep plain(c.kind, c.s, gpu_view(p0), c.s.use_rope ? inv.data() : nullptr, use_lt);
  sc::TrainStep staged(c.kind, c.s, gpu_view(p0), c.s.use_rope ? inv.data() : nullptr, use_lt);
  if (!big) staged.set_stage_chunk(4100);
  auto stage = [&](const Batch& b) { staged.stage(b.x.data(), b.target.data(), b.pos.data(), b.mask.data(), b.B); };
  std::vector<double> lp, ls;
  for (size_t i = 0; i < bs.size(); i++) lp.push_back(gpu_step(plain, bs[i], 0.5f + 0.1f * float(i)));
  ls = pipelined(
      bs.size(), [&](size_t i) { stage(bs[i]); }, [&](size_t i) { return staged.step_staged(0.5f + 0.1f * float(i)); });
  std::string detail;
  record("train", nm + ": staged steps give step()'s losses bitwise", same_losses(lp, ls, &detail), 0, 0, detail);
  record("train", nm + ": staged steps accumulate step()'s gradients bitwise",
         same_bits(gpu_grads(plain, p0), gpu_grads(staged, p0)), 0, 0);

  // stage_bf16: the same batches rounded to bf16 (a bf16 pair cache's contents), staged as one pointer per sequence
  // into scattered buffers, must give step() on the widened f32 values bitwise.
  {
    std::vector<Batch> b32 = bs;
    std::vector<Bf16Rows> xr, yr;
    for (size_t i = 0; i < bs.size(); i++) {
      b32[i].x = round_bf16(bs[i].x);
      b32[i].target = round_bf16(bs[i].target);
      xr.push_back(bf16_rows(bs[i].x, bs[i].B, c.s.T * c.s.D));
      yr.push_back(bf16_rows(bs[i].target, bs[i].B, c.s.T * c.s.D));
    }
    sc::TrainStep plain16(c.kind, c.s, gpu_view(p0), c.s.use_rope ? inv.data() : nullptr, use_lt);
    sc::TrainStep staged16(c.kind, c.s, gpu_view(p0), c.s.use_rope ? inv.data() : nullptr, use_lt);
    if (!big) staged16.set_stage_chunk(4100);
    std::vector<double> l32, l16;
    for (size_t i = 0; i < b32.size(); i++) l32.push_back(gpu_step(plain16, b32[i], 0.5f + 0.1f * float(i)));
    l16 = pipelined(
        bs.size(),
        [&](size_t i) { staged16.stage_bf16(xr[i].ptrs.data(), yr[i].ptrs.data(), bs[i].pos.data(), bs[i].mask.data(), bs[i].B); },
        [&](size_t i) { return staged16.step_staged(0.5f + 0.1f * float(i)); });
    record("train", nm + ": bf16-staged steps give step()'s losses on the widened inputs bitwise",
           same_losses(l32, l16, &detail), 0, 0, detail);
    record("train", nm + ": bf16-staged steps accumulate step()'s gradients bitwise",
           same_bits(gpu_grads(plain16, p0), gpu_grads(staged16, p0)), 0, 0);
    // Kept on the GPU: every sequence of every batch put as one block, then staged by index (in reverse order of
    // putting, so an index mix-up shows), bitwise the same steps again.
    {
      sc::TrainStep kept(c.kind, c.s, gpu_view(p0), c.s.use_rope ? inv.data() : nullptr, use_lt);
      size_t nblocks = 0;
      for (const Batch& b : bs) nblocks += b.B;
      const size_t before = kept.device_bytes();
      const size_t huge = (size_t(1) << 44) / (c.s.T * c.s.D * 4) + 1;  // ~16 TiB of pairs
      const bool no_room = !kept.keep_pairs(huge, true, 1.0) && kept.device_bytes() == before;
      const bool ok = kept.keep_pairs(nblocks, true, 0.5);
      std::vector<std::vector<int64_t>> ids(bs.size());
      size_t next = nblocks;
      for (size_t i = 0; i < bs.size(); i++)
        for (size_t b = 0; b < bs[i].B; b++) {
          ids[i].push_back(int64_t(--next));
          kept.put_pair(size_t(ids[i].back()), xr[i].ptrs[b], yr[i].ptrs[b]);
        }
      std::vector<double> lk;
      if (ok)
        lk = pipelined(
            bs.size(), [&](size_t i) { kept.stage_kept(ids[i].data(), bs[i].pos.data(), bs[i].mask.data(), bs[i].B); },
            [&](size_t i) { return kept.step_staged(0.5f + 0.1f * float(i)); });
      record("train", nm + fmt(": kept-pair steps (%zu blocks on the GPU) give step()'s losses bitwise", nblocks),
             ok && same_losses(l32, lk, &detail), 0, 0, detail);
      record("train", nm + ": kept-pair steps accumulate step()'s gradients bitwise",
             ok && same_bits(gpu_grads(plain16, p0), gpu_grads(kept, p0)), 0, 0);
      const int64_t out_of_range[1] = {int64_t(nblocks)};
      const bool range = throws_with([&] { kept.stage_kept(out_of_range, bs[0].pos.data(), nullptr, 1); }, "was not put");
      const bool twice = throws_with([&] { kept.keep_pairs(1, true, 0.5); }, "kept already");
      const bool lm_only = throws_with([&] { kept.put_pair(0, xr[0].ptrs[0], nullptr); }, "x and target are required");
      record("train", nm + ": keep_pairs refuses what does not fit (allocating nothing); misuse refused",
             no_room && range && twice && lm_only, 0, 0,
             fmt("no room %d, index %d, twice %d, missing target %d", no_room, range, twice, lm_only));
    }
    if (!big) {
      // A missing sequence pointer is refused before a slot is taken; f32 and bf16 stages then share the two slots.
      std::vector<const uint16_t*> holes = xr[0].ptrs;
      holes.back() = nullptr;
      const bool refused = throws_with(
          [&] { staged16.stage_bf16(holes.data(), yr[0].ptrs.data(), bs[0].pos.data(), bs[0].mask.data(), bs[0].B); },
          "has no x or target rows");
      const Batch& w = b32[0];
      staged16.stage(w.x.data(), w.target.data(), w.pos.data(), w.mask.data(), w.B);
      staged16.stage_bf16(xr[0].ptrs.data(), yr[0].ptrs.data(), bs[0].pos.data(), bs[0].mask.data(), bs[0].B);
      const double m1 = staged16.step_staged(1.f), m2 = staged16.step_staged(1.f);
      record("train", nm + ": stage_bf16 refuses a missing sequence pointer (no slot taken); f32 and bf16 stages share "
                           "the slots",
             refused && m1 == l32[0] && m2 == l32[0], 0, 0, fmt("refused %d, losses %.17g %.17g vs %.17g", refused, m1, m2, l32[0]));
    }
  }
  if (big) return;

  const Batch& b = bs[0];
  const bool none = throws_with([&] { staged.step_staged(1.f); }, "no staged batch");
  const bool size = throws_with([&] { staged.stage(b.x.data(), b.target.data(), b.pos.data(), b.mask.data(), c.s.B + 1); },
                           "batch must be in");
  stage(b);
  stage(b);
  const bool third = throws_with([&] { stage(b); }, "both input slots");
  const bool step_busy = throws_with([&] { gpu_step(staged, b, 1.f); }, "both input slots");
  const double l1 = staged.step_staged(1.f);
  const double l2 = staged.step_staged(1.f);
  const bool drained = throws_with([&] { staged.step_staged(1.f); }, "no staged batch");
  record("train", nm + ": misuse: step_staged with nothing staged, wrong batch, a third stage, step with both slots "
                       "taken; the pipeline still works after",
         none && size && third && step_busy && l1 == lp[0] && l2 == lp[0] && drained, 0, 0,
         fmt("none %d size %d third %d step %d drained %d", none, size, third, step_busy, drained));
  record("train", nm + fmt(": staging memory: pinned %zu bytes (2 halves)", staged.pinned_bytes()),
         staged.pinned_bytes() == 2 * 4100 && staged.device_bytes() > plain.device_bytes(), 0, 0,
         fmt("device %zu (plain trainer %zu: the second input slot)", staged.device_bytes(), plain.device_bytes()));
}

// The CPU reference of a sliding-window step, from the CPU's full-attention step (no window on the CPU step yet):
// within one layer, query i's output depends on the tokens of its window [i - W + 1, i] alone, so it is the last
// token's output of the full-attention layer run on that window as a sequence of its own (left-padded to W with
// masked tokens, positions kept). One such sequence per real query; the other tokens of each get the CPU's own
// forward output as their target, so they add exactly nothing to the loss or the gradients, and the scales undo the
// larger real-token count: loss and gradients are those of the windowed step on the original batch.
double cpu_window_step(const Case& c, size_t W, const Params& p, Params& g, const Batch& b,
                       const std::vector<float>& inv, float scale) {
  const size_t T = c.s.T, D = c.s.D;
  std::vector<std::pair<size_t, size_t>> queries;  // (sequence, position) of each real query
  for (size_t bi = 0; bi < b.B; bi++)
    for (size_t i = 0; i < T; i++)
      if (b.mask[bi * T + i]) queries.emplace_back(bi, i);
  const size_t n = queries.size();
  if (n == 0) return 0;
  ReplacementSpec s = c.s;
  s.B = n;
  s.T = W;
  Batch w;
  w.B = n;
  w.x.assign(n * W * D, 0.f);
  w.target.assign(n * W * D, 0.f);
  w.pos.assign(n * W, 0);
  w.mask.assign(n * W, 0);
  size_t real = 0;
  for (size_t q = 0; q < n; q++) {
    const auto [bi, i] = queries[q];
    for (size_t k = 0; k < W; k++) {
      if (i + k + 1 < W) continue;  // before the sequence: padding
      const size_t t = i + k + 1 - W, src = bi * T + t, dst = q * W + k;
      std::copy(b.x.begin() + std::ptrdiff_t(src * D), b.x.begin() + std::ptrdiff_t((src + 1) * D),
                w.x.begin() + std::ptrdiff_t(dst * D));
      w.pos[dst] = b.pos[src];
      w.mask[dst] = b.mask[src];
      real += b.mask[src];
    }
  }
  std::vector<float> y(n * W * D);
  streamline::replacement_forward(c.kind, s, cpu_params(p), y.data(), w.x.data(), w.pos.data(), w.mask.data(),
                                  inv.data());
  w.target = y;
  for (size_t q = 0; q < n; q++) {
    const auto [bi, i] = queries[q];
    std::copy(b.target.begin() + std::ptrdiff_t((bi * T + i) * D), b.target.begin() + std::ptrdiff_t((bi * T + i + 1) * D),
              w.target.begin() + std::ptrdiff_t(((q + 1) * W - 1) * D));
  }
  const double ratio = double(real) / double(n);
  s.grad_scale = float(double(scale) * ratio);
  return ratio * streamline::replacement_step(c.kind, s, cpu_params(p), cpu_grads(g), w.x.data(), w.target.data(),
                                              w.pos.data(), w.mask.data(), inv.data());
}

// A layer replacement with a sliding window (TrainStep::set_windows): two micro-batches' loss and accumulated
// gradients against cpu_window_step, the first update against the CPU's, eval against the step's loss, and the
// window's refusals. Cases: Dh 32 (wmma forward, tensor-core backward) at T = 150 with W = 70 (three query tiles, a
// window wider than a tile), and the odd OPT-style layer (Dh 24: scalar forward, f32 backward) with W = 5.
void check_window_step(const Case& c, size_t W, bool use_lt) {
  Rng r(700 + uint64_t(W));
  const Params p0 = make_params(c, r);
  const std::vector<float> inv = inv_freq(c);
  const Batch b1 = make_batch(c, c.s.B, r, nullptr, inv), b2 = make_batch(c, c.s.B - 1, r, nullptr, inv);
  const std::string nm = fmt("%s, window %zu (%s)", c.name, W, use_lt ? "cublaslt" : "fallback");
  const float w1 = 0.6f, w2 = 0.4f;
  Params pc = p0, gc = zeros_like(p0), mc = zeros_like(p0), vc = zeros_like(p0);
  const double lc1 = cpu_window_step(c, W, pc, gc, b1, inv, w1), lc2 = cpu_window_step(c, W, pc, gc, b2, inv, w2);
  sc::TrainStep t(c.kind, c.s, gpu_view(p0), c.s.use_rope ? inv.data() : nullptr, use_lt);
  t.set_windows(W, {});
  std::vector<double> le(b1.B);
  t.eval(b1.x.data(), b1.target.data(), b1.pos.data(), b1.mask.data(), b1.B, le.data());
  const double lg1 = gpu_step(t, b1, w1), lg2 = gpu_step(t, b2, w2);
  const double lerr = std::max(std::fabs(lg1 - lc1) / lc1, std::fabs(lg2 - lc2) / lc2);
  record("train", nm + ": loss of two micro-batches vs the CPU on each query's window", lerr <= kTolTrainLoss, lerr,
         kTolTrainLoss, fmt("gpu %.6g %.6g cpu %.6g %.6g", lg1, lg2, lc1, lc2));
  double num = 0, den = 0;
  for (size_t i = 0; i < b1.B; i++) {
    double real = 0;
    for (size_t k = 0; k < c.s.T; k++) real += b1.mask[i * c.s.T + k];
    num += le[i] * real;
    den += real;
  }
  const double serr = std::fabs(num / den - lg1) / lg1;
  record("train", nm + ": eval takes the window (weighted eval = the step's loss)", serr <= kTolF64Sum, serr, kTolF64Sum);
  const Params gg = gpu_grads(t, p0);
  std::string worst;
  const Compare gerr = worst_role(gg, gc, &worst, kGradFloor);
  record("train", nm + ": accumulated gradients (worst role)", gerr.nan_mismatch == 0 && gerr.rel_l2 <= kTolTrainGrad,
         gerr.rel_l2, kTolTrainGrad, worst);
  streamline::AdamWOptions opt;
  opt.lr = 1e-3;
  opt.step = 1;
  cpu_apply(pc, gc, mc, vc, opt, 1e9);  // no clipping in effect
  t.apply(opt, 1e9);
  const Params pg = gpu_params(t, p0);
  double unum = 0, uden = 0;
  for (int k = 0; k < kRoles; k++)
    for (size_t i = 0; i < pg[k].size(); i++) {
      const double d = double(pg[k][i]) - pc[k][i], e = double(pc[k][i]) - p0[k][i];
      unum += d * d;
      uden += e * e;
    }
  const double uerr = std::sqrt(unum / uden);
  record("train", nm + ": update vs the CPU's step (all parameters)", uerr <= kTolTrainUpdate, uerr, kTolTrainUpdate);
  // The checks can tell the window from none: the full-attention CPU step on b1 is further from the windowed one
  // than the tolerances (gradients: several times over; the loss moves less, random targets dominate it).
  Params gf = zeros_like(p0), gw = zeros_like(p0);
  const double lf = cpu_step(c, p0, gf, b1, inv, 1.f), lw = cpu_window_step(c, W, p0, gw, b1, inv, 1.f);
  const Compare fw = worst_role(gf, gw, &worst, kGradFloor);
  record("train", nm + ": the full-attention step is outside the tolerances",
         fw.rel_l2 > 3 * kTolTrainGrad && std::fabs(lf - lw) / lw > kTolTrainLoss, fw.rel_l2, 3 * kTolTrainGrad,
         fmt("gradients %s; loss full %.6g windowed %.6g", worst.c_str(), lf, lw));
  const bool refuse = throws_with([&] { t.set_windows(W, {size_t(3)}); }, "without an lm tail");
  record("train", nm + ": tail windows without an lm tail are refused", refuse && t.window() == W, 0, 0);
  // The spec's window (the CPU step's field) is the same as set_windows: bitwise the same first step.
  ReplacementSpec sw = c.s;
  sw.window = W;
  sc::TrainStep ts(c.kind, sw, gpu_view(p0), c.s.use_rope ? inv.data() : nullptr, use_lt);
  sc::TrainStep tw(c.kind, c.s, gpu_view(p0), c.s.use_rope ? inv.data() : nullptr, use_lt);
  tw.set_windows(W, {});
  const double ls = gpu_step(ts, b1, w1), lw2 = gpu_step(tw, b1, w1);
  const Compare sg = worst_role(gpu_grads(ts, p0), gpu_grads(tw, p0), &worst);
  record("train", nm + ": spec.window at construction = set_windows (bitwise)",
         ts.window() == W && ls == lw2 && sg.rel_l2 == 0 && sg.nan_mismatch == 0, sg.rel_l2, 0);
}

// An mlp replacement has no attention: a window is refused, 0 accepted.
void check_window_mlp() {
  const Case c = cases()[0];
  Rng r(702);
  const Params p0 = make_params(c, r);
  sc::TrainStep t(c.kind, c.s, gpu_view(p0), nullptr, false);
  const bool refused = throws_with([&] { t.set_windows(4, {}); }, "mlp replacement");
  bool zero_ok = true;
  try {
    t.set_windows(0, {});
  } catch (const std::exception&) {
    zero_ok = false;
  }
  ReplacementSpec sw = c.s;
  sw.window = 4;
  const bool spec_refused = throws_with([&] { sc::TrainStep bad(c.kind, sw, gpu_view(p0), nullptr, false); }, "mlp replacement");
  record("train", "mlp replacement: window 4 refused (set_windows and spec.window), 0 accepted",
         refused && spec_refused && zero_ok && t.window() == 0, 0, 0);
}

// Qwen3's q/k norms on the step: a GQA layer with RoPE and padding (tensor-core attention backward), an odd one with
// q/k/v/o biases and Dh = 24 (f32 attention backward, f32 copies of the normed q/k), each through check_case (loss,
// every gradient including the norms', clip + AdamW, the update) and check_eval; then set_qk_norm's refusals and that
// the norms change the loss (the step without them is farther from the CPU's with them than the step with them).
std::vector<Case> qk_cases() {
  return {
      {"layer qwen3 q/k norm gqa rope padded", ReplacementKind::Layer,
       spec(2, 37, 128, 4, 2, 32, 256, false, Activation::SiLU, true, true), false, true},
      {"layer qwen3 q/k norm odd, biases, Dh 24", ReplacementKind::Layer,
       spec(3, 19, 72, 3, 1, 24, 100, false, Activation::SiLU, true, true), true, true},
  };
}

// Gemma's post-sublayer norms on the step: a GQA layer with q/k norms, GeGLU, RoPE and padding (tensor-core attention
// backward), an odd LayerNorm layer with every bias and Dh 24 (f32 attention backward), and an mlp replacement with
// post_mlp_norm alone, each through check_case and check_eval; then set_post_norm's refusals and that the norms matter.
std::vector<Case> post_cases() {
  return {
      {"layer gemma post norms + q/k norm gqa rope padded", ReplacementKind::Layer,
       spec(2, 37, 128, 4, 2, 32, 256, false, Activation::GELUTanh, true, true), false, true, true},
      {"layer post norms layernorm odd, biases, Dh 24", ReplacementKind::Layer,
       spec(3, 19, 72, 3, 1, 24, 100, true, Activation::GELUTanh, false, false), true, false, true},
      {"mlp post_mlp_norm geglu", ReplacementKind::MLP, spec(2, 13, 96, 0, 0, 0, 200, false, Activation::GELUTanh, true, false),
       false, false, true},
  };
}

// A feature the step gets after construction (set_qk_norm, set_rotary_dim): one step on the case's batch without it,
// `enable`, one step with it, and the CPU's step on the same weights (which has it). The feature must matter: the
// step follows the CPU's loss only with it ("far" is 3x the enabled step's own distance: such a residual-dominated
// loss moves ~1e-3, below the tolerance).
struct FeatureLosses {
  double without, with, cpu;
  bool follows_only_with() const {
    return std::fabs(with - cpu) / cpu <= kTolTrainLoss && std::fabs(without - cpu) > 3 * std::fabs(with - cpu);
  }
};
FeatureLosses losses_around(const Case& c, sc::TrainStep& t, const Params& p0, const Batch& b,
                            const std::vector<float>& inv, const std::function<void()>& enable) {
  const double without = gpu_step(t, b, 1.f);
  t.zero_grad();
  enable();
  const double with = gpu_step(t, b, 1.f);
  Params cg = zeros_like(p0), cp = p0;
  return {without, with, cpu_step(c, cp, cg, b, inv, 1.f)};
}

void check_post_norm_edges() {
  const Case c = post_cases()[0];
  Rng r(4343);
  const Params p0 = make_params(c, r);
  const std::vector<float> inv = inv_freq(c);
  const Batch b = make_batch(c, c.s.B, r, nullptr, inv);
  const float* pa = p0[streamline::kRolePostAttnNormW].data();
  const float* pm = p0[streamline::kRolePostMlpNormW].data();
  sc::TrainStep t(c.kind, c.s, gpu_view(p0), inv.data(), false);
  t.set_qk_norm(p0[streamline::kRoleQNormW].data(), p0[streamline::kRoleKNormW].data());
  const bool before = !t.has(streamline::kRolePostAttnNormW) && !t.has_post_norm();
  const bool one = throws_with([&] { t.set_post_norm(nullptr, pm); }, "both");
  const FeatureLosses l = losses_around(c, t, p0, b, inv, [&] { t.set_post_norm(pa, pm); });
  record("train", "post norm: absent before set_post_norm, one norm refused, the loss follows the CPU's only with them",
         before && one && t.has_post_norm() && t.has(streamline::kRolePostMlpNormW) && l.follows_only_with(),
         std::fabs(l.with - l.cpu) / l.cpu, kTolTrainLoss,
         fmt("without %.6g with %.6g cpu %.6g", l.without, l.with, l.cpu));
  const Case mc = post_cases()[2];
  Rng r2(7);
  const Params pmlp = make_params(mc, r2);
  const Batch bm = make_batch(mc, mc.s.B, r2, nullptr, {});
  sc::TrainStep tm(mc.kind, mc.s, gpu_view(pmlp), nullptr, false);
  const bool mlp_refused = throws_with([&] { tm.set_post_norm(pa, pmlp[streamline::kRolePostMlpNormW].data()); }, "mlp");
  const FeatureLosses lm = losses_around(mc, tm, pmlp, bm, {}, [&] {
    tm.set_post_norm(nullptr, pmlp[streamline::kRolePostMlpNormW].data());
  });
  record("train", "post norm: an mlp replacement refuses post_attn_norm, follows the CPU only with post_mlp_norm",
         mlp_refused && !tm.has(streamline::kRolePostAttnNormW) && lm.follows_only_with(),
         std::fabs(lm.with - lm.cpu) / lm.cpu, kTolTrainLoss,
         fmt("without %.6g with %.6g cpu %.6g", lm.without, lm.with, lm.cpu));
}

void check_qk_norm_edges() {
  const Case c = qk_cases()[0];
  Rng r(4242);
  const Params p0 = make_params(c, r);
  const std::vector<float> inv = inv_freq(c);
  const Batch b = make_batch(c, c.s.B, r, nullptr, inv);
  const float* qn = p0[streamline::kRoleQNormW].data();
  const float* kn = p0[streamline::kRoleKNormW].data();
  sc::TrainStep t(c.kind, c.s, gpu_view(p0), inv.data(), false);
  const bool before = !t.has(streamline::kRoleQNormW) && !t.has_qk_norm();
  const bool one = throws_with([&] { t.set_qk_norm(qn, nullptr); }, "both");
  const FeatureLosses l = losses_around(c, t, p0, b, inv, [&] { t.set_qk_norm(qn, kn); });
  record("train", "q/k norm: absent before set_qk_norm, one norm refused, the loss follows the CPU's only with them",
         before && one && t.has_qk_norm() && l.follows_only_with(), std::fabs(l.with - l.cpu) / l.cpu, kTolTrainLoss,
         fmt("without %.6g with %.6g cpu %.6g", l.without, l.with, l.cpu));
  const Case mlp = cases()[0];
  Rng r2(5);
  const Params pm = make_params(mlp, r2);
  sc::TrainStep tm(mlp.kind, mlp.s, gpu_view(pm), nullptr, false);
  const bool mlp_refused = throws_with([&] { tm.set_qk_norm(qn, kn); }, "layer replacement");
  const Case ln = cases()[3];
  Rng r3(6);
  const Params pl = make_params(ln, r3);
  const std::vector<float> ln_inv = inv_freq(ln);
  sc::TrainStep tl(ln.kind, ln.s, gpu_view(pl), ln.s.use_rope ? ln_inv.data() : nullptr, false);
  const bool ln_refused = throws_with([&] { tl.set_qk_norm(qn, kn); }, "LayerNorm");
  record("train", "q/k norm: refused on an mlp replacement and on a LayerNorm layer", mlp_refused && ln_refused, 0, 0);
}

// Partial RoPE (Phi-4-mini's partial_rotary_factor 0.75), given by set_rotary_dim as the C API does: a GQA layer with
// padding (tensor-core attention backward), an odd one with biases and Dh 24 rotating 18 (f32 attention backward, an
// odd rot/2), and q/k norms with partial RoPE; each through check_case and check_eval against the CPU's
// replacement_step with spec.rotary.
std::vector<Case> partial_cases() {
  return {
      {"layer phi-4 partial rope 24 of 32, gqa padded", ReplacementKind::Layer,
       with_rot(spec(2, 37, 128, 4, 2, 32, 256, false, Activation::SiLU, true, true), 24), false},
      {"layer partial rope 18 of Dh 24, odd, biases", ReplacementKind::Layer,
       with_rot(spec(3, 19, 72, 3, 1, 24, 100, false, Activation::GELUTanh, false, true), 18), true},
      {"layer q/k norm + partial rope 24 of 32", ReplacementKind::Layer,
       with_rot(spec(2, 37, 128, 4, 2, 32, 256, false, Activation::SiLU, true, true), 24), false, true},
  };
}

// set_rotary_dim's refusals, and that it matters: the narrowed step follows the CPU's partial loss, the whole-head step
// on the same weights stands farther from it than the narrowed one.
void check_rotary_edges() {
  const Case c = partial_cases()[0];
  Rng r(777);
  const Params p0 = make_params(c, r);
  const std::vector<float> inv = inv_freq(c);
  const Batch b = make_batch(c, c.s.B, r, nullptr, inv);
  sc::TrainStep t(c.kind, gpu_spec(c.s), gpu_view(p0), inv.data(), false);
  const bool odd = throws_with([&] { t.set_rotary_dim(23, inv.data()); }, "even");
  const bool wide = throws_with([&] { t.set_rotary_dim(34, inv.data()); }, "even");
  const bool none = throws_with([&] { t.set_rotary_dim(24, nullptr); }, "inv_freq");
  const FeatureLosses l = losses_around(c, t, p0, b, inv, [&] { t.set_rotary_dim(24, inv.data()); });
  record("train", "partial rope: bad rot_dim / missing inv_freq refused; the loss follows the CPU's only once narrowed",
         odd && wide && none && t.rot() == 24 && l.follows_only_with(), std::fabs(l.with - l.cpu) / l.cpu,
         kTolTrainLoss, fmt("whole heads %.6g narrowed %.6g cpu %.6g", l.without, l.with, l.cpu));
  const Case mlp = cases()[0];
  Rng r2(5);
  const Params pm = make_params(mlp, r2);
  sc::TrainStep tm(mlp.kind, mlp.s, gpu_view(pm), nullptr, false);
  record("train", "partial rope: refused without RoPE (an mlp replacement created without it)",
         throws_with([&] { tm.set_rotary_dim(16, inv.data()); }, "without RoPE"), 0, 0);
}

}  // namespace

// Each case's step (fallback GEMM, and cuBLASLt when loaded) and eval (fallback; cuBLASLt too with eval_lt).
static void run_cases(const std::vector<Case>& list, bool use_cublaslt, bool eval_lt) {
  for (const Case& c : list) {
    guard(std::string(c.name) + " (fallback)", [&] { check_case(c, false); });
    if (use_cublaslt) guard(std::string(c.name) + " (cublaslt)", [&] { check_case(c, true); });
    guard(std::string(c.name) + " eval (fallback)", [&] { check_eval(c, false); });
    if (use_cublaslt && eval_lt) guard(std::string(c.name) + " eval (cublaslt)", [&] { check_eval(c, true); });
  }
}

void run_train_step_checks(bool use_cublaslt) {
  run_cases(partial_cases(), use_cublaslt, false);
  guard("partial rope edges", [] { check_rotary_edges(); });
  run_cases(qk_cases(), use_cublaslt, false);
  guard("q/k norm edges", [] { check_qk_norm_edges(); });
  run_cases(post_cases(), use_cublaslt, false);
  guard("post norm edges", [] { check_post_norm_edges(); });
  run_cases(cases(), use_cublaslt, true);
  guard("edges", [&] { check_edges(use_cublaslt); });
  {
    const Case wide{"layer gqa rope padded T=150", ReplacementKind::Layer,
                    spec(2, 150, 64, 4, 2, 32, 96, false, Activation::SiLU, true, true), false};
    guard("window step", [&] { check_window_step(wide, 70, false); });
    if (use_cublaslt) guard("window step (cublaslt)", [&] { check_window_step(wide, 70, true); });
    guard("window step odd", [&] { check_window_step(cases()[3], 5, false); });
    guard("window mlp", [] { check_window_mlp(); });
  }
  for (const Case& c : cases()) guard(std::string(c.name) + " staged", [&] { check_staged(c, use_cublaslt, false); });
  run_train_lm_checks(use_cublaslt);
}

void run_train_curve_checks(bool use_cublaslt, bool quick, const std::string& model_dir) {
  guard("training run", [&] { check_training_run(cases()[2], use_cublaslt); });
  if (!quick) guard("training run mlp", [&] { check_training_run(cases()[1], use_cublaslt); });
  if (!model_dir.empty()) guard("real window", [&] { check_window(model_dir, use_cublaslt); });
}

void run_train_checks(bool quick, const std::string& model_dir) {
  std::printf("train checks%s\n", quick ? " (quick)" : "");
  const bool lt = sc::lt::api() != nullptr;
  run_train_step_checks(lt);
  // Prefetch with the default 16 MiB staging halves: an mlp whose x and target are 1.0 halves plus a tail each
  // (2 x 1031 x 2048 f32).
  const Case big{"mlp staged across 16 MiB chunks", ReplacementKind::MLP,
                 spec(2, 1031, 2048, 0, 0, 0, 64, false, Activation::SiLU, true, false), false};
  guard("staged big", [&] { check_staged(big, lt, true); });
  run_train_curve_checks(lt, quick, model_dir);
  guard("C API", [] { check_capi_train(); });
  guard("C API lm", [] { check_capi_lm(); });
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
  // The windowed step's reference (cpu_window_step) with a window of T is the full-attention step: every query's
  // window is its whole prefix. Checks the re-batching, padding, self-targets and scales against cpu_step.
  for (const Case& c : {cases()[2], cases()[3]}) {
    Rng r(808);
    const Params p0 = make_params(c, r);
    const std::vector<float> inv = inv_freq(c);
    const Batch b = make_batch(c, c.s.B, r, nullptr, inv);
    Params ga = zeros_like(p0), gb = zeros_like(p0);
    const double la = cpu_step(c, p0, ga, b, inv, 0.7f), lb = cpu_window_step(c, c.s.T, p0, gb, b, inv, 0.7f);
    std::string role;
    const Compare g = worst_role(gb, ga, &role, kGradFloor);  // k.bias without RoPE: exactly zero, noise on both
    const double lerr = std::fabs(lb - la) / la;
    expect(lerr < 1e-5 && g.nan_mismatch == 0 && g.rel_l2 < 1e-4,
           fmt("%s: the per-query-window CPU step with window T is the full step (loss %.1e, gradients %.1e %s)", c.name,
               lerr, g.rel_l2, role.c_str()));
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
  if (!model_dir.empty()) tr::window_selftest(model_dir, expect);
  return fail;
}

}  // namespace harness
