// Emulated stand-in for cuda/common.cuh (see cuda_runtime.h here): the host-side declarations with trivial
// definitions, and the device reductions copied in from the real header by run.sh (common_device.inc).
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "streamline/dtype.h"

namespace streamline {
namespace cuda {

using bf16 = uint16_t;

struct CudaError : std::runtime_error {
  explicit CudaError(const std::string& m) : std::runtime_error(m) {}
};
#define SL_CUDA_CHECK(expr)                                                  \
  do {                                                                       \
    if ((expr) != cudaSuccess) throw ::streamline::cuda::CudaError(#expr);   \
  } while (0)
#define SL_LAUNCH_CHECK() SL_CUDA_CHECK(cudaGetLastError())

// Tracked like common.cu's (the C API reports current and peak bytes); nullptr for 0 bytes as there.
inline size_t g_bytes_current = 0, g_bytes_peak = 0;
inline void* device_alloc(size_t bytes) {
  if (bytes == 0) return nullptr;
  void* p = nullptr;
  if (cudaMalloc(&p, bytes) != cudaSuccess) throw CudaError("cudaMalloc failed (emulated)");
  g_bytes_current += bytes;
  if (g_bytes_current > g_bytes_peak) g_bytes_peak = g_bytes_current;
  return p;
}
inline void device_free(void* p, size_t bytes) {
  if (!p) return;
  std::free(p);
  g_bytes_current -= bytes;
}
inline size_t device_bytes_current() { return g_bytes_current; }
inline size_t device_bytes_peak() { return g_bytes_peak; }
inline void device_bytes_reset_peak() { g_bytes_peak = g_bytes_current; }
// Few blocks: grid-stride loops then run several iterations per thread, which is what the emulation should cover.
inline int sm_count() { return 2; }
inline int grid_for(size_t n, int block) {
  size_t want = (n + size_t(block) - 1) / size_t(block);
  if (want > 3) want = 3;
  return want == 0 ? 1 : int(want);
}

#include "common_device.inc"

}  // namespace cuda
}  // namespace streamline
