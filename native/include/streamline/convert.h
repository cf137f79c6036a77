// Bulk conversions between float dtypes (f32, f16, bf16). Exact where the target can represent the value,
// round-to-nearest-even otherwise. Vectorised with run-time dispatch; each has a scalar reference.
#pragma once
#include <cstddef>
#include "streamline/dtype.h"

namespace streamline {

bool is_float_dtype(DType t);

// Converts n elements from src (type st) into dst (type dt). Both must be float dtypes; returns false otherwise.
// src and dst must not overlap unless they are the same pointer with the same dtype.
bool convert_floats(void* dst, DType dt, const void* src, DType st, size_t n);

namespace ref {
bool convert_floats(void* dst, DType dt, const void* src, DType st, size_t n);
}

}  // namespace streamline
