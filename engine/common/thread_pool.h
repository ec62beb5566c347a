// ThreadPool: a fixed set of worker threads running submitted closures in FIFO order. Used
// for the engine's control work (model and adapter loads, other slow I/O) so gRPC threads
// and step loops never block on it.
//
// Thread-safety: Submit may be called from any thread. The destructor stops accepting work,
// runs what was already queued, and joins the workers.
#pragma once

#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace kiln {

class ThreadPool {
 public:
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  // Queues `task`. Returns false (and drops it) once the pool is shutting down.
  bool Submit(std::function<void()> task);

 private:
  void WorkerLoop();

  absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> workers_;
};

}  // namespace kiln
