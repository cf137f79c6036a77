// A small persistent thread pool shared by all kernels. parallel_for splits [0, n) into contiguous chunks;
// the calling thread takes part. Calls from different threads are serialised, so two async jobs never
// oversubscribe the cores. STREAMLINE_NUM_THREADS overrides the thread count (default: hardware threads).
#pragma once
#include <cstddef>
#include <functional>

namespace streamline {

int num_threads();

// fn(begin, end, thread_index) is called on disjoint chunks covering [0, n). grain is the minimum chunk size.
void parallel_for(size_t n, size_t grain, const std::function<void(size_t, size_t, int)>& fn);

}  // namespace streamline
