// The CUDA backend is a separate shared library (streamline_cuda.so) next to the addon. It is opened on
// request so that the CPU addon loads on machines without CUDA; this says whether it could be used and why not.
#pragma once
#include <string>

namespace streamline {

struct CudaStatus {
  bool compiled = false;      // the backend library exists next to the addon
  bool loaded = false;        // it was opened
  int device_count = 0;       // GPUs visible through the driver
  int runtime_version = 0;    // CUDA runtime linked into the backend
  std::string device_name;    // first device, when there is one
  std::string reason;         // why CUDA cannot be used, when it cannot
};

// library_dir: folder that holds streamline_cuda.so (the addon's own folder). The environment variable
// STREAMLINE_CUDA_LIBRARY, when set, names the library file instead. The library is opened once per process.
CudaStatus cuda_status(const std::string& library_dir);

// Symbol lookup in the opened backend (nullptr when not loaded).
void* cuda_symbol(const char* name);

}  // namespace streamline
