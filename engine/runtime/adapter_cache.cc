#include "engine/runtime/adapter_cache.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"

namespace kiln::engine {

AdapterCache::Handle& AdapterCache::Handle::operator=(Handle&& other) noexcept {
  if (this != &other) {
    Reset();
    cache_ = std::exchange(other.cache_, nullptr);
    id_ = std::move(other.id_);
    generation_ = other.generation_;
    device_ = std::move(other.device_);
  }
  return *this;
}

void AdapterCache::Handle::Reset() {
  if (cache_ != nullptr) std::exchange(cache_, nullptr)->Release(id_, generation_);
  device_.reset();
}

AdapterCache::AdapterCache(AdapterCacheOptions options, ReadFn read, UploadFn upload)
    : options_(options), read_(std::move(read)), upload_(std::move(upload)) {}

AdapterCache::~AdapterCache() {
  {
    absl::MutexLock lock(&mu_);
    shutting_down_ = true;
  }
  // control_ is destroyed after this body: queued loads see shutting_down_ and cancel.
}

std::optional<AdapterCache::Handle> AdapterCache::Acquire(const std::string& id, Callback on_ready) {
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(id);
  if (it != entries_.end() && it->second.tier == AdapterTier::kDevice) {
    return MakeHandle(id, it->second);
  }
  if (it != entries_.end() && it->second.tier == AdapterTier::kLoading) {
    it->second.waiters.push_back(std::move(on_ready));
    return std::nullopt;
  }
  // Absent, or on the host tier: (re)load. A host-tier entry keeps its parsed weights.
  Entry& entry = entries_[id];
  if (entry.tier == AdapterTier::kHost) host_lru_.remove(id);
  entry.tier = AdapterTier::kLoading;
  entry.generation = next_generation_++;
  entry.waiters.push_back(std::move(on_ready));
  const uint64_t generation = entry.generation;
  if (!control_.Submit([this, id, generation] { Load(id, generation); })) {
    // Unreachable while the cache is alive (the pool only stops in our destructor).
    entry.waiters.clear();
    entries_.erase(id);
  }
  return std::nullopt;
}

absl::StatusOr<AdapterCache::Handle> AdapterCache::AcquireAndWait(const std::string& id) {
  absl::Notification done;
  absl::StatusOr<Handle> result = absl::UnknownError("adapter load did not finish");
  std::optional<Handle> now = Acquire(id, [&](absl::StatusOr<Handle> h) {
    result = std::move(h);
    done.Notify();
  });
  if (now.has_value()) return std::move(*now);
  done.WaitForNotification();
  return result;
}

void AdapterCache::Load(const std::string& id, uint64_t generation) {
  std::shared_ptr<const AdapterPayload> host;
  {
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(id);
    if (it == entries_.end() || it->second.generation != generation) return;
    host = it->second.host;
  }
  const absl::Time start = absl::Now();
  bool from_host = host != nullptr;
  absl::Status status = absl::OkStatus();
  std::shared_ptr<const AdapterPayload> device;
  {
    absl::MutexLock lock(&mu_);
    if (shutting_down_) status = absl::CancelledError(absl::StrCat("adapter ", id, ": the model is shutting down"));
  }
  if (status.ok() && host == nullptr) {
    auto read = read_(id);
    if (read.ok()) {
      host = *std::move(read);
    } else {
      status = read.status();
    }
  }
  if (status.ok()) {
    absl::MutexLock lock(&mu_);
    status = MakeDeviceRoom(id, host->bytes());
  }
  if (status.ok()) {
    auto uploaded = upload_(id, *host);
    if (uploaded.ok()) {
      device = *std::move(uploaded);
    } else {
      status = uploaded.status();
    }
  }

  std::vector<Callback> waiters;
  std::vector<absl::StatusOr<Handle>> results;
  {
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(id);
    if (it == entries_.end() || it->second.generation != generation) return;  // unloaded meanwhile
    Entry& entry = it->second;
    waiters = std::move(entry.waiters);
    entry.waiters.clear();
    if (status.ok() && shutting_down_) {
      status = absl::CancelledError(absl::StrCat("adapter ", id, ": the model is shutting down"));
    }
    if (status.ok()) {
      // Room may have been taken by a concurrent upload; re-check now that the size is exact.
      status = MakeDeviceRoom(id, device->bytes());
    }
    if (!status.ok()) {
      ++counters_.load_failures;
      if (entry.host != nullptr) {
        host_bytes_ -= entry.host->bytes();
      }
      entries_.erase(it);
      for (size_t i = 0; i < waiters.size(); ++i) results.emplace_back(status);
    } else {
      ++counters_.loads;
      if (from_host) ++counters_.host_hits;
      counters_.total_load_time += absl::Now() - start;
      if (entry.host == nullptr) {
        entry.host = host;
        host_bytes_ += host->bytes();
      }
      entry.device = std::move(device);
      entry.tier = AdapterTier::kDevice;
      device_bytes_ += entry.device->bytes();
      lru_.push_front(id);
      entry.lru = lru_.begin();
      for (size_t i = 0; i < waiters.size(); ++i) results.emplace_back(MakeHandle(id, entry));
      TrimHostTier();
    }
  }
  version_.fetch_add(1, std::memory_order_release);
  if (options_.on_load) options_.on_load(status.ok(), absl::Now() - start);
  for (size_t i = 0; i < waiters.size(); ++i) waiters[i](std::move(results[i]));
}

absl::Status AdapterCache::MakeDeviceRoom(const std::string& for_id, size_t bytes) {
  auto device_count = [&] { return static_cast<int32_t>(lru_.size()); };
  auto fits = [&] {
    return device_bytes_ + bytes <= options_.max_device_bytes &&
           device_count() + 1 <= options_.max_device_adapters;
  };
  if (bytes > options_.max_device_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat("adapter ", for_id, " needs ", bytes,
                                                     " device bytes; the adapter budget is ",
                                                     options_.max_device_bytes, " bytes"));
  }
  // Least recently used first: the back of lru_. Candidates are copied out first because
  // evicting erases from lru_.
  std::vector<std::string> candidates(lru_.rbegin(), lru_.rend());
  for (const std::string& victim : candidates) {
    if (fits()) break;
    Entry& e = entries_.at(victim);
    if (e.handles > 0 || e.pinned) continue;
    device_bytes_ -= e.device->bytes();
    e.device.reset();
    lru_.erase(e.lru);
    ++counters_.evictions;
    KeepOnHost(victim, e);  // may erase the entry
  }
  if (!fits()) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "adapter ", for_id, " needs ", bytes, " device bytes and a slot; the adapter budget is ",
        options_.max_device_bytes, " bytes / ", options_.max_device_adapters, " adapters and ",
        device_bytes_, " bytes in ", device_count(), " adapters are in use or pinned"));
  }
  return absl::OkStatus();
}

void AdapterCache::KeepOnHost(const std::string& id, Entry& entry) {
  if (entry.host == nullptr || entry.host->bytes() > options_.max_host_bytes) {
    if (entry.host != nullptr) host_bytes_ -= entry.host->bytes();
    ++counters_.drops;
    entries_.erase(id);
    return;
  }
  entry.tier = AdapterTier::kHost;
  host_lru_.push_front(id);
  TrimHostTier();
}

void AdapterCache::TrimHostTier() {
  while (host_bytes_ > options_.max_host_bytes && !host_lru_.empty()) {
    const std::string victim = host_lru_.back();
    host_lru_.pop_back();
    auto it = entries_.find(victim);
    host_bytes_ -= it->second.host->bytes();
    ++counters_.drops;
    entries_.erase(it);
  }
  // Host copies of device-resident adapters count against the host budget too; beyond it they
  // are released (the adapter then drops instead of demoting when evicted).
  for (auto it = lru_.rbegin(); host_bytes_ > options_.max_host_bytes && it != lru_.rend(); ++it) {
    Entry& e = entries_.at(*it);
    if (e.host == nullptr) continue;
    host_bytes_ -= e.host->bytes();
    e.host.reset();
  }
}

AdapterCache::Handle AdapterCache::MakeHandle(const std::string& id, Entry& entry) {
  ++entry.handles;
  lru_.splice(lru_.begin(), lru_, entry.lru);  // most recently used
  Handle h;
  h.cache_ = this;
  h.id_ = id;
  h.generation_ = entry.generation;
  h.device_ = entry.device;
  return h;
}

void AdapterCache::Release(const std::string& id, uint64_t generation) {
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(id);
  if (it == entries_.end() || it->second.generation != generation) return;  // force-unloaded
  --it->second.handles;
}

absl::Status AdapterCache::Pin(const std::string& id, bool pinned) {
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(id);
  if (it == entries_.end()) return absl::NotFoundError(absl::StrCat("adapter ", id, " is not loaded"));
  it->second.pinned = pinned;
  return absl::OkStatus();
}

absl::Status AdapterCache::Unload(const std::string& id, bool force) {
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(id);
  if (it == entries_.end()) return absl::NotFoundError(absl::StrCat("adapter ", id, " is not loaded"));
  Entry& e = it->second;
  if (e.tier == AdapterTier::kLoading) {
    return absl::FailedPreconditionError(absl::StrCat("adapter ", id, " is still loading"));
  }
  if (e.handles > 0 && !force) {
    return absl::FailedPreconditionError(absl::StrCat("adapter ", id, " is in use by ", e.handles,
                                                      " request(s); unload with force to remove it anyway"));
  }
  if (e.tier == AdapterTier::kDevice) {
    device_bytes_ -= e.device->bytes();
    lru_.erase(e.lru);
  } else {
    host_lru_.remove(id);
  }
  if (e.host != nullptr) host_bytes_ -= e.host->bytes();
  entries_.erase(it);
  version_.fetch_add(1, std::memory_order_release);
  return absl::OkStatus();
}

AdapterEntryInfo AdapterCache::InfoOf(const std::string& id, const Entry& entry) const {
  AdapterEntryInfo info;
  info.id = id;
  info.tier = entry.tier;
  info.bytes = entry.tier == AdapterTier::kDevice ? entry.device->bytes()
               : entry.tier == AdapterTier::kHost ? entry.host->bytes()
                                                  : 0;
  info.pinned = entry.pinned;
  info.handles = entry.handles;
  info.waiting = static_cast<int32_t>(entry.waiters.size());
  info.host = entry.host;
  return info;
}

std::vector<AdapterEntryInfo> AdapterCache::List() const {
  absl::MutexLock lock(&mu_);
  std::vector<AdapterEntryInfo> out;
  for (const auto& [id, entry] : entries_) out.push_back(InfoOf(id, entry));
  return out;
}

std::optional<AdapterEntryInfo> AdapterCache::Find(const std::string& id) const {
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(id);
  if (it == entries_.end()) return std::nullopt;
  return InfoOf(id, it->second);
}

AdapterCacheStats AdapterCache::stats() const {
  absl::MutexLock lock(&mu_);
  AdapterCacheStats s = counters_;
  s.device_bytes = device_bytes_;
  s.host_bytes = host_bytes_;
  s.device_adapters = static_cast<int32_t>(lru_.size());
  s.host_adapters = static_cast<int32_t>(host_lru_.size());
  for (const auto& [id, entry] : entries_) s.loading += entry.tier == AdapterTier::kLoading;
  return s;
}

}  // namespace kiln::engine
