// Facts about the runtime: CPU features and the chosen kernel level, thread count, CUDA availability.
#include <string>

#include "args.h"
#include "register.h"
#include "streamline/cpu_features.h"
#include "streamline/cuda_loader.h"
#include "streamline/threads.h"

using namespace streamline;
using streamline::binding::addon_dir;

#ifdef STREAMLINE_HAVE_BLAS
extern "C" char* openblas_get_corename(void);
#endif

namespace {

Napi::Value CpuInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const CpuFeatures& f = cpu_features();
  Napi::Object o = Napi::Object::New(env);
  o.Set("avx2", f.avx2_fma);
  o.Set("avx512f", f.avx512f);
  o.Set("avx512bf16", f.avx512bf16);
  o.Set("amx", f.amx_bf16);
  o.Set("amxPermitted", f.amx_permitted);
  o.Set("detected", cpu_level_name(f.detected));
  o.Set("level", cpu_level_name(f.level));
  o.Set("threads", num_threads());
#ifdef STREAMLINE_HAVE_BLAS
  o.Set("blas", "openblas");
  o.Set("blasCore", openblas_get_corename());
#else
  o.Set("blas", "none");
  o.Set("blasCore", "");
#endif
  return o;
}

Napi::Value CudaInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CudaStatus s = cuda_status(addon_dir());
  Napi::Object o = Napi::Object::New(env);
#ifdef STREAMLINE_CUDA_COMPILED
  o.Set("compiled", true);
#else
  o.Set("compiled", s.compiled);
#endif
  o.Set("loaded", s.loaded);
  o.Set("deviceCount", s.device_count);
  o.Set("runtimeVersion", s.runtime_version);
  o.Set("deviceName", s.device_name);
  o.Set("available", s.device_count > 0 && s.reason.empty());  // a GPU without cuBLASLt comes with a reason
  o.Set("reason", s.reason);
  // Optional symbols the TypeScript side decides on before opening a context (a library built before them runs
  // everything else).
  o.Set("qkNorm", s.loaded && cuda_symbol("streamline_cuda_upload_layer_qk_norm") != nullptr);
  o.Set("postNorm", s.loaded && cuda_symbol("streamline_cuda_upload_layer_post_norm") != nullptr);
  o.Set("trainQkNorm", s.loaded && cuda_symbol("streamline_cuda_train_set_qk_norm") != nullptr);
  o.Set("trainRotaryDim", s.loaded && cuda_symbol("streamline_cuda_train_set_rotary_dim") != nullptr);
  o.Set("lmTailQkNorm", s.loaded && cuda_symbol("streamline_cuda_train_set_lm_tail_qk_norm") != nullptr);
  o.Set("trainPostNorm", s.loaded && cuda_symbol("streamline_cuda_train_set_post_norm") != nullptr);
  o.Set("lmTailPostNorm", s.loaded && cuda_symbol("streamline_cuda_train_set_lm_tail_post_norm") != nullptr);
  o.Set("lmTailRope", s.loaded && cuda_symbol("streamline_cuda_train_set_lm_tail_rope") != nullptr);
  return o;
}

}  // namespace

STREAMLINE_BINDING(info) {
  exports.Set("cpuInfo", Napi::Function::New(env, CpuInfo, "cpuInfo"));
  exports.Set("cudaInfo", Napi::Function::New(env, CudaInfo, "cudaInfo"));
}
