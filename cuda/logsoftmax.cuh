// Log-softmax over large vocabularies and token log-likelihood gathering on the GPU (contract of
// streamline::log_softmax_forward / token_logprobs plus a stream). One block per row; the row is read in chunks
// with an online max/sum (one pass for the statistics), so any vocabulary size works without staging the row.
#pragma once
#include "common.cuh"

namespace streamline {
namespace cuda {

// y[M,V] = x - max - log(sum(exp(x - max))) per row. y may equal x.
void log_softmax_forward(float* y, const float* x, size_t M, size_t V, cudaStream_t s);
// lp[m] = log_softmax(logits[m])[target[m]]; rows with target < 0 (or >= V) get 0.
void token_logprobs(float* lp, const float* logits, const int32_t* target, size_t M, size_t V, cudaStream_t s);

}  // namespace cuda
}  // namespace streamline
