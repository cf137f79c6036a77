// Decoder-layer checks: the GPU Context against the CPU layers (bf16-emulating reference, pure f32 reference and the
// project's decoder_layer_forward) on synthetic weights for every layer style, weight streaming over several layers,
// and the C API through dlopen. Model-level checks are in model_check.cpp.
#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <functional>
#include <memory>

#include "cpu_ref.h"
#include "cublaslt_loader.h"
#include "decoder_layer.cuh"
#include "harness.h"
#include "layer_util.h"
#include "safetensors.h"
#include "streamline_cuda.h"

namespace harness {

namespace sc = streamline::cuda;

using streamline::Activation;
using streamline::DType;

namespace {

struct Style {
  const char* name;
  bool rms, gated, pre_norm, use_rope, mlp_only, qkv_bias, o_bias, mlp_bias, norm_bias;
  Activation act;
  bool qk_norm = false;  // Qwen3: q_norm/k_norm through Context::upload_qk_norm
  bool post_norm = false;  // Gemma: post_attn_norm/post_mlp_norm through Context::upload_post_norm
};

// Host weights kept alive for the upload (any dtype) plus their f32 values for the reference.
struct HostLayer {
  std::vector<std::vector<uint8_t>> bytes;
  sc::HostTensor roles[sc::kRoleCount];
  sc::HostTensor qn, kn;  // q_norm.weight / k_norm.weight (data nullptr = none)
  sc::HostTensor pan, pmn;  // post_attn_norm.weight / post_mlp_norm.weight (data nullptr = none)
  ref::LayerWeightsRef w;
};

std::vector<float> add_tensor(HostLayer& L, sc::HostTensor& dst, size_t n, DType dt, Rng& r, float scale, float offset) {
  std::vector<float> f = randn(n, r, scale);
  for (auto& x : f) x += offset;
  // Matrices are bf16-representable so the GPU (bf16 weights) and the reference see the same numbers.
  f = round_bf16(f);
  std::vector<uint8_t> b;
  if (dt == DType::F32) { b.resize(n * 4); std::memcpy(b.data(), f.data(), n * 4); }
  else if (dt == DType::BF16) { auto h = to_bf16(f); b.resize(n * 2); std::memcpy(b.data(), h.data(), n * 2); }
  else { auto h = to_f16(f); for (size_t i = 0; i < n; i++) f[i] = streamline::f16_to_f32(h[i]); b.resize(n * 2); std::memcpy(b.data(), h.data(), n * 2); }
  L.bytes.push_back(std::move(b));
  dst = sc::HostTensor{L.bytes.back().data(), dt, n};
  return f;
}

std::vector<float> add_role(HostLayer& L, int role, size_t n, DType dt, Rng& r, float scale, float offset = 0.f) {
  return add_tensor(L, L.roles[role], n, dt, r, scale, offset);
}

HostLayer make_layer(const ref::LayerSpecRef& s, const Style& st, DType dt, Rng& r) {
  HostLayer L;
  L.bytes.reserve(32);
  const size_t D = s.D, Hd = s.H * s.Dh, Kd = s.Hk * s.Dh, F = s.F;
  const float ws = 1.f / std::sqrt(float(D)), wf = 1.f / std::sqrt(float(F));
  if (!st.mlp_only) {
    L.w.n1w = add_role(L, sc::kAttnNormW, D, dt, r, 0.1f, 1.f);
    if (st.norm_bias) L.w.n1b = add_role(L, sc::kAttnNormB, D, dt, r, 0.1f);
    L.w.qw = add_role(L, sc::kQW, Hd * D, dt, r, ws);
    L.w.kw = add_role(L, sc::kKW, Kd * D, dt, r, ws);
    L.w.vw = add_role(L, sc::kVW, Kd * D, dt, r, ws);
    L.w.ow = add_role(L, sc::kOW, D * Hd, dt, r, 1.f / std::sqrt(float(Hd)));
    if (st.qkv_bias) {
      L.w.qb = add_role(L, sc::kQB, Hd, dt, r, 0.1f);
      L.w.kb = add_role(L, sc::kKB, Kd, dt, r, 0.1f);
      L.w.vb = add_role(L, sc::kVB, Kd, dt, r, 0.1f);
    }
    if (st.o_bias) L.w.ob = add_role(L, sc::kOB, D, dt, r, 0.1f);
    // Spread around 1 wider than the other norms (trained Qwen3 q/k norms are far from 1), so a dropped or misplaced
    // weight shows.
    if (st.qk_norm) {
      L.w.qn = add_tensor(L, L.qn, s.Dh, dt, r, 0.5f, 1.f);
      L.w.kn = add_tensor(L, L.kn, s.Dh, dt, r, 0.5f, 1.f);
    }
    // Gemma's effective post norm weights (1 + w) are far from 1 too.
    if (st.post_norm) L.w.pan = add_tensor(L, L.pan, D, dt, r, 0.5f, 1.f);
  }
  if (st.post_norm) L.w.pmn = add_tensor(L, L.pmn, D, dt, r, 0.5f, 1.f);
  L.w.n2w = add_role(L, sc::kMlpNormW, D, dt, r, 0.1f, 1.f);
  if (st.norm_bias) L.w.n2b = add_role(L, sc::kMlpNormB, D, dt, r, 0.1f);
  if (st.gated) L.w.gw = add_role(L, sc::kGateW, F * D, dt, r, ws);
  L.w.uw = add_role(L, sc::kUpW, F * D, dt, r, ws);
  L.w.dw = add_role(L, sc::kDownW, D * F, dt, r, wf);
  if (st.mlp_bias) {
    if (st.gated) L.w.gb = add_role(L, sc::kGateB, F, dt, r, 0.1f);
    L.w.ub = add_role(L, sc::kUpB, F, dt, r, 0.1f);
    L.w.db = add_role(L, sc::kDownB, D, dt, r, 0.1f);
  }
  return L;
}

void check_styles(bool quick) {
  const Style styles[] = {
      {"llama (rms, swiglu, rope)", true, true, true, true, false, false, false, false, false, Activation::SiLU},
      {"qwen2 (qkv bias)", true, true, true, true, false, true, false, false, false, Activation::SiLU},
      {"opt pre-norm (layernorm, relu, biases)", false, false, true, false, false, true, true, true, true, Activation::ReLU},
      {"opt post-norm", false, false, false, false, false, true, true, true, true, Activation::ReLU},
      {"gelu_tanh gated, partial rotary", true, true, true, true, false, false, false, false, false, Activation::GELUTanh},
      {"llama mlp_bias + attention_bias", true, true, true, true, false, true, true, true, false, Activation::SiLU},
      {"qwen3 (q/k norm, rope)", true, true, true, true, false, false, false, false, false, Activation::SiLU, true},
      {"qwen3 q/k norm + attention_bias, partial rotary", true, true, true, true, false, true, true, false, false,
       Activation::SiLU, true},
      {"qwen3 q/k norm, no rope", true, true, true, false, false, false, false, false, false, Activation::SiLU, true},
      {"gemma3 (post norms, q/k norm, gelu_tanh, rope)", true, true, true, true, false, false, false, false, false,
       Activation::GELUTanh, true, true},
      {"post norms + attention_bias + mlp_bias, partial rotary", true, true, true, true, false, true, true, true, false,
       Activation::SiLU, false, true},
      {"post norms, layernorm, relu", false, false, true, false, false, true, true, true, true, Activation::ReLU, false,
       true},
      {"mlp replacement block", true, true, true, false, true, false, false, false, false, Activation::SiLU},
      {"mlp replacement block, post_mlp_norm, gelu_tanh", true, true, true, false, true, false, false, false, false,
       Activation::GELUTanh, false, true},
      {"mlp replacement block, opt post-norm", false, false, false, false, true, false, false, true, true, Activation::ReLU},
  };
  struct Shape { size_t B, T, D, H, Hk, Dh, F; };
  const Shape shapes[] = {{2, 37, 256, 8, 4, 32, 704}, {2, 70, 512, 4, 2, 128, 1376}, {1, 129, 256, 4, 1, 64, 512}};
  int si = 0;
  for (const Style& st : styles) {
    for (const Shape& sh : shapes) {
      for (int use_lt = 0; use_lt < 2; use_lt++) {
        if (use_lt && !streamline::cuda::lt::api()) continue;
        Rng r(1000 + si++);
        try {
        ref::LayerSpecRef s{sh.B, sh.T, sh.D, sh.H, sh.Hk, sh.Dh, sh.F, sh.Dh, st.rms, st.gated, st.pre_norm,
                            st.use_rope, st.mlp_only, st.act, 1e-5f, 1.f / std::sqrt(float(sh.Dh))};
        if (std::string(st.name).find("partial") != std::string::npos) s.rot = sh.Dh / 2;
        const DType dt = si % 3 == 0 ? DType::F32 : si % 3 == 1 ? DType::BF16 : DType::F16;
        HostLayer L = make_layer(s, st, dt, r);
        Inputs in = make_inputs(s, 10000.0);
        std::vector<float> h0 = randn(s.B * s.T * s.D, r);
        std::vector<float> ref_emu = h0, ref_f32 = h0;
        ref::decoder_layer(ref_emu, s, L.w, in.cos.data(), in.sin.data(), in.mask.data(), true);
        ref::decoder_layer(ref_f32, s, L.w, in.cos.data(), in.sin.data(), in.mask.data(), false);
        sc::Context ctx(gpu_spec(s), use_lt != 0, size_t(1) << 20);  // 1 MB staging: many chunks
        ctx.set_inputs(in.pos.data(), in.mask.data(), st.use_rope ? in.inv.data() : nullptr, 1.f);
        ctx.upload_hidden(h0.data());
        ctx.upload_layer(si % 2, L.roles);
        if (st.qk_norm) ctx.upload_qk_norm(si % 2, L.qn, L.kn);
        if (st.post_norm) ctx.upload_post_norm(si % 2, L.pan, L.pmn);
        ctx.run_layer(si % 2);
        std::vector<float> out(h0.size());
        ctx.download_hidden(out.data());
        const std::string nm = fmt("%s B=%zu T=%zu D=%zu H=%zu/%zu Dh=%zu w=%s %s", st.name, s.B, s.T, s.D, s.H, s.Hk, s.Dh,
                                   streamline::dtype_name(dt), use_lt ? "cublaslt" : "fallback");
        check("layer", nm + " vs bf16-emulating ref", compare_real(out, ref_emu, in.mask, s.D), kTolLayerEmu);
        check("layer", nm + " vs f32 ref", compare_real(out, ref_f32, in.mask, s.D), kTolLayerF32);
        {
          std::vector<float> ref_cpu = h0;
          ref::contract_layer(ref_cpu, s, L.w, in.pos.data(), in.mask.data(), st.use_rope ? in.inv.data() : nullptr);
          check("layer", nm + " vs CPU decoder_layer_forward", compare_real(out, ref_cpu, in.mask, s.D), kTolLayerF32);
        }
        size_t nonfinite = 0;
        for (float v : out) nonfinite += !std::isfinite(v);
        record("layer", nm + " all outputs finite (padding too)", nonfinite == 0, double(nonfinite), 0);
        } catch (const std::exception& e) {
          record("layer", fmt("%s D=%zu Dh=%zu %s", st.name, sh.D, sh.Dh, use_lt ? "cublaslt" : "fallback"), false, NAN, 0, e.what());
        }
        if (quick) break;
      }
    }
  }
}

// Runs layers[0..n) from h through the context's two slots, uploading layer k+1 while layer k runs (`upload` puts a
// layer into a slot, `before_run` sets what layer k needs beyond its weights); returns the hidden state after.
std::vector<float> run_streamed(sc::Context& ctx, const std::vector<float>& h, size_t n,
                                const std::function<void(int slot, size_t k)>& upload,
                                const std::function<void(size_t k)>& before_run = nullptr) {
  ctx.upload_hidden(h.data());
  upload(0, 0);
  for (size_t k = 0; k < n; k++) {
    if (before_run) before_run(k);
    ctx.run_layer(int(k % 2));
    if (k + 1 < n) upload(int((k + 1) % 2), k + 1);  // overlaps layer k
  }
  std::vector<float> out(h.size());
  ctx.download_hidden(out.data());
  return out;
}

// A streamed chain against its bf16-emulating and f32 reference chains, and far (10x the emulation tolerance) from
// the reference chain without the feature under test (`without` names it), which must therefore matter.
void check_chain(const std::string& nm, const std::vector<float>& out, const std::vector<float>& ref_emu,
                 const std::vector<float>& ref_f32, const std::vector<float>& ref_without, const std::string& without,
                 const std::vector<uint8_t>& mask, size_t D) {
  check("layer", nm + " vs bf16-emulating ref", compare_real(out, ref_emu, mask, D), kTolLayerEmu * 2);
  check("layer", nm + " vs f32 ref", compare_real(out, ref_f32, mask, D), kTolLayerF32);
  const Compare c = compare_real(out, ref_without, mask, D);
  record("layer", nm + ": differs from the " + without, c.rel_l2 > 10 * kTolLayerEmu, c.rel_l2, 10 * kTolLayerEmu);
}

// Four layers through the two slots with uploads overlapping compute: same result as the reference chain.
void check_streaming() {
  Rng r(77);
  const Style st{"llama", true, true, true, true, false, false, false, false, false, Activation::SiLU};
  ref::LayerSpecRef s{2, 64, 256, 4, 2, 64, 512, 64, true, true, true, true, false, Activation::SiLU, 1e-5f, 0.125f};
  std::vector<HostLayer> layers;
  for (int k = 0; k < 4; k++) layers.push_back(make_layer(s, st, DType::BF16, r));
  Inputs in = make_inputs(s, 500000.0);
  std::vector<float> h = randn(s.B * s.T * s.D, r), ref_h = h;
  for (auto& L : layers) ref::decoder_layer(ref_h, s, L.w, in.cos.data(), in.sin.data(), in.mask.data(), true);
  sc::Context ctx(gpu_spec(s), true, size_t(256) << 10);
  ctx.set_inputs(in.pos.data(), in.mask.data(), in.inv.data(), 1.f);
  const std::vector<float> out = run_streamed(ctx, h, 4, [&](int slot, size_t k) { ctx.upload_layer(slot, layers[k].roles); });
  check("layer", "4 streamed layers (2 slots, overlapping uploads)", compare_real(out, ref_h, in.mask, s.D), kTolLayerEmu * 2);
  // Bad input is a clear error, not a crash.
  HostLayer bad = make_layer(s, st, DType::BF16, r);
  bad.roles[sc::kQW].numel -= 1;
  std::string msg;
  try { ctx.upload_layer(0, bad.roles); } catch (const std::exception& e) { msg = e.what(); }
  record("layer", "wrong q.weight size is rejected with a message", msg.find("q.weight") != std::string::npos, 0, 0, msg);
}

// Sliding-window attention per layer (Context::set_window): three streamed layers with windows 20, 0 and 70 (Qwen2
// mixes sliding and full layers) at T = 129 (three 64-query tiles, a right-padded row), against the same chain of
// reference layers with those windows and against the project's CPU decoder_layer_forward (LayerSpec::window); then
// one Mistral-style layer whose window the output must depend on.
void check_windows() {
  Rng r(91);
  const Style st{"qwen2", true, true, true, true, false, true, false, false, false, Activation::SiLU};
  ref::LayerSpecRef s{2, 129, 256, 4, 2, 64, 512, 64, true, true, true, true, false, Activation::SiLU, 1e-5f, 0.125f};
  const size_t windows[] = {20, 0, 70};
  std::vector<HostLayer> layers;
  for (int k = 0; k < 3; k++) layers.push_back(make_layer(s, st, DType::BF16, r));
  Inputs in = make_inputs(s, 1000000.0);
  std::vector<float> h = randn(s.B * s.T * s.D, r), ref_emu = h, ref_f32 = h, ref_full = h;
  for (int k = 0; k < 3; k++) {
    ref::LayerSpecRef sk = s;
    sk.window = windows[k];
    ref::decoder_layer(ref_emu, sk, layers[k].w, in.cos.data(), in.sin.data(), in.mask.data(), true);
    ref::decoder_layer(ref_f32, sk, layers[k].w, in.cos.data(), in.sin.data(), in.mask.data(), false);
    ref::decoder_layer(ref_full, s, layers[k].w, in.cos.data(), in.sin.data(), in.mask.data(), true);
  }
  sc::Context ctx(gpu_spec(s), true, size_t(256) << 10);
  ctx.set_inputs(in.pos.data(), in.mask.data(), in.inv.data(), 1.f);
  const std::vector<float> out = run_streamed(
      ctx, h, 3, [&](int slot, size_t k) { ctx.upload_layer(slot, layers[k].roles); },
      [&](size_t k) { ctx.set_window(windows[k]); });
  check_chain("3 streamed qwen2 layers, windows 20/0/70, T=129", out, ref_emu, ref_f32, ref_full,
              "full-attention chain", in.mask, s.D);
  {  // the same chain through the CPU engine's own layer, each with its window
    std::vector<float> ref_cpu = h;
    for (int k = 0; k < 3; k++) {
      ref::LayerSpecRef sk = s;
      sk.window = windows[k];
      ref::contract_layer(ref_cpu, sk, layers[k].w, in.pos.data(), in.mask.data(), in.inv.data());
    }
    check("layer", "3 streamed qwen2 layers, windows 20/0/70 vs CPU decoder_layer_forward", compare_real(out, ref_cpu, in.mask, s.D),
          kTolLayerF32);
  }
  // A window of at least T is no window: bitwise the same as 0.
  std::vector<float> a(h.size()), b(h.size());
  for (size_t w : {size_t(0), s.T}) {
    ctx.upload_hidden(h.data());
    ctx.set_window(w);
    ctx.run_layer(0);  // slot 0 holds layer 2 now
    ctx.download_hidden(w ? b.data() : a.data());
  }
  const size_t bad = bit_mismatches(a.data(), b.data(), a.size());
  record("layer", "window = T runs bitwise as no window", bad == 0, double(bad), 0);
  ctx.set_window(0);
}

// Qwen3's q/k norm across the two slots: layers with, without and with norms again, so slot 0 runs a norm-free
// layer after a normed one (upload_layer must clear the slot's norms); the norms must matter; bad uploads are refused
// with a message and leave the slot without norms; a NaN in one token's hidden state stays in the rows the reference
// puts it in (the per-head reduction is row-local: it must not spread to other tokens' q/k).
void check_qk_norm() {
  Rng r(313);
  const Style qw{"qwen3", true, true, true, true, false, false, false, false, false, Activation::SiLU, true};
  const Style ll{"llama", true, true, true, true, false, false, false, false, false, Activation::SiLU};
  ref::LayerSpecRef s{2, 70, 256, 4, 2, 64, 512, 64, true, true, true, true, false, Activation::SiLU, 1e-6f, 0.125f};
  std::vector<HostLayer> layers;
  layers.push_back(make_layer(s, qw, DType::BF16, r));
  layers.push_back(make_layer(s, qw, DType::F32, r));
  layers.push_back(make_layer(s, ll, DType::BF16, r));
  Inputs in = make_inputs(s, 1000000.0);
  std::vector<float> h = randn(s.B * s.T * s.D, r), ref_emu = h, ref_f32 = h, ref_plain = h;
  for (auto& L : layers) {
    ref::decoder_layer(ref_emu, s, L.w, in.cos.data(), in.sin.data(), in.mask.data(), true);
    ref::decoder_layer(ref_f32, s, L.w, in.cos.data(), in.sin.data(), in.mask.data(), false);
    ref::LayerWeightsRef plain = L.w;
    plain.qn.clear();
    plain.kn.clear();
    ref::decoder_layer(ref_plain, s, plain, in.cos.data(), in.sin.data(), in.mask.data(), true);
  }
  sc::Context ctx(gpu_spec(s), true, size_t(256) << 10);
  ctx.set_inputs(in.pos.data(), in.mask.data(), in.inv.data(), 1.f);
  auto upload = [&](int slot, const HostLayer& L) {
    ctx.upload_layer(slot, L.roles);
    if (L.qn.data) ctx.upload_qk_norm(slot, L.qn, L.kn);
  };
  const std::vector<float> out = run_streamed(ctx, h, 3, [&](int slot, size_t k) { upload(slot, layers[k]); });
  check_chain("3 streamed layers qwen3/qwen3/llama (slot 0: normed, then plain)", out, ref_emu, ref_f32, ref_plain,
              "chain without q/k norms", in.mask, s.D);
  {  // the first layer alone against the project's CPU layer
    std::vector<float> ref_cpu = h, o1(h.size());
    ref::contract_layer(ref_cpu, s, layers[0].w, in.pos.data(), in.mask.data(), in.inv.data());
    ctx.upload_hidden(h.data());
    upload(0, layers[0]);
    ctx.run_layer(0);
    ctx.download_hidden(o1.data());
    check("layer", "qwen3 layer vs CPU decoder_layer_forward (q/k norm)", compare_real(o1, ref_cpu, in.mask, s.D),
          kTolLayerF32);
    // NaN in token 5 of row 0: the GPU's NaN pattern over real tokens must be the reference's, except the tensor-core
    // attention's documented caveat (NOTES, Precision): tokens 0..4 of the NaN's 64-query tile may turn NaN too (P·V
    // multiplies the NaN value row by an exact 0). Row 1 must stay clean: the per-head norm is row-local.
    std::vector<float> hn = h, rn = h, on(h.size());
    hn[5 * s.D + 3] = NAN;
    rn = hn;
    ref::decoder_layer(rn, s, layers[0].w, in.cos.data(), in.sin.data(), in.mask.data(), true);
    ctx.upload_hidden(hn.data());
    ctx.run_layer(0);
    ctx.download_hidden(on.data());
    size_t mism = 0, nans = 0;
    for (size_t m = 0; m < s.B * s.T; m++)
      if (in.mask[m] && !(m < 5))
        for (size_t d = 0; d < s.D; d++) {
          const bool a = std::isnan(on[m * s.D + d]), b = std::isnan(rn[m * s.D + d]);
          mism += a != b;
          nans += b;
        }
    record("layer", fmt("qwen3 layer, NaN in one token: NaN where the reference has it from that token on (%zu NaN)", nans),
           mism == 0 && nans > 0, double(mism), 0);
  }
  // Refusals: one norm only, a wrong size; afterwards the slot runs without norms (the ref_plain layer).
  std::string m1, m2;
  try { ctx.upload_qk_norm(0, layers[0].qn, sc::HostTensor{}); } catch (const std::exception& e) { m1 = e.what(); }
  record("layer", "upload_qk_norm without k_norm is refused with a message", m1.find("k_norm") != std::string::npos, 0, 0, m1);
  sc::HostTensor short_k = layers[0].kn;
  short_k.numel -= 1;
  upload(1, layers[1]);
  try { ctx.upload_qk_norm(1, layers[1].qn, short_k); } catch (const std::exception& e) { m2 = e.what(); }
  record("layer", "upload_qk_norm with a wrong k_norm size is refused with a message",
         m2.find("k_norm.weight") != std::string::npos, 0, 0, m2);
  {
    std::vector<float> want = h, got(h.size());
    ref::LayerWeightsRef plain = layers[1].w;
    plain.qn.clear();
    plain.kn.clear();
    ref::decoder_layer(want, s, plain, in.cos.data(), in.sin.data(), in.mask.data(), true);
    ctx.upload_hidden(h.data());
    ctx.run_layer(1);
    ctx.download_hidden(got.data());
    check("layer", "after a refused upload_qk_norm the slot runs without norms", compare_real(got, want, in.mask, s.D),
          kTolLayerEmu);
  }
  ref::LayerSpecRef sl = s;
  sl.rms = false;
  sc::Context lctx(gpu_spec(sl), true, size_t(256) << 10);
  std::string m3;
  try { lctx.upload_qk_norm(0, layers[0].qn, layers[0].kn); } catch (const std::exception& e) { m3 = e.what(); }
  record("layer", "upload_qk_norm on a LayerNorm layer is refused", m3.find("LayerNorm") != std::string::npos, 0, 0, m3);
}

// Gemma's post-sublayer norms across the two slots: layers with, with, without and with them again (q/k norms and
// GeGLU as Gemma 3), so slot 0 runs a plain layer after a post-normed one (upload_layer must clear the slot's post
// norms) and slot 1 a post-normed one after a plain one; the norms must matter; bad uploads are refused with a message
// and leave the slot without post norms; a NaN in one token stays in the rows the reference puts it in (the fused
// residual + norm kernel is row-local); the mlp block takes post_mlp_norm alone.
void check_post_norm() {
  Rng r(515);
  const Style gm{"gemma3", true, true, true, true, false, false, false, false, false, Activation::GELUTanh, true, true};
  const Style pl{"qwen3", true, true, true, true, false, false, false, false, false, Activation::GELUTanh, true};
  // Dh 16 as the gemma3 fixtures (scalar attention), scale 1/sqrt(query_pre_attn_scalar) with 24 != Dh.
  ref::LayerSpecRef s{2, 70, 128, 4, 2, 16, 352, 16, true, true, true, true, false, Activation::GELUTanh, 1e-6f,
                      1.f / std::sqrt(24.f)};
  std::vector<HostLayer> layers;
  layers.push_back(make_layer(s, gm, DType::BF16, r));
  layers.push_back(make_layer(s, gm, DType::F32, r));
  layers.push_back(make_layer(s, pl, DType::BF16, r));
  layers.push_back(make_layer(s, gm, DType::BF16, r));
  Inputs in = make_inputs(s, 10000.0);
  std::vector<float> h = randn(s.B * s.T * s.D, r), ref_emu = h, ref_f32 = h, ref_plain = h, ref_cpu = h;
  for (auto& L : layers) {
    ref::decoder_layer(ref_emu, s, L.w, in.cos.data(), in.sin.data(), in.mask.data(), true);
    ref::decoder_layer(ref_f32, s, L.w, in.cos.data(), in.sin.data(), in.mask.data(), false);
    ref::contract_layer(ref_cpu, s, L.w, in.pos.data(), in.mask.data(), in.inv.data());
    ref::LayerWeightsRef plain = L.w;
    plain.pan.clear();
    plain.pmn.clear();
    ref::decoder_layer(ref_plain, s, plain, in.cos.data(), in.sin.data(), in.mask.data(), true);
  }
  sc::Context ctx(gpu_spec(s), true, size_t(256) << 10);
  ctx.set_inputs(in.pos.data(), in.mask.data(), in.inv.data(), 1.f);
  auto upload = [&](int slot, const HostLayer& L) {
    ctx.upload_layer(slot, L.roles);
    ctx.upload_qk_norm(slot, L.qn, L.kn);
    if (L.pan.data) ctx.upload_post_norm(slot, L.pan, L.pmn);
  };
  const std::vector<float> out = run_streamed(ctx, h, 4, [&](int slot, size_t k) { upload(slot, layers[k]); });
  check_chain("4 streamed layers post/post/plain/post (slot 0 post then plain, slot 1 post then post)", out, ref_emu,
              ref_f32, ref_plain, "chain without post norms", in.mask, s.D);
  check("layer", "4 streamed post-norm layers vs CPU decoder_layer_forward", compare_real(out, ref_cpu, in.mask, s.D),
        kTolLayerF32);
  {  // NaN in token 5 of row 0 (the q/k-norm check's caveat: tokens 0..4 of its tile may turn NaN through P·V)
    std::vector<float> hn = h, rn, on(h.size());
    hn[5 * s.D + 3] = NAN;
    rn = hn;
    ref::decoder_layer(rn, s, layers[0].w, in.cos.data(), in.sin.data(), in.mask.data(), true);
    ctx.upload_hidden(hn.data());
    upload(0, layers[0]);
    ctx.run_layer(0);
    ctx.download_hidden(on.data());
    size_t mism = 0, nans = 0;
    for (size_t m = 0; m < s.B * s.T; m++)
      if (in.mask[m] && !(m < 5))
        for (size_t d = 0; d < s.D; d++) {
          const bool a = std::isnan(on[m * s.D + d]), b = std::isnan(rn[m * s.D + d]);
          mism += a != b;
          nans += b;
        }
    record("layer", fmt("post-norm layer, NaN in one token: NaN where the reference has it (%zu NaN)", nans),
           mism == 0 && nans > 0, double(mism), 0);
  }
  // Refusals: one norm only, a wrong size; afterwards the slot runs without post norms.
  std::string m1, m2, m3, m4;
  upload(0, layers[0]);
  try { ctx.upload_post_norm(0, layers[0].pan, sc::HostTensor{}); } catch (const std::exception& e) { m1 = e.what(); }
  record("layer", "upload_post_norm without post_mlp_norm is refused with a message",
         m1.find("post_mlp_norm") != std::string::npos, 0, 0, m1);
  sc::HostTensor short_m = layers[1].pmn;
  short_m.numel -= 1;
  ctx.upload_layer(1, layers[1].roles);
  ctx.upload_qk_norm(1, layers[1].qn, layers[1].kn);
  try { ctx.upload_post_norm(1, layers[1].pan, short_m); } catch (const std::exception& e) { m2 = e.what(); }
  record("layer", "upload_post_norm with a wrong post_mlp_norm size is refused with a message",
         m2.find("post_mlp_norm.weight") != std::string::npos, 0, 0, m2);
  for (int slot = 0; slot < 2; slot++) {
    std::vector<float> want = h, got(h.size());
    ref::LayerWeightsRef plain = layers[size_t(slot)].w;
    plain.pan.clear();
    plain.pmn.clear();
    ref::decoder_layer(want, s, plain, in.cos.data(), in.sin.data(), in.mask.data(), true);
    ctx.upload_hidden(h.data());
    ctx.run_layer(slot);
    ctx.download_hidden(got.data());
    check("layer", fmt("after a refused upload_post_norm slot %d runs without post norms", slot),
          compare_real(got, want, in.mask, s.D), kTolLayerEmu);
  }
  ref::LayerSpecRef sp = s;
  sp.pre_norm = false;
  sc::Context pctx(gpu_spec(sp), true, size_t(256) << 10);
  try { pctx.upload_post_norm(0, layers[0].pan, layers[0].pmn); } catch (const std::exception& e) { m3 = e.what(); }
  record("layer", "upload_post_norm on a post-norm (OPT-style) layer is refused", m3.find("post-norm") != std::string::npos,
         0, 0, m3);
  // The mlp block: post_mlp_norm alone against the reference and the CPU's mlp_block_forward; post_attn_norm refused.
  ref::LayerSpecRef sm = s;
  sm.mlp_only = true;
  const Style mb{"mlp", true, true, true, false, true, false, false, false, false, Activation::GELUTanh, false, true};
  HostLayer mbl = make_layer(sm, mb, DType::BF16, r);
  sc::Context mctx(gpu_spec(sm), true, size_t(256) << 10);
  mctx.set_inputs(in.pos.data(), in.mask.data(), nullptr, 1.f);
  try { mctx.upload_post_norm(0, layers[0].pan, mbl.pmn); } catch (const std::exception& e) { m4 = e.what(); }
  record("layer", "upload_post_norm with post_attn_norm on an mlp block is refused", m4.find("mlp block") != std::string::npos,
         0, 0, m4);
  std::vector<float> want = h, want_cpu = h, got(h.size());
  ref::decoder_layer(want, sm, mbl.w, nullptr, nullptr, in.mask.data(), true);
  ref::contract_layer(want_cpu, sm, mbl.w, in.pos.data(), in.mask.data(), nullptr);
  mctx.upload_hidden(h.data());
  mctx.upload_layer(1, mbl.roles);
  mctx.upload_post_norm(1, sc::HostTensor{}, mbl.pmn);
  mctx.run_layer(1);
  mctx.download_hidden(got.data());
  check("layer", "mlp block with post_mlp_norm vs bf16-emulating ref", compare_real(got, want, in.mask, s.D), kTolLayerEmu);
  check("layer", "mlp block with post_mlp_norm vs CPU mlp_block_forward", compare_real(got, want_cpu, in.mask, s.D),
        kTolLayerF32);
}

// The C API as the addon will use it: streamline_cuda.so opened with dlopen (its own static runtime), host pointers
// only. Same layer as the in-process Context; errors come back as -1 plus a message.
void check_capi() {
  std::string so;
  void* h = open_backend_library(&so);
  if (!h) {
    record("capi", "dlopen " + so, false, 0, 0, dlerror());
    return;
  }
#define SYM(name) auto name = reinterpret_cast<decltype(&::name)>(dlsym(h, #name))
  SYM(streamline_cuda_create); SYM(streamline_cuda_destroy); SYM(streamline_cuda_set_inputs);
  SYM(streamline_cuda_upload_hidden); SYM(streamline_cuda_download_hidden); SYM(streamline_cuda_upload_layer);
  SYM(streamline_cuda_run_layer); SYM(streamline_cuda_save_state); SYM(streamline_cuda_cosine_states);
  SYM(streamline_cuda_last_error); SYM(streamline_cuda_memory); SYM(streamline_cuda_cosine_host);
  SYM(streamline_cuda_set_window); SYM(streamline_cuda_upload_layer_qk_norm);
  SYM(streamline_cuda_upload_layer_post_norm);
#undef SYM
  if (!streamline_cuda_create || !streamline_cuda_cosine_host || !streamline_cuda_memory || !streamline_cuda_last_error) {
    record("capi", "symbols", false, 0, 0, "missing exports in " + so);
    return;
  }
  Rng r(404);
  const Style st{"llama", true, true, true, true, false, false, false, false, false, Activation::SiLU};
  ref::LayerSpecRef s{2, 50, 256, 4, 2, 64, 512, 64, true, true, true, true, false, Activation::SiLU, 1e-5f, 0.125f};
  HostLayer L = make_layer(s, st, DType::BF16, r);
  Inputs in = make_inputs(s, 10000.0);
  std::vector<float> h0 = randn(s.B * s.T * s.D, r), ref_h = h0;
  ref::decoder_layer(ref_h, s, L.w, in.cos.data(), in.sin.data(), in.mask.data(), true);
  streamline_cuda_layer_spec spec{};
  spec.batch = int64_t(s.B); spec.seq_len = int64_t(s.T); spec.hidden = int64_t(s.D); spec.heads = int64_t(s.H);
  spec.kv_heads = int64_t(s.Hk); spec.head_dim = int64_t(s.Dh); spec.intermediate = int64_t(s.F); spec.rot_dim = 0;
  spec.norm = 0; spec.activation = 0; spec.gated = 1; spec.pre_norm = 1; spec.use_rope = 1; spec.mlp_only = 0;
  spec.use_cublaslt = streamline::cuda::lt::api() ? 1 : 0; spec.norm_eps = 1e-5f; spec.attn_scale = 0.f;
  streamline_cuda_weight roles[STREAMLINE_CUDA_ROLES] = {};
  for (int i = 0; i < STREAMLINE_CUDA_ROLES; i++)
    roles[i] = streamline_cuda_weight{L.roles[i].data, int32_t(L.roles[i].dtype), int64_t(L.roles[i].numel)};
  streamline_cuda_ctx* ctx = nullptr;
  bool ok = streamline_cuda_create(&spec, &ctx) == 0 &&
            streamline_cuda_set_inputs(ctx, in.pos.data(), in.mask.data(), in.inv.data(), 1.f) == 0 &&
            streamline_cuda_upload_hidden(ctx, h0.data()) == 0 && streamline_cuda_save_state(ctx, 0) == 0 &&
            streamline_cuda_upload_layer(ctx, 1, roles) == 0 && streamline_cuda_run_layer(ctx, 1) == 0 &&
            streamline_cuda_save_state(ctx, 1) == 0;
  std::vector<float> out(h0.size());
  ok = ok && streamline_cuda_download_hidden(ctx, out.data()) == 0;
  record("capi", "create / set_inputs / upload / run / download through dlopen", ok, 0, 0, ok ? "" : streamline_cuda_last_error());
  if (ok) check("capi", "layer through the C API vs bf16-emulating ref", compare_real(out, ref_h, in.mask, s.D), kTolLayerEmu);
  streamline_cuda_cosine c{0, 0, 0};
  const bool cok = ctx && streamline_cuda_cosine_states(ctx, 0, 1, &c) == 0;
  ref::Cos rc;
  ref::cosine_accumulate(&rc, h0.data(), out.data(), in.mask.data(), s.B * s.T, s.D);
  const double cerr = cok ? std::fabs(c.sum / double(c.count) - rc.sum / double(rc.count)) : INFINITY;
  record("capi", "cosine_states(h0, h1) vs CPU cosine of the downloaded states", cok && c.count == rc.count && cerr < 1e-9, cerr, 1e-9);
  streamline_cuda_cosine ch{0, 0, 0};
  const bool hok = streamline_cuda_cosine_host(h0.data(), out.data(), in.mask.data(), int64_t(s.B * s.T), int64_t(s.D), &ch) == 0;
  record("capi", "cosine_host equals cosine_states", hok && ch.count == c.count && std::fabs(ch.sum - c.sum) < 1e-9, std::fabs(ch.sum - c.sum), 1e-9);
  const int bad = ctx ? streamline_cuda_run_layer(ctx, 5) : 0;
  const std::string msg = streamline_cuda_last_error();
  record("capi", "bad slot returns -1 with a message", bad == -1 && msg.find("slot") != std::string::npos, 0, 0, msg);
  // The sliding window (optional symbol): layer 1 again on h0 with a window of 9 keys, against the reference.
  if (!streamline_cuda_set_window) {
    record("capi", "streamline_cuda_set_window exported", false, 0, 0, "missing in " + so);
  } else if (ctx) {
    ref::LayerSpecRef sw = s;
    sw.window = 9;
    std::vector<float> ref_w = h0, out_w(h0.size());
    ref::decoder_layer(ref_w, sw, L.w, in.cos.data(), in.sin.data(), in.mask.data(), true);
    const bool wok = streamline_cuda_set_window(ctx, 9) == 0 && streamline_cuda_upload_hidden(ctx, h0.data()) == 0 &&
                     streamline_cuda_run_layer(ctx, 1) == 0 && streamline_cuda_download_hidden(ctx, out_w.data()) == 0;
    record("capi", "set_window(9) / run / download through dlopen", wok, 0, 0, wok ? "" : streamline_cuda_last_error());
    if (wok) check("capi", "windowed layer through the C API vs bf16-emulating ref", compare_real(out_w, ref_w, in.mask, s.D), kTolLayerEmu);
    const int neg = streamline_cuda_set_window(ctx, -1);
    const std::string nmsg = streamline_cuda_last_error();
    record("capi", "set_window(-1) returns -1 with a message", neg == -1 && nmsg.find("window") != std::string::npos, 0, 0,
           nmsg);
    streamline_cuda_set_window(ctx, 0);
  }
  // Qwen3's q/k norm (optional symbol): a qwen3 layer into slot 0, normed, against the reference; then upload_layer
  // of the same weights clears the norms (the plain reference); one norm only is refused.
  if (!streamline_cuda_upload_layer_qk_norm) {
    record("capi", "streamline_cuda_upload_layer_qk_norm exported", false, 0, 0, "missing in " + so);
  } else if (ctx) {
    const Style qs{"qwen3", true, true, true, true, false, false, false, false, false, Activation::SiLU, true};
    HostLayer Q = make_layer(s, qs, DType::BF16, r);
    streamline_cuda_weight qroles[STREAMLINE_CUDA_ROLES] = {};
    for (int i = 0; i < STREAMLINE_CUDA_ROLES; i++)
      qroles[i] = streamline_cuda_weight{Q.roles[i].data, int32_t(Q.roles[i].dtype), int64_t(Q.roles[i].numel)};
    const streamline_cuda_weight qn{Q.qn.data, int32_t(Q.qn.dtype), int64_t(Q.qn.numel)},
        kn{Q.kn.data, int32_t(Q.kn.dtype), int64_t(Q.kn.numel)};
    std::vector<float> ref_q = h0, ref_p = h0, out_q(h0.size()), out_p(h0.size());
    ref::decoder_layer(ref_q, s, Q.w, in.cos.data(), in.sin.data(), in.mask.data(), true);
    ref::LayerWeightsRef plain = Q.w;
    plain.qn.clear();
    plain.kn.clear();
    ref::decoder_layer(ref_p, s, plain, in.cos.data(), in.sin.data(), in.mask.data(), true);
    const bool qok = streamline_cuda_upload_layer(ctx, 0, qroles) == 0 &&
                     streamline_cuda_upload_layer_qk_norm(ctx, 0, &qn, &kn) == 0 &&
                     streamline_cuda_upload_hidden(ctx, h0.data()) == 0 && streamline_cuda_run_layer(ctx, 0) == 0 &&
                     streamline_cuda_download_hidden(ctx, out_q.data()) == 0;
    record("capi", "upload_layer_qk_norm / run / download through dlopen", qok, 0, 0, qok ? "" : streamline_cuda_last_error());
    if (qok) check("capi", "q/k-norm layer through the C API vs bf16-emulating ref", compare_real(out_q, ref_q, in.mask, s.D), kTolLayerEmu);
    const bool pok = streamline_cuda_upload_layer(ctx, 0, qroles) == 0 && streamline_cuda_upload_hidden(ctx, h0.data()) == 0 &&
                     streamline_cuda_run_layer(ctx, 0) == 0 && streamline_cuda_download_hidden(ctx, out_p.data()) == 0;
    if (pok) check("capi", "upload_layer clears the slot's q/k norms", compare_real(out_p, ref_p, in.mask, s.D), kTolLayerEmu);
    else record("capi", "upload_layer clears the slot's q/k norms", false, 0, 0, streamline_cuda_last_error());
    const int one = streamline_cuda_upload_layer_qk_norm(ctx, 0, &qn, nullptr);
    const std::string omsg = streamline_cuda_last_error();
    record("capi", "upload_layer_qk_norm with one norm returns -1 with a message",
           one == -1 && omsg.find("k_norm") != std::string::npos, 0, 0, omsg);
  }
  // Gemma's post norms (optional symbol): a post-norm layer into slot 1 against the reference; then upload_layer of
  // the same weights clears them (the plain reference); one norm only is refused.
  if (!streamline_cuda_upload_layer_post_norm) {
    record("capi", "streamline_cuda_upload_layer_post_norm exported", false, 0, 0, "missing in " + so);
  } else if (ctx) {
    const Style ps{"post norms", true, true, true, true, false, false, false, false, false, Activation::SiLU, false, true};
    HostLayer P = make_layer(s, ps, DType::BF16, r);
    streamline_cuda_weight proles[STREAMLINE_CUDA_ROLES] = {};
    for (int i = 0; i < STREAMLINE_CUDA_ROLES; i++)
      proles[i] = streamline_cuda_weight{P.roles[i].data, int32_t(P.roles[i].dtype), int64_t(P.roles[i].numel)};
    const streamline_cuda_weight pa{P.pan.data, int32_t(P.pan.dtype), int64_t(P.pan.numel)},
        pm{P.pmn.data, int32_t(P.pmn.dtype), int64_t(P.pmn.numel)};
    std::vector<float> ref_q = h0, ref_p = h0, out_q(h0.size()), out_p(h0.size());
    ref::decoder_layer(ref_q, s, P.w, in.cos.data(), in.sin.data(), in.mask.data(), true);
    ref::LayerWeightsRef plain = P.w;
    plain.pan.clear();
    plain.pmn.clear();
    ref::decoder_layer(ref_p, s, plain, in.cos.data(), in.sin.data(), in.mask.data(), true);
    const bool qok = streamline_cuda_upload_layer(ctx, 1, proles) == 0 &&
                     streamline_cuda_upload_layer_post_norm(ctx, 1, &pa, &pm) == 0 &&
                     streamline_cuda_upload_hidden(ctx, h0.data()) == 0 && streamline_cuda_run_layer(ctx, 1) == 0 &&
                     streamline_cuda_download_hidden(ctx, out_q.data()) == 0;
    record("capi", "upload_layer_post_norm / run / download through dlopen", qok, 0, 0, qok ? "" : streamline_cuda_last_error());
    if (qok) check("capi", "post-norm layer through the C API vs bf16-emulating ref", compare_real(out_q, ref_q, in.mask, s.D), kTolLayerEmu);
    const bool pok = streamline_cuda_upload_layer(ctx, 1, proles) == 0 && streamline_cuda_upload_hidden(ctx, h0.data()) == 0 &&
                     streamline_cuda_run_layer(ctx, 1) == 0 && streamline_cuda_download_hidden(ctx, out_p.data()) == 0;
    if (pok) check("capi", "upload_layer clears the slot's post norms", compare_real(out_p, ref_p, in.mask, s.D), kTolLayerEmu);
    else record("capi", "upload_layer clears the slot's post norms", false, 0, 0, streamline_cuda_last_error());
    const int one = streamline_cuda_upload_layer_post_norm(ctx, 1, &pa, nullptr);
    const std::string omsg = streamline_cuda_last_error();
    record("capi", "upload_layer_post_norm with one norm returns -1 with a message",
           one == -1 && omsg.find("post_mlp_norm") != std::string::npos, 0, 0, omsg);
  }
  uint64_t cur = 0, peak = 0;
  streamline_cuda_memory(&cur, &peak, 0);
  record("capi", fmt("memory report (current %.1f MiB, peak %.1f MiB)", double(cur) / (1 << 20), double(peak) / (1 << 20)),
         peak >= cur && cur > 0, 0, 0);
  if (ctx) streamline_cuda_destroy(ctx);
  dlclose(h);
}

}  // namespace

void run_layer_checks(bool quick) {
  std::printf("layer checks%s\n", quick ? " (quick)" : "");
  check_styles(quick);
  for (auto fn : {check_streaming, check_windows, check_qk_norm, check_post_norm, check_capi}) {
    try {
      fn();
    } catch (const std::exception& e) {
      record("layer", "uncaught exception", false, NAN, 0, e.what());
    }
  }
  std::fflush(stdout);
}

}  // namespace harness
