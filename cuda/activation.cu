// Elementwise activation kernels (grid-stride loops; f32 maths, precise expf/erff/tanhf).
#include "activation.cuh"

namespace streamline {
namespace cuda {

namespace {
__device__ __forceinline__ float act_f(float x, int act) {
  switch (act) {
    case 0: return x / (1.f + expf(-x));                                 // SiLU
    case 1: return x > 0.f ? x : (x == x ? 0.f : x);                     // ReLU, NaN stays NaN
    case 2: return 0.5f * x * (1.f + erff(x * 0.70710678118654752f));    // GELU (erf)
    default: {                                                           // GELU (tanh approximation)
      const float k = 0.7978845608028654f;                               // sqrt(2/pi)
      return 0.5f * x * (1.f + tanhf(k * (x + 0.044715f * x * x * x)));
    }
  }
}

__global__ void act_kernel(float* y, const float* x, size_t n, int act) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    y[i] = act_f(x[i], act);
}
__global__ void gated_kernel(float* y, const float* g, const float* u, size_t n, int act) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    y[i] = act_f(g[i], act) * u[i];
}
__global__ void gated_rows_kernel(bf16* y, const bf16* gu, const float* gb, const float* ub, size_t M, size_t F, int act) {
  const size_t n = M * F;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    size_t m = i / F, f = i % F;
    float g = __bfloat162float(gu[m * 2 * F + f]), u = __bfloat162float(gu[m * 2 * F + F + f]);
    if (gb) g += gb[f];
    if (ub) u += ub[f];
    y[i] = __float2bfloat16_rn(act_f(g, act) * u);
  }
}
__global__ void act_rows_kernel(bf16* x, const float* b, size_t M, size_t F, int act) {
  const size_t n = M * F;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    float v = __bfloat162float(x[i]);
    if (b) v += b[i % F];
    x[i] = __float2bfloat16_rn(act_f(v, act));
  }
}
}  // namespace

void activation_forward(float* y, const float* x, size_t n, Activation act, cudaStream_t s) {
  if (!n) return;
  act_kernel<<<grid_for(n, 256), 256, 0, s>>>(y, x, n, int(act));
  SL_LAUNCH_CHECK();
}
void gated_forward(float* y, const float* gate, const float* up, size_t n, Activation act, cudaStream_t s) {
  if (!n) return;
  gated_kernel<<<grid_for(n, 256), 256, 0, s>>>(y, gate, up, n, int(act));
  SL_LAUNCH_CHECK();
}
void gated_rows_bf16(bf16* y, const bf16* gu, const float* gate_bias, const float* up_bias, size_t M, size_t F,
                     Activation act, cudaStream_t s) {
  if (!M || !F) return;
  gated_rows_kernel<<<grid_for(M * F, 256), 256, 0, s>>>(y, gu, gate_bias, up_bias, M, F, int(act));
  SL_LAUNCH_CHECK();
}
void activation_rows_bf16(bf16* x, const float* bias, size_t M, size_t F, Activation act, cudaStream_t s) {
  if (!M || !F) return;
  act_rows_kernel<<<grid_for(M * F, 256), 256, 0, s>>>(x, bias, M, F, int(act));
  SL_LAUNCH_CHECK();
}

}  // namespace cuda
}  // namespace streamline
