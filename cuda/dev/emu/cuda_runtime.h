// CPU emulation of the small part of the CUDA runtime and device language that the kernels use, so they can run
// (slowly) on a machine without a GPU: every block runs with one fiber per CUDA thread (see Sched), __syncthreads is
// a barrier over the block, warp shuffles a barrier over the warp, shared memory a buffer of the block. Blocks run one
// after another; every call is synchronous (streams and events order nothing because nothing overlaps). Device
// memory is host memory. This is a development aid for checking indexing, masking and synchronisation (run.sh,
// train.sh, forward.sh); it says nothing about speed, and it cannot see races that need real concurrency between
// blocks or streams.
// Faithful to the device where it is cheap: allocations are 256-byte aligned and filled with 0xFF (NaN) like fresh
// scratch; dynamic shared memory is 128-byte aligned and NaN-filled, static __shared__ arrays are per block and
// NaN-filled too (rewrite.py, block_shared); a launch with more dynamic shared memory than the kernel's
// cudaFuncAttributeMaxDynamicSharedMemorySize (48 KB unless raised, 227 KB at most on sm_90), a block of more than
// 1024 threads or a grid dimension beyond the device's limits is refused (nothing runs; the error is returned by the
// next cudaGetLastError), as on the GPU. Deviations: threads interleave only at barriers, in thread order unless
// EMU_ORDER=reverse|random (a missing barrier shows only where the order exposes it: run all three); device maths
// is glibc's. Sources are compiled with -fno-strict-aliasing: the kernels reinterpret 16-byte vectors (uint4 as bf16
// pairs), an idiom nvcc honours and g++ -O2 does not (it silently dropped such loads in the cosine kernel).
#pragma once
#include <sys/mman.h>

#include <cstdio>
#include <cmath>
#include <math.h>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <map>
#include <mutex>
#include <type_traits>
#include <utility>
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
enum cudaError_t { cudaSuccess = 0, cudaErrorInvalidValue = 1, cudaErrorMemoryAllocation = 2,
                   cudaErrorInvalidConfiguration = 9 };
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
enum cudaMemcpyKind { cudaMemcpyHostToDevice = 1, cudaMemcpyDeviceToHost = 2, cudaMemcpyDeviceToDevice = 3 };
inline const char* cudaGetErrorString(cudaError_t e) {
  return e == cudaErrorInvalidValue ? "invalid argument (emulated)"
         : e == cudaErrorInvalidConfiguration ? "invalid configuration argument (emulated)"
                                              : "emulated CUDA error";
}
namespace emu {
inline cudaError_t last_error = cudaSuccess;  // set by a refused launch, cleared by cudaGetLastError
}
inline cudaError_t cudaGetLastError() {
  const cudaError_t e = emu::last_error;
  emu::last_error = cudaSuccess;
  return e;
}
inline cudaError_t cudaPeekAtLastError() { return emu::last_error; }
inline cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
inline cudaError_t cudaGetDeviceCount(int* n) { *n = 1; return cudaSuccess; }
// Fresh allocations hold 0xFF bytes (NaN): a kernel reading scratch it never wrote shows up as NaN.
// 256-byte aligned like cudaMalloc's (kernels and cuBLASLt paths test alignment), of the exact size asked for, so
// that a build with -fsanitize=address (forward.sh EMU_ASAN=1) reports a read or write past the end.
inline cudaError_t cudaMalloc(void** p, size_t n) {
  if (posix_memalign(p, 256, n ? n : 1) != 0) return cudaErrorMemoryAllocation;
  std::memset(*p, 0xFF, n);
  return cudaSuccess;
}
inline cudaError_t cudaMallocAsync(void** p, size_t n, cudaStream_t) { return cudaMalloc(p, n); }
// The host's memory stands in for the device's: 64 GiB free, 141 GiB total (an H200), so size checks pass.
inline cudaError_t cudaMemGetInfo(size_t* free_b, size_t* total_b) {
  *free_b = size_t(64) << 30;
  *total_b = size_t(141) << 30;
  return cudaSuccess;
}
inline cudaError_t cudaFree(void* p) { std::free(p); return cudaSuccess; }
inline cudaError_t cudaFreeAsync(void* p, cudaStream_t) { std::free(p); return cudaSuccess; }
inline cudaError_t cudaMemset(void* p, int v, size_t n) { std::memset(p, v, n); return cudaSuccess; }
inline cudaError_t cudaMemsetAsync(void* p, int v, size_t n, cudaStream_t) { std::memset(p, v, n); return cudaSuccess; }
inline cudaError_t cudaMemcpy(void* d, const void* s, size_t n, cudaMemcpyKind) { std::memcpy(d, s, n); return cudaSuccess; }
inline cudaError_t cudaMemcpyAsync(void* d, const void* s, size_t n, cudaMemcpyKind, cudaStream_t) { std::memcpy(d, s, n); return cudaSuccess; }
namespace emu {
inline std::map<const void*, int> max_dyn_smem;  // cudaFuncAttributeMaxDynamicSharedMemorySize per kernel
inline std::map<const void*, size_t> static_smem;  // static __shared__ bytes per kernel (known after a block ran)
constexpr int kDefaultDynSmem = 48 * 1024, kMaxDynSmem = 227 * 1024;  // sm_90: 227 KB opt-in per block
template <typename F> const void* key(F* f) { return reinterpret_cast<const void*>(f); }
}  // namespace emu
template <typename F> cudaError_t cudaFuncSetAttribute(F* f, cudaFuncAttribute a, int v) {
  if (a != cudaFuncAttributeMaxDynamicSharedMemorySize || v < 0 || v > emu::kMaxDynSmem) return cudaErrorInvalidValue;
  emu::max_dyn_smem[emu::key(f)] = v;
  return cudaSuccess;
}
inline cudaError_t cudaEventCreate(cudaEvent_t*) { return cudaSuccess; }
inline cudaError_t cudaEventDestroy(cudaEvent_t) { return cudaSuccess; }
inline cudaError_t cudaEventRecord(cudaEvent_t, cudaStream_t) { return cudaSuccess; }
inline cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
inline cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t, cudaEvent_t) { *ms = 1; return cudaSuccess; }

namespace emu {
// CUDA threads are fibers: the threads of a block run on the calling OS thread, each on its own stack, switched
// cooperatively at barriers (a hand-written x86-64 context switch below; no system call per switch). A barrier
// completes when every live thread of its group has arrived; a thread that exits leaves its barriers (as on the GPU).
// If every live thread waits at a barrier that cannot complete (e.g. __syncthreads in a branch some threads skip),
// the emulation stops with a message instead of hanging.
struct Bar;
struct Fiber {
  void* sp = nullptr;
  const Bar* wait = nullptr;
  unsigned wait_phase = 0;
  bool done = false;
};
struct Sched {
  void* main_sp = nullptr;
  std::vector<Fiber> f;
  unsigned current = 0;
  void (*body)(void*) = nullptr;
  void* arg = nullptr;
  struct Block* blk = nullptr;
};
inline thread_local Sched* sched = nullptr;
extern "C" void emu_ctx_switch(void** save_sp, void* new_sp);
struct Bar {
  unsigned expected, arrived = 0, phase = 0;
  explicit Bar(unsigned n) : expected(n) {}
  void arrive_and_wait() {
    if (++arrived == expected) {
      arrived = 0;
      phase++;
      return;
    }
    Fiber& me = sched->f[sched->current];
    me.wait = this;
    me.wait_phase = phase;
    emu_ctx_switch(&me.sp, sched->main_sp);
  }
  void arrive_and_drop() {
    expected--;
    if (arrived > 0 && arrived == expected) {
      arrived = 0;
      phase++;
    }
  }
};
struct Warp {
  Bar bar{32};
  uint64_t slot[32];
  float mma_a[256], mma_b[256], mma_c[256];  // the warp's fragments gathered by wmma::mma_sync (mma.h)
};
struct Block {
  std::unique_ptr<Bar> bar;
  std::vector<std::unique_ptr<Warp>> warps;
  void* smem = nullptr;  // dynamic shared memory: 128-byte aligned, exactly the launch's size
  ~Block() { std::free(smem); }
  std::map<const void*, std::vector<uint64_t>> statics;  // static __shared__ arrays by declaration (block_shared)
  size_t static_bytes = 0;                                // their sizes, summed
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

// Saves the callee-saved registers, MXCSR and the x87 control word on the current stack, stores the stack pointer
// in *save_sp, and resumes the context whose stack pointer is new_sp (System V x86-64).
asm(R"(
  .text
  .weak emu_ctx_switch
  .type emu_ctx_switch, @function
emu_ctx_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size emu_ctx_switch, .-emu_ctx_switch
)");

// Fiber stacks, reused by every block: 256 KB each with a guard page below (an overflow faults, not corrupts).
constexpr size_t kStack = 256 * 1024;
inline std::vector<char*>& stacks() {
  static thread_local std::vector<char*> v;
  return v;
}
inline char* stack_top(unsigned t) {
  auto& v = stacks();
  while (v.size() <= t) {
    void* p = mmap(nullptr, kStack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) std::abort();
    mprotect(p, 4096, PROT_NONE);
    v.push_back(static_cast<char*>(p));
  }
  return v[t] + kStack;
}
[[noreturn]] inline void fiber_main() {
  Sched& s = *sched;
  s.body(s.arg);
  const unsigned t = s.current;
  s.blk->warps[t / 32]->bar.arrive_and_drop();
  s.blk->bar->arrive_and_drop();
  s.f[t].done = true;
  emu_ctx_switch(&s.f[t].sp, s.main_sp);
  std::abort();  // a finished fiber is never resumed
}
inline void run_block(Block& blk, unsigned nt, void (*body)(void*), void* arg) {
  Sched s;
  s.f.resize(nt);
  s.body = body;
  s.arg = arg;
  s.blk = &blk;
  uint32_t csr[2] = {0, 0};
  asm volatile("stmxcsr %0\n\tfnstcw %1" : "=m"(csr[0]), "=m"(csr[1]));
  for (unsigned t = 0; t < nt; t++) {
    // Initial frame, popped by emu_ctx_switch: control words, six registers, then fiber_main as the return address
    // (and a zero above it: fiber_main starts with the stack alignment of a called function).
    uint64_t* sp = reinterpret_cast<uint64_t*>(stack_top(t));
    *--sp = 0;
    *--sp = reinterpret_cast<uint64_t>(&fiber_main);
    for (int r = 0; r < 6; r++) *--sp = 0;
    *--sp = uint64_t(csr[0]) | (uint64_t(csr[1]) << 32);
    s.f[t].sp = sp;
  }
  Sched* outer = sched;
  sched = &s;
  cur = &blk;
  // EMU_ORDER picks the order threads run in between barriers: thread order (default), reverse, or a fresh
  // pseudo-random permutation every round (fixed seed). Reverse and random expose a missing barrier where a thread
  // reads what a later-numbered thread writes.
  static const int order = [] {
    const char* e = std::getenv("EMU_ORDER");
    return !e ? 0 : std::strcmp(e, "reverse") == 0 ? 1 : std::strcmp(e, "random") == 0 ? 2 : 0;
  }();
  static thread_local uint64_t rng = 0x9E3779B97F4A7C15ull;
  std::vector<unsigned> seq(nt);
  for (unsigned t = 0; t < nt; t++) seq[t] = order == 1 ? nt - 1 - t : t;
  unsigned live = nt;
  while (live) {
    bool progressed = false;
    if (order == 2)
      for (unsigned i = nt; i > 1; i--) {
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        std::swap(seq[i - 1], seq[rng % i]);
      }
    for (unsigned t : seq) {
      Fiber& f = s.f[t];
      if (f.done || (f.wait && f.wait->phase == f.wait_phase)) continue;
      f.wait = nullptr;
      s.current = t;
      threadIdx = dim3(t);
      emu_ctx_switch(&s.main_sp, f.sp);
      progressed = true;
      if (f.done) live--;
    }
    if (!progressed) {
      std::fprintf(stderr, "CUDA emulation: deadlock in block (%u, %u, %u): %u threads wait at barriers that cannot "
                           "complete (a __syncthreads/__syncwarp/shuffle not reached by every live thread)\n",
                   blockIdx.x, blockIdx.y, blockIdx.z, live);
      std::abort();
    }
  }
  sched = outer;
}
// kernel<<<grid, block, smem, stream>>>(args) becomes Cfg(grid, block, smem, stream).run([&] { kernel(args); }).
// With the kernel given (forward.sh and train.sh rewrite launches as Cfg(...).kernel(&k).run(...)), a launch the
// GPU would refuse sets the sticky error and runs nothing.
struct Cfg {
  dim3 g, b;
  size_t smem;
  const void* k = nullptr;
  Cfg(dim3 g_, dim3 b_, size_t smem_ = 0, cudaStream_t = nullptr) : g(g_), b(b_), smem(smem_) {}
  template <typename K> Cfg& kernel(K* f) { k = key(f); return *this; }
  // Shared memory as the driver counts it: without the attribute raised, static and dynamic bytes together within
  // 48 KB; with it, dynamic within the attribute and static + dynamic within 227 KB. A kernel's static bytes are
  // known once a block of it has run (block_shared registers them), so a first launch is checked after its first
  // block (it then stops there: the error is reported even though that block ran).
  bool smem_ok(size_t static_bytes) const {
    auto it = max_dyn_smem.find(k);
    if (it == max_dyn_smem.end()) return smem + static_bytes <= size_t(kDefaultDynSmem);
    return smem <= size_t(it->second) && smem + static_bytes <= size_t(kMaxDynSmem);
  }
  bool refused() const {
    const unsigned long long nt = 1ull * b.x * b.y * b.z;
    if (nt == 0 || nt > 1024 || b.z > 64 || g.x == 0 || g.y == 0 || g.z == 0 || g.x > 2147483647u || g.y > 65535 ||
        g.z > 65535) {
      last_error = cudaErrorInvalidConfiguration;
      return true;
    }
    if (k) {
      auto it = static_smem.find(k);
      if (!smem_ok(it == static_smem.end() ? 0 : it->second)) {
        last_error = cudaErrorInvalidValue;
        return true;
      }
    }
    return false;
  }
  template <typename F> void run(F&& fn) const {
    if (refused()) return;
    const unsigned nt = b.x * b.y * b.z;
    if (b.y != 1 || b.z != 1 || nt % 32 != 0) std::abort();  // the kernels here use 1-D blocks of warps
    for (unsigned z = 0; z < g.z; z++)
      for (unsigned y = 0; y < g.y; y++)
        for (unsigned x = 0; x < g.x; x++) {
          Block blk;
          blk.bar = std::make_unique<Bar>(nt);
          threadIdx = dim3(0), blockIdx = dim3(x, y, z), blockDim = b, gridDim = g;
          for (unsigned w = 0; w < nt / 32; w++) blk.warps.push_back(std::make_unique<Warp>());
          if (posix_memalign(&blk.smem, 128, smem ? smem : 1) != 0) std::abort();
          std::memset(blk.smem, 0xFF, smem);  // NaN-filled like fresh scratch
          run_block(blk, nt, [](void* p) { (*static_cast<std::remove_reference_t<F>*>(p))(); }, &fn);
          if (k && !static_smem.count(k)) {
            static_smem[k] = blk.static_bytes;
            if (!smem_ok(blk.static_bytes)) {
              last_error = cudaErrorInvalidValue;
              return;
            }
          }
          g_blocks++;
        }
  }
};
template <typename T> T* dyn_smem() { return reinterpret_cast<T*>(cur->smem); }
// `__shared__ A name;` (rewrite.py): the block's own copy, created NaN-filled (0xFF bytes) by its first use.
template <typename A> A& block_shared(const void* site) {
  auto it = cur->statics.find(site);
  if (it == cur->statics.end()) {
    it = cur->statics.emplace(site, std::vector<uint64_t>((sizeof(A) + 7) / 8, ~uint64_t(0))).first;
    cur->static_bytes += sizeof(A);
  }
  return *reinterpret_cast<A*>(it->second.data());
}
}  // namespace emu
