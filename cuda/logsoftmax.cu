// Row statistics with an online (max, sum of exp) pair per thread, merged across the block.
#include "logsoftmax.cuh"

namespace streamline {
namespace cuda {

namespace {
constexpr int kThreads = 512;

struct MS { float m, s; };

__device__ __forceinline__ MS ms_merge(MS a, MS b) {
  if (a.m != a.m || b.m != b.m) return MS{nanf(""), nanf("")};
  if (a.m == -INFINITY) return b;
  if (b.m == -INFINITY) return a;
  float m = fmaxf(a.m, b.m);
  return MS{m, a.s * expf(a.m - m) + b.s * expf(b.m - m)};
}

// Returns (max, log(sum(exp(x - max)))) for the row, in every thread.
__device__ MS row_stats(const float* x, size_t V) {
  __shared__ MS sh[32];
  MS t{-INFINITY, 0.f};
  for (size_t i = threadIdx.x; i < V; i += blockDim.x) t = ms_merge(t, MS{x[i], 1.f});
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    MS u{__shfl_xor_sync(0xffffffffu, t.m, o), __shfl_xor_sync(0xffffffffu, t.s, o)};
    t = ms_merge(t, u);
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  __syncthreads();
  if (lane == 0) sh[warp] = t;
  __syncthreads();
  MS r{-INFINITY, 0.f};
  for (int w = 0; w < nw; w++) r = ms_merge(r, sh[w]);
  return MS{r.m, logf(r.s)};
}

__global__ void log_softmax_kernel(float* y, const float* x, size_t M, size_t V) {
  for (size_t m = blockIdx.x; m < M; m += gridDim.x) {
    MS st = row_stats(x + m * V, V);
    for (size_t i = threadIdx.x; i < V; i += blockDim.x) y[m * V + i] = (x[m * V + i] - st.m) - st.s;
  }
}

__global__ void token_logprobs_kernel(float* lp, const float* x, const int32_t* target, size_t M, size_t V) {
  for (size_t m = blockIdx.x; m < M; m += gridDim.x) {
    const int32_t t = target[m];
    if (t < 0 || size_t(t) >= V) {
      if (threadIdx.x == 0) lp[m] = 0.f;
      continue;
    }
    MS st = row_stats(x + m * V, V);
    if (threadIdx.x == 0) lp[m] = (x[m * V + size_t(t)] - st.m) - st.s;
  }
}
}  // namespace

void log_softmax_forward(float* y, const float* x, size_t M, size_t V, cudaStream_t s) {
  if (!M || !V) return;
  log_softmax_kernel<<<int(M < 65535 ? M : 65535), kThreads, 0, s>>>(y, x, M, V);
  SL_LAUNCH_CHECK();
}
void token_logprobs(float* lp, const float* logits, const int32_t* target, size_t M, size_t V, cudaStream_t s) {
  if (!M) return;
  token_logprobs_kernel<<<int(M < 65535 ? M : 65535), kThreads, 0, s>>>(lp, logits, target, M, V);
  SL_LAUNCH_CHECK();
}

}  // namespace cuda
}  // namespace streamline
