// EventStream<T>: the one-way channel from the engine (producer) to a gRPC reactor
// (consumer) for a streaming RPC. It is how Generate tokens and LoadModel progress cross
// threads (DESIGN.md §2-3).
//
// Contract
// - The producer Push()es events and calls Finish(status) exactly once; later Push/Finish
//   calls are ignored (Finish returns false), so racing terminal paths cannot double-finish.
// - The consumer keeps one write in flight: it calls Drain(), which hands over every event
//   that piled up (so they can be coalesced into one message) plus the final status once all
//   events are consumed. When Drain() returns nothing, the stream arms its ready callback and
//   calls it exactly once, on the producer's thread, as soon as something new arrives.
// - A non-OK Finish while the buffer is full also calls the abort callback (if set), whether or
//   not the ready callback is armed: a consumer stuck in a write that never completes (a client
//   that stopped reading at the HTTP/2 level, so nothing was drained) learns that the producer
//   gave up, and can cancel the write. A consumer that keeps draining never sees it.
// - The buffer is bounded: Push() returns false when `max_buffered` events are waiting (the
//   client is not reading); the producer then decides (e.g. cancel with RESOURCE_EXHAUSTED).
// - Cancel() is the consumer saying the client went away; the producer polls cancelled()
//   (e.g. once per step) and finishes the stream.
//
// Thread-safety: all methods are thread-safe. The ready callback runs without the lock held.
#pragma once

#include <cstddef>
#include <deque>
#include <functional>
#include <optional>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"

namespace kiln::engine {

template <typename T>
class EventStream {
 public:
  struct Batch {
    std::vector<T> events;
    // Set when the producer has finished and every event has been handed over.
    std::optional<absl::Status> final_status;
    bool empty() const { return events.empty() && !final_status.has_value(); }
  };

  explicit EventStream(size_t max_buffered = 4096) : max_buffered_(max_buffered) {}
  EventStream(const EventStream&) = delete;
  EventStream& operator=(const EventStream&) = delete;

  // Producer side. Returns false if finished already or the buffer is full.
  bool Push(T event) {
    std::function<void()> notify;
    {
      absl::MutexLock lock(&mu_);
      if (finished_ || buffer_.size() >= max_buffered_) return false;
      buffer_.push_back(std::move(event));
      notify = TakeArmedCallbackLocked();
    }
    if (notify) notify();
    return true;
  }

  // Producer side. The first call wins; returns false on later calls.
  bool Finish(absl::Status status) {
    std::function<void()> notify, abort;
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return false;
      finished_ = true;
      final_status_ = std::move(status);
      notify = TakeArmedCallbackLocked();
      if (!final_status_.ok() && buffer_.size() >= max_buffered_) abort = abort_callback_;
    }
    if (notify) notify();
    if (abort) abort();
    return true;
  }

  bool cancelled() const {
    absl::MutexLock lock(&mu_);
    return cancelled_;
  }
  bool finished() const {
    absl::MutexLock lock(&mu_);
    return finished_;
  }

  // Consumer side. Set once, before the first Drain().
  void SetReadyCallback(std::function<void()> callback) {
    absl::MutexLock lock(&mu_);
    ready_callback_ = std::move(callback);
  }

  // Consumer side. Set once, before the first Drain(): called on the producer's thread, without
  // the lock, when Finish gets a non-OK status while the buffer is full (see the contract).
  void SetAbortCallback(std::function<void()> callback) {
    absl::MutexLock lock(&mu_);
    abort_callback_ = std::move(callback);
  }

  // Consumer side: takes what is buffered. An empty batch arms the ready callback.
  Batch Drain() {
    absl::MutexLock lock(&mu_);
    Batch batch;
    batch.events.assign(std::make_move_iterator(buffer_.begin()),
                        std::make_move_iterator(buffer_.end()));
    buffer_.clear();
    if (finished_ && !final_delivered_) {
      batch.final_status = final_status_;
      final_delivered_ = true;
    }
    armed_ = batch.empty() && !final_delivered_;
    return batch;
  }

  // Consumer side: the client is gone. Drops buffered events; the producer still Finishes.
  void Cancel() {
    absl::MutexLock lock(&mu_);
    cancelled_ = true;
    buffer_.clear();
  }

  size_t buffered() const {
    absl::MutexLock lock(&mu_);
    return buffer_.size();
  }

 private:
  std::function<void()> TakeArmedCallbackLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!armed_) return nullptr;
    armed_ = false;
    return ready_callback_;
  }

  const size_t max_buffered_;
  mutable absl::Mutex mu_;
  std::deque<T> buffer_ ABSL_GUARDED_BY(mu_);
  std::function<void()> ready_callback_ ABSL_GUARDED_BY(mu_);
  std::function<void()> abort_callback_ ABSL_GUARDED_BY(mu_);
  bool armed_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool final_delivered_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status final_status_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kiln::engine
