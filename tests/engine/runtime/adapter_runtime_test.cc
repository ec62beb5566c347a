// LoRA adapters through the engine (issue #6): Generate naming an adapter attaches it on the
// fly, concurrent requests share its load, different adapters share steps, a failed load fails
// only its requests, LoadAdapter/UnloadAdapter/ListAdapters, the default adapter of LoadModel
// and adapter auto-detection. Expected tokens are peft's greedy runs
// (tests/golden/fixtures/lora/lora.json, made by tools/fixtures/make_lora_fixtures.py).
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "prometheus/registry.h"
#include "prometheus/text_serializer.h"
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

struct GreedyRun {
  std::vector<int32_t> input_ids;
  std::vector<int32_t> new_ids;
};

// peft's greedy run of `adapter` with the largest top-1/top-2 margin (safe to compare exactly).
GreedyRun ReferenceRun(const std::string& adapter) {
  auto meta = ReadJsonFile(kFixtures + "/lora/lora.json", "lora.json");
  EXPECT_TRUE(meta.ok()) << meta.status();
  GreedyRun best;
  double margin = -1;
  for (const auto& run : (*meta)["adapters"][adapter]["greedy"]) {
    if (run["min_margin"].get<double>() > margin) {
      margin = run["min_margin"].get<double>();
      best.input_ids = run["input_ids"].get<std::vector<int32_t>>();
      best.new_ids = run["new_ids"].get<std::vector<int32_t>>();
    }
  }
  return best;
}

std::unique_ptr<Engine> MakeAdapterEngine(std::vector<std::string> extra_model_roots = {},
                                          std::shared_ptr<prometheus::Registry> registry = nullptr,
                                          EngineLimits limits = {}) {
  EngineOptions options;
  options.limits = std::move(limits);
  options.metrics_registry = std::move(registry);
  options.model_roots = {kFixtures + "/models"};
  for (std::string& root : extra_model_roots) options.model_roots.push_back(std::move(root));
  options.adapter_roots = {kFixtures + "/lora/adapters", kFixtures + "/lora/refused"};
  options.hub_cache = kFixtures + "/hub";
  options.num_compute_threads = 2;
  absl::StatusOr<std::unique_ptr<Engine>> engine = CreateEngine(std::move(options));
  EXPECT_TRUE(engine.ok()) << engine.status();
  return engine.ok() ? *std::move(engine) : nullptr;
}

GenerateRequest Greedy(const std::string& model, const std::string& adapter, std::vector<int32_t> ids,
                       int32_t n) {
  GenerateRequest r;
  r.request_id = "test";
  r.model = model;
  r.adapter = adapter;
  r.prompt_token_ids = std::move(ids);
  r.sampling.do_sample = false;
  r.stopping.max_new_tokens = n;
  r.stopping.min_new_tokens = n;
  r.stopping.ignore_eos = true;
  return r;
}

Collected GenerateAll(Engine& engine, GenerateRequest request) {
  absl::StatusOr<std::shared_ptr<GenerateStream>> stream = engine.Generate(std::move(request));
  if (!stream.ok()) {
    Collected c;
    c.status = stream.status();
    return c;
  }
  return Collect(*stream);
}

absl::StatusOr<AdapterInfo> LoadAdapterAndWait(Engine& engine, const LoadAdapterOptions& options) {
  absl::Notification done;
  absl::StatusOr<AdapterInfo> result = absl::UnknownError("no answer");
  engine.LoadAdapter(options, [&](absl::StatusOr<AdapterInfo> info) {
    result = std::move(info);
    done.Notify();
  });
  done.WaitForNotification();
  return result;
}

class AdapterRuntimeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    engine_ = MakeAdapterEngine();
    ASSERT_NE(engine_, nullptr);
    LoadModelOptions options;
    options.model = "llama_tiny";
    ASSERT_TRUE(LoadAndWait(*engine_, options, nullptr).ok());
  }
  std::unique_ptr<Engine> engine_;
};

TEST_F(AdapterRuntimeTest, GenerateAttachesTheAdapterOnFirstUseAndMatchesPeft) {
  const GreedyRun ref = ReferenceRun("llama_qv_r4");
  Collected c = GenerateAll(*engine_, Greedy("llama_tiny", "llama_qv_r4", ref.input_ids, 16));
  ASSERT_TRUE(c.status.ok()) << c.status;
  EXPECT_EQ(c.ids, ref.new_ids);
  // Now resident on the device; the base model still gives its own tokens.
  auto listed = engine_->ListAdapters("llama_tiny");
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].served_name, "llama_qv_r4");
  EXPECT_EQ((*listed)[0].state, AdapterState::kDevice);
  EXPECT_EQ((*listed)[0].rank, 4);
  EXPECT_GT((*listed)[0].bytes, 0);
  Collected base = GenerateAll(*engine_, Greedy("llama_tiny", "", ref.input_ids, 16));
  ASSERT_TRUE(base.status.ok()) << base.status;
  EXPECT_NE(base.ids, ref.new_ids);
}

TEST_F(AdapterRuntimeTest, ConcurrentRequestsWithDifferentAdaptersShareSteps) {
  const std::vector<std::string> adapters = {"llama_qv_r4", "llama_all_linear_rslora_r8", "llama_qv_r4",
                                             "llama_all_linear_rslora_r8", "llama_qv_r4"};
  std::vector<std::shared_ptr<GenerateStream>> streams;
  for (const std::string& a : adapters) {
    const GreedyRun ref = ReferenceRun(a);
    auto stream = engine_->Generate(Greedy("llama_tiny", a, ref.input_ids, 16));
    ASSERT_TRUE(stream.ok()) << stream.status();
    streams.push_back(*stream);
  }
  for (size_t i = 0; i < streams.size(); ++i) {
    Collected c = Collect(streams[i]);
    ASSERT_TRUE(c.status.ok()) << adapters[i] << ": " << c.status;
    EXPECT_EQ(c.ids, ReferenceRun(adapters[i]).new_ids) << adapters[i];
  }
  auto listed = engine_->ListAdapters("llama_tiny");
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->size(), 2u);  // each adapter loaded once, whatever the number of requests
}

TEST_F(AdapterRuntimeTest, AFailedLoadFailsItsRequestsOnlyAndIsRetried) {
  const GreedyRun ref = ReferenceRun("llama_qv_r4");
  Collected missing = GenerateAll(*engine_, Greedy("llama_tiny", "no_such_adapter", ref.input_ids, 4));
  EXPECT_EQ(missing.status.code(), absl::StatusCode::kNotFound) << missing.status;
  EXPECT_THAT(std::string(missing.status.message()), HasSubstr("no_such_adapter"));
  Collected dora = GenerateAll(*engine_, Greedy("llama_tiny", "use_dora", ref.input_ids, 4));
  EXPECT_EQ(dora.status.code(), absl::StatusCode::kUnimplemented) << dora.status;
  EXPECT_THAT(std::string(dora.status.message()), HasSubstr("use_dora"));
  // Other traffic is untouched, and nothing failed stays registered.
  Collected ok = GenerateAll(*engine_, Greedy("llama_tiny", "llama_qv_r4", ref.input_ids, 16));
  ASSERT_TRUE(ok.status.ok()) << ok.status;
  EXPECT_EQ(ok.ids, ref.new_ids);
  auto listed = engine_->ListAdapters("llama_tiny");
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->size(), 1u);
  // Bad names never reach the disk.
  Collected escape = GenerateAll(*engine_, Greedy("llama_tiny", "../models/llama_tiny", ref.input_ids, 4));
  EXPECT_EQ(escape.status.code(), absl::StatusCode::kInvalidArgument) << escape.status;
}

TEST_F(AdapterRuntimeTest, LoadAdapterUnderAServedNamePinsAndUnloads) {
  LoadAdapterOptions options;
  options.model = "llama_tiny";
  options.adapter = "llama_qv_r4";
  options.served_name = "support-bot";
  options.pin = true;
  absl::StatusOr<AdapterInfo> info = LoadAdapterAndWait(*engine_, options);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->served_name, "support-bot");
  EXPECT_EQ(info->adapter, "llama_qv_r4");
  EXPECT_TRUE(info->pinned);
  EXPECT_EQ(info->state, AdapterState::kDevice);
  EXPECT_THAT(info->target_modules, ::testing::Contains("model.layers.0.self_attn.q_proj"));
  // The memory ledger accounts for the adapter's device bytes.
  ASSERT_EQ(engine_->GetInfo().devices.size(), 1u);
  EXPECT_EQ(engine_->GetInfo().devices[0].adapter_bytes, info->bytes);

  const GreedyRun ref = ReferenceRun("llama_qv_r4");
  Collected c = GenerateAll(*engine_, Greedy("llama_tiny", "support-bot", ref.input_ids, 16));
  ASSERT_TRUE(c.status.ok()) << c.status;
  EXPECT_EQ(c.ids, ref.new_ids);

  absl::Notification done;
  absl::StatusOr<int64_t> freed = absl::UnknownError("no answer");
  engine_->UnloadAdapter("llama_tiny", "support-bot", /*force=*/false, [&](absl::StatusOr<int64_t> f) {
    freed = f;
    done.Notify();
  });
  done.WaitForNotification();
  ASSERT_TRUE(freed.ok()) << freed.status();
  EXPECT_EQ(*freed, info->bytes);
  EXPECT_EQ(engine_->GetInfo().devices[0].adapter_bytes, 0);
  auto listed = engine_->ListAdapters("llama_tiny");
  ASSERT_TRUE(listed.ok());
  EXPECT_TRUE(listed->empty());

  // A mismatched base is refused unless the caller overrides it.
  options.model = "llama_tiny";
  options.adapter = "qwen2_patterns";
  options.served_name = "";
  options.pin = false;
  absl::StatusOr<AdapterInfo> mismatch = LoadAdapterAndWait(*engine_, options);
  EXPECT_FALSE(mismatch.ok());
  EXPECT_THAT(std::string(mismatch.status().message()), HasSubstr("base_model_name_or_path"));
}

TEST(AdapterMetricsTest, LoadsResidencyAndPerAdapterRequestsAreExported) {
  auto registry = std::make_shared<prometheus::Registry>();
  std::unique_ptr<Engine> engine = MakeAdapterEngine({}, registry);
  ASSERT_NE(engine, nullptr);
  LoadModelOptions options;
  options.model = "llama_tiny";
  ASSERT_TRUE(LoadAndWait(*engine, options, nullptr).ok());
  const GreedyRun ref = ReferenceRun("llama_qv_r4");
  ASSERT_TRUE(GenerateAll(*engine, Greedy("llama_tiny", "llama_qv_r4", ref.input_ids, 4)).status.ok());
  EXPECT_FALSE(GenerateAll(*engine, Greedy("llama_tiny", "use_dora", ref.input_ids, 4)).status.ok());
  // Stats are published by the step loop: one more request makes sure a step ran after the loads.
  ASSERT_TRUE(GenerateAll(*engine, Greedy("llama_tiny", "", ref.input_ids, 1)).status.ok());
  const std::string text = prometheus::TextSerializer().Serialize(registry->Collect());
  EXPECT_THAT(text, HasSubstr(R"(kiln_adapter_loads_total{model="llama_tiny",status="ok"} 1)"));
  EXPECT_THAT(text, HasSubstr(R"(kiln_adapter_loads_total{model="llama_tiny",status="error"} 1)"));
  EXPECT_THAT(text, HasSubstr(R"(kiln_adapters_resident{model="llama_tiny",tier="device"} 1)"));
  EXPECT_THAT(text, HasSubstr(R"(kiln_adapter_load_duration_seconds_count{model="llama_tiny"} 1)"));
  EXPECT_THAT(text, HasSubstr(R"(kiln_generation_tokens_total{adapter="llama_qv_r4",model="llama_tiny"} 4)"));
}

TEST(AdapterModelTest, LoadModelWithADefaultAdapterAndAutoDetection) {
  std::unique_ptr<Engine> engine = MakeAdapterEngine({kFixtures + "/lora/adapters"});
  ASSERT_NE(engine, nullptr);
  const GreedyRun ref = ReferenceRun("llama_all_linear_rslora_r8");

  LoadModelOptions with_default;
  with_default.model = "llama_tiny";
  with_default.served_name = "tuned";
  with_default.adapter = "llama_all_linear_rslora_r8";
  ModelInfo info;
  ASSERT_TRUE(LoadAndWait(*engine, with_default, &info).ok());
  EXPECT_EQ(info.default_adapter, "llama_all_linear_rslora_r8");
  Collected c = GenerateAll(*engine, Greedy("tuned", "", ref.input_ids, 16));
  ASSERT_TRUE(c.status.ok()) << c.status;
  EXPECT_EQ(c.ids, ref.new_ids);

  // An adapter directory named as the model: its base loads with it as the default.
  LoadModelOptions detected;
  detected.model = "llama_all_linear_rslora_r8";
  ASSERT_TRUE(LoadAndWait(*engine, detected, &info).ok());
  EXPECT_EQ(info.default_adapter, "llama_all_linear_rslora_r8");
  c = GenerateAll(*engine, Greedy("llama_all_linear_rslora_r8", "", ref.input_ids, 16));
  ASSERT_TRUE(c.status.ok()) << c.status;
  EXPECT_EQ(c.ids, ref.new_ids);

  // A bad default adapter fails the LoadModel with its error.
  LoadModelOptions bad;
  bad.model = "llama_tiny";
  bad.served_name = "bad";
  bad.adapter = "lora_bias";
  absl::Status status = LoadAndWait(*engine, bad, nullptr);
  EXPECT_EQ(status.code(), absl::StatusCode::kUnimplemented) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr("lora_bias"));
}

TEST(AdapterModelTest, MergeAdapterFoldsItIntoTheWeights) {
  std::unique_ptr<Engine> engine = MakeAdapterEngine();
  ASSERT_NE(engine, nullptr);
  const GreedyRun ref = ReferenceRun("llama_all_linear_rslora_r8");
  LoadModelOptions merged;
  merged.model = "llama_tiny";
  merged.served_name = "merged";
  merged.adapter = "llama_all_linear_rslora_r8";
  merged.merge_adapter = true;
  ModelInfo info;
  ASSERT_TRUE(LoadAndWait(*engine, merged, &info).ok());
  EXPECT_EQ(info.default_adapter, "");  // the weights hold it; nothing is applied per token
  Collected c = GenerateAll(*engine, Greedy("merged", "", ref.input_ids, 16));
  ASSERT_TRUE(c.status.ok()) << c.status;
  EXPECT_EQ(c.ids, ref.new_ids);
  auto listed = engine->ListAdapters("merged");
  ASSERT_TRUE(listed.ok());
  EXPECT_TRUE(listed->empty());

  LoadModelOptions quantized = merged;
  quantized.served_name = "merged-nf4";
  quantized.bitsandbytes = BitsAndBytesOptions();
  quantized.bitsandbytes->load_in_4bit = true;
  absl::Status status = LoadAndWait(*engine, quantized, nullptr);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr("merge_adapter"));

  LoadModelOptions nothing;
  nothing.model = "llama_tiny";
  nothing.served_name = "nothing";
  nothing.merge_adapter = true;
  status = LoadAndWait(*engine, nothing, nullptr);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
}

// Unload returns every byte: weights, KV and adapters go back to the ledger, cycle after cycle.
TEST(AdapterModelTest, UnloadReturnsEveryByteAcrossCycles) {
  std::unique_ptr<Engine> engine = MakeAdapterEngine();
  ASSERT_NE(engine, nullptr);
  const GreedyRun ref = ReferenceRun("llama_qv_r4");
  int64_t first_freed = -1;
  for (int cycle = 0; cycle < 3; ++cycle) {
    LoadModelOptions options;
    options.model = "llama_tiny";
    ModelInfo info;
    ASSERT_TRUE(LoadAndWait(*engine, options, &info).ok());
    ASSERT_TRUE(GenerateAll(*engine, Greedy("llama_tiny", "llama_qv_r4", ref.input_ids, 2)).status.ok());
    const DeviceReport loaded = engine->GetInfo().devices.at(0);
    EXPECT_EQ(loaded.weight_bytes, info.weight_bytes);
    EXPECT_EQ(loaded.kv_cache_bytes, info.kv_cache_bytes);
    EXPECT_GT(loaded.adapter_bytes, 0);
    absl::Notification done;
    absl::StatusOr<UnloadResult> result = absl::UnknownError("no answer");
    engine->UnloadModel("llama_tiny", /*drain=*/true, [&](absl::StatusOr<UnloadResult> r) {
      result = r;
      done.Notify();
    });
    done.WaitForNotification();
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_EQ(result->freed_bytes, loaded.weight_bytes + loaded.kv_cache_bytes + loaded.adapter_bytes);
    if (first_freed < 0) first_freed = result->freed_bytes;
    EXPECT_EQ(result->freed_bytes, first_freed) << "cycle " << cycle;  // no growth
    const DeviceReport after = engine->GetInfo().devices.at(0);
    EXPECT_EQ(after.weight_bytes + after.kv_cache_bytes + after.adapter_bytes + after.workspace_bytes, 0)
        << "cycle " << cycle;
    EXPECT_EQ(after.free_bytes, after.budget_bytes);
  }
}

// A model split over two logical devices (issue #7): each adapter pair is uploaded to its
// layer's device, so the ledger books the adapter's bytes there, not on the CPU; the tokens
// are peft's; unloading returns every byte.
TEST(AdapterDevicesTest, ASplitModelBooksItsAdapterOnTheDevicesOfItsLayers) {
  EngineLimits limits;
  limits.logical_cpu_device_bytes = {int64_t{64} << 20, int64_t{64} << 20};
  std::unique_ptr<Engine> engine = MakeAdapterEngine({}, nullptr, limits);
  ASSERT_NE(engine, nullptr);
  LoadModelOptions options;
  options.model = "llama_tiny";
  options.device_map_strategy = "balanced";
  ModelInfo info;
  ASSERT_TRUE(LoadAndWait(*engine, options, &info).ok());
  std::set<std::string> layer_devices;  // "cuda:N" of every decoder layer
  for (const auto& [module, device] : info.device_map) {
    if (module.rfind("model.layers.", 0) == 0) layer_devices.insert(device == "cpu" ? device : "cuda:" + device);
  }
  ASSERT_FALSE(layer_devices.empty());

  const GreedyRun ref = ReferenceRun("llama_qv_r4");
  Collected c = GenerateAll(*engine, Greedy("llama_tiny", "llama_qv_r4", ref.input_ids, 16));
  ASSERT_TRUE(c.status.ok()) << c.status;
  EXPECT_EQ(c.ids, ref.new_ids);

  auto listed = engine->ListAdapters("llama_tiny");
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->size(), 1u);
  int64_t booked = 0;
  std::set<std::string> adapter_devices;
  for (const DeviceReport& d : engine->GetInfo().devices) {
    booked += d.adapter_bytes;
    if (d.adapter_bytes > 0) adapter_devices.insert(d.name);
  }
  EXPECT_EQ(booked, (*listed)[0].bytes);
  EXPECT_EQ(adapter_devices, layer_devices);  // q_proj/v_proj live in the layers; never "cpu"

  absl::Notification done;
  engine->UnloadAdapter("llama_tiny", "llama_qv_r4", /*force=*/false, [&](absl::StatusOr<int64_t> freed) {
    EXPECT_TRUE(freed.ok()) << freed.status();
    done.Notify();
  });
  done.WaitForNotification();
  for (const DeviceReport& d : engine->GetInfo().devices) EXPECT_EQ(d.adapter_bytes, 0) << d.name;
}

}  // namespace
}  // namespace kiln::engine
