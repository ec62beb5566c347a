#include "engine/runtime/adapter_cache.h"

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"

namespace kiln::engine {
namespace {

class FakePayload : public AdapterPayload {
 public:
  FakePayload(std::string tag, size_t bytes) : tag_(std::move(tag)), bytes_(bytes) {}
  size_t bytes() const override { return bytes_; }
  const std::string& tag() const { return tag_; }

 private:
  std::string tag_;
  size_t bytes_;
};

// A loader over a table of adapter sizes; ids not in the table fail. Counts reads/uploads and
// can hold reads at a gate so a test controls when a load finishes.
class FakeLoader {
 public:
  std::map<std::string, size_t> sizes;
  std::atomic<int> reads{0}, uploads{0};
  absl::Notification* gate = nullptr;  // when set, reads wait on it
  std::string fail_id;                 // reads of this id fail (until cleared)

  AdapterCache::ReadFn Read() {
    return [this](const std::string& id) -> absl::StatusOr<std::shared_ptr<const AdapterPayload>> {
      ++reads;
      if (gate != nullptr) gate->WaitForNotification();
      if (id == fail_id) return absl::InvalidArgumentError("adapter_config.json: r: must be >= 1");
      auto it = sizes.find(id);
      if (it == sizes.end()) return absl::NotFoundError("unknown adapter " + id);
      return std::make_shared<FakePayload>("host:" + id, it->second);
    };
  }
  AdapterCache::UploadFn Upload() {
    return [this](const std::string& id, const AdapterPayload& host)
               -> absl::StatusOr<std::shared_ptr<const AdapterPayload>> {
      ++uploads;
      return std::make_shared<FakePayload>("device:" + id, host.bytes());
    };
  }
};

// Collects callback results thread-safely.
class Results {
 public:
  AdapterCache::Callback Callback() {
    return [this](absl::StatusOr<AdapterCache::Handle> h) {
      absl::MutexLock lock(&mu_);
      results_.push_back(std::move(h));
    };
  }
  // Blocks until `n` results arrived, then takes them.
  std::vector<absl::StatusOr<AdapterCache::Handle>> Take(size_t n) {
    absl::MutexLock lock(&mu_);
    auto ready = [&] { return results_.size() >= n; };
    mu_.Await(absl::Condition(&ready));
    return std::move(results_);
  }

 private:
  absl::Mutex mu_;
  std::vector<absl::StatusOr<AdapterCache::Handle>> results_;
};

AdapterCacheOptions Budget(size_t device_bytes, int32_t device_count, size_t host_bytes) {
  AdapterCacheOptions o;
  o.max_device_bytes = device_bytes;
  o.max_device_adapters = device_count;
  o.max_host_bytes = host_bytes;
  return o;
}

std::string TagOf(const AdapterCache::Handle& h) {
  return static_cast<const FakePayload*>(h.device())->tag();
}

TEST(AdapterCacheTest, LoadsOnFirstUseThenServesFromTheDevice) {
  FakeLoader loader;
  loader.sizes = {{"a", 100}};
  AdapterCache cache(Budget(1000, 8, 1000), loader.Read(), loader.Upload());
  Results results;
  EXPECT_FALSE(cache.Acquire("a", results.Callback()).has_value());
  auto first = results.Take(1);
  ASSERT_TRUE(first[0].ok()) << first[0].status();
  EXPECT_EQ(TagOf(*first[0]), "device:a");
  std::optional<AdapterCache::Handle> again = cache.Acquire("a", [](auto) { FAIL() << "no callback expected"; });
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(TagOf(*again), "device:a");
  EXPECT_EQ(loader.reads.load(), 1);
  EXPECT_EQ(cache.Find("a")->handles, 2);
  first[0]->Reset();
  again->Reset();
  EXPECT_EQ(cache.Find("a")->handles, 0);
  EXPECT_EQ(cache.stats().loads, 1);
  EXPECT_EQ(cache.stats().device_bytes, 100u);
}

TEST(AdapterCacheTest, ConcurrentAcquirersShareOneLoad) {
  FakeLoader loader;
  loader.sizes = {{"a", 10}};
  absl::Notification gate;
  loader.gate = &gate;
  AdapterCache cache(Budget(1000, 8, 1000), loader.Read(), loader.Upload());
  Results results;
  for (int i = 0; i < 5; ++i) EXPECT_FALSE(cache.Acquire("a", results.Callback()).has_value());
  EXPECT_EQ(cache.Find("a")->tier, AdapterTier::kLoading);
  EXPECT_EQ(cache.Find("a")->waiting, 5);
  gate.Notify();
  auto handles = results.Take(5);
  for (auto& h : handles) ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(loader.reads.load(), 1);
  EXPECT_EQ(loader.uploads.load(), 1);
  EXPECT_EQ(cache.Find("a")->handles, 5);
}

TEST(AdapterCacheTest, FailedLoadFailsEveryWaiterAndIsRetriedNextTime) {
  FakeLoader loader;
  loader.sizes = {{"a", 10}};
  loader.fail_id = "a";
  absl::Notification gate;
  loader.gate = &gate;
  AdapterCache cache(Budget(1000, 8, 1000), loader.Read(), loader.Upload());
  Results results;
  cache.Acquire("a", results.Callback());
  cache.Acquire("a", results.Callback());
  gate.Notify();
  auto failed = results.Take(2);
  for (auto& h : failed) {
    EXPECT_EQ(h.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(h.status().message().find("r: must be >= 1"), std::string::npos);
  }
  EXPECT_FALSE(cache.Find("a").has_value());  // no negative cache
  EXPECT_EQ(cache.stats().load_failures, 1);

  loader.fail_id.clear();
  auto ok = cache.AcquireAndWait("a");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(loader.reads.load(), 2);
}

TEST(AdapterCacheTest, EvictsTheLeastRecentlyUsedIdleAdapterToTheHostTier) {
  FakeLoader loader;
  loader.sizes = {{"a", 10}, {"b", 10}, {"c", 10}};
  AdapterCache cache(Budget(1000, 2, 1000), loader.Read(), loader.Upload());
  { auto a = cache.AcquireAndWait("a"); ASSERT_TRUE(a.ok()); }
  { auto b = cache.AcquireAndWait("b"); ASSERT_TRUE(b.ok()); }
  { auto a = cache.AcquireAndWait("a"); ASSERT_TRUE(a.ok()); }  // a is now the most recent
  { auto c = cache.AcquireAndWait("c"); ASSERT_TRUE(c.ok()); }  // needs a slot: b goes
  EXPECT_EQ(cache.Find("a")->tier, AdapterTier::kDevice);
  EXPECT_EQ(cache.Find("b")->tier, AdapterTier::kHost);
  EXPECT_EQ(cache.Find("c")->tier, AdapterTier::kDevice);
  EXPECT_EQ(cache.stats().evictions, 1);
  // b comes back from host memory: uploaded again, not read again.
  const int reads = loader.reads.load();
  { auto b = cache.AcquireAndWait("b"); ASSERT_TRUE(b.ok()); EXPECT_EQ(TagOf(*b), "device:b"); }
  EXPECT_EQ(loader.reads.load(), reads);
  EXPECT_EQ(cache.stats().host_hits, 1);
  EXPECT_EQ(cache.stats().device_adapters, 2);
}

TEST(AdapterCacheTest, AnAdapterInUseOrPinnedIsNeverEvicted) {
  FakeLoader loader;
  loader.sizes = {{"a", 10}, {"b", 10}, {"c", 10}};
  AdapterCache cache(Budget(1000, 2, 1000), loader.Read(), loader.Upload());
  auto a = cache.AcquireAndWait("a");
  ASSERT_TRUE(a.ok());
  { auto b = cache.AcquireAndWait("b"); ASSERT_TRUE(b.ok()); }
  ASSERT_TRUE(cache.Pin("b", true).ok());
  auto c = cache.AcquireAndWait("c");
  EXPECT_EQ(c.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(c.status().message().find("in use or pinned"), std::string::npos) << c.status();
  EXPECT_FALSE(cache.Find("c").has_value());
  ASSERT_TRUE(cache.Pin("b", false).ok());
  c = cache.AcquireAndWait("c");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(cache.Find("a")->tier, AdapterTier::kDevice);  // still held by `a`
  EXPECT_EQ(cache.Find("b")->tier, AdapterTier::kHost);
}

TEST(AdapterCacheTest, ByteBudgetEvictsSeveralAndRefusesWhatCanNeverFit) {
  FakeLoader loader;
  loader.sizes = {{"a", 40}, {"b", 40}, {"big", 90}, {"huge", 101}};
  AdapterCache cache(Budget(100, 8, 1000), loader.Read(), loader.Upload());
  { auto a = cache.AcquireAndWait("a"); ASSERT_TRUE(a.ok()); }
  { auto b = cache.AcquireAndWait("b"); ASSERT_TRUE(b.ok()); }
  { auto big = cache.AcquireAndWait("big"); ASSERT_TRUE(big.ok()) << big.status(); }
  EXPECT_EQ(cache.stats().evictions, 2);
  EXPECT_EQ(cache.stats().device_bytes, 90u);
  auto huge = cache.AcquireAndWait("huge");
  EXPECT_EQ(huge.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(huge.status().message().find("needs 101 device bytes"), std::string::npos) << huge.status();
  EXPECT_NE(huge.status().message().find("budget is 100"), std::string::npos) << huge.status();
}

TEST(AdapterCacheTest, HostTierIsBoundedToo) {
  FakeLoader loader;
  loader.sizes = {{"a", 10}, {"b", 10}, {"c", 10}};
  // Room for one adapter on the device and two host copies in all.
  AdapterCache cache(Budget(1000, 1, 20), loader.Read(), loader.Upload());
  { auto a = cache.AcquireAndWait("a"); ASSERT_TRUE(a.ok()); }
  { auto b = cache.AcquireAndWait("b"); ASSERT_TRUE(b.ok()); }  // a -> host
  { auto c = cache.AcquireAndWait("c"); ASSERT_TRUE(c.ok()); }  // b -> host, a dropped
  EXPECT_FALSE(cache.Find("a").has_value());
  EXPECT_EQ(cache.Find("b")->tier, AdapterTier::kHost);
  EXPECT_LE(cache.stats().host_bytes, 20u);
  EXPECT_GE(cache.stats().drops, 1);
}

TEST(AdapterCacheTest, UnloadRefusesAnAdapterInUseUnlessForced) {
  FakeLoader loader;
  loader.sizes = {{"a", 10}};
  AdapterCache cache(Budget(1000, 8, 1000), loader.Read(), loader.Upload());
  auto a = cache.AcquireAndWait("a");
  ASSERT_TRUE(a.ok());
  absl::Status refused = cache.Unload("a", /*force=*/false);
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(refused.message().find("in use by 1 request"), std::string::npos) << refused;
  ASSERT_TRUE(cache.Unload("a", /*force=*/true).ok());
  EXPECT_FALSE(cache.Find("a").has_value());
  EXPECT_EQ(TagOf(*a), "device:a");  // the running request keeps its weights
  EXPECT_EQ(cache.stats().device_bytes, 0u);
  a->Reset();  // releasing after a forced unload is harmless
  EXPECT_EQ(cache.Unload("a", false).code(), absl::StatusCode::kNotFound);
  // A new acquire loads a fresh copy.
  auto again = cache.AcquireAndWait("a");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(cache.Find("a")->handles, 1);
}

TEST(AdapterCacheTest, DestroyingTheCacheEndsEveryWaiterExactlyOnce) {
  FakeLoader loader;
  loader.sizes = {{"a", 10}, {"b", 10}};
  absl::Notification gate;
  loader.gate = &gate;
  absl::Mutex mu;
  std::vector<absl::StatusCode> codes;
  auto record = [&](absl::StatusOr<AdapterCache::Handle> h) {
    absl::MutexLock lock(&mu);
    codes.push_back(h.status().code());  // the handle is released right here
  };
  {
    AdapterCache cache(Budget(1000, 8, 1000), loader.Read(), loader.Upload());
    cache.Acquire("a", record);  // runs first, held at the gate
    cache.Acquire("b", record);  // queued behind it
    gate.Notify();
  }  // the destructor finishes or cancels both loads before returning
  ASSERT_EQ(codes.size(), 2u);
  for (absl::StatusCode code : codes) {
    EXPECT_TRUE(code == absl::StatusCode::kOk || code == absl::StatusCode::kCancelled) << code;
  }
}

}  // namespace
}  // namespace kiln::engine
