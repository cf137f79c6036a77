#include "args.h"

#include <dlfcn.h>

#include <cmath>

#include "streamline/dtype.h"

namespace streamline::binding {

std::string addon_dir() {
  Dl_info di;
  if (dladdr(reinterpret_cast<void*>(&addon_dir), &di) && di.dli_fname) {
    std::string p = di.dli_fname;
    auto slash = p.rfind('/');
    if (slash != std::string::npos) return p.substr(0, slash);
  }
  return ".";
}

void throw_error(Napi::Env env, const char* code, const std::string& message) {
  Napi::Error e = Napi::Error::New(env, message);
  e.Set("code", Napi::String::New(env, code));
  throw e;
}

void* view_bytes(Napi::Env env, Napi::Value v, size_t* nbytes, const char* what) {
  if (v.IsTypedArray()) {
    auto ta = v.As<Napi::TypedArray>();
    Napi::ArrayBuffer buf = ta.ArrayBuffer();
    *nbytes = ta.ByteLength();
    return static_cast<char*>(buf.Data()) + ta.ByteOffset();
  }
  if (v.IsDataView()) {
    auto dv = v.As<Napi::DataView>();
    *nbytes = dv.ByteLength();
    return static_cast<char*>(dv.ArrayBuffer().Data()) + dv.ByteOffset();
  }
  if (v.IsArrayBuffer()) {
    auto ab = v.As<Napi::ArrayBuffer>();
    *nbytes = ab.ByteLength();
    return ab.Data();
  }
  throw_error(env, "E_NATIVE_ARG", std::string(what) + ": expected a typed array");
}

DType dtype_arg(Napi::Env env, Napi::Value v, const char* what) {
  if (!v.IsString()) throw_error(env, "E_NATIVE_ARG", std::string(what) + ": expected a dtype name");
  std::string s = v.As<Napi::String>().Utf8Value();
  DType t;
  if (!dtype_from_name(s.c_str(), &t)) throw_error(env, "E_DTYPE", std::string(what) + ": unknown dtype '" + s + "'");
  return t;
}

int64_t int_arg(Napi::Env env, Napi::Value v, const char* what) {
  if (!v.IsNumber()) throw_error(env, "E_NATIVE_ARG", std::string(what) + ": expected an integer");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || d != std::floor(d) || std::fabs(d) > 9007199254740991.0)
    throw_error(env, "E_NATIVE_ARG", std::string(what) + ": expected an integer");
  return int64_t(d);
}

double number_arg(Napi::Env env, Napi::Value v, const char* what) {
  if (!v.IsNumber()) throw_error(env, "E_NATIVE_ARG", std::string(what) + ": expected a number");
  return v.As<Napi::Number>().DoubleValue();
}

TensorArg tensor_arg(Napi::Env env, Napi::Value v, const char* what) {
  if (!v.IsObject()) throw_error(env, "E_NATIVE_ARG", std::string(what) + ": expected a tensor");
  Napi::Object o = v.As<Napi::Object>();
  TensorArg t;
  t.dtype = dtype_arg(env, o.Get("dtype"), what);
  Napi::Value shape = o.Get("shape");
  if (!shape.IsArray()) throw_error(env, "E_NATIVE_ARG", std::string(what) + ": shape must be an array");
  Napi::Array arr = shape.As<Napi::Array>();
  for (uint32_t i = 0; i < arr.Length(); i++) {
    int64_t d = int_arg(env, arr.Get(i), what);
    if (d < 0) throw_error(env, "E_SHAPE", std::string(what) + ": negative dimension");
    t.shape.push_back(d);
  }
  t.data = view_bytes(env, o.Get("data"), &t.nbytes, what);
  if (t.numel() * dtype_size(t.dtype) != t.nbytes)
    throw_error(env, "E_SHAPE", std::string(what) + ": byte length " + std::to_string(t.nbytes) +
                                    " does not match shape and dtype (" + std::to_string(t.numel() * dtype_size(t.dtype)) + ")");
  return t;
}

}  // namespace streamline::binding
