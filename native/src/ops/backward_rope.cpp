// Backward pass of rotate-half RoPE: the forward rotation by angle θ is orthogonal, so the gradient is the
// rotation by −θ: dx1 = d1·cos + d2·sin, dx2 = d2·cos − d1·sin, in place on dx[M, nheads, Dh], with the same
// cos/sin tables [M, rot/2] the forward pass used (rot = Dh unless partial; the dims past rot pass through).
#include "streamline/ops.h"
#include "streamline/threads.h"

namespace streamline {

void rope_backward(float* dx, const float* cos, const float* sin, size_t M, size_t nheads, size_t Dh, size_t rot) {
  size_t half = (rot ? rot : Dh) / 2;
  parallel_for(M, 16, [&](size_t b, size_t e, int) {
    for (size_t m = b; m < e; m++) {
      const float* c = cos + m * half;
      const float* s = sin + m * half;
      for (size_t h = 0; h < nheads; h++) {
        float* p = dx + (m * nheads + h) * Dh;
        for (size_t i = 0; i < half; i++) {
          float d1 = p[i], d2 = p[i + half];
          p[i] = d1 * c[i] + d2 * s[i];
          p[i + half] = d2 * c[i] - d1 * s[i];
        }
      }
    }
  });
}

namespace ref {

void rope_backward(float* dx, const float* cos, const float* sin, size_t M, size_t nheads, size_t Dh, size_t rot) {
  size_t half = (rot ? rot : Dh) / 2;
  for (size_t m = 0; m < M; m++)
    for (size_t h = 0; h < nheads; h++)
      for (size_t i = 0; i < half; i++) {
        float* p = dx + (m * nheads + h) * Dh;
        double c = cos[m * half + i], s = sin[m * half + i], d1 = p[i], d2 = p[i + half];
        p[i] = float(d1 * c + d2 * s);
        p[i + half] = float(d2 * c - d1 * s);
      }
}

}  // namespace ref
}  // namespace streamline
