// Causal grouped-query attention, forward. Layout q[B,T,H,Dh], k/v[B,T,Hk,Dh], out[B,T,H,Dh], lse[B,H,T].
//
// Fast path (flash-attention style, f32): K^T and V are first packed into contiguous [Dh, Bk] / [Bk, Dh]
// tiles per (batch, kv head, key block) (one pass, the size of k and v). Then one task per (batch, kv head,
// block of Bq queries) stacks the G = H/Hk query heads that share the kv head into R = G*Bq rows, so every
// key/value tile is used by all of them. For each key block it computes S = Q·K^T with a register-blocked
// AVX2 kernel (6×16), applies the causal and padding masks, updates the running max / sum (online softmax)
// and accumulates O += P·V with the same kernel. No T×T matrix exists; per-thread scratch is a few
// R×max(Dh, Bk) tiles.
// Tasks are pulled from an atomic counter, longest (last query blocks) first, so the causal triangle
// balances across threads.
//
// Masked keys never contribute: their scores are set to -inf without reading S, padded value rows are
// packed as zeros, and keys after a query (inside its diagonal block) or before its sliding window are excluded
// from its P·V sum, so a NaN or inf stored at a masked, future or out-of-window position cannot leak into a
// visible output. Key blocks wholly before a query block's window are not visited. A NaN in a visible
// score makes the row NaN (sticky max). A query with no visible key gets zeros and lse = -inf.
//
// The reference is the plain two-pass softmax per (b, h, query) with f64 sums.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>

#include "simd.h"
#include "streamline/ops.h"
#include "streamline/threads.h"

namespace streamline {

namespace {

// ---- small GEMM: C[m×n] (+)= A[m×k]·B[k×n], all row-major with leading dimensions -----------------------
// MR rows × 16 columns held in 2*MR named registers (arrays of __m256 made GCC spill them every iteration).
#define SL_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5)
template <int MR>
STREAMLINE_AVX2 void kern16(float* C, size_t ldc, const float* A, size_t lda, const float* B, size_t ldb, size_t k,
                            bool acc) {
#define SL_DECL(r) __m256 c##r##0 = _mm256_setzero_ps(), c##r##1 = _mm256_setzero_ps();
  SL_ROWS(SL_DECL)
#define SL_LOAD(r) \
  if constexpr (MR > r) if (acc) { c##r##0 = _mm256_loadu_ps(C + r * ldc); c##r##1 = _mm256_loadu_ps(C + r * ldc + 8); }
  SL_ROWS(SL_LOAD)
  for (size_t p = 0; p < k; p++) {
    __m256 b0 = _mm256_loadu_ps(B + p * ldb), b1 = _mm256_loadu_ps(B + p * ldb + 8);
#define SL_FMA(r)                                           \
  if constexpr (MR > r) {                                   \
    __m256 a = _mm256_broadcast_ss(A + r * lda + p);        \
    c##r##0 = _mm256_fmadd_ps(a, b0, c##r##0);              \
    c##r##1 = _mm256_fmadd_ps(a, b1, c##r##1);              \
  }
    SL_ROWS(SL_FMA)
  }
#define SL_STORE(r) \
  if constexpr (MR > r) { _mm256_storeu_ps(C + r * ldc, c##r##0); _mm256_storeu_ps(C + r * ldc + 8, c##r##1); }
  SL_ROWS(SL_STORE)
#undef SL_DECL
#undef SL_LOAD
#undef SL_FMA
#undef SL_STORE
}
#undef SL_ROWS

// n < 16 columns: one or two partial vectors.
template <int MR>
STREAMLINE_AVX2 void kern_tail(float* C, size_t ldc, const float* A, size_t lda, const float* B, size_t ldb, size_t k,
                               size_t n, bool acc) {
  size_t n0 = std::min<size_t>(n, 8), n1 = n > 8 ? n - 8 : 0;
  __m256 c0[MR], c1[MR];
  for (int r = 0; r < MR; r++) {
    c0[r] = acc ? detail::load_partial(C + r * ldc, n0) : _mm256_setzero_ps();
    c1[r] = acc && n1 ? detail::load_partial(C + r * ldc + 8, n1) : _mm256_setzero_ps();
  }
  for (size_t p = 0; p < k; p++) {
    __m256 b0 = n0 == 8 ? _mm256_loadu_ps(B + p * ldb) : detail::load_partial(B + p * ldb, n0);
    __m256 b1 = n1 ? detail::load_partial(B + p * ldb + 8, n1) : _mm256_setzero_ps();
    for (int r = 0; r < MR; r++) {
      __m256 a = _mm256_broadcast_ss(A + r * lda + p);
      c0[r] = _mm256_fmadd_ps(a, b0, c0[r]);
      if (n1) c1[r] = _mm256_fmadd_ps(a, b1, c1[r]);
    }
  }
  for (int r = 0; r < MR; r++) {
    detail::store_partial(C + r * ldc, c0[r], n0);
    if (n1) detail::store_partial(C + r * ldc + 8, c1[r], n1);
  }
}

template <int MR>
STREAMLINE_AVX2 void gemm_rows(float* C, size_t ldc, const float* A, size_t lda, const float* B, size_t ldb, size_t n,
                               size_t k, bool acc) {
  size_t j = 0;
  for (; j + 16 <= n; j += 16) kern16<MR>(C + j, ldc, A, lda, B + j, ldb, k, acc);
  if (j < n) kern_tail<MR>(C + j, ldc, A, lda, B + j, ldb, k, n - j, acc);
}

STREAMLINE_AVX2 void small_gemm(float* C, size_t ldc, const float* A, size_t lda, const float* B, size_t ldb, size_t m,
                                size_t n, size_t k, bool acc) {
  size_t i = 0;
  for (; i + 6 <= m; i += 6) gemm_rows<6>(C + i * ldc, ldc, A + i * lda, lda, B, ldb, n, k, acc);
  switch (m - i) {
    case 5: gemm_rows<5>(C + i * ldc, ldc, A + i * lda, lda, B, ldb, n, k, acc); break;
    case 4: gemm_rows<4>(C + i * ldc, ldc, A + i * lda, lda, B, ldb, n, k, acc); break;
    case 3: gemm_rows<3>(C + i * ldc, ldc, A + i * lda, lda, B, ldb, n, k, acc); break;
    case 2: gemm_rows<2>(C + i * ldc, ldc, A + i * lda, lda, B, ldb, n, k, acc); break;
    case 1: gemm_rows<1>(C + i * ldc, ldc, A + i * lda, lda, B, ldb, n, k, acc); break;
    default: break;
  }
}

STREAMLINE_AVX2 void scale_inplace(float* x, float a, size_t n) {
  __m256 av = _mm256_set1_ps(a);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), av));
  for (; i < n; i++) x[i] *= a;
}

// s[j] *= scale for j < n; returns the NaN-sticky maximum of the scaled values.
STREAMLINE_AVX2 float scale_max(float* s, float scale, size_t n) {
  __m256 sv = _mm256_set1_ps(scale), mx = _mm256_set1_ps(-INFINITY), nan = _mm256_setzero_ps();
  size_t j = 0;
  for (; j + 8 <= n; j += 8) {
    __m256 v = _mm256_mul_ps(_mm256_loadu_ps(s + j), sv);
    _mm256_storeu_ps(s + j, v);
    mx = _mm256_max_ps(mx, v);
    nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
  }
  alignas(32) float t[8];
  _mm256_store_ps(t, mx);
  float m = -INFINITY;
  for (float f : t) m = std::max(m, f);
  if (_mm256_movemask_ps(nan)) m = NAN;
  for (; j < n; j++) {
    s[j] *= scale;
    m = detail::max_nan(m, s[j]);
  }
  return m;
}

// p[j] = exp(p[j] - m) for j < n (scores already scaled, masked ones -inf); returns the f32 sum.
STREAMLINE_AVX2 float exp_row(float* p, float m, size_t n) {
  __m256 mv = _mm256_set1_ps(m), sum = _mm256_setzero_ps();
  size_t j = 0;
  for (; j + 8 <= n; j += 8) {
    __m256 e = detail::exp256(_mm256_sub_ps(_mm256_loadu_ps(p + j), mv));
    _mm256_storeu_ps(p + j, e);
    sum = _mm256_add_ps(sum, e);
  }
  float s = detail::hsum256(sum);
  if (j < n) {
    __m256 e = detail::exp256(_mm256_sub_ps(detail::load_partial(p + j, n - j), mv));
    // lanes past n were loaded as 0: exp(0 - m) is garbage there, so store and sum only n - j lanes
    alignas(32) float t[8];
    _mm256_store_ps(t, e);
    for (size_t i = 0; i < n - j; i++) { p[j + i] = t[i]; s += t[i]; }
  }
  return s;
}

struct Dims { size_t B, T, H, Hk, Dh, G, Bq, Bk, nqb, window; float scale; };

STREAMLINE_AVX2 void attention_task(const Dims& d, size_t b, size_t hk, size_t qb, float* out, float* lse, const float* q,
                                    const float* k, const float* v, const uint8_t* key_mask, float* Qp, float* O,
                                    float* S, const float* Kpack, const float* Vpack, float* mrow, float* lrow) {
  const size_t T = d.T, H = d.H, Hk = d.Hk, Dh = d.Dh, G = d.G, Bk = d.Bk;
  const size_t i0 = qb * d.Bq, nq = std::min(d.Bq, T - i0), R = G * nq;
  // rows r = g * nq + qi: head hk*G + g, query i0 + qi
  for (size_t g = 0; g < G; g++)
    for (size_t qi = 0; qi < nq; qi++) {
      const float* src = q + ((b * T + i0 + qi) * H + hk * G + g) * Dh;
      std::copy(src, src + Dh, Qp + (g * nq + qi) * Dh);
    }
  std::fill(O, O + R * Dh, 0.0f);
  std::fill(mrow, mrow + R, -INFINITY);
  std::fill(lrow, lrow + R, 0.0f);
  const uint8_t* km = key_mask ? key_mask + b * T : nullptr;
  const size_t kend = i0 + nq;  // keys [kbegin, kend) can be visible to this block
  const size_t kbegin = window_first_key(i0, d.window) / Bk * Bk;
  const size_t last_first = window_first_key(kend - 1, d.window);  // the last query's first key
  const size_t nkb = (T + Bk - 1) / Bk;
  for (size_t j0 = kbegin; j0 < kend; j0 += Bk) {
    const size_t nk = std::min(Bk, kend - j0);
    const size_t tile = ((b * Hk + hk) * nkb + j0 / Bk) * Dh * Bk;
    const float* Kt = Kpack + tile;  // [Dh, Bk]
    const float* Vp = Vpack + tile;  // [Bk, Dh], padded keys as zero rows
    bool any = !km, all = true;
    if (km)
      for (size_t jj = 0; jj < nk; jj++) {
        any |= km[j0 + jj] != 0;
        all &= km[j0 + jj] != 0;
      }
    if (!any) continue;
    small_gemm(S, Bk, Qp, Dh, Kt, Bk, R, nk, Dh, false);
    // every key of the block is <= the block's first query and inside the last query's window
    const bool full = j0 + nk <= i0 + 1 && j0 >= last_first;
    for (size_t r = 0; r < R; r++) {
      const size_t t = i0 + r % nq, first = window_first_key(t, d.window);
      if (t < j0 || first >= j0 + nk) continue;  // whole key block is in this query's future or before its window
      const size_t lim = full ? nk : std::min(nk, t - j0 + 1);
      const size_t lo = first > j0 ? first - j0 : 0;  // keys before the window: -inf, and left out of P·V below
      float* s = S + r * Bk;
      std::fill(s, s + lo, -INFINITY);
      float mb = -INFINITY;
      if (all) {
        mb = scale_max(s + lo, d.scale, lim - lo);
      } else {
        for (size_t jj = lo; jj < lim; jj++) {
          if (!km[j0 + jj]) { s[jj] = -INFINITY; continue; }
          s[jj] *= d.scale;
          mb = detail::max_nan(mb, s[jj]);
        }
      }
      float mold = mrow[r], mnew = detail::max_nan(mold, mb);
      if (mnew == -INFINITY) {
        std::fill(s, s + nk, 0.0f);
        continue;
      }
      float alpha = mold == -INFINITY ? 0.0f : std::exp(mold - mnew);
      float sum = exp_row(s, mnew, lim);
      std::fill(s + lim, s + nk, 0.0f);
      lrow[r] = lrow[r] * alpha + sum;
      mrow[r] = mnew;
      if (alpha != 1.0f) scale_inplace(O + r * Dh, alpha, Dh);
      if (!full) small_gemm(O + r * Dh, Dh, s + lo, Bk, Vp + lo * Dh, Dh, 1, Dh, lim - lo, true);
    }
    if (full) small_gemm(O, Dh, S, Bk, Vp, Dh, R, Dh, nk, true);
  }
  for (size_t r = 0; r < R; r++) {
    const size_t g = r / nq, t = i0 + r % nq, h = hk * G + g;
    float* dst = out + ((b * T + t) * H + h) * Dh;
    float l = lrow[r];
    if (l == 0.0f) {
      std::fill(dst, dst + Dh, 0.0f);
      if (lse) lse[(b * H + h) * T + t] = -INFINITY;
      continue;
    }
    float inv = 1.0f / l;
    for (size_t x = 0; x < Dh; x++) dst[x] = O[r * Dh + x] * inv;
    if (lse) lse[(b * H + h) * T + t] = mrow[r] + std::log(l);
  }
}

// One (b, h, query) row of the reference; also the scalar fallback of the fast path.
void attention_row_ref(float* out, float* lse, const float* q, const float* k, const float* v, const uint8_t* key_mask,
                       size_t b, size_t h, size_t i, size_t T, size_t H, size_t Hk, size_t Dh, float scale,
                       size_t window) {
  const size_t hk = h / (H / Hk);
  const float* qr = q + ((b * T + i) * H + h) * Dh;
  const size_t lo = window_first_key(i, window);
  std::vector<float> s(i + 1, -INFINITY);
  float m = -INFINITY;
  for (size_t j = lo; j <= i; j++) {
    if (key_mask && !key_mask[b * T + j]) continue;
    const float* kr = k + ((b * T + j) * Hk + hk) * Dh;
    double dot = 0;
    for (size_t x = 0; x < Dh; x++) dot += double(qr[x]) * double(kr[x]);
    s[j] = float(dot) * scale;
    m = detail::max_nan(m, s[j]);
  }
  float* o = out + ((b * T + i) * H + h) * Dh;
  if (m == -INFINITY) {
    std::fill(o, o + Dh, 0.0f);
    if (lse) lse[(b * H + h) * T + i] = -INFINITY;
    return;
  }
  double l = 0;
  std::vector<double> acc(Dh, 0.0);
  for (size_t j = lo; j <= i; j++) {
    if (s[j] == -INFINITY) continue;
    double p = std::exp(double(s[j]) - double(m));
    l += p;
    const float* vr = v + ((b * T + j) * Hk + hk) * Dh;
    for (size_t x = 0; x < Dh; x++) acc[x] += p * double(vr[x]);
  }
  for (size_t x = 0; x < Dh; x++) o[x] = float(acc[x] / l);
  if (lse) lse[(b * H + h) * T + i] = float(double(m) + std::log(l));
}

}  // namespace

void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v, const uint8_t* key_mask,
                       size_t B, size_t T, size_t H, size_t Hk, size_t Dh, float scale, size_t window) {
  if (B == 0 || T == 0 || H == 0 || Dh == 0) return;
  if (!detail::use_avx2()) {
    parallel_for(B * H * T, 16, [&](size_t b0, size_t e0, int) {
      for (size_t x = b0; x < e0; x++) {
        size_t i = x % T, h = (x / T) % H, b = x / (T * H);
        attention_row_ref(out, lse, q, k, v, key_mask, b, h, i, T, H, Hk, Dh, scale, window);
      }
    });
    return;
  }
  Dims d;
  d.B = B; d.T = T; d.H = H; d.Hk = Hk; d.Dh = Dh; d.G = H / Hk; d.scale = scale; d.window = window;
  d.Bk = 64;
  d.Bq = std::clamp<size_t>(128 / d.G, 8, 64);
  d.Bq = std::min(d.Bq, T);
  d.nqb = (T + d.Bq - 1) / d.Bq;
  const size_t per_q = B * Hk, ntasks = per_q * d.nqb;
  const size_t Rmax = d.G * d.Bq;
  // Pack K^T and V once per call in [B, Hk, key block] tiles (K^T tile [Dh, Bk], V tile [Bk, Dh]) so the
  // tasks read contiguous, cache-friendly tiles; padded keys and keys past T become zero value rows.
  const size_t nkb = (T + d.Bk - 1) / d.Bk, tile = Dh * d.Bk;
  std::vector<float> Kpack(B * Hk * nkb * tile), Vpack(B * Hk * nkb * tile);
  parallel_for(B * Hk * nkb, 4, [&](size_t tb, size_t te, int) {
    for (size_t t = tb; t < te; t++) {
      const size_t kb = t % nkb, hk = (t / nkb) % Hk, b = t / (nkb * Hk);
      float* Kt = Kpack.data() + t * tile;
      float* Vp = Vpack.data() + t * tile;
      for (size_t jj = 0; jj < d.Bk; jj++) {
        const size_t j = kb * d.Bk + jj;
        if (j >= T) {
          for (size_t x = 0; x < Dh; x++) Kt[x * d.Bk + jj] = 0.0f;
          std::fill(Vp + jj * Dh, Vp + (jj + 1) * Dh, 0.0f);
          continue;
        }
        const float* kr = k + ((b * T + j) * Hk + hk) * Dh;
        const float* vr = v + ((b * T + j) * Hk + hk) * Dh;
        for (size_t x = 0; x < Dh; x++) Kt[x * d.Bk + jj] = kr[x];
        if (!key_mask || key_mask[b * T + j]) std::copy(vr, vr + Dh, Vp + jj * Dh);
        else std::fill(Vp + jj * Dh, Vp + (jj + 1) * Dh, 0.0f);
      }
    }
  });
  std::atomic<size_t> next{0};
  parallel_for(size_t(num_threads()), 1, [&](size_t, size_t, int) {
    std::vector<float> Qp(Rmax * Dh), O(Rmax * Dh), S(Rmax * d.Bk), mr(Rmax), lr(Rmax);
    for (;;) {
      size_t t = next.fetch_add(1);
      if (t >= ntasks) break;
      size_t qb = d.nqb - 1 - t / per_q, bh = t % per_q;  // last (longest) query blocks first
      attention_task(d, bh / Hk, bh % Hk, qb, out, lse, q, k, v, key_mask, Qp.data(), O.data(), S.data(), Kpack.data(),
                     Vpack.data(), mr.data(), lr.data());
    }
  });
}

namespace ref {
void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v, const uint8_t* key_mask,
                       size_t B, size_t T, size_t H, size_t Hk, size_t Dh, float scale, size_t window) {
  for (size_t b = 0; b < B; b++)
    for (size_t h = 0; h < H; h++)
      for (size_t i = 0; i < T; i++) attention_row_ref(out, lse, q, k, v, key_mask, b, h, i, T, H, Hk, Dh, scale, window);
}
}  // namespace ref

}  // namespace streamline
