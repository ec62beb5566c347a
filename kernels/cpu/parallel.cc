#include "kernels/cpu/parallel.h"

#include <algorithm>
#include <chrono>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace kiln::kernels::cpu {
namespace {

constexpr int kChunkBits = 16;
constexpr uint64_t kChunkMask = (uint64_t{1} << kChunkBits) - 1;

inline void CpuRelax() {
#if defined(__x86_64__)
  _mm_pause();
#else
  std::this_thread::yield();
#endif
}

}  // namespace

ParallelRunner::ParallelRunner(int num_threads, int spin_us)
    : num_threads_(std::clamp(num_threads, 1, kMaxThreads)), spin_us_(std::max(0, spin_us)) {
  for (int w = 1; w < num_threads_; ++w) workers_.emplace_back([this, w] { WorkerLoop(w); });
}

ParallelRunner::~ParallelRunner() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_.store(true, std::memory_order_release);
  }
  start_cv_.notify_all();
  for (std::thread& t : workers_) t.join();
}

template <typename Done>
bool ParallelRunner::Spin(const Done& done) const {
  if (spin_us_ == 0) return done();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::microseconds(spin_us_);
  for (;;) {
    // Look at the clock only every 64 polls: a poll is a few ns, a clock read tens.
    for (int i = 0; i < 64; ++i) {
      if (done()) return true;
      CpuRelax();
    }
    if (std::chrono::steady_clock::now() >= deadline) return done();
  }
}

void ParallelRunner::For(int64_t n, int64_t min_chunk, const RangeFn& fn) {
  if (n <= 0) return;
  const int64_t by_size = std::max<int64_t>(1, n / std::max<int64_t>(1, min_chunk));
  const int chunks = static_cast<int>(std::min<int64_t>(num_threads_, by_size));
  if (chunks == 1) {
    fn(0, n, 0);
    return;
  }
  std::lock_guard<std::mutex> call_lock(call_mu_);
  fn_ = &fn;
  n_ = n;
  pending_.store(chunks - 1, std::memory_order_relaxed);
  bool wake;
  {
    // Under mu_ so that a worker going to sleep either sees this ticket or is counted.
    std::lock_guard<std::mutex> lock(mu_);
    const uint64_t seq = (ticket_.load(std::memory_order_relaxed) >> kChunkBits) + 1;
    ticket_.store((seq << kChunkBits) | static_cast<uint64_t>(chunks), std::memory_order_release);
    wake = sleeping_workers_ > 0;
  }
  if (wake) start_cv_.notify_all();
  fn(0, n / chunks, 0);
  const auto all_done = [this] { return pending_.load(std::memory_order_acquire) == 0; };
  if (!Spin(all_done)) {
    std::unique_lock<std::mutex> lock(mu_);
    caller_sleeping_ = true;
    done_cv_.wait(lock, all_done);
    caller_sleeping_ = false;
  }
  fn_ = nullptr;
}

void ParallelRunner::WorkerLoop(int worker) {
  uint64_t seen_seq = 0;
  for (;;) {
    uint64_t ticket = 0;
    const auto has_news = [&] {
      ticket = ticket_.load(std::memory_order_acquire);
      return stopping_.load(std::memory_order_acquire) || (ticket >> kChunkBits) != seen_seq;
    };
    if (!Spin(has_news)) {
      std::unique_lock<std::mutex> lock(mu_);
      ++sleeping_workers_;
      start_cv_.wait(lock, has_news);
      --sleeping_workers_;
    }
    if (stopping_.load(std::memory_order_acquire)) return;
    seen_seq = ticket >> kChunkBits;
    const int chunks = static_cast<int>(ticket & kChunkMask);
    if (worker >= chunks) continue;  // this job uses fewer chunks than threads
    // Safe to read: the caller rewrites fn_ and n_ only after every participant is done.
    const RangeFn& fn = *fn_;
    fn(n_ * worker / chunks, n_ * (worker + 1) / chunks, worker);
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard<std::mutex> lock(mu_);
      if (caller_sleeping_) done_cv_.notify_one();
    }
  }
}

}  // namespace kiln::kernels::cpu
