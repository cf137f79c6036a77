// Argument conversion shared by the binding files: JS tensors ({data: Uint8Array-like, dtype, shape}),
// numbers and errors. Errors thrown here carry a stable `code` so the TypeScript layer can re-type them.
#pragma once
#include <napi.h>

#include <cstdint>
#include <string>
#include <vector>

#include "streamline/dtype.h"

namespace streamline::binding {

struct TensorArg {
  void* data = nullptr;
  size_t nbytes = 0;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  size_t numel() const {
    size_t n = 1;
    for (auto d : shape) n *= size_t(d);
    return n;
  }
};

// Throws a JS Error with err.code = code.
[[noreturn]] void throw_error(Napi::Env env, const char* code, const std::string& message);

// A typed array or DataView: pointer and byte length of the viewed range.
void* view_bytes(Napi::Env env, Napi::Value v, size_t* nbytes, const char* what);

// Reads {data, dtype, shape} and checks that the byte length equals numel * dtype size.
TensorArg tensor_arg(Napi::Env env, Napi::Value v, const char* what);

DType dtype_arg(Napi::Env env, Napi::Value v, const char* what);
// Folder that holds the addon's .node file (where streamline_cuda.so is looked for).
std::string addon_dir();

int64_t int_arg(Napi::Env env, Napi::Value v, const char* what);
double number_arg(Napi::Env env, Napi::Value v, const char* what);

}  // namespace streamline::binding
