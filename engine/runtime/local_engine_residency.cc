// LocalEngine, residency: LRU eviction of idle unpinned models when a load needs a slot or
// bytes, keep-alive expiry, and the transparent reload of an evicted model on Generate.
// See local_engine.h for the policy.
#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "engine/runtime/local_engine.h"

namespace kiln::engine {
namespace {

// How often idle models are checked against their keep-alive.
constexpr absl::Duration kReapInterval = absl::Milliseconds(100);

}  // namespace

std::optional<absl::Duration> LocalEngine::KeepAlive(const Entry& entry) const {
  const int64_t ms = entry.options.keep_alive_ms != 0 ? entry.options.keep_alive_ms
                                                      : options_.limits.default_keep_alive_ms;
  if (ms <= 0) return std::nullopt;
  return absl::Milliseconds(ms);
}

std::shared_ptr<ModelRuntime> LocalEngine::DetachIfIdleLocked(Entry& entry, const char* reason) {
  if (entry.info.state != ModelState::kReady || entry.runtime == nullptr || entry.options.pin) return nullptr;
  // Atomically "no request in flight, and none may start": a Generate racing with this sees
  // UNAVAILABLE from Submit and queues for a reload instead.
  if (!entry.runtime->TryRetire(absl::UnavailableError("model was evicted"))) return nullptr;
  std::shared_ptr<ModelRuntime> runtime = std::move(entry.runtime);
  entry.info.state = ModelState::kEvicted;
  PublishModelCountLocked();
  metrics_.ModelEvicted(reason);
  return runtime;
}

LocalEngine::Victim LocalEngine::DetachLruVictimLocked(const std::string& keep, const char* reason) {
  std::vector<std::pair<absl::Time, std::string>> order;
  for (const auto& [name, entry] : models_) {
    if (name != keep && entry.info.state == ModelState::kReady && !entry.options.pin) {
      order.emplace_back(entry.last_used, name);
    }
  }
  std::sort(order.begin(), order.end());
  for (const auto& [used, name] : order) {
    if (std::shared_ptr<ModelRuntime> runtime = DetachIfIdleLocked(models_.at(name), reason)) {
      return Victim{name, std::move(runtime)};
    }
  }
  return Victim{};
}

void LocalEngine::FinishEviction(Victim victim) {
  if (victim.runtime == nullptr) return;
  victim.runtime->Stop(absl::UnavailableError("model was evicted"));
  victim.runtime.reset();  // the last reference: its memory and ledger bytes go back here
  metrics_.RemoveModel(victim.name);
  Notify(victim.name, ModelState::kEvicted);
}

absl::StatusOr<LoadedModel> LocalEngine::LoadMakingRoom(
    const LoadModelOptions& options, const std::string& name, const std::shared_ptr<AdapterDirectory>& directory,
    const std::function<void(const LoadProgressEvent&)>& progress) {
  while (true) {
    absl::StatusOr<LoadedModel> loaded = LoadWithAdapters(options, name, directory, progress);
    if (loaded.ok() || loaded.status().code() != absl::StatusCode::kResourceExhausted) return loaded;
    Victim victim;
    {
      absl::MutexLock lock(&mu_);
      victim = DetachLruVictimLocked(name, "memory");
    }
    if (victim.runtime == nullptr) return loaded;  // nothing idle left to evict: the real error
    FinishEviction(std::move(victim));
  }
}

std::shared_ptr<GenerateStream> LocalEngine::QueueForReloadLocked(Entry& entry, const std::string& name,
                                                                  GenerateRequest request) {
  auto stream = std::make_shared<GenerateStream>(
      static_cast<size_t>(std::max(1, options_.limits.max_stream_buffer_events)));
  entry.pending.push_back({std::move(request), stream});
  entry.last_used = absl::Now();
  if (!entry.reloading) {
    entry.reloading = true;
    entry.info.state = ModelState::kLoading;
    if (!control_.Submit([this, name] { RunReload(name); })) {
      entry.reloading = false;
      entry.info.state = ModelState::kEvicted;
      for (PendingRequest& p : entry.pending) p.stream->Finish(absl::UnavailableError("server is shutting down"));
      entry.pending.clear();
    }
  }
  return stream;
}

void LocalEngine::RunReload(const std::string& name) {
  LoadModelOptions options;
  std::shared_ptr<AdapterDirectory> directory;
  Victim victim;
  {
    absl::MutexLock lock(&mu_);
    auto it = models_.find(name);
    if (it == models_.end() || !it->second.reloading) return;
    options = it->second.options;
    directory = it->second.adapters;
    int resident = 0;
    for (const auto& [n, e] : models_) {
      resident += n != name && (e.info.state == ModelState::kReady || e.info.state == ModelState::kLoading);
    }
    if (resident >= options_.limits.max_loaded_models) victim = DetachLruVictimLocked(name, "count");
  }
  FinishEviction(std::move(victim));
  Notify(name, ModelState::kLoading);
  const absl::Time start = absl::Now();
  absl::StatusOr<LoadedModel> loaded = LoadMakingRoom(options, name, directory, nullptr);
  metrics_.ModelReloaded(loaded.ok());
  std::shared_ptr<ModelRuntime> runtime;
  if (loaded.ok()) {
    loaded->info.served_name = name;
    loaded->info.load_duration_ms = absl::ToInt64Milliseconds(absl::Now() - start);
    runtime = std::make_shared<ModelRuntime>(std::move(loaded->parts), options_.limits, metrics_.ForModel(name));
  }
  std::vector<PendingRequest> failed;  // waiting requests of a reload that failed
  std::vector<RefusedRequest> refused;
  {
    absl::MutexLock lock(&mu_);
    auto it = models_.find(name);
    if (it == models_.end() || draining_.load()) {  // unloaded or shut down meanwhile
      if (runtime) runtime->Stop(absl::UnavailableError("model was unloaded"));
      return;
    }
    Entry& e = it->second;
    e.reloading = false;
    if (runtime) {
      refused = InstallRuntimeLocked(e, runtime, loaded->info);
    } else {
      e.info.state = ModelState::kEvicted;  // still registered: the next Generate retries
      e.info.error = std::string(loaded.status().message());
      failed = std::move(e.pending);
      e.pending.clear();
    }
  }
  if (!runtime) {
    Notify(name, ModelState::kEvicted);
    const absl::Status status(loaded.status().code(),
                              absl::StrCat("model '", name, "' could not be reloaded: ", loaded.status().message()));
    for (PendingRequest& p : failed) p.stream->Finish(status);
    return;
  }
  for (auto& [stream, status] : refused) stream->Finish(status);
  metrics_.SetModelWeightBytes(name, loaded->info.weight_bytes);
  Notify(name, ModelState::kReady);
}

void LocalEngine::EvictExpired() {
  const absl::Time now = absl::Now();
  std::vector<Victim> victims;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [name, entry] : models_) {
      const std::optional<absl::Duration> keep_alive = KeepAlive(entry);
      if (!keep_alive.has_value() || now - entry.last_used < *keep_alive) continue;
      if (std::shared_ptr<ModelRuntime> runtime = DetachIfIdleLocked(entry, "idle")) {
        victims.push_back(Victim{name, std::move(runtime)});
      }
    }
  }
  for (Victim& v : victims) FinishEviction(std::move(v));
}

void LocalEngine::ReaperLoop() {
  absl::MutexLock lock(&reaper_mu_);
  while (!reaper_stop_) {
    reaper_mu_.AwaitWithTimeout(absl::Condition(&reaper_stop_), kReapInterval);
    if (reaper_stop_) break;
    reaper_mu_.Unlock();
    EvictExpired();
    reaper_mu_.Lock();
  }
}

}  // namespace kiln::engine
