// Asynchronous bindings of whole decoder layers, the MLP block and the model head. Arguments are checked on
// the JS thread (spec, every weight's dtype and shape, every array length); the work runs on a libuv thread
// and settles a Promise. The JS objects are kept alive until it settles.
#include <string>
#include <vector>

#include "args.h"
#include "arrays.h"
#include "async.h"
#include "layer_args.h"
#include "register.h"
#include "streamline/error.h"
#include "streamline/model.h"

using namespace streamline;
using namespace streamline::binding;

namespace {

// decoderLayerForward(out, x, spec, weights, positions, keyMask|null, ropeInvFreq|null, captures|null)
Napi::Value DecoderLayerForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::vector<Napi::Value> keep = {info[0], info[1]};
  LayerSpec s = layer_spec(env, info[2]);
  if (s.heads == 0) throw_error(env, "E_NATIVE_ARG", "spec.heads: required for a decoder layer");
  LayerWeights w = layer_weights(env, info[3], &keep);
  rethrow(env, [&] { validate_layer(s, w); });
  size_t M = checked_mul(env, s.batch, s.seq_len, "batch*seqLen");
  size_t n = checked_mul(env, M, s.hidden, "batch*seqLen*hidden");
  float* out = f32_array(env, info[0], n, "out");
  const float* x = f32_array(env, info[1], n, "x");
  const int32_t* pos = nullptr;
  const float* inv = nullptr;
  if (s.use_rope || !is_nullish(info[4])) { pos = i32_array(env, info[4], M, "positions"); keep.push_back(info[4]); }
  if (s.use_rope) { inv = f32_array(env, info[6], (s.rotary_dim ? s.rotary_dim : s.head_dim) / 2, "ropeInvFreq"); keep.push_back(info[6]); }
  const uint8_t* mask = u8_array_or_null(env, info[5], M, "keyMask");
  if (mask) keep.push_back(info[5]);
  LayerCaptures cap;
  if (!is_nullish(info[7])) {
    if (!info[7].IsObject()) throw_error(env, "E_NATIVE_ARG", "captures: expected an object or null");
    Napi::Object c = info[7].As<Napi::Object>();
    cap.attn_residual = f32_array_or_null(env, c.Get("attnResidual"), n, "captures.attnResidual");
    cap.mlp_out = f32_array_or_null(env, c.Get("mlpOut"), n, "captures.mlpOut");
    keep.push_back(info[7]);
  }
  return run_async(env, keep, [=] {
    LayerCaptures c = cap;
    decoder_layer_forward(out, x, s, w, pos, mask, inv, &c);
  });
}

// mlpBlockForward(out, x, spec, weights, mlpOut?) ; spec needs batch, seqLen, hidden, intermediate, norm,
// normEps, activation, gatedMlp, preNorm.
Napi::Value MlpBlockForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::vector<Napi::Value> keep = {info[0], info[1]};
  LayerSpec s = layer_spec(env, info[2]);
  LayerWeights w = layer_weights(env, info[3], &keep);
  rethrow(env, [&] { validate_layer(s, w, true); });
  size_t n = checked_mul(env, checked_mul(env, s.batch, s.seq_len, "batch*seqLen"), s.hidden, "batch*seqLen*hidden");
  float* out = f32_array(env, info[0], n, "out");
  const float* x = f32_array(env, info[1], n, "x");
  float* mo = f32_array_or_null(env, info[4], n, "mlpOut");
  if (mo) keep.push_back(info[4]);
  return run_async(env, keep, [=] { mlp_block_forward(out, x, s, w, mo); });
}

// headForward(x, M, spec {hidden, vocab, norm, normEps, projDim?}, weights, targets|null, logitsOut|null,
//             logprobsOut|null)
Napi::Value HeadForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::vector<Napi::Value> keep = {info[0]};
  size_t M = size_arg(env, info[1], "M");
  HeadSpec s = head_spec(env, info[2]);
  HeadWeights w = head_weights(env, info[3], &keep);
  rethrow(env, [&] { validate_head(s, w); });
  const float* x = f32_array(env, info[0], checked_mul(env, M, s.hidden, "M*hidden"), "x");
  const int32_t* targets = is_nullish(info[4]) ? nullptr : i32_array(env, info[4], M, "targets");
  float* logits = f32_array_or_null(env, info[5], checked_mul(env, M, s.vocab, "M*vocab"), "logitsOut");
  float* lp = f32_array_or_null(env, info[6], M, "logprobsOut");
  if (lp && !targets) throw_error(env, "E_NATIVE_ARG", "targets: required with logprobsOut");
  if (targets)
    for (size_t m = 0; m < M; m++)
      if (targets[m] >= 0 && size_t(targets[m]) >= s.vocab)
        throw_error(env, "E_TOKEN_RANGE", "targets[" + std::to_string(m) + "] = " + std::to_string(targets[m]) +
                                              " is outside the vocabulary [0, " + std::to_string(s.vocab) + ")");
  for (int i = 4; i <= 6; i++)
    if (!is_nullish(info[i])) keep.push_back(info[i]);
  return run_async(env, keep, [=] { head_forward(x, M, s, w, targets, logits, lp); });
}

}  // namespace

STREAMLINE_BINDING(model) {
  exports.Set("decoderLayerForward", Napi::Function::New(env, DecoderLayerForward, "decoderLayerForward"));
  exports.Set("mlpBlockForward", Napi::Function::New(env, MlpBlockForward, "mlpBlockForward"));
  exports.Set("headForward", Napi::Function::New(env, HeadForward, "headForward"));
}
