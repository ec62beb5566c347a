// AdapterCache: the adapters of one model, in two tiers, loaded on demand (issue #6).
//
// An adapter id moves through: absent -> loading -> device (usable by requests) <-> host
// (evicted from the device, its parsed weights kept in host memory so the next use skips the
// disk) -> absent. Loading is two steps run on the cache's control thread: `read` (resolve,
// parse and validate the files: host weights) and `upload` (host weights -> device weights).
//
// Semantics (the ones LoRAX users rely on, made explicit):
//  - Acquire(id): a device-resident adapter is returned at once as a Handle; otherwise the
//    caller's callback runs (on the control thread) when the load finishes. Concurrent
//    acquirers of one id share a single load. A failed load fails every waiter with the load
//    error and is forgotten: the next Acquire retries (no negative cache).
//  - Handles are refcounts: an adapter with a live Handle is never evicted, and Unload refuses
//    it with FAILED_PRECONDITION unless forced. A forced unload removes the id at once for new
//    requests; running requests keep their weights alive through their Handles.
//  - Budgets: the device tier holds at most `max_device_bytes` and `max_device_adapters`; the
//    host tier at most `max_host_bytes`. When an upload needs room, idle (no Handle) unpinned
//    adapters are evicted least-recently-used first: to the host tier when it has room, else
//    dropped. When room cannot be made (everything in use or pinned) the waiters get
//    RESOURCE_EXHAUSTED naming the bytes needed, the budget and what is held.
//  - Pinned adapters (Pin / LoadAdapter pin=true) are never evicted.
//
// Thread-safety: every method is thread-safe. Callbacks run on the control thread with no
// cache lock held, so they may call back into the cache.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "engine/common/thread_pool.h"

namespace kiln::engine {

// What the cache holds for one tier; the runtime knows the concrete types.
class AdapterPayload {
 public:
  virtual ~AdapterPayload() = default;
  virtual size_t bytes() const = 0;
};

struct AdapterCacheOptions {
  size_t max_device_bytes = 1ull << 30;
  int32_t max_device_adapters = 64;
  size_t max_host_bytes = 4ull << 30;
  // Called on the control thread after every load attempt (may be empty): for metrics.
  std::function<void(bool ok, absl::Duration took)> on_load;
};

// Counters since construction plus the current residency, for metrics and GetServerInfo.
struct AdapterCacheStats {
  int32_t device_adapters = 0, host_adapters = 0, loading = 0;
  size_t device_bytes = 0, host_bytes = 0;
  int64_t loads = 0, load_failures = 0, host_hits = 0, evictions = 0, drops = 0;
  absl::Duration total_load_time;  // summed over successful loads
};

enum class AdapterTier { kLoading, kDevice, kHost };

struct AdapterEntryInfo {
  std::string id;
  AdapterTier tier = AdapterTier::kLoading;
  size_t bytes = 0;  // the tier's payload bytes (0 while loading)
  bool pinned = false;
  int32_t handles = 0;  // live Handles (requests using it)
  int32_t waiting = 0;  // acquirers waiting for its load
  std::shared_ptr<const AdapterPayload> host;  // parsed weights, when kept
};

class AdapterCache {
 public:
  using ReadFn = std::function<absl::StatusOr<std::shared_ptr<const AdapterPayload>>(const std::string& id)>;
  using UploadFn = std::function<absl::StatusOr<std::shared_ptr<const AdapterPayload>>(
      const std::string& id, const AdapterPayload& host)>;

  // A use of a device-resident adapter; move-only; releasing it lets the adapter be evicted.
  class Handle {
   public:
    Handle() = default;
    Handle(Handle&& other) noexcept { *this = std::move(other); }
    Handle& operator=(Handle&& other) noexcept;
    Handle(const Handle&) = delete;
    Handle& operator=(const Handle&) = delete;
    ~Handle() { Reset(); }

    const std::string& id() const { return id_; }
    // The device weights (valid while the Handle lives, even after a forced unload).
    const AdapterPayload* device() const { return device_.get(); }
    explicit operator bool() const { return cache_ != nullptr; }
    void Reset();

   private:
    friend class AdapterCache;
    AdapterCache* cache_ = nullptr;
    std::string id_;
    uint64_t generation_ = 0;
    std::shared_ptr<const AdapterPayload> device_;
  };
  using Callback = std::function<void(absl::StatusOr<Handle>)>;

  AdapterCache(AdapterCacheOptions options, ReadFn read, UploadFn upload);
  // Waits for running loads; waiters of loads not yet started get CANCELLED. Every Handle
  // must be released before the cache is destroyed.
  ~AdapterCache();
  AdapterCache(const AdapterCache&) = delete;
  AdapterCache& operator=(const AdapterCache&) = delete;

  // A Handle now when `id` is on the device; otherwise nullopt, and `on_ready` runs later with
  // the Handle or the load's error.
  std::optional<Handle> Acquire(const std::string& id, Callback on_ready);
  // Blocking form (for LoadAdapter): loads if needed, then returns a Handle.
  absl::StatusOr<Handle> AcquireAndWait(const std::string& id);

  // NOT_FOUND when `id` is not known (neither loaded nor loading).
  absl::Status Pin(const std::string& id, bool pinned);
  // Removes `id` from both tiers. FAILED_PRECONDITION when Handles are live (naming how many)
  // unless `force`; NOT_FOUND when absent. A loading adapter is refused with FAILED_PRECONDITION.
  absl::Status Unload(const std::string& id, bool force);

  std::vector<AdapterEntryInfo> List() const;
  std::optional<AdapterEntryInfo> Find(const std::string& id) const;
  AdapterCacheStats stats() const;
  // Bumped whenever residency changes (a load ends, an eviction, an unload): lets a caller
  // that publishes stats every step skip the work when nothing changed. Lock-free.
  uint64_t version() const { return version_.load(std::memory_order_acquire); }

 private:
  struct Entry {
    AdapterTier tier = AdapterTier::kLoading;
    uint64_t generation = 0;  // distinguishes a re-created entry from a force-unloaded one
    std::shared_ptr<const AdapterPayload> host;
    std::shared_ptr<const AdapterPayload> device;
    bool pinned = false;
    int32_t handles = 0;
    std::vector<Callback> waiters;
    std::list<std::string>::iterator lru;  // position in lru_ (device tier only)
  };

  void Load(const std::string& id, uint64_t generation);
  void Release(const std::string& id, uint64_t generation);
  // Frees device room for `bytes` more (one more adapter), evicting idle unpinned adapters LRU
  // first; RESOURCE_EXHAUSTED when it cannot.
  absl::Status MakeDeviceRoom(const std::string& for_id, size_t bytes) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void KeepOnHost(const std::string& id, Entry& entry) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void TrimHostTier() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Handle MakeHandle(const std::string& id, Entry& entry) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  AdapterEntryInfo InfoOf(const std::string& id, const Entry& entry) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const AdapterCacheOptions options_;
  const ReadFn read_;
  const UploadFn upload_;

  mutable absl::Mutex mu_;
  std::map<std::string, Entry> entries_ ABSL_GUARDED_BY(mu_);
  std::list<std::string> lru_ ABSL_GUARDED_BY(mu_);       // device tier, most recent at front
  std::list<std::string> host_lru_ ABSL_GUARDED_BY(mu_);  // host tier, most recent at front
  size_t device_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  size_t host_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t next_generation_ ABSL_GUARDED_BY(mu_) = 1;
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  AdapterCacheStats counters_ ABSL_GUARDED_BY(mu_);
  std::atomic<uint64_t> version_{0};

  ThreadPool control_{1};  // last member: joined first, before the state it touches dies
};

}  // namespace kiln::engine
