// Multi-model residency (issue #7): LRU eviction of idle unpinned models when a load needs a
// slot (max_loaded_models) or bytes (the memory ledger's CPU budget), keep-alive expiry, pinned
// and busy models never evicted, and the transparent reload of an evicted model on Generate.
// Expected tokens: transformers' greedy run of llama_tiny (tests/golden/fixtures/reference).
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "engine/io/json_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/engine/runtime/engine_test_util.h"

namespace kiln::engine {
namespace {

using ::testing::HasSubstr;
using testing::Collect;
using testing::Collected;
using testing::kFixtures;
using testing::LoadAndWait;

struct Reference {
  std::vector<int32_t> input_ids, new_ids;
};

Reference Greedy() {
  auto greedy = ReadJsonFile(kFixtures + "/reference/llama_tiny/greedy.json", "greedy.json");
  EXPECT_TRUE(greedy.ok()) << greedy.status();
  Reference r;
  r.input_ids = (*greedy)["runs"][0]["input_ids"].get<std::vector<int32_t>>();
  r.new_ids = (*greedy)["runs"][0]["new_ids"].get<std::vector<int32_t>>();
  return r;
}

GenerateRequest Request(const std::string& model, const Reference& ref, int32_t max_new_tokens = 0) {
  GenerateRequest r;
  r.request_id = "t";
  r.model = model;
  r.prompt_token_ids = ref.input_ids;
  r.sampling.do_sample = false;
  r.stopping.max_new_tokens = max_new_tokens > 0 ? max_new_tokens : static_cast<int32_t>(ref.new_ids.size());
  return r;
}

absl::Status Load(Engine& engine, const std::string& served_name, bool pin = false, int64_t keep_alive_ms = 0) {
  LoadModelOptions options;
  options.model = "llama_tiny";
  options.served_name = served_name;
  options.pin = pin;
  options.keep_alive_ms = keep_alive_ms;
  return LoadAndWait(engine, options, nullptr);
}

ModelState StateOf(Engine& engine, const std::string& name) {
  absl::StatusOr<ModelInfo> info = engine.GetModel(name);
  EXPECT_TRUE(info.ok()) << info.status();
  return info.ok() ? info->state : ModelState::kFailed;
}

// Records state changes (the engine's observer) so tests wait for events, never for time.
// It outlives nothing: a log declared after its engine dies first while the engine's control
// thread may still report (a reload finishing after the test's last wait), so the destructor
// unregisters, which waits for a report in flight (the engine calls the observer under its
// observer lock). Found by scripts/sanitize tsan (a race on events_, and a use after scope).
class StateLog {
 public:
  explicit StateLog(Engine& engine) : engine_(engine) {
    engine.SetModelStateObserver([this](const std::string& name, ModelState state) {
      absl::MutexLock lock(&mu_);
      events_.emplace_back(name, state);
    });
  }
  ~StateLog() { engine_.SetModelStateObserver(nullptr); }
  StateLog(const StateLog&) = delete;
  StateLog& operator=(const StateLog&) = delete;
  // True once `name` reached `state` (within a generous bound for a loaded CI machine).
  bool WaitFor(const std::string& name, ModelState state) {
    absl::MutexLock lock(&mu_);
    auto seen = [&] {
      for (const auto& [n, s] : events_) {
        if (n == name && s == state) return true;
      }
      return false;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&seen), absl::Seconds(30));
  }

 private:
  Engine& engine_;
  absl::Mutex mu_;
  std::vector<std::pair<std::string, ModelState>> events_ ABSL_GUARDED_BY(mu_);
};

TEST(ResidencyTest, AFullSlotEvictsTheLeastRecentlyUsedModelAndGenerateReloadsIt) {
  EngineLimits limits;
  limits.max_loaded_models = 2;
  std::unique_ptr<Engine> engine = testing::MakeEngine(limits);
  const Reference ref = Greedy();
  ASSERT_TRUE(Load(*engine, "a").ok());
  ASSERT_TRUE(Load(*engine, "b").ok());
  ASSERT_TRUE(Collect(*engine->Generate(Request("a", ref))).status.ok());  // b is now the LRU
  ASSERT_TRUE(Load(*engine, "c").ok());
  EXPECT_EQ(StateOf(*engine, "a"), ModelState::kReady);
  EXPECT_EQ(StateOf(*engine, "b"), ModelState::kEvicted);
  EXPECT_EQ(StateOf(*engine, "c"), ModelState::kReady);
  EXPECT_EQ(engine->ListModels().size(), 3u);  // evicted models stay registered

  // A request for the evicted model reloads it (evicting the LRU: a, used before c was
  // loaded) and is served.
  Collected c = Collect(*engine->Generate(Request("b", ref)));
  ASSERT_TRUE(c.status.ok()) << c.status;
  EXPECT_EQ(c.ids, ref.new_ids);
  EXPECT_EQ(StateOf(*engine, "b"), ModelState::kReady);
  EXPECT_EQ(StateOf(*engine, "a"), ModelState::kEvicted);
  EXPECT_EQ(StateOf(*engine, "c"), ModelState::kReady);
}

TEST(ResidencyTest, PinnedAndBusyModelsAreNeverEvicted) {
  EngineLimits limits;
  limits.max_loaded_models = 1;
  limits.max_stream_buffer_events = 1;  // an unread stream pauses its request: it stays in flight
  std::unique_ptr<Engine> engine = testing::MakeEngine(limits);
  const Reference ref = Greedy();
  ASSERT_TRUE(Load(*engine, "pinned", /*pin=*/true).ok());
  absl::Status refused = Load(*engine, "other");
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted) << refused;
  EXPECT_THAT(std::string(refused.message()), HasSubstr("max_loaded_models"));

  std::unique_ptr<Engine> busy_engine = testing::MakeEngine(limits);
  ASSERT_TRUE(Load(*busy_engine, "busy").ok());
  auto stream = busy_engine->Generate(Request("busy", ref, 32));
  ASSERT_TRUE(stream.ok());
  refused = Load(*busy_engine, "other");
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted) << refused;
  Collected done = Collect(*stream);  // the busy request finishes untouched
  EXPECT_TRUE(done.status.ok()) << done.status;
  EXPECT_EQ(done.ids.size(), 32u);
  EXPECT_TRUE(Load(*busy_engine, "other").ok());  // idle now: evicted for the newcomer
  EXPECT_EQ(StateOf(*busy_engine, "busy"), ModelState::kEvicted);
}

TEST(ResidencyTest, AMemoryBudgetForOneModelEvictsTheOtherAndUnloadFreesEverything) {
  std::unique_ptr<Engine> probe = testing::MakeEngine();
  ASSERT_TRUE(Load(*probe, "probe").ok());
  const DeviceReport one = probe->GetInfo().devices.at(0);
  const int64_t model_bytes = one.weight_bytes + one.kv_cache_bytes;
  ASSERT_GT(model_bytes, 0);

  EngineLimits limits;
  limits.cpu_memory_bytes = model_bytes + model_bytes / 2;  // room for one model, not two
  std::unique_ptr<Engine> engine = testing::MakeEngine(limits);
  StateLog log(*engine);
  const Reference ref = Greedy();
  ASSERT_TRUE(Load(*engine, "a").ok());
  ASSERT_TRUE(Load(*engine, "b").ok());
  EXPECT_TRUE(log.WaitFor("a", ModelState::kEvicted));
  EXPECT_EQ(engine->GetInfo().devices.at(0).weight_bytes + engine->GetInfo().devices.at(0).kv_cache_bytes,
            model_bytes);
  Collected c = Collect(*engine->Generate(Request("a", ref)));
  ASSERT_TRUE(c.status.ok()) << c.status;
  EXPECT_EQ(c.ids, ref.new_ids);
  EXPECT_EQ(StateOf(*engine, "b"), ModelState::kEvicted);

  for (const char* name : {"a", "b"}) {
    absl::Notification done;
    engine->UnloadModel(name, /*drain=*/true, [&](absl::StatusOr<UnloadResult> r) {
      EXPECT_TRUE(r.ok()) << r.status();
      done.Notify();
    });
    done.WaitForNotification();
  }
  const DeviceReport after = engine->GetInfo().devices.at(0);
  EXPECT_EQ(after.free_bytes, after.budget_bytes);
  EXPECT_TRUE(engine->ListModels().empty());
}

TEST(ResidencyTest, AnIdleModelPastItsKeepAliveIsEvictedAndComesBackOnDemand) {
  std::unique_ptr<Engine> engine = testing::MakeEngine();
  StateLog log(*engine);
  const Reference ref = Greedy();
  ASSERT_TRUE(Load(*engine, "short", /*pin=*/false, /*keep_alive_ms=*/50).ok());
  ASSERT_TRUE(Load(*engine, "forever", /*pin=*/false, /*keep_alive_ms=*/-1).ok());
  ASSERT_TRUE(log.WaitFor("short", ModelState::kEvicted));
  EXPECT_EQ(StateOf(*engine, "forever"), ModelState::kReady);
  EXPECT_EQ(engine->GetInfo().devices.at(0).weight_bytes, engine->GetModel("forever")->weight_bytes);
  Collected c = Collect(*engine->Generate(Request("short", ref)));
  ASSERT_TRUE(c.status.ok()) << c.status;
  EXPECT_EQ(c.ids, ref.new_ids);
}

// Several logical CPU devices (EngineLimits::logical_cpu_device_bytes): the daemon's engine
// splits a model as the planner says, runs each layer on its device, reports memory per
// device, and generates what one device generates.
TEST(LogicalDevicesTest, TheEngineSplitsAModelAcrossLogicalDevicesAndGeneratesTheSameTokens) {
  EngineLimits limits;
  limits.logical_cpu_device_bytes = {int64_t{64} << 20, int64_t{64} << 20};
  std::unique_ptr<Engine> engine = testing::MakeEngine(limits);
  ASSERT_NE(engine, nullptr);
  const Reference ref = Greedy();
  LoadModelOptions options;
  options.model = "llama_tiny";
  options.device_map_strategy = "balanced";
  ModelInfo info;
  ASSERT_TRUE(LoadAndWait(*engine, options, &info).ok());
  std::set<std::string> devices;
  for (const auto& [module, device] : info.device_map) devices.insert(device);
  EXPECT_GE(devices.size(), 2u) << "balanced over two devices must use both";
  Collected c = Collect(*engine->Generate(Request("llama_tiny", ref)));
  ASSERT_TRUE(c.status.ok()) << c.status;
  EXPECT_EQ(c.ids, ref.new_ids);
  int64_t weights = 0, used_devices = 0;
  for (const DeviceReport& d : engine->GetInfo().devices) {
    weights += d.weight_bytes;
    used_devices += d.weight_bytes > 0;
  }
  EXPECT_EQ(weights, info.weight_bytes);
  EXPECT_GE(used_devices, 2);
}

}  // namespace
}  // namespace kiln::engine
