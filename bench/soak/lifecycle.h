// Two small coordination helpers of the soak workload.
//
// Lifecycle: which models are being reloaded, so that an RPC on a model can tell whether a
// reload overlapped it (then NOT_FOUND / FAILED_PRECONDITION / ABORTED / UNAVAILABLE are
// documented outcomes; otherwise they are G1 failures).
//
// Canceller: one thread that calls ClientContext::TryCancel at scheduled times, for client
// cancels at random points of a stream (queued, prefill, decode) that a blocking reader
// cannot reach itself.
//
// Thread-safety: both are thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <thread>

#include <grpcpp/client_context.h>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace kiln::bench::soak {

class Lifecycle {
 public:
  struct Mark {
    std::string model;
    int64_t started = 0;  // reloads of the model started before the RPC
    bool active = false;  // a reload was in progress when the RPC started
  };
  Mark Begin(const std::string& model) const;
  // True when a reload of mark.model was in progress at Begin or started since.
  bool Overlapped(const Mark& mark) const;
  void StartReload(const std::string& model);
  void EndReload(const std::string& model);

 private:
  struct State {
    int64_t started = 0;
    bool active = false;
  };
  mutable absl::Mutex mu_;
  std::map<std::string, State> state_ ABSL_GUARDED_BY(mu_);
};

class Canceller {
 public:
  Canceller();
  ~Canceller();  // stops the thread; every scheduled context must have been removed
  Canceller(const Canceller&) = delete;
  Canceller& operator=(const Canceller&) = delete;

  // Calls ctx->TryCancel() at `when` unless Remove(id) comes first. `ctx` must stay alive
  // until Remove returns.
  int64_t Schedule(grpc::ClientContext* ctx, absl::Time when);
  // Forgets `id`; true when its cancel had already fired.
  bool Remove(int64_t id);

 private:
  struct Entry {
    grpc::ClientContext* ctx = nullptr;
    absl::Time when;
    bool fired = false;
  };
  void Loop();

  absl::Mutex mu_;
  std::map<int64_t, Entry> entries_ ABSL_GUARDED_BY(mu_);
  int64_t next_id_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t version_ ABSL_GUARDED_BY(mu_) = 0;  // bumped on every Schedule
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace kiln::bench::soak
