// Replacement training step and forward (issue 5), off the JS thread:
//   replacementStep(kind, spec, params, grads, x, target, positions, keyMask, ropeInvFreq) -> Promise<loss>
//   replacementForward(kind, spec, params, out, x, positions, keyMask, ropeInvFreq) -> Promise<void>
//   replacementLoss(kind, spec, params, x, target, positions, keyMask, ropeInvFreq) -> Promise<loss>
// replacementStep takes an optional 10th argument gradScale (multiplies spec.gradScale).
//   scratchTrim() -> bytes: frees the work buffers the steps keep for reuse (streamline/scratch.h); scratchBytes() ->
//   bytes held there now.
// kind: 'mlp' | 'layer'. spec: {batch, seqLen, hidden, heads, kvHeads, headDim, intermediate, norm: 'rms'|'layer',
// normEps, activation, gatedMlp, preNorm (must be true), useRope, attnScale, ropeAttentionScaling, gradScale?}
// (the engine's layer spec plus gradScale). params/grads: {role: Float32Array | {data: Float32Array, dtype: 'f32',
// shape}} with the role names of replacement.h; grads accumulate (+=) and may omit roles (frozen). The buffers must not be touched from JS
// until the promise settles.
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "args.h"
#include "async.h"
#include "register.h"
#include "streamline/error.h"
#include "streamline/scratch.h"
#include "replacement_args.h"
#include "streamline/replacement.h"

using namespace streamline;
using namespace streamline::binding;

namespace {

struct Call {
  ReplacementKind kind;
  ReplacementSpec spec;
  ReplacementParams params{};
  ReplacementGrads grads{};
  const float* x = nullptr;
  const int32_t* positions = nullptr;
  const uint8_t* mask = nullptr;
  const float* inv_freq = nullptr;
};

Call common_args(const Napi::CallbackInfo& info, const char* fn, bool step, std::vector<Napi::Value>* keep) {
  Napi::Env env = info.Env();
  Call c;
  c.kind = kind_arg(env, info[0], fn);
  c.spec = spec_arg(env, info[1], c.kind, fn);
  roles_arg(env, info[2], c.kind, c.spec, &c.params, fn, "params", nullptr);
  size_t M = c.spec.B * c.spec.T, D = c.spec.D;
  // x is argument 4 in both calls (grads / out are argument 3).
  c.x = typed<Napi::Float32Array>(env, info[4], napi_float32_array, M * D, std::string(fn) + ": x", "Float32Array").Data();
  size_t pi = step ? 6 : 5;
  bool layer = c.kind == ReplacementKind::Layer;
  if (layer && c.spec.use_rope) {
    c.positions = typed<Napi::Int32Array>(env, info[pi], napi_int32_array, M, std::string(fn) + ": positions", "Int32Array").Data();
    c.inv_freq = typed<Napi::Float32Array>(env, info[pi + 2], napi_float32_array, (c.spec.rotary ? c.spec.rotary : c.spec.Dh) / 2,
                                           std::string(fn) + ": ropeInvFreq", "Float32Array").Data();
  }
  if (!absent(info[pi + 1]))
    c.mask = typed<Napi::Uint8Array>(env, info[pi + 1], napi_uint8_array, M, std::string(fn) + ": keyMask", "Uint8Array").Data();
  for (size_t i = 0; i < info.Length(); i++) keep->push_back(info[i]);
  return c;
}

Napi::Value ReplacementStep(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* fn = "replacementStep";
  std::vector<Napi::Value> keep;
  Call c = common_args(info, fn, true, &keep);
  roles_arg(env, info[3], c.kind, c.spec, &c.grads, fn, "grads", &c.params);
  size_t M = c.spec.B * c.spec.T;
  const float* target =
      typed<Napi::Float32Array>(env, info[5], napi_float32_array, M * c.spec.D, std::string(fn) + ": target", "Float32Array").Data();
  if (!absent(info[9])) {
    double gs = number_arg(env, info[9], "gradScale");
    if (!std::isfinite(gs)) throw_error(env, "E_NATIVE_ARG", std::string(fn) + ": gradScale must be finite");
    c.spec.grad_scale *= float(gs);
  }
  auto loss = std::make_shared<double>(0.0);
  return run_async(
      env, keep,
      [c, target, loss] {
        *loss = replacement_step(c.kind, c.spec, c.params, c.grads, c.x, target, c.positions, c.mask, c.inv_freq);
      },
      [loss](Napi::Env e) -> Napi::Value { return Napi::Number::New(e, *loss); });
}

Napi::Value ReplacementForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* fn = "replacementForward";
  std::vector<Napi::Value> keep;
  Call c = common_args(info, fn, false, &keep);
  float* out = typed<Napi::Float32Array>(env, info[3], napi_float32_array, c.spec.B * c.spec.T * c.spec.D,
                                         std::string(fn) + ": out", "Float32Array").Data();
  return run_async(env, keep, [c, out] {
    replacement_forward(c.kind, c.spec, c.params, out, c.x, c.positions, c.mask, c.inv_freq);
  });
}

// replacementLoss(kind, spec, params, x, target, positions, keyMask, ropeInvFreq) -> Promise<loss>: forward
// and loss only (validation).
Napi::Value ReplacementLoss(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* fn = "replacementLoss";
  std::vector<Napi::Value> keep;
  // Same layout as replacementForward with `target` in place of `out`, x at index 3 there and 4 here: shift.
  Call c;
  c.kind = kind_arg(env, info[0], fn);
  c.spec = spec_arg(env, info[1], c.kind, fn);
  roles_arg(env, info[2], c.kind, c.spec, &c.params, fn, "params", nullptr);
  size_t M = c.spec.B * c.spec.T, D = c.spec.D;
  c.x = typed<Napi::Float32Array>(env, info[3], napi_float32_array, M * D, std::string(fn) + ": x", "Float32Array").Data();
  const float* target =
      typed<Napi::Float32Array>(env, info[4], napi_float32_array, M * D, std::string(fn) + ": target", "Float32Array").Data();
  if (c.kind == ReplacementKind::Layer && c.spec.use_rope) {
    c.positions = typed<Napi::Int32Array>(env, info[5], napi_int32_array, M, std::string(fn) + ": positions", "Int32Array").Data();
    c.inv_freq = typed<Napi::Float32Array>(env, info[7], napi_float32_array, (c.spec.rotary ? c.spec.rotary : c.spec.Dh) / 2,
                                           std::string(fn) + ": ropeInvFreq", "Float32Array").Data();
  }
  if (!absent(info[6]))
    c.mask = typed<Napi::Uint8Array>(env, info[6], napi_uint8_array, M, std::string(fn) + ": keyMask", "Uint8Array").Data();
  for (size_t i = 0; i < info.Length(); i++) keep.push_back(info[i]);
  auto loss = std::make_shared<double>(0.0);
  return run_async(
      env, keep,
      [c, target, loss] {
        *loss = replacement_loss(c.kind, c.spec, c.params, c.x, target, c.positions, c.mask, c.inv_freq);
      },
      [loss](Napi::Env e) -> Napi::Value { return Napi::Number::New(e, *loss); });
}

}  // namespace

Napi::Value ScratchTrim(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), double(scratch_trim()));
}
Napi::Value ScratchBytes(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), double(scratch_cached_bytes()));
}

STREAMLINE_BINDING(replacement) {
  exports.Set("replacementLoss", Napi::Function::New(env, ReplacementLoss, "replacementLoss"));
  exports.Set("replacementStep", Napi::Function::New(env, ReplacementStep, "replacementStep"));
  exports.Set("replacementForward", Napi::Function::New(env, ReplacementForward, "replacementForward"));
  exports.Set("scratchTrim", Napi::Function::New(env, ScratchTrim, "scratchTrim"));
  exports.Set("scratchBytes", Napi::Function::New(env, ScratchBytes, "scratchBytes"));
}
