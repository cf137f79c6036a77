// Matrix products of the CUDA backend, in the Hugging Face linear layout: y[M,N] = x[M,K] · W[N,K]^T.
// - Gemm: bf16 x and W, f32 accumulation, y in f32 or bf16, optional y += (beta = 1). Runs through cuBLASLt when
//   libcublasLt could be loaded (tensor cores; algorithms from the heuristic, cached per shape), otherwise through
//   the tiled fallback kernel below.
// - gemm_fallback: a plain tiled kernel (f32 accumulate): the reference GPU path for tests, and the path used
//   when cuBLASLt is absent (correct, not fast).
// - linear_forward: the CPU contract (f32 activations, f32/bf16/f16 weights, bias, accumulate) plus a stream.
#pragma once
#include <map>
#include <tuple>

#include "common.cuh"

namespace streamline {
namespace cuda {

void gemm_fallback(void* y, DType ydt, const bf16* x, const bf16* w, const float* bias, size_t M, size_t N, size_t K,
                   float beta, cudaStream_t s);

void linear_forward(float* y, const float* x, const void* w, DType wdt, const float* bias, size_t M, size_t N, size_t K,
                    bool accumulate, cudaStream_t s);

class Gemm {
 public:
  // use_cublaslt = false forces the fallback kernel (tests); otherwise cuBLASLt is used when it loaded.
  explicit Gemm(bool use_cublaslt = true);
  ~Gemm();
  Gemm(const Gemm&) = delete;
  Gemm& operator=(const Gemm&) = delete;

  bool uses_cublaslt() const { return handle_ != nullptr; }
  // y (ydt = F32 or BF16) = x · W^T (+ beta * y; beta must be 0 or 1, and 1 needs ydt = F32).
  void run(void* y, DType ydt, const bf16* x, const bf16* w, size_t M, size_t N, size_t K, float beta, cudaStream_t s);

 private:
  struct Plan {
    void* desc = nullptr;
    void* a = nullptr;
    void* b = nullptr;
    void* c = nullptr;
    uint64_t algo[8] = {};
    size_t workspace = 0;
    bool fallback = false;  // cuBLASLt offered no algorithm for this shape
  };
  const Plan& plan(DType ydt, size_t M, size_t N, size_t K);
  void* handle_ = nullptr;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
  std::map<std::tuple<int, size_t, size_t, size_t>, Plan> plans_;
};

}  // namespace cuda
}  // namespace streamline
