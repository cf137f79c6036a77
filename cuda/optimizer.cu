// AdamW and global-norm gradient clipping on the GPU (see backward.cuh and train.h).
//
// adamw_update must be bitwise equal to streamline::adamw_step (native/src/train/adamw.cpp). That file is built
// for the x86-64 baseline, and its AVX2 path deliberately has no FMA: every multiply, add, divide and sqrt rounds
// once, in f32, with denormals kept (no fast-math, default MXCSR). nvcc contracts a*b + c into an FMA by default
// (--fmad=true), so every operation below is an explicit round-to-nearest intrinsic, in the CPU's order. The
// scalars are formed on the host in f64 and rounded to f32 exactly as adamw_step forms them (same expressions).
//
// grad_sumsq: f64 sum of squares over fixed blocks of kSumBlock elements (one partial per block, a fixed tree
// inside it), then the partials in block order: deterministic, independent of the device. clip_by_global_norm reads
// the sum on the device, so the training step needs no host round trip.
#include <cmath>

#include "backward.cuh"

namespace streamline {
namespace cuda {

namespace {

constexpr int kThreads = 256;
constexpr size_t kSumBlock = 16384;  // elements per f64 partial (the CPU's block)

struct AdamWScalars {
  float decay, w, one_minus_w, beta2, one_minus_beta2, neg_step, bc2_sqrt, eps;
  int wd;
};

__global__ void adamw_kernel(float* param, const float* grad, float* mom, float* vel, size_t n, AdamWScalars c) {
  const bool low = c.w < 0.5f;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    float p = param[i];
    const float g = grad[i];
    float m = mom[i], v = vel[i];
    if (c.wd) p = __fmul_rn(p, c.decay);
    // torch's lerp: w < 0.5 ? m + w·(g − m) : g − (g − m)·(1 − w)
    m = low ? __fadd_rn(m, __fmul_rn(c.w, __fsub_rn(g, m))) : __fsub_rn(g, __fmul_rn(__fsub_rn(g, m), c.one_minus_w));
    v = __fmul_rn(v, c.beta2);
    v = __fadd_rn(v, __fmul_rn(__fmul_rn(c.one_minus_beta2, g), g));
    const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(v), c.bc2_sqrt), c.eps);
    p = __fadd_rn(p, __fdiv_rn(__fmul_rn(c.neg_step, m), denom));
    param[i] = p;
    mom[i] = m;
    vel[i] = v;
  }
}

__global__ void sumsq_partials(double* partial, const float* g, size_t n) {
  __shared__ double scratch[32];
  const size_t i0 = size_t(blockIdx.x) * kSumBlock, i1 = i0 + kSumBlock < n ? i0 + kSumBlock : n;
  double s = 0;
  for (size_t i = i0 + threadIdx.x; i < i1; i += blockDim.x) {
    const double x = double(g[i]);
    s += x * x;  // exact: a product of two f32 fits in f64
  }
  s = block_sum(s, scratch);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

__global__ void sumsq_finish(double* sumsq, const double* partial, size_t nblocks) {
  __shared__ double scratch[32];
  double s = 0;
  for (size_t b = threadIdx.x; b < nblocks; b += blockDim.x) s += partial[b];
  s = block_sum(s, scratch);
  if (threadIdx.x == 0) sumsq[0] += s;
}

__global__ void clip_kernel(float* g, size_t n, const double* sumsq, double max_norm) {
  // clip_grad_norm: scale = max_norm / (total + 1e-6), applied as float(scale) when < 1 (NaN total: no clip).
  const double scale = max_norm / (sqrt(sumsq[0]) + 1e-6);
  if (!(scale < 1.0)) return;
  const float f = float(scale);
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    g[i] = __fmul_rn(g[i], f);
}

}  // namespace

void adamw_update(float* param, const float* grad, float* m, float* v, size_t n, const AdamWOptions& o,
                  cudaStream_t s) {
  if (n == 0) return;
  // The expressions of adamw_step, term for term (host f64, then f32).
  const double t = double(o.step);
  const double bc1 = 1.0 - std::pow(o.beta1, t), bc2 = 1.0 - std::pow(o.beta2, t);
  AdamWScalars c;
  c.decay = float(1.0 - o.lr * o.weight_decay);
  c.w = float(1.0 - o.beta1);
  c.one_minus_w = 1.0f - c.w;
  c.beta2 = float(o.beta2);
  c.one_minus_beta2 = float(1.0 - o.beta2);
  c.neg_step = float(-(o.lr / bc1));
  c.bc2_sqrt = float(std::sqrt(bc2));
  c.eps = float(o.eps);
  c.wd = o.weight_decay != 0.0 ? 1 : 0;
  adamw_kernel<<<grid_for(n, kThreads), kThreads, 0, s>>>(param, grad, m, v, n, c);
  SL_LAUNCH_CHECK();
}

void grad_sumsq(double* sumsq_dev, const float* g, size_t n, cudaStream_t s) {
  if (n == 0) return;
  const size_t nblocks = (n + kSumBlock - 1) / kSumBlock;
  if (nblocks > 0x7fffffffu) throw CudaError("grad_sumsq: tensor too large");
  double* partial = nullptr;
  SL_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&partial), sizeof(double) * nblocks, s));
  sumsq_partials<<<unsigned(nblocks), kThreads, 0, s>>>(partial, g, n);
  SL_LAUNCH_CHECK();
  sumsq_finish<<<1, kThreads, 0, s>>>(sumsq_dev, partial, nblocks);
  SL_LAUNCH_CHECK();
  SL_CUDA_CHECK(cudaFreeAsync(partial, s));
}

void clip_by_global_norm(float* g, size_t n, const double* sumsq_dev, double max_norm, cudaStream_t s) {
  if (n == 0) return;
  clip_kernel<<<grid_for(n, kThreads), kThreads, 0, s>>>(g, n, sumsq_dev, max_norm);
  SL_LAUNCH_CHECK();
}

}  // namespace cuda
}  // namespace streamline
