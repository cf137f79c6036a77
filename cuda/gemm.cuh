// Matrix products of the CUDA backend, in the Hugging Face linear layout: y[M,N] = x[M,K] · W[N,K]^T.
// - Gemm: bf16 x and W, f32 accumulation, y in f32 or bf16, optional y += (beta = 1). Runs through cuBLASLt when
//   libcublasLt could be loaded (tensor cores; algorithms from the heuristic, cached per shape), otherwise through
//   the tiled fallback kernel below.
// - gemm_fallback: a plain tiled kernel (f32 accumulate): the reference GPU path for tests, and the path used
//   when cuBLASLt is absent (correct, not fast).
// - linear_forward: the CPU contract (f32 activations, f32/bf16/f16 weights, bias, accumulate) plus a stream.
// - The two products of the linear backward (training step, issue 9), bf16 operands and f32 accumulation:
//   Gemm::run_dx: dX[M,K] = dY[M,N] · W[N,K] (overwritten, or += with beta = 1), and
//   Gemm::run_dw: dW[N,K] += dY[M,N]^T · X[M,K] into an f32 gradient (the sum over the M tokens is the reduction).
//   cuBLASLt gets them through the transpose flags of the matmul descriptor (operands 256-byte aligned, else the
//   fallback); gemm_fallback_dx/_dw are the tiled kernel with strided operands.
#pragma once
#include <map>
#include <tuple>

#include "common.cuh"

namespace streamline {
namespace cuda {

void gemm_fallback(void* y, DType ydt, const bf16* x, const bf16* w, const float* bias, size_t M, size_t N, size_t K,
                   float beta, cudaStream_t s);

// Fallback forms of the backward products (f32 output; beta 0 or 1 as in Gemm::run_dx; dw always accumulates).
void gemm_fallback_dx(float* dx, const bf16* dy, const bf16* w, size_t M, size_t N, size_t K, float beta, cudaStream_t s);
void gemm_fallback_dw(float* dw, const bf16* dy, const bf16* x, size_t M, size_t N, size_t K, cudaStream_t s);

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
  // dx[M,K] = dy[M,N] · W[N,K] (+ beta * dx; beta 0 or 1), f32 out. W is the forward's [N,K] weight.
  void run_dx(float* dx, const bf16* dy, const bf16* w, size_t M, size_t N, size_t K, float beta, cudaStream_t s);
  // dw[N,K] += dy[M,N]^T · x[M,K], f32 accumulate (a gradient summed over micro-batches).
  void run_dw(float* dw, const bf16* dy, const bf16* x, size_t M, size_t N, size_t K, cudaStream_t s);

 private:
  enum Op : int { kForward = 0, kDx = 1, kDw = 2 };
  struct Plan {
    void* desc = nullptr;
    void* a = nullptr;
    void* b = nullptr;
    void* c = nullptr;
    uint64_t algo[8] = {};
    size_t workspace = 0;
    bool fallback = false;  // cuBLASLt offered no algorithm for this shape
  };
  const Plan& plan(Op op, DType ydt, size_t M, size_t N, size_t K);
  void matmul(const Plan& p, const void* a, const void* b, void* c, float beta, cudaStream_t s);
  void* handle_ = nullptr;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
  std::map<std::tuple<int, int, size_t, size_t, size_t>, Plan> plans_;
};

}  // namespace cuda
}  // namespace streamline
