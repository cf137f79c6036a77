// The model head as the `lm` training objective sees it (issue 9), the GPU form of streamline::head_loss_backward
// (native/include/streamline/lm_loss.h): h -> final norm (optional) -> lm_head -> per-row next-token NLL and, for the
// backward, dL/dh. Logits exist for a chunk of rows at a time (about 64 Mi of them), so the vocabulary never costs
// M x V memory. Precision as in the training step: the normed rows and the lm_head are bf16 GEMM operands (f32
// accumulation); the softmax statistics are f32 values summed in f64; dlogits are rounded to bf16 once for the dX GEMM.
#pragma once
#include <utility>
#include <vector>

#include "common.cuh"
#include "decoder_layer.cuh"
#include "gemm.cuh"
#include "norm.cuh"

namespace streamline {
namespace cuda {

// Copies a host tensor of any float dtype to dst (converted to dst_dt: F32 or BF16) through raw[raw_bytes], a device
// scratch buffer, on stream s; expect_numel is checked (what names the tensor in the error).
void upload_converted(void* dst, DType dst_dt, const HostTensor& src, size_t expect_numel, const char* what, void* raw,
                      size_t raw_bytes, cudaStream_t s);

// nll[m] = logsumexp(logits[m]) − logits[m, targets[m]] (0 where targets[m] < 0); when dlogits != nullptr,
// dlogits[m] = bf16(scale · (softmax(logits[m]) − onehot(targets[m]))) (a zero row where targets[m] < 0). NaN in a row
// makes that row's nll and dlogits NaN. Targets must be < V (the caller checks).
void cross_entropy_rows(double* nll, bf16* dlogits, const float* logits, const int32_t* targets, size_t M, size_t V,
                        float scale, cudaStream_t s);
// out[b] = sum of x[b * T .. b * T + T) in a fixed order (deterministic), b < B.
void segment_sums(double* out, const double* x, size_t B, size_t T, cudaStream_t s);

class LmHead {
 public:
  // norm_w / norm_b: the final norm (both data == nullptr: none; kind and eps of the model); lm_head [V, D] (the tied
  // embedding where the model has no lm_head). Host tensors of any float dtype, copied (bf16 matrix, f32 vectors).
  // max_rows: the most rows one run() takes. gemm and stream are the caller's (a TrainStep's) and must outlive this.
  LmHead(Gemm& gemm, cudaStream_t stream, size_t D, size_t V, NormKind nk, float eps, const HostTensor& norm_w,
         const HostTensor& norm_b, const HostTensor& lm_head, size_t max_rows);
  ~LmHead();
  LmHead(const LmHead&) = delete;
  LmHead& operator=(const LmHead&) = delete;

  // h[M, D] (device f32, M <= max_rows), targets[M] (device, -1 = none, < V): nll[M] (device f64) as in
  // cross_entropy_rows; when dh != nullptr, dh[M, D] = scale · d(Σ_m nll[m])/dh (overwritten; zero rows where the
  // target is -1). Asynchronous on the stream.
  void run(double* nll, float* dh, const float* h, const int32_t* targets, size_t M, float scale);
  size_t vocab() const { return V_; }
  size_t bytes() const { return bytes_; }
  // Rows per logits chunk (default: about 64 Mi logits, at most max_rows); only smaller than the default (tests:
  // small chunks make a batch cross chunk boundaries).
  void set_chunk_rows(size_t rows);

 private:
  void* alloc(size_t bytes);
  void release();
  Gemm& gemm_;
  cudaStream_t st_;
  size_t D_, V_, chunk_ = 0, chunk_cap_ = 0;
  NormKind nk_;
  float eps_;
  bool final_norm_ = false;
  std::vector<std::pair<void*, size_t>> allocs_;
  size_t bytes_ = 0;
  float *norm_w_ = nullptr, *norm_b_ = nullptr;
  bf16* w_ = nullptr;  // lm_head [V, D]
  bf16 *hn_bf_ = nullptr, *dlogits_ = nullptr;
  float *logits_ = nullptr, *dhn_ = nullptr;
};

}  // namespace cuda
}  // namespace streamline
