// Shared pieces of the CUDA backend: error handling (exceptions inside the library, a thread-local "last error"
// string at the C API), allocation tracking for the peak-memory report, weight loads by dtype, warp/block
// reductions. Host-side declarations compile with a plain C++ compiler too (the harness includes them).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "streamline/dtype.h"

namespace streamline {
namespace cuda {

using bf16 = __nv_bfloat16;

// Thrown by host wrappers on any CUDA runtime or cuBLASLt failure; the C API turns it into last_error().
struct CudaError : std::runtime_error {
  explicit CudaError(const std::string& m) : std::runtime_error(m) {}
};

[[noreturn]] void throw_cuda(cudaError_t e, const char* what, const char* file, int line);
#define SL_CUDA_CHECK(expr)                                                              \
  do {                                                                                   \
    cudaError_t sl_e_ = (expr);                                                          \
    if (sl_e_ != cudaSuccess) ::streamline::cuda::throw_cuda(sl_e_, #expr, __FILE__, __LINE__); \
  } while (0)
// After every launch: catches bad configurations (too much shared memory, grid too large) at once.
#define SL_LAUNCH_CHECK() SL_CUDA_CHECK(cudaGetLastError())

// Device memory with a process-wide byte count and high-water mark (peak GPU memory report).
void* device_alloc(size_t bytes);
void device_free(void* p, size_t bytes);
size_t device_bytes_current();
size_t device_bytes_peak();
void device_bytes_reset_peak();

// Grid size for grid-stride loops: enough blocks to fill the device a few times over.
int grid_for(size_t n, int block);
int sm_count();

}  // namespace cuda
}  // namespace streamline

// ---- device helpers (only in CUDA translation units) ----------------------------------------------------
#ifdef __CUDACC__
namespace streamline {
namespace cuda {

// Weight element i as f32; wdt is a streamline::DType value (F32, F16, BF16), uniform across the launch.
__device__ __forceinline__ float wload(const void* w, int wdt, size_t i) {
  if (wdt == int(DType::BF16)) return __bfloat162float(static_cast<const bf16*>(w)[i]);
  if (wdt == int(DType::F16)) return __half2float(static_cast<const __half*>(w)[i]);
  return static_cast<const float*>(w)[i];
}

__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(bf16 x) { return __bfloat162float(x); }
template <typename T> __device__ __forceinline__ T from_f32(float x);
template <> __device__ __forceinline__ float from_f32<float>(float x) { return x; }
template <> __device__ __forceinline__ bf16 from_f32<bf16>(float x) { return __float2bfloat16_rn(x); }

template <typename T> __device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
// Phase 1 of Qwen3's per-head RMSNorm on one packed q|k row (the forward's and the trainer's prepare kernels): one
// warp per head h < nh sums x(c)^2 over its Dh columns c = h*Dh + j in f32 (norm_rows' order) and lane 0 writes
// rinv[h] = rsqrt(mean + eps). x(c) gives column c's value after the bias (a trainer may record it as it goes).
// Callers __syncthreads() before reading rinv.
template <typename X> __device__ __forceinline__ void head_rms_inverse(float* rinv, unsigned nh, unsigned Dh, float eps, X x) {
  const unsigned lane = threadIdx.x & 31u, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  for (unsigned h = warp; h < nh; h += nwarps) {
    float ss = 0.f;
    for (unsigned j = lane; j < Dh; j += 32) {
      const float v = x(h * Dh + j);
      ss += v * v;
    }
    ss = warp_sum(ss);
    if (lane == 0) rinv[h] = rsqrtf(ss / float(Dh) + eps);
  }
}
// Sliding-window attention: the first key query i sees with a window of w keys (0 = none), as
// streamline::window_first_key. Callers pass w < T (a window >= T is no window and is passed as 0).
__host__ __device__ __forceinline__ int window_first(int i, int w) { return w && i >= w ? i + 1 - w : 0; }
// The window as the kernels take it: 0 when it cannot exclude anything (none, or at least T keys).
inline int window_arg(size_t window, size_t T) { return window == 0 || window >= T ? 0 : int(window); }

// NaN-propagating max (fmaxf drops NaN, which would let a NaN input pass silently).
__device__ __forceinline__ float nan_max(float a, float b) { return (a > b || a != a) ? a : b; }
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = nan_max(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over the block; every thread gets the result. `scratch` holds >= 32 values. blockDim.x multiple of 32.
template <typename T> __device__ __forceinline__ T block_sum(T v, T* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  T r = lane < nw ? scratch[lane] : T(0);
  return warp_sum(r);
}

}  // namespace cuda
}  // namespace streamline
#endif
