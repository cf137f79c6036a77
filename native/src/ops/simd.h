// Internal helpers shared by the forward kernels in native/src/ops: run-time dispatch and AVX2 vector maths.
// Not a public header: only kernels compiled in this directory include it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <immintrin.h>

#include "streamline/cpu_features.h"

namespace streamline::detail {

inline bool use_avx2() { return cpu_level() >= CpuLevel::AVX2; }

#define STREAMLINE_AVX2 __attribute__((target("avx2,fma")))

// exp(x) for 8 lanes, Cephes polynomial (about 2 ulp over [-87, 88]). NaN stays NaN; x below -87.3 gives
// exactly 0 (so exp(-inf) = 0), x above 88.3 saturates near FLT_MAX. Operand order of min/max is chosen so
// that a NaN input is passed through (minps/maxps return the second operand when either is NaN).
STREAMLINE_AVX2 inline __m256 exp256(__m256 x) {
  const __m256 hi = _mm256_set1_ps(88.3762626647949f), lo = _mm256_set1_ps(-87.3365447504f);
  __m256 keep = _mm256_cmp_ps(x, lo, _CMP_NLT_UQ);  // x >= lo or NaN
  __m256 xc = _mm256_max_ps(lo, _mm256_min_ps(hi, x));
  __m256 fx = _mm256_fmadd_ps(xc, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f));
  fx = _mm256_floor_ps(fx);
  __m256 r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), xc);
  r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 y = _mm256_set1_ps(1.9875691500E-4f);
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.3981999507E-3f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073E-3f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894E-2f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459E-1f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201E-1f));
  __m256 r2 = _mm256_mul_ps(r, r);
  y = _mm256_fmadd_ps(y, r2, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  __m256i n = _mm256_cvttps_epi32(fx);
  n = _mm256_slli_epi32(_mm256_add_epi32(n, _mm256_set1_epi32(127)), 23);
  y = _mm256_mul_ps(y, _mm256_castsi256_ps(n));
  return _mm256_and_ps(y, keep);
}

STREAMLINE_AVX2 inline float hsum256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

STREAMLINE_AVX2 inline double hsum256d(__m256d v) {
  __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
  s = _mm_add_sd(s, _mm_unpackhi_pd(s, s));
  return _mm_cvtsd_f64(s);
}

// Loads up to 8 floats (n < 8 fills the rest with zeros) without reading past the end.
STREAMLINE_AVX2 inline __m256 load_partial(const float* p, size_t n) {
  alignas(32) float t[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (size_t i = 0; i < n; i++) t[i] = p[i];
  return _mm256_load_ps(t);
}
STREAMLINE_AVX2 inline void store_partial(float* p, __m256 v, size_t n) {
  alignas(32) float t[8];
  _mm256_store_ps(t, v);
  for (size_t i = 0; i < n; i++) p[i] = t[i];
}

// NaN-sticky maximum: once a NaN is seen the result stays NaN (std::max would drop it).
inline float max_nan(float m, float s) { return (s > m || s != s) ? s : m; }

}  // namespace streamline::detail
