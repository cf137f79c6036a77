// Layer and head arguments shared by the CPU model bindings (binding_model.cpp) and the CUDA context
// (binding_cuda.cpp): the JS spec objects and {role: tensor} weight objects, read the same way for both
// backends so a spec that runs on one is accepted by the other.
#pragma once
#include <napi.h>

#include <string>
#include <vector>

#include "args.h"
#include "arrays.h"
#include "streamline/error.h"
#include "streamline/model.h"

namespace streamline::binding {

inline size_t size_field(Napi::Env env, Napi::Object o, const char* name) {
  return size_arg(env, o.Get(name), (std::string("spec.") + name).c_str());
}
inline bool bool_field(Napi::Env env, Napi::Object o, const char* name, bool def) {
  Napi::Value v = o.Get(name);
  if (is_nullish(v)) return def;
  if (!v.IsBoolean()) throw_error(env, "E_NATIVE_ARG", std::string("spec.") + name + ": expected a boolean");
  return v.As<Napi::Boolean>().Value();
}
inline float number_field(Napi::Env env, Napi::Object o, const char* name, float def) {
  Napi::Value v = o.Get(name);
  if (is_nullish(v)) return def;
  return float(number_arg(env, v, (std::string("spec.") + name).c_str()));
}

// The engine's layer spec; without `heads` it describes the MLP block only.
inline LayerSpec layer_spec(Napi::Env env, Napi::Value v) {
  if (!v.IsObject()) throw_error(env, "E_NATIVE_ARG", "spec: expected an object");
  Napi::Object o = v.As<Napi::Object>();
  LayerSpec s;
  s.batch = size_field(env, o, "batch");
  s.seq_len = size_field(env, o, "seqLen");
  s.hidden = size_field(env, o, "hidden");
  s.intermediate = size_field(env, o, "intermediate");
  bool mlp_only = is_nullish(o.Get("heads"));
  if (!mlp_only) {
    s.heads = size_field(env, o, "heads");
    s.kv_heads = size_field(env, o, "kvHeads");
    s.head_dim = size_field(env, o, "headDim");
  }
  s.norm = norm_arg(env, o.Get("norm"), "spec.norm");
  s.norm_eps = number_field(env, o, "normEps", 1e-5f);
  s.act = activation_arg(env, o.Get("activation"), "spec.activation");
  s.gated_mlp = bool_field(env, o, "gatedMlp", true);
  s.pre_norm = bool_field(env, o, "preNorm", true);
  s.use_rope = bool_field(env, o, "useRope", true);
  s.attn_scale = number_field(env, o, "attnScale", 0.0f);
  s.rope_attention_scaling = number_field(env, o, "ropeAttentionScaling", 1.0f);
  if (!is_nullish(o.Get("window"))) s.window = size_field(env, o, "window");
  if (!is_nullish(o.Get("rotaryDim"))) s.rotary_dim = size_field(env, o, "rotaryDim");
  return s;
}

// weights: {role: tensor | null}; unknown roles are an error (a misspelt role must not be silently dropped).
// The data of every present tensor is appended to *keep so it outlives an asynchronous call.
// `what` names the argument in error messages (e.g. "lmLossStep: tailLayers[2]").
inline LayerWeights layer_weights(Napi::Env env, Napi::Value v, std::vector<Napi::Value>* keep,
                                  const std::string& what = "weights") {
  if (!v.IsObject()) throw_error(env, "E_NATIVE_ARG", what + ": expected an object {role: tensor}");
  Napi::Object o = v.As<Napi::Object>();
  LayerWeights w;
  Napi::Array names = o.GetPropertyNames();
  for (uint32_t i = 0; i < names.Length(); i++) {
    std::string role = names.Get(i).As<Napi::String>().Utf8Value();
    WeightView* slot = layer_weight_role(w, role);
    if (!slot) {
      std::string known;
      for (auto& r : layer_weight_roles()) known += (known.empty() ? "" : ", ") + r;
      throw_error(env, "E_NATIVE_ARG", what + ": unknown role '" + role + "' (known: " + known + ")");
    }
    Napi::Value t = o.Get(role);
    *slot = weight_arg(env, t, role.c_str());
    if (*slot) keep->push_back(t.As<Napi::Object>().Get("data"));
  }
  return w;
}

// {hidden, vocab, norm: 'rms' | 'layer' | 'none', normEps, projDim?}
inline HeadSpec head_spec(Napi::Env env, Napi::Value v) {
  if (!v.IsObject()) throw_error(env, "E_NATIVE_ARG", "spec: expected an object");
  Napi::Object so = v.As<Napi::Object>();
  HeadSpec s;
  s.hidden = size_field(env, so, "hidden");
  s.vocab = size_field(env, so, "vocab");
  s.proj_dim = is_nullish(so.Get("projDim")) ? 0 : size_field(env, so, "projDim");
  Napi::Value nv = so.Get("norm");
  if (nv.IsString() && nv.As<Napi::String>().Utf8Value() == "none") s.final_norm = false;
  else s.norm = norm_arg(env, nv, "spec.norm");
  s.norm_eps = number_field(env, so, "normEps", 1e-5f);
  return s;
}

inline HeadWeights head_weights(Napi::Env env, Napi::Value v, std::vector<Napi::Value>* keep,
                                const std::string& what = "weights") {
  if (!v.IsObject()) throw_error(env, "E_NATIVE_ARG", what + ": expected an object {role: tensor}");
  Napi::Object wo = v.As<Napi::Object>();
  HeadWeights w;
  Napi::Array names = wo.GetPropertyNames();
  for (uint32_t i = 0; i < names.Length(); i++) {
    std::string role = names.Get(i).As<Napi::String>().Utf8Value();
    WeightView* slot = role == "final_norm.weight" ? &w.norm_w : role == "final_norm.bias" ? &w.norm_b
                     : role == "project_out.weight" ? &w.project_out : role == "lm_head.weight" ? &w.lm_head : nullptr;
    if (!slot)
      throw_error(env, "E_NATIVE_ARG", what + ": unknown role '" + role +
                                           "' (known: final_norm.weight, final_norm.bias, project_out.weight, lm_head.weight)");
    Napi::Value t = wo.Get(role);
    *slot = weight_arg(env, t, role.c_str());
    if (*slot) keep->push_back(t.As<Napi::Object>().Get("data"));
  }
  return w;
}

// Runs f, turning a streamline::Error into a coded JS error.
template <typename F>
void rethrow(Napi::Env env, F&& f) {
  try {
    f();
  } catch (const Error& e) {
    throw_error(env, e.code.c_str(), e.what());
  }
}

}  // namespace streamline::binding
