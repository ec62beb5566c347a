// ParallelRunner: a fixed set of worker threads that split a range [0, n) into contiguous
// chunks, one per thread, for every CPU backend op; GEMMs too, as single-threaded OpenBLAS
// calls over slices of W (ParallelSgemmNT).
// The calling thread runs chunk 0, so num_threads == 1 means "no extra threads".
//
// Chunking is static (chunk i = [i*n/T, (i+1)*n/T)), so which worker computes an element never
// changes the arithmetic: results are identical for any num_threads.
//
// Thread-safety: For() may be called from several threads; calls are serialized by a mutex.
// fn must not call For() on the same runner (it would deadlock).
#pragma once

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

  explicit ParallelRunner(int num_threads);
  ~ParallelRunner();
  ParallelRunner(const ParallelRunner&) = delete;
  ParallelRunner& operator=(const ParallelRunner&) = delete;

  int num_threads() const { return num_threads_; }

  // Runs fn over [0, n). Uses fewer chunks when n / min_chunk is small (a tiny op is not worth
  // waking threads for). Returns when every chunk is done.
  void For(int64_t n, int64_t min_chunk, const RangeFn& fn);

 private:
  void WorkerLoop(int worker);

  const int num_threads_;
  std::mutex call_mu_;  // serializes For() callers
  std::mutex mu_;
  std::condition_variable start_cv_;
  std::condition_variable done_cv_;
  uint64_t generation_ = 0;  // guarded by mu_
  int pending_ = 0;          // guarded by mu_
  bool stopping_ = false;    // guarded by mu_
  const RangeFn* fn_ = nullptr;
  int64_t n_ = 0;
  int chunks_ = 0;
  std::vector<std::thread> workers_;
};

}  // namespace kiln::kernels::cpu
