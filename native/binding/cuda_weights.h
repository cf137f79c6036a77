// Weights as the C API of streamline_cuda.so takes them (streamline_cuda_weight, roles arrays in the order of
// STREAMLINE_CUDA_ATTN_NORM_W ... STREAMLINE_CUDA_DOWN_B): shared by the context (binding_cuda.cpp) and the trainer's
// lm tail (binding_cuda_train.cpp), so both hand the backend the same layout.
#pragma once
#include <cstdint>

#include "streamline/model.h"
#include "streamline_cuda.h"

namespace streamline::binding {

static_assert(int(DType::F32) == 0 && int(DType::F16) == 1 && int(DType::BF16) == 2, "dtype numbering of streamline_cuda_weight");

// A view of host memory (read in place, not copied): data nullptr when the weight is absent.
inline streamline_cuda_weight cuda_weight(const WeightView& w) {
  streamline_cuda_weight r{nullptr, 0, 0};
  if (!w) return r;
  r.data = w.data;
  r.dtype = int32_t(w.dtype);
  r.numel = int64_t(w.numel());
  return r;
}

// Roles in the order of the C API's roles array, looked up by name so a reordering of LayerWeights cannot silently
// swap tensors.
inline constexpr const char* kCudaRoleNames[STREAMLINE_CUDA_ROLES] = {
    "attn_norm.weight", "attn_norm.bias", "q.weight", "q.bias", "k.weight", "k.bias", "v.weight", "v.bias",
    "o.weight", "o.bias", "mlp_norm.weight", "mlp_norm.bias", "gate.weight", "gate.bias", "up.weight", "up.bias",
    "down.weight", "down.bias"};

}  // namespace streamline::binding
