// Embedding lookup: one block per row, threads across the hidden dimension.
#include "embedding.cuh"

namespace streamline {
namespace cuda {

namespace {
__global__ void embedding_kernel(float* out, const int32_t* ids, const void* table, int wdt, size_t M, size_t V,
                                 size_t D, int* bad) {
  for (size_t m = blockIdx.x; m < M; m += gridDim.x) {
    const int32_t id = ids[m];
    if (id < 0 || size_t(id) >= V) {
      if (threadIdx.x == 0 && bad) atomicAdd(bad, 1);
      continue;
    }
    const size_t base = size_t(id) * D;
    for (size_t d = threadIdx.x; d < D; d += blockDim.x) out[m * D + d] = wload(table, wdt, base + d);
  }
}
}  // namespace

void embedding_forward_async(float* out, const int32_t* ids, const void* table, DType wdt, size_t M, size_t V,
                             size_t D, int* bad, cudaStream_t s) {
  if (M == 0 || D == 0) return;
  int grid = int(M < 65535 ? M : 65535);
  embedding_kernel<<<grid, 256, 0, s>>>(out, ids, table, int(wdt), M, V, D, bad);
  SL_LAUNCH_CHECK();
}

bool embedding_forward(float* out, const int32_t* ids, const void* table, DType wdt, size_t M, size_t V, size_t D,
                       cudaStream_t s) {
  int* bad = static_cast<int*>(device_alloc(sizeof(int)));
  int h = 0;
  try {
    SL_CUDA_CHECK(cudaMemsetAsync(bad, 0, sizeof(int), s));
    embedding_forward_async(out, ids, table, wdt, M, V, D, bad, s);
    SL_CUDA_CHECK(cudaMemcpyAsync(&h, bad, sizeof(int), cudaMemcpyDeviceToHost, s));
    SL_CUDA_CHECK(cudaStreamSynchronize(s));
  } catch (...) {
    device_free(bad, sizeof(int));
    throw;
  }
  device_free(bad, sizeof(int));
  return h == 0;
}

}  // namespace cuda
}  // namespace streamline
