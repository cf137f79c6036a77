// Tensor storage: memory-mapped files exposed as external ArrayBuffers, and float dtype conversion.
#include <string>

#include "args.h"
#include "async.h"
#include "register.h"
#include "streamline/convert.h"
#include "streamline/mapped_file.h"

using namespace streamline;
using namespace streamline::binding;

namespace {

// mapFile(path) -> ArrayBuffer viewing the whole file read-only; unmapped when the buffer is collected.
Napi::Value MapFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) throw_error(env, "E_NATIVE_ARG", "mapFile: expected a path");
  std::string path = info[0].As<Napi::String>().Utf8Value();
  auto* f = new MappedFile();
  std::string err;
  if (!map_file(path, f, &err)) {
    delete f;
    throw_error(env, "E_IO", path + ": " + err);
  }
  if (f->size == 0) {
    delete f;
    return Napi::ArrayBuffer::New(env, 0);
  }
  return Napi::ArrayBuffer::New(env, f->data, f->size, [](Napi::Env, void*, MappedFile* m) {
    unmap_file(m);
    delete m;
  }, f);
}

struct ConvertArgs {
  void* dst; DType dt; const void* src; DType st; size_t n;
};

ConvertArgs convert_args(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ConvertArgs a;
  size_t db = 0, sb = 0;
  a.dst = view_bytes(env, info[0], &db, "dst");
  a.dt = dtype_arg(env, info[1], "dstDtype");
  a.src = view_bytes(env, info[2], &sb, "src");
  a.st = dtype_arg(env, info[3], "srcDtype");
  if (!is_float_dtype(a.dt) || !is_float_dtype(a.st))
    throw_error(env, "E_DTYPE", "convert: only f32, f16 and bf16 convert");
  if (sb % dtype_size(a.st) != 0) throw_error(env, "E_SHAPE", "convert: source length is not a whole number of elements");
  a.n = sb / dtype_size(a.st);
  if (db != a.n * dtype_size(a.dt)) throw_error(env, "E_SHAPE", "convert: destination length does not match the source");
  return a;
}

// convertFloats(dst, dstDtype, src, srcDtype): synchronous (cheap, memory-bound).
Napi::Value ConvertFloats(const Napi::CallbackInfo& info) {
  ConvertArgs a = convert_args(info);
  convert_floats(a.dst, a.dt, a.src, a.st, a.n);
  return info.Env().Undefined();
}

Napi::Value ConvertFloatsRef(const Napi::CallbackInfo& info) {
  ConvertArgs a = convert_args(info);
  ref::convert_floats(a.dst, a.dt, a.src, a.st, a.n);
  return info.Env().Undefined();
}

// convertFloatsAsync(...) -> Promise<void>: the same, off the JS thread, for large tensors.
Napi::Value ConvertFloatsAsync(const Napi::CallbackInfo& info) {
  ConvertArgs a = convert_args(info);
  return run_async(info.Env(), {info[0], info[2]}, [a] { convert_floats(a.dst, a.dt, a.src, a.st, a.n); });
}

}  // namespace

STREAMLINE_BINDING(tensor) {
  exports.Set("mapFile", Napi::Function::New(env, MapFile, "mapFile"));
  exports.Set("convertFloats", Napi::Function::New(env, ConvertFloats, "convertFloats"));
  exports.Set("convertFloatsRef", Napi::Function::New(env, ConvertFloatsRef, "convertFloatsRef"));
  exports.Set("convertFloatsAsync", Napi::Function::New(env, ConvertFloatsAsync, "convertFloatsAsync"));
}
