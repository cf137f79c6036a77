// AdamW and gradient clipping for replacement training (see train.h for the exact formulas). Built for the
// x86-64 baseline without FMA contraction, so each operation rounds once, as PyTorch's CPU kernels do.
#include <algorithm>
#include <cmath>
#include <vector>

#include "streamline/threads.h"
#include "streamline/train.h"

namespace streamline {

void adamw_step(const std::vector<AdamWTensor>& tensors, const AdamWOptions& o) {
  const double t = double(o.step);
  const float decay = float(1.0 - o.lr * o.weight_decay);
  const float w = float(1.0 - o.beta1);
  const float beta2 = float(o.beta2), one_minus_beta2 = float(1.0 - o.beta2);
  const double bc1 = 1.0 - std::pow(o.beta1, t), bc2 = 1.0 - std::pow(o.beta2, t);
  const float neg_step = float(-(o.lr / bc1));
  const float bc2_sqrt = float(std::sqrt(bc2));
  const float eps = float(o.eps);
  const bool wd = o.weight_decay != 0.0;
  for (const AdamWTensor& x : tensors) {
    parallel_for(x.n, 16384, [&](size_t b, size_t e, int) {
      for (size_t i = b; i < e; i++) {
        float p = x.param[i], g = x.grad[i], m = x.m[i], v = x.v[i];
        if (wd) p = p * decay;
        m = w < 0.5f ? m + w * (g - m) : g - (g - m) * (1.0f - w);
        v = v * beta2;
        v = v + one_minus_beta2 * g * g;
        float denom = std::sqrt(v) / bc2_sqrt + eps;
        p = p + neg_step * m / denom;
        x.param[i] = p, x.m[i] = m, x.v[i] = v;
      }
    });
  }
}

double grad_norm(const std::vector<float*>& grads, const std::vector<size_t>& sizes) {
  constexpr size_t kBlock = 16384;
  double total = 0;
  for (size_t t = 0; t < grads.size(); t++) {
    const float* g = grads[t];
    size_t n = sizes[t], nblocks = (n + kBlock - 1) / kBlock;
    std::vector<double> part(nblocks, 0.0);
    parallel_for(nblocks, 1, [&](size_t b0, size_t b1, int) {
      for (size_t blk = b0; blk < b1; blk++) {
        double s = 0;
        for (size_t i = blk * kBlock; i < std::min(n, (blk + 1) * kBlock); i++) s += double(g[i]) * g[i];
        part[blk] = s;
      }
    });
    for (double p : part) total += p;
  }
  return std::sqrt(total);
}

double clip_grad_norm(const std::vector<float*>& grads, const std::vector<size_t>& sizes, double max_norm,
                      double* applied_scale) {
  double total = grad_norm(grads, sizes);
  double scale = max_norm / (total + 1e-6);
  if (scale < 1.0) {
    const float s = float(scale);
    for (size_t t = 0; t < grads.size(); t++) {
      float* g = grads[t];
      parallel_for(sizes[t], 16384, [&](size_t b, size_t e, int) {
        for (size_t i = b; i < e; i++) g[i] *= s;
      });
    }
  } else {
    scale = 1.0;
  }
  if (applied_scale) *applied_scale = scale;
  return total;
}

}  // namespace streamline
