// Mean squared error and its gradient: loss = mean((a − b)²) in f64, da = 2(a − b)/n (overwritten, optional).
// The sum is taken over fixed blocks of elements added in order, so it does not depend on the thread count.
#include <algorithm>
#include <vector>

#include "streamline/ops.h"
#include "streamline/threads.h"

namespace streamline {

double mse_forward_backward(float* da, const float* a, const float* b, size_t n) {
  if (n == 0) return 0.0;
  constexpr size_t kBlock = 8192;
  size_t nblocks = (n + kBlock - 1) / kBlock;
  std::vector<double> part(nblocks, 0.0);
  double scale = 2.0 / double(n);
  parallel_for(nblocks, 1, [&](size_t b0, size_t b1, int) {
    for (size_t blk = b0; blk < b1; blk++) {
      double s = 0;
      size_t end = std::min(n, (blk + 1) * kBlock);
      for (size_t i = blk * kBlock; i < end; i++) {
        double d = double(a[i]) - double(b[i]);
        s += d * d;
        if (da) da[i] = float(scale * d);
      }
      part[blk] = s;
    }
  });
  double s = 0;
  for (double p : part) s += p;
  return s / double(n);
}

namespace ref {

double mse_forward_backward(float* da, const float* a, const float* b, size_t n) {
  if (n == 0) return 0.0;
  double s = 0;
  for (size_t i = 0; i < n; i++) {
    double d = double(a[i]) - double(b[i]);
    s += d * d;
    if (da) da[i] = float(2.0 * d / double(n));
  }
  return s / double(n);
}

}  // namespace ref
}  // namespace streamline
