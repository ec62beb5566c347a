// HealthPublisher: feeds gRPC's default health service (grpc.health.v1) from any thread.
//
// Service names: "" (overall) and "kiln.v1.Kiln" follow SetServing(); "model/<served_name>"
// is SERVING while that model is ready, NOT_SERVING otherwise (ModelStateChanged).
// Engine observers may call ModelStateChanged() on engine threads, possibly under engine
// locks: updates are queued and applied in order on the publisher's own thread, so no
// health API (which takes gRPC locks) ever runs under an engine lock.
// "liveness" is SERVING from construction for as long as the process serves, draining
// included: it answers whether the process is wedged, never whether the engine is ready
// (the Kubernetes livenessProbe; readiness and startup use "").
// ShutdownAll() marks every other name NOT_SERVING for good (drain); later updates are
// ignored.
//
// Thread-safety: all methods are thread-safe.
#pragma once

#include <deque>
#include <optional>
#include <set>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "engine/runtime/api_types.h"

namespace grpc {
class HealthCheckServiceInterface;
}

namespace kiln::server {

inline constexpr char kKilnServiceName[] = "kiln.v1.Kiln";
inline constexpr char kLivenessServiceName[] = "liveness";

// "model/<served_name>".
std::string ModelHealthName(const std::string& served_name);

class HealthPublisher {
 public:
  // `health` is not owned and must outlive this object (the grpc::Server owns it).
  explicit HealthPublisher(grpc::HealthCheckServiceInterface* health);
  ~HealthPublisher();  // applies what is queued, then joins
  HealthPublisher(const HealthPublisher&) = delete;
  HealthPublisher& operator=(const HealthPublisher&) = delete;

  // Overall ("") and kiln.v1.Kiln.
  void SetServing(bool serving);
  void ModelStateChanged(const std::string& served_name, engine::ModelState state);
  void ShutdownAll();
  // Blocks until everything queued before the call has been applied.
  void Flush();

 private:
  struct Update {
    std::optional<std::string> service;  // nullopt = ShutdownAll
    bool serving = false;
  };

  void Enqueue(Update update);
  void Run();

  grpc::HealthCheckServiceInterface* const health_;
  absl::Mutex mu_;
  std::deque<Update> queue_ ABSL_GUARDED_BY(mu_);
  uint64_t enqueued_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t applied_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool shut_down_ = false;  // publisher thread only
  std::set<std::string> known_;  // names set so far; publisher thread only
  std::thread thread_;
};

}  // namespace kiln::server
