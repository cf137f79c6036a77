// The `lm` training objective (issue 9, lm_loss.h), off the JS thread:
//   lmLossStep(kind, spec, params, grads, x, layers, headWeights, targets, positions, keyMask, ropeInvFreq,
//              gradScale?) -> Promise<loss>
//   lmLossEval(kind, spec, params, x, layers, headWeights, targets, positions, keyMask, ropeInvFreq) -> Promise<loss>
//   frozenLayerBackward(dx, dy, x, spec, weights, positions, keyMask, ropeInvFreq) -> Promise<void>
//   headLossBackward(dh | null, x, M, spec, headWeights, targets, gradScale?) -> Promise<loss>
// kind, spec, params and grads as replacementStep (binding_replacement.cpp); x = h[s] [batch*seqLen*hidden];
// layers: the frozen layers after the window, in order, each {role: {data, dtype, shape}} (any float dtype, read
// in place; the same spec as the replacement); headWeights: {'final_norm.weight'?, 'final_norm.bias'?,
// 'lm_head.weight'} (no final norm when 'final_norm.weight' is absent); targets: Int32Array [batch*seqLen], the
// next token of each row or -1. The loss is the mean next-token NLL over rows with a target. The frozen layers' own
// sliding windows and RoPE come in spec.tailWindows, spec.tailRopeInvFreq and spec.tailRopeAttentionScaling.
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "args.h"
#include "arrays.h"
#include "async.h"
#include "layer_args.h"
#include "lm_args.h"
#include "register.h"
#include "replacement_args.h"
#include "streamline/error.h"
#include "streamline/lm_loss.h"

using namespace streamline;
using namespace streamline::binding;

namespace {

struct LmCall {
  ReplacementKind kind;
  ReplacementSpec spec;
  ReplacementParams params{};
  ReplacementGrads grads{};
  const float* x = nullptr;
  std::shared_ptr<FrozenTail> tail;
  const int32_t* targets = nullptr;
  const int32_t* positions = nullptr;
  const uint8_t* mask = nullptr;
  const float* inv_freq = nullptr;
};

// a: index of x; the frozen layers, head weights, targets, positions, keyMask and ropeInvFreq follow it.
LmCall lm_args(const Napi::CallbackInfo& info, const char* fn, size_t a, std::vector<Napi::Value>* keep) {
  Napi::Env env = info.Env();
  LmCall c;
  c.kind = kind_arg(env, info[0], fn);
  c.spec = spec_arg(env, info[1], c.kind, fn);
  roles_arg(env, info[2], c.kind, c.spec, &c.params, fn, "params", nullptr);
  const size_t M = c.spec.B * c.spec.T, D = c.spec.D;
  c.x = typed<Napi::Float32Array>(env, info[a], napi_float32_array, M * D, std::string(fn) + ": x", "Float32Array").Data();
  c.tail = std::make_shared<FrozenTail>();
  ReplacementSpec ls = c.spec;  // the frozen layers are full decoder layers of the same model
  if (c.kind == ReplacementKind::MLP) {
    Napi::Object so = info[1].As<Napi::Object>();
    if (absent(so.Get("heads")) && info[a + 1].IsArray() && info[a + 1].As<Napi::Array>().Length() > 0)
      throw_error(env, "E_NATIVE_ARG", std::string(fn) + ": spec.heads, kvHeads and headDim are required with frozen layers");
    if (!absent(so.Get("heads"))) ls = spec_arg(env, info[1], ReplacementKind::Layer, fn);
  }
  c.tail->layer = layer_spec_of(ls);
  if (!info[a + 1].IsArray()) throw_error(env, "E_NATIVE_ARG", std::string(fn) + ": layers must be an array of weight objects");
  Napi::Array layers = info[a + 1].As<Napi::Array>();
  for (uint32_t k = 0; k < layers.Length(); k++) {
    std::string what = std::string(fn) + ": layers[" + std::to_string(k) + "]";
    c.tail->layers.push_back(layer_weights(env, layers.Get(k), keep, what));
    rethrow(env, [&] {
      try {
        validate_layer(c.tail->layer, c.tail->layers.back());
      } catch (const Error& e) {
        throw Error(e.code, what + ": " + e.what());
      }
    });
  }
  // spec.tailWindows: the frozen layers' sliding windows (absent = none); layer_spec_of gave every layer the
  // replacement's own window, which is not theirs
  c.tail->layer.window = 0;
  Napi::Value tw = info[1].As<Napi::Object>().Get("tailWindows");
  if (!absent(tw)) {
    const std::vector<int64_t> w = window_list(env, tw, std::string(fn) + ": spec.tailWindows");
    if (w.size() != layers.Length())
      throw_error(env, "E_NATIVE_ARG", std::string(fn) + ": spec.tailWindows must have one window per frozen layer (" +
                                           std::to_string(layers.Length()) + "), got " + std::to_string(w.size()));
    c.tail->windows.assign(w.begin(), w.end());
  }
  // spec.tailRopeInvFreq / spec.tailRopeAttentionScaling: the frozen layers' own RoPE (absent = the replacement's
  // ropeInvFreq and ropeAttentionScaling for all); one entry per frozen layer, a null entry = the replacement's.
  const std::string rot_what = std::string(fn) + ": spec.tailRopeInvFreq";
  Napi::Value tf = info[1].As<Napi::Object>().Get("tailRopeInvFreq");
  if (!absent(tf)) {
    if (!ls.use_rope) throw_error(env, "E_NATIVE_ARG", rot_what + ": given for layers without RoPE (spec.useRope false)");
    if (!tf.IsArray() || tf.As<Napi::Array>().Length() != layers.Length())
      throw_error(env, "E_NATIVE_ARG", rot_what + " must be an array with one Float32Array (or null) per frozen layer (" +
                                           std::to_string(layers.Length()) + ")");
    Napi::Array a = tf.As<Napi::Array>();
    const size_t half = (ls.rotary ? ls.rotary : ls.Dh) / 2;
    c.tail->inv_freqs.resize(a.Length());
    for (uint32_t k = 0; k < a.Length(); k++) {
      if (absent(a.Get(k))) continue;
      const float* f = typed<Napi::Float32Array>(env, a.Get(k), napi_float32_array, half, rot_what + "[" + std::to_string(k) + "]", "Float32Array").Data();
      c.tail->inv_freqs[k].assign(f, f + half);
    }
  }
  Napi::Value ts = info[1].As<Napi::Object>().Get("tailRopeAttentionScaling");
  if (!absent(ts)) {
    const std::string what = std::string(fn) + ": spec.tailRopeAttentionScaling";
    if (!ts.IsArray() || ts.As<Napi::Array>().Length() != layers.Length())
      throw_error(env, "E_NATIVE_ARG", what + " must be an array with one number per frozen layer (" + std::to_string(layers.Length()) + ")");
    Napi::Array a = ts.As<Napi::Array>();
    c.tail->rope_scalings.resize(a.Length());
    for (uint32_t k = 0; k < a.Length(); k++) {
      const double v = number_arg(env, a.Get(k), (what + "[]").c_str());
      if (!std::isfinite(v)) throw_error(env, "E_NATIVE_ARG", what + " entries must be finite");
      c.tail->rope_scalings[k] = float(v);
    }
  }
  c.tail->head_w = lm_head_weights(env, info[a + 2], keep, std::string(fn) + ": headWeights");
  c.tail->head = lm_head_spec(c.spec, c.tail->head_w);
  rethrow(env, [&] { validate_head(c.tail->head, c.tail->head_w); });
  c.targets = typed<Napi::Int32Array>(env, info[a + 3], napi_int32_array, M, std::string(fn) + ": targets", "Int32Array").Data();
  for (size_t m = 0; m < M; m++)
    if (c.targets[m] >= 0 && size_t(c.targets[m]) >= c.tail->head.vocab)
      throw_error(env, "E_TOKEN_RANGE", std::string(fn) + ": targets[" + std::to_string(m) + "] = " + std::to_string(c.targets[m]) +
                                            " is outside the vocabulary [0, " + std::to_string(c.tail->head.vocab) + ")");
  if (c.spec.use_rope || ls.use_rope) {
    c.positions = typed<Napi::Int32Array>(env, info[a + 4], napi_int32_array, M, std::string(fn) + ": positions", "Int32Array").Data();
    c.inv_freq = typed<Napi::Float32Array>(env, info[a + 6], napi_float32_array, (ls.rotary ? ls.rotary : ls.Dh) / 2, std::string(fn) + ": ropeInvFreq", "Float32Array").Data();
  }
  if (!absent(info[a + 5]))
    c.mask = typed<Napi::Uint8Array>(env, info[a + 5], napi_uint8_array, M, std::string(fn) + ": keyMask", "Uint8Array").Data();
  for (size_t i = 0; i < info.Length(); i++) keep->push_back(info[i]);
  return c;
}

Napi::Value LmLossStep(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* fn = "lmLossStep";
  std::vector<Napi::Value> keep;
  LmCall c = lm_args(info, fn, 4, &keep);
  roles_arg(env, info[3], c.kind, c.spec, &c.grads, fn, "grads", &c.params);
  if (!absent(info[11])) {
    double gs = number_arg(env, info[11], "gradScale");
    if (!std::isfinite(gs)) throw_error(env, "E_NATIVE_ARG", std::string(fn) + ": gradScale must be finite");
    c.spec.grad_scale *= float(gs);
  }
  auto loss = std::make_shared<double>(0.0);
  return run_async(
      env, keep,
      [c, loss] {
        *loss = lm_loss_step(c.kind, c.spec, c.params, c.grads, c.x, *c.tail, c.targets, c.positions, c.mask, c.inv_freq);
      },
      [loss](Napi::Env e) -> Napi::Value { return Napi::Number::New(e, *loss); });
}

Napi::Value LmLossEval(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::vector<Napi::Value> keep;
  LmCall c = lm_args(info, "lmLossEval", 3, &keep);
  auto loss = std::make_shared<double>(0.0);
  return run_async(
      env, keep,
      [c, loss] { *loss = lm_loss_eval(c.kind, c.spec, c.params, c.x, *c.tail, c.targets, c.positions, c.mask, c.inv_freq); },
      [loss](Napi::Env e) -> Napi::Value { return Napi::Number::New(e, *loss); });
}

// frozenLayerBackward(dx, dy, x, spec, weights, positions, keyMask, ropeInvFreq): spec as replacementStep's.
Napi::Value FrozenLayerBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* fn = "frozenLayerBackward";
  std::vector<Napi::Value> keep;
  ReplacementSpec rs = spec_arg(env, info[3], ReplacementKind::Layer, fn);
  LayerSpec s = layer_spec_of(rs);
  LayerWeights w = layer_weights(env, info[4], &keep, std::string(fn) + ": weights");
  rethrow(env, [&] { validate_layer(s, w); });
  const size_t M = rs.B * rs.T, n = M * rs.D;
  float* dx = typed<Napi::Float32Array>(env, info[0], napi_float32_array, n, std::string(fn) + ": dx", "Float32Array").Data();
  const float* dy = typed<Napi::Float32Array>(env, info[1], napi_float32_array, n, std::string(fn) + ": dy", "Float32Array").Data();
  const float* x = typed<Napi::Float32Array>(env, info[2], napi_float32_array, n, std::string(fn) + ": x", "Float32Array").Data();
  const int32_t* pos = nullptr;
  const float* inv = nullptr;
  if (rs.use_rope) {
    pos = typed<Napi::Int32Array>(env, info[5], napi_int32_array, M, std::string(fn) + ": positions", "Int32Array").Data();
    inv = typed<Napi::Float32Array>(env, info[7], napi_float32_array, (rs.rotary ? rs.rotary : rs.Dh) / 2, std::string(fn) + ": ropeInvFreq", "Float32Array").Data();
  }
  const uint8_t* mask = absent(info[6]) ? nullptr
      : typed<Napi::Uint8Array>(env, info[6], napi_uint8_array, M, std::string(fn) + ": keyMask", "Uint8Array").Data();
  for (size_t i = 0; i < info.Length(); i++) keep.push_back(info[i]);
  return run_async(env, keep, [=] { frozen_layer_backward(dx, dy, x, s, w, pos, mask, inv); });
}

// headLossBackward(dh | null, x, M, spec {hidden, norm, normEps}, headWeights, targets, gradScale?) -> loss
// (-1 when no row has a target).
Napi::Value HeadLossBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* fn = "headLossBackward";
  std::vector<Napi::Value> keep;
  const size_t M = size_t(int_arg(env, info[2], "M"));
  if (!info[3].IsObject()) throw_error(env, "E_NATIVE_ARG", std::string(fn) + ": spec must be an object");
  Napi::Object so = info[3].As<Napi::Object>();
  ReplacementSpec rs;
  rs.D = spec_dim(env, so, "hidden", true, fn);
  std::string norm = spec_str(env, so, "norm", fn);
  if (norm != "rms" && norm != "layer") throw_error(env, "E_NATIVE_ARG", std::string(fn) + ": spec.norm must be 'rms' or 'layer'");
  rs.layer_norm = norm == "layer";
  rs.norm_eps = float(spec_num(env, so, "normEps", 1e-5, fn));
  HeadWeights w = lm_head_weights(env, info[4], &keep, std::string(fn) + ": headWeights");
  HeadSpec s = lm_head_spec(rs, w);
  rethrow(env, [&] { validate_head(s, w); });
  float* dh = absent(info[0]) ? nullptr
      : typed<Napi::Float32Array>(env, info[0], napi_float32_array, M * rs.D, std::string(fn) + ": dh", "Float32Array").Data();
  const float* x = typed<Napi::Float32Array>(env, info[1], napi_float32_array, M * rs.D, std::string(fn) + ": x", "Float32Array").Data();
  const int32_t* targets = typed<Napi::Int32Array>(env, info[5], napi_int32_array, M, std::string(fn) + ": targets", "Int32Array").Data();
  float gs = absent(info[6]) ? 1.f : float(number_arg(env, info[6], "gradScale"));
  for (size_t i = 0; i < info.Length(); i++) keep.push_back(info[i]);
  auto loss = std::make_shared<double>(0.0);
  return run_async(
      env, keep, [=] { *loss = head_loss_backward(dh, x, M, s, w, targets, gs); },
      [loss](Napi::Env e) -> Napi::Value { return Napi::Number::New(e, *loss); });
}

}  // namespace

STREAMLINE_BINDING(lmloss) {
  exports.Set("lmLossStep", Napi::Function::New(env, LmLossStep, "lmLossStep"));
  exports.Set("lmLossEval", Napi::Function::New(env, LmLossEval, "lmLossEval"));
  exports.Set("frozenLayerBackward", Napi::Function::New(env, FrozenLayerBackward, "frozenLayerBackward"));
  exports.Set("headLossBackward", Napi::Function::New(env, HeadLossBackward, "headLossBackward"));
}
