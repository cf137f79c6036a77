// RMSNorm and LayerNorm backward on the GPU (contract of streamline::rmsnorm_backward / layernorm_backward in
// ops.h, see backward.cuh). Same formulas as native/src/ops/backward_norm.cpp:
//   RMSNorm:   dx += r·(g − x̂·mean(g·x̂)),            LayerNorm: dx += r·(g − mean(g) − x̂·mean(g·x̂)),  g = dy·w
//   dw += Σ_m dy·x̂, db += Σ_m dy
// Three launches:
//   1. one block per row: row statistics (mean, r, mean(g), mean(g·x̂)) summed in f64 like the CPU, dx written,
//      (mean, r) kept per row for step 2. f64 costs nothing here: the kernel is bound by reading x and dy.
//   2. dw/db partials: a thread per column sums a fixed block of kRowBlock rows in f64 (coalesced across the
//      columns of a warp), one partial per (row block, column).
//   3. a thread per column adds its partials in row-block order.
// The row blocks are a constant, not a function of the launch, so dw/db are deterministic and independent of the
// device; no float atomics anywhere.
#include "backward.cuh"

namespace streamline {
namespace cuda {

namespace {

constexpr int kRowThreads = 256;
constexpr int kColThreads = 256;
constexpr size_t kRowBlock = 64;  // rows per dw/db partial

template <bool kLayer>
__global__ void norm_bwd_rows(float* dx, double2* stats, const float* dy, const float* x, const float* w, size_t M,
                              unsigned D, float eps) {
  __shared__ double scratch[32];
  for (size_t m = blockIdx.x; m < M; m += gridDim.x) {
    const float* xr = x + m * D;
    const float* g = dy + m * D;
    double mu = 0;
    if (kLayer) {
      double s = 0;
      for (unsigned i = threadIdx.x; i < D; i += blockDim.x) s += double(xr[i]);
      mu = block_sum(s, scratch) / double(D);
    }
    double ss = 0;
    for (unsigned i = threadIdx.x; i < D; i += blockDim.x) {
      const double c = double(xr[i]) - mu;
      ss += c * c;
    }
    ss = block_sum(ss, scratch);
    const double r = 1.0 / sqrt(ss / double(D) + double(eps));
    if (dx) {
      double sg = 0, sgx = 0;
      for (unsigned i = threadIdx.x; i < D; i += blockDim.x) {
        const float xh = float((double(xr[i]) - mu) * r);
        const double gi = w ? double(g[i]) * double(w[i]) : double(g[i]);
        sg += gi;
        sgx += gi * double(xh);
      }
      if (kLayer) sg = block_sum(sg, scratch);
      sgx = block_sum(sgx, scratch);
      const double mg = kLayer ? sg / double(D) : 0.0, mgx = sgx / double(D);
      float* o = dx + m * D;
      for (unsigned i = threadIdx.x; i < D; i += blockDim.x) {
        const float xh = float((double(xr[i]) - mu) * r);
        const double gi = w ? double(g[i]) * double(w[i]) : double(g[i]);
        o[i] += float(r * (gi - mg - double(xh) * mgx));
      }
    }
    if (stats && threadIdx.x == 0) stats[m] = make_double2(mu, r);
  }
}

// partial_w/partial_b [nblocks, D]: Σ over rows of one block of dy·x̂ and dy, in row order.
__global__ void norm_bwd_partials(double* partial_w, double* partial_b, const double2* stats, const float* dy,
                                  const float* x, size_t M, unsigned D) {
  const unsigned d = blockIdx.x * blockDim.x + threadIdx.x;
  if (d >= D) return;
  const size_t blk = blockIdx.y;
  const size_t m0 = blk * kRowBlock, m1 = m0 + kRowBlock < M ? m0 + kRowBlock : M;
  double sw = 0, sb = 0;
  for (size_t m = m0; m < m1; m++) {
    const double2 st = stats[m];
    const double g = double(dy[m * D + d]);
    sw += g * ((double(x[m * D + d]) - st.x) * st.y);
    sb += g;
  }
  if (partial_w) partial_w[blk * D + d] = sw;
  if (partial_b) partial_b[blk * D + d] = sb;
}

__global__ void norm_bwd_reduce(float* dw, float* db, const double* partial_w, const double* partial_b,
                                size_t nblocks, unsigned D) {
  const unsigned d = blockIdx.x * blockDim.x + threadIdx.x;
  if (d >= D) return;
  if (dw) {
    double s = 0;
    for (size_t b = 0; b < nblocks; b++) s += partial_w[b * D + d];
    dw[d] += float(s);
  }
  if (db) {
    double s = 0;
    for (size_t b = 0; b < nblocks; b++) s += partial_b[b * D + d];
    db[d] += float(s);
  }
}

template <bool kLayer>
void norm_backward(float* dx, float* dw, float* db, const float* dy, const float* x, const float* w, size_t M,
                   size_t D, float eps, cudaStream_t s) {
  if (M == 0 || D == 0) return;
  if (D > 0xffffffffu) throw CudaError("norm backward: row width over 2^32");
  const bool want_w = dw != nullptr || db != nullptr;
  if (!dx && !want_w) return;
  const size_t nblocks = (M + kRowBlock - 1) / kRowBlock;
  if (nblocks > 65535) throw CudaError("norm backward: more than 65535 x 64 rows");
  double2* stats = nullptr;
  double *pw = nullptr, *pb = nullptr;
  if (want_w) {
    SL_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&stats), sizeof(double2) * M, s));
    if (dw) SL_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&pw), sizeof(double) * nblocks * D, s));
    if (db) SL_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&pb), sizeof(double) * nblocks * D, s));
  }
  const int grid = int(M < 65535 ? M : 65535);
  norm_bwd_rows<kLayer><<<grid, kRowThreads, 0, s>>>(dx, stats, dy, x, w, M, unsigned(D), eps);
  SL_LAUNCH_CHECK();
  if (want_w) {
    const unsigned cols = unsigned((D + kColThreads - 1) / kColThreads);
    norm_bwd_partials<<<dim3(cols, unsigned(nblocks)), kColThreads, 0, s>>>(pw, pb, stats, dy, x, M, unsigned(D));
    SL_LAUNCH_CHECK();
    norm_bwd_reduce<<<cols, kColThreads, 0, s>>>(dw, db, pw, pb, nblocks, unsigned(D));
    SL_LAUNCH_CHECK();
    SL_CUDA_CHECK(cudaFreeAsync(stats, s));
    if (pw) SL_CUDA_CHECK(cudaFreeAsync(pw, s));
    if (pb) SL_CUDA_CHECK(cudaFreeAsync(pb, s));
  }
}

}  // namespace

void rmsnorm_backward(float* dx, float* dw, const float* dy, const float* x, const float* w, size_t M, size_t D,
                      float eps, cudaStream_t s) {
  norm_backward<false>(dx, dw, nullptr, dy, x, w, M, D, eps, s);
}

void layernorm_backward(float* dx, float* dw, float* db, const float* dy, const float* x, const float* w, size_t M,
                        size_t D, float eps, cudaStream_t s) {
  norm_backward<true>(dx, dw, db, dy, x, w, M, D, eps, s);
}

}  // namespace cuda
}  // namespace streamline
