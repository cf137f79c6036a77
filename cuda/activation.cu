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
// The training step's MLP hidden activation, rounded once to bf16 for the down GEMM: the f32 value of act_kernel /
// gated_kernel, so the result is bitwise theirs followed by a cast, without the f32 round trip through memory.
__global__ void mlp_hidden_bf16_kernel(bf16* y, const float* g, const float* u, size_t n, int act) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    y[i] = __float2bfloat16_rn(g ? act_f(g[i], act) * u[i] : act_f(u[i], act));
}
// Row kernels: one block per row (grid-stride over rows), 32-bit indices inside the row, and 16-byte vectors of
// eight bf16 when the row width allows it (no 64-bit division per element).
__device__ __forceinline__ void load8(const bf16* p, float (&v)[8]) {
  uint4 t = *reinterpret_cast<const uint4*>(p);
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&t);
#pragma unroll
  for (int k = 0; k < 4; k++) {
    float2 f = __bfloat1622float2(h[k]);
    v[2 * k] = f.x;
    v[2 * k + 1] = f.y;
  }
}
__device__ __forceinline__ void store8(bf16* p, const float (&v)[8]) {
  uint4 t;
  __nv_bfloat162* h = reinterpret_cast<__nv_bfloat162*>(&t);
#pragma unroll
  for (int k = 0; k < 4; k++) h[k] = __floats2bfloat162_rn(v[2 * k], v[2 * k + 1]);
  *reinterpret_cast<uint4*>(p) = t;
}

__global__ void gated_rows_kernel(bf16* y, const bf16* gu, const float* gb, const float* ub, size_t M, unsigned F, int act,
                                  bool vec) {
  for (size_t m = blockIdx.x; m < M; m += gridDim.x) {
    const bf16* g = gu + m * 2 * F;
    const bf16* u = g + F;
    bf16* yr = y + m * F;
    if (vec) {
      for (unsigned f = threadIdx.x * 8; f < F; f += blockDim.x * 8) {
        float a[8], b[8], o[8];
        load8(g + f, a);
        load8(u + f, b);
#pragma unroll
        for (int k = 0; k < 8; k++) {
          const float gg = gb ? a[k] + gb[f + k] : a[k], uu = ub ? b[k] + ub[f + k] : b[k];
          o[k] = act_f(gg, act) * uu;
        }
        store8(yr + f, o);
      }
    } else {
      for (unsigned f = threadIdx.x; f < F; f += blockDim.x) {
        float gg = __bfloat162float(g[f]), uu = __bfloat162float(u[f]);
        if (gb) gg += gb[f];
        if (ub) uu += ub[f];
        yr[f] = __float2bfloat16_rn(act_f(gg, act) * uu);
      }
    }
  }
}
__global__ void act_rows_kernel(bf16* x, const float* b, size_t M, unsigned F, int act, bool vec) {
  for (size_t m = blockIdx.x; m < M; m += gridDim.x) {
    bf16* xr = x + m * F;
    if (vec) {
      for (unsigned f = threadIdx.x * 8; f < F; f += blockDim.x * 8) {
        float a[8];
        load8(xr + f, a);
#pragma unroll
        for (int k = 0; k < 8; k++) a[k] = act_f(b ? a[k] + b[f + k] : a[k], act);
        store8(xr + f, a);
      }
    } else {
      for (unsigned f = threadIdx.x; f < F; f += blockDim.x) {
        float v = __bfloat162float(xr[f]);
        if (b) v += b[f];
        xr[f] = __float2bfloat16_rn(act_f(v, act));
      }
    }
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

void mlp_hidden_bf16(bf16* y, const float* gate, const float* up, size_t n, Activation act, cudaStream_t s) {
  if (n == 0) return;
  mlp_hidden_bf16_kernel<<<grid_for(n, 256), 256, 0, s>>>(y, gate, up, n, int(act));
  SL_LAUNCH_CHECK();
}
void gated_rows_bf16(bf16* y, const bf16* gu, const float* gate_bias, const float* up_bias, size_t M, size_t F,
                     Activation act, cudaStream_t s) {
  if (!M || !F) return;
  const bool vec = F % 8 == 0 && reinterpret_cast<uintptr_t>(gu) % 16 == 0 && reinterpret_cast<uintptr_t>(y) % 16 == 0;
  gated_rows_kernel<<<int(M < 65535 ? M : 65535), 256, 0, s>>>(y, gu, gate_bias, up_bias, M, unsigned(F), int(act), vec);
  SL_LAUNCH_CHECK();
}
void activation_rows_bf16(bf16* x, const float* bias, size_t M, size_t F, Activation act, cudaStream_t s) {
  if (!M || !F) return;
  const bool vec = F % 8 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0;
  act_rows_kernel<<<int(M < 65535 ? M : 65535), 256, 0, s>>>(x, bias, M, unsigned(F), int(act), vec);
  SL_LAUNCH_CHECK();
}

}  // namespace cuda
}  // namespace streamline
