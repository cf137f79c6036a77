// The scratch cache of scratch.h: freed blocks by exact size, under one mutex (allocations are a few per kernel
// call, never per element).
#include "streamline/scratch.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <mutex>
#include <vector>

namespace streamline {

namespace {

constexpr size_t kMinCached = size_t(1) << 20;  // smaller blocks go straight to malloc/free
constexpr size_t kAlign = 64;

struct Cache {
  std::mutex mu;
  std::map<size_t, std::vector<void*>> free;  // by block size (rounded)
  size_t bytes = 0;
};
Cache& cache() {
  static Cache* c = new Cache();  // never destroyed: blocks freed after static destruction still find it
  return *c;
}

size_t cap_bytes() {
  static const size_t cap = [] {
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    const size_t quarter = pages > 0 && page > 0 ? size_t(pages) * size_t(page) / 4 : size_t(1) << 30;
    return std::min(quarter, size_t(8) << 30);
  }();
  return cap;
}

size_t rounded(size_t bytes) { return (std::max<size_t>(bytes, 1) + kAlign - 1) / kAlign * kAlign; }

}  // namespace

void* scratch_alloc(size_t bytes) {
  const size_t n = rounded(bytes);
  if (n >= kMinCached) {
    Cache& c = cache();
    std::lock_guard<std::mutex> lk(c.mu);
    auto it = c.free.find(n);
    if (it != c.free.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      c.bytes -= n;
      return p;
    }
  }
  void* p = std::aligned_alloc(kAlign, n);
  if (!p) throw std::bad_alloc();
  return p;
}

void scratch_free(void* p, size_t bytes) {
  if (!p) return;
  const size_t n = rounded(bytes);
  if (n >= kMinCached) {
    Cache& c = cache();
    std::lock_guard<std::mutex> lk(c.mu);
    if (c.bytes + n <= cap_bytes()) {
      c.free[n].push_back(p);
      c.bytes += n;
      return;
    }
  }
  std::free(p);
}

size_t scratch_trim() {
  Cache& c = cache();
  std::map<size_t, std::vector<void*>> blocks;
  size_t bytes = 0;
  {
    std::lock_guard<std::mutex> lk(c.mu);
    blocks.swap(c.free);
    bytes = c.bytes;
    c.bytes = 0;
  }
  for (auto& [n, ps] : blocks)
    for (void* p : ps) std::free(p);
  return bytes;
}

size_t scratch_cached_bytes() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lk(c.mu);
  return c.bytes;
}

}  // namespace streamline
