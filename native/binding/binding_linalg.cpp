// Least squares for the `linear` replacement: normal equations, solve, fold into weights.
#include "args.h"
#include "async.h"
#include "register.h"
#include "streamline/error.h"
#include "streamline/linalg.h"

using namespace streamline;
using namespace streamline::binding;

namespace {

template <typename T>
T* typed(Napi::Env env, Napi::Value v, size_t count, const char* what) {
  size_t nb = 0;
  void* p = view_bytes(env, v, &nb, what);
  if (nb != count * sizeof(T))
    throw_error(env, "E_SHAPE", std::string(what) + ": expected " + std::to_string(count) + " elements of " +
                                    std::to_string(sizeof(T)) + " bytes, got " + std::to_string(nb) + " bytes");
  return static_cast<T*>(p);
}

// normalEquationsAccumulate(XtX f64[D*D], XtY f64[D*E], X f32[M*D], Y f32[M*E], mask u8[M]|null, M, D, E) -> Promise
Napi::Value NormalEquationsAccumulate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  size_t M = size_t(int_arg(env, info[5], "M")), D = size_t(int_arg(env, info[6], "D")), E = size_t(int_arg(env, info[7], "E"));
  double* xtx = typed<double>(env, info[0], D * D, "XtX");
  double* xty = typed<double>(env, info[1], D * E, "XtY");
  const float* X = typed<float>(env, info[2], M * D, "X");
  const float* Y = typed<float>(env, info[3], M * E, "Y");
  const uint8_t* mask = info[4].IsNull() || info[4].IsUndefined() ? nullptr : typed<uint8_t>(env, info[4], M, "mask");
  if (info.Length() > 8 && info[8].ToBoolean()) {
    ref::normal_equations_accumulate(xtx, xty, X, Y, mask, M, D, E);
    return env.Undefined();
  }
  return run_async(env, {info[0], info[1], info[2], info[3], info[4]},
                   [=] { normal_equations_accumulate(xtx, xty, X, Y, mask, M, D, E); });
}

// solveNormalEquations(T f32[D*E], XtX, XtY, D, E, ridge) -> Promise<void>; rejects with E_LINEAR_SOLVE.
Napi::Value SolveNormalEquations(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  size_t D = size_t(int_arg(env, info[3], "D")), E = size_t(int_arg(env, info[4], "E"));
  double ridge = number_arg(env, info[5], "ridge");
  float* T = typed<float>(env, info[0], D * E, "T");
  const double* xtx = typed<double>(env, info[1], D * D, "XtX");
  const double* xty = typed<double>(env, info[2], D * E, "XtY");
  return run_async(env, {info[0], info[1], info[2]}, [=] {
    if (!solve_normal_equations(T, xtx, xty, D, E, ridge))
      throw Error("E_LINEAR_SOLVE",
                  "least-squares solve failed (singular system or Eigen not compiled in); try a larger ridge term");
  });
}

// foldLeft(Wout f32[D*F], T f32[D*D], Win tensor [D,F], D, F) -> Promise<void>
Napi::Value FoldLeft(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  size_t D = size_t(int_arg(env, info[3], "D")), F = size_t(int_arg(env, info[4], "F"));
  float* out = typed<float>(env, info[0], D * F, "Wout");
  const float* T = typed<float>(env, info[1], D * D, "T");
  TensorArg w = tensor_arg(env, info[2], "Win");
  if (w.numel() != D * F) throw_error(env, "E_SHAPE", "Win: expected D*F elements");
  return run_async(env, {info[0], info[1], info[2]}, [=] { fold_left(out, T, w.data, w.dtype, D, F); });
}

// foldRight(Eout f32[V*D], Ein tensor [V,D], T f32[D*D], V, D) -> Promise<void>
Napi::Value FoldRight(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  size_t V = size_t(int_arg(env, info[3], "V")), D = size_t(int_arg(env, info[4], "D"));
  float* out = typed<float>(env, info[0], V * D, "Eout");
  TensorArg e = tensor_arg(env, info[1], "Ein");
  if (e.numel() != V * D) throw_error(env, "E_SHAPE", "Ein: expected V*D elements");
  const float* T = typed<float>(env, info[2], D * D, "T");
  return run_async(env, {info[0], info[1], info[2]}, [=] { fold_right(out, e.data, e.dtype, T, V, D); });
}

}  // namespace

STREAMLINE_BINDING(linalg) {
  exports.Set("normalEquationsAccumulate", Napi::Function::New(env, NormalEquationsAccumulate, "normalEquationsAccumulate"));
  exports.Set("solveNormalEquations", Napi::Function::New(env, SolveNormalEquations, "solveNormalEquations"));
  exports.Set("foldLeft", Napi::Function::New(env, FoldLeft, "foldLeft"));
  exports.Set("foldRight", Napi::Function::New(env, FoldRight, "foldRight"));
}
