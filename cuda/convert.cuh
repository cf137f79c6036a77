// Element conversions on the device (asynchronous on s; n = 0 launches nothing). convert_device: src (F32, F16 or
// BF16) to dst (F32 or BF16), e.g. a checkpoint's weights to the GEMM's bf16 or a vector to f32. cast_bf16: f32 to
// bf16, round to nearest even.
#pragma once
#include "common.cuh"

namespace streamline {
namespace cuda {

void convert_device(void* dst, DType dst_dt, const void* src, DType src_dt, size_t n, cudaStream_t s);
void cast_bf16(bf16* y, const float* x, size_t n, cudaStream_t s);

}  // namespace cuda
}  // namespace streamline
