// Error reporting and tracked device allocations for the CUDA backend.
#include <atomic>
#include <cstdio>

#include "common.cuh"

namespace streamline {
namespace cuda {

void throw_cuda(cudaError_t e, const char* what, const char* file, int line) {
  const char* base = file;
  for (const char* p = file; *p; p++)
    if (*p == '/') base = p + 1;
  char buf[512];
  std::snprintf(buf, sizeof buf, "CUDA error %d (%s: %s) in %s at %s:%d", int(e), cudaGetErrorName(e),
                cudaGetErrorString(e), what, base, line);
  throw CudaError(buf);
}

namespace {
std::atomic<size_t> g_current{0}, g_peak{0};
}

void* device_alloc(size_t bytes) {
  if (bytes == 0) return nullptr;
  void* p = nullptr;
  cudaError_t e = cudaMalloc(&p, bytes);
  if (e != cudaSuccess) {
    char buf[160];
    std::snprintf(buf, sizeof buf, "cudaMalloc of %zu bytes failed (%zu bytes held by streamline)", bytes,
                  g_current.load());
    cudaGetLastError();  // clear the sticky-free error so later calls are not blamed
    throw CudaError(std::string(buf) + ": " + cudaGetErrorString(e));
  }
  size_t now = g_current.fetch_add(bytes) + bytes;
  size_t peak = g_peak.load();
  while (now > peak && !g_peak.compare_exchange_weak(peak, now)) {
  }
  return p;
}

void device_free(void* p, size_t bytes) {
  if (!p) return;
  cudaFree(p);
  g_current.fetch_sub(bytes);
}

size_t device_bytes_current() { return g_current.load(); }
size_t device_bytes_peak() { return g_peak.load(); }
void device_bytes_reset_peak() { g_peak.store(g_current.load()); }

int sm_count() {
  static int n = 0;
  if (n == 0) {
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess)
      n = 1;
  }
  return n;
}

int grid_for(size_t n, int block) {
  size_t want = (n + size_t(block) - 1) / size_t(block);
  size_t cap = size_t(sm_count()) * 8;
  if (want > cap) want = cap;
  return want == 0 ? 1 : int(want);
}

}  // namespace cuda
}  // namespace streamline
