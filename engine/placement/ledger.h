// MemoryLedger: per-device accounting of the bytes kiln holds, by kind (weights, KV pool,
// adapter slots, workspace, activations) and by owner (a model or adapter name). Every
// allocation that lives on a device is reserved here first; the Reservation handle gives the
// bytes back when destroyed, so an unload that drops its handles returns every byte.
//
// Capacities come from the device inventory (GPU free memory at startup or a configured
// budget; the CPU budget). Reserve fails with RESOURCE_EXHAUSTED naming the device, the kind,
// the bytes requested and the bytes available; with NOT_FOUND for a device not in the
// inventory; INVALID_ARGUMENT for a negative size or an empty owner.
//
// Thread-safety: all methods may be called from any thread. A Reservation may be destroyed on
// any thread, but must not outlive its ledger. AllReleased() is what unload paths and tests
// assert after dropping every handle.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "engine/placement/memory_spec.h"

namespace kiln::engine::placement {

enum class MemoryKind : uint8_t { kWeights, kKv, kAdapter, kWorkspace, kActivations };
inline constexpr int kNumMemoryKinds = 5;
// "weights", "kv", "adapter", "workspace", "activations" (metric label values).
std::string_view MemoryKindName(MemoryKind kind);

class MemoryLedger;

// Move-only handle for reserved bytes. A default-constructed or moved-from Reservation holds
// nothing. Release() (or destruction) returns the bytes exactly once.
class Reservation {
 public:
  Reservation() = default;
  ~Reservation() { Release(); }
  Reservation(Reservation&& other) noexcept;
  Reservation& operator=(Reservation&& other) noexcept;
  Reservation(const Reservation&) = delete;
  Reservation& operator=(const Reservation&) = delete;

  void Release();
  int64_t bytes() const { return bytes_; }
  const Device& device() const { return device_; }
  MemoryKind kind() const { return kind_; }
  const std::string& owner() const { return owner_; }
  bool active() const { return ledger_ != nullptr; }

 private:
  friend class MemoryLedger;
  Reservation(MemoryLedger* ledger, Device device, MemoryKind kind, std::string owner, int64_t bytes)
      : ledger_(ledger), device_(device), kind_(kind), owner_(std::move(owner)), bytes_(bytes) {}

  MemoryLedger* ledger_ = nullptr;
  Device device_;
  MemoryKind kind_ = MemoryKind::kWeights;
  std::string owner_;
  int64_t bytes_ = 0;
};

struct DeviceMemorySnapshot {
  Device device;
  int64_t capacity_bytes = 0;
  int64_t used_bytes = 0;
  int64_t by_kind[kNumMemoryKinds] = {};          // indexed by MemoryKind
  std::map<std::string, int64_t> by_owner;         // owners with bytes > 0
  int64_t available_bytes() const { return capacity_bytes - used_bytes; }
};

class MemoryLedger {
 public:
  // Devices with their capacities; a device listed twice or a negative capacity is
  // INVALID_ARGUMENT.
  static absl::StatusOr<std::unique_ptr<MemoryLedger>> Create(const std::vector<DeviceCapacity>& inventory);

  MemoryLedger(const MemoryLedger&) = delete;
  MemoryLedger& operator=(const MemoryLedger&) = delete;

  // Reserves `bytes` (>= 0) on `device` for `owner`; all-or-nothing.
  absl::StatusOr<Reservation> Reserve(const Device& device, MemoryKind kind, const std::string& owner,
                                      int64_t bytes);

  // Per-device state, in inventory order (GPUs by index, then the CPU).
  std::vector<DeviceMemorySnapshot> Snapshot() const;
  // Bytes an owner holds across all devices.
  int64_t OwnerBytes(const std::string& owner) const;
  // True when nothing is reserved anywhere.
  bool AllReleased() const;

 private:
  struct DeviceState {
    Device device;
    int64_t capacity_bytes = 0;
    int64_t used_bytes = 0;
    int64_t by_kind[kNumMemoryKinds] = {};
    std::map<std::string, int64_t> by_owner;
  };
  MemoryLedger() = default;
  friend class Reservation;
  void Return(const Device& device, MemoryKind kind, const std::string& owner, int64_t bytes);

  mutable absl::Mutex mu_;
  std::vector<DeviceState> devices_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kiln::engine::placement
