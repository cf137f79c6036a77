// dlopen of libcublasLt and lookup of the entry points declared in cublaslt_loader.h.
#include "cublaslt_loader.h"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>

namespace streamline {
namespace cuda {
namespace lt {

namespace {
std::once_flag once;
Api g_api;
bool g_ok = false;
std::string g_reason;

template <typename F> bool sym(void* h, const char* name, F* out, std::string* missing) {
  *out = reinterpret_cast<F>(dlsym(h, name));
  if (!*out) {
    *missing = name;
    return false;
  }
  return true;
}

void load() {
  std::string tried, first_error;
  const char* env = std::getenv("STREAMLINE_CUBLASLT");
  const char* names[] = {env && *env ? env : nullptr, "libcublasLt.so.13", "libcublasLt.so.12"};
  void* h = nullptr;
  for (const char* n : names) {
    if (!n) continue;
    h = dlopen(n, RTLD_NOW | RTLD_LOCAL);
    if (h) {
      g_api.path = n;
      break;
    }
    const char* e = dlerror();
    if (first_error.empty() && e) first_error = e;
  }
  if (!h) {
    g_reason = "cuBLASLt not found (libcublasLt.so.13)";
    if (env && *env) g_reason += "; STREAMLINE_CUBLASLT=" + std::string(env) + " could not be opened: " + first_error;
    return;
  }
  std::string missing;
  bool ok = sym(h, "cublasLtCreate", &g_api.create, &missing) && sym(h, "cublasLtDestroy", &g_api.destroy, &missing) &&
            sym(h, "cublasLtMatmulDescCreate", &g_api.matmul_desc_create, &missing) &&
            sym(h, "cublasLtMatmulDescDestroy", &g_api.matmul_desc_destroy, &missing) &&
            sym(h, "cublasLtMatmulDescSetAttribute", &g_api.matmul_desc_set_attribute, &missing) &&
            sym(h, "cublasLtMatrixLayoutCreate", &g_api.matrix_layout_create, &missing) &&
            sym(h, "cublasLtMatrixLayoutDestroy", &g_api.matrix_layout_destroy, &missing) &&
            sym(h, "cublasLtMatmulPreferenceCreate", &g_api.preference_create, &missing) &&
            sym(h, "cublasLtMatmulPreferenceDestroy", &g_api.preference_destroy, &missing) &&
            sym(h, "cublasLtMatmulPreferenceSetAttribute", &g_api.preference_set_attribute, &missing) &&
            sym(h, "cublasLtMatmulAlgoGetHeuristic", &g_api.algo_get_heuristic, &missing) &&
            sym(h, "cublasLtMatmul", &g_api.matmul, &missing) &&
            sym(h, "cublasLtGetVersion", &g_api.get_version, &missing);
  if (!ok) {
    g_reason = g_api.path + " lacks " + missing;
    dlclose(h);
    return;
  }
  g_ok = true;
}
}  // namespace

const Api* api() {
  std::call_once(once, load);
  return g_ok ? &g_api : nullptr;
}

const std::string& reason() {
  std::call_once(once, load);
  return g_reason;
}

}  // namespace lt
}  // namespace cuda
}  // namespace streamline
