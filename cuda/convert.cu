// Element conversions on the device (convert.cuh).
#include "convert.cuh"

namespace streamline {
namespace cuda {

namespace {
__global__ void convert_kernel(void* dst, int dst_dt, const void* src, int src_dt, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    float v = wload(src, src_dt, i);
    if (dst_dt == int(DType::BF16)) static_cast<bf16*>(dst)[i] = __float2bfloat16_rn(v);
    else static_cast<float*>(dst)[i] = v;
  }
}
__global__ void cast_bf16_kernel(bf16* y, const float* x, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    y[i] = __float2bfloat16_rn(x[i]);
}
}  // namespace

void convert_device(void* dst, DType dst_dt, const void* src, DType src_dt, size_t n, cudaStream_t s) {
  if (!n) return;
  convert_kernel<<<grid_for(n, 256), 256, 0, s>>>(dst, int(dst_dt), src, int(src_dt), n);
  SL_LAUNCH_CHECK();
}
void cast_bf16(bf16* y, const float* x, size_t n, cudaStream_t s) {
  if (!n) return;
  cast_bf16_kernel<<<grid_for(n, 256), 256, 0, s>>>(y, x, n);
  SL_LAUNCH_CHECK();
}

}  // namespace cuda
}  // namespace streamline
