// CPU emulation of the small part of the CUDA runtime and device language that the backward kernels use, so the
// kernels can run (slowly) on a machine without a GPU: every block runs with one std::thread per CUDA thread,
// __syncthreads is a barrier over the block, warp shuffles a barrier over the warp, shared memory a buffer of the
// block. Blocks run one after another. Device memory is host memory. This is a development aid for checking
// indexing, masking and synchronisation (see run.sh); it says nothing about speed, and it cannot see races that
// need real concurrency between blocks (there are none in the kernels it runs: no atomics across blocks).
#pragma once
#include <barrier>
#include <cmath>
#include <math.h>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <type_traits>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static

struct dim3 {
  unsigned x, y, z;
  dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
struct double2 { double x, y; };
struct alignas(16) float4 { float x, y, z, w; };
inline double2 make_double2(double x, double y) { return double2{x, y}; }

typedef void* cudaStream_t;
typedef void* cudaEvent_t;
enum cudaError_t { cudaSuccess = 0, cudaErrorMemoryAllocation = 2 };
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
enum cudaMemcpyKind { cudaMemcpyHostToDevice = 1, cudaMemcpyDeviceToHost = 2, cudaMemcpyDeviceToDevice = 3 };
inline const char* cudaGetErrorString(cudaError_t) { return "emulated CUDA error"; }
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
inline cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
inline cudaError_t cudaGetDeviceCount(int* n) { *n = 1; return cudaSuccess; }
// Fresh allocations hold 0xFF bytes (NaN): a kernel reading scratch it never wrote shows up as NaN.
inline cudaError_t cudaMalloc(void** p, size_t n) {
  *p = std::malloc(n ? n : 1);
  std::memset(*p, 0xFF, n);
  return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
inline cudaError_t cudaMallocAsync(void** p, size_t n, cudaStream_t) { return cudaMalloc(p, n); }
inline cudaError_t cudaFree(void* p) { std::free(p); return cudaSuccess; }
inline cudaError_t cudaFreeAsync(void* p, cudaStream_t) { std::free(p); return cudaSuccess; }
inline cudaError_t cudaMemset(void* p, int v, size_t n) { std::memset(p, v, n); return cudaSuccess; }
inline cudaError_t cudaMemsetAsync(void* p, int v, size_t n, cudaStream_t) { std::memset(p, v, n); return cudaSuccess; }
inline cudaError_t cudaMemcpy(void* d, const void* s, size_t n, cudaMemcpyKind) { std::memcpy(d, s, n); return cudaSuccess; }
inline cudaError_t cudaMemcpyAsync(void* d, const void* s, size_t n, cudaMemcpyKind, cudaStream_t) { std::memcpy(d, s, n); return cudaSuccess; }
template <typename F> cudaError_t cudaFuncSetAttribute(F, cudaFuncAttribute, int) { return cudaSuccess; }
inline cudaError_t cudaEventCreate(cudaEvent_t*) { return cudaSuccess; }
inline cudaError_t cudaEventDestroy(cudaEvent_t) { return cudaSuccess; }
inline cudaError_t cudaEventRecord(cudaEvent_t, cudaStream_t) { return cudaSuccess; }
inline cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
inline cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t, cudaEvent_t) { *ms = 1; return cudaSuccess; }

namespace emu {
struct Warp {
  std::barrier<> bar{32};
  uint64_t slot[32];
  float mma_a[256], mma_b[256], mma_c[256];  // the warp's fragments gathered by wmma::mma_sync (mma.h)
};
struct Block {
  std::unique_ptr<std::barrier<>> bar;
  std::vector<std::unique_ptr<Warp>> warps;
  std::vector<uint64_t> smem;  // dynamic shared memory, 8-byte aligned
};
inline thread_local Block* cur = nullptr;
inline std::mutex atomic_mu;
}  // namespace emu

inline thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;

inline void __syncthreads() { emu::cur->bar->arrive_and_wait(); }
// Every lane of the calling warp (the kernels here only use the full mask).
inline void __syncwarp(unsigned = 0xffffffffu) { emu::cur->warps[threadIdx.x / 32]->bar.arrive_and_wait(); }

template <typename T> T __shfl_xor_sync(unsigned, T v, int o) {
  static_assert(sizeof(T) <= 8, "shuffle of at most 8 bytes");
  const unsigned lane = threadIdx.x & 31;
  emu::Warp& w = *emu::cur->warps[threadIdx.x / 32];
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  w.slot[lane] = bits;
  w.bar.arrive_and_wait();
  T r;
  std::memcpy(&r, &w.slot[lane ^ unsigned(o)], sizeof(T));
  w.bar.arrive_and_wait();
  return r;
}

inline int atomicMin(int* p, int v) {
  std::lock_guard<std::mutex> l(emu::atomic_mu);
  const int old = *p;
  if (v < old) *p = v;
  return old;
}

// Round-to-nearest intrinsics: plain operations (the emulation is compiled with -ffp-contract=off).
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fsqrt_rn(float a) { return std::sqrt(a); }

namespace emu {
inline unsigned long long g_blocks = 0;  // blocks emulated (for the run summary)
// kernel<<<grid, block, smem, stream>>>(args) becomes Cfg(grid, block, smem, stream).run([&] { kernel(args); }).
struct Cfg {
  dim3 g, b;
  size_t smem;
  Cfg(dim3 g_, dim3 b_, size_t smem_ = 0, cudaStream_t = nullptr) : g(g_), b(b_), smem(smem_) {}
  template <typename F> void run(F&& fn) const {
    const unsigned nt = b.x * b.y * b.z;
    if (b.y != 1 || b.z != 1 || nt % 32 != 0 || nt > 1024) std::abort();  // the kernels here use 1-D blocks of warps
    for (unsigned z = 0; z < g.z; z++)
      for (unsigned y = 0; y < g.y; y++)
        for (unsigned x = 0; x < g.x; x++) {
          Block blk;
          blk.bar = std::make_unique<std::barrier<>>(nt);
          for (unsigned w = 0; w < nt / 32; w++) blk.warps.push_back(std::make_unique<Warp>());
          blk.smem.assign((smem + 7) / 8, ~uint64_t(0));  // NaN-filled like fresh scratch
          std::vector<std::thread> ts;
          for (unsigned t = 0; t < nt; t++)
            ts.emplace_back([&, t] {
              cur = &blk;
              threadIdx = dim3(t), blockIdx = dim3(x, y, z), blockDim = b, gridDim = g;
              fn();
              // An exited thread no longer takes part in barriers (as on the GPU).
              blk.warps[t / 32]->bar.arrive_and_drop();
              blk.bar->arrive_and_drop();
            });
          for (auto& t : ts) t.join();
          g_blocks++;
        }
  }
};
template <typename T> T* dyn_smem() { return reinterpret_cast<T*>(cur->smem.data()); }
}  // namespace emu
