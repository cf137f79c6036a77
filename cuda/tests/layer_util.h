// Helpers shared by the layer and model checks of the harness.
#pragma once
#include <cstdint>
#include <vector>

#include "cpu_ref.h"
#include "decoder_layer.cuh"
#include "harness.h"

namespace harness {

// The GPU spec for a reference spec.
streamline::cuda::LayerSpec gpu_spec(const ref::LayerSpecRef& s);

// Per-batch inputs: positions arange(T) per row, row 0 all real and row 1 right-padded, RoPE tables for rot dims.
struct Inputs {
  std::vector<int32_t> pos;
  std::vector<uint8_t> mask;
  std::vector<float> inv, cos, sin;
};
Inputs make_inputs(const ref::LayerSpecRef& s, double theta);

// compare() over real tokens only (mask[m] != 0 rows of [M, D]).
Compare compare_real(const std::vector<float>& out, const std::vector<float>& ref, const std::vector<uint8_t>& mask, size_t D);

}  // namespace harness
