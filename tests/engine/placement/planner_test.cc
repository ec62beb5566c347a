// Unit tests of the planner's own rules (explicit maps, single devices, refusals). The
// strategies' assignments are checked against transformers in tests/golden/placement.
#include "engine/placement/planner.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kiln::engine::placement {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

ModelConfig TinyLlama(bool tied) {
  ModelConfig c;
  c.architecture = Architecture::kLlama;
  c.model_type = "llama";
  c.vocab_size = 100;
  c.hidden_size = 16;
  c.intermediate_size = 32;
  c.num_hidden_layers = 3;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 4;
  c.max_position_embeddings = 64;
  c.hidden_act = "silu";
  c.tie_word_embeddings = tied;
  return c;
}

class PlannerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<ModelLayout> l = BuildModelLayout(TinyLlama(/*tied=*/true), LayoutOptions{});
    ASSERT_TRUE(l.ok()) << l.status();
    layout_ = *std::move(l);
    request_.layout = &layout_;
    request_.inventory = {{Device::Gpu(0), 1 << 20}, {Device::Gpu(1), 1 << 20}, {Device::Cpu(), 1 << 22}};
  }
  absl::StatusOr<PlacementPlan> Explicit(std::vector<std::pair<std::string, std::string>> entries) {
    absl::StatusOr<DeviceMapSpec> spec = ParseExplicitDeviceMap(entries);
    if (!spec.ok()) return spec.status();
    request_.device_map = *spec;
    return PlanDeviceMap(request_);
  }
  ModelLayout layout_;
  PlacementRequest request_;
};

TEST_F(PlannerTest, LayoutNamesAndTies) {
  EXPECT_GE(layout_.FindTensor("model.layers.2.mlp.down_proj.weight"), 0);
  EXPECT_GE(layout_.FindModule("model.layers.0.self_attn"), 0);
  const TensorInfo& head = layout_.tensors[layout_.FindTensor("lm_head.weight")];
  ASSERT_TRUE(head.tied_to.has_value());
  EXPECT_EQ(*head.tied_to, "model.embed_tokens.weight");
  EXPECT_EQ(head.bytes, 0);
  // embed 100x16 fp32 counted once; lm_head adds nothing.
  EXPECT_EQ(layout_.SizeOf("model.embed_tokens"), 100 * 16 * 4);
  EXPECT_EQ(layout_.SizeOf("lm_head"), 0);
}

TEST_F(PlannerTest, ExplicitMapAssignsEveryTensor) {
  absl::StatusOr<PlacementPlan> plan = Explicit({{"model.embed_tokens", "0"}, {"model.layers.0", "0"},
                                                 {"model.layers.1", "cuda:1"}, {"model.layers.2", "1"},
                                                 {"model.norm", "1"}, {"lm_head", "cpu"}});
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(*plan->DeviceOf(layout_, "model.layers.1.mlp.up_proj.weight"), Device::Gpu(1));
  EXPECT_EQ(*plan->DeviceOf(layout_, "model.layers.0.self_attn.q_proj.weight"), Device::Gpu(0));
  // A tied parameter lives with the tensor it shares storage with.
  EXPECT_EQ(*plan->DeviceOf(layout_, "lm_head.weight"), Device::Gpu(0));
  // Buffers nobody mapped go with the first parameter.
  EXPECT_EQ(*plan->DeviceOf(layout_, "model.rotary_emb.inv_freq"), Device::Gpu(0));
  // The reported map is the user's, as transformers keeps it.
  ASSERT_EQ(plan->device_map.size(), 6u);
  EXPECT_EQ(plan->device_map[1].first, "model.layers.0");
  int64_t planned = 0;
  for (const DeviceUsage& u : plan->usage) planned += u.planned_bytes;
  EXPECT_EQ(planned, static_cast<int64_t>(layout_.TotalBytes()));
}

TEST_F(PlannerTest, ExplicitMapRefusals) {
  absl::StatusOr<PlacementPlan> p = Explicit({{"model.layerz", "0"}, {"", "1"}});
  EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(p.status().message()), HasSubstr("model.layerz"));

  p = Explicit({{"model", "0"}, {"model.layers.1", "1"}, {"lm_head", "0"}});
  EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(p.status().message()), AllOf(HasSubstr("model.layers.1"), HasSubstr("overlaps")));

  p = Explicit({{"model.embed_tokens", "0"}, {"model.layers", "0"}, {"lm_head", "0"}});
  EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(p.status().message()), AllOf(HasSubstr("model.norm.weight"), HasSubstr("not covered")));

  p = Explicit({{"", "cuda:7"}});
  EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(p.status().message()), AllOf(HasSubstr("cuda:7"), HasSubstr("not available")));

  EXPECT_EQ(Explicit({{"model", "disk"}}).status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_EQ(Explicit({{"model", "mps"}}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Explicit({}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Explicit({{"lm_head", "0"}, {"lm_head", "1"}}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(PlannerTest, SingleDeviceAndTooSmall) {
  request_.device_map = *ParseDeviceMapString("cuda:1");
  absl::StatusOr<PlacementPlan> plan = PlanDeviceMap(request_);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->device_map.size(), 1u);
  EXPECT_EQ(plan->device_map[0].first, "");
  EXPECT_EQ(plan->device_map[0].second, Device::Gpu(1));

  request_.max_memory = MaxMemory{{Device::Gpu(1), 1000}};
  plan = PlanDeviceMap(request_);
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kResourceExhausted);
  const std::string total = std::to_string(static_cast<int64_t>(layout_.TotalBytes()));
  EXPECT_THAT(std::string(plan.status().message()), AllOf(HasSubstr(total), HasSubstr("cuda:1"), HasSubstr("1000")));

  EXPECT_EQ(ParseDeviceMapString("everywhere").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseDeviceMapString("disk").status().code(), absl::StatusCode::kUnimplemented);
}

TEST_F(PlannerTest, StrategyThatSpillsToDiskIsResourceExhaustedWithPerDeviceBytes) {
  request_.device_map = *ParseDeviceMapString("sequential");
  request_.max_memory = MaxMemory{{Device::Gpu(0), 9000}, {Device::Cpu(), 9000}};
  absl::StatusOr<PlacementPlan> plan = PlanDeviceMap(request_);
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kResourceExhausted);
  const std::string total = std::to_string(static_cast<int64_t>(layout_.TotalBytes()));
  EXPECT_THAT(std::string(plan.status().message()),
              AllOf(HasSubstr(total), HasSubstr("cuda:0 budget 9000"), HasSubstr("cpu budget 9000"),
                    HasSubstr("disk")));
}

TEST_F(PlannerTest, MaxMemoryForUnknownDeviceIsRefused) {
  request_.device_map = *ParseDeviceMapString("auto");
  request_.max_memory = MaxMemory{{Device::Gpu(5), 1 << 20}};
  absl::StatusOr<PlacementPlan> plan = PlanDeviceMap(request_);
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(plan.status().message()), HasSubstr("cuda:5"));
}

TEST_F(PlannerTest, BalancedLowZeroNeedsContiguousGpus) {
  request_.inventory = {{Device::Gpu(0), 1 << 20}, {Device::Gpu(2), 1 << 20}, {Device::Cpu(), 1 << 22}};
  request_.device_map = *ParseDeviceMapString("balanced_low_0");
  absl::StatusOr<PlacementPlan> plan = PlanDeviceMap(request_);
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(plan.status().message()), HasSubstr("cuda:1"));
}

TEST_F(PlannerTest, AutoOnCpuOnlyHostPutsEverythingOnCpu) {
  request_.inventory = {{Device::Cpu(), 1 << 22}};
  request_.device_map = *ParseDeviceMapString("auto");
  absl::StatusOr<PlacementPlan> plan = PlanDeviceMap(request_);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->device_map.size(), 1u);
  EXPECT_EQ(plan->device_map[0].first, "");
  EXPECT_EQ(plan->device_map[0].second, Device::Cpu());
}

TEST_F(PlannerTest, BnbQuantizedModulesOnCpuNeedFp32Offload) {
  request_.bnb_quantized = true;
  absl::StatusOr<PlacementPlan> p = Explicit({{"model", "0"}, {"lm_head", "cpu"}});
  EXPECT_EQ(p.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(p.status().message()), HasSubstr("llm_int8_enable_fp32_cpu_offload"));
  request_.bnb_fp32_cpu_offload = true;
  EXPECT_TRUE(Explicit({{"model", "0"}, {"lm_head", "cpu"}}).ok());
}

}  // namespace
}  // namespace kiln::engine::placement
