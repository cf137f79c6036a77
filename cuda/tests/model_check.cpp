// Model-level checks: a Llama checkpoint directory (--model, e.g. kjv-llama) through embedding + every layer on the
// GPU and on the CPU with the (L+1) x (L+1) boundary cosine matrix compared, and the golden fixtures of
// test/fixtures/models/ (f64 PyTorch boundary states) layer by layer and as a scoring matrix. Both also run on the CPU
// alone (--cpu-selftest) with a layer that rounds to bf16 where the GPU does.
#include <dirent.h>

#include <algorithm>
#include <memory>

#include "cpu_ref.h"
#include "cublaslt_loader.h"
#include "decoder_layer.cuh"
#include "harness.h"
#include "layer_util.h"
#include "safetensors.h"
#include "streamline/model.h"

namespace harness {

namespace sc = streamline::cuda;
using streamline::Activation;
using streamline::DType;

namespace {

std::vector<float> tensor_f32(const StTensor& t) {
  DType dt;
  if (!t.has_dtype(&dt)) throw std::runtime_error("unsupported dtype " + t.dtype);
  std::vector<float> f(t.numel());
  for (size_t i = 0; i < f.size(); i++) f[i] = ref::wget(t.data, dt, i);
  return f;
}

// gpu = false: the CPU half only (used by --cpu-selftest to check config parsing, weight mapping and the reference
// forward on a real checkpoint without a GPU).
void check_llama_dir(const std::string& dir, bool gpu = true) {
  Json cfg = parse_json(read_text_file(dir + "/config.json"));
  const Json* mt = cfg.get("model_type");
  const std::string model_type = mt && mt->kind == Json::String ? mt->str : "?";
  if (model_type != "llama" && model_type != "mistral" && model_type != "qwen2") {
    record("model", dir + ": model_type " + model_type, true, 0, 0, "skipped: only llama/mistral/qwen2 are wired here");
    return;
  }
  SafeTensors st(dir + "/model.safetensors");
  const size_t D = size_t(cfg.number_or("hidden_size", 0)), L = size_t(cfg.number_or("num_hidden_layers", 0));
  const size_t H = size_t(cfg.number_or("num_attention_heads", 0));
  const size_t Hk = size_t(cfg.number_or("num_key_value_heads", double(H)));
  const size_t Dh = size_t(cfg.number_or("head_dim", double(D / H))), F = size_t(cfg.number_or("intermediate_size", 0));
  const size_t V = size_t(cfg.number_or("vocab_size", 0));
  const double theta = cfg.number_or("rope_theta", 10000.0);
  const float eps = float(cfg.number_or("rms_norm_eps", 1e-6));
  const size_t B = 2, T = std::min<size_t>(128, size_t(cfg.number_or("max_position_embeddings", 128)));
  ref::LayerSpecRef s{B, T, D, H, Hk, Dh, F, Dh, true, true, true, true, false, Activation::SiLU, eps, 1.f / std::sqrt(float(Dh))};
  Inputs in = make_inputs(s, theta);
  Rng r(2026);
  std::vector<int32_t> ids(B * T);
  for (auto& id : ids) id = int32_t(r.next() % V);
  const StTensor* emb = st.find("model.embed_tokens.weight");
  if (!emb) throw std::runtime_error(dir + ": no model.embed_tokens.weight");
  DType edt;
  emb->has_dtype(&edt);
  std::vector<float> h(B * T * D);
  ref::embedding_forward(h.data(), ids.data(), emb->data, edt, B * T, V, D);

  auto get = [&](size_t k, const char* suffix) -> const StTensor* {
    return st.find("model.layers." + std::to_string(k) + "." + suffix);
  };
  const char* names[sc::kRoleCount] = {"input_layernorm.weight", nullptr, "self_attn.q_proj.weight", "self_attn.q_proj.bias",
                                       "self_attn.k_proj.weight", "self_attn.k_proj.bias", "self_attn.v_proj.weight",
                                       "self_attn.v_proj.bias", "self_attn.o_proj.weight", "self_attn.o_proj.bias",
                                       "post_attention_layernorm.weight", nullptr, "mlp.gate_proj.weight",
                                       "mlp.gate_proj.bias", "mlp.up_proj.weight", "mlp.up_proj.bias",
                                       "mlp.down_proj.weight", "mlp.down_proj.bias"};
  std::unique_ptr<sc::Context> ctxp;
  if (gpu) {
    ctxp.reset(new sc::Context(gpu_spec(s), true));
    ctxp->set_inputs(in.pos.data(), in.mask.data(), in.inv.data(), 1.f);
    ctxp->upload_hidden(h.data());
    ctxp->save_state(0);
  }
  std::vector<std::vector<float>> cpu_states{h}, emu_states{h};
  std::vector<float> h_emu = h;
  for (size_t k = 0; k < L; k++) {
    sc::HostTensor roles[sc::kRoleCount];
    ref::LayerWeightsRef w;
    std::vector<float>* dst[sc::kRoleCount] = {&w.n1w, &w.n1b, &w.qw, &w.qb, &w.kw, &w.kb, &w.vw, &w.vb, &w.ow, &w.ob,
                                               &w.n2w, &w.n2b, &w.gw, &w.gb, &w.uw, &w.ub, &w.dw, &w.db};
    for (int role = 0; role < sc::kRoleCount; role++) {
      if (!names[role]) continue;
      const StTensor* t = get(k, names[role]);
      if (!t) continue;
      DType dt;
      t->has_dtype(&dt);
      roles[role] = sc::HostTensor{t->data, dt, t->numel()};  // straight from the memory-mapped file
      *dst[role] = tensor_f32(*t);
    }
    if (gpu) {
      ctxp->upload_layer(int(k % 2), roles);
      ctxp->run_layer(int(k % 2));
      ctxp->save_state(int(k + 1));
    }
    ref::decoder_layer(h, s, w, in.cos.data(), in.sin.data(), in.mask.data(), false);
    if (!gpu) {  // the same chain in GPU precision (bf16 GEMM inputs and weights), to predict the GPU's agreement
      for (auto* m : {&w.qw, &w.kw, &w.vw, &w.ow, &w.gw, &w.uw, &w.dw}) *m = round_bf16(*m);
      ref::decoder_layer(h_emu, s, w, in.cos.data(), in.sin.data(), in.mask.data(), true);
      emu_states.push_back(h_emu);
    }
    cpu_states.push_back(h);
  }
  if (!gpu) {
    // Plausibility of the CPU side: finite states; adjacent boundaries more similar than distant ones on average.
    size_t bad = 0;
    for (const auto& st_ : cpu_states) for (float v : st_) bad += !std::isfinite(v);
    double adj = 0, far = 0;
    for (size_t i = 0; i < L; i++) {
      ref::Cos c;
      ref::cosine_accumulate(&c, cpu_states[i].data(), cpu_states[i + 1].data(), in.mask.data(), B * T, D);
      adj += c.sum / double(c.count) / double(L);
    }
    ref::Cos c;
    ref::cosine_accumulate(&c, cpu_states[0].data(), cpu_states[L].data(), in.mask.data(), B * T, D);
    far = c.sum / double(c.count);
    record("model", fmt("%s: CPU forward of %zu layers finite, mean adjacent cos %.3f > cos(h[0], h[L]) %.3f", dir.c_str(), L, adj, far),
           bad == 0 && adj > far && adj <= 1.0, double(bad), 0);
    double we = 0;
    for (size_t i = 0; i <= L; i++)
      for (size_t j = i + 1; j <= L; j++) {
        ref::Cos a, e;
        ref::cosine_accumulate(&a, cpu_states[i].data(), cpu_states[j].data(), in.mask.data(), B * T, D);
        ref::cosine_accumulate(&e, emu_states[i].data(), emu_states[j].data(), in.mask.data(), B * T, D);
        we = std::max(we, std::fabs(a.sum / double(a.count) - e.sum / double(e.count)));
      }
    record("model", fmt("%s: scoring matrix in GPU precision (CPU bf16 emulation) vs f32, max |diff|", dir.c_str()),
           we <= kTolScoring, we, kTolScoring);
    return;
  }
  sc::Context& ctx = *ctxp;
  std::vector<float> gpu_last(h.size());
  ctx.download_hidden(gpu_last.data());
  check("model", dir + ": h[L] GPU vs CPU f32 (real tokens)", compare_real(gpu_last, h, in.mask, D), 5e-2);
  double worst = 0;
  for (size_t i = 0; i <= L; i++)
    for (size_t j = i + 1; j <= L; j++) {
      sc::CosineAccum g = ctx.cosine(int(i), int(j));
      ref::Cos c;
      ref::cosine_accumulate(&c, cpu_states[i].data(), cpu_states[j].data(), in.mask.data(), B * T, D);
      const double gs = g.count ? g.sum / double(g.count) : 0, cs = c.count ? c.sum / double(c.count) : 0;
      worst = std::max(worst, std::isnan(gs) ? INFINITY : std::fabs(gs - cs));
    }
  record("model", fmt("%s: (L+1)x(L+1) scoring matrix, max |GPU - CPU| (L=%zu)", dir.c_str(), L), worst <= kTolScoring, worst,
         kTolScoring);
  // Evaluation head: the GPU on the CPU's h[L] against streamline::head_forward (final norm + LM head + log-probs).
  const StTensor* nw = st.find("model.norm.weight");
  const StTensor* lm = st.find("lm_head.weight");
  if (!lm) lm = emb;
  if (nw && lm) {
    DType ndt, ldt;
    nw->has_dtype(&ndt);
    lm->has_dtype(&ldt);
    std::vector<int32_t> tg(B * T, -1);
    for (size_t b = 0; b < B; b++)
      for (size_t t = 0; t + 1 < T; t++)
        if (in.mask[b * T + t + 1]) tg[b * T + t] = ids[b * T + t + 1];
    streamline::HeadSpec hs;
    hs.hidden = D; hs.vocab = V; hs.norm = streamline::NormKind::Rms; hs.norm_eps = eps;
    streamline::HeadWeights hw;
    hw.norm_w = streamline::WeightView{nw->data, ndt, nw->shape};
    hw.lm_head = streamline::WeightView{lm->data, ldt, lm->shape};
    std::vector<float> want(B * T), got(B * T);
    streamline::head_forward(h.data(), B * T, hs, hw, tg.data(), nullptr, want.data());
    ctx.upload_hidden(h.data());
    ctx.upload_head(sc::HostTensor{nw->data, ndt, nw->numel()}, sc::HostTensor{}, sc::HostTensor{}, 0,
                    sc::HostTensor{lm->data, ldt, lm->numel()}, V);
    ctx.head_logprobs(tg.data(), got.data());
    check("model", dir + ": GPU head log-probs vs CPU head_forward", compare(got.data(), want.data(), B * T), kTolBf16);
  }
}

// Inverse RoPE frequencies as packages/core/src/engine/rope.ts computes them (f64, rounded once): default,
// linear, dynamic (NTK, from the padded length as HF does), llama3, longrope and yarn.
std::vector<float> rope_inv_freq(const Json& cfg, size_t dim, size_t seq_len, float* attention_scaling) {
  const size_t half = dim / 2;
  double base = cfg.number_or("rope_theta", 10000.0);
  const double max_pos = cfg.number_or("max_position_embeddings", 2048);
  std::string type = "default";
  double factor = 1, low = 1, high = 4, original = max_pos;
  *attention_scaling = 1.f;
  const Json* rs = cfg.get("rope_scaling");
  if (rs && rs->kind == Json::Object) {
    const Json* t = rs->get("rope_type");
    if (!t) t = rs->get("type");
    if (t && t->kind == Json::String) type = t->str;
    factor = rs->number_or("factor", 1);
    low = rs->number_or("low_freq_factor", 1);
    high = rs->number_or("high_freq_factor", 4);
    original = rs->number_or("original_max_position_embeddings", type == "llama3" ? 8192 : max_pos);
  }
  const Json* mt = cfg.get("model_type");
  const bool phi3 = mt && mt->kind == Json::String && mt->str == "phi3";
  if (type == "longrope" || (phi3 && (type == "su" || type == "yarn"))) {
    // Phi-3's LongRoPE: divisors per frequency, short while the sequence fits the original context (4096 by default
    // in configuration_phi3), long beyond it; cos/sin scaled by sqrt(1 + ln f / ln original), f the context extension.
    const double top = cfg.number_or("original_max_position_embeddings", phi3 ? 4096 : 0);
    if (top > 0) original = top, factor = max_pos / top;
    else original = max_pos;
    const Json* given = rs->get("attention_factor");
    *attention_scaling = given && given->kind == Json::Number ? float(given->num)
                         : factor <= 1 ? 1.f : float(std::sqrt(1 + std::log(factor) / std::log(original)));
    const Json* ext = rs->get(double(seq_len) > original ? "long_factor" : "short_factor");
    if (!ext || ext->kind != Json::Array || ext->arr.size() != half) throw std::runtime_error("longrope: short_factor/long_factor must list rotary_dim/2 numbers");
    std::vector<float> out(half);
    for (size_t i = 0; i < half; i++) out[i] = float(1.0 / (ext->arr[i].num * std::pow(base, double(2 * i) / double(dim))));
    return out;
  }
  if (type == "yarn") {
    // transformers v5: a top-level original_max_position_embeddings wins; the written factor is kept (derived as
    // max / original only when null); attention factor from mscale / mscale_all_dim or 0.1 ln f + 1; each
    // frequency blended between itself and itself / factor by a ramp between the correction dims of beta_fast and
    // beta_slow rotations (floor / ceil unless truncate is false), clamped to [0, dim - 1].
    original = cfg.number_or("original_max_position_embeddings", original);
    const Json* f = rs->get("factor");
    if (f && f->kind == Json::Null) factor = max_pos / original;
    auto mscale = [&](double m) { return factor <= 1 ? 1.0 : 0.1 * m * std::log(factor) + 1; };
    const double m = rs->number_or("mscale", 0), m_all = rs->number_or("mscale_all_dim", 0);
    const Json* given = rs->get("attention_factor");
    *attention_scaling = float(given && given->kind == Json::Number ? given->num : m && m_all ? mscale(m) / mscale(m_all) : mscale(1));
    auto correction_dim = [&](double rotations) {
      return double(dim) * std::log(original / (rotations * 2 * M_PI)) / (2 * std::log(base));
    };
    const double fast = rs->number_or("beta_fast", 0), slow = rs->number_or("beta_slow", 0);  // 0: unset
    double lo = correction_dim(fast ? fast : 32), hi = correction_dim(slow ? slow : 1);
    const Json* tr = rs->get("truncate");
    if (!(tr && tr->kind == Json::Bool && !tr->b)) lo = std::floor(lo), hi = std::ceil(hi);
    lo = std::max(lo, 0.0);
    hi = std::min(hi, double(dim - 1));
    if (lo == hi) hi += 0.001;
    std::vector<float> out(half);
    for (size_t i = 0; i < half; i++) {
      const double keep = 1.0 / std::pow(base, double(2 * i) / double(dim));
      const double ramp = std::min(1.0, std::max(0.0, (double(i) - lo) / (hi - lo)));
      out[i] = float(keep / factor * ramp + keep * (1 - ramp));
    }
    return out;
  }
  if (type == "dynamic" && double(seq_len) > original)
    base = base * std::pow(factor * double(seq_len) / original - (factor - 1), double(dim) / double(dim - 2));
  std::vector<double> inv(half);
  for (size_t i = 0; i < half; i++) inv[i] = 1.0 / std::pow(base, double(2 * i) / double(dim));
  if (type == "linear")
    for (auto& v : inv) v /= factor;
  if (type == "llama3") {
    const double lw = original / low, hw = original / high;
    for (auto& f : inv) {
      const double wl = 2 * M_PI / f;
      double v = wl > lw ? f / factor : f;
      if (!(wl < hw) && !(wl > lw)) {
        const double smooth = (original / wl - low) / (high - low);
        v = (1 - smooth) * v / factor + smooth * v;
      }
      f = v;
    }
  }
  std::vector<float> out(half);
  for (size_t i = 0; i < half; i++) out[i] = float(inv[i]);
  return out;
}

// The evaluation head on the GPU from golden h[L]: next-token log-probabilities against log_softmax of the golden
// logits (final norm or none, OPT project_out, tied embeddings).
void check_fixture_head(const std::string& name, const Json& cfg, const SafeTensors& model, const SafeTensors& golden,
                        sc::Context& ctx, const std::vector<float>& hL, const std::vector<uint8_t>& mask, size_t B,
                        size_t T, size_t D, bool opt, bool norm_offset) {
  const StTensor* lg = golden.find("logits");
  const StTensor* ids = golden.find("input_ids");
  if (!lg || lg->shape.size() != 3) return;
  const size_t V = size_t(lg->shape[2]), M = B * T;
  const std::string p = opt ? "model.decoder." : "model.";
  auto host = [](const StTensor* t) {
    sc::HostTensor h;
    DType dt;
    if (t && t->has_dtype(&dt)) h = sc::HostTensor{t->data, dt, t->numel()};
    return h;
  };
  const StTensor* nw = model.find(p + (opt ? "final_layer_norm.weight" : "norm.weight"));
  const StTensor* nb = opt ? model.find(p + "final_layer_norm.bias") : nullptr;
  const StTensor* po = opt ? model.find(p + "project_out.weight") : nullptr;
  const StTensor* lm = model.find("lm_head.weight");
  if (!lm) lm = model.find(p + "embed_tokens.weight");  // tied
  const size_t P = po ? size_t(po->shape[0]) : 0;
  // Gemma stores the final norm as an offset from one: the GPU takes the effective weight (1 + w) in f32.
  std::vector<float> nw_eff;
  sc::HostTensor nwh = host(nw);
  if (norm_offset && nw) {
    nw_eff = tensor_f32(*nw);
    for (float& v : nw_eff) v += 1.f;
    nwh = sc::HostTensor{nw_eff.data(), DType::F32, nw_eff.size()};
  }
  ctx.upload_hidden(hL.data());
  ctx.upload_head(nwh, host(nb), host(po), P, host(lm), V);
  std::vector<int32_t> tg(M, -1);
  const int32_t* id = static_cast<const int32_t*>(ids->data);
  for (size_t b = 0; b < B; b++)
    for (size_t t = 0; t + 1 < T; t++)
      if (mask[b * T + t + 1]) tg[b * T + t] = id[b * T + t + 1];
  std::vector<float> lp(M), want(M, 0.f), logits = tensor_f32(*lg), row(V);
  ctx.head_logprobs(tg.data(), lp.data());
  for (size_t m = 0; m < M; m++)
    if (tg[m] >= 0) {
      ref::log_softmax_forward(row.data(), logits.data() + m * V, 1, V);
      want[m] = row[size_t(tg[m])];
    }
  check("fixture", fmt("%s: GPU head next-token log-probs vs golden logits", name.c_str()), compare(lp.data(), want.data(), M),
        kTolBf16);
  (void)cfg;
}

// Gemma 3's sliding layers (hf_reference.py gemma_layer_types): `layer_types` when given, else all but every
// `sliding_window_pattern`-th layer (default 6).
std::vector<bool> gemma_sliding(const Json& cfg, size_t L) {
  std::vector<bool> out(L, false);
  const Json* types = cfg.get("layer_types");
  const size_t n = size_t(cfg.number_or("sliding_window_pattern", 6));
  for (size_t k = 0; k < L; k++)
    out[k] = types && types->kind == Json::Array && k < types->arr.size()
                 ? types->arr[k].kind == Json::String && types->arr[k].str == "sliding_attention"
                 : (k + 1) % n != 0;
  return out;
}

// Layer k's sliding window as transformers applies it (0 = none): Mistral's sliding_window on every layer; Qwen2's
// only with use_sliding_window, on the layers layer_types marks (default: from max_window_layers on). The same rule as
// scripts/fixtures/hf_reference.py and the TypeScript config parser (packages/core/src/arch).
std::vector<size_t> layer_windows(const Json& cfg, const std::string& type, size_t L) {
  std::vector<size_t> w(L, 0);
  const Json* sw = cfg.get("sliding_window");
  if (type == "gemma3_text") {  // Gemma3TextConfig: layer_types, else every sliding_window_pattern-th layer is full
    const std::vector<bool> sl = gemma_sliding(cfg, L);
    for (size_t k = 0; k < L; k++)
      if (sl[k]) w[k] = size_t(cfg.number_or("sliding_window", 4096));
    return w;
  }
  // Phi-3 like Mistral (every layer), but only when the key is set: absent means none there; Qwen3 keeps Qwen2's fields.
  const bool qwen = type == "qwen2" || type == "qwen3";
  if (!sw || sw->kind != Json::Number || (type != "mistral" && type != "phi3" && !qwen)) return w;
  if (qwen) {
    const Json* use = cfg.get("use_sliding_window");
    if (!use || use->kind != Json::Bool || !use->b) return w;
  }
  const Json* types = cfg.get("layer_types");
  const size_t from = qwen ? size_t(cfg.number_or("max_window_layers", 28)) : 0;
  for (size_t k = 0; k < L; k++) {
    const bool sliding = types && types->kind == Json::Array && k < types->arr.size()
                             ? types->arr[k].kind == Json::String && types->arr[k].str == "sliding_attention"
                             : k >= from;
    if (sliding) w[k] = size_t(sw->num);
  }
  return w;
}

// GPU layers against the f64 PyTorch goldens of one fixture: each layer k from golden h.k compared with golden h.k+1
// on real tokens (no compounding), then the chained boundary states' (L+1) x (L+1) cosine matrix against the one
// computed from the goldens. gpu = false runs the same with the CPU layer that rounds to bf16 where the GPU does
// (weights included): it checks the weight mapping and RoPE variants without a GPU and predicts the GPU's errors.
void check_fixture_dir(const std::string& dir, bool gpu = true) {
  const std::string name = dir.substr(dir.rfind('/') + 1);
  Json cfg = parse_json(read_text_file(dir + "/config.json"));
  SafeTensors model(dir + "/model.safetensors"), golden(dir + "/golden.safetensors");
  const Json* mt = cfg.get("model_type");
  const std::string type = mt && mt->kind == Json::String ? mt->str : "?";
  const bool opt = type == "opt";
  const bool phi3 = type == "phi3";
  // Gemma 3: (1 + w) norms, four per layer (sandwich), q/k norms, GeGLU, query_pre_attn_scalar, per-layer windows and
  // RoPE bases, tied head.
  const bool gemma = type == "gemma3_text";
  if (!opt && !phi3 && !gemma && type != "llama" && type != "mistral" && type != "qwen2" && type != "qwen3") {
    record("fixture", name + ": model_type " + type, true, 0, 0, "skipped: not wired in the harness");
    return;
  }
  const StTensor* ids = golden.find("input_ids");
  const StTensor* am = golden.find("attention_mask");
  if (!ids || !am || ids->shape.size() != 2) throw std::runtime_error(name + ": golden lacks input_ids/attention_mask");
  const size_t B = size_t(ids->shape[0]), T = size_t(ids->shape[1]), M = B * T;
  const size_t D = size_t(cfg.number_or("hidden_size", 0)), H = size_t(cfg.number_or("num_attention_heads", 0));
  const size_t Hk = opt ? H : size_t(cfg.number_or("num_key_value_heads", double(H)));
  const size_t Dh = opt ? D / H
                        : size_t(cfg.number_or("head_dim", type == "qwen3" ? 128.0 : gemma ? 256.0 : double(D / H)));
  const size_t F = size_t(cfg.number_or(opt ? "ffn_dim" : "intermediate_size", 0));
  const size_t L = size_t(cfg.number_or("num_hidden_layers", 0));
  bool pre_norm = true;
  Activation act = Activation::SiLU;
  if (opt) {
    const Json* dl = cfg.get("do_layer_norm_before");
    pre_norm = !dl || dl->kind != Json::Bool || dl->b;
    const Json* af = cfg.get("activation_function");
    const std::string a = af && af->kind == Json::String ? af->str : "relu";
    act = a == "relu" ? Activation::ReLU : a == "gelu" ? Activation::GELU : a == "gelu_new" ? Activation::GELUTanh : Activation::SiLU;
  }
  if (gemma) {
    const Json* ha = cfg.get("hidden_activation");
    const std::string a = ha && ha->kind == Json::String ? ha->str : "gelu_pytorch_tanh";
    if (a != "gelu_pytorch_tanh") throw std::runtime_error(name + ": hidden_activation " + a + " is not wired here");
    act = Activation::GELUTanh;
  }
  const float eps = opt ? 1e-5f : float(cfg.number_or("rms_norm_eps", 1e-6));
  // Phi-3's partial_rotary_factor (Phi-4-mini 0.75): RoPE on the leading int(Dh × factor) dims of each head.
  const size_t rot = phi3 ? size_t(double(Dh) * cfg.number_or("partial_rotary_factor", 1.0)) : Dh;
  ref::LayerSpecRef s{B, T, D, H, Hk, Dh, F, rot, !opt, !opt, pre_norm, !opt, false, act, eps, 1.f / std::sqrt(float(Dh))};
  if (gemma) s.scale = float(std::pow(cfg.number_or("query_pre_attn_scalar", 256), -0.5));
  const std::vector<size_t> windows = layer_windows(cfg, type, L);
  std::vector<uint8_t> mask(M);
  for (size_t i = 0; i < M; i++) mask[i] = static_cast<const uint8_t*>(am->data)[i];
  std::vector<int32_t> pos(M);
  for (size_t b = 0; b < B; b++)
    for (size_t t = 0; t < T; t++) pos[b * T + t] = int32_t(t);
  float rope_scaling = 1.f;
  std::vector<float> inv = opt ? std::vector<float>() : rope_inv_freq(cfg, rot, T, &rope_scaling);
  // Gemma 3's sliding layers rotate with rope_local_base_freq and no scaling (hf_reference.py rope_configs); rope_of[k]
  // picks layer k's tables (0: the config's, 1: the local ones).
  std::vector<int> rope_of(L, 0);
  float local_scaling = 1.f;
  std::vector<float> inv_local;
  if (gemma) {
    Json local = cfg;
    local.obj["rope_theta"].kind = Json::Number;
    local.obj["rope_theta"].num = cfg.number_or("rope_local_base_freq", 10000.0);
    local.obj.erase("rope_scaling");
    inv_local = rope_inv_freq(local, rot, T, &local_scaling);
    const std::vector<bool> sl = gemma_sliding(cfg, L);
    for (size_t k = 0; k < L; k++) rope_of[k] = sl[k] ? 1 : 0;
  }

  const std::string pre = opt ? "model.decoder.layers." : "model.layers.";
  const char* llama_names[sc::kRoleCount] = {"input_layernorm.weight", nullptr, "self_attn.q_proj.weight",
      "self_attn.q_proj.bias", "self_attn.k_proj.weight", "self_attn.k_proj.bias", "self_attn.v_proj.weight",
      "self_attn.v_proj.bias", "self_attn.o_proj.weight", "self_attn.o_proj.bias", "post_attention_layernorm.weight",
      nullptr, "mlp.gate_proj.weight", "mlp.gate_proj.bias", "mlp.up_proj.weight", "mlp.up_proj.bias",
      "mlp.down_proj.weight", "mlp.down_proj.bias"};
  const char* opt_names[sc::kRoleCount] = {"self_attn_layer_norm.weight", "self_attn_layer_norm.bias",
      "self_attn.q_proj.weight", "self_attn.q_proj.bias", "self_attn.k_proj.weight", "self_attn.k_proj.bias",
      "self_attn.v_proj.weight", "self_attn.v_proj.bias", "self_attn.out_proj.weight", "self_attn.out_proj.bias",
      "final_layer_norm.weight", "final_layer_norm.bias", nullptr, nullptr, "fc1.weight", "fc1.bias", "fc2.weight",
      "fc2.bias"};
  const char* gemma_names[sc::kRoleCount] = {"input_layernorm.weight", nullptr, "self_attn.q_proj.weight",
      "self_attn.q_proj.bias", "self_attn.k_proj.weight", "self_attn.k_proj.bias", "self_attn.v_proj.weight",
      "self_attn.v_proj.bias", "self_attn.o_proj.weight", "self_attn.o_proj.bias", "pre_feedforward_layernorm.weight",
      nullptr, "mlp.gate_proj.weight", nullptr, "mlp.up_proj.weight", nullptr, "mlp.down_proj.weight", nullptr};
  const char* const* names = opt ? opt_names : gemma ? gemma_names : llama_names;
  // Gemma's norm weights are offsets from one: the effective f32 weights (1 + w), as the model directory hands them to
  // every path, live here while a layer is uploaded (upload_layer stages host memory before it returns).
  std::vector<std::vector<float>> eff;
  auto offset_norm = [&](const StTensor* t) {
    eff.push_back(tensor_f32(*t));
    for (float& v : eff.back()) v += 1.f;
    return sc::HostTensor{eff.back().data(), DType::F32, eff.back().size()};
  };
  auto golden_h = [&](size_t k) {
    const StTensor* t = golden.find("h." + std::to_string(k));
    if (!t || t->numel() != M * D) throw std::runtime_error(name + ": golden h." + std::to_string(k) + " missing or mis-shaped");
    return tensor_f32(*t);
  };
  // Phi-3 stacks q|k|v in qkv_proj and gate|up in gate_up_proj: each role is a row range of the fused tensor.
  struct Part { int role; const char* tensor; size_t row0, rows; };
  const Part phi3_parts[] = {{sc::kQW, "self_attn.qkv_proj.weight", 0, H * Dh}, {sc::kKW, "self_attn.qkv_proj.weight", H * Dh, Hk * Dh},
                             {sc::kVW, "self_attn.qkv_proj.weight", (H + Hk) * Dh, Hk * Dh},
                             {sc::kGateW, "mlp.gate_up_proj.weight", 0, F}, {sc::kUpW, "mlp.gate_up_proj.weight", F, F}};
  // Qwen3's q/k norms (absent elsewhere): [Dh] each, uploaded with Context::upload_qk_norm.
  auto qk_of = [&](size_t k, sc::HostTensor* qk) {
    const char* qk_names[2] = {"self_attn.q_norm.weight", "self_attn.k_norm.weight"};
    for (int i = 0; i < 2; i++) {
      qk[i] = sc::HostTensor{};
      const StTensor* t = opt ? nullptr : model.find(pre + std::to_string(k) + "." + qk_names[i]);
      if (!t) continue;
      DType dt;
      if (!t->has_dtype(&dt)) throw std::runtime_error(name + ": unsupported dtype " + t->dtype);
      qk[i] = gemma ? offset_norm(t) : sc::HostTensor{t->data, dt, t->numel()};
    }
    if (bool(qk[0].data) != bool(qk[1].data)) throw std::runtime_error(name + ": q_norm and k_norm: both or neither");
  };
  auto roles_of = [&](size_t k, sc::HostTensor* roles) {
    for (int role = 0; role < sc::kRoleCount; role++) {
      roles[role] = sc::HostTensor{};
      if (phi3) {
        const Part* part = nullptr;
        for (const Part& p : phi3_parts) if (p.role == role) part = &p;
        if (part) {
          const StTensor* t = model.find(pre + std::to_string(k) + "." + part->tensor);
          DType dt;
          if (!t || !t->has_dtype(&dt) || t->numel() % D != 0) throw std::runtime_error(name + ": " + part->tensor + " missing or not [rows, hidden]");
          roles[role] = sc::HostTensor{static_cast<const char*>(t->data) + part->row0 * D * streamline::dtype_size(dt), dt,
                                       part->rows * D};
          continue;
        }
      }
      if (!names[role]) continue;
      const StTensor* t = model.find(pre + std::to_string(k) + "." + names[role]);
      if (!t) continue;
      DType dt;
      if (!t->has_dtype(&dt)) throw std::runtime_error(name + ": unsupported dtype " + t->dtype);
      roles[role] = gemma && (role == sc::kAttnNormW || role == sc::kMlpNormW) ? offset_norm(t)
                                                                                : sc::HostTensor{t->data, dt, t->numel()};
    }
  };
  // Gemma's post-sublayer norms [D] (absent elsewhere), uploaded with Context::upload_post_norm.
  auto post_of = [&](size_t k, sc::HostTensor* pn) {
    const char* pn_names[2] = {"post_attention_layernorm.weight", "post_feedforward_layernorm.weight"};
    for (int i = 0; i < 2; i++) {
      pn[i] = sc::HostTensor{};
      const StTensor* t = gemma ? model.find(pre + std::to_string(k) + "." + pn_names[i]) : nullptr;
      if (t) pn[i] = offset_norm(t);
    }
    if (bool(pn[0].data) != bool(pn[1].data)) throw std::runtime_error(name + ": post norms: both or neither");
  };
  // CPU emulation: f32 copies of the weights, matrices rounded to bf16 as the GPU stores them.
  std::vector<float> cosv[2], sinv[2];
  if (!opt) {
    for (int i = 0; i < (gemma ? 2 : 1); i++) {
      cosv[i].resize(M * rot / 2);
      sinv[i].resize(M * rot / 2);
      ref::rope_tables(cosv[i].data(), sinv[i].data(), pos.data(), (i ? inv_local : inv).data(), M, rot / 2,
                       i ? local_scaling : rope_scaling);
    }
  }
  auto cpu_weights = [&](const sc::HostTensor* roles, const sc::HostTensor* qk, const sc::HostTensor* pn) {
    ref::LayerWeightsRef w;
    for (int i = 0; i < 4; i++) {  // f32 on the GPU: not rounded
      std::vector<float>& v = i == 0 ? w.qn : i == 1 ? w.kn : i == 2 ? w.pan : w.pmn;
      const sc::HostTensor& t = i < 2 ? qk[i] : pn[i - 2];
      v.resize(t.data ? t.numel : 0);
      for (size_t j = 0; j < v.size(); j++) v[j] = ref::wget(t.data, t.dtype, j);
    }
    std::vector<float>* dst[sc::kRoleCount] = {&w.n1w, &w.n1b, &w.qw, &w.qb, &w.kw, &w.kb, &w.vw, &w.vb, &w.ow, &w.ob,
                                               &w.n2w, &w.n2b, &w.gw, &w.gb, &w.uw, &w.ub, &w.dw, &w.db};
    for (int role = 0; role < sc::kRoleCount; role++) {
      if (!roles[role].data) continue;
      dst[role]->resize(roles[role].numel);
      for (size_t i = 0; i < roles[role].numel; i++) (*dst[role])[i] = ref::wget(roles[role].data, roles[role].dtype, i);
      const bool matrix = role == sc::kQW || role == sc::kKW || role == sc::kVW || role == sc::kOW || role == sc::kGateW ||
                          role == sc::kUpW || role == sc::kDownW;
      if (matrix) *dst[role] = round_bf16(*dst[role]);
    }
    return w;
  };
  std::unique_ptr<sc::Context> ctxp;
  if (gpu) {
    ctxp.reset(new sc::Context(gpu_spec(s), true));
    ctxp->set_inputs(pos.data(), mask.data(), opt ? nullptr : inv.data(), rope_scaling);
  }
  int gpu_rope = 0;  // the tables set_inputs last computed (as CudaEngine.run, re-set only when a layer's differ)
  auto run = [&](size_t k, std::vector<float>& h) {
    sc::HostTensor roles[sc::kRoleCount], qk[2], pn[2];
    eff.clear();
    eff.reserve(8);  // offset_norm's vectors must not move
    roles_of(k, roles);
    qk_of(k, qk);
    post_of(k, pn);
    const int ri = rope_of[k];
    if (gpu) {
      if (ri != gpu_rope) {
        ctxp->set_inputs(pos.data(), mask.data(), (ri ? inv_local : inv).data(), ri ? local_scaling : rope_scaling);
        gpu_rope = ri;
      }
      ctxp->upload_layer(int(k % 2), roles);
      if (qk[0].data) ctxp->upload_qk_norm(int(k % 2), qk[0], qk[1]);
      if (pn[0].data) ctxp->upload_post_norm(int(k % 2), pn[0], pn[1]);
      ctxp->set_window(windows[k]);
      ctxp->run_layer(int(k % 2));
    } else {
      ref::LayerSpecRef sk = s;
      sk.window = windows[k];
      ref::decoder_layer(h, sk, cpu_weights(roles, qk, pn), opt ? nullptr : cosv[ri].data(),
                         opt ? nullptr : sinv[ri].data(), mask.data(), true);
    }
  };
  const char* who = gpu ? "GPU" : "CPU bf16-emulating";
  double worst = 0;
  for (size_t k = 0; k < L; k++) {
    std::vector<float> h = golden_h(k), want = golden_h(k + 1);
    if (gpu) ctxp->upload_hidden(h.data());
    run(k, h);
    if (gpu) ctxp->download_hidden(h.data());
    Compare c = compare_real(h, want, mask, D);
    worst = std::max(worst, c.nan_mismatch ? INFINITY : c.rel_l2);
  }
  record("fixture", fmt("%s: %zu %s layers vs f64 goldens (real tokens, worst layer)", name.c_str(), L, who),
         worst <= kTolLayerF32, worst, kTolLayerF32);
  if (gpu) check_fixture_head(name, cfg, model, golden, *ctxp, golden_h(L), mask, B, T, D, opt, gemma);
  // Chained from h.0, with the scoring matrix.
  std::vector<std::vector<float>> gold;
  for (size_t k = 0; k <= L; k++) gold.push_back(golden_h(k));
  std::vector<std::vector<float>> cpu_states{gold[0]};
  std::vector<float> h = gold[0];
  if (gpu) {
    ctxp->upload_hidden(h.data());
    ctxp->save_state(0);
  }
  for (size_t k = 0; k < L; k++) {
    run(k, h);
    if (gpu) ctxp->save_state(int(k + 1));
    else cpu_states.push_back(h);
  }
  double wc = 0;
  for (size_t i = 0; i <= L; i++)
    for (size_t j = i + 1; j <= L; j++) {
      sc::CosineAccum g{};
      if (gpu) {
        g = ctxp->cosine(int(i), int(j));
      } else {
        ref::Cos e;
        ref::cosine_accumulate(&e, cpu_states[i].data(), cpu_states[j].data(), mask.data(), M, D);
        g = sc::CosineAccum{e.sum, e.count, e.zeros};
      }
      ref::Cos c;
      ref::cosine_accumulate(&c, gold[i].data(), gold[j].data(), mask.data(), M, D);
      const double gs = g.count ? g.sum / double(g.count) : 0, cs = c.count ? c.sum / double(c.count) : 0;
      wc = std::max(wc, std::isnan(gs) ? INFINITY : std::fabs(gs - cs));
    }
  record("fixture", fmt("%s: scoring matrix from chained %s states vs goldens, max |diff|", name.c_str(), who),
         wc <= kTolScoring, wc, kTolScoring);
}

}  // namespace

int cpu_model_selftest(const std::string& model_dir, const std::string& repo_root) {
  const size_t before = results().size();
  if (!model_dir.empty()) {
    try {
      check_llama_dir(model_dir, false);
    } catch (const std::exception& e) {
      record("model", model_dir, false, NAN, 0, e.what());
    }
  }
  const std::string fx = repo_root + "/test/fixtures/models";
  if (DIR* d = opendir(fx.c_str())) {
    std::vector<std::string> dirs;
    while (dirent* e = readdir(d))
      if (e->d_name[0] != '.') dirs.push_back(fx + "/" + e->d_name);
    closedir(d);
    std::sort(dirs.begin(), dirs.end());
    for (const auto& dir : dirs) {
      try {
        check_fixture_dir(dir, false);
      } catch (const std::exception& e) {
        record("fixture", dir, false, NAN, 0, e.what());
      }
    }
  }
  int failed = 0;
  for (size_t i = before; i < results().size(); i++) {
    std::printf("%s cpu-selftest: %s (err %.2e, tol %.1e) %s\n", results()[i].ok ? "ok  " : "FAIL", results()[i].name.c_str(),
                results()[i].err, results()[i].tol, results()[i].note.c_str());
    failed += !results()[i].ok;
  }
  return failed;
}

void run_model_checks(const std::string& model_dir, const std::string& repo_root) {
  std::printf("model checks\n");
  if (!model_dir.empty()) {
    try {
      check_llama_dir(model_dir);
    } catch (const std::exception& e) {
      record("model", model_dir, false, NAN, 0, e.what());
    }
  } else {
    record("model", "model directory", true, 0, 0, "skipped: no --model DIR given");
  }
  // Golden fixtures from the forward-pass work: test/fixtures/models/<name>/{config.json, model.safetensors,
  // golden.safetensors} with the f64 PyTorch boundary states h.0 .. h.L (test/fixtures/README.md).
  const std::string fx = repo_root + "/test/fixtures/models";
  DIR* d = opendir(fx.c_str());
  if (!d) {
    record("fixture", "golden fixtures", true, 0, 0, "skipped: " + fx + " not present");
    return;
  }
  std::vector<std::string> dirs;
  while (dirent* e = readdir(d))
    if (e->d_name[0] != '.') dirs.push_back(fx + "/" + e->d_name);
  closedir(d);
  std::sort(dirs.begin(), dirs.end());
  for (const auto& dir : dirs) {
    FILE* f = std::fopen((dir + "/golden.safetensors").c_str(), "rb");
    if (!f) continue;
    std::fclose(f);
    try {
      check_fixture_dir(dir);
    } catch (const std::exception& ex) {
      record("fixture", dir, false, NAN, 0, ex.what());
    }
  }
}

}  // namespace harness
