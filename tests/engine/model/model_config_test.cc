#include "engine/model/model_config.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kiln::engine {
namespace {

using ::testing::HasSubstr;
using kernels::DType;

const std::string kTestdata = std::string(KILN_SOURCE_DIR) + "/tests/engine/model/testdata";

// The expected values below are the attributes transformers 5.23 reports for the same files
// (see testdata/make_configs.py), e.g. LlamaConfig.from_pretrained(dir).rope_parameters.

TEST(ModelConfigTest, LlamaSavedByTransformers) {
  absl::StatusOr<ModelConfig> c = LoadModelConfig(kTestdata + "/llama");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->architecture, Architecture::kLlama);
  EXPECT_EQ(c->model_type, "llama");
  EXPECT_EQ(c->vocab_size, 128);
  EXPECT_EQ(c->hidden_size, 64);
  EXPECT_EQ(c->intermediate_size, 160);
  EXPECT_EQ(c->num_hidden_layers, 2);
  EXPECT_EQ(c->num_attention_heads, 4);
  EXPECT_EQ(c->num_key_value_heads, 2);
  EXPECT_EQ(c->head_dim, 16);
  EXPECT_EQ(c->max_position_embeddings, 16384);
  EXPECT_DOUBLE_EQ(c->norm_eps, 1e-5);
  EXPECT_EQ(c->hidden_act, "silu");
  EXPECT_TRUE(c->uses_rope);
  EXPECT_EQ(c->rope.type, RopeType::kLlama3);
  EXPECT_DOUBLE_EQ(c->rope.theta, 500000.0);
  EXPECT_DOUBLE_EQ(c->rope.factor, 8.0);
  EXPECT_DOUBLE_EQ(c->rope.low_freq_factor, 1.0);
  EXPECT_DOUBLE_EQ(c->rope.high_freq_factor, 4.0);
  EXPECT_EQ(c->rope.original_max_position_embeddings, 8192);
  EXPECT_TRUE(c->tie_word_embeddings);
  EXPECT_FALSE(c->q_bias || c->o_bias || c->mlp_bias);
  EXPECT_FALSE(c->sliding_window.has_value());
  EXPECT_EQ(c->bos_token_ids, std::vector<int64_t>({1}));
  EXPECT_EQ(c->eos_token_ids, std::vector<int64_t>({2, 3}));
  EXPECT_FALSE(c->pad_token_id.has_value());
  EXPECT_FALSE(c->dtype.has_value());
}

TEST(ModelConfigTest, MistralSavedByTransformers) {
  absl::StatusOr<ModelConfig> c = LoadModelConfig(kTestdata + "/mistral");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->architecture, Architecture::kMistral);
  EXPECT_EQ(c->head_dim, 32);  // explicit head_dim, not hidden / heads
  EXPECT_EQ(c->num_key_value_heads, 2);
  EXPECT_EQ(c->max_position_embeddings, 131072);
  EXPECT_EQ(c->rope.type, RopeType::kDefault);
  EXPECT_DOUBLE_EQ(c->rope.theta, 10000.0);
  EXPECT_EQ(c->sliding_window, 32);
  EXPECT_EQ(c->layer_is_sliding, std::vector<bool>({true, true}));
  EXPECT_FALSE(c->tie_word_embeddings);
}

TEST(ModelConfigTest, Qwen2SavedByTransformers) {
  absl::StatusOr<ModelConfig> c = LoadModelConfig(kTestdata + "/qwen2");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->architecture, Architecture::kQwen2);
  EXPECT_TRUE(c->q_bias && c->k_bias && c->v_bias);
  EXPECT_FALSE(c->o_bias);
  EXPECT_EQ(c->rope.type, RopeType::kYarn);
  EXPECT_DOUBLE_EQ(c->rope.factor, 4.0);
  EXPECT_EQ(c->rope.original_max_position_embeddings, 8192);
  EXPECT_DOUBLE_EQ(c->rope.beta_fast, 32.0);
  EXPECT_DOUBLE_EQ(c->rope.beta_slow, 1.0);
  EXPECT_FALSE(c->rope.attention_factor.has_value());
  EXPECT_EQ(c->sliding_window, 16);
  EXPECT_EQ(c->layer_is_sliding, std::vector<bool>({false, true, true}));
  EXPECT_TRUE(c->bos_token_ids.empty());  // null
  EXPECT_EQ(c->eos_token_ids, std::vector<int64_t>({5}));
}

TEST(ModelConfigTest, Gpt2SavedByTransformers) {
  absl::StatusOr<ModelConfig> c = LoadModelConfig(kTestdata + "/gpt2");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->architecture, Architecture::kGpt2);
  EXPECT_EQ(c->hidden_size, 64);
  EXPECT_EQ(c->num_hidden_layers, 2);
  EXPECT_EQ(c->num_attention_heads, 4);
  EXPECT_EQ(c->num_key_value_heads, 4);
  EXPECT_EQ(c->head_dim, 16);
  EXPECT_EQ(c->intermediate_size, 256);  // n_inner null -> 4 * n_embd
  EXPECT_EQ(c->max_position_embeddings, 128);
  EXPECT_DOUBLE_EQ(c->norm_eps, 1e-5);
  EXPECT_EQ(c->hidden_act, "gelu_new");
  EXPECT_FALSE(c->uses_rope);
  EXPECT_TRUE(c->tie_word_embeddings);
  EXPECT_TRUE(c->q_bias && c->o_bias && c->mlp_bias);
  EXPECT_TRUE(c->scale_attn_weights);
  EXPECT_TRUE(c->scale_attn_by_inverse_layer_idx);
  EXPECT_FALSE(c->reorder_and_upcast_attn);
  EXPECT_EQ(c->eos_token_ids, std::vector<int64_t>({50256}));
}

// Pre-v5 spelling (a real Llama 3.1 config.json): rope_theta + rope_scaling, torch_dtype.
// transformers 5.23: LlamaConfig.from_dict(...).rope_parameters == {factor 8, low 1, high 4,
// original 8192, llama3, theta 500000}, dtype bfloat16, kv heads 4, head_dim 16.
TEST(ModelConfigTest, LegacyRopeScalingSpelling) {
  absl::StatusOr<ModelConfig> c = ParseModelConfig(R"({
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 128,
    "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
    "num_attention_heads": 4, "rope_theta": 500000.0, "max_position_embeddings": 131072,
    "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "torch_dtype": "bfloat16", "auto_map": {"AutoModel": "evil.Model"}})");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->rope.type, RopeType::kLlama3);
  EXPECT_DOUBLE_EQ(c->rope.theta, 500000.0);
  EXPECT_EQ(c->rope.original_max_position_embeddings, 8192);
  EXPECT_EQ(c->dtype, DType::kBF16);
  EXPECT_EQ(c->num_key_value_heads, 4);
  EXPECT_EQ(c->head_dim, 16);
}

// MistralConfig.from_dict with legacy {"type": "linear"}: rope_type linear, theta 10000,
// sliding_window 4096 (class default for an absent key), kv heads 8 (class default).
TEST(ModelConfigTest, LegacyTypeKeyAndClassDefaults) {
  absl::StatusOr<ModelConfig> c = ParseModelConfig(R"({
    "model_type": "mistral", "vocab_size": 128, "hidden_size": 64, "intermediate_size": 128,
    "num_hidden_layers": 2, "num_attention_heads": 16,
    "rope_scaling": {"type": "linear", "factor": 2.0}})");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->rope.type, RopeType::kLinear);
  EXPECT_DOUBLE_EQ(c->rope.factor, 2.0);
  EXPECT_DOUBLE_EQ(c->rope.theta, 10000.0);
  EXPECT_EQ(c->sliding_window, 4096);
  EXPECT_EQ(c->num_key_value_heads, 8);
}

// Qwen2Config.from_dict without layer_types: layers >= max_window_layers slide.
TEST(ModelConfigTest, Qwen2LayerTypesDerivedFromMaxWindowLayers) {
  absl::StatusOr<ModelConfig> c = ParseModelConfig(R"({
    "model_type": "qwen2", "vocab_size": 128, "hidden_size": 64, "intermediate_size": 128,
    "num_hidden_layers": 4, "num_attention_heads": 4, "rope_theta": 1000000.0,
    "use_sliding_window": true, "sliding_window": 8, "max_window_layers": 2})");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->layer_is_sliding, std::vector<bool>({false, false, true, true}));
  EXPECT_DOUBLE_EQ(c->rope.theta, 1000000.0);
  absl::StatusOr<ModelConfig> off = ParseModelConfig(R"({
    "model_type": "qwen2", "vocab_size": 128, "hidden_size": 64, "intermediate_size": 128,
    "num_hidden_layers": 2, "num_attention_heads": 4, "sliding_window": 8})");
  ASSERT_TRUE(off.ok()) << off.status();
  EXPECT_FALSE(off->sliding_window.has_value());  // use_sliding_window defaults to false
}

constexpr char kBase[] = R"("model_type": "llama", "vocab_size": 128, "intermediate_size": 128,
    "num_hidden_layers": 2)";

absl::Status ParseWith(const std::string& fields) {
  return ParseModelConfig("{" + std::string(kBase) + ", " + fields + "}").status();
}

struct BadCase {
  std::string fields;
  absl::StatusCode code;
  std::string message;  // substring
};

class ModelConfigBadTest : public ::testing::TestWithParam<BadCase> {};

TEST_P(ModelConfigBadTest, Rejected) {
  const BadCase& c = GetParam();
  absl::Status s = ParseWith(c.fields);
  EXPECT_EQ(s.code(), c.code) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr(c.message));
  EXPECT_THAT(std::string(s.message()), HasSubstr("config.json"));
}

INSTANTIATE_TEST_SUITE_P(
    A11, ModelConfigBadTest,
    ::testing::Values(
        BadCase{R"("num_attention_heads": 4)", absl::StatusCode::kInvalidArgument,
                "hidden_size: missing"},
        BadCase{R"("hidden_size": "4096", "num_attention_heads": 4)",
                absl::StatusCode::kInvalidArgument,
                "hidden_size: expected a positive integer, got \"4096\""},
        BadCase{R"("hidden_size": 64.0, "num_attention_heads": 4)",
                absl::StatusCode::kInvalidArgument, "hidden_size: expected a positive integer"},
        BadCase{R"("hidden_size": 0, "num_attention_heads": 4)",
                absl::StatusCode::kInvalidArgument, "hidden_size: expected a positive integer, got 0"},
        BadCase{R"("hidden_size": -64, "num_attention_heads": 4)",
                absl::StatusCode::kInvalidArgument, "hidden_size"},
        BadCase{R"("hidden_size": 64, "num_attention_heads": 5)",
                absl::StatusCode::kInvalidArgument, "num_attention_heads: must divide hidden_size (64)"},
        BadCase{R"("hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 3)",
                absl::StatusCode::kInvalidArgument, "num_key_value_heads: must divide"},
        BadCase{R"("hidden_size": 64, "num_attention_heads": 4, "max_position_embeddings": 1000000000000)",
                absl::StatusCode::kInvalidArgument, "max_position_embeddings: must be at most 16777216"},
        BadCase{R"("hidden_size": 64, "num_attention_heads": 4, "rope_scaling": {"rope_type": "su", "factor": 2.0})",
                absl::StatusCode::kUnimplemented, "rope_scaling.rope_type: rope type \"su\" is not supported"},
        BadCase{R"("hidden_size": 64, "num_attention_heads": 4, "rope_scaling": {"rope_type": "linear", "factor": -2.0})",
                absl::StatusCode::kInvalidArgument, "rope_scaling.factor: must be a positive number"},
        BadCase{R"("hidden_size": 64, "num_attention_heads": 4, "rope_parameters": {"rope_type": "linear"})",
                absl::StatusCode::kInvalidArgument, "rope_parameters.factor: required for rope type linear"},
        BadCase{R"("hidden_size": 64, "num_attention_heads": 4, "rope_parameters": {"rope_type": "linear", "factor": "2"})",
                absl::StatusCode::kInvalidArgument, "rope_parameters.factor: expected a number"},
        BadCase{R"("hidden_size": 64, "num_attention_heads": 4, "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 4.0, "high_freq_factor": 1.0})",
                absl::StatusCode::kInvalidArgument, "high_freq_factor: must be greater than low_freq_factor"},
        BadCase{R"("hidden_size": 64, "num_attention_heads": 4, "rms_norm_eps": 0)",
                absl::StatusCode::kInvalidArgument, "rms_norm_eps"},
        BadCase{R"("hidden_size": 64, "num_attention_heads": 4, "hidden_act": "swiglu_xyz")",
                absl::StatusCode::kUnimplemented, "hidden_act"},
        BadCase{R"("hidden_size": 64, "num_attention_heads": 4, "torch_dtype": "float8")",
                absl::StatusCode::kInvalidArgument, "torch_dtype: unknown dtype"},
        BadCase{R"("hidden_size": 64, "num_attention_heads": 4, "eos_token_id": [2, "x"])",
                absl::StatusCode::kInvalidArgument, "eos_token_id: expected an integer or a list"},
        BadCase{R"("hidden_size": 64, "num_attention_heads": 4, "tie_word_embeddings": "yes")",
                absl::StatusCode::kInvalidArgument, "tie_word_embeddings: expected true or false"},
        BadCase{R"("hidden_size": 64, "num_attention_heads": 4, "hidden_size": 128)",
                absl::StatusCode::kInvalidArgument, "duplicate key \"hidden_size\""},
        BadCase{R"("hidden_size": 64, "num_attention_heads": 4, "rope_scaling": {"rope_type": "linear", "factor": NaN})",
                absl::StatusCode::kInvalidArgument, "invalid JSON"},
        BadCase{R"("hidden_size": 64, "num_attention_heads": 4, "architectures": ["FooForCausalLM"])",
                absl::StatusCode::kUnimplemented,
                "\"FooForCausalLM\" is not supported (supported: LlamaForCausalLM, MistralForCausalLM, "
                "Qwen2ForCausalLM, GPT2LMHeadModel)"}));

TEST(ModelConfigTest, UnknownModelTypeIsUnimplemented) {
  absl::Status s = ParseModelConfig(R"({"model_type": "bert", "vocab_size": 10})").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("model_type: \"bert\""));
}

TEST(ModelConfigTest, DeepNestingRejectedWithoutRecursion) {
  std::string deep = R"({"model_type": "llama", "x": )" + std::string(1000, '[') +
                     std::string(1000, ']') + "}";
  absl::Status s = ParseModelConfig(deep).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("nesting depth exceeds the limit of 64"));
  std::string very_deep = std::string(1000000, '[');  // a parser that recursed would crash
  EXPECT_EQ(ParseModelConfig(very_deep).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ModelConfigTest, OversizedFileRejected) {
  ModelConfigLimits limits;
  limits.json.max_bytes = 1000;
  std::string big = R"({"model_type": "llama", "pad": ")" + std::string(2000, 'x') + "\"}";
  absl::Status s = ParseModelConfig(big, "config.json", limits).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("over the limit of 1000"));
}

TEST(ModelConfigTest, ResolveDTypeFollowsTransformers) {
  ModelConfig c;
  EXPECT_EQ(*ResolveDType("float16", c, nullptr), DType::kF16);
  EXPECT_EQ(*ResolveDType("auto", c, nullptr), DType::kF32);
  c.dtype = DType::kBF16;
  EXPECT_EQ(*ResolveDType("auto", c, nullptr), DType::kBF16);
  EXPECT_EQ(*ResolveDType("", c, nullptr), DType::kBF16);
  EXPECT_EQ(*ResolveDType("float32", c, nullptr), DType::kF32);  // explicit wins
  EXPECT_EQ(ResolveDType("int8", c, nullptr).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kiln::engine
