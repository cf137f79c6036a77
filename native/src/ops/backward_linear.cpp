// Backward pass of a linear layer y[M,N] = x[M,K]·W[N,K]^T + b[N] with f32 weights (training keeps f32 master
// weights, so no bf16 path here). dx = dy·W (overwritten), dW += dy^T·x, db += Σ_m dy. The two products go
// through gemm_f32 (OpenBLAS when linked); dy^T is materialised once, which costs M·N next to the M·N·K product.
#include <algorithm>
#include <vector>

#include "streamline/matmul.h"
#include "streamline/ops.h"
#include "streamline/threads.h"

namespace streamline {

void linear_backward(float* dx, float* dw, float* db, const float* dy, const float* x, const float* w, size_t M,
                     size_t N, size_t K) {
  if (dx) gemm_f32(dx, dy, w, M, K, N, /*b_transposed=*/false, /*accumulate=*/false);
  if (M == 0) return;
  if (dw && N > 0 && K > 0) gemm_f32_at(dw, dy, x, N, K, M, /*accumulate=*/true);  // dW[N,K] += dY[M,N]^T · X[M,K]
  if (db) {
    // Columns split across threads; each column sums its M rows in f64 in row order (deterministic).
    parallel_for(N, 64, [&](size_t b, size_t e, int) {
      std::vector<double> acc(e - b, 0.0);
      for (size_t m = 0; m < M; m++) {
        const float* r = dy + m * N + b;
        for (size_t j = 0; j < e - b; j++) acc[j] += r[j];
      }
      for (size_t j = 0; j < e - b; j++) db[b + j] += float(acc[j]);
    });
  }
}

namespace ref {

void linear_backward(float* dx, float* dw, float* db, const float* dy, const float* x, const float* w, size_t M,
                     size_t N, size_t K) {
  if (dx)
    for (size_t m = 0; m < M; m++)
      for (size_t k = 0; k < K; k++) {
        double s = 0;
        for (size_t n = 0; n < N; n++) s += double(dy[m * N + n]) * double(w[n * K + k]);
        dx[m * K + k] = float(s);
      }
  if (dw)
    for (size_t n = 0; n < N; n++)
      for (size_t k = 0; k < K; k++) {
        double s = 0;
        for (size_t m = 0; m < M; m++) s += double(dy[m * N + n]) * double(x[m * K + k]);
        dw[n * K + k] += float(s);
      }
  if (db)
    for (size_t n = 0; n < N; n++) {
      double s = 0;
      for (size_t m = 0; m < M; m++) s += dy[m * N + n];
      db[n] += float(s);
    }
}

}  // namespace ref
}  // namespace streamline
