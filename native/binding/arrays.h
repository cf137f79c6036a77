// Typed-array arguments with exact element counts, for the op and model bindings. Every size the kernels
// will touch is checked here, before any work starts; failures throw coded JS errors naming the argument.
#pragma once
#include <napi.h>

#include <cstdint>
#include <string>

#include "args.h"
#include "streamline/model.h"

namespace streamline::binding {

// a * b, throwing E_SHAPE on overflow (sizes come from JS numbers).
inline size_t checked_mul(Napi::Env env, size_t a, size_t b, const char* what) {
  size_t r;
  if (__builtin_mul_overflow(a, b, &r)) throw_error(env, "E_SHAPE", std::string(what) + ": size overflows");
  return r;
}

inline size_t size_arg(Napi::Env env, Napi::Value v, const char* what) {
  int64_t n = int_arg(env, v, what);
  if (n < 0) throw_error(env, "E_SHAPE", std::string(what) + ": must be >= 0, got " + std::to_string(n));
  return size_t(n);
}

inline bool is_nullish(Napi::Value v) { return v.IsNull() || v.IsUndefined(); }

// A typed array of the given kind holding exactly `count` elements.
template <typename T>
T* typed_array(Napi::Env env, Napi::Value v, napi_typedarray_type kind, const char* type_name, size_t count,
               const char* what) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != kind)
    throw_error(env, "E_NATIVE_ARG", std::string(what) + ": expected a " + type_name);
  auto ta = v.As<Napi::TypedArray>();
  if (ta.ElementLength() != count)
    throw_error(env, "E_SHAPE", std::string(what) + ": expected " + std::to_string(count) + " elements, got " +
                                    std::to_string(ta.ElementLength()));
  return reinterpret_cast<T*>(static_cast<char*>(ta.ArrayBuffer().Data()) + ta.ByteOffset());
}

inline float* f32_array(Napi::Env env, Napi::Value v, size_t count, const char* what) {
  return typed_array<float>(env, v, napi_float32_array, "Float32Array", count, what);
}
inline float* f32_array_or_null(Napi::Env env, Napi::Value v, size_t count, const char* what) {
  return is_nullish(v) ? nullptr : f32_array(env, v, count, what);
}
inline int32_t* i32_array(Napi::Env env, Napi::Value v, size_t count, const char* what) {
  return typed_array<int32_t>(env, v, napi_int32_array, "Int32Array", count, what);
}
inline uint8_t* u8_array_or_null(Napi::Env env, Napi::Value v, size_t count, const char* what) {
  return is_nullish(v) ? nullptr : typed_array<uint8_t>(env, v, napi_uint8_array, "Uint8Array", count, what);
}

// Element count of a typed array of the given kind (any length).
inline size_t typed_length(Napi::Env env, Napi::Value v, napi_typedarray_type kind, const char* type_name,
                           const char* what) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != kind)
    throw_error(env, "E_NATIVE_ARG", std::string(what) + ": expected a " + type_name);
  return v.As<Napi::TypedArray>().ElementLength();
}

// A float weight tensor {data, dtype, shape} as a WeightView (null/undefined: absent).
inline WeightView weight_arg(Napi::Env env, Napi::Value v, const char* what) {
  WeightView w;
  if (is_nullish(v)) return w;
  TensorArg t = tensor_arg(env, v, what);
  if (t.dtype != DType::F32 && t.dtype != DType::BF16 && t.dtype != DType::F16)
    throw_error(env, "E_DTYPE", std::string(what) + ": expected a f32, bf16 or f16 tensor, got " + dtype_name(t.dtype));
  w.data = t.data;
  w.dtype = t.dtype;
  w.shape = t.shape;
  static const float kEmpty = 0.0f;
  if (!w.data) w.data = &kEmpty;  // a zero-element tensor is present, not absent
  return w;
}

inline Activation activation_arg(Napi::Env env, Napi::Value v, const char* what) {
  if (!v.IsString()) throw_error(env, "E_NATIVE_ARG", std::string(what) + ": expected 'silu', 'relu', 'gelu' or 'gelu_tanh'");
  std::string s = v.As<Napi::String>().Utf8Value();
  if (s == "silu") return Activation::SiLU;
  if (s == "relu") return Activation::ReLU;
  if (s == "gelu") return Activation::GELU;
  if (s == "gelu_tanh") return Activation::GELUTanh;
  throw_error(env, "E_NATIVE_ARG", std::string(what) + ": unknown activation '" + s + "' (expected 'silu', 'relu', 'gelu' or 'gelu_tanh')");
}

inline NormKind norm_arg(Napi::Env env, Napi::Value v, const char* what) {
  std::string s = v.IsString() ? v.As<Napi::String>().Utf8Value() : "";
  if (s == "rms") return NormKind::Rms;
  if (s == "layer") return NormKind::Layer;
  throw_error(env, "E_NATIVE_ARG", std::string(what) + ": expected 'rms' or 'layer'");
}

}  // namespace streamline::binding
