#include "cli/requests.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace kiln::cli {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

ParsedArgs Parse(const std::vector<std::string>& argv) {
  absl::StatusOr<ParsedArgs> a = ParseArgs(argv);
  EXPECT_TRUE(a.ok()) << a.status();
  return a.ok() ? *a : ParsedArgs{};
}

TEST(BuildClientOptions, DefaultsAndEnvToken) {
  absl::StatusOr<ClientOptions> o = BuildClientOptions(Parse({"info"}), std::nullopt);
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->addr, "127.0.0.1:50051");
  EXPECT_EQ(o->token, "");
  EXPECT_FALSE(o->tls);
  EXPECT_FALSE(o->timeout_s.has_value());
  EXPECT_FALSE(o->json);

  o = BuildClientOptions(Parse({"info"}), std::string("envtok"));
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->token, "envtok");
  o = BuildClientOptions(Parse({"info", "--token=flagtok"}), std::string("envtok"));
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->token, "flagtok");
}

TEST(BuildClientOptions, TlsFlagsImplyTls) {
  absl::StatusOr<ClientOptions> o =
      BuildClientOptions(Parse({"info", "--tls_ca_file=/ca.pem", "--timeout=2.5"}), std::nullopt);
  ASSERT_TRUE(o.ok());
  EXPECT_TRUE(o->tls);
  EXPECT_EQ(o->tls_ca_file, "/ca.pem");
  EXPECT_DOUBLE_EQ(o->timeout_s.value(), 2.5);
  absl::StatusOr<ClientOptions> half =
      BuildClientOptions(Parse({"info", "--tls_cert_file=c.pem"}), std::nullopt);
  ASSERT_FALSE(half.ok());
  EXPECT_THAT(std::string(half.status().message()), HasSubstr("--tls_key_file"));
  EXPECT_FALSE(BuildClientOptions(Parse({"info", "--timeout=-1"}), std::nullopt).ok());
  EXPECT_FALSE(BuildClientOptions(Parse({"info", "--timeout=inf"}), std::nullopt).ok());
}

TEST(BuildLoadModelRequest, MapsEveryFlag) {
  absl::StatusOr<kiln::v1::LoadModelRequest> r = BuildLoadModelRequest(Parse(
      {"load", "org/m", "--served_name=s", "--revision=v1", "--dtype=bf16",
       "--device_map=auto", "--max_memory=0=20GiB,cpu=8GiB", "--load_in_4bit",
       "--bnb_4bit_quant_type=nf4", "--bnb_4bit_use_double_quant",
       "--bnb_4bit_compute_dtype=bfloat16", "--llm_int8_skip_modules=a,b", "--pin",
       "--max_seq_len=2048", "--kv_cache_bytes=1000", "--keep_alive_ms=-1",
       "--attn_implementation=sdpa", "--adapter=ad", "--disable_prefix_caching"}));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->model(), "org/m");
  EXPECT_EQ(r->served_name(), "s");
  EXPECT_EQ(r->revision(), "v1");
  EXPECT_EQ(r->dtype(), kiln::v1::DTYPE_BFLOAT16);
  EXPECT_EQ(r->device_map().strategy(), "auto");
  EXPECT_EQ(r->max_memory().at("0"), "20GiB");
  EXPECT_EQ(r->max_memory().at("cpu"), "8GiB");
  const kiln::v1::BitsAndBytesConfig& bnb = r->quantization().bitsandbytes();
  EXPECT_TRUE(bnb.load_in_4bit());
  EXPECT_FALSE(bnb.load_in_8bit());
  EXPECT_EQ(bnb.bnb_4bit_quant_type(), "nf4");
  EXPECT_TRUE(bnb.bnb_4bit_use_double_quant());
  EXPECT_EQ(bnb.bnb_4bit_compute_dtype(), "bfloat16");
  EXPECT_THAT(bnb.llm_int8_skip_modules(), ElementsAre("a", "b"));
  EXPECT_FALSE(bnb.has_llm_int8_threshold());
  EXPECT_TRUE(r->pin());
  EXPECT_EQ(r->max_seq_len(), 2048);
  EXPECT_EQ(r->kv_cache_bytes(), 1000);
  EXPECT_EQ(r->keep_alive_ms(), -1);
  EXPECT_EQ(r->attn_implementation(), "sdpa");
  EXPECT_EQ(r->adapter(), "ad");
  EXPECT_TRUE(r->disable_prefix_caching());
  EXPECT_FALSE(r->trust_remote_code());
}

TEST(BuildLoadModelRequest, ExplicitDeviceMapAndDefaults) {
  absl::StatusOr<kiln::v1::LoadModelRequest> r = BuildLoadModelRequest(
      Parse({"load", "m", "--device_map=model.embed_tokens=0,lm_head=cpu"}));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->device_map().explicit_map().entries().at("model.embed_tokens"), "0");
  EXPECT_EQ(r->device_map().explicit_map().entries().at("lm_head"), "cpu");
  EXPECT_FALSE(r->has_quantization());
  EXPECT_EQ(r->dtype(), kiln::v1::DTYPE_UNSPECIFIED);

  r = BuildLoadModelRequest(Parse({"load", "m"}));
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->has_device_map());
  EXPECT_TRUE(r->max_memory().empty());
}

TEST(BuildLoadModelRequest, RejectsBadCombinations) {
  struct Case {
    std::vector<std::string> argv;
    std::string expect;
  };
  const std::vector<Case> cases = {
      {{"load", "m", "--dtype=int4"}, "--dtype: expected auto, float32, float16 or bfloat16"},
      {{"load", "m", "--load_in_4bit", "--load_in_8bit"}, "mutually exclusive"},
      {{"load", "m", "--bnb_4bit_quant_type=nf4"}, "--bnb_4bit_quant_type needs --load_in_4bit"},
      {{"load", "m", "--max_memory=cpu"}, "--max_memory: expected key=value"},
      {{"load", "m", "--max_seq_len=-3"}, "--max_seq_len: must be >= 0"},
      {{"load", "m", "--load_in_8bit", "--llm_int8_threshold=nan"}, "finite"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<kiln::v1::LoadModelRequest> r = BuildLoadModelRequest(Parse(c.argv));
    ASSERT_FALSE(r.ok()) << c.expect;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(r.status().message()), HasSubstr(c.expect));
  }
}

TEST(BuildGenerateRequest, SamplingStoppingAndPresence) {
  absl::StatusOr<kiln::v1::GenerateRequest> r = BuildGenerateRequest(Parse(
      {"generate", "m", "Once upon", "--adapter=a", "--max_new_tokens=16", "--temperature=0",
       "--top_k=40", "--top_p=0.9", "--min_p=0.05", "--repetition_penalty=1.1",
       "--presence_penalty=0.5", "--frequency_penalty=-0.5", "--seed=18446744073709551615",
       "--stop=\n\n", "--stop=END", "--ignore_eos", "--logprobs=3"}));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->model(), "m");
  EXPECT_EQ(r->text(), "Once upon");
  EXPECT_EQ(r->adapter(), "a");
  const kiln::v1::SamplingParams& s = r->sampling();
  ASSERT_TRUE(s.has_temperature());  // 0 is meaningful (greedy), so presence matters
  EXPECT_EQ(s.temperature(), 0.0f);
  EXPECT_EQ(s.top_k(), 40);
  EXPECT_FLOAT_EQ(s.top_p(), 0.9f);
  EXPECT_FLOAT_EQ(s.min_p(), 0.05f);
  EXPECT_FLOAT_EQ(s.repetition_penalty(), 1.1f);
  EXPECT_FLOAT_EQ(s.presence_penalty(), 0.5f);
  EXPECT_FLOAT_EQ(s.frequency_penalty(), -0.5f);
  EXPECT_EQ(s.seed(), 18446744073709551615ull);
  EXPECT_EQ(r->stopping().max_new_tokens(), 16);
  EXPECT_THAT(r->stopping().stop(), ElementsAre("\n\n", "END"));
  EXPECT_TRUE(r->stopping().ignore_eos());
  EXPECT_EQ(r->logprobs(), 3);
  EXPECT_TRUE(r->return_token_logprob());

  absl::StatusOr<kiln::v1::GenerateRequest> plain =
      BuildGenerateRequest(Parse({"generate", "m", "p"}));
  ASSERT_TRUE(plain.ok());
  EXPECT_FALSE(plain->sampling().has_temperature());
  EXPECT_FALSE(plain->sampling().has_seed());
  EXPECT_EQ(plain->logprobs(), 0);
}

TEST(BuildGenerateRequest, RejectsBadNumbers) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"generate", "m", "p", "--seed=-1"}, "--seed: expected an unsigned integer"},
      {{"generate", "m", "p", "--max_new_tokens=4294967296"}, "--max_new_tokens: 4294967296 is out of range"},
      {{"generate", "m", "p", "--top_k=-1"}, "--top_k: -1 is out of range"},
      {{"generate", "m", "p", "--stop="}, "--stop: a stop string must not be empty"},
      {{"generate", "m", "p", "--temperature=1e999"}, "--temperature"},
  };
  for (const auto& [argv, expect] : cases) {
    absl::StatusOr<kiln::v1::GenerateRequest> r = BuildGenerateRequest(Parse(argv));
    ASSERT_FALSE(r.ok()) << expect;
    EXPECT_THAT(std::string(r.status().message()), HasSubstr(expect));
  }
}

TEST(BuildOtherRequests, MapPositionalAndFlags) {
  absl::StatusOr<kiln::v1::TokenizeRequest> t =
      BuildTokenizeRequest(Parse({"tokenize", "m", "hi", "--tokens"}));
  ASSERT_TRUE(t.ok());
  EXPECT_TRUE(t->add_special_tokens());  // kilnctl's default, as encode()
  EXPECT_TRUE(t->return_tokens());
  t = BuildTokenizeRequest(Parse({"tokenize", "m", "hi", "--add_special_tokens=false"}));
  ASSERT_TRUE(t.ok());
  EXPECT_FALSE(t->add_special_tokens());

  absl::StatusOr<kiln::v1::UnloadModelRequest> u =
      BuildUnloadModelRequest(Parse({"unload", "m", "--drain"}));
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->served_name(), "m");
  EXPECT_TRUE(u->drain());

  absl::StatusOr<kiln::v1::LoadAdapterRequest> la = BuildLoadAdapterRequest(
      Parse({"adapters", "load", "m", "ad", "--served_name=x", "--ignore_base_model_mismatch"}));
  ASSERT_TRUE(la.ok());
  EXPECT_EQ(la->model(), "m");
  EXPECT_EQ(la->adapter(), "ad");
  EXPECT_EQ(la->served_name(), "x");
  EXPECT_TRUE(la->ignore_base_model_mismatch());
  EXPECT_FALSE(la->pin());

  absl::StatusOr<kiln::v1::UnloadAdapterRequest> ua =
      BuildUnloadAdapterRequest(Parse({"adapters", "unload", "m", "x", "--force"}));
  ASSERT_TRUE(ua.ok());
  EXPECT_EQ(ua->served_name(), "x");
  EXPECT_TRUE(ua->force());

  // A direct caller that skipped ParseArgs gets a status, not a crash.
  ParsedArgs empty;
  empty.command = "generate";
  EXPECT_FALSE(BuildGenerateRequest(empty).ok());
}

}  // namespace
}  // namespace kiln::cli
