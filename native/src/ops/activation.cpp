// Elementwise activations and the gated (GLU) product, as torch computes them in f32:
// silu(x) = x / (1 + exp(-x)), relu(x) = max(x, 0) with NaN kept, gelu(x) = x/2 (1 + erf(x/sqrt 2)),
// gelu_tanh(x) = x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). The SiLU fast path uses a vector exp
// (about 2 ulp); GELU stays scalar (no model family here uses it on the hot path) but is threaded.
#include <cmath>

#include "simd.h"
#include "streamline/ops.h"
#include "streamline/threads.h"

namespace streamline {

namespace {

inline float act_scalar(float x, Activation a) {
  switch (a) {
    case Activation::SiLU: return x / (1.0f + std::exp(-x));
    case Activation::ReLU: return x < 0.0f ? 0.0f : x;
    case Activation::GELU: return 0.5f * x * (1.0f + std::erf(x * 0.70710678118654752f));
    case Activation::GELUTanh: {
      float inner = 0.7978845608028654f * (x + 0.044715f * x * x * x);
      return 0.5f * x * (1.0f + std::tanh(inner));
    }
  }
  return x;
}

STREAMLINE_AVX2 inline __m256 silu256(__m256 x) {
  __m256 e = detail::exp256(_mm256_sub_ps(_mm256_setzero_ps(), x));
  return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

STREAMLINE_AVX2 void act_avx2(float* y, const float* x, const float* up, size_t b, size_t e, Activation a) {
  size_t i = b;
  if (a == Activation::SiLU || a == Activation::ReLU) {
    const __m256 zero = _mm256_setzero_ps();
    for (; i + 8 <= e; i += 8) {
      __m256 v = _mm256_loadu_ps(x + i);
      // relu: x < 0 ? 0 : x (NaN compares false and is kept)
      __m256 r = a == Activation::SiLU ? silu256(v) : _mm256_andnot_ps(_mm256_cmp_ps(v, zero, _CMP_LT_OQ), v);
      if (up) r = _mm256_mul_ps(r, _mm256_loadu_ps(up + i));
      _mm256_storeu_ps(y + i, r);
    }
  }
  for (; i < e; i++) {
    float r = act_scalar(x[i], a);
    y[i] = up ? r * up[i] : r;
  }
}

void run(float* y, const float* x, const float* up, size_t n, Activation a) {
  bool avx = detail::use_avx2();
  parallel_for(n, 16384, [&](size_t b, size_t e, int) {
    if (avx) { act_avx2(y, x, up, b, e, a); return; }
    for (size_t i = b; i < e; i++) {
      float r = act_scalar(x[i], a);
      y[i] = up ? r * up[i] : r;
    }
  });
}

}  // namespace

void activation_forward(float* y, const float* x, size_t n, Activation act) { run(y, x, nullptr, n, act); }
void gated_forward(float* y, const float* gate, const float* up, size_t n, Activation act) { run(y, gate, up, n, act); }

namespace ref {
void activation_forward(float* y, const float* x, size_t n, Activation act) {
  for (size_t i = 0; i < n; i++) y[i] = act_scalar(x[i], act);
}
void gated_forward(float* y, const float* gate, const float* up, size_t n, Activation act) {
  for (size_t i = 0; i < n; i++) y[i] = act_scalar(gate[i], act) * up[i];
}
}  // namespace ref

}  // namespace streamline
