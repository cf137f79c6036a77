// RMSNorm and LayerNorm forward over rows of f32 activations, with f32/bf16/f16 scale and shift.
//
// RMSNorm follows Hugging Face LlamaRMSNorm in f32: variance = mean(x^2) with each square rounded to f32,
// h = x * (1 / sqrt(variance + eps)) in f32, y = w * h in f32. The sum of squares is accumulated in f64 and
// rounded once: that is within 0.5 ulp of the exact sum, while torch's cascade summation is within a few ulp
// of it, so f64 is the closest reproducible choice (a plain f32 running sum drifts by up to D ulp).
// LayerNorm (torch.nn.functional.layer_norm): biased variance, eps inside the square root; mean and variance
// in f64 (two passes), then y = (x - mean) * rstd * w + b in f32.
#include <cmath>
#include <vector>

#include "simd.h"
#include "streamline/ops.h"
#include "streamline/threads.h"

namespace streamline {

namespace {

float wat(const void* w, DType t, size_t i) {
  switch (t) {
    case DType::F32: return static_cast<const float*>(w)[i];
    case DType::F16: return f16_to_f32(static_cast<const uint16_t*>(w)[i]);
    default: return bf16_to_f32(static_cast<const uint16_t*>(w)[i]);
  }
}

// A weight vector widened to f32 (or borrowed when it already is f32).
struct F32Vec {
  std::vector<float> own;
  const float* p = nullptr;
  F32Vec(const void* w, DType t, size_t n) {
    if (!w) return;
    if (t == DType::F32) { p = static_cast<const float*>(w); return; }
    own.resize(n);
    for (size_t i = 0; i < n; i++) own[i] = wat(w, t, i);
    p = own.data();
  }
};

STREAMLINE_AVX2 double sumsq_avx2(const float* x, size_t D) {
  __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
  size_t i = 0;
  for (; i + 8 <= D; i += 8) {
    __m256 v = _mm256_loadu_ps(x + i);
    __m256 s = _mm256_mul_ps(v, v);  // rounded to f32, as torch's pow(2)
    a0 = _mm256_add_pd(a0, _mm256_cvtps_pd(_mm256_castps256_ps128(s)));
    a1 = _mm256_add_pd(a1, _mm256_cvtps_pd(_mm256_extractf128_ps(s, 1)));
  }
  double acc = detail::hsum256d(_mm256_add_pd(a0, a1));
  for (; i < D; i++) { float s = x[i] * x[i]; acc += double(s); }
  return acc;
}

STREAMLINE_AVX2 void scale_row_avx2(float* y, const float* x, const float* w, float r, size_t D) {
  __m256 rv = _mm256_set1_ps(r);
  size_t i = 0;
  for (; i + 8 <= D; i += 8) {
    __m256 h = _mm256_mul_ps(_mm256_loadu_ps(x + i), rv);
    if (w) h = _mm256_mul_ps(_mm256_loadu_ps(w + i), h);
    _mm256_storeu_ps(y + i, h);
  }
  for (; i < D; i++) { float h = x[i] * r; y[i] = w ? w[i] * h : h; }
}

float rms_factor(double sumsq, size_t D, float eps) {
  float var = float(sumsq) / float(D);
  return 1.0f / std::sqrt(var + eps);
}

}  // namespace

void rmsnorm_forward(float* y, const float* x, const void* w, DType wdt, size_t M, size_t D, float eps) {
  if (M == 0 || D == 0) return;
  F32Vec wv(w, wdt, D);
  bool avx = detail::use_avx2();
  parallel_for(M, std::max<size_t>(1, 16384 / D), [&](size_t b, size_t e, int) {
    for (size_t m = b; m < e; m++) {
      const float* xr = x + m * D;
      float* yr = y + m * D;
      if (avx) {
        scale_row_avx2(yr, xr, wv.p, rms_factor(sumsq_avx2(xr, D), D, eps), D);
      } else {
        double acc = 0;
        for (size_t i = 0; i < D; i++) { float s = xr[i] * xr[i]; acc += double(s); }
        float r = rms_factor(acc, D, eps);
        for (size_t i = 0; i < D; i++) { float h = xr[i] * r; yr[i] = wv.p ? wv.p[i] * h : h; }
      }
    }
  });
}

void layernorm_forward(float* y, const float* x, const void* w, const void* b, DType wdt, size_t M, size_t D, float eps) {
  if (M == 0 || D == 0) return;
  F32Vec wv(w, wdt, D), bv(b, wdt, D);
  parallel_for(M, std::max<size_t>(1, 16384 / D), [&](size_t rb, size_t re, int) {
    for (size_t m = rb; m < re; m++) {
      const float* xr = x + m * D;
      float* yr = y + m * D;
      double s = 0;
      for (size_t i = 0; i < D; i++) s += xr[i];
      double mean = s / double(D), v = 0;
      for (size_t i = 0; i < D; i++) { double d = xr[i] - mean; v += d * d; }
      float meanf = float(mean);
      float rstd = 1.0f / std::sqrt(float(v / double(D)) + eps);
      for (size_t i = 0; i < D; i++) {
        float h = (xr[i] - meanf) * rstd;
        if (wv.p) h = h * wv.p[i];
        if (bv.p) h = h + bv.p[i];
        yr[i] = h;
      }
    }
  });
}

namespace ref {

void rmsnorm_forward(float* y, const float* x, const void* w, DType wdt, size_t M, size_t D, float eps) {
  for (size_t m = 0; m < M; m++) {
    double acc = 0;
    for (size_t i = 0; i < D; i++) { float s = x[m * D + i] * x[m * D + i]; acc += double(s); }
    float r = rms_factor(acc, D, eps);
    for (size_t i = 0; i < D; i++) {
      float h = x[m * D + i] * r;
      y[m * D + i] = w ? wat(w, wdt, i) * h : h;
    }
  }
}

void layernorm_forward(float* y, const float* x, const void* w, const void* b, DType wdt, size_t M, size_t D, float eps) {
  for (size_t m = 0; m < M; m++) {
    const float* xr = x + m * D;
    double s = 0;
    for (size_t i = 0; i < D; i++) s += xr[i];
    double mean = s / double(D), v = 0;
    for (size_t i = 0; i < D; i++) v += (xr[i] - mean) * (xr[i] - mean);
    float meanf = float(mean);
    float rstd = 1.0f / std::sqrt(float(v / double(D)) + eps);
    for (size_t i = 0; i < D; i++) {
      float h = (xr[i] - meanf) * rstd;
      if (w) h = h * wat(w, wdt, i);
      if (b) h = h + wat(b, wdt, i);
      y[m * D + i] = h;
    }
  }
}

}  // namespace ref
}  // namespace streamline
