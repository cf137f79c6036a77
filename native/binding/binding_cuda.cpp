// The CUDA backend behind the TypeScript API: a thin wrapper over the C API of streamline_cuda.so
// (cuda/streamline_cuda.h), whose functions are resolved at run time through cuda_symbol() so the addon loads
// and runs on machines without CUDA. One JS object (CudaContext) owns one streamline_cuda_ctx; a finalizer
// destroys it if JS never calls destroy(). Arguments are checked here with the same spec/weight readers and
// validators as the CPU bindings; calls that copy or compute run on a libuv thread and return Promises.
// A context is not thread-safe, so a call made while another is in flight is refused (E_CUDA_BUSY).
// Failures of the C API become JS errors with code E_CUDA and streamline_cuda_last_error()'s text.
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "args.h"
#include "arrays.h"
#include "async.h"
#include "cuda_weights.h"
#include "layer_args.h"
#include "register.h"
#include "streamline/cuda_loader.h"
#include "streamline/error.h"
#include "streamline/model.h"
#include "streamline_cuda.h"

using namespace streamline;
using namespace streamline::binding;

namespace {

// The C API, resolved once from the opened backend.
struct Api {
  const char* (*last_error)(void);
  int (*create)(const streamline_cuda_layer_spec*, streamline_cuda_ctx**);
  void (*destroy)(streamline_cuda_ctx*);
  int (*set_inputs)(streamline_cuda_ctx*, const int32_t*, const uint8_t*, const float*, float);
  int (*upload_hidden)(streamline_cuda_ctx*, const float*);
  int (*download_hidden)(streamline_cuda_ctx*, float*);
  int (*upload_layer)(streamline_cuda_ctx*, int, const streamline_cuda_weight*);
  int (*run_layer)(streamline_cuda_ctx*, int);
  int (*upload_head)(streamline_cuda_ctx*, const streamline_cuda_weight*, const streamline_cuda_weight*,
                     const streamline_cuda_weight*, int64_t, const streamline_cuda_weight*, int64_t);
  int (*head_logprobs)(streamline_cuda_ctx*, const int32_t*, float*);
  int (*save_state)(streamline_cuda_ctx*, int);
  int (*cosine_states)(streamline_cuda_ctx*, int, int, streamline_cuda_cosine*);
  int (*synchronize)(streamline_cuda_ctx*);
  int (*memory)(uint64_t*, uint64_t*, int);
  // Optional (nullptr in a backend built before sliding-window attention on the GPU).
  int (*set_window)(streamline_cuda_ctx*, int64_t);
  // Optional (nullptr in a backend built before Qwen3's q/k norms on the GPU).
  int (*upload_layer_qk_norm)(streamline_cuda_ctx*, int, const streamline_cuda_weight*, const streamline_cuda_weight*);
  // Optional (nullptr in a backend built before Gemma's post-sublayer norms on the GPU).
  int (*upload_layer_post_norm)(streamline_cuda_ctx*, int, const streamline_cuda_weight*, const streamline_cuda_weight*);
};

template <typename F> void resolve(F*& f, const char* name, std::string* missing) {
  f = reinterpret_cast<F*>(cuda_symbol(name));
  if (!f) *missing += (missing->empty() ? "" : ", ") + std::string(name);
}

// The backend's API, or a coded JS error saying why it cannot be used.
const Api& api(Napi::Env env) {
  static Api a;
  static std::string error;  // empty once resolved
  static bool done = false;
  if (!done) {
    CudaStatus st = cuda_status(addon_dir());  // opens the library (once per process)
    if (!st.loaded) {
      error = st.reason;
    } else {
      std::string missing;
      resolve(a.last_error, "streamline_cuda_last_error", &missing);
      resolve(a.create, "streamline_cuda_create", &missing);
      resolve(a.destroy, "streamline_cuda_destroy", &missing);
      resolve(a.set_inputs, "streamline_cuda_set_inputs", &missing);
      resolve(a.upload_hidden, "streamline_cuda_upload_hidden", &missing);
      resolve(a.download_hidden, "streamline_cuda_download_hidden", &missing);
      resolve(a.upload_layer, "streamline_cuda_upload_layer", &missing);
      resolve(a.run_layer, "streamline_cuda_run_layer", &missing);
      resolve(a.upload_head, "streamline_cuda_upload_head", &missing);
      resolve(a.head_logprobs, "streamline_cuda_head_logprobs", &missing);
      resolve(a.save_state, "streamline_cuda_save_state", &missing);
      resolve(a.cosine_states, "streamline_cuda_cosine_states", &missing);
      resolve(a.synchronize, "streamline_cuda_synchronize", &missing);
      resolve(a.memory, "streamline_cuda_memory", &missing);
      a.set_window = reinterpret_cast<decltype(a.set_window)>(cuda_symbol("streamline_cuda_set_window"));
      a.upload_layer_qk_norm =
          reinterpret_cast<decltype(a.upload_layer_qk_norm)>(cuda_symbol("streamline_cuda_upload_layer_qk_norm"));
      a.upload_layer_post_norm =
          reinterpret_cast<decltype(a.upload_layer_post_norm)>(cuda_symbol("streamline_cuda_upload_layer_post_norm"));
      if (!missing.empty()) error = "the CUDA backend library lacks " + missing;
      else if (st.device_count == 0 || !st.reason.empty()) error = st.reason.empty() ? "no CUDA device" : st.reason;
    }
    done = true;
  }
  if (!error.empty()) throw_error(env, "E_CUDA_UNAVAILABLE", error);
  return a;
}

// Runs on the worker thread: last_error() is per thread, so it is read right where the call failed.
void check_rc(const Api& a, int rc, const char* what) {
  if (rc != 0) throw Error("E_CUDA", std::string(what) + ": " + a.last_error());
}

// Shape of a role for a spec (rows-major [out, in] for linear weights), for weights given as bare Float32Arrays.
std::vector<int64_t> role_shape(const LayerSpec& s, int role) {
  const int64_t D = int64_t(s.hidden), F = int64_t(s.intermediate), Q = int64_t(s.heads * s.head_dim),
                KV = int64_t(s.kv_heads * s.head_dim);
  switch (role) {
    case STREAMLINE_CUDA_Q_W: return {Q, D};
    case STREAMLINE_CUDA_Q_B: return {Q};
    case STREAMLINE_CUDA_K_W: case STREAMLINE_CUDA_V_W: return {KV, D};
    case STREAMLINE_CUDA_K_B: case STREAMLINE_CUDA_V_B: return {KV};
    case STREAMLINE_CUDA_O_W: return {D, Q};
    case STREAMLINE_CUDA_GATE_W: case STREAMLINE_CUDA_UP_W: return {F, D};
    case STREAMLINE_CUDA_GATE_B: case STREAMLINE_CUDA_UP_B: return {F};
    case STREAMLINE_CUDA_DOWN_W: return {D, F};
    default: return {D};  // norms, o.bias, down.bias
  }
}

// {role: tensor | Float32Array | null}: tensors as the CPU bindings take them ({data, dtype, shape}, e.g. the
// memory-mapped views), or bare f32 arrays whose shape is the spec's for that role (checked by validate_layer).
LayerWeights cuda_layer_weights(Napi::Env env, const LayerSpec& spec, Napi::Value v, std::vector<Napi::Value>* keep) {
  if (!v.IsObject()) throw_error(env, "E_NATIVE_ARG", "weights: expected an object {role: tensor}");
  Napi::Object o = v.As<Napi::Object>();
  Napi::Object tensors = Napi::Object::New(env);
  std::vector<std::pair<int, Napi::TypedArray>> bare;
  Napi::Array names = o.GetPropertyNames();
  for (uint32_t i = 0; i < names.Length(); i++) {
    std::string role = names.Get(i).As<Napi::String>().Utf8Value();
    Napi::Value t = o.Get(role);
    int r = 0;
    while (r < STREAMLINE_CUDA_ROLES && role != kCudaRoleNames[r]) r++;
    if (r < STREAMLINE_CUDA_ROLES && t.IsTypedArray()) {
      auto ta = t.As<Napi::TypedArray>();
      if (ta.TypedArrayType() != napi_float32_array)
        throw_error(env, "E_NATIVE_ARG", role + ": a bare typed array must be a Float32Array (give {data, dtype, shape} for bf16/f16)");
      bare.emplace_back(r, ta);
    } else {
      tensors.Set(role, t);  // unknown roles fail in layer_weights, naming the known ones
    }
  }
  LayerWeights w = layer_weights(env, tensors, keep);
  for (auto& [r, ta] : bare) {
    WeightView& slot = *layer_weight_role(w, kCudaRoleNames[r]);
    static const float kEmpty = 0.0f;
    slot.data = ta.ElementLength() ? static_cast<const void*>(static_cast<char*>(ta.ArrayBuffer().Data()) + ta.ByteOffset()) : &kEmpty;
    slot.dtype = DType::F32;
    slot.shape = role_shape(spec, r);
    if (slot.numel() != ta.ElementLength())
      throw_error(env, "E_SHAPE", std::string(kCudaRoleNames[r]) + ": expected " + std::to_string(slot.numel()) +
                                      " elements for this spec, got " + std::to_string(ta.ElementLength()));
    keep->push_back(ta);
  }
  return w;
}

class CudaContext : public Napi::ObjectWrap<CudaContext> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "CudaContext",
                       {InstanceMethod("setInputs", &CudaContext::SetInputs),
                        InstanceMethod("uploadHidden", &CudaContext::UploadHidden),
                        InstanceMethod("downloadHidden", &CudaContext::DownloadHidden),
                        InstanceMethod("uploadLayer", &CudaContext::UploadLayer),
                        InstanceMethod("runLayer", &CudaContext::RunLayer),
                        InstanceMethod("saveState", &CudaContext::SaveState),
                        InstanceMethod("cosineStates", &CudaContext::CosineStates),
                        InstanceMethod("uploadHead", &CudaContext::UploadHead),
                        InstanceMethod("headLogprobs", &CudaContext::HeadLogprobs),
                        InstanceMethod("synchronize", &CudaContext::Synchronize),
                        InstanceMethod("destroy", &CudaContext::Destroy)});
  }

  // new CudaContext(spec): the engine's layer spec plus rotDim (rotated dims per head, 0 = headDim) and mlpOnly
  // (the `mlp` replacement block). Creating the device context (the first CUDA call of the process can take
  // seconds) happens in open().
  explicit CudaContext(const Napi::CallbackInfo& info) : Napi::ObjectWrap<CudaContext>(info) {
    Napi::Env env = info.Env();
    api_ = &api(env);
    spec_ = layer_spec(env, info[0]);
    Napi::Object o = info[0].As<Napi::Object>();
    mlp_only_ = bool_field(env, o, "mlpOnly", false);
    rot_dim_ = is_nullish(o.Get("rotDim")) ? 0 : size_field(env, o, "rotDim");
    if (!mlp_only_ && spec_.heads == 0) throw_error(env, "E_NATIVE_ARG", "spec.heads: required for a decoder layer");
    if (spec_.batch == 0 || spec_.seq_len == 0 || spec_.hidden == 0)
      throw_error(env, "E_SHAPE", "spec: batch, seqLen and hidden must be positive");
    if (rot_dim_ > spec_.head_dim || rot_dim_ % 2) throw_error(env, "E_SHAPE", "spec.rotDim: must be even and <= headDim");
    M_ = checked_mul(env, spec_.batch, spec_.seq_len, "batch*seqLen");
    n_ = checked_mul(env, M_, spec_.hidden, "batch*seqLen*hidden");
  }
  ~CudaContext() override {
    // The finalizer: a context JS dropped without destroy(). Never busy here (in-flight calls keep `this` alive).
    if (ctx_) api_->destroy(ctx_);
  }

 private:
  streamline_cuda_ctx* ready(Napi::Env env) {
    if (!ctx_) throw_error(env, "E_CUDA", "CUDA context is not open (or was destroyed)");
    if (busy_) throw_error(env, "E_CUDA_BUSY", "CUDA context: another call is still in flight; await it first");
    return ctx_;
  }
  // Marks the context busy until the promise settles (so a caller that does not await is refused, whatever the
  // timing) and runs work off the JS thread; `this` and keep stay alive until then.
  Napi::Promise async(const Napi::CallbackInfo& info, std::vector<Napi::Value> keep, std::function<void()> work,
                      std::function<Napi::Value(Napi::Env)> done = nullptr) {
    keep.push_back(info.This());
    busy_ = true;
    return run_async(info.Env(), keep, std::move(work), std::move(done), [this] { busy_ = false; });
  }

  // setInputs(positions Int32Array[M] | null, keyMask Uint8Array[M] | null, invFreq Float32Array[rot/2] | null,
  //           attentionScaling)
  Napi::Value SetInputs(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    streamline_cuda_ctx* c = ready(env);
    const int32_t* pos = is_nullish(info[0]) ? nullptr : i32_array(env, info[0], M_, "positions");
    const uint8_t* mask = u8_array_or_null(env, info[1], M_, "keyMask");
    size_t half = (rot_dim_ ? rot_dim_ : spec_.head_dim) / 2;
    const float* inv = spec_.use_rope && !mlp_only_ ? f32_array(env, info[2], half, "invFreq") : nullptr;
    if (spec_.use_rope && !mlp_only_ && !pos) throw_error(env, "E_NATIVE_ARG", "positions: required with RoPE");
    float scaling = is_nullish(info[3]) ? 1.0f : float(number_arg(env, info[3], "attentionScaling"));
    // Small host copies, synchronous: the previous batch is drained first by the backend.
    rethrow(env, [&] { check_rc(*api_, api_->set_inputs(c, pos, mask, inv, scaling), "set_inputs"); });
    return env.Undefined();
  }

  // uploadHidden(h Float32Array[M*hidden]) -> Promise
  Napi::Value UploadHidden(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    streamline_cuda_ctx* c = ready(env);
    const float* h = f32_array(env, info[0], n_, "h");
    const Api* a = api_;
    return async(info, {info[0]}, [=] { check_rc(*a, a->upload_hidden(c, h), "upload_hidden"); });
  }

  // downloadHidden(out Float32Array[M*hidden]) -> Promise
  Napi::Value DownloadHidden(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    streamline_cuda_ctx* c = ready(env);
    float* h = f32_array(env, info[0], n_, "out");
    const Api* a = api_;
    return async(info, {info[0]}, [=] { check_rc(*a, a->download_hidden(c, h), "download_hidden"); });
  }

  // uploadLayer(slot 0|1, weights {role: tensor | Float32Array}) -> Promise; settles once the host memory has been staged (it may
  // then change), while the device copy may still be running and overlaps with the other slot's layer.
  Napi::Value UploadLayer(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    streamline_cuda_ctx* c = ready(env);
    int slot = int(int_arg(env, info[0], "slot"));
    if (slot != 0 && slot != 1) throw_error(env, "E_NATIVE_ARG", "slot: must be 0 or 1");
    std::vector<Napi::Value> keep;
    LayerWeights w = cuda_layer_weights(env, spec_, info[1], &keep);
    rethrow(env, [&] { validate_layer(spec_, w, mlp_only_); });
    // Nor has it the post-sublayer norms: a library without the function that takes them would run a different layer.
    const bool post_norm = w.post_attn_norm_w || w.post_mlp_norm_w;
    if (post_norm && !api_->upload_layer_post_norm)
      throw_error(env, "E_UNSUPPORTED",
                  "uploadLayer: post_attn_norm.weight/post_mlp_norm.weight (Gemma post-sublayer norms): the CUDA backend "
                  "library lacks streamline_cuda_upload_layer_post_norm (built before post norms on the GPU); rebuild it, "
                  "or use --device cpu");
    // The roles array has no q/k norm: a library without the function that takes them would run a different layer.
    const bool qk_norm = w.q_norm_w || w.k_norm_w;
    if (qk_norm && !api_->upload_layer_qk_norm)
      throw_error(env, "E_UNSUPPORTED",
                  "uploadLayer: q_norm.weight/k_norm.weight (Qwen3): the CUDA backend library lacks "
                  "streamline_cuda_upload_layer_qk_norm (built before q/k norms on the GPU); rebuild it, or use --device cpu");
    auto roles = std::make_shared<std::vector<streamline_cuda_weight>>(STREAMLINE_CUDA_ROLES + 4);
    for (int r = 0; r < STREAMLINE_CUDA_ROLES; r++) (*roles)[r] = cuda_weight(*layer_weight_role(w, kCudaRoleNames[r]));
    (*roles)[STREAMLINE_CUDA_ROLES] = cuda_weight(w.q_norm_w);
    (*roles)[STREAMLINE_CUDA_ROLES + 1] = cuda_weight(w.k_norm_w);
    (*roles)[STREAMLINE_CUDA_ROLES + 2] = cuda_weight(w.post_attn_norm_w);
    (*roles)[STREAMLINE_CUDA_ROLES + 3] = cuda_weight(w.post_mlp_norm_w);
    const Api* a = api_;
    return async(info, keep, [=] {
      check_rc(*a, a->upload_layer(c, slot, roles->data()), "upload_layer");
      if (qk_norm)
        check_rc(*a, a->upload_layer_qk_norm(c, slot, &(*roles)[STREAMLINE_CUDA_ROLES], &(*roles)[STREAMLINE_CUDA_ROLES + 1]),
                 "upload_layer_qk_norm");
      if (post_norm)
        check_rc(*a, a->upload_layer_post_norm(c, slot, &(*roles)[STREAMLINE_CUDA_ROLES + 2], &(*roles)[STREAMLINE_CUDA_ROLES + 3]),
                 "upload_layer_post_norm");
    });
  }

  // runLayer(slot, window = 0) -> Promise: h = layer(h) with that slot's weights (queued on the GPU), with
  // sliding-window attention when window > 0 (keys per query).
  Napi::Value RunLayer(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    streamline_cuda_ctx* c = ready(env);
    int slot = int(int_arg(env, info[0], "slot"));
    if (slot != 0 && slot != 1) throw_error(env, "E_NATIVE_ARG", "slot: must be 0 or 1");
    const int64_t window = is_nullish(info[1]) ? 0 : int_arg(env, info[1], "window");
    if (window < 0) throw_error(env, "E_NATIVE_ARG", "window: must be >= 0");
    if (window > 0 && !api_->set_window)
      throw_error(env, "E_UNSUPPORTED", "sliding-window attention: the CUDA backend library lacks streamline_cuda_set_window "
                                        "(built before sliding windows on the GPU); rebuild it, or use --device cpu");
    const Api* a = api_;
    return async(info, {}, [=] {
      if (a->set_window) check_rc(*a, a->set_window(c, window), "set_window");
      check_rc(*a, a->run_layer(c, slot), "run_layer");
    });
  }

  // saveState(index): keep a device copy of the current hidden state (queued; synchronous call).
  Napi::Value SaveState(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    streamline_cuda_ctx* c = ready(env);
    int64_t index = int_arg(env, info[0], "index");
    if (index < 0 || index >= 4096) throw_error(env, "E_NATIVE_ARG", "index: must be in [0, 4096)");
    rethrow(env, [&] { check_rc(*api_, api_->save_state(c, int(index)), "save_state"); });
    return env.Undefined();
  }

  // cosineStates(i, j) -> Promise<[sum, count, zeros]> over the real tokens of the current batch.
  Napi::Value CosineStates(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    streamline_cuda_ctx* c = ready(env);
    int i = int(int_arg(env, info[0], "i")), j = int(int_arg(env, info[1], "j"));
    auto out = std::make_shared<streamline_cuda_cosine>();
    const Api* a = api_;
    return async(info, {}, [=] { check_rc(*a, a->cosine_states(c, i, j, out.get()), "cosine_states"); },
                 [out](Napi::Env e) -> Napi::Value {
                   Napi::Array r = Napi::Array::New(e, 3);
                   r.Set(uint32_t(0), Napi::Number::New(e, out->sum));
                   r.Set(uint32_t(1), Napi::Number::New(e, double(out->count)));
                   r.Set(uint32_t(2), Napi::Number::New(e, double(out->zeros)));
                   return r;
                 });
  }

  // uploadHead(spec {hidden, vocab, norm, normEps, projDim?}, weights {final_norm.*, project_out.weight,
  // lm_head.weight}) -> Promise. The final norm uses the context's norm kind and eps: they must agree.
  Napi::Value UploadHead(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    streamline_cuda_ctx* c = ready(env);
    HeadSpec s = head_spec(env, info[0]);
    std::vector<Napi::Value> keep;
    HeadWeights w = head_weights(env, info[1], &keep);
    rethrow(env, [&] { validate_head(s, w); });
    if (s.hidden != spec_.hidden) throw_error(env, "E_SHAPE", "spec.hidden: the head's hidden size differs from the context's");
    if (s.final_norm && (s.norm != spec_.norm || s.norm_eps != spec_.norm_eps))
      throw_error(env, "E_NATIVE_ARG", "spec.norm/normEps: the CUDA head uses the layers' norm kind and eps");
    auto ws = std::make_shared<std::vector<streamline_cuda_weight>>(4);
    (*ws)[0] = cuda_weight(s.final_norm ? w.norm_w : WeightView{});
    (*ws)[1] = cuda_weight(s.final_norm ? w.norm_b : WeightView{});
    (*ws)[2] = cuda_weight(w.project_out);
    (*ws)[3] = cuda_weight(w.lm_head);
    int64_t proj = int64_t(s.proj_dim), vocab = int64_t(s.vocab);
    vocab_ = s.vocab;
    const Api* a = api_;
    return async(info, keep, [=] {
      auto& v = *ws;
      check_rc(*a, a->upload_head(c, &v[0], &v[1], &v[2], proj, &v[3], vocab), "upload_head");
    });
  }

  // headLogprobs(targets Int32Array[M], out Float32Array[M]) -> Promise: out[m] = log p(targets[m]) (0 where < 0).
  Napi::Value HeadLogprobs(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    streamline_cuda_ctx* c = ready(env);
    if (vocab_ == 0) throw_error(env, "E_CUDA", "headLogprobs: uploadHead first");
    const int32_t* t = i32_array(env, info[0], M_, "targets");
    float* lp = f32_array(env, info[1], M_, "out");
    // The GPU head returns 0 for a target outside the vocabulary; the CPU head throws, and so do we.
    for (size_t m = 0; m < M_; m++)
      if (t[m] >= 0 && size_t(t[m]) >= vocab_)
        throw_error(env, "E_TOKEN_RANGE", "targets[" + std::to_string(m) + "] = " + std::to_string(t[m]) +
                                              " is outside the vocabulary [0, " + std::to_string(vocab_) + ")");
    const Api* a = api_;
    return async(info, {info[0], info[1]}, [=] { check_rc(*a, a->head_logprobs(c, t, lp), "head_logprobs"); });
  }

  Napi::Value Synchronize(const Napi::CallbackInfo& info) {
    streamline_cuda_ctx* c = ready(info.Env());
    const Api* a = api_;
    return async(info, {}, [=] { check_rc(*a, a->synchronize(c), "synchronize"); });
  }

  // destroy(): frees the device memory now (idempotent).
  Napi::Value Destroy(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (busy_) throw_error(env, "E_CUDA_BUSY", "CUDA context: cannot destroy while a call is in flight");
    if (ctx_) api_->destroy(ctx_);
    ctx_ = nullptr;
    return env.Undefined();
  }

  friend Napi::Value OpenContext(const Napi::CallbackInfo& info);
  const Api* api_ = nullptr;
  LayerSpec spec_;
  bool mlp_only_ = false;
  size_t rot_dim_ = 0, M_ = 0, n_ = 0, vocab_ = 0;
  streamline_cuda_ctx* ctx_ = nullptr;
  bool busy_ = false;  // JS thread only: set by a call, cleared when its promise settles
};

Napi::FunctionReference* g_ctor = nullptr;

int32_t norm_code(NormKind k) { return k == NormKind::Layer ? 1 : 0; }

// cudaContext(spec) -> Promise<CudaContext>: validates the spec, creates the device context off the JS thread.
Napi::Value OpenContext(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object obj = g_ctor->New({info[0]});
  CudaContext* self = CudaContext::Unwrap(obj);
  streamline_cuda_layer_spec cs{};
  const LayerSpec& s = self->spec_;
  cs.batch = int64_t(s.batch);
  cs.seq_len = int64_t(s.seq_len);
  cs.hidden = int64_t(s.hidden);
  cs.heads = int64_t(s.heads);
  cs.kv_heads = int64_t(s.kv_heads);
  cs.head_dim = int64_t(s.head_dim);
  cs.intermediate = int64_t(s.intermediate);
  cs.rot_dim = int64_t(self->rot_dim_);
  cs.norm = norm_code(s.norm);
  cs.activation = int32_t(s.act);
  cs.gated = s.gated_mlp;
  cs.pre_norm = s.pre_norm;
  cs.use_rope = s.use_rope && !self->mlp_only_;
  cs.mlp_only = self->mlp_only_;
  cs.use_cublaslt = 1;  // "available" already required cuBLASLt; the fallback GEMM is for the harness
  cs.norm_eps = s.norm_eps;
  cs.attn_scale = s.attn_scale;
  const Api* a = self->api_;
  self->busy_ = true;
  return run_async(env, {obj}, [=] {
    streamline_cuda_ctx* c = nullptr;
    check_rc(*a, a->create(&cs, &c), "create");
    self->ctx_ = c;
  }, [ref = std::make_shared<Napi::ObjectReference>(Napi::Persistent(obj))](Napi::Env) -> Napi::Value {
    return ref->Value();  // `obj` itself is a handle of this call's scope, gone when the work completes
  }, [self] { self->busy_ = false; });
}

// cudaMemory(resetPeak?) -> {current, peak}: bytes the backend holds on the device now and at most since the last
// reset (its own allocations; see cuda/NOTES.md for what is not counted).
Napi::Value CudaMemory(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Api& a = api(env);
  bool reset = !is_nullish(info[0]) && info[0].ToBoolean().Value();
  uint64_t cur = 0, peak = 0;
  if (a.memory(&cur, &peak, reset ? 1 : 0) != 0) throw_error(env, "E_CUDA", std::string("memory: ") + a.last_error());
  Napi::Object o = Napi::Object::New(env);
  o.Set("current", Napi::Number::New(env, double(cur)));
  o.Set("peak", Napi::Number::New(env, double(peak)));
  return o;
}

// The layer-spec conversions must agree with the C API's numbering.
static_assert(int(Activation::SiLU) == 0 && int(Activation::ReLU) == 1 && int(Activation::GELU) == 2 &&
                  int(Activation::GELUTanh) == 3,
              "activation numbering of streamline_cuda_layer_spec");
}  // namespace

STREAMLINE_BINDING(cuda) {
  Napi::Function ctor = CudaContext::Define(env);
  g_ctor = new Napi::FunctionReference(Napi::Persistent(ctor));  // one addon instance per process (as the loader)
  exports.Set("cudaContext", Napi::Function::New(env, OpenContext, "cudaContext"));
  exports.Set("cudaMemory", Napi::Function::New(env, CudaMemory, "cudaMemory"));
}
