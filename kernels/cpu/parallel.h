// ParallelRunner: a fixed set of worker threads that split a range [0, n) into contiguous
// chunks, one per thread, for every CPU backend op; GEMMs too, as single-threaded OpenBLAS
// calls over slices of W (ParallelSgemmNT).
// The calling thread runs chunk 0, so num_threads == 1 means "no extra threads".
//
// Chunking is static (chunk i = [i*n/T, (i+1)*n/T)), so which worker computes an element never
// changes the arithmetic: results are identical for any num_threads.
//
// Waiting: a decode step is ~170 For() calls of 20-200 us each, and a condition-variable
// hand-off measured ~45 us per call on the 2-core VM (a futex wake is an IPI, i.e. a VM
// exit), a third of a batch-1 decode step. So an idle worker first spins on the job ticket
// for up to spin_us, and only then sleeps on the condition variable; the caller waits for
// the workers the same way. The spin is bounded, so an idle engine costs no CPU, and it is
// ours alone: OpenBLAS runs single-threaded (its own spinning workers were the problem that
// ParallelSgemmNT removed).
//
// Thread-safety: For() may be called from several threads; calls are serialized by a mutex.
// fn must not call For() on the same runner (it would deadlock).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace kiln::kernels::cpu {

class ParallelRunner {
 public:
  // fn(begin, end, worker) with worker in [0, num_threads()).
  using RangeFn = std::function<void(int64_t begin, int64_t end, int worker)>;

  // How long a waiting thread spins before it sleeps. Long enough to bridge the gap between
  // two ops of one forward pass, short enough that the gap between decode steps sleeps.
  static constexpr int kDefaultSpinUs = 50;
  static constexpr int kMaxThreads = 1024;

  // num_threads is clamped to [1, kMaxThreads]; spin_us = 0 always sleeps.
  explicit ParallelRunner(int num_threads, int spin_us = kDefaultSpinUs);
  ~ParallelRunner();
  ParallelRunner(const ParallelRunner&) = delete;
  ParallelRunner& operator=(const ParallelRunner&) = delete;

  int num_threads() const { return num_threads_; }

  // Runs fn over [0, n). Uses fewer chunks when n / min_chunk is small (a tiny op is not worth
  // waking threads for). Returns when every chunk is done.
  void For(int64_t n, int64_t min_chunk, const RangeFn& fn);

 private:
  void WorkerLoop(int worker);
  // Spins until done() or spin_us_ has passed; returns done().
  template <typename Done>
  bool Spin(const Done& done) const;

  const int num_threads_;
  const int spin_us_;
  std::mutex call_mu_;  // serializes For() callers
  // A job's ticket: (sequence number << 16) | chunks. Published with release after fn_ and
  // n_ are written, so a worker that acquires a new sequence reads that job's fn_ and n_; a
  // worker whose index is >= chunks skips the job without reading them, so the next For()
  // may rewrite them as soon as the participating workers are done.
  std::atomic<uint64_t> ticket_{0};
  std::atomic<int> pending_{0};  // participating workers not yet done with the current job
  std::atomic<bool> stopping_{false};
  const RangeFn* fn_ = nullptr;
  int64_t n_ = 0;
  // The sleep side: a sleeper re-checks its condition under mu_, and whoever changes that
  // condition takes mu_ before notifying, so no wake-up is lost.
  std::mutex mu_;
  std::condition_variable start_cv_;
  std::condition_variable done_cv_;
  int sleeping_workers_ = 0;     // guarded by mu_
  bool caller_sleeping_ = false;  // guarded by mu_
  std::vector<std::thread> workers_;
};

}  // namespace kiln::kernels::cpu
