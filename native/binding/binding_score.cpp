// Fused cosine scoring. Sums are returned in a Float64Array [sum, count, zeros] per pair.
#include <vector>

#include "args.h"
#include "async.h"
#include "register.h"
#include "streamline/cosine.h"

using namespace streamline;
using namespace streamline::binding;

namespace {

const float* f32_rows(Napi::Env env, Napi::Value v, size_t M, size_t D, const char* what) {
  size_t nb = 0;
  void* p = view_bytes(env, v, &nb, what);
  if (nb != M * D * sizeof(float))
    throw_error(env, "E_SHAPE", std::string(what) + ": expected " + std::to_string(M * D) + " f32 values");
  return static_cast<const float*>(p);
}

const uint8_t* mask_arg(Napi::Env env, Napi::Value v, size_t M) {
  if (v.IsNull() || v.IsUndefined()) return nullptr;
  size_t nb = 0;
  void* p = view_bytes(env, v, &nb, "mask");
  if (nb != M) throw_error(env, "E_SHAPE", "mask: expected " + std::to_string(M) + " bytes");
  return static_cast<const uint8_t*>(p);
}

double* out_arg(Napi::Env env, Napi::Value v, size_t P) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array)
    throw_error(env, "E_NATIVE_ARG", "out: expected a Float64Array");
  size_t nb = 0;
  void* p = view_bytes(env, v, &nb, "out");
  if (nb != P * 3 * sizeof(double)) throw_error(env, "E_SHAPE", "out: expected 3 values per pair");
  return static_cast<double*>(p);
}

void add_into(double* out, const CosineSum& s) {
  out[0] += s.sum; out[1] += double(s.count); out[2] += double(s.zeros);
}

// cosineAccumulate(out Float64Array(3), a, b, mask|null, M, D [, useRef]) — synchronous, adds into out.
Napi::Value CosineAccumulate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  size_t M = size_t(int_arg(env, info[4], "M")), D = size_t(int_arg(env, info[5], "D"));
  double* out = out_arg(env, info[0], 1);
  const float* a = f32_rows(env, info[1], M, D, "a");
  const float* b = f32_rows(env, info[2], M, D, "b");
  const uint8_t* mask = mask_arg(env, info[3], M);
  CosineSum s;
  if (info.Length() > 6 && info[6].ToBoolean()) ref::cosine_accumulate(&s, a, b, mask, M, D);
  else cosine_accumulate(&s, a, b, mask, M, D);
  add_into(out, s);
  return env.Undefined();
}

// cosinePairsAccumulate(out Float64Array(3P), states Float32Array[], pairs Int32Array(2P), mask|null, M, D)
// -> Promise<void>; adds into out.
Napi::Value CosinePairsAccumulate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  size_t M = size_t(int_arg(env, info[4], "M")), D = size_t(int_arg(env, info[5], "D"));
  if (!info[1].IsArray()) throw_error(env, "E_NATIVE_ARG", "states: expected an array");
  Napi::Array arr = info[1].As<Napi::Array>();
  std::vector<const float*> states(arr.Length());
  for (uint32_t i = 0; i < arr.Length(); i++) states[i] = f32_rows(env, arr.Get(i), M, D, "states[i]");
  size_t pb = 0;
  const int32_t* pairs = static_cast<const int32_t*>(view_bytes(env, info[2], &pb, "pairs"));
  if (pb % (2 * sizeof(int32_t))) throw_error(env, "E_SHAPE", "pairs: expected an even number of int32 indices");
  size_t P = pb / (2 * sizeof(int32_t));
  for (size_t i = 0; i < 2 * P; i++)
    if (pairs[i] < 0 || size_t(pairs[i]) >= states.size())
      throw_error(env, "E_SHAPE", "pairs: index " + std::to_string(pairs[i]) + " is not a state");
  double* out = out_arg(env, info[0], P);
  const uint8_t* mask = mask_arg(env, info[3], M);
  std::vector<int32_t> pair_copy(pairs, pairs + 2 * P);
  return run_async(env, {info[0], info[1], info[3]}, [=]() {
    std::vector<CosineSum> sums(P);
    cosine_pairs_accumulate(sums.data(), states.data(), pair_copy.data(), P, mask, M, D);
    for (size_t p = 0; p < P; p++) add_into(out + 3 * p, sums[p]);
  });
}

}  // namespace

STREAMLINE_BINDING(score) {
  exports.Set("cosineAccumulate", Napi::Function::New(env, CosineAccumulate, "cosineAccumulate"));
  exports.Set("cosinePairsAccumulate", Napi::Function::New(env, CosinePairsAccumulate, "cosinePairsAccumulate"));
}
