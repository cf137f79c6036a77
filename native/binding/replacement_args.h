// Argument readers shared by the replacement bindings (binding_replacement.cpp, binding_lmloss.cpp): kind,
// spec and f32 parameters/gradients by role. Each throws a coded JS error naming the function and argument.
#pragma once
#include <napi.h>

#include <cmath>
#include <string>
#include <vector>

#include "args.h"
#include "streamline/replacement.h"

namespace streamline::binding {

inline bool absent(const Napi::Value& v) { return v.IsNull() || v.IsUndefined(); }

template <typename Arr>
inline Arr typed(Napi::Env env, const Napi::Value& v, napi_typedarray_type type, size_t n, const std::string& what,
          const char* type_name) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type)
    throw_error(env, "E_NATIVE_ARG", what + " must be a " + type_name);
  Arr a = v.As<Arr>();
  if (a.ElementLength() != n)
    throw_error(env, "E_SHAPE", what + " has " + std::to_string(a.ElementLength()) + " elements, expected " +
                                    std::to_string(n));
  return a;
}

inline size_t spec_dim(Napi::Env env, Napi::Object o, const char* key, bool required, const char* fn) {
  Napi::Value v = o.Get(key);
  if (absent(v)) {
    if (required) throw_error(env, "E_NATIVE_ARG", std::string(fn) + ": spec." + key + " is required");
    return 0;
  }
  int64_t d = int_arg(env, v, key);
  if (d < 0 || (required && d == 0))
    throw_error(env, "E_SHAPE", std::string(fn) + ": spec." + key + " must be a positive integer");
  return size_t(d);
}

// An array of sliding windows (keys per query, 0 = none), each >= 0; `what` names it in errors.
inline std::vector<int64_t> window_list(Napi::Env env, const Napi::Value& v, const std::string& what) {
  if (!v.IsArray()) throw_error(env, "E_NATIVE_ARG", what + " must be an array of windows (numbers >= 0)");
  Napi::Array a = v.As<Napi::Array>();
  std::vector<int64_t> out(a.Length());
  for (uint32_t k = 0; k < a.Length(); k++) {
    out[k] = int_arg(env, a.Get(k), (what + "[]").c_str());
    if (out[k] < 0) throw_error(env, "E_NATIVE_ARG", what + " entries must be >= 0");
  }
  return out;
}

inline double spec_num(Napi::Env env, Napi::Object o, const char* key, double dflt, const char* fn) {
  Napi::Value v = o.Get(key);
  if (absent(v)) return dflt;
  double d = number_arg(env, v, key);
  if (!std::isfinite(d)) throw_error(env, "E_NATIVE_ARG", std::string(fn) + ": spec." + key + " must be finite");
  return d;
}

inline bool spec_bool(Napi::Env env, Napi::Object o, const char* key, bool dflt, const char* fn) {
  Napi::Value v = o.Get(key);
  if (absent(v)) return dflt;
  if (!v.IsBoolean()) throw_error(env, "E_NATIVE_ARG", std::string(fn) + ": spec." + key + " must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

inline std::string spec_str(Napi::Env env, Napi::Object o, const char* key, const char* fn) {
  Napi::Value v = o.Get(key);
  if (!v.IsString()) throw_error(env, "E_NATIVE_ARG", std::string(fn) + ": spec." + key + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

inline ReplacementKind kind_arg(Napi::Env env, const Napi::Value& v, const char* fn) {
  std::string k = v.IsString() ? v.As<Napi::String>().Utf8Value() : "";
  if (k == "mlp") return ReplacementKind::MLP;
  if (k == "layer") return ReplacementKind::Layer;
  throw_error(env, "E_NATIVE_ARG", std::string(fn) + ": kind must be 'mlp' or 'layer'");
}

inline ReplacementSpec spec_arg(Napi::Env env, const Napi::Value& v, ReplacementKind kind, const char* fn) {
  if (!v.IsObject()) throw_error(env, "E_NATIVE_ARG", std::string(fn) + ": spec must be an object");
  Napi::Object o = v.As<Napi::Object>();
  bool layer = kind == ReplacementKind::Layer;
  ReplacementSpec s;
  s.B = spec_dim(env, o, "batch", true, fn);
  s.T = spec_dim(env, o, "seqLen", true, fn);
  s.D = spec_dim(env, o, "hidden", true, fn);
  s.F = spec_dim(env, o, "intermediate", true, fn);
  s.H = spec_dim(env, o, "heads", layer, fn);
  s.Hk = spec_dim(env, o, "kvHeads", layer, fn);
  s.Dh = spec_dim(env, o, "headDim", layer, fn);
  std::string norm = spec_str(env, o, "norm", fn);
  if (norm != "rms" && norm != "layer")
    throw_error(env, "E_NATIVE_ARG", std::string(fn) + ": spec.norm must be 'rms' or 'layer', got '" + norm + "'");
  s.layer_norm = norm == "layer";
  double eps = spec_num(env, o, "normEps", 1e-5, fn);
  if (!(eps >= 0)) throw_error(env, "E_NATIVE_ARG", std::string(fn) + ": spec.normEps must be >= 0");
  s.norm_eps = float(eps);
  std::string act = spec_str(env, o, "activation", fn);
  if (act == "silu") s.act = Activation::SiLU;
  else if (act == "relu") s.act = Activation::ReLU;
  else if (act == "gelu") s.act = Activation::GELU;
  else if (act == "gelu_tanh") s.act = Activation::GELUTanh;
  else throw_error(env, "E_NATIVE_ARG", std::string(fn) + ": spec.activation must be silu, relu, gelu or gelu_tanh, got '" + act + "'");
  s.gated = spec_bool(env, o, "gatedMlp", true, fn);
  if (!spec_bool(env, o, "preNorm", true, fn))
    throw_error(env, "E_UNSUPPORTED", std::string(fn) + ": post-norm layers (OPT with do_layer_norm_before = false) "
                                                        "cannot be trained as replacements");
  if (layer) {
    if (s.H % s.Hk != 0)
      throw_error(env, "E_SHAPE", std::string(fn) + ": spec.heads must be a multiple of spec.kvHeads");
    s.use_rope = spec_bool(env, o, "useRope", true, fn);
    if (s.use_rope && s.Dh % 2 != 0) throw_error(env, "E_SHAPE", std::string(fn) + ": spec.headDim must be even for RoPE");
    double scale = spec_num(env, o, "attnScale", 0.0, fn);  // 0 or absent: 1/sqrt(headDim), as the engine's spec
    s.attn_scale = float(scale != 0.0 ? scale : 1.0 / std::sqrt(double(s.Dh)));
    s.rope_attention_scaling = float(spec_num(env, o, "ropeAttentionScaling", 1.0, fn));
    s.window = spec_dim(env, o, "window", false, fn);
    s.rotary = spec_dim(env, o, "rotaryDim", false, fn);
    if (s.rotary % 2 != 0 || s.rotary > s.Dh)
      throw_error(env, "E_SHAPE", std::string(fn) + ": spec.rotaryDim must be even and at most spec.headDim (0 or absent: headDim)");
  } else {
    s.use_rope = false;
  }
  s.grad_scale = float(spec_num(env, o, "gradScale", 1.0, fn));
  return s;
}

inline bool role_used(ReplacementKind kind, const ReplacementSpec& s, int r) {
  bool layer = kind == ReplacementKind::Layer;
  if (r <= kRoleOB) return layer && !(r == kRoleAttnNormB && !s.layer_norm);
  if (r == kRoleQNormW || r == kRoleKNormW) return layer && !s.layer_norm;  // Qwen3's q/k RMSNorms
  if (r == kRolePostAttnNormW) return layer;  // an mlp replacement has no attention output to norm
  if (r == kRoleMlpNormB) return s.layer_norm;
  if (r == kRoleGateW) return s.gated;
  return true;
}

inline bool role_required(ReplacementKind kind, const ReplacementSpec& s, int r) {
  if (kind == ReplacementKind::Layer && (r == kRoleQW || r == kRoleKW || r == kRoleVW || r == kRoleOW)) return true;
  return r == kRoleUpW || r == kRoleDownW || (r == kRoleGateW && s.gated);
}

// Reads {role: Float32Array}; unknown or unused roles are errors (they would silently not train).
template <typename P>
inline void roles_arg(Napi::Env env, const Napi::Value& v, ReplacementKind kind, const ReplacementSpec& s, P* out,
               const char* fn, const char* what, const ReplacementParams* params) {
  if (!v.IsObject()) throw_error(env, "E_NATIVE_ARG", std::string(fn) + ": " + what + " must be an object of Float32Array by role");
  Napi::Object o = v.As<Napi::Object>();
  Napi::Array keys = o.GetPropertyNames();
  for (uint32_t i = 0; i < keys.Length(); i++) {
    std::string key = keys.Get(i).As<Napi::String>().Utf8Value();
    int r = 0;
    while (r < kRoleCount && key != role_name(r)) r++;
    std::string name = std::string(fn) + ": " + what + "['" + key + "']";
    if (r == kRoleCount) throw_error(env, "E_NATIVE_ARG", name + " is not a known role");
    if (!role_used(kind, s, r))
      throw_error(env, "E_NATIVE_ARG", name + " is not used by this replacement (kind, norm or gatedMlp)");
    if (params && !(*params)[r]) throw_error(env, "E_NATIVE_ARG", name + " has no parameter of that role");
    size_t rows, cols;
    role_shape(s, r, &rows, &cols);
    Napi::Value t = o.Get(key);
    if (!t.IsTypedArray() && t.IsObject() && t.As<Napi::Object>().Has("data")) {
      // A tensor {data, dtype: 'f32', shape}: the shape must hold rows·cols elements.
      Napi::Object to = t.As<Napi::Object>();
      Napi::Value dt = to.Get("dtype");
      if (!dt.IsString() || dt.As<Napi::String>().Utf8Value() != "f32")
        throw_error(env, "E_DTYPE", name + " must be f32 (master weights)");
      Napi::Value shape = to.Get("shape");
      if (shape.IsArray()) {
        size_t numel = 1;
        Napi::Array sa = shape.As<Napi::Array>();
        for (uint32_t d = 0; d < sa.Length(); d++) numel *= size_t(int_arg(env, sa.Get(d), "shape"));
        if (numel != rows * cols)
          throw_error(env, "E_SHAPE", name + " has shape of " + std::to_string(numel) + " elements, expected [" +
                                          std::to_string(rows) + (cols > 1 ? ", " + std::to_string(cols) : "") + "]");
      }
      t = to.Get("data");
    }
    auto a = typed<Napi::Float32Array>(env, t, napi_float32_array, rows * cols, name, "Float32Array");
    (*out)[r] = a.Data();
  }
  if (!params) {
    for (int r = 0; r < kRoleCount; r++)
      if (role_required(kind, s, r) && !(*out)[r])
        throw_error(env, "E_NATIVE_ARG", std::string(fn) + ": " + what + "['" + role_name(r) + "'] is required");
    // replacement.cpp keys the per-head norm on q_norm.weight: a lone k_norm.weight would be silently skipped.
    if (!(*out)[kRoleQNormW] != !(*out)[kRoleKNormW])
      throw_error(env, "E_NATIVE_ARG", std::string(fn) + ": " + what + "['q_norm.weight'] and ['k_norm.weight'] go together");
  }
}

}  // namespace streamline::binding
