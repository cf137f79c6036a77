// The lm objective's head on the GPU (lm_head.cuh): chunked logits, one cross-entropy kernel, the dX GEMM and the
// norm's backward. The reference is the CPU's head_loss_backward (native/src/train/lm_loss.cpp).
#include <cmath>
#include <cstring>
#include <string>

#include "backward.cuh"
#include "convert.cuh"
#include "lm_head.cuh"

namespace streamline {
namespace cuda {

namespace {

void check(bool ok, const std::string& msg) {
  if (!ok) throw CudaError("lm head: " + msg);
}

constexpr int kCeThreads = 512;

__device__ float block_max(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float r = lane < nw ? scratch[lane] : -INFINITY;
  return warp_max(r);
}

// One block per row. The max is NaN-propagating, so a NaN logit poisons its row's nll and gradient (as on the CPU,
// where exp(NaN) reaches the sum).
__global__ void cross_entropy_kernel(double* nll, bf16* dlogits, const float* logits, const int32_t* targets, size_t M,
                                     size_t V, float scale) {
  __shared__ float fs[32];
  __shared__ double ds[32];
  for (size_t m = blockIdx.x; m < M; m += gridDim.x) {
    const float* row = logits + m * V;
    bf16* drow = dlogits ? dlogits + m * V : nullptr;
    const int32_t t = targets[m];
    if (t < 0) {
      if (drow)
        for (size_t v = threadIdx.x; v < V; v += blockDim.x) drow[v] = __float2bfloat16_rn(0.f);
      if (threadIdx.x == 0) nll[m] = 0.0;
      continue;
    }
    float mx = -INFINITY;
    for (size_t v = threadIdx.x; v < V; v += blockDim.x) mx = nan_max(mx, row[v]);
    mx = block_max(mx, fs);
    double sum = 0;
    for (size_t v = threadIdx.x; v < V; v += blockDim.x) sum += double(expf(row[v] - mx));
    sum = block_sum(sum, ds);
    const double lse = double(mx) + log(sum);
    if (threadIdx.x == 0) nll[m] = lse - double(row[t]);
    if (!drow) continue;
    for (size_t v = threadIdx.x; v < V; v += blockDim.x) {
      float g = expf(float(double(row[v]) - lse)) * scale;
      if (v == size_t(t)) g -= scale;
      drow[v] = __float2bfloat16_rn(g);
    }
  }
}

__global__ void segment_sums_kernel(double* out, const double* x, size_t T) {
  __shared__ double ds[32];
  const double* seg = x + size_t(blockIdx.x) * T;
  double s = 0;
  for (size_t i = threadIdx.x; i < T; i += blockDim.x) s += seg[i];
  s = block_sum(s, ds);
  if (threadIdx.x == 0) out[blockIdx.x] = s;
}

}  // namespace

void upload_converted(void* dst, DType dst_dt, const HostTensor& src, size_t expect_numel, const char* what, void* raw,
                      size_t raw_bytes, cudaStream_t s) {
  check(src.data != nullptr, std::string(what) + " is missing");
  check(src.numel == expect_numel, std::string(what) + ": expected " + std::to_string(expect_numel) + " elements, got " +
                                       std::to_string(src.numel));
  check(src.dtype == DType::F32 || src.dtype == DType::BF16 || src.dtype == DType::F16,
        std::string(what) + ": dtype must be f32, bf16 or f16");
  const size_t es = dtype_size(src.dtype), ds = dtype_size(dst_dt), per = raw_bytes / es;
  const char* host = static_cast<const char*>(src.data);
  for (size_t off = 0; off < src.numel; off += per) {
    const size_t n = src.numel - off < per ? src.numel - off : per;
    // Pageable source: the call returns once the host bytes are consumed; the conversion is ordered after it on s,
    // and the next chunk's copy into raw after the conversion.
    SL_CUDA_CHECK(cudaMemcpyAsync(raw, host + off * es, n * es, cudaMemcpyHostToDevice, s));
    convert_device(static_cast<char*>(dst) + off * ds, dst_dt, raw, src.dtype, n, s);
  }
}

void cross_entropy_rows(double* nll, bf16* dlogits, const float* logits, const int32_t* targets, size_t M, size_t V,
                        float scale, cudaStream_t s) {
  if (!M) return;
  cross_entropy_kernel<<<int(M < 65535 ? M : 65535), kCeThreads, 0, s>>>(nll, dlogits, logits, targets, M, V, scale);
  SL_LAUNCH_CHECK();
}

void segment_sums(double* out, const double* x, size_t B, size_t T, cudaStream_t s) {
  if (!B) return;
  check(B <= 0x7fffffffu, "segment_sums: too many segments");
  segment_sums_kernel<<<unsigned(B), 256, 0, s>>>(out, x, T);
  SL_LAUNCH_CHECK();
}

void* LmHead::alloc(size_t bytes) {
  void* p = device_alloc(bytes);
  allocs_.emplace_back(p, bytes);
  bytes_ += bytes;
  return p;
}

void LmHead::release() {
  if (st_) cudaStreamSynchronize(st_);
  for (auto& a : allocs_) device_free(a.first, a.second);
  allocs_.clear();
  bytes_ = 0;
}

LmHead::~LmHead() { release(); }

LmHead::LmHead(Gemm& gemm, cudaStream_t stream, size_t D, size_t V, NormKind nk, float eps, const HostTensor& norm_w,
               const HostTensor& norm_b, const HostTensor& lm_head, size_t max_rows)
    : gemm_(gemm), st_(stream), D_(D), V_(V), nk_(nk), eps_(eps) {
  check(D > 0 && V > 0 && max_rows > 0, "empty dimension");
  check(V <= 0x7fffffffu, "vocabulary over 2^31");
  final_norm_ = norm_w.data != nullptr || norm_b.data != nullptr;
  check(nk == NormKind::Layer || norm_b.data == nullptr, "a final-norm bias needs LayerNorm");
  chunk_cap_ = std::max<size_t>(1, std::min(max_rows, (size_t(64) << 20) / V));
  chunk_ = chunk_cap_;
  try {
    w_ = static_cast<bf16*>(alloc(V * D * 2));
    hn_bf_ = static_cast<bf16*>(alloc(chunk_cap_ * D * 2));
    logits_ = static_cast<float*>(alloc(chunk_cap_ * V * 4));
    dlogits_ = static_cast<bf16*>(alloc(chunk_cap_ * V * 2));
    dhn_ = static_cast<float*>(alloc(chunk_cap_ * D * 4));
    const size_t raw_bytes = size_t(32) << 20;
    void* raw = device_alloc(raw_bytes);
    try {
      upload_converted(w_, DType::BF16, lm_head, V * D, "lm_head.weight", raw, raw_bytes, st_);
      if (norm_w.data) {
        norm_w_ = static_cast<float*>(alloc(D * 4));
        upload_converted(norm_w_, DType::F32, norm_w, D, "final_norm.weight", raw, raw_bytes, st_);
      }
      if (norm_b.data) {
        norm_b_ = static_cast<float*>(alloc(D * 4));
        upload_converted(norm_b_, DType::F32, norm_b, D, "final_norm.bias", raw, raw_bytes, st_);
      }
      SL_CUDA_CHECK(cudaStreamSynchronize(st_));
    } catch (...) {
      cudaStreamSynchronize(st_);
      device_free(raw, raw_bytes);
      throw;
    }
    device_free(raw, raw_bytes);
  } catch (...) {
    release();
    throw;
  }
}

void LmHead::set_chunk_rows(size_t rows) {
  check(rows > 0 && rows <= chunk_cap_, "set_chunk_rows: rows must be in [1, " + std::to_string(chunk_cap_) + "]");
  chunk_ = rows;
}

void LmHead::run(double* nll, float* dh, const float* h, const int32_t* targets, size_t M, float scale) {
  const size_t D = D_, V = V_;
  for (size_t m0 = 0; m0 < M; m0 += chunk_) {
    const size_t mc = M - m0 < chunk_ ? M - m0 : chunk_;
    const float* hc = h + m0 * D;
    if (final_norm_)
      norm_rows(nk_, nullptr, hn_bf_, nullptr, hc, nullptr, nullptr, norm_w_, norm_b_, DType::F32, mc, D, eps_, st_);
    else
      cast_bf16(hn_bf_, hc, mc * D, st_);
    gemm_.run(logits_, DType::F32, hn_bf_, w_, mc, V, D, 0.f, st_);
    cross_entropy_rows(nll + m0, dh ? dlogits_ : nullptr, logits_, targets + m0, mc, V, scale, st_);
    if (!dh) continue;
    float* dc = dh + m0 * D;
    if (!final_norm_) {
      gemm_.run_dx(dc, dlogits_, w_, mc, V, D, 0.f, st_);
      continue;
    }
    gemm_.run_dx(dhn_, dlogits_, w_, mc, V, D, 0.f, st_);
    SL_CUDA_CHECK(cudaMemsetAsync(dc, 0, mc * D * 4, st_));  // the norm backward accumulates into dx
    if (nk_ == NormKind::Layer)
      layernorm_backward(dc, nullptr, nullptr, dhn_, hc, norm_w_, mc, D, eps_, st_);
    else
      rmsnorm_backward(dc, nullptr, dhn_, hc, norm_w_, mc, D, eps_, st_);
  }
}

}  // namespace cuda
}  // namespace streamline
