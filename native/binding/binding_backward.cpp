// Backward kernels, the MSE loss and the optimiser, synchronous (each call is one kernel on caller-owned
// buffers; the training step that chains them runs off the JS thread elsewhere). Arguments follow the C++
// order: outputs, inputs, dimensions. Every buffer is a Float32Array (keyMask a Uint8Array) whose length must
// equal what the dimensions imply; optional buffers accept null or undefined.
#include <cmath>
#include <string>
#include <vector>

#include "args.h"
#include "register.h"
#include "streamline/ops.h"
#include "streamline/train.h"

using namespace streamline;
using namespace streamline::binding;

namespace {

bool absent(const Napi::Value& v) { return v.IsNull() || v.IsUndefined(); }

// A Float32Array of exactly n elements (or nullptr when optional and null/undefined).
float* f32_arg(Napi::Env env, const Napi::Value& v, size_t n, const char* fn, const char* what, bool optional = false) {
  if (optional && absent(v)) return nullptr;
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw_error(env, "E_NATIVE_ARG", std::string(fn) + ": " + what + " must be a Float32Array");
  auto a = v.As<Napi::Float32Array>();
  if (a.ElementLength() != n)
    throw_error(env, "E_SHAPE", std::string(fn) + ": " + what + " has " + std::to_string(a.ElementLength()) +
                                    " elements, expected " + std::to_string(n));
  return a.Data();
}

size_t dim_arg(Napi::Env env, const Napi::Value& v, const char* fn, const char* what) {
  int64_t d = int_arg(env, v, what);
  if (d < 0) throw_error(env, "E_SHAPE", std::string(fn) + ": " + what + " must be >= 0");
  return size_t(d);
}

float eps_arg(Napi::Env env, const Napi::Value& v, const char* fn) {
  double e = number_arg(env, v, "eps");
  if (!(e >= 0)) throw_error(env, "E_NATIVE_ARG", std::string(fn) + ": eps must be >= 0");
  return float(e);
}

Activation act_arg(Napi::Env env, const Napi::Value& v, const char* fn) {
  if (v.IsString()) {
    std::string s = v.As<Napi::String>().Utf8Value();
    if (s == "silu" || s == "swish") return Activation::SiLU;
    if (s == "relu") return Activation::ReLU;
    if (s == "gelu") return Activation::GELU;
    if (s == "gelu_tanh" || s == "gelu_pytorch_tanh" || s == "gelu_new") return Activation::GELUTanh;
    throw_error(env, "E_NATIVE_ARG", std::string(fn) + ": unknown activation '" + s +
                                         "' (expected silu, relu, gelu or gelu_tanh)");
  }
  if (v.IsNumber()) {
    int64_t k = int_arg(env, v, "activation");
    if (k >= 0 && k <= 3) return Activation(int(k));
  }
  throw_error(env, "E_NATIVE_ARG", std::string(fn) + ": activation must be silu, relu, gelu or gelu_tanh");
}

// ---- linear --------------------------------------------------------------------------------------------------
// linearBackward(dx|null, dw|null, db|null, dy, x, w, M, N, K)
template <bool kRef>
Napi::Value LinearBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* fn = kRef ? "linearBackwardRef" : "linearBackward";
  size_t M = dim_arg(env, info[6], fn, "M"), N = dim_arg(env, info[7], fn, "N"), K = dim_arg(env, info[8], fn, "K");
  float* dx = f32_arg(env, info[0], M * K, fn, "dx", true);
  float* dw = f32_arg(env, info[1], N * K, fn, "dw", true);
  float* db = f32_arg(env, info[2], N, fn, "db", true);
  const float* dy = f32_arg(env, info[3], M * N, fn, "dy");
  const float* x = f32_arg(env, info[4], M * K, fn, "x", dw == nullptr);
  const float* w = f32_arg(env, info[5], N * K, fn, "w", dx == nullptr);
  if (kRef) ref::linear_backward(dx, dw, db, dy, x, w, M, N, K);
  else linear_backward(dx, dw, db, dy, x, w, M, N, K);
  return env.Undefined();
}

// ---- norms ---------------------------------------------------------------------------------------------------
// rmsnormBackward(dx|null, dw|null, dy, x, w|null, M, D, eps)
template <bool kRef>
Napi::Value RmsnormBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* fn = kRef ? "rmsnormBackwardRef" : "rmsnormBackward";
  size_t M = dim_arg(env, info[5], fn, "M"), D = dim_arg(env, info[6], fn, "D");
  float eps = eps_arg(env, info[7], fn);
  float* dx = f32_arg(env, info[0], M * D, fn, "dx", true);
  float* dw = f32_arg(env, info[1], D, fn, "dw", true);
  const float* dy = f32_arg(env, info[2], M * D, fn, "dy");
  const float* x = f32_arg(env, info[3], M * D, fn, "x");
  const float* w = f32_arg(env, info[4], D, fn, "w", true);
  if (dw && !w) throw_error(env, "E_NATIVE_ARG", std::string(fn) + ": dw given but w is null");
  if (kRef) ref::rmsnorm_backward(dx, dw, dy, x, w, M, D, eps);
  else rmsnorm_backward(dx, dw, dy, x, w, M, D, eps);
  return env.Undefined();
}

// layernormBackward(dx|null, dw|null, db|null, dy, x, w|null, M, D, eps)
template <bool kRef>
Napi::Value LayernormBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* fn = kRef ? "layernormBackwardRef" : "layernormBackward";
  size_t M = dim_arg(env, info[6], fn, "M"), D = dim_arg(env, info[7], fn, "D");
  float eps = eps_arg(env, info[8], fn);
  float* dx = f32_arg(env, info[0], M * D, fn, "dx", true);
  float* dw = f32_arg(env, info[1], D, fn, "dw", true);
  float* db = f32_arg(env, info[2], D, fn, "db", true);
  const float* dy = f32_arg(env, info[3], M * D, fn, "dy");
  const float* x = f32_arg(env, info[4], M * D, fn, "x");
  const float* w = f32_arg(env, info[5], D, fn, "w", true);
  if (dw && !w) throw_error(env, "E_NATIVE_ARG", std::string(fn) + ": dw given but w is null");
  if (kRef) ref::layernorm_backward(dx, dw, db, dy, x, w, M, D, eps);
  else layernorm_backward(dx, dw, db, dy, x, w, M, D, eps);
  return env.Undefined();
}

// ---- activations ---------------------------------------------------------------------------------------------
// activationBackward(dx, dy, x, kind): dx += dy·act'(x); all three the same length.
template <bool kRef>
Napi::Value ActivationBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* fn = kRef ? "activationBackwardRef" : "activationBackward";
  Activation act = act_arg(env, info[3], fn);
  if (!info[2].IsTypedArray()) throw_error(env, "E_NATIVE_ARG", std::string(fn) + ": x must be a Float32Array");
  size_t n = info[2].As<Napi::TypedArray>().ElementLength();
  const float* x = f32_arg(env, info[2], n, fn, "x");
  float* dx = f32_arg(env, info[0], n, fn, "dx");
  const float* dy = f32_arg(env, info[1], n, fn, "dy");
  if (kRef) ref::activation_backward(dx, dy, x, n, act);
  else activation_backward(dx, dy, x, n, act);
  return env.Undefined();
}

// gatedBackward(dgate|null, dup|null, dy, gate, up, kind): dgate += dy·up·act'(gate), dup += dy·act(gate).
template <bool kRef>
Napi::Value GatedBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* fn = kRef ? "gatedBackwardRef" : "gatedBackward";
  Activation act = act_arg(env, info[5], fn);
  if (!info[3].IsTypedArray()) throw_error(env, "E_NATIVE_ARG", std::string(fn) + ": gate must be a Float32Array");
  size_t n = info[3].As<Napi::TypedArray>().ElementLength();
  const float* gate = f32_arg(env, info[3], n, fn, "gate");
  float* dgate = f32_arg(env, info[0], n, fn, "dgate", true);
  float* dup = f32_arg(env, info[1], n, fn, "dup", true);
  const float* dy = f32_arg(env, info[2], n, fn, "dy");
  const float* up = f32_arg(env, info[4], n, fn, "up");
  if (kRef) ref::gated_backward(dgate, dup, dy, gate, up, n, act);
  else gated_backward(dgate, dup, dy, gate, up, n, act);
  return env.Undefined();
}

// ---- rope ----------------------------------------------------------------------------------------------------
// ropeBackward(dx, cos, sin, M, nheads, Dh, rot = Dh): in place on dx[M, nheads, Dh]; cos/sin [M, rot/2].
template <bool kRef>
Napi::Value RopeBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* fn = kRef ? "ropeBackwardRef" : "ropeBackward";
  size_t M = dim_arg(env, info[3], fn, "M"), nh = dim_arg(env, info[4], fn, "nheads"),
         Dh = dim_arg(env, info[5], fn, "Dh");
  size_t rot = info.Length() > 6 && !info[6].IsUndefined() ? dim_arg(env, info[6], fn, "rot") : Dh;
  if (Dh % 2 != 0) throw_error(env, "E_SHAPE", std::string(fn) + ": Dh must be even");
  if (rot % 2 != 0 || rot == 0 || rot > Dh) throw_error(env, "E_SHAPE", std::string(fn) + ": rot must be even, positive and at most Dh");
  float* dx = f32_arg(env, info[0], M * nh * Dh, fn, "dx");
  const float* c = f32_arg(env, info[1], M * (rot / 2), fn, "cos");
  const float* s = f32_arg(env, info[2], M * (rot / 2), fn, "sin");
  if (kRef) ref::rope_backward(dx, c, s, M, nh, Dh, rot);
  else rope_backward(dx, c, s, M, nh, Dh, rot);
  return env.Undefined();
}

// ---- attention -----------------------------------------------------------------------------------------------
// attentionBackward(dq, dk, dv, dout, q, k, v, out, lse, keyMask|null, B, T, H, Hk, Dh, scale)
template <bool kRef>
Napi::Value AttentionBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* fn = kRef ? "attentionBackwardRef" : "attentionBackward";
  size_t B = dim_arg(env, info[10], fn, "B"), T = dim_arg(env, info[11], fn, "T"), H = dim_arg(env, info[12], fn, "H"),
         Hk = dim_arg(env, info[13], fn, "Hk"), Dh = dim_arg(env, info[14], fn, "Dh");
  float scale = float(number_arg(env, info[15], "scale"));
  if (Hk == 0 || H % Hk != 0)
    throw_error(env, "E_SHAPE", std::string(fn) + ": H (" + std::to_string(H) + ") must be a multiple of Hk (" +
                                    std::to_string(Hk) + ")");
  size_t nq = B * T * H * Dh, nk = B * T * Hk * Dh;
  float* dq = f32_arg(env, info[0], nq, fn, "dq");
  float* dk = f32_arg(env, info[1], nk, fn, "dk");
  float* dv = f32_arg(env, info[2], nk, fn, "dv");
  const float* dout = f32_arg(env, info[3], nq, fn, "dout");
  const float* q = f32_arg(env, info[4], nq, fn, "q");
  const float* k = f32_arg(env, info[5], nk, fn, "k");
  const float* v = f32_arg(env, info[6], nk, fn, "v");
  const float* out = f32_arg(env, info[7], nq, fn, "out");
  const float* lse = f32_arg(env, info[8], B * H * T, fn, "lse");
  const uint8_t* mask = nullptr;
  if (!absent(info[9])) {
    if (!info[9].IsTypedArray() || info[9].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
      throw_error(env, "E_NATIVE_ARG", std::string(fn) + ": keyMask must be a Uint8Array");
    auto m = info[9].As<Napi::Uint8Array>();
    if (m.ElementLength() != B * T)
      throw_error(env, "E_SHAPE", std::string(fn) + ": keyMask has " + std::to_string(m.ElementLength()) +
                                      " elements, expected B*T = " + std::to_string(B * T));
    mask = m.Data();
  }
  size_t window = absent(info[16]) ? 0 : dim_arg(env, info[16], fn, "window");
  if (kRef) ref::attention_backward(dq, dk, dv, dout, q, k, v, out, lse, mask, B, T, H, Hk, Dh, scale, window);
  else attention_backward(dq, dk, dv, dout, q, k, v, out, lse, mask, B, T, H, Hk, Dh, scale, window);
  return env.Undefined();
}

// ---- loss ----------------------------------------------------------------------------------------------------
// mseForwardBackward(da|null, a, b) -> loss
template <bool kRef>
Napi::Value MseForwardBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* fn = kRef ? "mseForwardBackwardRef" : "mseForwardBackward";
  if (!info[1].IsTypedArray()) throw_error(env, "E_NATIVE_ARG", std::string(fn) + ": a must be a Float32Array");
  size_t n = info[1].As<Napi::TypedArray>().ElementLength();
  const float* a = f32_arg(env, info[1], n, fn, "a");
  const float* b = f32_arg(env, info[2], n, fn, "b");
  float* da = f32_arg(env, info[0], n, fn, "da", true);
  double loss = kRef ? ref::mse_forward_backward(da, a, b, n) : mse_forward_backward(da, a, b, n);
  return Napi::Number::New(env, loss);
}

// ---- optimiser -----------------------------------------------------------------------------------------------
std::vector<float*> f32_list(Napi::Env env, const Napi::Value& v, const char* fn, const char* what,
                             std::vector<size_t>* sizes) {
  if (!v.IsArray()) throw_error(env, "E_NATIVE_ARG", std::string(fn) + ": " + what + " must be an array of Float32Array");
  Napi::Array arr = v.As<Napi::Array>();
  std::vector<float*> out;
  for (uint32_t i = 0; i < arr.Length(); i++) {
    std::string name = std::string(what) + "[" + std::to_string(i) + "]";
    Napi::Value e = arr.Get(i);
    if (!e.IsTypedArray() || e.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
      throw_error(env, "E_NATIVE_ARG", std::string(fn) + ": " + name + " must be a Float32Array");
    size_t n = e.As<Napi::TypedArray>().ElementLength();
    if (sizes->size() > i) {
      if ((*sizes)[i] != n)
        throw_error(env, "E_SHAPE", std::string(fn) + ": " + name + " has " + std::to_string(n) +
                                        " elements, expected " + std::to_string((*sizes)[i]));
    } else {
      sizes->push_back(n);
    }
    out.push_back(e.As<Napi::Float32Array>().Data());
  }
  if (out.size() != sizes->size())
    throw_error(env, "E_SHAPE", std::string(fn) + ": " + what + " has " + std::to_string(out.size()) +
                                    " tensors, expected " + std::to_string(sizes->size()));
  return out;
}

double opt_number(Napi::Env env, Napi::Object o, const char* key, const char* fn) {
  Napi::Value v = o.Get(key);
  if (!v.IsNumber() || !std::isfinite(v.As<Napi::Number>().DoubleValue()))
    throw_error(env, "E_NATIVE_ARG", std::string(fn) + ": options." + key + " must be a finite number");
  return v.As<Napi::Number>().DoubleValue();
}

// adamwStep(params, grads, m, v, {lr, beta1, beta2, eps, weightDecay, step}): updates params, m and v in place.
Napi::Value AdamwStep(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* fn = "adamwStep";
  std::vector<size_t> sizes;
  auto p = f32_list(env, info[0], fn, "params", &sizes);
  auto g = f32_list(env, info[1], fn, "grads", &sizes);
  auto m = f32_list(env, info[2], fn, "m", &sizes);
  auto v = f32_list(env, info[3], fn, "v", &sizes);
  if (!info[4].IsObject()) throw_error(env, "E_NATIVE_ARG", std::string(fn) + ": options must be an object");
  Napi::Object o = info[4].As<Napi::Object>();
  AdamWOptions opt;
  opt.lr = opt_number(env, o, "lr", fn);
  opt.beta1 = opt_number(env, o, "beta1", fn);
  opt.beta2 = opt_number(env, o, "beta2", fn);
  opt.eps = opt_number(env, o, "eps", fn);
  opt.weight_decay = opt_number(env, o, "weightDecay", fn);
  double step = opt_number(env, o, "step", fn);
  if (!(opt.lr >= 0)) throw_error(env, "E_NATIVE_ARG", std::string(fn) + ": options.lr must be >= 0");
  if (!(opt.beta1 >= 0 && opt.beta1 < 1) || !(opt.beta2 >= 0 && opt.beta2 < 1))
    throw_error(env, "E_NATIVE_ARG", std::string(fn) + ": options.beta1 and beta2 must be in [0, 1)");
  if (!(opt.eps >= 0)) throw_error(env, "E_NATIVE_ARG", std::string(fn) + ": options.eps must be >= 0");
  if (!(opt.weight_decay >= 0)) throw_error(env, "E_NATIVE_ARG", std::string(fn) + ": options.weightDecay must be >= 0");
  if (step < 1 || step != std::floor(step))
    throw_error(env, "E_NATIVE_ARG", std::string(fn) + ": options.step must be an integer >= 1 (1-based)");
  opt.step = (long long)step;
  std::vector<AdamWTensor> ts;
  for (size_t i = 0; i < sizes.size(); i++) ts.push_back({p[i], g[i], m[i], v[i], sizes[i]});
  adamw_step(ts, opt);
  return env.Undefined();
}

// gradNorm(grads) -> global L2 norm (f64)
Napi::Value GradNorm(const Napi::CallbackInfo& info) {
  std::vector<size_t> sizes;
  auto g = f32_list(info.Env(), info[0], "gradNorm", "grads", &sizes);
  return Napi::Number::New(info.Env(), grad_norm(g, sizes));
}

// clipGradNorm(grads, maxNorm) -> {norm, scale}: torch.nn.utils.clip_grad_norm_ in place.
Napi::Value ClipGradNorm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::vector<size_t> sizes;
  auto g = f32_list(env, info[0], "clipGradNorm", "grads", &sizes);
  double max_norm = number_arg(env, info[1], "maxNorm");
  if (!(max_norm > 0)) throw_error(env, "E_NATIVE_ARG", "clipGradNorm: maxNorm must be > 0");
  double scale = 1;
  double norm = clip_grad_norm(g, sizes, max_norm, &scale);
  Napi::Object r = Napi::Object::New(env);
  r.Set("norm", norm);
  r.Set("scale", scale);
  return r;
}

}  // namespace

STREAMLINE_BINDING(backward) {
  exports.Set("linearBackward", Napi::Function::New(env, LinearBackward<false>, "linearBackward"));
  exports.Set("linearBackwardRef", Napi::Function::New(env, LinearBackward<true>, "linearBackwardRef"));
  exports.Set("rmsnormBackward", Napi::Function::New(env, RmsnormBackward<false>, "rmsnormBackward"));
  exports.Set("rmsnormBackwardRef", Napi::Function::New(env, RmsnormBackward<true>, "rmsnormBackwardRef"));
  exports.Set("layernormBackward", Napi::Function::New(env, LayernormBackward<false>, "layernormBackward"));
  exports.Set("layernormBackwardRef", Napi::Function::New(env, LayernormBackward<true>, "layernormBackwardRef"));
  exports.Set("activationBackward", Napi::Function::New(env, ActivationBackward<false>, "activationBackward"));
  exports.Set("activationBackwardRef", Napi::Function::New(env, ActivationBackward<true>, "activationBackwardRef"));
  exports.Set("gatedBackward", Napi::Function::New(env, GatedBackward<false>, "gatedBackward"));
  exports.Set("gatedBackwardRef", Napi::Function::New(env, GatedBackward<true>, "gatedBackwardRef"));
  exports.Set("ropeBackward", Napi::Function::New(env, RopeBackward<false>, "ropeBackward"));
  exports.Set("ropeBackwardRef", Napi::Function::New(env, RopeBackward<true>, "ropeBackwardRef"));
  exports.Set("attentionBackward", Napi::Function::New(env, AttentionBackward<false>, "attentionBackward"));
  exports.Set("attentionBackwardRef", Napi::Function::New(env, AttentionBackward<true>, "attentionBackwardRef"));
  exports.Set("mseForwardBackward", Napi::Function::New(env, MseForwardBackward<false>, "mseForwardBackward"));
  exports.Set("mseForwardBackwardRef", Napi::Function::New(env, MseForwardBackward<true>, "mseForwardBackwardRef"));
  exports.Set("adamwStep", Napi::Function::New(env, AdamwStep, "adamwStep"));
  exports.Set("gradNorm", Napi::Function::New(env, GradNorm, "gradNorm"));
  exports.Set("clipGradNorm", Napi::Function::New(env, ClipGradNorm, "clipGradNorm"));
}
