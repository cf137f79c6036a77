// Synchronous bindings of the single forward kernels, fast path and reference, for tests and small inputs.
// Each checks every length against the dimensions it is given before calling the kernel.
#include <string>

#include "args.h"
#include "arrays.h"
#include "register.h"
#include "streamline/matmul.h"
#include "streamline/ops.h"

using namespace streamline;
using namespace streamline::binding;

namespace {

template <bool Ref>
Napi::Value RmsnormForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  size_t M = size_arg(env, info[3], "M"), D = size_arg(env, info[4], "D");
  size_t n = checked_mul(env, M, D, "M*D");
  float* y = f32_array(env, info[0], n, "y");
  const float* x = f32_array(env, info[1], n, "x");
  WeightView w = weight_arg(env, info[2], "w");
  if (w && w.numel() != D) throw_error(env, "E_SHAPE", "w: expected " + std::to_string(D) + " elements");
  float eps = float(number_arg(env, info[5], "eps"));
  (Ref ? ref::rmsnorm_forward : rmsnorm_forward)(y, x, w.data, w.dtype, M, D, eps);
  return env.Undefined();
}

template <bool Ref>
Napi::Value LayernormForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  size_t M = size_arg(env, info[4], "M"), D = size_arg(env, info[5], "D");
  size_t n = checked_mul(env, M, D, "M*D");
  float* y = f32_array(env, info[0], n, "y");
  const float* x = f32_array(env, info[1], n, "x");
  WeightView w = weight_arg(env, info[2], "w"), b = weight_arg(env, info[3], "b");
  if (w && w.numel() != D) throw_error(env, "E_SHAPE", "w: expected " + std::to_string(D) + " elements");
  if (b && b.numel() != D) throw_error(env, "E_SHAPE", "b: expected " + std::to_string(D) + " elements");
  if (w && b && w.dtype != b.dtype) throw_error(env, "E_DTYPE", "w and b must have the same dtype");
  float eps = float(number_arg(env, info[6], "eps"));
  DType dt = w ? w.dtype : b.dtype;
  (Ref ? ref::layernorm_forward : layernorm_forward)(y, x, w.data, b.data, dt, M, D, eps);
  return env.Undefined();
}

// embeddingForward(out, ids, table [V, D]); throws E_TOKEN_RANGE naming the first bad id.
Napi::Value EmbeddingForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  size_t M = typed_length(env, info[1], napi_int32_array, "Int32Array", "ids");
  const int32_t* ids = i32_array(env, info[1], M, "ids");
  WeightView t = weight_arg(env, info[2], "table");
  if (!t || t.shape.size() != 2) throw_error(env, "E_SHAPE", "table: expected a [V, D] tensor");
  size_t V = size_t(t.shape[0]), D = size_t(t.shape[1]);
  float* out = f32_array(env, info[0], checked_mul(env, M, D, "M*D"), "out");
  for (size_t m = 0; m < M; m++)
    if (ids[m] < 0 || size_t(ids[m]) >= V)
      throw_error(env, "E_TOKEN_RANGE", "ids[" + std::to_string(m) + "] = " + std::to_string(ids[m]) +
                                            " is outside the vocabulary [0, " + std::to_string(V) + ")");
  embedding_forward(out, ids, t.data, t.dtype, M, V, D);
  return env.Undefined();
}

// ropeTables(cos, sin, positions, invFreq, attentionScaling)
Napi::Value RopeTables(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  size_t M = typed_length(env, info[2], napi_int32_array, "Int32Array", "positions");
  size_t half = typed_length(env, info[3], napi_float32_array, "Float32Array", "invFreq");
  size_t n = checked_mul(env, M, half, "M*half");
  float* c = f32_array(env, info[0], n, "cos");
  float* s = f32_array(env, info[1], n, "sin");
  const int32_t* pos = i32_array(env, info[2], M, "positions");
  const float* inv = f32_array(env, info[3], half, "invFreq");
  float sc = info[4].IsUndefined() ? 1.0f : float(number_arg(env, info[4], "attentionScaling"));
  rope_tables(c, s, pos, inv, M, half, sc);
  return env.Undefined();
}

// ropeForward(x, cos, sin, M, nheads, Dh, rot = Dh): in place on x; cos/sin [M, rot/2].
template <bool Ref>
Napi::Value RopeForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  size_t M = size_arg(env, info[3], "M"), nh = size_arg(env, info[4], "nheads"), Dh = size_arg(env, info[5], "Dh");
  size_t rot = info.Length() > 6 && !info[6].IsUndefined() ? size_arg(env, info[6], "rot") : Dh;
  if (Dh % 2) throw_error(env, "E_SHAPE", "Dh: must be even");
  if (rot % 2 || rot == 0 || rot > Dh) throw_error(env, "E_SHAPE", "rot: must be even, positive and at most Dh");
  float* x = f32_array(env, info[0], checked_mul(env, checked_mul(env, M, nh, "M*nheads"), Dh, "M*nheads*Dh"), "x");
  size_t nt = checked_mul(env, M, rot / 2, "M*rot/2");
  const float* c = f32_array(env, info[1], nt, "cos");
  const float* s = f32_array(env, info[2], nt, "sin");
  (Ref ? ref::rope_forward : rope_forward)(x, c, s, M, nh, Dh, rot);
  return env.Undefined();
}

// attentionForward(out, lse|null, q, k, v, keyMask|null, B, T, H, Hk, Dh, scale, window = 0)
template <bool Ref>
Napi::Value AttentionForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  size_t B = size_arg(env, info[6], "B"), T = size_arg(env, info[7], "T"), H = size_arg(env, info[8], "H");
  size_t Hk = size_arg(env, info[9], "Hk"), Dh = size_arg(env, info[10], "Dh");
  float scale = float(number_arg(env, info[11], "scale"));
  if (Hk == 0 || H % Hk != 0) throw_error(env, "E_SHAPE", "H must be a positive multiple of Hk");
  size_t M = checked_mul(env, B, T, "B*T");
  size_t nq = checked_mul(env, checked_mul(env, M, H, "B*T*H"), Dh, "B*T*H*Dh");
  size_t nk = checked_mul(env, checked_mul(env, M, Hk, "B*T*Hk"), Dh, "B*T*Hk*Dh");
  float* out = f32_array(env, info[0], nq, "out");
  float* lse = f32_array_or_null(env, info[1], checked_mul(env, M, H, "B*H*T"), "lse");
  const float* q = f32_array(env, info[2], nq, "q");
  const float* k = f32_array(env, info[3], nk, "k");
  const float* v = f32_array(env, info[4], nk, "v");
  const uint8_t* mask = u8_array_or_null(env, info[5], M, "keyMask");
  size_t window = info.Length() > 12 && !info[12].IsUndefined() ? size_arg(env, info[12], "window") : 0;
  (Ref ? ref::attention_forward : attention_forward)(out, lse, q, k, v, mask, B, T, H, Hk, Dh, scale, window);
  return env.Undefined();
}

// activationForward(y, x, kind)
template <bool Ref>
Napi::Value ActivationForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  size_t n = typed_length(env, info[1], napi_float32_array, "Float32Array", "x");
  float* y = f32_array(env, info[0], n, "y");
  const float* x = f32_array(env, info[1], n, "x");
  Activation a = activation_arg(env, info[2], "kind");
  (Ref ? ref::activation_forward : activation_forward)(y, x, n, a);
  return env.Undefined();
}

// gatedForward(y, gate, up, kind)
template <bool Ref>
Napi::Value GatedForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  size_t n = typed_length(env, info[1], napi_float32_array, "Float32Array", "gate");
  float* y = f32_array(env, info[0], n, "y");
  const float* g = f32_array(env, info[1], n, "gate");
  const float* u = f32_array(env, info[2], n, "up");
  Activation a = activation_arg(env, info[3], "kind");
  (Ref ? ref::gated_forward : gated_forward)(y, g, u, n, a);
  return env.Undefined();
}

// logSoftmaxForward(y, x, M, V)
template <bool Ref>
Napi::Value LogSoftmaxForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  size_t M = size_arg(env, info[2], "M"), V = size_arg(env, info[3], "V");
  size_t n = checked_mul(env, M, V, "M*V");
  float* y = f32_array(env, info[0], n, "y");
  const float* x = f32_array(env, info[1], n, "x");
  (Ref ? ref::log_softmax_forward : log_softmax_forward)(y, x, M, V);
  return env.Undefined();
}

// tokenLogprobs(lp, logits, targets, M, V)
Napi::Value TokenLogprobs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  size_t M = size_arg(env, info[3], "M"), V = size_arg(env, info[4], "V");
  float* lp = f32_array(env, info[0], M, "lp");
  const float* lg = f32_array(env, info[1], checked_mul(env, M, V, "M*V"), "logits");
  const int32_t* t = i32_array(env, info[2], M, "targets");
  for (size_t m = 0; m < M; m++)
    if (t[m] >= 0 && size_t(t[m]) >= V)
      throw_error(env, "E_TOKEN_RANGE", "targets[" + std::to_string(m) + "] = " + std::to_string(t[m]) +
                                            " is outside the vocabulary [0, " + std::to_string(V) + ")");
  token_logprobs(lp, lg, t, M, V);
  return env.Undefined();
}

// linearForward(y, x, w [N, K], bias|null, M, N, K)
template <bool Ref>
Napi::Value LinearForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  size_t M = size_arg(env, info[4], "M"), N = size_arg(env, info[5], "N"), K = size_arg(env, info[6], "K");
  float* y = f32_array(env, info[0], checked_mul(env, M, N, "M*N"), "y");
  const float* x = f32_array(env, info[1], checked_mul(env, M, K, "M*K"), "x");
  WeightView w = weight_arg(env, info[2], "w");
  if (!w || w.numel() != checked_mul(env, N, K, "N*K"))
    throw_error(env, "E_SHAPE", "w: expected a tensor of N*K = " + std::to_string(N * K) + " elements");
  const float* bias = f32_array_or_null(env, info[3], N, "bias");
  if (Ref) ref::linear_forward(y, x, w.data, w.dtype, bias, M, N, K, false);
  else linear_forward(y, x, w.data, w.dtype, bias, M, N, K, false);
  return env.Undefined();
}

}  // namespace

STREAMLINE_BINDING(ops) {
  auto set = [&](const char* name, Napi::Value (*fn)(const Napi::CallbackInfo&)) {
    exports.Set(name, Napi::Function::New(env, fn, name));
  };
  set("rmsnormForward", RmsnormForward<false>);
  set("rmsnormForwardRef", RmsnormForward<true>);
  set("layernormForward", LayernormForward<false>);
  set("layernormForwardRef", LayernormForward<true>);
  set("embeddingForward", EmbeddingForward);
  set("ropeTables", RopeTables);
  set("ropeForward", RopeForward<false>);
  set("ropeForwardRef", RopeForward<true>);
  set("attentionForward", AttentionForward<false>);
  set("attentionForwardRef", AttentionForward<true>);
  set("activationForward", ActivationForward<false>);
  set("activationForwardRef", ActivationForward<true>);
  set("gatedForward", GatedForward<false>);
  set("gatedForwardRef", GatedForward<true>);
  set("logSoftmaxForward", LogSoftmaxForward<false>);
  set("logSoftmaxForwardRef", LogSoftmaxForward<true>);
  set("tokenLogprobs", TokenLogprobs);
  set("linearForward", LinearForward<false>);
  set("linearForwardRef", LinearForward<true>);
}
