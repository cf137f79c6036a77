// Forced-included by train.sh (the CPU emulation of the training step): what the forward kernels, the GEMM fallback
// and TrainStep use beyond cuda_runtime.h here (which the backward kernels need): bf16/f16 types and conversions with
// the device's rounding (round to nearest even, NaN kept), the bf16 pair and 16-byte vector types, and streams.
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

constexpr unsigned cudaStreamNonBlocking = 1;
inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned) { *s = nullptr; return cudaSuccess; }
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
inline cudaError_t cudaStreamDestroy(cudaStream_t) { return cudaSuccess; }
// Prefetch (TrainStep::stage): every copy completes when issued, so events and stream waits have nothing to order;
// pinned memory is plain host memory.
constexpr unsigned cudaEventDisableTiming = 2;
inline cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned) { *e = nullptr; return cudaSuccess; }
inline cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t, unsigned) { return cudaSuccess; }
inline cudaError_t cudaMallocHost(void** p, size_t n) { return cudaMalloc(p, n); }
inline cudaError_t cudaFreeHost(void* p) { return cudaFree(p); }
// The device's rsqrtf is approximate (<= 2 ulp); the correctly rounded form is within that.
inline float rsqrtf(float x) { return 1.f / sqrtf(x); }
