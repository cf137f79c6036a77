// Backward passes of RMSNorm (Hugging Face LlamaRMSNorm) and LayerNorm, f32 weights.
//   RMSNorm:   x̂ = x·r, r = 1/sqrt(mean(x²) + eps), y = w·x̂;            dx += r·(g − x̂·mean(g·x̂)), g = dy·w
//   LayerNorm: x̂ = (x − μ)·r, r = 1/sqrt(var + eps), y = w·x̂ + b;       dx += r·(g − mean(g) − x̂·mean(g·x̂))
//   dw += Σ_m dy·x̂, db += Σ_m dy. w == nullptr means no scale (g = dy); dw/db may be nullptr.
// Row statistics are taken in f64. Weight gradients are summed per fixed block of rows and the blocks are added
// in order, so results do not depend on the number of threads.
#include <algorithm>
#include <cmath>
#include <vector>

#include "streamline/ops.h"
#include "streamline/threads.h"

namespace streamline {

namespace {

constexpr size_t kRowBlock = 32;

// Shared driver: row(m, xhat_out, g_dx) computes dx for row m and leaves x̂ in xhat for the weight gradients.
template <bool kLayer>
void norm_backward(float* dx, float* dw, float* db, const float* dy, const float* x, const float* w, size_t M, size_t D,
                   float eps) {
  if (M == 0 || D == 0) return;
  size_t nblocks = (M + kRowBlock - 1) / kRowBlock;
  bool want_w = dw != nullptr || db != nullptr;
  std::vector<float> pdw(want_w && dw ? nblocks * D : 0), pdb(want_w && db ? nblocks * D : 0);
  parallel_for(nblocks, 1, [&](size_t b0, size_t b1, int) {
    std::vector<float> xhat(D);
    for (size_t blk = b0; blk < b1; blk++) {
      float* bw = dw ? pdw.data() + blk * D : nullptr;
      float* bb = db ? pdb.data() + blk * D : nullptr;
      if (bw) std::fill(bw, bw + D, 0.f);
      if (bb) std::fill(bb, bb + D, 0.f);
      for (size_t m = blk * kRowBlock; m < std::min(M, (blk + 1) * kRowBlock); m++) {
        const float* xr = x + m * D;
        const float* g = dy + m * D;
        double mu = 0, ss = 0;
        if (kLayer) {
          for (size_t i = 0; i < D; i++) mu += xr[i];
          mu /= double(D);
        }
        for (size_t i = 0; i < D; i++) ss += (xr[i] - mu) * (xr[i] - mu);
        double r = 1.0 / std::sqrt(ss / double(D) + double(eps));
        double sg = 0, sgx = 0;
        for (size_t i = 0; i < D; i++) {
          xhat[i] = float((xr[i] - mu) * r);
          double gi = w ? double(g[i]) * w[i] : double(g[i]);
          sg += gi;
          sgx += gi * xhat[i];
        }
        double mg = kLayer ? sg / double(D) : 0.0, mgx = sgx / double(D);
        if (dx) {
          float* o = dx + m * D;
          for (size_t i = 0; i < D; i++) {
            double gi = w ? double(g[i]) * w[i] : double(g[i]);
            o[i] += float(r * (gi - mg - double(xhat[i]) * mgx));
          }
        }
        if (bw)
          for (size_t i = 0; i < D; i++) bw[i] += g[i] * xhat[i];
        if (bb)
          for (size_t i = 0; i < D; i++) bb[i] += g[i];
      }
    }
  });
  auto reduce = [&](float* out, const std::vector<float>& part) {
    parallel_for(D, 256, [&](size_t b, size_t e, int) {
      for (size_t i = b; i < e; i++) {
        double s = 0;
        for (size_t blk = 0; blk < nblocks; blk++) s += part[blk * D + i];
        out[i] += float(s);
      }
    });
  };
  if (dw) reduce(dw, pdw);
  if (db) reduce(db, pdb);
}

template <bool kLayer>
void norm_backward_ref(float* dx, float* dw, float* db, const float* dy, const float* x, const float* w, size_t M,
                       size_t D, float eps) {
  std::vector<double> sdw(D, 0.0), sdb(D, 0.0), xh(D);
  for (size_t m = 0; m < M; m++) {
    const float* xr = x + m * D;
    const float* g = dy + m * D;
    double mu = 0, ss = 0;
    if (kLayer) {
      for (size_t i = 0; i < D; i++) mu += xr[i];
      mu /= double(D);
    }
    for (size_t i = 0; i < D; i++) ss += (xr[i] - mu) * (xr[i] - mu);
    double r = 1.0 / std::sqrt(ss / double(D) + double(eps));
    double sg = 0, sgx = 0;
    for (size_t i = 0; i < D; i++) {
      xh[i] = (xr[i] - mu) * r;
      double gi = double(g[i]) * (w ? double(w[i]) : 1.0);
      sg += gi;
      sgx += gi * xh[i];
      sdw[i] += double(g[i]) * xh[i];
      sdb[i] += g[i];
    }
    if (dx)
      for (size_t i = 0; i < D; i++) {
        double gi = double(g[i]) * (w ? double(w[i]) : 1.0);
        dx[m * D + i] += float(r * (gi - (kLayer ? sg / double(D) : 0.0) - xh[i] * sgx / double(D)));
      }
  }
  if (M == 0) return;
  for (size_t i = 0; i < D; i++) {
    if (dw) dw[i] += float(sdw[i]);
    if (db) db[i] += float(sdb[i]);
  }
}

}  // namespace

void rmsnorm_backward(float* dx, float* dw, const float* dy, const float* x, const float* w, size_t M, size_t D,
                      float eps) {
  norm_backward<false>(dx, dw, nullptr, dy, x, w, M, D, eps);
}

void layernorm_backward(float* dx, float* dw, float* db, const float* dy, const float* x, const float* w, size_t M,
                        size_t D, float eps) {
  norm_backward<true>(dx, dw, db, dy, x, w, M, D, eps);
}

namespace ref {

void rmsnorm_backward(float* dx, float* dw, const float* dy, const float* x, const float* w, size_t M, size_t D,
                      float eps) {
  norm_backward_ref<false>(dx, dw, nullptr, dy, x, w, M, D, eps);
}

void layernorm_backward(float* dx, float* dw, float* db, const float* dy, const float* x, const float* w, size_t M,
                        size_t D, float eps) {
  norm_backward_ref<true>(dx, dw, db, dy, x, w, M, D, eps);
}

}  // namespace ref
}  // namespace streamline
