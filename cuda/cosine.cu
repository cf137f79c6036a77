// Cosine accumulation: one warp per row (grid-stride over rows), each lane reading 16-byte vectors of both rows,
// four vectors in flight per lane; f64 lane sums, warp shuffles, then one partial per block. A second one-block
// kernel adds the partials in block order into the accumulator.
#include "cosine.cuh"

namespace streamline {
namespace cuda {

namespace {
constexpr int kWarps = 8;  // rows in flight per block

struct Part { double sum; unsigned long long count, zeros; };

__device__ __forceinline__ void acc3(double& ab, double& aa, double& bb, float x, float y) {
  double dx = x, dy = y;
  ab = fma(dx, dy, ab);
  aa = fma(dx, dx, aa);
  bb = fma(dy, dy, bb);
}

__device__ __forceinline__ void load_vec(const float* p, size_t i, float (&v)[8], int& n) {
  float4 t = reinterpret_cast<const float4*>(p)[i];
  v[0] = t.x; v[1] = t.y; v[2] = t.z; v[3] = t.w;
  n = 4;
}
__device__ __forceinline__ void load_vec(const bf16* p, size_t i, float (&v)[8], int& n) {
  uint4 t = reinterpret_cast<const uint4*>(p)[i];
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&t);
#pragma unroll
  for (int k = 0; k < 4; k++) {
    float2 f = __bfloat1622float2(h[k]);
    v[2 * k] = f.x; v[2 * k + 1] = f.y;
  }
  n = 8;
}

template <typename T>
__global__ void cosine_rows_kernel(Part* parts, const T* a, const T* b, const uint8_t* mask, size_t M, size_t D,
                                   bool vec_ok) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  constexpr int per_vec = 16 / sizeof(T);
  double wsum = 0;
  unsigned long long wcount = 0, wzeros = 0;
  for (size_t m = size_t(blockIdx.x) * kWarps + warp; m < M; m += size_t(gridDim.x) * kWarps) {
    if (mask && !mask[m]) continue;
    const T* ar = a + m * D;
    const T* br = b + m * D;
    double ab = 0, aa = 0, bb = 0;
    size_t done = 0;
    if (vec_ok) {
      const size_t nv = D / per_vec;
      size_t i = lane;
      // Four independent 16-byte loads per operand before the first use.
      for (; i + 96 < nv; i += 128) {
        float va[4][8], vb[4][8];
        int n;
#pragma unroll
        for (int u = 0; u < 4; u++) { load_vec(ar, i + 32 * u, va[u], n); load_vec(br, i + 32 * u, vb[u], n); }
#pragma unroll
        for (int u = 0; u < 4; u++)
#pragma unroll
          for (int k = 0; k < per_vec; k++) acc3(ab, aa, bb, va[u][k], vb[u][k]);
      }
      for (; i < nv; i += 32) {
        float va[8], vb[8];
        int n;
        load_vec(ar, i, va, n);
        load_vec(br, i, vb, n);
#pragma unroll
        for (int k = 0; k < per_vec; k++) acc3(ab, aa, bb, va[k], vb[k]);
      }
      done = nv * per_vec;
    }
    for (size_t d = done + lane; d < D; d += 32) acc3(ab, aa, bb, to_f32(ar[d]), to_f32(br[d]));
    ab = warp_sum(ab);
    aa = warp_sum(aa);
    bb = warp_sum(bb);
    if (lane == 0) {
      wcount++;
      if (aa == 0 || bb == 0) wzeros++;
      else wsum += ab / (sqrt(aa) * sqrt(bb));
    }
  }
  __shared__ Part sp[kWarps];
  if (lane == 0) sp[warp] = Part{wsum, wcount, wzeros};
  __syncthreads();
  if (threadIdx.x == 0) {
    Part p{0, 0, 0};
    for (int w = 0; w < kWarps; w++) { p.sum += sp[w].sum; p.count += sp[w].count; p.zeros += sp[w].zeros; }
    parts[blockIdx.x] = p;
  }
}

// One warp adds the partials in a fixed order (lane-strided, then a fixed shuffle tree): deterministic.
__global__ void cosine_finish_kernel(CosineAccum* acc, const Part* parts, int n) {
  const int lane = threadIdx.x;
  double sum = 0;
  unsigned long long count = 0, zeros = 0;
  for (int i = lane; i < n; i += 32) { sum += parts[i].sum; count += parts[i].count; zeros += parts[i].zeros; }
  sum = warp_sum(sum);
  count = warp_sum(count);
  zeros = warp_sum(zeros);
  if (lane == 0) {
    acc->sum += sum;
    acc->count += count;
    acc->zeros += zeros;
  }
}

template <typename T>
void launch(CosineAccum* acc, const T* a, const T* b, const uint8_t* mask, size_t M, size_t D, cudaStream_t s) {
  if (M == 0) return;
  size_t want = (M + kWarps - 1) / kWarps;
  size_t cap = size_t(sm_count()) * 8;  // 8 blocks of 8 warps per SM: enough loads in flight to saturate HBM
  int grid = int(want < cap ? want : cap);
  const bool vec_ok = (reinterpret_cast<uintptr_t>(a) % 16 == 0) && (reinterpret_cast<uintptr_t>(b) % 16 == 0) &&
                      ((D * sizeof(T)) % 16 == 0);
  Part* parts = nullptr;
  SL_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&parts), sizeof(Part) * size_t(grid), s));
  cosine_rows_kernel<T><<<grid, kWarps * 32, 0, s>>>(parts, a, b, mask, M, D, vec_ok);
  SL_LAUNCH_CHECK();
  cosine_finish_kernel<<<1, 32, 0, s>>>(acc, parts, grid);
  SL_LAUNCH_CHECK();
  SL_CUDA_CHECK(cudaFreeAsync(parts, s));
}
}  // namespace

void cosine_accumulate(CosineAccum* acc, const float* a, const float* b, const uint8_t* mask, size_t M, size_t D,
                       cudaStream_t s) {
  launch(acc, a, b, mask, M, D, s);
}
void cosine_accumulate_bf16(CosineAccum* acc, const bf16* a, const bf16* b, const uint8_t* mask, size_t M, size_t D,
                            cudaStream_t s) {
  launch(acc, a, b, mask, M, D, s);
}

}  // namespace cuda
}  // namespace streamline
