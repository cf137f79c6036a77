// CPU emulation of the warp matrix functions (nvcuda::wmma, bf16/f16 16x16x16 with f32 accumulators) for the
// emulated device language of cuda_runtime.h here. Each lane holds 8 of a fragment's 256 elements, like the GPU,
// but in this emulation's own order (lane l, slot i: element i * 32 + l of the row-major 16 x 16 tile, which spreads
// every lane over eight rows): kernels may not assume the hardware's layout, so one that does fails here.
// load/store move only the lane's own elements and imply no barrier (a missing __syncwarp stays a bug); mma_sync
// gathers the warp's fragments through the warp's buffer between two warp barriers. Products of bf16/f16 values are
// exact in f32; they are summed in f32 in k order onto the accumulator (tensor cores add in a wider, unspecified
// order, so results can differ from the GPU's in the last bits).
// The documented requirements of load/store_matrix_sync are enforced (abort with a message): the pointer 256-bit
// (32-byte) aligned, ldm a multiple of 8 elements for 16-bit types and of 4 for float.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>

#include "streamline/dtype.h"

namespace nvcuda {
namespace wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
struct fragment {
  static_assert(M == 16 && N == 16 && K == 16, "the emulation covers the 16x16x16 shape only");
  static constexpr int num_elements = 8;
  T x[8];
};

namespace detail {
inline int lane() { return int(threadIdx.x & 31); }
inline int row_of(int i) { return (i * 32 + lane()) / 16; }
inline int col_of(int i) { return (i * 32 + lane()) % 16; }
// bf16 is uint16_t in the emulated common.cuh; f16 (__half) has its own conversion in train_extra.h.
inline float to_f32(float v) { return v; }
inline float to_f32(uint16_t v) { return streamline::bf16_to_f32(v); }
template <typename T> float to_f32(const T& v) { return __half2float(v); }
template <typename T> void check_args(const T* p, unsigned ldm, const char* what) {
  const unsigned mult = sizeof(T) == 4 ? 4 : 8;
  if (reinterpret_cast<uintptr_t>(p) % 32 != 0 || ldm % mult != 0) {
    std::fprintf(stderr, "wmma emulation: %s with pointer %p (needs 32-byte alignment) and ldm %u (needs a multiple "
                         "of %u)\n", what, static_cast<const void*>(p), ldm, mult);
    std::abort();
  }
}
template <typename Layout> constexpr bool is_row_major() {
  static_assert(sizeof(Layout) && (std::is_same_v<Layout, row_major> || std::is_same_v<Layout, col_major>),
                "matrix_a/matrix_b fragments need a row_major or col_major layout");
  return std::is_same_v<Layout, row_major>;
}
}  // namespace detail

template <typename Use, typename T, typename Layout>
void load_matrix_sync(fragment<Use, 16, 16, 16, T, Layout>& f, const T* p, unsigned ldm) {
  constexpr bool rm = detail::is_row_major<Layout>();
  detail::check_args(p, ldm, "load_matrix_sync");
  for (int i = 0; i < 8; i++) {
    const int r = detail::row_of(i), c = detail::col_of(i);
    f.x[i] = rm ? p[size_t(r) * ldm + c] : p[size_t(c) * ldm + r];
  }
}
inline void load_matrix_sync(fragment<accumulator, 16, 16, 16, float>& f, const float* p, unsigned ldm, layout_t l) {
  detail::check_args(p, ldm, "load_matrix_sync (accumulator)");
  for (int i = 0; i < 8; i++) {
    const int r = detail::row_of(i), c = detail::col_of(i);
    f.x[i] = l == mem_row_major ? p[size_t(r) * ldm + c] : p[size_t(c) * ldm + r];
  }
}
inline void store_matrix_sync(float* p, const fragment<accumulator, 16, 16, 16, float>& f, unsigned ldm, layout_t l) {
  detail::check_args(p, ldm, "store_matrix_sync");
  for (int i = 0; i < 8; i++) {
    const int r = detail::row_of(i), c = detail::col_of(i);
    (l == mem_row_major ? p[size_t(r) * ldm + c] : p[size_t(c) * ldm + r]) = f.x[i];
  }
}
template <typename Use, typename T, typename Layout, typename V>
void fill_fragment(fragment<Use, 16, 16, 16, T, Layout>& f, const V& v) {
  for (int i = 0; i < 8; i++) f.x[i] = T(v);
}

template <typename TA, typename LA, typename TB, typename LB>
void mma_sync(fragment<accumulator, 16, 16, 16, float>& d, const fragment<matrix_a, 16, 16, 16, TA, LA>& a,
              const fragment<matrix_b, 16, 16, 16, TB, LB>& b, const fragment<accumulator, 16, 16, 16, float>& c) {
  emu::Warp& w = *emu::cur->warps[threadIdx.x / 32];
  for (int i = 0; i < 8; i++) {
    const int e = i * 32 + detail::lane();
    w.mma_a[e] = detail::to_f32(a.x[i]);
    w.mma_b[e] = detail::to_f32(b.x[i]);
    w.mma_c[e] = c.x[i];
  }
  w.bar.arrive_and_wait();
  float out[8];
  for (int i = 0; i < 8; i++) {
    const int r = detail::row_of(i), col = detail::col_of(i);
    float acc = w.mma_c[r * 16 + col];
    for (int k = 0; k < 16; k++) acc += w.mma_a[r * 16 + k] * w.mma_b[k * 16 + col];
    out[i] = acc;
  }
  w.bar.arrive_and_wait();  // every lane has read the buffer before the next mma_sync overwrites it
  for (int i = 0; i < 8; i++) d.x[i] = out[i];
}
}  // namespace wmma
}  // namespace nvcuda
