// Backward passes of the elementwise activations and of the gated unit y = act(gate)·up, following PyTorch's
// derivative formulas (silu_backward, threshold_backward for ReLU, gelu_backward with approximate 'none'/'tanh'):
//   SiLU  σ(x)·(1 + x·(1 − σ(x)))                ReLU  1 if x > 0 else 0
//   GELU  Φ(x) + x·φ(x)                           GELU-tanh  ½(1 + t) + ½x·(1 − t²)·√(2/π)·(1 + 3κx²),
//                                                 t = tanh(√(2/π)(x + κx³)), κ = 0.044715
// dx, dgate and dup accumulate (+=). The fast path computes in f32 and is threaded; the reference in f64.
#include <cmath>

#include "streamline/ops.h"
#include "streamline/threads.h"

namespace streamline {

namespace {

constexpr double kSqrt2OverPi = 0.79788456080286535588;  // √(2/π)
constexpr double kInvSqrt2 = 0.70710678118654752440;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;  // 1/√(2π)
constexpr double kKappa = 0.044715;

// act(x) and act'(x) in type R (float for the fast path, double for the reference).
template <typename R>
inline void act_and_grad(R x, Activation act, R* value, R* grad) {
  switch (act) {
    case Activation::SiLU: {
      R s = R(1) / (R(1) + std::exp(-x));
      *value = x * s;
      *grad = s * (R(1) + x * (R(1) - s));
      return;
    }
    case Activation::ReLU:
      *value = x > R(0) ? x : R(0);
      *grad = x > R(0) ? R(1) : R(0);
      return;
    case Activation::GELU: {
      R cdf = R(0.5) * (R(1) + std::erf(x * R(kInvSqrt2)));
      *value = x * cdf;
      *grad = cdf + x * R(kInvSqrt2Pi) * std::exp(R(-0.5) * x * x);
      return;
    }
    case Activation::GELUTanh: {
      R x2 = x * x;
      R t = std::tanh(R(kSqrt2OverPi) * (x + R(kKappa) * x2 * x));
      *value = R(0.5) * x * (R(1) + t);
      *grad = R(0.5) * (R(1) + t) + R(0.5) * x * (R(1) - t * t) * R(kSqrt2OverPi) * (R(1) + R(3 * kKappa) * x2);
      return;
    }
  }
  *value = x;
  *grad = R(1);
}

}  // namespace

void activation_backward(float* dx, const float* dy, const float* x, size_t n, Activation act) {
  parallel_for(n, 4096, [&](size_t b, size_t e, int) {
    for (size_t i = b; i < e; i++) {
      float v, g;
      act_and_grad<float>(x[i], act, &v, &g);
      dx[i] += dy[i] * g;
    }
  });
}

void gated_backward(float* dgate, float* dup, const float* dy, const float* gate, const float* up, size_t n,
                    Activation act) {
  parallel_for(n, 4096, [&](size_t b, size_t e, int) {
    for (size_t i = b; i < e; i++) {
      float v, g;
      act_and_grad<float>(gate[i], act, &v, &g);
      if (dgate) dgate[i] += dy[i] * up[i] * g;
      if (dup) dup[i] += dy[i] * v;
    }
  });
}

namespace ref {

void activation_backward(float* dx, const float* dy, const float* x, size_t n, Activation act) {
  for (size_t i = 0; i < n; i++) {
    double v, g;
    act_and_grad<double>(x[i], act, &v, &g);
    dx[i] += float(double(dy[i]) * g);
  }
}

void gated_backward(float* dgate, float* dup, const float* dy, const float* gate, const float* up, size_t n,
                    Activation act) {
  for (size_t i = 0; i < n; i++) {
    double v, g;
    act_and_grad<double>(gate[i], act, &v, &g);
    if (dgate) dgate[i] += float(double(dy[i]) * up[i] * g);
    if (dup) dup[i] += float(double(dy[i]) * v);
  }
}

}  // namespace ref
}  // namespace streamline
