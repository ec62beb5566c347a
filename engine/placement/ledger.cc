#include "engine/placement/ledger.h"

#include <algorithm>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/common/check.h"
#include "engine/io/json_util.h"

namespace kiln::engine::placement {

std::string_view MemoryKindName(MemoryKind kind) {
  switch (kind) {
    case MemoryKind::kWeights: return "weights";
    case MemoryKind::kKv: return "kv";
    case MemoryKind::kAdapter: return "adapter";
    case MemoryKind::kWorkspace: return "workspace";
    case MemoryKind::kActivations: return "activations";
  }
  return "unknown";
}

Reservation::Reservation(Reservation&& other) noexcept
    : ledger_(std::exchange(other.ledger_, nullptr)),
      device_(other.device_),
      kind_(other.kind_),
      owner_(std::move(other.owner_)),
      bytes_(std::exchange(other.bytes_, 0)) {}

Reservation& Reservation::operator=(Reservation&& other) noexcept {
  if (this != &other) {
    Release();
    ledger_ = std::exchange(other.ledger_, nullptr);
    device_ = other.device_;
    kind_ = other.kind_;
    owner_ = std::move(other.owner_);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

void Reservation::Release() {
  if (ledger_ == nullptr) return;
  ledger_->Return(device_, kind_, owner_, bytes_);
  ledger_ = nullptr;
  bytes_ = 0;
}

absl::StatusOr<std::unique_ptr<MemoryLedger>> MemoryLedger::Create(const std::vector<DeviceCapacity>& inventory) {
  std::unique_ptr<MemoryLedger> ledger(new MemoryLedger());
  std::vector<DeviceState> devices;
  for (const DeviceCapacity& c : inventory) {
    if (c.capacity_bytes < 0) {
      return absl::InvalidArgumentError(absl::StrCat("inventory: device ", c.device.Name(), " has capacity ",
                                                     c.capacity_bytes, " bytes; it must be >= 0"));
    }
    for (const DeviceState& d : devices) {
      if (d.device == c.device) {
        return absl::InvalidArgumentError(absl::StrCat("inventory: device ", c.device.Name(), " is listed twice"));
      }
    }
    DeviceState s;
    s.device = c.device;
    s.capacity_bytes = c.capacity_bytes;
    devices.push_back(std::move(s));
  }
  std::stable_sort(devices.begin(), devices.end(),
                   [](const DeviceState& a, const DeviceState& b) { return a.device < b.device; });
  absl::MutexLock lock(&ledger->mu_);
  ledger->devices_ = std::move(devices);
  return ledger;
}

absl::StatusOr<Reservation> MemoryLedger::Reserve(const Device& device, MemoryKind kind, const std::string& owner,
                                                  int64_t bytes) {
  if (bytes < 0) {
    return absl::InvalidArgumentError(absl::StrCat("memory reservation on ", device.Name(), " (",
                                                   std::string(MemoryKindName(kind)), "): ", bytes, " bytes is negative"));
  }
  if (owner.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("memory reservation on ", device.Name(), " (", std::string(MemoryKindName(kind)), "): owner is empty"));
  }
  absl::MutexLock lock(&mu_);
  for (DeviceState& d : devices_) {
    if (d.device != device) continue;
    const int64_t available = d.capacity_bytes - d.used_bytes;
    if (bytes > available) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "not enough memory on ", device.Name(), " for ", std::string(MemoryKindName(kind)), " of ", QuoteForMessage(owner),
          ": requested ", bytes, " bytes, available ", available, " of ", d.capacity_bytes));
    }
    d.used_bytes += bytes;
    d.by_kind[static_cast<int>(kind)] += bytes;
    d.by_owner[owner] += bytes;
    return Reservation(this, device, kind, owner, bytes);
  }
  return absl::NotFoundError(absl::StrCat("memory reservation: device ", device.Name(), " is not in the inventory"));
}

void MemoryLedger::Return(const Device& device, MemoryKind kind, const std::string& owner, int64_t bytes) {
  absl::MutexLock lock(&mu_);
  for (DeviceState& d : devices_) {
    if (d.device != device) continue;
    auto it = d.by_owner.find(owner);
    KILN_CHECK(it != d.by_owner.end() && it->second >= bytes);
    KILN_CHECK(d.by_kind[static_cast<int>(kind)] >= bytes && d.used_bytes >= bytes);
    d.used_bytes -= bytes;
    d.by_kind[static_cast<int>(kind)] -= bytes;
    if ((it->second -= bytes) == 0) d.by_owner.erase(it);
    return;
  }
  KILN_CHECK(false && "reservation returned to a device the ledger does not have");
}

std::vector<DeviceMemorySnapshot> MemoryLedger::Snapshot() const {
  absl::MutexLock lock(&mu_);
  std::vector<DeviceMemorySnapshot> out;
  for (const DeviceState& d : devices_) {
    DeviceMemorySnapshot s;
    s.device = d.device;
    s.capacity_bytes = d.capacity_bytes;
    s.used_bytes = d.used_bytes;
    std::copy(std::begin(d.by_kind), std::end(d.by_kind), std::begin(s.by_kind));
    s.by_owner = d.by_owner;
    out.push_back(std::move(s));
  }
  return out;
}

int64_t MemoryLedger::OwnerBytes(const std::string& owner) const {
  absl::MutexLock lock(&mu_);
  int64_t total = 0;
  for (const DeviceState& d : devices_) {
    auto it = d.by_owner.find(owner);
    if (it != d.by_owner.end()) total += it->second;
  }
  return total;
}

bool MemoryLedger::AllReleased() const {
  absl::MutexLock lock(&mu_);
  for (const DeviceState& d : devices_) {
    if (d.used_bytes != 0 || !d.by_owner.empty()) return false;
  }
  return true;
}

}  // namespace kiln::engine::placement
