// Least squares for the training-free `linear` replacement (ReplaceMe-style): accumulate the normal equations
// in f64 over all training tokens, solve (XᵀX + λI)·T = XᵀY with Eigen's LDLT, and fold T into an existing
// weight so the exported model is a standard checkpoint.
#pragma once
#include <cstddef>
#include <cstdint>

#include "streamline/dtype.h"

namespace streamline {

// XtX[D,D] += Xᵀ·X and XtY[D,E] += Xᵀ·Y over rows with mask != 0 (mask may be nullptr). f64 accumulation.
void normal_equations_accumulate(double* XtX, double* XtY, const float* X, const float* Y, const uint8_t* mask,
                                 size_t M, size_t D, size_t E);

// Solves (XtX + ridge·I)·T = XtY for T[D,E] (f64 solve, f32 result). Returns false when the system is not
// positive semi-definite enough to solve (NaN/Inf in the solution).
bool solve_normal_equations(float* T, const double* XtX, const double* XtY, size_t D, size_t E, double ridge);

// W_out[D,F] = Tᵀ·W_in, with T[D,D] f32 and W_in[D,F] of dtype wdt (the weight a linear map feeds: an MLP's
// output projection stored [D,F], or a bias as [D,1]).
void fold_left(float* W_out, const float* T, const void* W_in, DType wdt, size_t D, size_t F);

// Right-multiplies rows: E_out[V,D] = E_in[V,D]·T (input embeddings folded with T).
void fold_right(float* E_out, const void* E_in, DType wdt, const float* T, size_t V, size_t D);

namespace ref {
void normal_equations_accumulate(double* XtX, double* XtY, const float* X, const float* Y, const uint8_t* mask,
                                 size_t M, size_t D, size_t E);
}

}  // namespace streamline
