#include "engine/placement/ledger.h"

#include <atomic>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kiln::engine::placement {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

std::unique_ptr<MemoryLedger> TwoDevices() {
  absl::StatusOr<std::unique_ptr<MemoryLedger>> l =
      MemoryLedger::Create({{Device::Cpu(), 1000}, {Device::Gpu(0), 500}});
  EXPECT_TRUE(l.ok()) << l.status();
  return std::move(l).value();
}

const DeviceMemorySnapshot& Find(const std::vector<DeviceMemorySnapshot>& s, const Device& d) {
  for (const auto& x : s) {
    if (x.device == d) return x;
  }
  static DeviceMemorySnapshot none;
  ADD_FAILURE() << "no device " << d.Name();
  return none;
}

TEST(Ledger, ReserveReleaseAndSnapshots) {
  auto ledger = TwoDevices();
  {
    absl::StatusOr<Reservation> w = ledger->Reserve(Device::Gpu(0), MemoryKind::kWeights, "llama", 300);
    ASSERT_TRUE(w.ok()) << w.status();
    absl::StatusOr<Reservation> kv = ledger->Reserve(Device::Gpu(0), MemoryKind::kKv, "llama", 150);
    ASSERT_TRUE(kv.ok());
    absl::StatusOr<Reservation> a = ledger->Reserve(Device::Cpu(), MemoryKind::kAdapter, "lora-a", 40);
    ASSERT_TRUE(a.ok());
    EXPECT_FALSE(ledger->AllReleased());

    std::vector<DeviceMemorySnapshot> snap = ledger->Snapshot();
    ASSERT_EQ(snap.size(), 2u);
    EXPECT_EQ(snap[0].device, Device::Gpu(0));  // GPUs first, as accelerate orders them
    const DeviceMemorySnapshot& gpu = Find(snap, Device::Gpu(0));
    EXPECT_EQ(gpu.used_bytes, 450);
    EXPECT_EQ(gpu.available_bytes(), 50);
    EXPECT_EQ(gpu.by_kind[static_cast<int>(MemoryKind::kWeights)], 300);
    EXPECT_EQ(gpu.by_kind[static_cast<int>(MemoryKind::kKv)], 150);
    EXPECT_EQ(gpu.by_owner.at("llama"), 450);
    EXPECT_EQ(Find(snap, Device::Cpu()).by_kind[static_cast<int>(MemoryKind::kAdapter)], 40);
    EXPECT_EQ(ledger->OwnerBytes("llama"), 450);

    kv->Release();
    kv->Release();  // idempotent
    EXPECT_EQ(Find(ledger->Snapshot(), Device::Gpu(0)).used_bytes, 300);
  }
  EXPECT_TRUE(ledger->AllReleased());
  EXPECT_TRUE(Find(ledger->Snapshot(), Device::Gpu(0)).by_owner.empty());
}

TEST(Ledger, OverCapacityNamesDeviceKindRequestedAvailable) {
  auto ledger = TwoDevices();
  absl::StatusOr<Reservation> w = ledger->Reserve(Device::Gpu(0), MemoryKind::kWeights, "m", 400);
  ASSERT_TRUE(w.ok());
  absl::StatusOr<Reservation> kv = ledger->Reserve(Device::Gpu(0), MemoryKind::kKv, "m", 101);
  EXPECT_EQ(kv.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(kv.status().message()),
              AllOf(HasSubstr("cuda:0"), HasSubstr("kv"), HasSubstr("requested 101"), HasSubstr("available 100")));
  // All-or-nothing: the refused request left nothing behind; exactly the rest still fits.
  EXPECT_TRUE(ledger->Reserve(Device::Gpu(0), MemoryKind::kKv, "m", 100).ok());
  EXPECT_EQ(ledger->Reserve(Device::Gpu(3), MemoryKind::kKv, "m", 1).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ledger->Reserve(Device::Cpu(), MemoryKind::kKv, "m", -1).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ledger->Reserve(Device::Cpu(), MemoryKind::kKv, "", 1).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Ledger, MoveTransfersOwnership) {
  auto ledger = TwoDevices();
  absl::StatusOr<Reservation> r = ledger->Reserve(Device::Cpu(), MemoryKind::kWorkspace, "m", 10);
  ASSERT_TRUE(r.ok());
  Reservation a = std::move(*r);
  EXPECT_FALSE(r->active());
  EXPECT_EQ(a.bytes(), 10);
  Reservation b;
  b = std::move(a);
  EXPECT_FALSE(a.active());
  EXPECT_EQ(ledger->OwnerBytes("m"), 10);
  absl::StatusOr<Reservation> other = ledger->Reserve(Device::Cpu(), MemoryKind::kActivations, "m", 5);
  ASSERT_TRUE(other.ok());
  b = std::move(*other);  // releases the 10 it held
  EXPECT_EQ(ledger->OwnerBytes("m"), 5);
  b.Release();
  EXPECT_TRUE(ledger->AllReleased());
}

TEST(Ledger, CreateRefusesBadInventory) {
  EXPECT_EQ(MemoryLedger::Create({{Device::Cpu(), -1}}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MemoryLedger::Create({{Device::Gpu(0), 1}, {Device::Gpu(0), 2}}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// Threads race to reserve and release; the capacity is never exceeded and everything returns.
TEST(Ledger, ConcurrentReservationsNeverExceedCapacityAndReturnToZero) {
  absl::StatusOr<std::unique_ptr<MemoryLedger>> made = MemoryLedger::Create({{Device::Gpu(0), 100}});
  ASSERT_TRUE(made.ok());
  MemoryLedger& ledger = **made;
  std::atomic<int> granted{0}, refused{0};
  std::atomic<bool> over{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      std::vector<Reservation> held;
      for (int i = 0; i < 2000; ++i) {
        const MemoryKind kind = static_cast<MemoryKind>((t + i) % kNumMemoryKinds);
        absl::StatusOr<Reservation> r = ledger.Reserve(Device::Gpu(0), kind, "owner" + std::to_string(t % 3), 37);
        if (r.ok()) {
          ++granted;
          held.push_back(std::move(*r));
        } else {
          ++refused;
        }
        const DeviceMemorySnapshot s = ledger.Snapshot()[0];
        int64_t kinds = 0;
        for (int64_t k : s.by_kind) kinds += k;
        if (s.used_bytes > s.capacity_bytes || kinds != s.used_bytes) over = true;
        if (held.size() > 3 || (i % 7 == 0 && !held.empty())) held.erase(held.begin());
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_FALSE(over.load());
  EXPECT_GT(granted.load(), 0);
  EXPECT_GT(refused.load(), 0);  // one thread alone holds up to 4 x 37 > 100
  EXPECT_TRUE(ledger.AllReleased());
  EXPECT_EQ(ledger.Snapshot()[0].used_bytes, 0);
}

}  // namespace
}  // namespace kiln::engine::placement
