// A model split across logical CPU devices (issue #7) computes exactly what the single-device
// model computes. Each logical device is a CpuBackend with its own logical_device index,
// wrapped in CheckedBackend, which refuses any op whose tensors live on another device: so a
// forward that forgot to move the residual stream, a KV layer or a LoRA pair fails loudly
// instead of silently reading another device's memory (on real GPUs it would fault).
//
// Placement comes from the real planner (engine/placement through engine/runtime's glue):
// explicit device maps, "balanced" and "sequential" with max_memory budgets.
//
// Exactness: the split model runs the same CPU kernels on the same values; moving activations
// is a byte copy, and kernel choice depends only on row counts, which do not change. So logits
// are compared bit for bit (EXPECT_EQ on floats), not within a tolerance.
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/adapter/adapter_loader.h"
#include "engine/adapter/base_modules.h"
#include "engine/io/checkpoint.h"
#include "engine/model/causal_lm.h"
#include "engine/model/layers.h"
#include "engine/model/lora.h"
#include "engine/model/model_config.h"
#include "engine/placement/planner.h"
#include "engine/quant/bnb_config.h"
#include "engine/runtime/placement_glue.h"
#include "gtest/gtest.h"
#include "kernels/backend_factory.h"
#include "tests/engine/model/checked_backend.h"

namespace kiln::engine {
namespace {

using placement::Device;

const std::string kFixtures = std::string(KILN_SOURCE_DIR) + "/tests/golden/fixtures/";
constexpr int32_t kBlockSize = 4;
constexpr int32_t kBlocksPerSeq = 16;

std::unique_ptr<kernels::Backend> Cpu(int logical_device) {
  auto b = kernels::CreateBackend({.kind = kernels::BackendKind::kCpu, .num_threads = 1,
                                   .logical_device = logical_device});
  EXPECT_TRUE(b.ok()) << b.status();
  return std::move(*b);
}

std::optional<quant::BnbQuantConfig> Nf4() {
  BitsAndBytesOptions o;
  o.load_in_4bit = true;
  o.bnb_4bit_quant_type = "nf4";
  o.bnb_4bit_use_double_quant = true;
  auto bnb = quant::ValidateBitsAndBytes(o);
  EXPECT_TRUE(bnb.ok()) << bnb.status();
  return *bnb;
}

// n logical devices (planner GPUs 0..n-1 on CPU backends 1..n) plus the host CPU (backend 0).
struct Devices {
  explicit Devices(int n) {
    for (int i = 0; i <= n; ++i) checked.push_back(std::make_unique<CheckedBackend>(Cpu(i)));
    table[Device::Cpu()] = checked[0].get();
    for (int i = 0; i < n; ++i) table[Device::Gpu(i)] = checked[static_cast<size_t>(i + 1)].get();
  }
  std::vector<Device> executable() const {
    std::vector<Device> out;
    for (const auto& [d, b] : table) out.push_back(d);
    return out;
  }
  std::vector<std::unique_ptr<CheckedBackend>> checked;
  DeviceBackends table;
};

struct Loaded {
  ModelConfig config;
  std::unique_ptr<CausalLm> lm;
  std::unique_ptr<KvCache> cache;
  placement::PlacementPlan plan;
  std::vector<std::unique_ptr<LoraWeights>> adapters;
};

LoadOptions BaseOptions(const std::optional<quant::BnbQuantConfig>& bnb) {
  LoadOptions options;
  options.dtype = kernels::DType::kF32;
  options.bitsandbytes = bnb;
  return options;
}

Loaded LoadSingle(const std::string& model, kernels::Backend& backend,
                  const std::optional<quant::BnbQuantConfig>& bnb = std::nullopt) {
  Loaded m;
  auto config = LoadModelConfig(kFixtures + "models/" + model);
  EXPECT_TRUE(config.ok()) << config.status();
  m.config = *config;
  auto ckpt = Checkpoint::Open(kFixtures + "models/" + model);
  EXPECT_TRUE(ckpt.ok()) << ckpt.status();
  auto lm = LoadCausalLm(m.config, **ckpt, BaseOptions(bnb), backend);
  EXPECT_TRUE(lm.ok()) << lm.status();
  if (!lm.ok()) return m;
  m.lm = std::move(*lm);
  auto cache = m.lm->CreateKvCache({.num_blocks = 2 * kBlocksPerSeq, .block_size = kBlockSize});
  EXPECT_TRUE(cache.ok()) << cache.status();
  if (cache.ok()) m.cache = std::move(*cache);
  return m;
}

// Plans `spec` (+ max_memory) with the real planner against the devices, then loads the model
// with each tensor on its planned device's backend.
Loaded LoadSplit(const std::string& model, Devices& devices, placement::DeviceMapSpec spec,
                 std::optional<placement::MaxMemory> max_memory,
                 const std::optional<quant::BnbQuantConfig>& bnb = std::nullopt) {
  Loaded m;
  auto config = LoadModelConfig(kFixtures + "models/" + model);
  EXPECT_TRUE(config.ok()) << config.status();
  m.config = *config;
  auto ckpt = Checkpoint::Open(kFixtures + "models/" + model);
  EXPECT_TRUE(ckpt.ok()) << ckpt.status();
  std::vector<placement::DeviceCapacity> inventory;
  for (const auto& [d, b] : devices.table) inventory.push_back({d, int64_t{1} << 30});
  PlacementOptions options{.device_map = std::move(spec), .max_memory = std::move(max_memory)};
  auto placed = PlanModelPlacement(m.config, kernels::DType::kF32, bnb, options, inventory, ckpt->get(),
                                   devices.executable());
  EXPECT_TRUE(placed.ok()) << placed.status();
  if (!placed.ok()) return m;
  m.plan = placed->plan;
  LoadOptions load = BaseOptions(bnb);
  load.tensor_backend = TensorBackends(m.plan, devices.table);
  auto lm = LoadCausalLm(m.config, **ckpt, load, *devices.table.at(Device::Cpu()));
  EXPECT_TRUE(lm.ok()) << lm.status();
  if (!lm.ok()) return m;
  m.lm = std::move(*lm);
  auto cache = m.lm->CreateKvCache({.num_blocks = 2 * kBlocksPerSeq, .block_size = kBlockSize});
  EXPECT_TRUE(cache.ok()) << cache.status();
  if (cache.ok()) m.cache = std::move(*cache);
  return m;
}

placement::DeviceMapSpec Explicit(const std::vector<std::pair<std::string, std::string>>& entries) {
  auto spec = placement::ParseExplicitDeviceMap(entries);
  EXPECT_TRUE(spec.ok()) << spec.status();
  return *spec;
}

placement::MaxMemory Budgets(const std::vector<std::pair<std::string, int64_t>>& entries) {
  std::vector<std::pair<std::string, std::string>> text;
  for (const auto& [d, bytes] : entries) text.push_back({d, std::to_string(bytes)});
  auto parsed = placement::ParseMaxMemory(text);
  EXPECT_TRUE(parsed.ok()) << parsed.status();
  return *parsed;
}

double TotalPlannedBytes(const placement::PlacementPlan& plan) {
  double total = 0;
  for (const placement::DeviceUsage& u : plan.usage) total += static_cast<double>(u.planned_bytes);
  return total;
}

std::vector<int32_t> Prompt(int n, int seed, int64_t vocab) {
  std::vector<int32_t> ids;
  for (int i = 0; i < n; ++i) ids.push_back(static_cast<int32_t>((seed * 131 + i * 37 + 5) % vocab));
  return ids;
}

int32_t Argmax(std::span<const float> row) {
  int32_t best = 0;
  for (size_t i = 1; i < row.size(); ++i) {
    if (row[i] > row[static_cast<size_t>(best)]) best = static_cast<int32_t>(i);
  }
  return best;
}

// Runs two sequences together: a prefill of both prompts (all logits), then `steps` greedy
// decode steps. Returns every logit produced, in order, and the generated tokens.
struct Trace {
  std::vector<std::vector<float>> logits;  // one entry per Forward
  std::vector<std::vector<int32_t>> tokens;
};
Trace Generate(Loaded& m, int steps, const std::vector<const LoraWeights*>& adapters = {nullptr, nullptr}) {
  Trace run;
  if (m.lm == nullptr || m.cache == nullptr) {
    ADD_FAILURE() << "model not loaded";
    return run;
  }
  const int64_t vocab = m.config.vocab_size;
  std::vector<std::vector<int32_t>> seqs = {Prompt(7, 1, vocab), Prompt(5, 2, vocab)};
  std::vector<std::vector<int32_t>> tables(2);
  for (int32_t s = 0; s < 2; ++s) {
    for (int32_t b = 0; b < kBlocksPerSeq; ++b) tables[static_cast<size_t>(s)].push_back(s * kBlocksPerSeq + b);
  }
  run.tokens.resize(2);
  std::vector<size_t> fed(2, 0);
  for (int step = 0; step <= steps; ++step) {
    ForwardBatch batch;
    for (size_t s = 0; s < 2; ++s) {
      batch.sequences.push_back({.token_ids = std::span<const int32_t>(seqs[s]).subspan(fed[s]),
                                 .start_pos = static_cast<int32_t>(fed[s]),
                                 .block_table = tables[s],
                                 .all_logits = step == 0,
                                 .lora = adapters[s]});
    }
    ForwardOutput out;
    absl::Status st = m.lm->Forward(batch, *m.cache, &out);
    EXPECT_TRUE(st.ok()) << st;
    if (!st.ok()) return run;
    run.logits.push_back(out.logits);
    for (size_t s = 0; s < 2; ++s) {
      fed[s] = seqs[s].size();
      const int32_t next = Argmax(out.Last(s));
      seqs[s].push_back(next);
      run.tokens[s].push_back(next);
    }
  }
  return run;
}

void ExpectIdentical(const Trace& split, const Trace& single) {
  ASSERT_EQ(split.logits.size(), single.logits.size());
  for (size_t i = 0; i < split.logits.size(); ++i) {
    ASSERT_EQ(split.logits[i].size(), single.logits[i].size()) << "forward " << i;
    EXPECT_EQ(std::memcmp(split.logits[i].data(), single.logits[i].data(), split.logits[i].size() * sizeof(float)), 0)
        << "forward " << i << ": logits differ from the single-device model";
  }
  EXPECT_EQ(split.tokens, single.tokens);
}

// Every device the plan put weights on holds them (and nothing else does), each layer's KV sits
// on its layer's device, and every used device ran ops.
void ExpectPlacedAsPlanned(const Loaded& m, Devices& devices, int min_devices) {
  ASSERT_NE(m.lm, nullptr);
  std::map<Device, size_t> held;
  for (const DeviceBytes& d : m.lm->weight_bytes_by_device()) {
    std::optional<Device> planned = PlannerDeviceOf(devices.table, d.device);
    ASSERT_TRUE(planned.has_value());
    held[*planned] += d.bytes;
  }
  int used = 0;
  for (const placement::DeviceUsage& u : m.plan.usage) {
    EXPECT_EQ(u.planned_bytes > 0, held[u.device] > 0) << u.device.Name() << " planned " << u.planned_bytes;
    if (u.planned_bytes > 0) {
      ++used;
      EXPECT_GT(devices.table.at(u.device) == nullptr ? 0 : static_cast<CheckedBackend*>(devices.table.at(u.device))->ops(), 0)
          << u.device.Name() << " holds weights but ran no op";
    }
  }
  std::string map;
  for (const auto& [prefix, d] : m.plan.device_map) map += " " + prefix + "=" + d.HfName();
  EXPECT_GE(used, min_devices) << "the plan did not split the model:" << map;
  // KV per layer on the layer's planned device.
  std::map<Device, size_t> kv;
  for (const DeviceBytes& d : m.cache->bytes_by_device()) kv[*PlannerDeviceOf(devices.table, d.device)] += d.bytes;
  const std::string layer_prefix = m.config.architecture == Architecture::kGpt2 ? "transformer.h." : "model.layers.";
  std::map<Device, size_t> expected_kv;
  const size_t per_layer = m.cache->bytes() / static_cast<size_t>(m.config.num_hidden_layers);
  for (int64_t l = 0; l < m.config.num_hidden_layers; ++l) {
    expected_kv[*PlannedDeviceOf(m.plan, layer_prefix + std::to_string(l))] += per_layer;
  }
  EXPECT_EQ(kv, expected_kv);
}

struct SplitCase {
  std::string model;
  int devices;
  std::vector<std::pair<std::string, std::string>> map;
};

class ExplicitSplitTest : public ::testing::TestWithParam<SplitCase> {};

TEST_P(ExplicitSplitTest, LogitsAndGreedyDecodeEqualSingleDevice) {
  const SplitCase& c = GetParam();
  auto reference_backend = Cpu(0);
  Loaded single = LoadSingle(c.model, *reference_backend);
  Devices devices(c.devices);
  Loaded split = LoadSplit(c.model, devices, Explicit(c.map), std::nullopt);
  ExpectIdentical(Generate(split, 6), Generate(single, 6));
  ExpectPlacedAsPlanned(split, devices, c.devices);
}

INSTANTIATE_TEST_SUITE_P(
    Models, ExplicitSplitTest,
    ::testing::Values(
        SplitCase{"llama_tiny", 2,
                  {{"model.embed_tokens", "0"}, {"model.layers.0", "0"}, {"model.layers.1", "1"},
                   {"model.norm", "1"}, {"lm_head", "1"}}},
        // Untied head on another device than the final norm: the normed rows cross too.
        SplitCase{"llama_tiny", 3,
                  {{"model.embed_tokens", "0"}, {"model.layers.0", "1"}, {"model.layers.1", "2"},
                   {"model.norm", "2"}, {"lm_head", "0"}}},
        SplitCase{"qwen2_tiny", 2,
                  {{"model.embed_tokens", "0"}, {"lm_head", "0"}, {"model.layers.0", "1"},
                   {"model.layers.1", "1"}, {"model.norm", "1"}}},
        // Tied head: logits come from the embedding's device, after the last layer's.
        SplitCase{"qwen2_tiny", 3,
                  {{"model.embed_tokens", "0"}, {"lm_head", "0"}, {"model.layers.0", "1"},
                   {"model.layers.1", "2"}, {"model.norm", "2"}}},
        SplitCase{"gpt2_tiny", 2,
                  {{"transformer.wte", "0"}, {"lm_head", "0"}, {"transformer.wpe", "0"},
                   {"transformer.h.0", "0"}, {"transformer.h.1", "1"}, {"transformer.ln_f", "1"}}},
        // wte and wpe apart: the token embeddings cross before the positions are added.
        SplitCase{"gpt2_tiny", 3,
                  {{"transformer.wte", "0"}, {"lm_head", "0"}, {"transformer.wpe", "1"},
                   {"transformer.h.0", "1"}, {"transformer.h.1", "2"}, {"transformer.ln_f", "2"}}}),
    [](const ::testing::TestParamInfo<SplitCase>& p) {
      return p.param.model + "_" + std::to_string(p.param.devices) + "_devices";
    });

struct StrategyCase {
  std::string model;
  int devices;
  placement::Strategy strategy;
};

class StrategySplitTest : public ::testing::TestWithParam<StrategyCase> {};

// Budgets: for "sequential", the first n-1 devices share 80% of the model (the first also keeps room for the largest layer, as accelerate does), so the fill
// overflows onto the next device; for "balanced", every device gets room for the whole model
// and the planner balances it over them.
TEST_P(StrategySplitTest, PlannerSplitEqualsSingleDevice) {
  const StrategyCase& c = GetParam();
  auto reference_backend = Cpu(0);
  Loaded single = LoadSingle(c.model, *reference_backend);
  // The model's planned size, from a plan of everything on one device.
  Devices probe(1);
  Loaded whole = LoadSplit(c.model, probe, placement::DeviceMapSpec{Device::Gpu(0)}, std::nullopt);
  const double total = TotalPlannedBytes(whole.plan);
  ASSERT_GT(total, 0);
  std::vector<std::pair<std::string, int64_t>> budgets;
  for (int i = 0; i < c.devices; ++i) {
    const double share = c.strategy == placement::Strategy::kSequential
                             ? (i + 1 < c.devices ? total * 0.8 / (c.devices - 1) : total)
                             : total;
    budgets.push_back({std::to_string(i), static_cast<int64_t>(share)});
  }
  Devices devices(c.devices);
  Loaded split = LoadSplit(c.model, devices, placement::DeviceMapSpec{c.strategy}, Budgets(budgets));
  ExpectIdentical(Generate(split, 6), Generate(single, 6));
  ExpectPlacedAsPlanned(split, devices, 2);
}

INSTANTIATE_TEST_SUITE_P(
    Models, StrategySplitTest,
    ::testing::Values(StrategyCase{"llama_tiny", 2, placement::Strategy::kBalanced},
                      StrategyCase{"llama_tiny", 3, placement::Strategy::kSequential},
                      StrategyCase{"qwen2_tiny", 2, placement::Strategy::kSequential},
                      StrategyCase{"qwen2_tiny", 3, placement::Strategy::kBalanced},
                      StrategyCase{"gpt2_tiny", 2, placement::Strategy::kBalanced},
                      StrategyCase{"gpt2_tiny", 3, placement::Strategy::kSequential}),
    [](const ::testing::TestParamInfo<StrategyCase>& p) {
      return p.param.model + "_" + std::to_string(p.param.devices) + "_" +
             (p.param.strategy == placement::Strategy::kBalanced ? "balanced" : "sequential");
    });

// A LoRA adapter over a split model: each site's pair is uploaded to its layer's device (the
// CheckedBackend refuses LoraApply otherwise), and a batch mixing the adapter and the base
// model equals the single-device run.
std::unique_ptr<LoraWeights> Upload(const std::string& adapter, const Loaded& m, kernels::Backend& backend) {
  auto loaded = LoadLoraAdapter(kFixtures + "lora/adapters/" + adapter, ListBaseModules(m.config));
  EXPECT_TRUE(loaded.ok()) << loaded.status();
  if (!loaded.ok()) return nullptr;
  std::vector<HostLoraModule> views;
  for (const LoraModule& mod : (*loaded)->modules) {
    views.push_back({.module = mod.name, .rank = mod.r, .scale = mod.scale, .a = mod.a, .b = mod.b});
  }
  auto weights = UploadLora(backend, m.lm->lora_sites(), views);
  EXPECT_TRUE(weights.ok()) << weights.status();
  return weights.ok() ? std::make_unique<LoraWeights>(*std::move(weights)) : nullptr;
}

TEST(MultiDeviceLoraTest, AdapterOverASplitModelEqualsSingleDevice) {
  for (const auto& [model, adapter, map] :
       std::vector<std::tuple<std::string, std::string, std::vector<std::pair<std::string, std::string>>>>{
           {"llama_tiny", "llama_all_linear_rslora_r8",
            {{"model.embed_tokens", "0"}, {"model.layers.0", "1"}, {"model.layers.1", "2"},
             {"model.norm", "2"}, {"lm_head", "0"}}},
           {"gpt2_tiny", "gpt2_fan_in_fan_out",
            {{"transformer.wte", "0"}, {"lm_head", "0"}, {"transformer.wpe", "0"},
             {"transformer.h.0", "1"}, {"transformer.h.1", "0"}, {"transformer.ln_f", "1"}}}}) {
    SCOPED_TRACE(adapter);
    auto reference_backend = Cpu(0);
    Loaded single = LoadSingle(model, *reference_backend);
    Devices devices(3);
    Loaded split = LoadSplit(model, devices, Explicit(map), std::nullopt);
    ASSERT_NE(split.lm, nullptr);
    auto single_lora = Upload(adapter, single, *reference_backend);
    auto split_lora = Upload(adapter, split, *devices.table.at(Device::Cpu()));
    ASSERT_NE(single_lora, nullptr);
    ASSERT_NE(split_lora, nullptr);
    // Pairs follow their sites: a site of layer 0 has its pair on layer 0's device.
    for (size_t i = 0; i < split.lm->lora_sites().size(); ++i) {
      if (split_lora->site(i) == nullptr) continue;
      EXPECT_EQ(split_lora->site(i)->a.device(), split.lm->lora_sites()[i].backend->device())
          << split.lm->lora_sites()[i].module;
    }
    const Trace with_split = Generate(split, 5, {split_lora.get(), nullptr});
    const Trace with_single = Generate(single, 5, {single_lora.get(), nullptr});
    ExpectIdentical(with_split, with_single);
    // The adapter changed something (the comparison is not base vs base).
    const Trace base = Generate(single, 0);
    ASSERT_FALSE(base.logits.empty());
    ASSERT_FALSE(with_single.logits.empty());
    EXPECT_NE(std::memcmp(base.logits[0].data(), with_single.logits[0].data(), base.logits[0].size() * sizeof(float)),
              0);
  }
}

TEST(MultiDeviceNf4Test, Nf4SplitModelEqualsSingleDeviceNf4) {
  for (const auto& [model, map] : std::vector<std::pair<std::string, std::vector<std::pair<std::string, std::string>>>>{
           {"llama_tiny",
            {{"model.embed_tokens", "0"}, {"model.layers.0", "0"}, {"model.layers.1", "1"}, {"model.norm", "1"},
             {"lm_head", "1"}}},
           {"gpt2_tiny",
            {{"transformer.wte", "0"}, {"lm_head", "0"}, {"transformer.wpe", "1"}, {"transformer.h.0", "1"},
             {"transformer.h.1", "2"}, {"transformer.ln_f", "2"}}}}) {
    SCOPED_TRACE(model);
    auto reference_backend = Cpu(0);
    Loaded single = LoadSingle(model, *reference_backend, Nf4());
    Devices devices(3);
    Loaded split = LoadSplit(model, devices, Explicit(map), std::nullopt, Nf4());
    ExpectIdentical(Generate(split, 6), Generate(single, 6));
    ExpectPlacedAsPlanned(split, devices, 2);
    // Quantized: the split model holds the NF4 bytes, not fp32 ones.
    EXPECT_EQ(split.lm->weight_bytes(), single.lm->weight_bytes());
  }
}

TEST(MultiDeviceLoadTest, ADecoderLayerSplitAcrossDevicesIsRefusedByName) {
  Devices devices(2);
  auto config = LoadModelConfig(kFixtures + "models/llama_tiny");
  ASSERT_TRUE(config.ok());
  auto ckpt = Checkpoint::Open(kFixtures + "models/llama_tiny");
  ASSERT_TRUE(ckpt.ok());
  LoadOptions options = BaseOptions(std::nullopt);
  kernels::Backend* zero = devices.table.at(Device::Gpu(0));
  kernels::Backend* one = devices.table.at(Device::Gpu(1));
  options.tensor_backend = [&](const std::string& name) {
    return name.rfind("model.layers.1.mlp.", 0) == 0 ? one : zero;
  };
  auto lm = LoadCausalLm(*config, **ckpt, options, *zero);
  ASSERT_EQ(lm.status().code(), absl::StatusCode::kUnimplemented) << lm.status();
  EXPECT_NE(lm.status().message().find("model.layers.1.mlp.gate_proj.weight"), std::string::npos) << lm.status();

  options.tensor_backend = [&](const std::string& name) -> kernels::Backend* {
    return name == "model.norm.weight" ? nullptr : zero;
  };
  lm = LoadCausalLm(*config, **ckpt, options, *zero);
  ASSERT_EQ(lm.status().code(), absl::StatusCode::kInvalidArgument) << lm.status();
  EXPECT_NE(lm.status().message().find("model.norm.weight"), std::string::npos) << lm.status();
}

TEST(MultiDeviceLoadTest, LogicalCpuBackendsReportDistinctDevices) {
  auto host = Cpu(0);
  auto two = Cpu(2);
  EXPECT_EQ(host->device(), (kernels::Device{kernels::DeviceKind::kCpu, 0}));
  EXPECT_EQ(two->device(), (kernels::Device{kernels::DeviceKind::kCpu, 2}));
  auto buf = two->Allocate(64);
  ASSERT_TRUE(buf.ok());
  EXPECT_EQ(buf->device(), two->device());
  EXPECT_EQ(kernels::CreateBackend({.kind = kernels::BackendKind::kCpu, .logical_device = -1}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(MultiDeviceLoadTest, CheckedBackendRefusesAnotherDevicesTensor) {
  // The guard the tests above rely on does refuse a foreign tensor.
  CheckedBackend one(Cpu(1));
  auto two = Cpu(2);
  auto a = two->Allocate(4 * sizeof(float));
  auto b = one.Allocate(4 * sizeof(float));
  ASSERT_TRUE(a.ok() && b.ok());
  const kernels::TensorView x = a->View(kernels::DType::kF32, {1, 4}), y = b->View(kernels::DType::kF32, {1, 4});
  EXPECT_EQ(one.Add(x, y, y).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(one.Add(y, y, y).ok());
}

TEST(TransferActivationsTest, CopiesBetweenLogicalDevices) {
  auto one = Cpu(1);
  auto two = Cpu(2);
  auto a = one->Allocate(6 * sizeof(float));
  auto b = two->Allocate(6 * sizeof(float));
  ASSERT_TRUE(a.ok() && b.ok());
  const std::vector<float> values = {1, -2, 3.5f, 4, 5, -6.25f};
  const kernels::TensorView src = a->View(kernels::DType::kF32, {2, 3}), dst = b->View(kernels::DType::kF32, {2, 3});
  ASSERT_TRUE(one->CopyFromHost(values.data(), src).ok());
  std::vector<uint8_t> staging;
  ASSERT_TRUE(TransferActivations(*one, src, *two, dst, staging).ok());
  std::vector<float> back(6);
  ASSERT_TRUE(two->CopyToHost(dst, back.data()).ok());
  EXPECT_EQ(back, values);
  const kernels::TensorView wrong = b->View(kernels::DType::kF32, {1, 3});
  EXPECT_EQ(TransferActivations(*one, src, *two, wrong, staging).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kiln::engine
