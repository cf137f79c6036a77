// Row normalisation kernels. Statistics in f32 exactly as the CPU reference orders them: RMSNorm
// y = w * (x * rsqrt(mean(x^2) + eps)); LayerNorm with the biased variance of the staged row.
#include "norm.cuh"

namespace streamline {
namespace cuda {

namespace {
constexpr int kThreads = 256;
constexpr int kScratch = 32;  // block_sum scratch (floats), at the start of the dynamic shared memory

// The statistics of a staged row: s1 is each thread's partial sum (of v^2 for RMSNorm, kind 0; of v for LayerNorm)
// over the elements it staged. Every thread of the block must call it (block_sum synchronises) and gets mean (0 for
// RMSNorm) and inv = 1 / sqrt(variance + eps); LayerNorm's second pass reads only the elements each thread staged.
__device__ void row_stats(int kind, float s1, const float* row, size_t D, float eps, float* scratch, float& mean,
                          float& inv) {
  s1 = block_sum(s1, scratch);
  mean = 0.f;
  if (kind == 0) {
    inv = rsqrtf(s1 / float(D) + eps);
    return;
  }
  mean = s1 / float(D);
  float s2 = 0.f;
  for (size_t d = threadIdx.x; d < D; d += blockDim.x) {
    float c = row[d] - mean;
    s2 += c * c;
  }
  s2 = block_sum(s2, scratch);
  inv = rsqrtf(s2 / float(D) + eps);
}

__global__ void norm_kernel(int kind, float* y_f32, bf16* y_bf16, float* r_out, const float* x, const float* delta,
                            const float* delta_bias, const void* w, const void* b, int wdt, size_t M, size_t D,
                            float eps) {
  // One dynamic allocation: the block_sum scratch, then the staged row. No static shared memory, so the 48 KB a
  // launch may use before opting in is all dynamic (static bytes would count against it: see norm_rows).
  extern __shared__ float sm[];
  float* scratch = sm;
  float* row = sm + kScratch;
  for (size_t m = blockIdx.x; m < M; m += gridDim.x) {
    const float* xr = x + m * D;
    float s1 = 0.f;
    for (size_t d = threadIdx.x; d < D; d += blockDim.x) {
      float v = xr[d];
      if (delta) {
        v += delta[m * D + d];
        if (delta_bias) v += delta_bias[d];
        if (r_out) r_out[m * D + d] = v;
      }
      row[d] = v;
      s1 += kind == 0 ? v * v : v;
    }
    float mean, inv;
    row_stats(kind, s1, row, D, eps, scratch, mean, inv);
    for (size_t d = threadIdx.x; d < D; d += blockDim.x) {
      float n = (row[d] - mean) * inv;
      float o = w ? wload(w, wdt, d) * n : n;
      if (kind == 1 && b) o += wload(b, wdt, d);
      if (y_f32) y_f32[m * D + d] = o;
      if (y_bf16) y_bf16[m * D + d] = __float2bfloat16_rn(o);
    }
    __syncthreads();  // row[] is reused by the next row
  }
}

// Gemma's sandwich norm at a residual add: r = x + pn(delta + delta_bias) (weight pw only), then optionally
// y = norm(r; nw, nb) as bf16 for the next GEMM. One block per row: delta and x are read once and r written once, as
// the unnormed fused add + norm does; the row is staged twice in the same shared memory (delta first, then r).
__global__ void post_norm_kernel(int kind, bf16* y_bf16, float* r_out, const float* x, const float* delta,
                                 const float* delta_bias, float* delta_out, const float* pw, const float* nw,
                                 const float* nb, size_t M, size_t D, float eps) {
  extern __shared__ float sm[];
  float* scratch = sm;
  float* row = sm + kScratch;
  for (size_t m = blockIdx.x; m < M; m += gridDim.x) {
    float s1 = 0.f;
    for (size_t d = threadIdx.x; d < D; d += blockDim.x) {
      float v = delta[m * D + d];
      if (delta_bias) v += delta_bias[d];
      if (delta_out) delta_out[m * D + d] = v;
      row[d] = v;
      s1 += kind == 0 ? v * v : v;
    }
    float mean, inv;
    row_stats(kind, s1, row, D, eps, scratch, mean, inv);
    // Each thread rewrites only the row elements it staged itself, so no barrier is needed before the overwrite.
    float t1 = 0.f;
    for (size_t d = threadIdx.x; d < D; d += blockDim.x) {
      float r = x[m * D + d] + pw[d] * ((row[d] - mean) * inv);
      r_out[m * D + d] = r;
      row[d] = r;
      t1 += kind == 0 ? r * r : r;
    }
    if (y_bf16) {
      float mean2, inv2;
      row_stats(kind, t1, row, D, eps, scratch, mean2, inv2);
      for (size_t d = threadIdx.x; d < D; d += blockDim.x) {
        float n = (row[d] - mean2) * inv2;
        float o = nw ? nw[d] * n : n;
        if (kind == 1 && nb) o += nb[d];
        y_bf16[m * D + d] = __float2bfloat16_rn(o);
      }
    }
    __syncthreads();  // row[] is reused by the next row
  }
}
}  // namespace

void norm_rows(NormKind kind, float* y_f32, bf16* y_bf16, float* r_out, const float* x, const float* delta,
               const float* delta_bias, const void* w, const void* b, DType wdt, size_t M, size_t D, float eps,
               cudaStream_t s) {
  if (M == 0 || D == 0) return;
  // Without the opt-in a block gets 48 KB of shared memory, static and dynamic together. With the scratch as a
  // static array, 12257 <= D <= 12288 (OPT-175B and GPT-3 have 12288) asked for up to 48 KB of dynamic memory plus
  // 128 static bytes without raising the limit (48 KB is not > 48 KB): an invalid-argument launch failure. Now
  // everything is in `smem`, so this comparison is exact.
  const size_t smem = (kScratch + D) * sizeof(float);
  static size_t raised = 48 * 1024;
  if (smem > raised) {
    SL_CUDA_CHECK(cudaFuncSetAttribute(norm_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
    raised = smem;
  }
  int grid = int(M < 65535 ? M : 65535);
  norm_kernel<<<grid, kThreads, smem, s>>>(int(kind), y_f32, y_bf16, r_out, x, delta, delta_bias, w, b, int(wdt), M,
                                            D, eps);
  SL_LAUNCH_CHECK();
}

void post_norm_rows(NormKind kind, bf16* y_bf16, float* r_out, const float* x, const float* delta,
                    const float* delta_bias, float* delta_out, const float* pw, const float* nw, const float* nb,
                    size_t M, size_t D, float eps, cudaStream_t s) {
  if (M == 0 || D == 0) return;
  const size_t smem = (kScratch + D) * sizeof(float);
  static size_t raised = 48 * 1024;
  if (smem > raised) {
    SL_CUDA_CHECK(cudaFuncSetAttribute(post_norm_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
    raised = smem;
  }
  int grid = int(M < 65535 ? M : 65535);
  post_norm_kernel<<<grid, kThreads, smem, s>>>(int(kind), y_bf16, r_out, x, delta, delta_bias, delta_out, pw, nw,
                                                nb, M, D, eps);
  SL_LAUNCH_CHECK();
}

void rmsnorm_forward(float* y, const float* x, const void* w, DType wdt, size_t M, size_t D, float eps, cudaStream_t s) {
  norm_rows(NormKind::RMS, y, nullptr, nullptr, x, nullptr, nullptr, w, nullptr, wdt, M, D, eps, s);
}

void layernorm_forward(float* y, const float* x, const void* w, const void* b, DType wdt, size_t M, size_t D,
                       float eps, cudaStream_t s) {
  norm_rows(NormKind::Layer, y, nullptr, nullptr, x, nullptr, nullptr, w, b, wdt, M, D, eps, s);
}

}  // namespace cuda
}  // namespace streamline
