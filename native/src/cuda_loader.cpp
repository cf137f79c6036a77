#include "streamline/cuda_loader.h"

#include <dlfcn.h>
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
  std::string path = dir + "/streamline_cuda.so";
  handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    const char* e = dlerror();
    open_error = e ? e : "dlopen failed";
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
