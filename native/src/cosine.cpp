// Fused cosine accumulation: dot(a,b), |a|², |b|² in one read of both rows, f64 accumulation (AVX2 widens
// f32 lanes to f64 before the FMA), per-row results summed in f64. Memory-bound by design.
#include "streamline/cosine.h"

#include <cmath>
#include <immintrin.h>
#include <vector>

#include "streamline/cpu_features.h"
#include "streamline/threads.h"

namespace streamline {

namespace {

struct RowDots { double ab, aa, bb; };

RowDots row_dots_scalar(const float* a, const float* b, size_t D) {
  double ab = 0, aa = 0, bb = 0;
  for (size_t i = 0; i < D; i++) {
    double x = a[i], y = b[i];
    ab += x * y; aa += x * x; bb += y * y;
  }
  return {ab, aa, bb};
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) RowDots row_dots_avx2(const float* a, const float* b, size_t D) {
  __m256d ab0 = _mm256_setzero_pd(), aa0 = _mm256_setzero_pd(), bb0 = _mm256_setzero_pd();
  __m256d ab1 = _mm256_setzero_pd(), aa1 = _mm256_setzero_pd(), bb1 = _mm256_setzero_pd();
  size_t i = 0;
  for (; i + 8 <= D; i += 8) {
    __m256 va = _mm256_loadu_ps(a + i), vb = _mm256_loadu_ps(b + i);
    __m256d a0 = _mm256_cvtps_pd(_mm256_castps256_ps128(va)), a1 = _mm256_cvtps_pd(_mm256_extractf128_ps(va, 1));
    __m256d b0 = _mm256_cvtps_pd(_mm256_castps256_ps128(vb)), b1 = _mm256_cvtps_pd(_mm256_extractf128_ps(vb, 1));
    ab0 = _mm256_fmadd_pd(a0, b0, ab0); ab1 = _mm256_fmadd_pd(a1, b1, ab1);
    aa0 = _mm256_fmadd_pd(a0, a0, aa0); aa1 = _mm256_fmadd_pd(a1, a1, aa1);
    bb0 = _mm256_fmadd_pd(b0, b0, bb0); bb1 = _mm256_fmadd_pd(b1, b1, bb1);
  }
  alignas(32) double t[3][4];
  _mm256_store_pd(t[0], _mm256_add_pd(ab0, ab1));
  _mm256_store_pd(t[1], _mm256_add_pd(aa0, aa1));
  _mm256_store_pd(t[2], _mm256_add_pd(bb0, bb1));
  RowDots r{t[0][0] + t[0][1] + t[0][2] + t[0][3], t[1][0] + t[1][1] + t[1][2] + t[1][3],
            t[2][0] + t[2][1] + t[2][2] + t[2][3]};
  for (; i < D; i++) {
    double x = a[i], y = b[i];
    r.ab += x * y; r.aa += x * x; r.bb += y * y;
  }
  return r;
}
#endif

// NaN in either row makes the dots NaN, and the NaN propagates into the sum: never silently dropped.
void add_row(CosineSum& s, const RowDots& d) {
  s.count++;
  if (d.aa == 0 || d.bb == 0) { s.zeros++; return; }
  s.sum += d.ab / (std::sqrt(d.aa) * std::sqrt(d.bb));
}

void accumulate_rows(CosineSum* acc, const float* a, const float* b, const uint8_t* mask, size_t M, size_t D) {
  const bool fast = cpu_level() >= CpuLevel::AVX2;
  int nt = num_threads();
  std::vector<CosineSum> part(size_t(nt) + 1);
  parallel_for(M, 16, [&](size_t rb, size_t re, int tid) {
    CosineSum local;
    for (size_t t = rb; t < re; t++) {
      if (mask && !mask[t]) continue;
#if defined(__x86_64__)
      RowDots d = fast ? row_dots_avx2(a + t * D, b + t * D, D) : row_dots_scalar(a + t * D, b + t * D, D);
#else
      RowDots d = row_dots_scalar(a + t * D, b + t * D, D);
#endif
      add_row(local, d);
    }
    part[size_t(tid)] = local;
  });
  for (auto& p : part) { acc->sum += p.sum; acc->count += p.count; acc->zeros += p.zeros; }
}

}  // namespace

void cosine_accumulate(CosineSum* acc, const float* a, const float* b, const uint8_t* mask, size_t M, size_t D) {
  accumulate_rows(acc, a, b, mask, M, D);
}

void cosine_pairs_accumulate(CosineSum* acc, const float* const* states, const int32_t* pairs, size_t P,
                             const uint8_t* mask, size_t M, size_t D) {
  for (size_t p = 0; p < P; p++) accumulate_rows(&acc[p], states[pairs[2 * p]], states[pairs[2 * p + 1]], mask, M, D);
}

namespace ref {
void cosine_accumulate(CosineSum* acc, const float* a, const float* b, const uint8_t* mask, size_t M, size_t D) {
  for (size_t t = 0; t < M; t++) {
    if (mask && !mask[t]) continue;
    add_row(*acc, row_dots_scalar(a + t * D, b + t * D, D));
  }
}
}  // namespace ref

}  // namespace streamline
