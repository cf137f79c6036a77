// Training-step checks on a real checkpoint and through the C API (see train_check.cpp for the synthetic cases):
// a layer replacement initialised from kjv-llama's layer 7 on its real boundary states (h[7] -> h[9]), and
// streamline_cuda.so's train_* functions through dlopen against the in-process TrainStep.
#include <dlfcn.h>
#include <unistd.h>

#include "cpu_ref.h"
#include "cublaslt_loader.h"
#include "layer_util.h"
#include "safetensors.h"
#include "streamline_cuda.h"
#include "train_util.h"

namespace harness {
namespace tr {

using streamline::DType;

void check_capi_train() {
  std::string so;
  void* h = open_backend_library(&so);
  if (!h) {
    record("train", "C API: dlopen " + so, false, 0, 0, dlerror());
    return;
  }
#define SYM(name) auto name = reinterpret_cast<decltype(&::name)>(dlsym(h, #name))
  SYM(streamline_cuda_train_create); SYM(streamline_cuda_train_destroy); SYM(streamline_cuda_train_step);
  SYM(streamline_cuda_train_apply); SYM(streamline_cuda_train_get_params); SYM(streamline_cuda_train_get_grads);
  SYM(streamline_cuda_last_error); SYM(streamline_cuda_train_get_state); SYM(streamline_cuda_train_set_state);
  SYM(streamline_cuda_train_eval);
#undef SYM
  if (!streamline_cuda_train_create || !streamline_cuda_train_destroy || !streamline_cuda_train_step ||
      !streamline_cuda_train_apply || !streamline_cuda_train_get_params || !streamline_cuda_train_get_grads ||
      !streamline_cuda_last_error || !streamline_cuda_train_get_state || !streamline_cuda_train_set_state ||
      !streamline_cuda_train_eval) {
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
  std::vector<double> eref(b.B), ev(b.B, -1.0);
  t.eval(b.x.data(), b.target.data(), b.pos.data(), b.mask.data(), b.B, eref.data());
  const double lref = gpu_step(t, b, 1.f);
  Params gref = gpu_grads(t, p0);
  streamline::AdamWOptions opt;
  opt.lr = 2e-4;
  const double nref = t.apply(opt, 5.0);
  Params pref = gpu_params(t, p0);

  const streamline_cuda_train_spec s = capi_train_spec(c.s, lt);
  const float* hp[STREAMLINE_CUDA_TRAIN_ROLES];
  for (int k = 0; k < kRoles; k++) hp[k] = p0[k].empty() ? nullptr : p0[k].data();
  streamline_cuda_train* tr = nullptr;
  double loss = 0, norm = 0;
  bool ok = streamline_cuda_train_create(1, &s, hp, inv.data(), &tr) == 0 &&
            streamline_cuda_train_eval(tr, b.x.data(), b.target.data(), b.pos.data(), b.mask.data(), int64_t(b.B),
                                       ev.data()) == 0 &&
            streamline_cuda_train_step(tr, b.x.data(), b.target.data(), b.pos.data(), b.mask.data(), int64_t(b.B), 1.f,
                                       &loss) == 0;
  Params g = zeros_like(p0), p = zeros_like(p0);
  for (int k = 0; k < kRoles && ok; k++)
    if (!g[k].empty()) ok = streamline_cuda_train_get_grads(tr, k, g[k].data(), int64_t(g[k].size())) == 0;
  streamline_cuda_adamw o{opt.lr, opt.beta1, opt.beta2, opt.eps, opt.weight_decay, 5.0, 1};
  ok = ok && streamline_cuda_train_apply(tr, &o, &norm) == 0;
  for (int k = 0; k < kRoles && ok; k++)
    if (!p[k].empty()) ok = streamline_cuda_train_get_params(tr, k, p[k].data(), int64_t(p[k].size())) == 0;
  record("train", "C API: create / eval / step / get_grads / apply / get_params through dlopen", ok, 0, 0,
         ok ? "" : streamline_cuda_last_error());
  if (ok) {
    std::string w;
    const Compare cg = worst_role(g, gref, &w), cp = worst_role(p, pref, &w);
    record("train", "C API: same eval losses, loss, gradients, norm and weights as the in-process step",
           ev == eref && loss == lref && norm == nref && cg.rel_l2 == 0 && cp.rel_l2 == 0 && cg.nan_mismatch == 0 && cp.nan_mismatch == 0,
           std::max(cg.rel_l2, cp.rel_l2), 0);
  }
  // Checkpoint/resume: the state after one step, set into a trainer created from other weights, must continue
  // exactly as the original (the same kernels on the same values; bitwise, like the in-process comparison above).
  if (ok) {
    Params sp = zeros_like(p0), sm = sp, sv = sp;
    bool sok = true;
    for (int k = 0; k < kRoles && sok; k++)
      if (!sp[k].empty())
        sok = streamline_cuda_train_get_state(tr, k, sp[k].data(), sm[k].data(), sv[k].data(), int64_t(sp[k].size())) == 0;
    std::string w;
    record("train", "C API: get_state's weights are get_params'", sok && worst_role(sp, p, &w).rel_l2 == 0 &&
           worst_role(sp, p, &w).nan_mismatch == 0, 0, 0, sok ? "" : streamline_cuda_last_error());
    Rng r2(6161);
    const Params other = make_params(c, r2);
    for (int k = 0; k < kRoles; k++) hp[k] = other[k].empty() ? nullptr : other[k].data();
    streamline_cuda_train* fresh = nullptr;
    sok = sok && streamline_cuda_train_create(1, &s, hp, inv.data(), &fresh) == 0;
    for (int k = 0; k < kRoles && sok; k++)
      if (!sp[k].empty())
        sok = streamline_cuda_train_set_state(fresh, k, sp[k].data(), sm[k].data(), sv[k].data(), int64_t(sp[k].size())) == 0;
    // Two more steps on both (the second batch differs, so the moments' history matters, not just the weights).
    const Batch b2 = make_batch(c, c.s.B, r2, nullptr, inv);
    double la[2] = {0, 0}, lb[2] = {0, 0}, na[2] = {0, 0}, nb[2] = {0, 0};
    for (int k = 0; k < 2 && sok; k++) {
      const Batch& bb = k == 0 ? b2 : b;
      streamline_cuda_adamw ok2{opt.lr, opt.beta1, opt.beta2, opt.eps, opt.weight_decay, 5.0, 2 + k};
      sok = streamline_cuda_train_step(tr, bb.x.data(), bb.target.data(), bb.pos.data(), bb.mask.data(), int64_t(bb.B), 1.f, &la[k]) == 0 &&
            streamline_cuda_train_step(fresh, bb.x.data(), bb.target.data(), bb.pos.data(), bb.mask.data(), int64_t(bb.B), 1.f, &lb[k]) == 0 &&
            streamline_cuda_train_apply(tr, &ok2, &na[k]) == 0 && streamline_cuda_train_apply(fresh, &ok2, &nb[k]) == 0;
    }
    Params ap = zeros_like(p0), am = ap, av = ap, bp = ap, bm = ap, bv = ap;
    for (int k = 0; k < kRoles && sok; k++)
      if (!ap[k].empty())
        sok = streamline_cuda_train_get_state(tr, k, ap[k].data(), am[k].data(), av[k].data(), int64_t(ap[k].size())) == 0 &&
              streamline_cuda_train_get_state(fresh, k, bp[k].data(), bm[k].data(), bv[k].data(), int64_t(bp[k].size())) == 0;
    record("train", "C API: get_state / set_state into a fresh trainer / 2 more steps", sok, 0, 0,
           sok ? "" : streamline_cuda_last_error());
    if (sok) {
      const Compare cp = worst_role(bp, ap, &w), cm = worst_role(bm, am, &w), cv = worst_role(bv, av, &w);
      record("train", "C API: a restored trainer continues bitwise (losses, norms, weights, m, v)",
             la[0] == lb[0] && la[1] == lb[1] && na[0] == nb[0] && na[1] == nb[1] && cp.rel_l2 == 0 && cm.rel_l2 == 0 &&
                 cv.rel_l2 == 0 && cp.nan_mismatch + cm.nan_mismatch + cv.nan_mismatch == 0,
             std::max({cp.rel_l2, cm.rel_l2, cv.rel_l2}), 0, w);
    }
    if (fresh) {
      const int k = STREAMLINE_CUDA_TRAIN_UP_W;
      const int bad = streamline_cuda_train_set_state(fresh, k, sp[k].data(), nullptr, sv[k].data(), int64_t(sp[k].size()));
      const std::string msg = streamline_cuda_last_error();
      record("train", "C API: set_state without a moment returns -1", bad == -1, 0, 0, msg);
      streamline_cuda_train_destroy(fresh);
    }
    for (int k = 0; k < kRoles; k++) hp[k] = p0[k].empty() ? nullptr : p0[k].data();
  }
  // Prefetch through the C API: stage + step_staged on a fresh trainer gives train_step's loss on another fresh one
  // (bitwise), and the misuse errors come back as -1 with a message.
  {
    auto stage = reinterpret_cast<decltype(&::streamline_cuda_train_stage)>(dlsym(h, "streamline_cuda_train_stage"));
    auto step_staged =
        reinterpret_cast<decltype(&::streamline_cuda_train_step_staged)>(dlsym(h, "streamline_cuda_train_step_staged"));
    streamline_cuda_train *pa = nullptr, *pb = nullptr;
    double l1 = -1, l2 = -2, l3 = 0;
    bool pok = stage && step_staged && streamline_cuda_train_create(1, &s, hp, inv.data(), &pa) == 0 &&
               streamline_cuda_train_create(1, &s, hp, inv.data(), &pb) == 0;
    std::string none, zero;
    if (pok) {
      pok = step_staged(pa, 1.f, &l3) == -1;
      none = streamline_cuda_last_error();
      pok = pok && stage(pa, b.x.data(), b.target.data(), b.pos.data(), b.mask.data(), 0) == -1;
      zero = streamline_cuda_last_error();
      pok = pok && stage(pa, b.x.data(), b.target.data(), b.pos.data(), b.mask.data(), int64_t(b.B)) == 0 &&
            step_staged(pa, 1.f, &l1) == 0 &&
            streamline_cuda_train_step(pb, b.x.data(), b.target.data(), b.pos.data(), b.mask.data(), int64_t(b.B), 1.f,
                                       &l2) == 0;
    }
    record("train", "C API: stage + step_staged = train_step (loss bitwise); misuse returns -1",
           pok && l1 == l2 && none.find("no staged batch") != std::string::npos &&
               zero.find("batch must be positive") != std::string::npos,
           0, 0, fmt("staged %.17g plain %.17g; '%s'; '%s'", l1, l2, none.c_str(), zero.c_str()));
    // train_stage_bf16: the batch as bf16 rows, one pointer per sequence, = train_step on the widened values.
    auto stage16 =
        reinterpret_cast<decltype(&::streamline_cuda_train_stage_bf16)>(dlsym(h, "streamline_cuda_train_stage_bf16"));
    double l4 = -1, l5 = -2;
    bool ok16 = pok && stage16;
    if (ok16) {
      const size_t TD = size_t(s.seq_len * s.hidden);
      const Bf16Rows xr = bf16_rows(b.x, b.B, TD), yr = bf16_rows(b.target, b.B, TD);
      const std::vector<float> x32 = round_bf16(b.x), y32 = round_bf16(b.target);
      ok16 = stage16(pa, xr.ptrs.data(), yr.ptrs.data(), b.pos.data(), b.mask.data(), int64_t(b.B)) == 0 &&
             step_staged(pa, 1.f, &l4) == 0 &&
             streamline_cuda_train_step(pb, x32.data(), y32.data(), b.pos.data(), b.mask.data(), int64_t(b.B), 1.f,
                                        &l5) == 0;
    }
    record("train", "C API: stage_bf16 + step_staged = train_step on the widened inputs (loss bitwise)",
           ok16 && l4 == l5, 0, 0, fmt("staged %.17g plain %.17g%s", l4, l5, stage16 ? "" : " (symbol missing)"));
    // Kept pairs: keep_pairs + put_pair per sequence + stage_kept = the same loss again.
    auto keep = reinterpret_cast<decltype(&::streamline_cuda_train_keep_pairs)>(dlsym(h, "streamline_cuda_train_keep_pairs"));
    auto put = reinterpret_cast<decltype(&::streamline_cuda_train_put_pair)>(dlsym(h, "streamline_cuda_train_put_pair"));
    auto stage_kept =
        reinterpret_cast<decltype(&::streamline_cuda_train_stage_kept)>(dlsym(h, "streamline_cuda_train_stage_kept"));
    double l6 = -3;
    int kept = 0;
    bool okk = ok16 && keep && put && stage_kept && keep(pa, int64_t(b.B), 1, 0.5, &kept) == 0 && kept == 1;
    std::vector<int64_t> ids;
    if (okk) {
      const size_t TD = size_t(s.seq_len * s.hidden);
      const Bf16Rows xr = bf16_rows(b.x, b.B, TD), yr = bf16_rows(b.target, b.B, TD);
      for (size_t q = 0; q < b.B; q++) {
        okk = okk && put(pa, int64_t(b.B - 1 - q), xr.ptrs[q], yr.ptrs[q]) == 0;
        ids.push_back(int64_t(b.B - 1 - q));
      }
      okk = okk && stage_kept(pa, ids.data(), b.pos.data(), b.mask.data(), int64_t(b.B)) == 0 &&
            step_staged(pa, 1.f, &l6) == 0;
    }
    record("train", "C API: keep_pairs + put_pair + stage_kept + step_staged = train_step on the widened inputs",
           okk && l6 == l5, 0, 0, fmt("kept %.17g plain %.17g", l6, l5));
    if (pa) streamline_cuda_train_destroy(pa);
    if (pb) streamline_cuda_train_destroy(pb);
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
  for (int k = 0; k < kRoles; k++) hp[k] = p0[k].empty() ? nullptr : p0[k].data();
  // Sliding window (optional symbol): a windowed step through the C API is bitwise the in-process windowed step;
  // negative windows and tail windows without a tail come back as -1 with a message.
  auto set_windows =
      reinterpret_cast<decltype(&::streamline_cuda_train_set_windows)>(dlsym(h, "streamline_cuda_train_set_windows"));
  if (!set_windows) {
    record("train", "C API: streamline_cuda_train_set_windows exported", false, 0, 0, "missing in " + so);
  } else {
    sc::TrainStep tw(c.kind, c.s, gpu_view(p0), inv.data(), lt);
    tw.set_windows(9, {});
    const double lw = gpu_step(tw, b, 1.f);
    const Params gw = gpu_grads(tw, p0);
    streamline_cuda_train* t3 = nullptr;
    double l3 = 0;
    bool wok = streamline_cuda_train_create(1, &s, hp, inv.data(), &t3) == 0 && set_windows(t3, 9, 0, nullptr) == 0 &&
               streamline_cuda_train_step(t3, b.x.data(), b.target.data(), b.pos.data(), b.mask.data(), int64_t(b.B),
                                          1.f, &l3) == 0;
    Params g3 = zeros_like(p0);
    for (int k = 0; k < kRoles && wok; k++)
      if (!g3[k].empty()) wok = streamline_cuda_train_get_grads(t3, k, g3[k].data(), int64_t(g3[k].size())) == 0;
    std::string w;
    const Compare cg = worst_role(g3, gw, &w);
    record("train", "C API: train_set_windows(9) step is bitwise the in-process windowed step",
           wok && l3 == lw && l3 != lref && cg.rel_l2 == 0 && cg.nan_mismatch == 0, cg.rel_l2, 0,
           wok ? fmt("loss %.9g (no window %.9g)", l3, lref) : streamline_cuda_last_error());
    const int64_t tw1[1] = {4};
    const int neg = t3 ? set_windows(t3, -1, 0, nullptr) : 0;
    const std::string m1 = streamline_cuda_last_error();
    const int notail = t3 ? set_windows(t3, 9, 1, tw1) : 0;
    const std::string m2 = streamline_cuda_last_error();
    const int negtail = t3 ? set_windows(t3, 9, -1, nullptr) : 0;
    const std::string m3 = streamline_cuda_last_error();
    record("train", "C API: train_set_windows refuses a negative window, tail windows without a tail, n_tail < 0",
           neg == -1 && notail == -1 && negtail == -1 && m1.find("window") != std::string::npos &&
               m2.find("tail") != std::string::npos && m3.find("n_tail") != std::string::npos,
           0, 0, m1 + " | " + m2 + " | " + m3);
    if (t3) streamline_cuda_train_destroy(t3);
  }
  // Qwen3's q/k norms (optional symbol): roles 17/18 are refused until train_set_qk_norm, then a step through dlopen
  // gives the in-process step's loss and gradients bitwise (norms included), and get_state/set_state take them.
  auto set_qk = reinterpret_cast<decltype(&::streamline_cuda_train_set_qk_norm)>(dlsym(h, "streamline_cuda_train_set_qk_norm"));
  if (!set_qk) {
    record("train", "C API: streamline_cuda_train_set_qk_norm exported", false, 0, 0, "missing in " + so);
  } else {
    Case cq = c;
    cq.name = "layer qwen3 q/k norm";
    cq.qk_norm = true;
    Rng rq(6161);
    const Params q0 = make_params(cq, rq);
    const Batch bq = make_batch(cq, cq.s.B, rq, nullptr, inv);
    const float* qn = q0[streamline::kRoleQNormW].data();
    const float* kn = q0[streamline::kRoleKNormW].data();
    sc::TrainStep tq(cq.kind, cq.s, gpu_view(q0), inv.data(), lt);
    tq.set_qk_norm(qn, kn);
    const double lq = gpu_step(tq, bq, 1.f);
    const Params gq = gpu_grads(tq, q0);
    const float* hq[STREAMLINE_CUDA_TRAIN_ROLES];
    for (int k = 0; k < kRoles; k++) hq[k] = q0[k].empty() ? nullptr : q0[k].data();
    streamline_cuda_train* t4 = nullptr;
    std::vector<float> tmp(cq.s.Dh);
    bool qok = streamline_cuda_train_create(1, &s, hq, inv.data(), &t4) == 0;
    const int early = qok ? streamline_cuda_train_get_params(t4, STREAMLINE_CUDA_TRAIN_ROLE_Q_NORM, tmp.data(), int64_t(tmp.size())) : 0;
    const std::string em = streamline_cuda_last_error();
    const int one = qok ? set_qk(t4, qn, nullptr) : 0;
    double l4 = 0;
    qok = qok && set_qk(t4, qn, kn) == 0 &&
          streamline_cuda_train_step(t4, bq.x.data(), bq.target.data(), bq.pos.data(), bq.mask.data(), int64_t(bq.B), 1.f, &l4) == 0;
    Params g4 = zeros_like(q0);
    for (int k = 0; k < kAllRoles && qok; k++)
      if (!g4[k].empty()) qok = streamline_cuda_train_get_grads(t4, k, g4[k].data(), int64_t(g4[k].size())) == 0;
    record("train", "C API: train_set_qk_norm / step / get_grads (roles 17, 18) through dlopen", qok, 0, 0,
           qok ? "" : streamline_cuda_last_error());
    record("train", "C API: q/k norm roles refused before train_set_qk_norm, one norm refused",
           early == -1 && one == -1 && em.find("q_norm.weight") != std::string::npos, 0, 0, em);
    if (qok) {
      std::string w;
      const Compare cg = worst_role(g4, gq, &w);
      record("train", "C API: q/k-norm step bitwise the in-process step (loss, every gradient)",
             l4 == lq && cg.rel_l2 == 0 && cg.nan_mismatch == 0, cg.rel_l2, 0, w);
      std::vector<float> pm(cq.s.Dh), mm(cq.s.Dh), vm(cq.s.Dh), back(cq.s.Dh);
      for (size_t i = 0; i < pm.size(); i++) pm[i] = 0.5f + float(i), mm[i] = 0.25f, vm[i] = 0.125f;
      const bool sok = streamline_cuda_train_set_state(t4, STREAMLINE_CUDA_TRAIN_ROLE_K_NORM, pm.data(), mm.data(), vm.data(), int64_t(pm.size())) == 0 &&
                       streamline_cuda_train_get_params(t4, STREAMLINE_CUDA_TRAIN_ROLE_K_NORM, back.data(), int64_t(back.size())) == 0;
      record("train", "C API: set_state / get_params on k_norm.weight", sok && back == pm, 0, 0, sok ? "" : streamline_cuda_last_error());
    }
    if (t4) streamline_cuda_train_destroy(t4);
  }
  // Gemma's post norms (optional symbol): roles 19/20 are refused until train_set_post_norm, then a step through dlopen
  // gives the in-process step's loss and gradients bitwise (norms included), and get_state/set_state take them.
  auto set_pn = reinterpret_cast<decltype(&::streamline_cuda_train_set_post_norm)>(dlsym(h, "streamline_cuda_train_set_post_norm"));
  if (!set_pn) {
    record("train", "C API: streamline_cuda_train_set_post_norm exported", false, 0, 0, "missing in " + so);
  } else {
    Case cp = c;
    cp.name = "layer gemma post norms";
    cp.post_norm = true;
    Rng rp(7171);
    const Params q0 = make_params(cp, rp);
    const Batch bq = make_batch(cp, cp.s.B, rp, nullptr, inv);
    const float* pa = q0[streamline::kRolePostAttnNormW].data();
    const float* pm = q0[streamline::kRolePostMlpNormW].data();
    sc::TrainStep tq(cp.kind, cp.s, gpu_view(q0), inv.data(), lt);
    tq.set_post_norm(pa, pm);
    const double lq = gpu_step(tq, bq, 1.f);
    const Params gq = gpu_grads(tq, q0);
    const float* hq[STREAMLINE_CUDA_TRAIN_ROLES];
    for (int k = 0; k < kRoles; k++) hq[k] = q0[k].empty() ? nullptr : q0[k].data();
    streamline_cuda_train* t5 = nullptr;
    std::vector<float> tmp(cp.s.D);
    bool pok = streamline_cuda_train_create(1, &s, hq, inv.data(), &t5) == 0;
    const int early = pok ? streamline_cuda_train_get_params(t5, STREAMLINE_CUDA_TRAIN_ROLE_POST_MLP_NORM, tmp.data(), int64_t(tmp.size())) : 0;
    const std::string em = streamline_cuda_last_error();
    const int one = pok ? set_pn(t5, nullptr, pm) : 0;
    double l5 = 0;
    pok = pok && set_pn(t5, pa, pm) == 0 &&
          streamline_cuda_train_step(t5, bq.x.data(), bq.target.data(), bq.pos.data(), bq.mask.data(), int64_t(bq.B), 1.f, &l5) == 0;
    Params g5 = zeros_like(q0);
    for (int k = 0; k < kAllRoles && pok; k++)
      if (!g5[k].empty()) pok = streamline_cuda_train_get_grads(t5, k, g5[k].data(), int64_t(g5[k].size())) == 0;
    record("train", "C API: train_set_post_norm / step / get_grads (roles 19, 20) through dlopen", pok, 0, 0,
           pok ? "" : streamline_cuda_last_error());
    record("train", "C API: post norm roles refused before train_set_post_norm, one norm refused",
           early == -1 && one == -1 && em.find("post_mlp_norm.weight") != std::string::npos, 0, 0, em);
    if (pok) {
      std::string w;
      const Compare cg = worst_role(g5, gq, &w);
      record("train", "C API: post-norm step bitwise the in-process step (loss, every gradient)",
             l5 == lq && cg.rel_l2 == 0 && cg.nan_mismatch == 0, cg.rel_l2, 0, w);
      std::vector<float> pv(cp.s.D), mv(cp.s.D), vv(cp.s.D), back(cp.s.D);
      for (size_t i = 0; i < pv.size(); i++) pv[i] = 0.5f + float(i), mv[i] = 0.25f, vv[i] = 0.125f;
      const bool sok = streamline_cuda_train_set_state(t5, STREAMLINE_CUDA_TRAIN_ROLE_POST_ATTN_NORM, pv.data(), mv.data(), vv.data(), int64_t(pv.size())) == 0 &&
                       streamline_cuda_train_get_params(t5, STREAMLINE_CUDA_TRAIN_ROLE_POST_ATTN_NORM, back.data(), int64_t(back.size())) == 0;
      record("train", "C API: set_state / get_params on post_attn_norm.weight", sok && back == pv, 0, 0, sok ? "" : streamline_cuda_last_error());
    }
    if (t5) streamline_cuda_train_destroy(t5);
  }
  // Partial RoPE (optional symbol): the spec's layout has no rotary width, train_set_rotary_dim gives it; a step
  // through dlopen is the in-process narrowed step bitwise, and a bad width is refused.
  auto set_rot =
      reinterpret_cast<decltype(&::streamline_cuda_train_set_rotary_dim)>(dlsym(h, "streamline_cuda_train_set_rotary_dim"));
  if (!set_rot) {
    record("train", "C API: streamline_cuda_train_set_rotary_dim exported", false, 0, 0, "missing in " + so);
  } else {
    Case cp = c;
    cp.name = "layer partial rope 24 of 32";
    cp.s = with_rot(c.s, 24);
    Rng rp(6262);
    const Params q0 = make_params(cp, rp);
    const std::vector<float> ip = inv_freq(cp);
    const Batch bp = make_batch(cp, cp.s.B, rp, nullptr, ip);
    sc::TrainStep tp(cp.kind, gpu_spec(cp.s), gpu_view(q0), ip.data(), lt);
    narrow_rope(tp, cp.s, ip);
    const double lp = gpu_step(tp, bp, 1.f);
    const Params gp = gpu_grads(tp, q0);
    const float* hp[STREAMLINE_CUDA_TRAIN_ROLES];
    for (int k = 0; k < kRoles; k++) hp[k] = q0[k].empty() ? nullptr : q0[k].data();
    streamline_cuda_train* t5 = nullptr;
    bool pok = streamline_cuda_train_create(1, &s, hp, ip.data(), &t5) == 0;
    const int odd = pok ? set_rot(t5, 23, ip.data()) : 0;
    const std::string om = streamline_cuda_last_error();
    double l5 = 0;
    pok = pok && set_rot(t5, 24, ip.data()) == 0 &&
          streamline_cuda_train_step(t5, bp.x.data(), bp.target.data(), bp.pos.data(), bp.mask.data(), int64_t(bp.B), 1.f, &l5) == 0;
    Params g5 = zeros_like(q0);
    for (int k = 0; k < kAllRoles && pok; k++)
      if (!g5[k].empty()) pok = streamline_cuda_train_get_grads(t5, k, g5[k].data(), int64_t(g5[k].size())) == 0;
    record("train", "C API: train_set_rotary_dim / step / get_grads through dlopen; an odd rot_dim refused",
           pok && odd == -1 && om.find("even") != std::string::npos, 0, 0, pok ? om : streamline_cuda_last_error());
    if (pok) {
      std::string w;
      const Compare cg = worst_role(g5, gp, &w);
      record("train", "C API: partial-rope step bitwise the in-process step (loss, every gradient)",
             l5 == lp && cg.rel_l2 == 0 && cg.nan_mismatch == 0, cg.rel_l2, 0, w);
    }
    if (t5) streamline_cuda_train_destroy(t5);
  }
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


void window_selftest(const std::string& model_dir, const std::function<void(bool, const std::string&)>& expect) {
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

}  // namespace tr
}  // namespace harness
