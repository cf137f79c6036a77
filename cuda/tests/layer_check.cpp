// Decoder-layer checks (GPU Context vs the CPU layer) on synthetic weights for each layer style, weight streaming
// over several layers, and model-level checks: a Llama checkpoint directory (--model, e.g. kjv-llama) run through
// embedding + all layers on both sides with the (L+1) x (L+1) boundary cosine matrix compared, and golden fixtures
// under test/fixtures/models/ when present.
#include <dirent.h>
#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <memory>

#include "cpu_ref.h"
#include "cublaslt_loader.h"
#include "decoder_layer.cuh"
#include "harness.h"
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
};

// Host weights kept alive for the upload (any dtype) plus their f32 values for the reference.
struct HostLayer {
  std::vector<std::vector<uint8_t>> bytes;
  sc::HostTensor roles[sc::kRoleCount];
  ref::LayerWeightsRef w;
};

std::vector<float> add_role(HostLayer& L, int role, size_t n, DType dt, Rng& r, float scale, float offset = 0.f) {
  std::vector<float> f = randn(n, r, scale);
  for (auto& x : f) x += offset;
  // Matrices are bf16-representable so the GPU (bf16 weights) and the reference see the same numbers.
  f = round_bf16(f);
  std::vector<uint8_t> b;
  if (dt == DType::F32) { b.resize(n * 4); std::memcpy(b.data(), f.data(), n * 4); }
  else if (dt == DType::BF16) { auto h = to_bf16(f); b.resize(n * 2); std::memcpy(b.data(), h.data(), n * 2); }
  else { auto h = to_f16(f); for (size_t i = 0; i < n; i++) f[i] = streamline::f16_to_f32(h[i]); b.resize(n * 2); std::memcpy(b.data(), h.data(), n * 2); }
  L.bytes.push_back(std::move(b));
  L.roles[role] = sc::HostTensor{L.bytes.back().data(), dt, n};
  return f;
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
  }
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

sc::LayerSpec gpu_spec(const ref::LayerSpecRef& s) {
  sc::LayerSpec g;
  g.batch = s.B; g.seq_len = s.T; g.hidden = s.D; g.heads = s.H; g.kv_heads = s.Hk; g.head_dim = s.Dh;
  g.intermediate = s.F; g.norm = s.rms ? sc::NormKind::RMS : sc::NormKind::Layer; g.norm_eps = s.eps; g.act = s.act;
  g.gated = s.gated; g.pre_norm = s.pre_norm; g.use_rope = s.use_rope; g.rot_dim = s.rot; g.attn_scale = s.scale;
  g.mlp_only = s.mlp_only;
  return g;
}

struct Inputs {
  std::vector<int32_t> pos;
  std::vector<uint8_t> mask;
  std::vector<float> inv, cos, sin;
};
Inputs make_inputs(const ref::LayerSpecRef& s, double theta) {
  Inputs in;
  const size_t M = s.B * s.T, half = s.rot / 2;
  in.pos.resize(M);
  in.mask.assign(M, 1);
  for (size_t b = 0; b < s.B; b++) {
    const size_t len = b == 0 ? s.T : (s.T * 2) / 3 + 1;  // second row right-padded
    for (size_t t = 0; t < s.T; t++) {
      in.pos[b * s.T + t] = int32_t(t);
      in.mask[b * s.T + t] = t < len;
    }
  }
  in.inv.resize(half);
  for (size_t i = 0; i < half; i++) in.inv[i] = float(1.0 / std::pow(theta, 2.0 * double(i) / double(s.rot)));
  in.cos.resize(M * half);
  in.sin.resize(M * half);
  ref::rope_tables(in.cos.data(), in.sin.data(), in.pos.data(), in.inv.data(), M, half, 1.f);
  return in;
}

// Compares only real tokens (padding rows are not part of the contract beyond being finite).
Compare compare_real(const std::vector<float>& out, const std::vector<float>& ref, const std::vector<uint8_t>& mask, size_t D) {
  std::vector<float> a, b;
  for (size_t m = 0; m < mask.size(); m++)
    if (mask[m]) {
      a.insert(a.end(), out.begin() + m * D, out.begin() + (m + 1) * D);
      b.insert(b.end(), ref.begin() + m * D, ref.begin() + (m + 1) * D);
    }
  return compare(a.data(), b.data(), a.size());
}

void check_styles(bool quick) {
  const Style styles[] = {
      {"llama (rms, swiglu, rope)", true, true, true, true, false, false, false, false, false, Activation::SiLU},
      {"qwen2 (qkv bias)", true, true, true, true, false, true, false, false, false, Activation::SiLU},
      {"opt pre-norm (layernorm, relu, biases)", false, false, true, false, false, true, true, true, true, Activation::ReLU},
      {"opt post-norm", false, false, false, false, false, true, true, true, true, Activation::ReLU},
      {"gelu_tanh gated, partial rotary", true, true, true, true, false, false, false, false, false, Activation::GELUTanh},
      {"llama mlp_bias + attention_bias", true, true, true, true, false, true, true, true, false, Activation::SiLU},
      {"mlp replacement block", true, true, true, false, true, false, false, false, false, Activation::SiLU},
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
        ctx.run_layer(si % 2);
        std::vector<float> out(h0.size());
        ctx.download_hidden(out.data());
        const std::string nm = fmt("%s B=%zu T=%zu D=%zu H=%zu/%zu Dh=%zu w=%s %s", st.name, s.B, s.T, s.D, s.H, s.Hk, s.Dh,
                                   streamline::dtype_name(dt), use_lt ? "cublaslt" : "fallback");
        check("layer", nm + " vs bf16-emulating ref", compare_real(out, ref_emu, in.mask, s.D), kTolLayerEmu);
        check("layer", nm + " vs f32 ref", compare_real(out, ref_f32, in.mask, s.D), kTolLayerF32);
        if (s.rot == s.Dh) {
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
  ctx.upload_hidden(h.data());
  ctx.upload_layer(0, layers[0].roles);
  for (int k = 0; k < 4; k++) {
    ctx.run_layer(k % 2);
    if (k + 1 < 4) ctx.upload_layer((k + 1) % 2, layers[k + 1].roles);  // overlaps layer k
  }
  std::vector<float> out(h.size());
  ctx.download_hidden(out.data());
  check("layer", "4 streamed layers (2 slots, overlapping uploads)", compare_real(out, ref_h, in.mask, s.D), kTolLayerEmu * 2);
  // Bad input is a clear error, not a crash.
  HostLayer bad = make_layer(s, st, DType::BF16, r);
  bad.roles[sc::kQW].numel -= 1;
  std::string msg;
  try { ctx.upload_layer(0, bad.roles); } catch (const std::exception& e) { msg = e.what(); }
  record("layer", "wrong q.weight size is rejected with a message", msg.find("q.weight") != std::string::npos, 0, 0, msg);
}

// The C API as the addon will use it: streamline_cuda.so opened with dlopen (its own static runtime), host pointers
// only. Same layer as the in-process Context; errors come back as -1 plus a message.
void check_capi() {
  char exe[4096];
  const ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  std::string dir = n > 0 ? std::string(exe, size_t(n)) : std::string(".");
  dir = dir.substr(0, dir.rfind('/'));
  const std::string so = dir + "/streamline_cuda.so";
  void* h = dlopen(so.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    record("capi", "dlopen " + so, false, 0, 0, dlerror());
    return;
  }
#define SYM(name) auto name = reinterpret_cast<decltype(&::name)>(dlsym(h, #name))
  SYM(streamline_cuda_create); SYM(streamline_cuda_destroy); SYM(streamline_cuda_set_inputs);
  SYM(streamline_cuda_upload_hidden); SYM(streamline_cuda_download_hidden); SYM(streamline_cuda_upload_layer);
  SYM(streamline_cuda_run_layer); SYM(streamline_cuda_save_state); SYM(streamline_cuda_cosine_states);
  SYM(streamline_cuda_last_error); SYM(streamline_cuda_memory); SYM(streamline_cuda_cosine_host);
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
  for (auto fn : {check_streaming, check_capi}) {
    try {
      fn();
    } catch (const std::exception& e) {
      record("layer", "uncaught exception", false, NAN, 0, e.what());
    }
  }
  std::fflush(stdout);
}

// ---- model level ---------------------------------------------------------------------------------------------
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
  std::vector<std::vector<float>> cpu_states{h};
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
}

// Inverse RoPE frequencies as packages/core/src/engine/rope.ts computes them (f64, rounded once): default,
// linear, dynamic (NTK, from the padded length as HF does) and llama3.
std::vector<float> rope_inv_freq(const Json& cfg, size_t dim, size_t seq_len) {
  const size_t half = dim / 2;
  double base = cfg.number_or("rope_theta", 10000.0);
  const double max_pos = cfg.number_or("max_position_embeddings", 2048);
  std::string type = "default";
  double factor = 1, low = 1, high = 4, original = max_pos;
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
  if (!opt && type != "llama" && type != "mistral" && type != "qwen2") {
    record("fixture", name + ": model_type " + type, true, 0, 0, "skipped: not wired in the harness");
    return;
  }
  const StTensor* ids = golden.find("input_ids");
  const StTensor* am = golden.find("attention_mask");
  if (!ids || !am || ids->shape.size() != 2) throw std::runtime_error(name + ": golden lacks input_ids/attention_mask");
  const size_t B = size_t(ids->shape[0]), T = size_t(ids->shape[1]), M = B * T;
  const size_t D = size_t(cfg.number_or("hidden_size", 0)), H = size_t(cfg.number_or("num_attention_heads", 0));
  const size_t Hk = opt ? H : size_t(cfg.number_or("num_key_value_heads", double(H)));
  const size_t Dh = opt ? D / H : size_t(cfg.number_or("head_dim", double(D / H)));
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
  const float eps = opt ? 1e-5f : float(cfg.number_or("rms_norm_eps", 1e-6));
  ref::LayerSpecRef s{B, T, D, H, Hk, Dh, F, Dh, !opt, !opt, pre_norm, !opt, false, act, eps, 1.f / std::sqrt(float(Dh))};
  std::vector<uint8_t> mask(M);
  for (size_t i = 0; i < M; i++) mask[i] = static_cast<const uint8_t*>(am->data)[i];
  std::vector<int32_t> pos(M);
  for (size_t b = 0; b < B; b++)
    for (size_t t = 0; t < T; t++) pos[b * T + t] = int32_t(t);
  std::vector<float> inv = opt ? std::vector<float>() : rope_inv_freq(cfg, Dh, T);

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
  const char* const* names = opt ? opt_names : llama_names;
  auto golden_h = [&](size_t k) {
    const StTensor* t = golden.find("h." + std::to_string(k));
    if (!t || t->numel() != M * D) throw std::runtime_error(name + ": golden h." + std::to_string(k) + " missing or mis-shaped");
    return tensor_f32(*t);
  };
  auto roles_of = [&](size_t k, sc::HostTensor* roles) {
    for (int role = 0; role < sc::kRoleCount; role++) {
      roles[role] = sc::HostTensor{};
      if (!names[role]) continue;
      const StTensor* t = model.find(pre + std::to_string(k) + "." + names[role]);
      if (!t) continue;
      DType dt;
      if (!t->has_dtype(&dt)) throw std::runtime_error(name + ": unsupported dtype " + t->dtype);
      roles[role] = sc::HostTensor{t->data, dt, t->numel()};
    }
  };
  // CPU emulation: f32 copies of the weights, matrices rounded to bf16 as the GPU stores them.
  std::vector<float> cosv, sinv;
  if (!opt) {
    cosv.resize(M * Dh / 2);
    sinv.resize(M * Dh / 2);
    ref::rope_tables(cosv.data(), sinv.data(), pos.data(), inv.data(), M, Dh / 2, 1.f);
  }
  auto cpu_weights = [&](const sc::HostTensor* roles) {
    ref::LayerWeightsRef w;
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
    ctxp->set_inputs(pos.data(), mask.data(), opt ? nullptr : inv.data(), 1.f);
  }
  auto run = [&](size_t k, std::vector<float>& h) {
    sc::HostTensor roles[sc::kRoleCount];
    roles_of(k, roles);
    if (gpu) {
      ctxp->upload_layer(int(k % 2), roles);
      ctxp->run_layer(int(k % 2));
    } else {
      ref::decoder_layer(h, s, cpu_weights(roles), opt ? nullptr : cosv.data(), opt ? nullptr : sinv.data(), mask.data(), true);
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
