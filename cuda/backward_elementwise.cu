// Elementwise backward kernels on the GPU (see backward.cuh): activation and gated-unit derivatives with the
// formulas of native/src/ops/backward_activation.cpp (PyTorch's silu/threshold/gelu backward) in f32 as the CPU
// fast path computes them, the inverse RoPE rotation, and the MSE loss with its gradient (loss summed in f64 over
// fixed blocks of elements, then the blocks in order: deterministic).
#include "backward.cuh"

namespace streamline {
namespace cuda {

namespace {

constexpr int kThreads = 256;

// act(x) and act'(x) in f32 (precise expf/erff/tanhf; nvcc may contract a product and a sum into one FMA, which
// rounds once where the CPU rounds twice: within an ulp, covered by the harness tolerance).
__device__ __forceinline__ void act_and_grad(float x, int act, float* value, float* grad) {
  switch (act) {
    case int(Activation::SiLU): {
      const float s = 1.f / (1.f + expf(-x));
      *value = x * s;
      *grad = s * (1.f + x * (1.f - s));
      return;
    }
    case int(Activation::ReLU):
      *value = x > 0.f ? x : 0.f;
      *grad = x > 0.f ? 1.f : 0.f;
      return;
    case int(Activation::GELU): {
      const float cdf = 0.5f * (1.f + erff(x * 0.70710678118654752440f));
      *value = x * cdf;
      *grad = cdf + x * 0.39894228040143267794f * expf(-0.5f * x * x);
      return;
    }
    default: {  // GELU-tanh
      const float k = 0.79788456080286535588f, kappa = 0.044715f;
      const float x2 = x * x;
      const float t = tanhf(k * (x + kappa * x2 * x));
      *value = 0.5f * x * (1.f + t);
      *grad = 0.5f * (1.f + t) + 0.5f * x * (1.f - t * t) * k * (1.f + float(3 * 0.044715) * x2);
      return;
    }
  }
}

__global__ void act_bwd_kernel(float* dx, const float* dy, const float* x, size_t n, int act) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    float v, g;
    act_and_grad(x[i], act, &v, &g);
    dx[i] += dy[i] * g;
  }
}

__global__ void gated_bwd_kernel(float* dgate, float* dup, const float* dy, const float* gate, const float* up,
                                 size_t n, int act) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    float v, g;
    act_and_grad(gate[i], act, &v, &g);
    if (dgate) dgate[i] += dy[i] * up[i] * g;
    if (dup) dup[i] += dy[i] * v;
  }
}

// The training step's MLP activation backward in one pass: d(gate) and d(up) written (not accumulated) as bf16 for the
// dW/dX GEMMs, and in f32 only where a bias needs their column sums. gate == nullptr: the plain MLP, dup = dy · act'(up).
// The same products as gated_bwd_kernel / act_bwd_kernel into zeroed buffers, so the values are theirs (a −0 that
// 0 + (−0) would have made +0 aside).
__global__ void mlp_act_bwd_bf16_kernel(bf16* dgate_bf, bf16* dup_bf, float* dgate, float* dup, const float* dy,
                                        const float* gate, const float* up, size_t n, int act) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    float v, g, du;
    if (gate) {
      act_and_grad(gate[i], act, &v, &g);
      const float dg = dy[i] * up[i] * g;
      dgate_bf[i] = __float2bfloat16_rn(dg);
      if (dgate) dgate[i] = dg;
      du = dy[i] * v;
    } else {
      act_and_grad(up[i], act, &v, &g);
      du = dy[i] * g;
    }
    dup_bf[i] = __float2bfloat16_rn(du);
    if (dup) dup[i] = du;
  }
}

// One thread per rotation pair (m, h, i): the pair lives at i and i + half of head h of row m (an odd Dh leaves
// the last element of each head alone, as the CPU does).
__global__ void rope_bwd_kernel(float* dx, const float* cos, const float* sin, size_t M, unsigned nheads,
                                unsigned half, unsigned Dh) {
  const size_t n = M * nheads * half;
  for (size_t t = blockIdx.x * size_t(blockDim.x) + threadIdx.x; t < n; t += size_t(gridDim.x) * blockDim.x) {
    const unsigned i = unsigned(t % half);
    const size_t mh = t / half, m = mh / nheads;
    float* p = dx + mh * Dh;
    const float c = cos[m * half + i], s = sin[m * half + i], d1 = p[i], d2 = p[i + half];
    p[i] = d1 * c + d2 * s;
    p[i + half] = d2 * c - d1 * s;
  }
}

// ---- MSE --------------------------------------------------------------------------------------------------
constexpr size_t kMseBlock = 8192;  // elements per f64 partial (the CPU's block size)
constexpr int kReduceThreads = 256;

// count[0] = number of counted rows (row_mask == nullptr: all). One block; rows summed in a fixed order.
__global__ void mse_count_rows(unsigned long long* count, const uint8_t* row_mask, size_t rows) {
  __shared__ unsigned long long scratch[32];
  unsigned long long c = 0;
  for (size_t r = threadIdx.x; r < rows; r += blockDim.x) c += row_mask ? (row_mask[r] ? 1ull : 0ull) : 1ull;
  c = block_sum(c, scratch);
  if (threadIdx.x == 0) count[0] = c;
}

// One block per kMseBlock elements: partial[blk] = Σ (a − b)² over counted rows; da = 2(a − b)/n, 0 on masked rows.
__global__ void mse_partials(double* partial, float* da, const float* a, const float* b, size_t n_all, size_t D,
                             const uint8_t* row_mask, const unsigned long long* count) {
  __shared__ double scratch[32];
  const size_t i0 = size_t(blockIdx.x) * kMseBlock, i1 = i0 + kMseBlock < n_all ? i0 + kMseBlock : n_all;
  const double n = double(count[0] * D);
  const double scale = n > 0 ? 2.0 / n : 0.0;
  double s = 0;
  for (size_t i = i0 + threadIdx.x; i < i1; i += blockDim.x) {
    const bool counted = !row_mask || row_mask[i / D];
    const double d = counted ? double(a[i]) - double(b[i]) : 0.0;
    s += d * d;
    if (da) da[i] = counted ? float(scale * d) : 0.f;
  }
  s = block_sum(s, scratch);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// loss = Σ partials / n. Each thread adds a fixed strided subset in order, then a fixed tree: deterministic.
__global__ void mse_finish(double* loss, const double* partial, size_t nblocks, const unsigned long long* count,
                           size_t D) {
  __shared__ double scratch[32];
  double s = 0;
  for (size_t b = threadIdx.x; b < nblocks; b += blockDim.x) s += partial[b];
  s = block_sum(s, scratch);
  if (threadIdx.x == 0) {
    const double n = double(count[0] * D);
    loss[0] = n > 0 ? s / n : 0.0;
  }
}

}  // namespace

void activation_backward(float* dx, const float* dy, const float* x, size_t n, Activation act, cudaStream_t s) {
  if (n == 0) return;
  act_bwd_kernel<<<grid_for(n, kThreads), kThreads, 0, s>>>(dx, dy, x, n, int(act));
  SL_LAUNCH_CHECK();
}

void gated_backward(float* dgate, float* dup, const float* dy, const float* gate, const float* up, size_t n,
                    Activation act, cudaStream_t s) {
  if (n == 0 || (!dgate && !dup)) return;
  gated_bwd_kernel<<<grid_for(n, kThreads), kThreads, 0, s>>>(dgate, dup, dy, gate, up, n, int(act));
  SL_LAUNCH_CHECK();
}

void mlp_activation_backward_bf16(bf16* dgate_bf, bf16* dup_bf, float* dgate, float* dup, const float* dy,
                                  const float* gate, const float* up, size_t n, Activation act, cudaStream_t s) {
  if (n == 0) return;
  mlp_act_bwd_bf16_kernel<<<grid_for(n, kThreads), kThreads, 0, s>>>(dgate_bf, dup_bf, dgate, dup, dy, gate, up, n,
                                                                      int(act));
  SL_LAUNCH_CHECK();
}

void rope_backward(float* dx, const float* cos, const float* sin, size_t M, size_t nheads, size_t Dh, cudaStream_t s,
                   size_t rot) {
  const size_t half = (rot ? rot : Dh) / 2, n = M * nheads * half;
  if (n == 0) return;
  rope_bwd_kernel<<<grid_for(n, kThreads), kThreads, 0, s>>>(dx, cos, sin, M, unsigned(nheads), unsigned(half),
                                                             unsigned(Dh));
  SL_LAUNCH_CHECK();
}

void mse_forward_backward(float* da, double* loss_dev, const float* a, const float* b, size_t rows, size_t D,
                          const uint8_t* row_mask, cudaStream_t s) {
  const size_t n = rows * D;
  if (n == 0) {
    SL_CUDA_CHECK(cudaMemsetAsync(loss_dev, 0, sizeof(double), s));
    return;
  }
  const size_t nblocks = (n + kMseBlock - 1) / kMseBlock;
  if (nblocks > 0x7fffffffu) throw CudaError("mse_forward_backward: tensor too large");
  unsigned long long* count = nullptr;
  double* partial = nullptr;
  SL_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&count), sizeof(unsigned long long), s));
  SL_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&partial), sizeof(double) * nblocks, s));
  mse_count_rows<<<1, kReduceThreads, 0, s>>>(count, row_mask, rows);
  SL_LAUNCH_CHECK();
  mse_partials<<<unsigned(nblocks), kReduceThreads, 0, s>>>(partial, da, a, b, n, D, row_mask, count);
  SL_LAUNCH_CHECK();
  mse_finish<<<1, kReduceThreads, 0, s>>>(loss_dev, partial, nblocks, count, D);
  SL_LAUNCH_CHECK();
  SL_CUDA_CHECK(cudaFreeAsync(partial, s));
  SL_CUDA_CHECK(cudaFreeAsync(count, s));
}

}  // namespace cuda
}  // namespace streamline
