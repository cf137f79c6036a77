// Fused per-token cosine similarity between boundary hidden states, accumulated without ever forming a
// token x token matrix (the official LLM-Streamline code builds T x T and takes its trace).
// For rows t with mask[t] != 0 (mask may be nullptr): sum += cos(a[t], b[t]) in f64; a row where either vector
// has zero norm contributes cosine 0 and increments zeros.
#pragma once
#include <cstddef>
#include <cstdint>

namespace streamline {

struct CosineSum {
  double sum = 0;       // sum of per-token cosines
  uint64_t count = 0;   // tokens counted (mask != 0)
  uint64_t zeros = 0;   // tokens where a or b had zero norm (cosine taken as 0)
};

// One pair, one pass over a[M,D] and b[M,D]. Threaded over rows.
void cosine_accumulate(CosineSum* acc, const float* a, const float* b, const uint8_t* mask, size_t M, size_t D);

// Many pairs over a set of states (states[i] is [M,D]); pairs[2p], pairs[2p+1] index into states.
void cosine_pairs_accumulate(CosineSum* acc, const float* const* states, const int32_t* pairs, size_t P,
                             const uint8_t* mask, size_t M, size_t D);

namespace ref {
void cosine_accumulate(CosineSum* acc, const float* a, const float* b, const uint8_t* mask, size_t M, size_t D);
}

}  // namespace streamline
