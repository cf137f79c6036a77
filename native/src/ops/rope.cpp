// Rotary position embedding, rotate-half layout (Hugging Face apply_rotary_pos_emb).
// Tables: angle = float(pos) * inv_freq[i] (one f32 product, as HF's f32 matmul with K = 1 computes it),
// cos/sin of that f32 angle evaluated in double and rounded, then times attention_scaling in f32.
// Rotation: out1 = x1*cos - x2*sin, out2 = x2*cos + x1*sin with each product rounded (no FMA), as torch
// computes (x * cos) + (rotate_half(x) * sin).
#include <cmath>

#include "simd.h"
#include "streamline/ops.h"
#include "streamline/threads.h"

namespace streamline {

void rope_tables(float* cos, float* sin, const int32_t* positions, const float* inv_freq, size_t M, size_t half,
                 float attention_scaling) {
  parallel_for(M, std::max<size_t>(1, 1024 / (half + 1)), [&](size_t b, size_t e, int) {
    for (size_t m = b; m < e; m++)
      for (size_t i = 0; i < half; i++) {
        float a = float(positions[m]) * inv_freq[i];
        cos[m * half + i] = float(std::cos(double(a))) * attention_scaling;
        sin[m * half + i] = float(std::sin(double(a))) * attention_scaling;
      }
  });
}

namespace {

// avx2 without fma: GCC would otherwise contract the separate multiplies and adds into FMAs.
__attribute__((target("avx2"))) void rope_row_avx2(float* x, const float* c, const float* s, size_t half) {
  size_t i = 0;
  for (; i + 8 <= half; i += 8) {
    __m256 x1 = _mm256_loadu_ps(x + i), x2 = _mm256_loadu_ps(x + half + i);
    __m256 cv = _mm256_loadu_ps(c + i), sv = _mm256_loadu_ps(s + i);
    _mm256_storeu_ps(x + i, _mm256_sub_ps(_mm256_mul_ps(x1, cv), _mm256_mul_ps(x2, sv)));
    _mm256_storeu_ps(x + half + i, _mm256_add_ps(_mm256_mul_ps(x2, cv), _mm256_mul_ps(x1, sv)));
  }
  for (; i < half; i++) {
    float x1 = x[i], x2 = x[half + i];
    volatile float a = x1 * c[i], bb = x2 * s[i], cc = x2 * c[i], d = x1 * s[i];  // no FMA contraction
    x[i] = a - bb;
    x[half + i] = cc + d;
  }
}

void rope_row_scalar(float* x, const float* c, const float* s, size_t half) {
  for (size_t i = 0; i < half; i++) {
    float x1 = x[i], x2 = x[half + i];
    volatile float a = x1 * c[i], bb = x2 * s[i], cc = x2 * c[i], d = x1 * s[i];  // keep the roundings
    x[i] = a - bb;
    x[half + i] = cc + d;
  }
}

}  // namespace

void rope_forward(float* x, const float* cos, const float* sin, size_t M, size_t nheads, size_t Dh, size_t rot) {
  size_t half = (rot ? rot : Dh) / 2;
  bool avx = detail::use_avx2();
  parallel_for(M, std::max<size_t>(1, 4096 / (nheads * Dh + 1)), [&](size_t b, size_t e, int) {
    for (size_t m = b; m < e; m++)
      for (size_t h = 0; h < nheads; h++) {
        float* row = x + (m * nheads + h) * Dh;
        if (avx) rope_row_avx2(row, cos + m * half, sin + m * half, half);
        else rope_row_scalar(row, cos + m * half, sin + m * half, half);
      }
  });
}

namespace ref {
void rope_forward(float* x, const float* cos, const float* sin, size_t M, size_t nheads, size_t Dh, size_t rot) {
  size_t half = (rot ? rot : Dh) / 2;
  for (size_t m = 0; m < M; m++)
    for (size_t h = 0; h < nheads; h++) rope_row_scalar(x + (m * nheads + h) * Dh, cos + m * half, sin + m * half, half);
}
}  // namespace ref

}  // namespace streamline
