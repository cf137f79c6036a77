// RoPE kernels. Angles use precise cosf/sinf (the build never enables fast math), matching the CPU tables to a few ulp.
#include "rope.cuh"

namespace streamline {
namespace cuda {

namespace {
__global__ void rope_tables_kernel(float* c, float* s, const int32_t* pos, const float* inv, size_t M, size_t half,
                                   float scaling) {
  size_t n = M * half;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    size_t m = i / half, j = i % half;
    float a = float(pos[m]) * inv[j];
    c[i] = cosf(a) * scaling;
    s[i] = sinf(a) * scaling;
  }
}

__global__ void rope_f32_kernel(float* x, const float* c, const float* s, size_t M, size_t nheads, size_t Dh) {
  const size_t half = Dh / 2, n = M * nheads * half;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    size_t j = i % half, mh = i / half, m = mh / nheads;
    float* p = x + mh * Dh;
    float x1 = p[j], x2 = p[j + half], cc = c[m * half + j], ss = s[m * half + j];
    p[j] = x1 * cc - x2 * ss;
    p[j + half] = x2 * cc + x1 * ss;
  }
}

// One block per row; threads walk the row's (H + 2 Hk) * Dh elements in pairs (32-bit indices within the row).
__global__ void qkv_bias_rope_kernel(bf16* qkv, size_t stride, const float* bias, const float* c, const float* s,
                                     size_t M, unsigned H, unsigned Hk, unsigned Dh, unsigned rot) {
  const unsigned half = rot / 2, width = (H + 2 * Hk) * Dh, qk = (H + Hk) * Dh;
  for (size_t m = blockIdx.x; m < M; m += gridDim.x) {
    bf16* row = qkv + m * stride;
    // Rotated pairs of q and k heads.
    if (c) {
      const float* cr = c + m * half;
      const float* sr = s + m * half;
      const unsigned npairs = (H + Hk) * half;
      for (unsigned i = threadIdx.x; i < npairs; i += blockDim.x) {
        const unsigned h = i / half, j = i - h * half, o = h * Dh;
        float x1 = __bfloat162float(row[o + j]), x2 = __bfloat162float(row[o + j + half]);
        if (bias) { x1 += bias[o + j]; x2 += bias[o + j + half]; }
        const float cc = cr[j], ss = sr[j];
        row[o + j] = __float2bfloat16_rn(x1 * cc - x2 * ss);
        row[o + j + half] = __float2bfloat16_rn(x2 * cc + x1 * ss);
      }
    }
    // Everything not rotated (v, the unrotated tail of partial-rotary heads, or all of it without RoPE): bias only.
    if (bias) {
      for (unsigned i = threadIdx.x; i < width; i += blockDim.x) {
        const bool rotated = c && i < qk && (i % Dh) < rot;
        if (!rotated) row[i] = __float2bfloat16_rn(__bfloat162float(row[i]) + bias[i]);
      }
    }
  }
}

// Qwen3: the same rows with each q and k head RMS-normalised over Dh (after the bias, before the rotation), in one
// pass so the packed bf16 row is read and rounded once, as without the norm. Phase 1: one warp per head sums the
// squares (f32, like norm_rows) into rinv[H + Hk] in shared memory; phase 2: every element is x*rinv then times its
// norm weight (norm_rows' order), rotated where RoPE applies, rounded to bf16 once. v gets its bias only.
__global__ void qkv_bias_norm_rope_kernel(bf16* qkv, size_t stride, const float* bias, const float* qn, const float* kn,
                                          float eps, const float* c, const float* s, size_t M, unsigned H, unsigned Hk,
                                          unsigned Dh, unsigned rot) {
  extern __shared__ float rinv[];
  const unsigned half = rot / 2, width = (H + 2 * Hk) * Dh, nh = H + Hk, qk = nh * Dh;
  for (size_t m = blockIdx.x; m < M; m += gridDim.x) {
    bf16* row = qkv + m * stride;
    head_rms_inverse(rinv, nh, Dh, eps, [&](unsigned c) { return __bfloat162float(row[c]) + (bias ? bias[c] : 0.f); });
    __syncthreads();
    auto normed = [&](unsigned i) {
      const unsigned h = i / Dh, j = i - h * Dh;
      float x = __bfloat162float(row[i]);
      if (bias) x += bias[i];
      return (h < H ? qn[j] : kn[j]) * (x * rinv[h]);
    };
    if (c) {
      const float* cr = c + m * half;
      const float* sr = s + m * half;
      for (unsigned i = threadIdx.x; i < nh * half; i += blockDim.x) {
        const unsigned h = i / half, j = i - h * half, o = h * Dh;
        const float x1 = normed(o + j), x2 = normed(o + j + half), cc = cr[j], ss = sr[j];
        row[o + j] = __float2bfloat16_rn(x1 * cc - x2 * ss);
        row[o + j + half] = __float2bfloat16_rn(x2 * cc + x1 * ss);
      }
    }
    for (unsigned i = threadIdx.x; i < width; i += blockDim.x) {
      if (i < qk) {
        if (!c || (i % Dh) >= rot) row[i] = __float2bfloat16_rn(normed(i));
      } else if (bias) {
        row[i] = __float2bfloat16_rn(__bfloat162float(row[i]) + bias[i]);
      }
    }
    __syncthreads();  // rinv[] is reused by the next row
  }
}
}  // namespace

void rope_tables(float* cos, float* sin, const int32_t* positions, const float* inv_freq, size_t M, size_t half,
                 float attention_scaling, cudaStream_t s) {
  if (M * half == 0) return;
  rope_tables_kernel<<<grid_for(M * half, 256), 256, 0, s>>>(cos, sin, positions, inv_freq, M, half, attention_scaling);
  SL_LAUNCH_CHECK();
}

void rope_forward(float* x, const float* cos, const float* sin, size_t M, size_t nheads, size_t Dh, cudaStream_t s) {
  size_t n = M * nheads * (Dh / 2);
  if (n == 0) return;
  rope_f32_kernel<<<grid_for(n, 256), 256, 0, s>>>(x, cos, sin, M, nheads, Dh);
  SL_LAUNCH_CHECK();
}

void qkv_bias_rope_bf16(bf16* qkv, size_t stride, const float* bias, const float* cos, const float* sin, size_t M,
                        size_t H, size_t Hk, size_t Dh, size_t rot_dim, cudaStream_t s) {
  if (M == 0 || (!bias && !cos)) return;
  int grid = int(M < 65535 ? M : 65535);
  qkv_bias_rope_kernel<<<grid, 256, 0, s>>>(qkv, stride, bias, cos, sin, M, unsigned(H), unsigned(Hk), unsigned(Dh),
                                            unsigned(rot_dim));
  SL_LAUNCH_CHECK();
}

void qkv_bias_norm_rope_bf16(bf16* qkv, size_t stride, const float* bias, const float* q_norm, const float* k_norm,
                             float eps, const float* cos, const float* sin, size_t M, size_t H, size_t Hk, size_t Dh,
                             size_t rot_dim, cudaStream_t s) {
  if (M == 0) return;
  int grid = int(M < 65535 ? M : 65535);
  qkv_bias_norm_rope_kernel<<<grid, 256, (H + Hk) * sizeof(float), s>>>(qkv, stride, bias, q_norm, k_norm, eps, cos,
                                                                         sin, M, unsigned(H), unsigned(Hk),
                                                                         unsigned(Dh), unsigned(rot_dim));
  SL_LAUNCH_CHECK();
}

}  // namespace cuda
}  // namespace streamline
