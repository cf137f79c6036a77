// Embedding lookup: rows of a [V, D] table (f32/bf16/f16, read in place) widened to f32.
#include "streamline/convert.h"
#include "streamline/ops.h"
#include "streamline/threads.h"

#include <atomic>

namespace streamline {

bool embedding_forward(float* out, const int32_t* ids, const void* table, DType wdt, size_t M, size_t V, size_t D) {
  std::atomic<bool> ok{true};
  size_t es = dtype_size(wdt);
  parallel_for(M, std::max<size_t>(1, 8192 / (D + 1)), [&](size_t b, size_t e, int) {
    for (size_t m = b; m < e; m++) {
      int32_t id = ids[m];
      if (id < 0 || size_t(id) >= V) { ok = false; continue; }
      convert_floats(out + m * D, DType::F32, static_cast<const char*>(table) + size_t(id) * D * es, wdt, D);
    }
  });
  return ok;
}

}  // namespace streamline
