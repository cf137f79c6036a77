// Fused per-token cosine accumulation between boundary hidden states (the LLM-Streamline score), never forming
// a token x token matrix. For rows t with mask[t] != 0 (mask may be nullptr): sum += cos(a[t], b[t]) with dot and
// squared norms accumulated in f64; a row where either vector has zero norm adds cosine 0 and counts into zeros.
// NaN propagates into the sum. One pass reads both tensors once with 16-byte loads; deterministic (per-block
// partials reduced in a fixed order, no floating-point atomics).
#pragma once
#include "common.cuh"

namespace streamline {
namespace cuda {

// Same layout as streamline::CosineSum (native/include/streamline/cosine.h).
struct CosineAccum {
  double sum;
  unsigned long long count;
  unsigned long long zeros;
};

// acc: device pointer; the results are ADDED to *acc (zero it first). a, b: [M, D] f32 device tensors.
void cosine_accumulate(CosineAccum* acc, const float* a, const float* b, const uint8_t* mask, size_t M, size_t D,
                       cudaStream_t s);
void cosine_accumulate_bf16(CosineAccum* acc, const bf16* a, const bf16* b, const uint8_t* mask, size_t M, size_t D,
                            cudaStream_t s);

}  // namespace cuda
}  // namespace streamline
