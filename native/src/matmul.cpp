// Linear layers. f32 weights go straight to OpenBLAS sgemm (or the built-in blocked kernel without BLAS);
// bf16/f16 weights are widened to f32 in column panels that stay in cache and multiplied panel by panel, so a
// layer never needs a full f32 copy of its weights. The reference is the plain triple loop.
#include "streamline/matmul.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "streamline/convert.h"
#include "streamline/threads.h"

#ifdef STREAMLINE_HAVE_BLAS
#include <cblas.h>
#endif

namespace streamline {

namespace {

float weight_at(const void* w, DType t, size_t i) {
  switch (t) {
    case DType::F32: return static_cast<const float*>(w)[i];
    case DType::F16: return f16_to_f32(static_cast<const uint16_t*>(w)[i]);
    default: return bf16_to_f32(static_cast<const uint16_t*>(w)[i]);
  }
}

#ifndef STREAMLINE_HAVE_BLAS
// Portable fallback: C (+)= A·op(B), blocked over rows and threaded; op(B)=B^T is handled by packing B^T panels.
void gemm_fallback(float* C, const float* A, const float* B, size_t M, size_t N, size_t K, bool bt, bool acc) {
  constexpr size_t NB = 256;
  for (size_t n0 = 0; n0 < N; n0 += NB) {
    size_t nb = std::min(NB, N - n0);
    std::vector<float> panel(K * nb);  // panel[k][j] = op(B)[k][n0+j]
    for (size_t k = 0; k < K; k++)
      for (size_t j = 0; j < nb; j++) panel[k * nb + j] = bt ? B[(n0 + j) * K + k] : B[k * N + n0 + j];
    parallel_for(M, 4, [&](size_t mb, size_t me, int) {
      std::vector<float> row(nb);
      for (size_t m = mb; m < me; m++) {
        std::fill(row.begin(), row.end(), 0.f);
        const float* a = A + m * K;
        for (size_t k = 0; k < K; k++) {
          float av = a[k];
          const float* p = panel.data() + k * nb;
          for (size_t j = 0; j < nb; j++) row[j] += av * p[j];
        }
        float* c = C + m * N + n0;
        for (size_t j = 0; j < nb; j++) c[j] = acc ? c[j] + row[j] : row[j];
      }
    });
  }
}
#endif

}  // namespace

void gemm_f32(float* C, const float* A, const float* B, size_t M, size_t N, size_t K, bool b_transposed, bool accumulate) {
  if (M == 0 || N == 0) return;
  if (K == 0) {
    if (!accumulate) std::memset(C, 0, M * N * sizeof(float));
    return;
  }
#ifdef STREAMLINE_HAVE_BLAS
  cblas_sgemm(CblasRowMajor, CblasNoTrans, b_transposed ? CblasTrans : CblasNoTrans, int(M), int(N), int(K), 1.0f, A,
              int(K), B, b_transposed ? int(K) : int(N), accumulate ? 1.0f : 0.0f, C, int(N));
#else
  gemm_fallback(C, A, B, M, N, K, b_transposed, accumulate);
#endif
}

void gemm_f32_at(float* C, const float* A, const float* B, size_t M, size_t N, size_t K, bool accumulate) {
  if (M == 0 || N == 0) return;
  if (K == 0) {
    if (!accumulate) std::memset(C, 0, M * N * sizeof(float));
    return;
  }
#ifdef STREAMLINE_HAVE_BLAS
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, int(M), int(N), int(K), 1.0f, A, int(M), B, int(N),
              accumulate ? 1.0f : 0.0f, C, int(N));
#else
  std::vector<float> at(M * K);  // at[m][k] = A[k][m]
  for (size_t k = 0; k < K; k++)
    for (size_t m = 0; m < M; m++) at[m * K + k] = A[k * M + m];
  gemm_fallback(C, at.data(), B, M, N, K, /*b_transposed=*/false, accumulate);
#endif
}

namespace {

#ifdef STREAMLINE_HAVE_BLAS
// OpenBLAS rounds a row's dot products differently depending on M (kernel edges, small-matrix paths) and on the
// column panel, so a sequence would score differently in different batches. Every row therefore goes through an
// sgemm call of exactly kRowBlock rows and fixed column panels: a row's result depends only on its own values.
constexpr size_t kRowBlock = 64;

void sgemm_row_invariant(float* C, size_t ldc, const float* A, const float* Bt, size_t M, size_t N, size_t K, bool acc) {
  const size_t full = M / kRowBlock * kRowBlock;
  for (size_t m0 = 0; m0 < full; m0 += kRowBlock)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(kRowBlock), int(N), int(K), 1.0f, A + m0 * K, int(K), Bt,
                int(K), acc ? 1.0f : 0.0f, C + m0 * ldc, int(ldc));
  if (full == M) return;
  const size_t rest = M - full;
  std::vector<float> a(kRowBlock * K, 0.f), c(kRowBlock * N, 0.f);
  std::copy(A + full * K, A + M * K, a.begin());
  if (acc)
    for (size_t r = 0; r < rest; r++) std::copy(C + (full + r) * ldc, C + (full + r) * ldc + N, c.begin() + r * N);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(kRowBlock), int(N), int(K), 1.0f, a.data(), int(K), Bt, int(K),
              acc ? 1.0f : 0.0f, c.data(), int(N));
  for (size_t r = 0; r < rest; r++) std::copy(c.begin() + r * N, c.begin() + (r + 1) * N, C + (full + r) * ldc);
}
#endif

}  // namespace

void linear_forward(float* y, const float* x, const void* w, DType wdt, const float* bias, size_t M, size_t N, size_t K,
                    bool accumulate, bool row_invariant) {
  if (M == 0 || N == 0) return;
#ifdef STREAMLINE_HAVE_BLAS
  if (wdt == DType::F32 && !row_invariant) {
    gemm_f32(y, x, static_cast<const float*>(w), M, N, K, /*b_transposed=*/true, accumulate);
  } else if (wdt == DType::F32) {
    sgemm_row_invariant(y, N, x, static_cast<const float*>(w), M, N, K, accumulate);
  } else {
    // Widen a fixed panel of output features at a time (at most 16 MiB of f32), independent of M, so results
    // never depend on the batch.
    const size_t NB = std::max<size_t>(16, std::min<size_t>(N, (size_t(16) << 20) / (K * sizeof(float) + 1)));
    std::vector<float> panel(std::min(NB, N) * K);
    for (size_t n0 = 0; n0 < N; n0 += NB) {
      size_t nb = std::min(NB, N - n0);
      convert_floats(panel.data(), DType::F32, static_cast<const char*>(w) + n0 * K * dtype_size(wdt), wdt, nb * K);
      sgemm_row_invariant(y + n0, N, x, panel.data(), M, nb, K, accumulate);
    }
  }
#else
  // Without BLAS: the portable kernel computes each row on its own, so it is row-invariant as it stands.
  std::vector<float> wf;
  const float* wp = static_cast<const float*>(w);
  if (wdt != DType::F32) {
    wf.resize(N * K);
    convert_floats(wf.data(), DType::F32, w, wdt, N * K);
    wp = wf.data();
  }
  gemm_f32(y, x, wp, M, N, K, true, accumulate);
#endif
  if (bias)
    parallel_for(M, 64, [&](size_t b, size_t e, int) {
      for (size_t m = b; m < e; m++)
        for (size_t j = 0; j < N; j++) y[m * N + j] += bias[j];
    });
}

namespace ref {

void gemm_f32(float* C, const float* A, const float* B, size_t M, size_t N, size_t K, bool bt, bool acc) {
  for (size_t m = 0; m < M; m++)
    for (size_t n = 0; n < N; n++) {
      double s = 0;
      for (size_t k = 0; k < K; k++) s += double(A[m * K + k]) * double(bt ? B[n * K + k] : B[k * N + n]);
      C[m * N + n] = acc ? C[m * N + n] + float(s) : float(s);
    }
}

void linear_forward(float* y, const float* x, const void* w, DType wdt, const float* bias, size_t M, size_t N, size_t K,
                    bool accumulate) {
  for (size_t m = 0; m < M; m++)
    for (size_t n = 0; n < N; n++) {
      double s = bias ? bias[n] : 0.0;
      for (size_t k = 0; k < K; k++) s += double(x[m * K + k]) * double(weight_at(w, wdt, n * K + k));
      y[m * N + n] = accumulate ? y[m * N + n] + float(s) : float(s);
    }
}

}  // namespace ref
}  // namespace streamline
