// Optimiser pieces for replacement training: AdamW on f32 master weights with the exact arithmetic of
// torch.optim.AdamW (single-tensor, amsgrad=False, maximize=False), and global gradient-norm clipping with
// torch.nn.utils.clip_grad_norm_ semantics. The learning-rate schedule lives in TypeScript
// (packages/core/src/train/schedule.ts): it is a pure function of the step.
#pragma once
#include <cstddef>
#include <vector>

namespace streamline {

// One parameter tensor and its state; all four arrays have n elements.
struct AdamWTensor {
  float* param;
  const float* grad;
  float* m;  // first moment (exp_avg)
  float* v;  // second moment (exp_avg_sq)
  size_t n;
};

struct AdamWOptions {
  double lr = 2e-4, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 1e-3;
  long long step = 1;  // the step being taken, 1-based (torch increments state['step'] before using it)
};

// For each element, in f32 as PyTorch computes it (scalars formed in f64, then rounded to f32):
//   p ← p·(1 − lr·wd)
//   m ← lerp(m, g, 1 − β1)        (torch's lerp: w < 0.5 ? m + w·(g − m) : g − (g − m)·(1 − w))
//   v ← v·β2 + ((1 − β2)·g)·g
//   p ← p + (−lr/(1 − β1^t))·m / (sqrt(v)/sqrt(1 − β2^t) + eps)
// Threaded over elements; every element is independent, so the result is the same for any thread count.
void adamw_step(const std::vector<AdamWTensor>& tensors, const AdamWOptions& opt);

// Global L2 norm of all gradients, accumulated in f64 over fixed blocks (thread-count independent).
double grad_norm(const std::vector<float*>& grads, const std::vector<size_t>& sizes);

// clip_grad_norm_: total = grad_norm(...); scale = max_norm / (total + 1e-6); when scale < 1 every gradient is
// multiplied by float(scale). Returns the norm before clipping; *applied_scale (optional) receives the factor
// used (1 when not clipped).
double clip_grad_norm(const std::vector<float*>& grads, const std::vector<size_t>& sizes, double max_norm,
                      double* applied_scale = nullptr);

}  // namespace streamline
