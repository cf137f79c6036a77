#include "streamline/linalg.h"

#include <cmath>
#include <vector>

#include "streamline/convert.h"
#include "streamline/matmul.h"
#include "streamline/threads.h"

#ifdef STREAMLINE_HAVE_BLAS
#include <cblas.h>
#endif
#ifdef STREAMLINE_HAVE_EIGEN
#include <Eigen/Cholesky>
#include <Eigen/Core>
#endif

namespace streamline {

namespace {
std::vector<float> widen(const void* w, DType wdt, size_t n) {
  std::vector<float> out(n);
  convert_floats(out.data(), DType::F32, w, wdt, n);
  return out;
}
}  // namespace

void normal_equations_accumulate(double* XtX, double* XtY, const float* X, const float* Y, const uint8_t* mask,
                                 size_t M, size_t D, size_t E) {
  // Gather unmasked rows in f64 chunks and use dgemm: the products are exact in f64 for f32 inputs.
  constexpr size_t CH = 256;
  std::vector<double> xs(CH * D), ys(CH * E);
  size_t m = 0;
  while (m < M) {
    size_t r = 0;
    for (; m < M && r < CH; m++) {
      if (mask && !mask[m]) continue;
      for (size_t i = 0; i < D; i++) xs[r * D + i] = X[m * D + i];
      for (size_t j = 0; j < E; j++) ys[r * E + j] = Y[m * E + j];
      r++;
    }
    if (r == 0) break;
#ifdef STREAMLINE_HAVE_BLAS
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, int(D), int(D), int(r), 1.0, xs.data(), int(D), xs.data(),
                int(D), 1.0, XtX, int(D));
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, int(D), int(E), int(r), 1.0, xs.data(), int(D), ys.data(),
                int(E), 1.0, XtY, int(E));
#else
    parallel_for(D, 8, [&](size_t b, size_t e, int) {
      for (size_t i = b; i < e; i++)
        for (size_t k = 0; k < r; k++) {
          double xi = xs[k * D + i];
          for (size_t j = 0; j < D; j++) XtX[i * D + j] += xi * xs[k * D + j];
          for (size_t j = 0; j < E; j++) XtY[i * E + j] += xi * ys[k * E + j];
        }
    });
#endif
  }
}

bool solve_normal_equations(float* T, const double* XtX, const double* XtY, size_t D, size_t E, double ridge) {
#ifdef STREAMLINE_HAVE_EIGEN
  using Mat = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  Eigen::Map<const Mat> A0(XtX, Eigen::Index(D), Eigen::Index(D));
  Eigen::Map<const Mat> B(XtY, Eigen::Index(D), Eigen::Index(E));
  Mat A = A0;
  A.diagonal().array() += ridge;
  Eigen::LDLT<Mat> ldlt(A);
  if (ldlt.info() != Eigen::Success) return false;
  Mat S = ldlt.solve(B);
  for (size_t i = 0; i < D * E; i++) {
    double v = S.data()[i];
    if (!std::isfinite(v)) return false;
    T[i] = float(v);
  }
  return true;
#else
  (void)T; (void)XtX; (void)XtY; (void)D; (void)E; (void)ridge;
  return false;
#endif
}

void fold_left(float* W_out, const float* T, const void* W_in, DType wdt, size_t D, size_t F) {
  std::vector<float> w = widen(W_in, wdt, D * F);
  // Tᵀ·W: transpose T once (D² small next to D·F), then a plain GEMM.
  std::vector<float> tt(D * D);
  for (size_t i = 0; i < D; i++)
    for (size_t j = 0; j < D; j++) tt[j * D + i] = T[i * D + j];
  gemm_f32(W_out, tt.data(), w.data(), D, F, D, false, false);
}

void fold_right(float* E_out, const void* E_in, DType wdt, const float* T, size_t V, size_t D) {
  std::vector<float> e = widen(E_in, wdt, V * D);
  gemm_f32(E_out, e.data(), T, V, D, D, false, false);
}

namespace ref {
void normal_equations_accumulate(double* XtX, double* XtY, const float* X, const float* Y, const uint8_t* mask,
                                 size_t M, size_t D, size_t E) {
  for (size_t m = 0; m < M; m++) {
    if (mask && !mask[m]) continue;
    for (size_t i = 0; i < D; i++) {
      double xi = X[m * D + i];
      for (size_t j = 0; j < D; j++) XtX[i * D + j] += xi * double(X[m * D + j]);
      for (size_t j = 0; j < E; j++) XtY[i * E + j] += xi * double(Y[m * E + j]);
    }
  }
}
}  // namespace ref

}  // namespace streamline
