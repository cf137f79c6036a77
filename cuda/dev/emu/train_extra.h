// Forced-included by train.sh and forward.sh (the CPU emulation of the training step and of the forward kernels,
// decoder layer and C API): what they use beyond cuda_runtime.h here (which the backward kernels need): bf16/f16
// types and conversions with the device's rounding (round to nearest even, NaN kept), the bf16 pair and 16-byte
// vector types, integer/float min and max, atomics (one mutex: correct, not fast), __ldg, streams, events and pinned
// memory (all synchronous, see cuda_runtime.h).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "streamline/dtype.h"

struct __half {
  uint16_t x;
};
inline float __half2float(__half h) { return streamline::f16_to_f32(h.x); }
// bf16 is uint16_t in the emulated common.cuh.
inline float __bfloat162float(uint16_t h) { return streamline::bf16_to_f32(h); }
inline uint16_t __float2bfloat16_rn(float f) { return streamline::f32_to_bf16(f); }
struct __nv_bfloat162 {
  uint16_t x, y;
};
struct float2 {
  float x, y;
};
inline float2 __bfloat1622float2(__nv_bfloat162 v) { return float2{__bfloat162float(v.x), __bfloat162float(v.y)}; }
inline __nv_bfloat162 __floats2bfloat162_rn(float a, float b) {
  return __nv_bfloat162{__float2bfloat16_rn(a), __float2bfloat16_rn(b)};
}
struct alignas(16) uint4 {
  unsigned x, y, z, w;
};
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return uint4{x, y, z, w}; }
inline float2 make_float2(float x, float y) { return float2{x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
#define __align__(n) alignas(n)
// Read-only cache load: a plain load.
template <typename T> T __ldg(const T* p) { return *p; }

// The device's min/max overloads (same-type arguments; a mixed call is ambiguous here where nvcc would convert).
#define SL_EMU_MINMAX(T) \
  inline T min(T a, T b) { return a < b ? a : b; } \
  inline T max(T a, T b) { return a > b ? a : b; }
SL_EMU_MINMAX(int)
SL_EMU_MINMAX(unsigned)
SL_EMU_MINMAX(long)
SL_EMU_MINMAX(unsigned long)
SL_EMU_MINMAX(long long)
SL_EMU_MINMAX(unsigned long long)
#undef SL_EMU_MINMAX
// Float min/max follow fminf/fmaxf (a NaN argument yields the other one), as CUDA's float overloads do.
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double max(double a, double b) { return fmax(a, b); }

template <typename T> T atomicAdd(T* p, T v) {
  std::lock_guard<std::mutex> l(emu::atomic_mu);
  const T old = *p;
  *p = old + v;
  return old;
}
template <typename T> T atomicMax(T* p, T v) {
  std::lock_guard<std::mutex> l(emu::atomic_mu);
  const T old = *p;
  if (v > old) *p = v;
  return old;
}
template <typename T> T atomicExch(T* p, T v) {
  std::lock_guard<std::mutex> l(emu::atomic_mu);
  const T old = *p;
  *p = v;
  return old;
}
inline int atomicCAS(int* p, int cmp, int v) {
  std::lock_guard<std::mutex> l(emu::atomic_mu);
  const int old = *p;
  if (old == cmp) *p = v;
  return old;
}

constexpr unsigned cudaStreamNonBlocking = 1;
inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned) { *s = nullptr; return cudaSuccess; }
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
inline cudaError_t cudaStreamDestroy(cudaStream_t) { return cudaSuccess; }
inline cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t, unsigned) { return cudaSuccess; }
constexpr unsigned cudaEventDisableTiming = 2;
inline cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned) { *e = nullptr; return cudaSuccess; }
inline cudaError_t cudaMallocHost(void** p, size_t n) {
  *p = std::malloc(n ? n : 1);
  return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
inline cudaError_t cudaFreeHost(void* p) { std::free(p); return cudaSuccess; }
// The device's rsqrtf is approximate (<= 2 ulp); the correctly rounded form is within that.
inline float rsqrtf(float x) { return 1.f / sqrtf(x); }
