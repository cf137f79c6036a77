// Persistent worker pool. The pool object is created on first use and intentionally never destroyed:
// joining threads from a static destructor at process exit is what std::terminate punishes.
#include "streamline/threads.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

namespace streamline {

namespace {

class Pool {
 public:
  explicit Pool(int n) : n_(n) {
    for (int i = 1; i < n_; i++) std::thread([this, i] { worker(i); }).detach();
  }
  int size() const { return n_; }

  void run(size_t n, size_t grain, const std::function<void(size_t, size_t, int)>& fn) {
    // A nested call (from inside a chunk) runs inline rather than deadlocking on the pool.
    if (in_pool_) { fn(0, n, 0); return; }
    std::lock_guard<std::mutex> serial(call_mu_);
    struct Flag { Flag() { in_pool_ = true; } ~Flag() { in_pool_ = false; } } flag;
    size_t chunks = std::min<size_t>(size_t(n_), (n + grain - 1) / std::max<size_t>(grain, 1));
    if (chunks <= 1) { fn(0, n, 0); return; }
    {
      std::lock_guard<std::mutex> lk(mu_);
      fn_ = &fn; total_ = n; chunks_ = chunks; pending_ = int(chunks) - 1; generation_++;
    }
    cv_.notify_all();
    run_chunk(0);
    std::unique_lock<std::mutex> lk(mu_);
    done_cv_.wait(lk, [this] { return pending_ == 0; });
    fn_ = nullptr;
  }

 private:
  void run_chunk(size_t c) {
    size_t per = total_ / chunks_, extra = total_ % chunks_;
    size_t b = c * per + std::min(c, extra);
    size_t e = b + per + (c < extra ? 1 : 0);
    if (b < e) (*fn_)(b, e, int(c));
  }
  void worker(int index) {
    in_pool_ = true;
    uint64_t seen = 0;
    for (;;) {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] { return generation_ != seen; });
      seen = generation_;
      if (size_t(index) >= chunks_) continue;
      lk.unlock();
      run_chunk(size_t(index));
      lk.lock();
      if (--pending_ == 0) done_cv_.notify_one();
    }
  }

  static thread_local bool in_pool_;
  int n_;
  std::mutex call_mu_, mu_;
  std::condition_variable cv_, done_cv_;
  const std::function<void(size_t, size_t, int)>* fn_ = nullptr;
  size_t total_ = 0, chunks_ = 0;
  int pending_ = 0;
  uint64_t generation_ = 0;
};

thread_local bool Pool::in_pool_ = false;

int configured_threads() {
  if (const char* s = std::getenv("STREAMLINE_NUM_THREADS")) {
    int v = std::atoi(s);
    if (v > 0) return std::min(v, 256);
  }
  unsigned hw = std::thread::hardware_concurrency();
  return hw ? int(hw) : 1;
}

Pool& pool() {
  static Pool* p = new Pool(configured_threads());
  return *p;
}

}  // namespace

int num_threads() { return pool().size(); }

void parallel_for(size_t n, size_t grain, const std::function<void(size_t, size_t, int)>& fn) {
  if (n == 0) return;
  pool().run(n, grain == 0 ? 1 : grain, fn);
}

}  // namespace streamline
