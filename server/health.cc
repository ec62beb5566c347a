#include "server/health.h"

#include <utility>

#include "grpcpp/health_check_service_interface.h"

namespace kiln::server {

std::string ModelHealthName(const std::string& served_name) { return "model/" + served_name; }

HealthPublisher::HealthPublisher(grpc::HealthCheckServiceInterface* health)
    : health_(health), thread_([this] { Run(); }) {
  Enqueue({kLivenessServiceName, true});
}

HealthPublisher::~HealthPublisher() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  thread_.join();
}

void HealthPublisher::SetServing(bool serving) {
  Enqueue({"", serving});
  Enqueue({kKilnServiceName, serving});
}

void HealthPublisher::ModelStateChanged(const std::string& served_name,
                                        engine::ModelState state) {
  bool ready = false;
  switch (state) {
    case engine::ModelState::kReady: ready = true; break;
    case engine::ModelState::kLoading:
    case engine::ModelState::kUnloading:
    case engine::ModelState::kEvicted:
    case engine::ModelState::kFailed: ready = false; break;
  }
  Enqueue({ModelHealthName(served_name), ready});
}

void HealthPublisher::ShutdownAll() { Enqueue({std::nullopt, false}); }

void HealthPublisher::Flush() {
  absl::MutexLock lock(&mu_);
  struct Arg {
    const uint64_t* applied;
    uint64_t target;
  } arg{&applied_, enqueued_};
  mu_.Await(absl::Condition(+[](Arg* a) { return *a->applied >= a->target; }, &arg));
}

void HealthPublisher::Enqueue(Update update) {
  absl::MutexLock lock(&mu_);
  queue_.push_back(std::move(update));
  ++enqueued_;
}

void HealthPublisher::Run() {
  while (true) {
    Update update;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](HealthPublisher* self) ABSL_NO_THREAD_SAFETY_ANALYSIS {
            return self->stop_ || !self->queue_.empty();
          },
          this));
      if (queue_.empty()) return;  // stop_ and nothing left
      update = std::move(queue_.front());
      queue_.pop_front();
    }
    // Applied without our lock: gRPC's health service takes its own.
    if (health_ != nullptr && !shut_down_) {
      if (!update.service.has_value()) {
        // Not health_->Shutdown(): that would fail "liveness" too, and a draining process is
        // alive. Every other name goes NOT_SERVING; shut_down_ freezes them.
        for (const std::string& name : known_) {
          if (name != kLivenessServiceName) health_->SetServingStatus(name, false);
        }
        shut_down_ = true;
      } else {
        known_.insert(*update.service);
        health_->SetServingStatus(*update.service, update.serving);
      }
    }
    absl::MutexLock lock(&mu_);
    ++applied_;
  }
}

}  // namespace kiln::server
