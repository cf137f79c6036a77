#include "streamline/cuda_loader.h"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>

namespace streamline {

namespace {
std::mutex mu;
void* handle = nullptr;
bool tried = false;
std::string open_error;

void open_backend(const std::string& dir) {
  if (tried) return;
  tried = true;
  // An explicit library (tests load a CPU implementation of the same C API through it; see CMakeLists.txt).
  const char* env = std::getenv("STREAMLINE_CUDA_LIBRARY");
  std::string path = env && *env ? std::string(env) : dir + "/streamline_cuda.so";
  handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    const char* e = dlerror();
    open_error = e ? e : "dlopen failed";
    if (env && *env) open_error = "STREAMLINE_CUDA_LIBRARY=" + path + ": " + open_error;
  }
}
}  // namespace

void* cuda_symbol(const char* name) {
  std::lock_guard<std::mutex> lk(mu);
  return handle ? dlsym(handle, name) : nullptr;
}

CudaStatus cuda_status(const std::string& library_dir) {
  CudaStatus s;
  {
    std::lock_guard<std::mutex> lk(mu);
    open_backend(library_dir);
    if (!handle) {
      s.reason = "CUDA backend library not available (" + open_error + ")";
      return s;
    }
  }
  s.compiled = true;
  s.loaded = true;
  using ProbeFn = int (*)(int*, int*, char*, int, char*, int);
  auto probe = reinterpret_cast<ProbeFn>(cuda_symbol("streamline_cuda_probe"));
  if (!probe) {
    s.reason = "CUDA backend library lacks streamline_cuda_probe";
    return s;
  }
  char name[256] = {0}, reason[512] = {0};
  probe(&s.device_count, &s.runtime_version, name, sizeof name, reason, sizeof reason);
  s.device_name = name;
  s.reason = reason;
  return s;
}

}  // namespace streamline
