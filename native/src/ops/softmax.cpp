// log_softmax over the last dimension and per-token log-probabilities, torch's formula in f32:
// y = (x - max) - log(sum exp(x - max)). The sum is accumulated in f64 (vocabularies of 10^5 terms), the
// exponentials are f32 (vector exp in the fast path, std::exp in the reference). A NaN anywhere in a row
// makes the row (or its log-prob) NaN.
#include <cmath>

#include "simd.h"
#include "streamline/ops.h"
#include "streamline/threads.h"

namespace streamline {

namespace {

struct RowStats { float max; float logsum; };

RowStats row_stats_scalar(const float* x, size_t V) {
  float m = -INFINITY;
  for (size_t i = 0; i < V; i++) m = detail::max_nan(m, x[i]);
  double s = 0;
  for (size_t i = 0; i < V; i++) s += double(std::exp(x[i] - m));
  return {m, float(std::log(s))};
}

STREAMLINE_AVX2 RowStats row_stats_avx2(const float* x, size_t V) {
  float m = -INFINITY;
  size_t i = 0;
  __m256 mv = _mm256_set1_ps(-INFINITY), nan = _mm256_setzero_ps();
  for (; i + 8 <= V; i += 8) {
    __m256 v = _mm256_loadu_ps(x + i);
    mv = _mm256_max_ps(mv, v);                                     // drops NaN ...
    nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));    // ... so track it separately
  }
  alignas(32) float t[8];
  _mm256_store_ps(t, mv);
  for (float f : t) m = detail::max_nan(m, f);
  if (_mm256_movemask_ps(nan)) m = NAN;
  for (; i < V; i++) m = detail::max_nan(m, x[i]);
  __m256 mb = _mm256_set1_ps(m);
  __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
  i = 0;
  for (; i + 8 <= V; i += 8) {
    __m256 e = detail::exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), mb));
    s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
    s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
  }
  double s = detail::hsum256d(_mm256_add_pd(s0, s1));
  for (; i < V; i++) s += double(std::exp(x[i] - m));
  return {m, float(std::log(s))};
}

RowStats row_stats(const float* x, size_t V, bool avx) { return avx ? row_stats_avx2(x, V) : row_stats_scalar(x, V); }

}  // namespace

void log_softmax_forward(float* y, const float* x, size_t M, size_t V) {
  bool avx = detail::use_avx2();
  parallel_for(M, std::max<size_t>(1, 32768 / (V + 1)), [&](size_t b, size_t e, int) {
    for (size_t m = b; m < e; m++) {
      RowStats st = row_stats(x + m * V, V, avx);
      for (size_t i = 0; i < V; i++) y[m * V + i] = (x[m * V + i] - st.max) - st.logsum;
    }
  });
}

void token_logprobs(float* lp, const float* logits, const int32_t* target, size_t M, size_t V) {
  bool avx = detail::use_avx2();
  parallel_for(M, std::max<size_t>(1, 32768 / (V + 1)), [&](size_t b, size_t e, int) {
    for (size_t m = b; m < e; m++) {
      int32_t t = target[m];
      if (t < 0 || size_t(t) >= V) { lp[m] = 0.0f; continue; }
      RowStats st = row_stats(logits + m * V, V, avx);
      lp[m] = (logits[m * V + size_t(t)] - st.max) - st.logsum;
    }
  });
}

namespace ref {
void log_softmax_forward(float* y, const float* x, size_t M, size_t V) {
  for (size_t m = 0; m < M; m++) {
    RowStats st = row_stats_scalar(x + m * V, V);
    for (size_t i = 0; i < V; i++) y[m * V + i] = (x[m * V + i] - st.max) - st.logsum;
  }
}
}  // namespace ref

}  // namespace streamline
