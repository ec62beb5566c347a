// Placement in the LoadModel pipeline (engine/runtime/model_loader.cc + placement_glue.cc):
// device_map / max_memory through the real planner on this build's CPU-only inventory,
// quantization-aware sizes, explicit maps, the memory ledger's reservations and their release,
// and ModelInfo.device_map (the hf_device_map). Multi-device (issue #7): an inventory of
// logical CPU devices with their own budgets, one backend per device, models split where the
// planner says, ledger reservations per device, and the same tokens as one device.
#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <span>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "engine/io/model_store.h"
#include "engine/model/causal_lm.h"
#include "engine/model/model_config.h"
#include "engine/placement/ledger.h"
#include "engine/placement/module_sizes.h"
#include "engine/quant/bnb_config.h"
#include "engine/runtime/model_loader.h"
#include "engine/runtime/placement_glue.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/backend_factory.h"

namespace kiln::engine {
namespace {

using placement::Device;
using placement::MemoryKind;
using placement::MemoryLedger;
using ::testing::HasSubstr;

const std::string kModels = std::string(KILN_SOURCE_DIR) + "/tests/golden/fixtures/models";
// llama_tiny: 2 layers x 2 kv heads x 12 dims x (K+V) x 4 bytes = 384 bytes per token; 16-token
// blocks of 6 KiB. Eight of them keep the KV small next to the weights.
constexpr int64_t kKvBytes = 8 * 6144;

using DeviceMap = std::map<std::string, std::string>;

class PlacementLoaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<kernels::Backend>> b =
        kernels::CreateBackend({.kind = kernels::BackendKind::kCpu, .num_threads = 1});
    ASSERT_TRUE(b.ok()) << b.status();
    backend_ = *std::move(b);
  }

  static LoadModelOptions Opts(const std::string& model, const std::string& served = "") {
    LoadModelOptions o;
    o.model = model;
    o.served_name = served;
    o.kv_cache_bytes = kKvBytes;
    return o;
  }

  static LoadModelOptions Nf4(LoadModelOptions o) {
    BitsAndBytesOptions bnb;
    bnb.load_in_4bit = true;
    bnb.bnb_4bit_quant_type = "nf4";
    o.bitsandbytes = bnb;
    return o;
  }

  static std::unique_ptr<MemoryLedger> Ledger(int64_t cpu_bytes) {
    EngineLimits limits;
    limits.cpu_memory_bytes = cpu_bytes;
    absl::StatusOr<std::unique_ptr<MemoryLedger>> l = MemoryLedger::Create(DeviceInventory(limits));
    EXPECT_TRUE(l.ok()) << l.status();
    return l.ok() ? *std::move(l) : nullptr;
  }

  absl::StatusOr<LoadedModel> Load(const LoadModelOptions& o, MemoryLedger* ledger,
                                   EngineLimits limits = {}) {
    return LoadResidentModel(o, store_, limits, *backend_, nullptr, ledger);
  }

  // What the planner counts for the fixture (its sizes are checked against transformers by
  // tests/golden/placement): the bytes a RESOURCE_EXHAUSTED message must name.
  static int64_t PlannedBytes(const std::string& model, kernels::DType dtype,
                              std::optional<quant::BnbQuantConfig> bnb = std::nullopt) {
    absl::StatusOr<ModelConfig> config = LoadModelConfig(kModels + "/" + model);
    EXPECT_TRUE(config.ok()) << config.status();
    if (!config.ok()) return -1;
    absl::StatusOr<placement::ModelLayout> layout =
        placement::BuildModelLayout(*config, {.dtype = dtype, .bnb = bnb});
    EXPECT_TRUE(layout.ok()) << layout.status();
    return layout.ok() ? static_cast<int64_t>(std::ceil(layout->TotalBytes())) : -1;
  }

  static int64_t KindBytes(const MemoryLedger& ledger, MemoryKind kind) {
    int64_t total = 0;
    for (const auto& s : ledger.Snapshot()) total += s.by_kind[static_cast<int>(kind)];
    return total;
  }

  ModelStore store_{{kModels}, ""};
  std::unique_ptr<kernels::Backend> backend_;
};

TEST_F(PlacementLoaderTest, EveryStrategyOnACpuOnlyInventoryPlacesEverythingOnCpu) {
  auto ledger = Ledger(int64_t{1} << 30);
  for (const std::string model : {"llama_tiny", "gpt2_tiny"}) {
    for (const std::string strategy : {"", "auto", "balanced", "balanced_low_0", "sequential", "cpu"}) {
      LoadModelOptions o = Opts(model);
      o.device_map_strategy = strategy;
      absl::StatusOr<LoadedModel> loaded = Load(o, ledger.get());
      ASSERT_TRUE(loaded.ok()) << model << " device_map=\"" << strategy << "\": " << loaded.status();
      EXPECT_EQ(loaded->info.device_map, (DeviceMap{{"", "cpu"}})) << model << " " << strategy;
    }
  }
  EXPECT_TRUE(ledger->AllReleased());
}

TEST_F(PlacementLoaderTest, GpuNamesAreRefusedNamingTheDevice) {
  auto ledger = Ledger(int64_t{1} << 30);
  for (const std::string device : {"cuda:0", "cuda", "0", "cuda:1"}) {
    LoadModelOptions o = Opts("llama_tiny");
    o.device_map_strategy = device;
    absl::StatusOr<LoadedModel> loaded = Load(o, ledger.get());
    ASSERT_EQ(loaded.status().code(), absl::StatusCode::kInvalidArgument) << device << ": " << loaded.status();
    EXPECT_THAT(loaded.status().message(), HasSubstr(device == "cuda:1" ? "cuda:1" : "cuda:0"));
    EXPECT_THAT(loaded.status().message(), HasSubstr("devices: cpu"));
  }
  LoadModelOptions mm = Opts("llama_tiny");
  mm.device_map_strategy = "auto";
  mm.max_memory = {{"0", "1GiB"}, {"cpu", "1GiB"}};
  absl::StatusOr<LoadedModel> loaded = Load(mm, ledger.get());
  ASSERT_EQ(loaded.status().code(), absl::StatusCode::kInvalidArgument) << loaded.status();
  EXPECT_THAT(loaded.status().message(), HasSubstr("max_memory[\"0\"]"));
  EXPECT_THAT(loaded.status().message(), HasSubstr("cuda:0"));

  LoadModelOptions disk = Opts("llama_tiny");
  disk.device_map_strategy = "disk";
  EXPECT_EQ(Load(disk, ledger.get()).status().code(), absl::StatusCode::kUnimplemented);
  LoadModelOptions bad = Opts("llama_tiny");
  bad.max_memory = {{"cpu", "lots"}};
  loaded = Load(bad, ledger.get());
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(loaded.status().message(), HasSubstr("max_memory[\"cpu\"]"));
  EXPECT_TRUE(ledger->AllReleased());
}

TEST_F(PlacementLoaderTest, MaxMemoryTooSmallIsResourceExhaustedNamingBytes) {
  auto ledger = Ledger(int64_t{1} << 30);
  const int64_t needed = PlannedBytes("llama_tiny", kernels::DType::kF32);
  ASSERT_GT(needed, 10000);
  for (const std::string strategy : {"", "cpu", "auto", "sequential"}) {
    LoadModelOptions o = Opts("llama_tiny");
    o.device_map_strategy = strategy;
    o.max_memory = {{"cpu", "10KB"}};
    absl::StatusOr<LoadedModel> loaded = Load(o, ledger.get());
    ASSERT_EQ(loaded.status().code(), absl::StatusCode::kResourceExhausted) << strategy << ": " << loaded.status();
    EXPECT_THAT(loaded.status().message(), HasSubstr(std::to_string(needed) + " bytes")) << strategy;
    EXPECT_THAT(loaded.status().message(), HasSubstr("cpu budget 10000 bytes")) << strategy;
  }
  EXPECT_TRUE(ledger->AllReleased());
}

TEST_F(PlacementLoaderTest, LedgerCapacityIsTheBudgetAndAFailedLoadHoldsNothing) {
  // No max_memory: the CPU budget is what the ledger has free.
  auto small = Ledger(10000);
  absl::StatusOr<LoadedModel> loaded = Load(Opts("llama_tiny"), small.get());
  ASSERT_EQ(loaded.status().code(), absl::StatusCode::kResourceExhausted) << loaded.status();
  EXPECT_THAT(loaded.status().message(),
              HasSubstr(std::to_string(PlannedBytes("llama_tiny", kernels::DType::kF32)) + " bytes"));
  EXPECT_TRUE(small->AllReleased());

  // Without a ledger, the engine's cpu_memory_bytes is the budget all the same.
  EngineLimits limits;
  limits.cpu_memory_bytes = 10000;
  EXPECT_EQ(Load(Opts("llama_tiny"), nullptr, limits).status().code(), absl::StatusCode::kResourceExhausted);
  limits.cpu_memory_bytes = int64_t{1} << 30;
  loaded = Load(Opts("llama_tiny"), nullptr, limits);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_TRUE(loaded->reservations.empty());
}

TEST_F(PlacementLoaderTest, FourBitFitsACpuBudgetThatFp32DoesNot) {
  const int64_t fp32 = PlannedBytes("llama_tiny", kernels::DType::kF32);
  BitsAndBytesOptions bnb_options;
  bnb_options.load_in_4bit = true;
  bnb_options.bnb_4bit_quant_type = "nf4";
  absl::StatusOr<quant::BnbQuantConfig> bnb = quant::ValidateBitsAndBytes(bnb_options);
  ASSERT_TRUE(bnb.ok()) << bnb.status();
  const int64_t nf4 = PlannedBytes("llama_tiny", kernels::DType::kF32, *bnb);
  ASSERT_LT(nf4, fp32);

  // max_memory between the two plans.
  auto ledger = Ledger(int64_t{1} << 30);
  const std::string budget = std::to_string((nf4 + fp32) / 2);
  LoadModelOptions o = Opts("llama_tiny");
  o.max_memory = {{"cpu", budget}};
  absl::StatusOr<LoadedModel> dense = Load(o, ledger.get());
  EXPECT_EQ(dense.status().code(), absl::StatusCode::kResourceExhausted) << dense.status();
  absl::StatusOr<LoadedModel> quantized = Load(Nf4(o), ledger.get());
  ASSERT_TRUE(quantized.ok()) << quantized.status();
  EXPECT_EQ(quantized->info.quantization, "nf4");
  EXPECT_EQ(quantized->info.device_map, (DeviceMap{{"", "cpu"}}));
  // The ledger holds what the model really allocated (packed weights plus absmax).
  EXPECT_EQ(KindBytes(*ledger, MemoryKind::kWeights), quantized->info.weight_bytes);
  const int64_t nf4_held = quantized->info.weight_bytes + quantized->info.kv_cache_bytes;
  quantized = absl::CancelledError("dropped");
  ASSERT_TRUE(ledger->AllReleased());

  // A ledger (the engine's CPU budget) between the two.
  ASSERT_LT(nf4_held, fp32 + kKvBytes);
  auto between = Ledger((nf4_held + fp32 + kKvBytes) / 2);
  EXPECT_EQ(Load(Opts("llama_tiny"), between.get()).status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(between->AllReleased());
  absl::StatusOr<LoadedModel> fits = Load(Nf4(Opts("llama_tiny")), between.get());
  ASSERT_TRUE(fits.ok()) << fits.status();
  EXPECT_EQ(between->OwnerBytes("llama_tiny"), nf4_held);
}

TEST_F(PlacementLoaderTest, ExplicitMapCoveringEveryModuleOnCpuLoads) {
  auto ledger = Ledger(int64_t{1} << 30);
  const DeviceMap coarse = {{"model.embed_tokens", "cpu"}, {"model.layers", "cpu"}, {"model.norm", "cpu"},
                            {"lm_head", "cpu"}};
  const DeviceMap fine = {{"model.embed_tokens", "cpu"}, {"model.layers.0", "cpu"}, {"model.layers.1", "cpu"},
                          {"model.norm", "cpu"}, {"lm_head", "cpu"}};
  for (const DeviceMap& map : {coarse, fine}) {
    LoadModelOptions o = Opts("llama_tiny");
    o.device_map_explicit = map;
    absl::StatusOr<LoadedModel> loaded = Load(o, ledger.get());
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    // transformers keeps an explicit map as given in hf_device_map.
    EXPECT_EQ(loaded->info.device_map, map);
  }
  // gpt2_tiny ties lm_head to transformer.wte: the tied weight follows it, no entry needed.
  LoadModelOptions gpt2 = Opts("gpt2_tiny");
  gpt2.device_map_explicit = {{"transformer", "cpu"}};
  absl::StatusOr<LoadedModel> loaded = Load(gpt2, ledger.get());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->info.device_map, (DeviceMap{{"transformer", "cpu"}}));
}

TEST_F(PlacementLoaderTest, IncompleteOrWrongExplicitMapsAreRefusedByName) {
  auto ledger = Ledger(int64_t{1} << 30);
  auto load = [&](DeviceMap map) {
    LoadModelOptions o = Opts("llama_tiny");
    o.device_map_explicit = std::move(map);
    return Load(o, ledger.get()).status();
  };
  absl::Status s = load({{"model.embed_tokens", "cpu"}, {"model.layers", "cpu"}, {"model.norm", "cpu"}});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(s.message(), HasSubstr("lm_head.weight"));
  s = load({{"model.embed_tokens", "cpu"}, {"model.layers.0", "cpu"}, {"model.norm", "cpu"}, {"lm_head", "cpu"}});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(s.message(), HasSubstr("model.layers.1."));
  s = load({{"model", "cpu"}, {"lm_head", "cpu"}, {"model.decoder", "cpu"}});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(s.message(), HasSubstr("model.decoder"));
  s = load({{"model", "cpu"}, {"lm_head", "cuda:0"}});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(s.message(), HasSubstr("cuda:0"));
  LoadModelOptions both = Opts("llama_tiny");
  both.device_map_strategy = "auto";
  both.device_map_explicit = {{"", "cpu"}};
  s = Load(both, ledger.get()).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_TRUE(ledger->AllReleased());
}

TEST_F(PlacementLoaderTest, ReservationsMatchTheModelAndReturnToZeroAcrossCycles) {
  auto ledger = Ledger(int64_t{1} << 30);
  int64_t first_cycle = -1;
  for (int cycle = 0; cycle < 3; ++cycle) {
    absl::StatusOr<LoadedModel> a = Load(Opts("llama_tiny", "a"), ledger.get());
    ASSERT_TRUE(a.ok()) << a.status();
    absl::StatusOr<LoadedModel> b = Load(Nf4(Opts("llama_tiny", "b")), ledger.get());
    ASSERT_TRUE(b.ok()) << b.status();
    EXPECT_EQ(ledger->OwnerBytes("a"), a->info.weight_bytes + a->info.kv_cache_bytes);
    EXPECT_EQ(ledger->OwnerBytes("b"), b->info.weight_bytes + b->info.kv_cache_bytes);
    EXPECT_EQ(KindBytes(*ledger, MemoryKind::kWeights), a->info.weight_bytes + b->info.weight_bytes);
    EXPECT_EQ(KindBytes(*ledger, MemoryKind::kKv), a->info.kv_cache_bytes + b->info.kv_cache_bytes);
    const std::vector<placement::DeviceMemorySnapshot> snap = ledger->Snapshot();
    ASSERT_EQ(snap.size(), 1u);
    EXPECT_EQ(snap[0].device, Device::Cpu());
    if (first_cycle < 0) first_cycle = snap[0].used_bytes;
    EXPECT_EQ(snap[0].used_bytes, first_cycle) << "cycle " << cycle;  // no growth
    a = absl::CancelledError("unloaded");
    EXPECT_EQ(ledger->OwnerBytes("a"), 0);
    EXPECT_FALSE(ledger->AllReleased());
    b = absl::CancelledError("unloaded");
    EXPECT_TRUE(ledger->AllReleased()) << "cycle " << cycle;
  }
}

TEST_F(PlacementLoaderTest, APlanUsesWhatIsFreeNow) {
  // Room for one llama_tiny (weights + KV) and a little more, not two.
  auto probe = Ledger(int64_t{1} << 30);
  absl::StatusOr<LoadedModel> sized = Load(Opts("llama_tiny"), probe.get());
  ASSERT_TRUE(sized.ok()) << sized.status();
  const int64_t one = probe->OwnerBytes("llama_tiny");
  auto ledger = Ledger(one + one / 2);
  absl::StatusOr<LoadedModel> first = Load(Opts("llama_tiny", "first"), ledger.get());
  ASSERT_TRUE(first.ok()) << first.status();
  absl::StatusOr<LoadedModel> second = Load(Opts("llama_tiny", "second"), ledger.get());
  ASSERT_EQ(second.status().code(), absl::StatusCode::kResourceExhausted) << second.status();
  EXPECT_THAT(second.status().message(), HasSubstr("cpu"));
  EXPECT_EQ(ledger->OwnerBytes("second"), 0);
  first = absl::CancelledError("unloaded");
  second = Load(Opts("llama_tiny", "second"), ledger.get());
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(ledger->OwnerBytes("second"), one);
}

// ---- several logical CPU devices --------------------------------------------------------

// Greedy tokens (and every step's logits) of one sequence through a loaded model's forward.
struct Greedy {
  std::vector<int32_t> tokens;
  std::vector<std::vector<float>> logits;
};
Greedy RunGreedy(LoadedModel& m, int steps) {
  Greedy g;
  std::vector<int32_t> seq = {3, 17, 42, 5, 9};
  std::vector<int32_t> table;
  for (int32_t b = 0; b < m.parts.kv_cache->num_blocks(); ++b) table.push_back(b);
  size_t fed = 0;
  for (int step = 0; step < steps; ++step) {
    ForwardBatch batch;
    batch.sequences.push_back({.token_ids = std::span<const int32_t>(seq).subspan(fed),
                               .start_pos = static_cast<int32_t>(fed),
                               .block_table = table});
    ForwardOutput out;
    absl::Status s = m.parts.model->Forward(batch, *m.parts.kv_cache, &out);
    EXPECT_TRUE(s.ok()) << s;
    if (!s.ok()) break;
    std::span<const float> row = out.Last(0);
    g.logits.emplace_back(row.begin(), row.end());
    fed = seq.size();
    seq.push_back(static_cast<int32_t>(std::max_element(row.begin(), row.end()) - row.begin()));
    g.tokens.push_back(seq.back());
  }
  return g;
}

class LogicalDevicesTest : public PlacementLoaderTest {
 protected:
  // Planner GPU i is logical CPU device i + 1; the host CPU is backend_ (logical device 0).
  void MakeDevices(int n) {
    limits_.cpu_memory_bytes = int64_t{1} << 30;
    limits_.logical_cpu_device_bytes.assign(static_cast<size_t>(n), int64_t{64} << 20);
    backends_[Device::Cpu()] = backend_.get();
    for (int i = 0; i < n; ++i) {
      auto b = kernels::CreateBackend({.kind = kernels::BackendKind::kCpu, .num_threads = 1, .logical_device = i + 1});
      ASSERT_TRUE(b.ok()) << b.status();
      backends_[Device::Gpu(i)] = b->get();
      logical_.push_back(*std::move(b));
    }
  }
  std::unique_ptr<MemoryLedger> NewLedger() const {
    auto l = MemoryLedger::Create(DeviceInventory(limits_));
    EXPECT_TRUE(l.ok()) << l.status();
    return l.ok() ? *std::move(l) : nullptr;
  }
  absl::StatusOr<LoadedModel> LoadSplit(const LoadModelOptions& o, MemoryLedger* ledger) {
    return LoadResidentModel(o, store_, limits_, backends_, nullptr, ledger);
  }
  // The hf_device_map the planner gives for `o` against a fresh ledger's free bytes.
  std::map<std::string, std::string> PlannerMap(const LoadModelOptions& o) const {
    auto config = LoadModelConfig(kModels + "/" + o.model);
    EXPECT_TRUE(config.ok()) << config.status();
    auto parsed = ParsePlacementOptions(o);
    EXPECT_TRUE(parsed.ok()) << parsed.status();
    std::vector<Device> executable;
    for (const auto& [d, b] : backends_) executable.push_back(d);
    auto placed = PlanModelPlacement(*config, kernels::DType::kF32, std::nullopt, *parsed, FreeInventory(*NewLedger()),
                                     nullptr, executable);
    EXPECT_TRUE(placed.ok()) << placed.status();
    return placed.ok() ? HfDeviceMap(placed->plan) : std::map<std::string, std::string>{};
  }

  EngineLimits limits_;
  DeviceBackends backends_;
  std::vector<std::unique_ptr<kernels::Backend>> logical_;
};

TEST_F(LogicalDevicesTest, SplitLoadsFollowThePlanReservePerDeviceAndGenerateTheSameTokens) {
  MakeDevices(3);
  for (const std::string model : {"llama_tiny", "qwen2_tiny", "gpt2_tiny"}) {
    for (const std::string strategy : {"auto", "balanced", "sequential", "explicit"}) {
      SCOPED_TRACE(model + " " + strategy);
      LoadModelOptions o = Opts(model);
      if (strategy == "explicit") {
        o.device_map_explicit = model == "gpt2_tiny"
                                    ? DeviceMap{{"transformer.wte", "0"}, {"transformer.wpe", "1"},
                                                {"transformer.h.0", "1"}, {"transformer.h.1", "2"},
                                                {"transformer.ln_f", "2"}, {"lm_head", "0"}}
                                    : DeviceMap{{"model.embed_tokens", "0"}, {"model.layers.0", "1"},
                                                {"model.layers.1", "2"}, {"model.norm", "2"}, {"lm_head", "0"}};
      } else {
        o.device_map_strategy = strategy;
      }
      if (strategy == "sequential") {  // a small first device so the fill spills onto the next
        auto probe = Load(Opts(model), nullptr);  // its own ledger, nothing held afterwards
        ASSERT_TRUE(probe.ok()) << probe.status();
        o.max_memory = {{"0", std::to_string(probe->info.weight_bytes * 8 / 10)}, {"1", "64MiB"}, {"2", "64MiB"}};
      }
      auto ledger = NewLedger();
      absl::StatusOr<LoadedModel> split = LoadSplit(o, ledger.get());
      ASSERT_TRUE(split.ok()) << split.status();
      EXPECT_EQ(split->info.device_map, PlannerMap(o));
      std::set<std::string> used;
      for (const auto& [prefix, device] : split->info.device_map) used.insert(device);
      EXPECT_GE(used.size(), 2u) << "not split";

      // Per device: the ledger holds what the model and its KV hold there, and only the
      // devices the map names hold weights.
      std::map<Device, int64_t> weights, kv;
      for (const DeviceBytes& d : split->parts.model->weight_bytes_by_device()) {
        weights[*PlannerDeviceOf(backends_, d.device)] += static_cast<int64_t>(d.bytes);
      }
      for (const DeviceBytes& d : split->parts.kv_cache->bytes_by_device()) {
        kv[*PlannerDeviceOf(backends_, d.device)] += static_cast<int64_t>(d.bytes);
      }
      for (const placement::DeviceMemorySnapshot& snap : ledger->Snapshot()) {
        EXPECT_EQ(snap.by_kind[static_cast<int>(MemoryKind::kWeights)], weights[snap.device]) << snap.device.Name();
        EXPECT_EQ(snap.by_kind[static_cast<int>(MemoryKind::kKv)], kv[snap.device]) << snap.device.Name();
        EXPECT_EQ(weights[snap.device] > 0, used.count(snap.device.HfName()) > 0) << snap.device.Name();
      }
      EXPECT_EQ(ledger->OwnerBytes(model), split->info.weight_bytes + split->info.kv_cache_bytes);

      auto single_ledger = Ledger(int64_t{1} << 30);
      absl::StatusOr<LoadedModel> single = Load(Opts(model), single_ledger.get());
      ASSERT_TRUE(single.ok()) << single.status();
      const Greedy a = RunGreedy(*split, 8), b = RunGreedy(*single, 8);
      EXPECT_EQ(a.tokens, b.tokens);
      EXPECT_EQ(a.logits, b.logits);  // bit-identical: the same CPU ops on copied activations
      split = absl::CancelledError("unloaded");
      EXPECT_TRUE(ledger->AllReleased());
    }
  }
}

TEST_F(LogicalDevicesTest, APlanOnADeviceWithoutABackendIsUnimplemented) {
  MakeDevices(2);
  auto ledger = NewLedger();
  LoadModelOptions o = Opts("llama_tiny");
  o.device_map_strategy = "1";
  // The ledger lists logical devices, but this load only has the host backend.
  absl::Status s = Load(o, ledger.get(), limits_).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented) << s;
  EXPECT_THAT(s.message(), HasSubstr("cuda:1"));
  EXPECT_TRUE(ledger->AllReleased());
  // With the device's backend it loads there.
  absl::StatusOr<LoadedModel> loaded = LoadSplit(o, ledger.get());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->info.device_map, (DeviceMap{{"", "1"}}));
  ASSERT_EQ(loaded->parts.model->weight_bytes_by_device().size(), 1u);
  EXPECT_EQ(loaded->parts.model->weight_bytes_by_device()[0].device, backends_.at(Device::Gpu(1))->device());
}

TEST_F(LogicalDevicesTest, BadBackendTablesAreInvalidArgument) {
  MakeDevices(1);
  DeviceBackends dup = backends_;
  dup[Device::Gpu(1)] = backend_.get();  // the host backend twice
  auto ledger = NewLedger();
  EXPECT_EQ(LoadResidentModel(Opts("llama_tiny"), store_, limits_, dup, nullptr, ledger.get()).status().code(),
            absl::StatusCode::kInvalidArgument);
  DeviceBackends null_entry = backends_;
  null_entry[Device::Gpu(0)] = nullptr;
  EXPECT_EQ(LoadResidentModel(Opts("llama_tiny"), store_, limits_, null_entry, nullptr, ledger.get()).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(DeviceInventory(limits_).size(), 2u);  // gpu 0 (logical) + cpu
  EXPECT_EQ(DeviceInventory(limits_)[0].device, Device::Gpu(0));
  EXPECT_EQ(DeviceInventory(limits_)[0].capacity_bytes, int64_t{64} << 20);
}

TEST(PlacementGlueTest, ReserveExactlyGrowsAndShrinks) {
  EngineLimits limits;
  limits.cpu_memory_bytes = 1000;
  auto ledger = MemoryLedger::Create(DeviceInventory(limits));
  ASSERT_TRUE(ledger.ok());
  std::vector<placement::Reservation> held;
  ASSERT_TRUE(ReserveExactly(**ledger, &held, Device::Cpu(), MemoryKind::kWeights, "m", 300).ok());
  ASSERT_TRUE(ReserveExactly(**ledger, &held, Device::Cpu(), MemoryKind::kWeights, "m", 500).ok());
  EXPECT_EQ((*ledger)->OwnerBytes("m"), 500);
  ASSERT_TRUE(ReserveExactly(**ledger, &held, Device::Cpu(), MemoryKind::kKv, "m", 400).ok());
  absl::Status s = ReserveExactly(**ledger, &held, Device::Cpu(), MemoryKind::kWeights, "m", 700);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_EQ((*ledger)->OwnerBytes("m"), 900);  // growth failed: kept what it had
  ASSERT_TRUE(ReserveExactly(**ledger, &held, Device::Cpu(), MemoryKind::kWeights, "m", 100).ok());
  EXPECT_EQ((*ledger)->OwnerBytes("m"), 500);
  held.clear();
  EXPECT_TRUE((*ledger)->AllReleased());
  EXPECT_EQ(CpuMemoryBudget(limits), 1000);
  EXPECT_GT(CpuMemoryBudget(EngineLimits{}), 0);  // physical memory
}

}  // namespace
}  // namespace kiln::engine

namespace kiln::engine {
namespace {

// CUDA devices enter the inventory as accelerators when no logical CPU devices are configured,
// with min(free at startup, cuda_memory_percent % of total) bytes each (issue #7). The device
// list is what kernels::ListCudaDevices reports; here it is given, as on a 2-GPU machine.
TEST(DeviceInventoryTest, CudaDevicesBecomeAcceleratorsWithTheirBudget) {
  EngineLimits limits;
  limits.cpu_memory_bytes = 1000;
  limits.cuda_memory_percent = 50;
  std::vector<kernels::AcceleratorInfo> gpus(2);
  gpus[0].index = 0;
  gpus[0].total_bytes = 8000;
  gpus[0].free_bytes = 7000;  // fraction binds: 4000
  gpus[1].index = 1;
  gpus[1].total_bytes = 8000;
  gpus[1].free_bytes = 3000;  // another process holds memory: free binds
  const auto inventory = DeviceInventory(limits, gpus);
  ASSERT_EQ(inventory.size(), 3u);
  EXPECT_EQ(inventory[0].device, placement::Device::Gpu(0));
  EXPECT_EQ(inventory[0].capacity_bytes, 4000);
  EXPECT_EQ(inventory[1].device, placement::Device::Gpu(1));
  EXPECT_EQ(inventory[1].capacity_bytes, 3000);
  EXPECT_EQ(inventory[2].device, placement::Device::Cpu());
  EXPECT_EQ(inventory[2].capacity_bytes, 1000);

  limits.use_cuda = false;  // serve from the CPU alone on a GPU machine
  ASSERT_EQ(DeviceInventory(limits, gpus).size(), 1u);

  limits.use_cuda = true;
  limits.logical_cpu_device_bytes = {500};  // logical devices take the accelerator slots
  const auto logical = DeviceInventory(limits, gpus);
  ASSERT_EQ(logical.size(), 2u);
  EXPECT_EQ(logical[0].capacity_bytes, 500);

  limits.logical_cpu_device_bytes.clear();
  limits.cuda_memory_percent = 700;  // out of range: clamped to 100
  EXPECT_EQ(DeviceInventory(limits, gpus)[0].capacity_bytes, 7000);
  limits.cuda_memory_percent = -1;
  EXPECT_EQ(DeviceInventory(limits, gpus)[0].capacity_bytes, 0);
}

// Without a usable GPU (or without CUDA built) the list is empty and the note says why; with
// one, every device reports its memory.
TEST(DeviceInventoryTest, ListCudaDevicesReportsMemoryOrWhyNone) {
  std::string note;
  const auto devices = kernels::ListCudaDevices(&note);
  if (devices.empty()) {
    EXPECT_FALSE(note.empty());
  }
  for (const kernels::AcceleratorInfo& d : devices) {
    EXPECT_FALSE(d.name.empty());
    EXPECT_GT(d.total_bytes, 0);
    EXPECT_LE(d.free_bytes, d.total_bytes);
  }
}

}  // namespace
}  // namespace kiln::engine
