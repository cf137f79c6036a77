// Token embedding lookup on the GPU (same contract as streamline::embedding_forward, plus a stream).
#pragma once
#include "common.cuh"

namespace streamline {
namespace cuda {

// out[M,D] (f32) = table[ids[m]] (f32/bf16/f16, device). Rows whose id is outside [0, V) are left unwritten and
// counted into *bad (device int, may be nullptr). Asynchronous.
void embedding_forward_async(float* out, const int32_t* ids, const void* table, DType wdt, size_t M, size_t V,
                             size_t D, int* bad, cudaStream_t s);
// The CPU contract: returns false when any id was out of range (synchronises the stream to read the flag).
bool embedding_forward(float* out, const int32_t* ids, const void* table, DType wdt, size_t M, size_t V, size_t D,
                       cudaStream_t s);

}  // namespace cuda
}  // namespace streamline
