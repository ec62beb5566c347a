#include "bench/soak/lifecycle.h"

#include <algorithm>

#include "absl/time/clock.h"

namespace kiln::bench::soak {

Lifecycle::Mark Lifecycle::Begin(const std::string& model) const {
  absl::MutexLock lock(&mu_);
  Mark mark;
  mark.model = model;
  auto it = state_.find(model);
  if (it != state_.end()) {
    mark.started = it->second.started;
    mark.active = it->second.active;
  }
  return mark;
}

bool Lifecycle::Overlapped(const Mark& mark) const {
  absl::MutexLock lock(&mu_);
  auto it = state_.find(mark.model);
  const int64_t started = it == state_.end() ? 0 : it->second.started;
  return mark.active || started != mark.started;
}

void Lifecycle::StartReload(const std::string& model) {
  absl::MutexLock lock(&mu_);
  State& s = state_[model];
  ++s.started;
  s.active = true;
}

void Lifecycle::EndReload(const std::string& model) {
  absl::MutexLock lock(&mu_);
  state_[model].active = false;
}

Canceller::Canceller() : thread_([this] { Loop(); }) {}

Canceller::~Canceller() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  thread_.join();
}

int64_t Canceller::Schedule(grpc::ClientContext* ctx, absl::Time when) {
  absl::MutexLock lock(&mu_);
  const int64_t id = next_id_++;
  entries_[id] = Entry{ctx, when, false};
  ++version_;
  return id;
}

bool Canceller::Remove(int64_t id) {
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(id);
  if (it == entries_.end()) return false;
  const bool fired = it->second.fired;
  entries_.erase(it);
  return fired;
}

void Canceller::Loop() {
  absl::MutexLock lock(&mu_);
  while (!stop_) {
    absl::Time earliest = absl::InfiniteFuture();
    for (const auto& [id, e] : entries_) {
      if (!e.fired) earliest = std::min(earliest, e.when);
    }
    const int64_t seen = version_;
    auto changed = [this, seen]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return stop_ || version_ != seen;
    };
    // Wakes on a new schedule or stop, else at the earliest due time.
    mu_.AwaitWithDeadline(absl::Condition(&changed), earliest);
    const absl::Time now = absl::Now();
    for (auto& [id, e] : entries_) {
      if (!e.fired && e.when <= now) {
        e.ctx->TryCancel();  // thread-safe and non-blocking
        e.fired = true;
      }
    }
  }
}

}  // namespace kiln::bench::soak
