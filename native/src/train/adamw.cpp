// AdamW and gradient clipping for replacement training (see train.h for the exact formulas). Built for the
// x86-64 baseline (and an AVX2 path without FMA), so each operation rounds once, as PyTorch's CPU kernels do.
#include <algorithm>
#include <cmath>
#include <vector>

#include <immintrin.h>

#include "streamline/cpu_features.h"
#include "streamline/threads.h"
#include "streamline/train.h"

namespace streamline {

namespace {

struct AdamWScalars {
  float decay, w, one_minus_w, beta2, one_minus_beta2, neg_step, bc2_sqrt, eps;
  bool wd;
};

// The element update, shared by the scalar loop and the vector tail; every operation rounds once.
inline void adamw_element(const AdamWScalars& c, float* pp, const float* gp, float* mp, float* vp) {
  float p = *pp, g = *gp, m = *mp, v = *vp;
  if (c.wd) p = p * c.decay;
  m = c.w < 0.5f ? m + c.w * (g - m) : g - (g - m) * c.one_minus_w;
  v = v * c.beta2;
  v = v + c.one_minus_beta2 * g * g;
  const float denom = std::sqrt(v) / c.bc2_sqrt + c.eps;
  p = p + c.neg_step * m / denom;
  *pp = p, *mp = m, *vp = v;
}

void adamw_range_generic(const AdamWScalars& c, const AdamWTensor& x, size_t b, size_t e) {
  for (size_t i = b; i < e; i++) adamw_element(c, x.param + i, x.grad + i, x.m + i, x.v + i);
}

// AVX2 without FMA on purpose: a fused multiply-add would round once where PyTorch's kernel rounds twice.
__attribute__((target("avx2"))) void adamw_range_avx2(const AdamWScalars& c, const AdamWTensor& x, size_t b,
                                                      size_t e) {
  const __m256 decay = _mm256_set1_ps(c.decay), w = _mm256_set1_ps(c.w), omw = _mm256_set1_ps(c.one_minus_w);
  const __m256 b2 = _mm256_set1_ps(c.beta2), omb2 = _mm256_set1_ps(c.one_minus_beta2);
  const __m256 ns = _mm256_set1_ps(c.neg_step), bc2 = _mm256_set1_ps(c.bc2_sqrt), eps = _mm256_set1_ps(c.eps);
  const bool low = c.w < 0.5f;
  size_t i = b;
  for (; i + 8 <= e; i += 8) {
    __m256 p = _mm256_loadu_ps(x.param + i), g = _mm256_loadu_ps(x.grad + i);
    __m256 m = _mm256_loadu_ps(x.m + i), v = _mm256_loadu_ps(x.v + i);
    if (c.wd) p = _mm256_mul_ps(p, decay);
    m = low ? _mm256_add_ps(m, _mm256_mul_ps(w, _mm256_sub_ps(g, m)))
            : _mm256_sub_ps(g, _mm256_mul_ps(_mm256_sub_ps(g, m), omw));
    v = _mm256_mul_ps(v, b2);
    v = _mm256_add_ps(v, _mm256_mul_ps(_mm256_mul_ps(omb2, g), g));
    const __m256 denom = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(v), bc2), eps);
    p = _mm256_add_ps(p, _mm256_div_ps(_mm256_mul_ps(ns, m), denom));
    _mm256_storeu_ps(x.param + i, p);
    _mm256_storeu_ps(x.m + i, m);
    _mm256_storeu_ps(x.v + i, v);
  }
  adamw_range_generic(c, x, i, e);
}

}  // namespace

void adamw_step(const std::vector<AdamWTensor>& tensors, const AdamWOptions& o) {
  const double t = double(o.step);
  const double bc1 = 1.0 - std::pow(o.beta1, t), bc2 = 1.0 - std::pow(o.beta2, t);
  AdamWScalars c;
  c.decay = float(1.0 - o.lr * o.weight_decay);
  c.w = float(1.0 - o.beta1);
  c.one_minus_w = 1.0f - c.w;  // torch's lerp computes (1 - weight) in f32
  c.beta2 = float(o.beta2);
  c.one_minus_beta2 = float(1.0 - o.beta2);
  c.neg_step = float(-(o.lr / bc1));
  c.bc2_sqrt = float(std::sqrt(bc2));
  c.eps = float(o.eps);
  c.wd = o.weight_decay != 0.0;
  const bool avx2 = cpu_level() >= CpuLevel::AVX2;
  for (const AdamWTensor& x : tensors) {
    parallel_for(x.n, 16384, [&](size_t b, size_t e, int) {
      if (avx2) adamw_range_avx2(c, x, b, e);
      else adamw_range_generic(c, x, b, e);
    });
  }
}

double grad_norm(const std::vector<float*>& grads, const std::vector<size_t>& sizes) {
  constexpr size_t kBlock = 16384;
  double total = 0;
  for (size_t t = 0; t < grads.size(); t++) {
    const float* g = grads[t];
    size_t n = sizes[t], nblocks = (n + kBlock - 1) / kBlock;
    std::vector<double> part(nblocks, 0.0);
    parallel_for(nblocks, 1, [&](size_t b0, size_t b1, int) {
      for (size_t blk = b0; blk < b1; blk++) {
        double s = 0;
        for (size_t i = blk * kBlock; i < std::min(n, (blk + 1) * kBlock); i++) s += double(g[i]) * g[i];
        part[blk] = s;
      }
    });
    for (double p : part) total += p;
  }
  return std::sqrt(total);
}

double clip_grad_norm(const std::vector<float*>& grads, const std::vector<size_t>& sizes, double max_norm,
                      double* applied_scale) {
  double total = grad_norm(grads, sizes);
  double scale = max_norm / (total + 1e-6);
  if (scale < 1.0) {
    const float s = float(scale);
    for (size_t t = 0; t < grads.size(); t++) {
      float* g = grads[t];
      parallel_for(sizes[t], 16384, [&](size_t b, size_t e, int) {
        for (size_t i = b; i < e; i++) g[i] *= s;
      });
    }
  } else {
    scale = 1.0;
  }
  if (applied_scale) *applied_scale = scale;
  return total;
}

}  // namespace streamline
