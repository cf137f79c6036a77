// Device discovery for the CUDA backend (and whether cuBLASLt can be loaded). Any error from the runtime means "no usable GPU": without a driver
// the static runtime reports error 35 (driver insufficient), not 100 (no device).
#include <cuda_runtime.h>

#include <cstdio>
#include <cstring>

#include "cublaslt_loader.h"

extern "C" __attribute__((visibility("default"))) int streamline_cuda_probe(int* device_count, int* runtime_version,
                                                                            char* name, int name_len, char* reason,
                                                                            int reason_len) {
  *device_count = 0;
  cudaRuntimeGetVersion(runtime_version);
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    std::snprintf(reason, reason_len, "no usable GPU: %s (cudaGetDeviceCount error %d)", cudaGetErrorString(e), int(e));
    return 0;
  }
  if (n == 0) {
    std::snprintf(reason, reason_len, "no CUDA device found");
    return 0;
  }
  *device_count = n;
  cudaDeviceProp prop;
  if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess) std::snprintf(name, name_len, "%s", prop.name);
  reason[0] = 0;
  // The GPU path needs a GEMM library: without cuBLASLt the device is listed but not usable.
  if (!streamline::cuda::lt::api()) std::snprintf(reason, reason_len, "%s", streamline::cuda::lt::reason().c_str());
  return n;
}
