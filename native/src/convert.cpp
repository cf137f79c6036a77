// Float dtype conversions. The scalar reference defines the semantics (dtype.h); the AVX2/AVX-512 paths
// must agree with it bit for bit, which the tests check over every f16/bf16 bit pattern.
#include "streamline/convert.h"

#include <cstring>
#include <immintrin.h>

#include "streamline/cpu_features.h"
#include "streamline/threads.h"

namespace streamline {

bool dtype_from_name(const char* name, DType* out) {
  static const struct { const char* n; DType t; } table[] = {
      {"f32", DType::F32}, {"f16", DType::F16}, {"bf16", DType::BF16}, {"i32", DType::I32},
      {"i64", DType::I64}, {"u8", DType::U8},   {"bool", DType::BOOL}};
  for (auto& e : table)
    if (!std::strcmp(e.n, name)) { *out = e.t; return true; }
  return false;
}

bool is_float_dtype(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }

namespace {

float load_one(const void* src, DType st, size_t i) {
  switch (st) {
    case DType::F32: return static_cast<const float*>(src)[i];
    case DType::F16: return f16_to_f32(static_cast<const uint16_t*>(src)[i]);
    default: return bf16_to_f32(static_cast<const uint16_t*>(src)[i]);
  }
}

void store_one(void* dst, DType dt, size_t i, float v) {
  switch (dt) {
    case DType::F32: static_cast<float*>(dst)[i] = v; break;
    case DType::F16: static_cast<uint16_t*>(dst)[i] = f32_to_f16(v); break;
    default: static_cast<uint16_t*>(dst)[i] = f32_to_bf16(v); break;
  }
}

void convert_range_scalar(void* dst, DType dt, const void* src, DType st, size_t b, size_t e) {
  if (dt == st) {
    std::memmove(static_cast<char*>(dst) + b * dtype_size(dt), static_cast<const char*>(src) + b * dtype_size(st),
                 (e - b) * dtype_size(dt));
    return;
  }
  // f16 <-> bf16 goes through f32, which holds both exactly, so one rounding happens.
  for (size_t i = b; i < e; i++) store_one(dst, dt, i, load_one(src, st, i));
}

#if defined(__x86_64__)
// bf16 -> f32 is a shift; f32 -> bf16 RNE with NaN quieting, 8 lanes at a time.
__attribute__((target("avx2,fma"))) void bf16_to_f32_avx2(float* d, const uint16_t* s, size_t b, size_t e) {
  size_t i = b;
  for (; i + 8 <= e; i += 8) {
    __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i));
    __m256i w = _mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16);
    _mm256_storeu_ps(d + i, _mm256_castsi256_ps(w));
  }
  for (; i < e; i++) d[i] = bf16_to_f32(s[i]);
}

__attribute__((target("avx2,fma"))) void f32_to_bf16_avx2(uint16_t* d, const float* s, size_t b, size_t e) {
  size_t i = b;
  const __m256i one = _mm256_set1_epi32(1), bias = _mm256_set1_epi32(0x7fff);
  const __m256i absmask = _mm256_set1_epi32(0x7fffffff), inf = _mm256_set1_epi32(0x7f800000);
  const __m256i quiet = _mm256_set1_epi32(0x00400000);
  for (; i + 8 <= e; i += 8) {
    __m256i u = _mm256_castps_si256(_mm256_loadu_ps(s + i));
    __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), one);
    __m256i r = _mm256_add_epi32(u, _mm256_add_epi32(bias, lsb));
    __m256i isnan = _mm256_cmpgt_epi32(_mm256_and_si256(u, absmask), inf);
    r = _mm256_blendv_epi8(r, _mm256_or_si256(u, quiet), isnan);
    r = _mm256_srli_epi32(r, 16);
    // pack 32-bit lanes to 16-bit: packus works within 128-bit halves, then fix the order.
    __m256i p = _mm256_packus_epi32(r, r);
    p = _mm256_permute4x64_epi64(p, 0x08);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(d + i), _mm256_castsi256_si128(p));
  }
  for (; i < e; i++) d[i] = f32_to_bf16(s[i]);
}

// F16C conversions are exact and round to nearest even, matching the scalar reference.
__attribute__((target("avx2,fma,f16c"))) void f16_to_f32_f16c(float* d, const uint16_t* s, size_t b, size_t e) {
  size_t i = b;
  for (; i + 8 <= e; i += 8)
    _mm256_storeu_ps(d + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i))));
  for (; i < e; i++) d[i] = f16_to_f32(s[i]);
}

__attribute__((target("avx2,fma,f16c"))) void f32_to_f16_f16c(uint16_t* d, const float* s, size_t b, size_t e) {
  size_t i = b;
  for (; i + 8 <= e; i += 8) {
    __m256 v = _mm256_loadu_ps(s + i);
    // F16C turns a NaN into a quiet NaN keeping the top payload bits, as the scalar code does.
    _mm_storeu_si128(reinterpret_cast<__m128i*>(d + i), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
  }
  for (; i < e; i++) d[i] = f32_to_f16(s[i]);
}
#endif

void convert_range(void* dst, DType dt, const void* src, DType st, size_t b, size_t e) {
#if defined(__x86_64__)
  if (cpu_level() >= CpuLevel::AVX2) {
    if (st == DType::BF16 && dt == DType::F32) return bf16_to_f32_avx2(static_cast<float*>(dst), static_cast<const uint16_t*>(src), b, e);
    if (st == DType::F32 && dt == DType::BF16) return f32_to_bf16_avx2(static_cast<uint16_t*>(dst), static_cast<const float*>(src), b, e);
    if (st == DType::F16 && dt == DType::F32) return f16_to_f32_f16c(static_cast<float*>(dst), static_cast<const uint16_t*>(src), b, e);
    if (st == DType::F32 && dt == DType::F16) return f32_to_f16_f16c(static_cast<uint16_t*>(dst), static_cast<const float*>(src), b, e);
  }
#endif
  convert_range_scalar(dst, dt, src, st, b, e);
}

}  // namespace

namespace ref {
bool convert_floats(void* dst, DType dt, const void* src, DType st, size_t n) {
  if (!is_float_dtype(dt) || !is_float_dtype(st)) return false;
  convert_range_scalar(dst, dt, src, st, 0, n);
  return true;
}
}  // namespace ref

bool convert_floats(void* dst, DType dt, const void* src, DType st, size_t n) {
  if (!is_float_dtype(dt) || !is_float_dtype(st)) return false;
  if (dst == src && dt == st) return true;
  parallel_for(n, 1 << 16, [&](size_t b, size_t e, int) { convert_range(dst, dt, src, st, b, e); });
  return true;
}

}  // namespace streamline
