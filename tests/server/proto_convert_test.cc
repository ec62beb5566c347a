#include "server/proto_convert.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kiln::server {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(ProtoConvertTest, StatusCodesMapOneToOne) {
  for (int code = 1; code <= 16; ++code) {
    absl::Status s(static_cast<absl::StatusCode>(code), "msg");
    grpc::Status g = ToGrpcStatus(s);
    EXPECT_EQ(static_cast<int>(g.error_code()), code);
    EXPECT_EQ(g.error_message(), "msg");
  }
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
  // The enums agree by name, not just by number.
  EXPECT_EQ(static_cast<int>(absl::StatusCode::kUnauthenticated),
            static_cast<int>(grpc::StatusCode::UNAUTHENTICATED));
  EXPECT_EQ(static_cast<int>(absl::StatusCode::kDataLoss),
            static_cast<int>(grpc::StatusCode::DATA_LOSS));
}

TEST(ProtoConvertTest, GenerateRequestFields) {
  v1::GenerateRequest r;
  r.set_model("m");
  r.set_adapter("a");
  r.mutable_token_ids()->add_ids(5);
  r.mutable_token_ids()->add_ids(0);
  r.mutable_sampling()->set_temperature(0.5f);
  r.mutable_sampling()->set_seed(42);
  r.mutable_sampling()->set_do_sample(false);
  r.mutable_stopping()->set_max_new_tokens(7);
  r.mutable_stopping()->add_stop("\n\n");
  r.mutable_stopping()->add_stop_token_ids(2);
  r.set_logprobs(3);
  r.set_cache_salt("tenant");
  absl::StatusOr<engine::GenerateRequest> e = ToEngineGenerateRequest(r);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->model, "m");
  EXPECT_EQ(e->adapter, "a");
  EXPECT_FALSE(e->prompt_text.has_value());
  EXPECT_THAT(*e->prompt_token_ids, ElementsAre(5, 0));
  EXPECT_EQ(e->sampling.temperature, 0.5f);
  EXPECT_FALSE(e->sampling.top_p.has_value());
  EXPECT_EQ(e->sampling.seed, 42u);
  EXPECT_EQ(e->sampling.do_sample, false);
  EXPECT_EQ(e->stopping.max_new_tokens, 7);
  EXPECT_THAT(e->stopping.stop, ElementsAre("\n\n"));
  EXPECT_THAT(e->stopping.stop_token_ids, ElementsAre(2));
  EXPECT_EQ(e->top_logprobs, 3);
  EXPECT_EQ(e->cache_salt, "tenant");
  EXPECT_FALSE(e->deadline.has_value());
}

TEST(ProtoConvertTest, GenerateValidationNamesField) {
  struct Case {
    std::function<void(v1::GenerateRequest*)> edit;
    std::string expected;
  };
  const Case cases[] = {
      {[](v1::GenerateRequest* r) { r->clear_model(); }, "model: must not be empty"},
      {[](v1::GenerateRequest* r) { r->clear_prompt(); }, "prompt: set either text or token_ids"},
      {[](v1::GenerateRequest* r) { r->set_text(""); }, "text: prompt must not be empty"},
      {[](v1::GenerateRequest* r) { r->mutable_token_ids(); }, "token_ids: prompt must not be empty"},
      {[](v1::GenerateRequest* r) {
         r->mutable_token_ids()->add_ids(1);
         r->mutable_token_ids()->add_ids(-3);
       },
       "token_ids.ids[1]: -3 is negative"},
      {[](v1::GenerateRequest* r) { r->mutable_stopping()->set_max_new_tokens(-1); },
       "stopping.max_new_tokens: -1 is negative"},
      {[](v1::GenerateRequest* r) { r->mutable_stopping()->set_min_new_tokens(-2); },
       "stopping.min_new_tokens"},
      {[](v1::GenerateRequest* r) { r->mutable_stopping()->add_stop(""); },
       "stopping.stop[0]: must not be empty"},
      {[](v1::GenerateRequest* r) { r->mutable_stopping()->add_stop_token_ids(-1); },
       "stopping.stop_token_ids[0]"},
      {[](v1::GenerateRequest* r) { r->set_logprobs(-1); }, "logprobs: -1 is negative"},
      {[](v1::GenerateRequest* r) { r->set_request_id(std::string(129, 'x')); },
       "request_id: length 129 exceeds 128"},
      {[](v1::GenerateRequest* r) { r->set_request_id("a\nb"); }, "request_id: must be printable"},
  };
  for (const Case& c : cases) {
    v1::GenerateRequest r;
    r.set_model("m");
    r.set_text("hi");
    c.edit(&r);
    absl::StatusOr<engine::GenerateRequest> e = ToEngineGenerateRequest(r);
    EXPECT_EQ(e.status().code(), absl::StatusCode::kInvalidArgument) << c.expected;
    EXPECT_THAT(std::string(e.status().message()), HasSubstr(c.expected));
  }
}

TEST(ProtoConvertTest, LoadOptions) {
  v1::LoadModelRequest r;
  r.set_model("org/tiny");
  r.set_served_name("tiny");
  r.set_dtype(v1::DTYPE_BFLOAT16);
  (*r.mutable_device_map()->mutable_explicit_map()->mutable_entries())["lm_head"] = "cpu";
  (*r.mutable_max_memory())["cpu"] = "1GiB";
  r.mutable_quantization()->mutable_bitsandbytes()->set_load_in_4bit(true);
  r.mutable_quantization()->mutable_bitsandbytes()->set_bnb_4bit_quant_type("nf4");
  r.mutable_quantization()->mutable_bitsandbytes()->set_llm_int8_threshold(5.0f);
  absl::StatusOr<engine::LoadModelOptions> o = ToEngineLoadOptions(r);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->model, "org/tiny");
  EXPECT_EQ(o->served_name, "tiny");
  EXPECT_EQ(o->dtype, engine::WeightDType::kBFloat16);
  EXPECT_EQ(o->device_map_explicit.at("lm_head"), "cpu");
  EXPECT_EQ(o->max_memory.at("cpu"), "1GiB");
  ASSERT_TRUE(o->bitsandbytes.has_value());
  EXPECT_TRUE(o->bitsandbytes->load_in_4bit);
  EXPECT_EQ(o->bitsandbytes->bnb_4bit_quant_type, "nf4");
  EXPECT_EQ(o->bitsandbytes->llm_int8_threshold, 5.0f);
  EXPECT_FALSE(o->other_quantization_requested);

  r.mutable_quantization()->mutable_gptq()->set_bits(4);
  o = ToEngineLoadOptions(r);
  ASSERT_TRUE(o.ok());
  EXPECT_TRUE(o->other_quantization_requested);
  EXPECT_FALSE(o->bitsandbytes.has_value());

  r.set_dtype(static_cast<v1::DType>(99));
  EXPECT_THAT(std::string(ToEngineLoadOptions(r).status().message()),
              HasSubstr("dtype: 99 is not a known DType"));
  r.clear_model();
  EXPECT_EQ(ToEngineLoadOptions(r).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ProtoConvertTest, AppendChunkCoalesces) {
  v1::GenerateResponse out;
  engine::GenerateChunk a;
  a.text = "He";
  a.token_ids = {1};
  a.logprobs = {{{1, -0.5f, "He"}, {{1, -0.5f, "He"}, {2, -1.0f, "Ha"}}}};
  engine::GenerateChunk b;
  b.text = "llo";
  b.token_ids = {2, 3};
  b.logprobs = {{{2, -0.1f, "l"}, {}}, {{3, -0.2f, "lo"}, {}}};
  b.finish = engine::GenerateChunk::Finish{engine::FinishReason::kStop, {4, 3, 1}, {5, 6, 7},
                                           "!"};
  AppendChunk(a, &out);
  EXPECT_EQ(out.finish_reason(), v1::FINISH_REASON_UNSPECIFIED);
  AppendChunk(b, &out);
  EXPECT_EQ(out.text(), "Hello");
  EXPECT_THAT(out.token_ids(), ElementsAre(1, 2, 3));
  ASSERT_EQ(out.logprobs_size(), 3);
  EXPECT_EQ(out.logprobs(0).top_size(), 2);
  EXPECT_EQ(out.logprobs(0).top(1).text(), "Ha");
  EXPECT_EQ(out.logprobs(2).sampled().token_id(), 3);
  EXPECT_EQ(out.finish_reason(), v1::FINISH_REASON_STOP);
  EXPECT_EQ(out.usage().prompt_tokens(), 4);
  EXPECT_EQ(out.usage().completion_tokens(), 3);
  EXPECT_EQ(out.usage().cached_prompt_tokens(), 1);
  EXPECT_EQ(out.timing().total_ms(), 7);
  EXPECT_EQ(out.matched_stop(), "!");
}

TEST(ProtoConvertTest, ServerInfoLimits) {
  engine::EngineInfo info;
  info.cuda_built = true;
  info.devices.push_back({"cuda:0", "H200", 100, 50, 10, 20, 1, 2, 90});
  info.architectures = {"LlamaForCausalLM"};
  engine::EngineLimits limits;
  limits.max_logprobs = 9;
  v1::ServerInfo out;
  FillServerInfo(info, limits, ServerLimits{1234, 77}, &out);
  EXPECT_TRUE(out.cuda_built());
  ASSERT_EQ(out.devices_size(), 1);
  EXPECT_EQ(out.devices(0).description(), "H200");
  EXPECT_EQ(out.devices(0).budget_bytes(), 90);
  EXPECT_THAT(out.architectures(), ElementsAre("LlamaForCausalLM"));
  EXPECT_EQ(out.limits().max_logprobs(), 9);
  EXPECT_EQ(out.limits().max_request_bytes(), 1234);
  EXPECT_EQ(out.limits().max_concurrent_streams(), 77);
  EXPECT_EQ(out.limits().max_loaded_models(), limits.max_loaded_models);
  EXPECT_EQ(out.limits().max_adapter_device_bytes(), limits.max_adapter_device_bytes);
  EXPECT_EQ(out.limits().max_resident_adapters(), limits.max_resident_adapters);
  EXPECT_EQ(out.limits().max_adapter_host_bytes(), limits.max_adapter_host_bytes);
  EXPECT_EQ(out.limits().cpu_memory_bytes(), limits.cpu_memory_bytes);
}

}  // namespace
}  // namespace kiln::server
