// Limits (issue 10, reliability.md §6.1 and table B1-B3): every limit is a kilnd flag, is
// reported by GetServerInfo with the configured value, and a violation gives a clear status
// that names the limit.
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/security/security_util.h"

namespace kiln::security {
namespace {

namespace fs = std::filesystem;

class LimitsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = testing::TempDir::Create("kiln-limits");
    ASSERT_TRUE(dir.ok()) << dir.status();
    tmp_ = std::move(*dir);
    fixtures_ = Canonical(kFixtureModels);
  }

  std::unique_ptr<testing::KilndProcess> Start(const std::vector<std::string>& flags) {
    std::vector<std::string> all = {"--model_roots=" + fixtures_, "--hub_cache="};
    all.insert(all.end(), flags.begin(), flags.end());
    auto k = StartKilnd(all, Canonical(tmp_->path()));
    EXPECT_TRUE(k.ok()) << k.status();
    return k.ok() ? std::move(*k) : nullptr;
  }

  void ExpectNames(const grpc::Status& s, grpc::StatusCode code, const std::string& limit) {
    EXPECT_EQ(s.error_code(), code) << limit << ": " << s.error_message();
    EXPECT_NE(s.error_message().find(limit), std::string::npos)
        << "message does not name " << limit << ": " << s.error_message();
    for (const auto& p : HygieneProblems(s.error_message(), {fixtures_})) ADD_FAILURE() << p;
  }

  std::unique_ptr<testing::TempDir> tmp_;
  std::string fixtures_;
};

TEST_F(LimitsTest, EveryLimitIsConfigurableAndReported) {
  // Distinct, non-default values so a swapped or hard-coded field shows.
  auto kilnd = Start({"--max_receive_message_bytes=3000001", "--max_prompt_bytes=70001",
                      "--max_prompt_tokens=7002", "--max_new_tokens=703", "--default_max_new_tokens=70",
                      "--max_total_tokens=7004", "--max_stop_sequences=5",
                      "--max_stop_sequence_bytes=76", "--max_logprobs=7",
                      "--max_concurrent_streams=78", "--max_waiting_requests=79",
                      "--max_stream_buffer_events=710", "--max_json_bytes=70000011",
                      "--max_json_depth=42", "--max_tensors_per_file=7013",
                      "--max_vocab_size=700014", "--max_adapter_rank=15",
                      "--max_loaded_models=3"});
  ASSERT_NE(kilnd, nullptr);
  Client client(kilnd->grpc_address(), kAdminToken);
  v1::ServerInfo info;
  grpc::Status s = client.GetServerInfo(&info);
  ASSERT_TRUE(s.ok()) << s.error_message();
  const v1::Limits& l = info.limits();
  EXPECT_EQ(l.max_request_bytes(), 3000001);
  EXPECT_EQ(l.max_prompt_bytes(), 70001);
  EXPECT_EQ(l.max_prompt_tokens(), 7002);
  EXPECT_EQ(l.max_new_tokens(), 703);
  EXPECT_EQ(l.max_total_tokens(), 7004);
  EXPECT_EQ(l.max_stop_sequences(), 5);
  EXPECT_EQ(l.max_stop_sequence_bytes(), 76);
  EXPECT_EQ(l.max_logprobs(), 7);
  EXPECT_EQ(l.max_concurrent_streams(), 78);
  EXPECT_EQ(l.max_waiting_requests(), 79);
  EXPECT_EQ(l.max_stream_buffer_events(), 710);
  EXPECT_EQ(l.max_json_bytes(), 70000011);
  EXPECT_EQ(l.max_json_depth(), 42);
  EXPECT_EQ(l.max_tensors_per_file(), 7013);
  EXPECT_EQ(l.max_vocab_size(), 700014);
  EXPECT_EQ(l.max_adapter_rank(), 15);
  EXPECT_EQ(l.max_loaded_models(), 3);
}

TEST_F(LimitsTest, RequestLimitViolationsNameTheLimit) {
  auto kilnd = Start({"--max_receive_message_bytes=65536", "--max_prompt_bytes=2000",
                      "--max_prompt_tokens=20", "--max_new_tokens=16", "--default_max_new_tokens=8", "--max_total_tokens=30",
                      "--max_stop_sequences=2", "--max_stop_sequence_bytes=8",
                      "--max_logprobs=3", "--max_loaded_models=1"});
  ASSERT_NE(kilnd, nullptr);
  Client client(kilnd->grpc_address(), kAdminToken);
  v1::LoadModelRequest first;
  first.set_model("gpt2_tiny");
  first.set_pin(true);  // never evicted: a second model then has no slot (max_loaded_models=1)
  ASSERT_TRUE(client.LoadModel(first).ok());
  auto gen = [] {
    v1::GenerateRequest r;
    r.set_model("gpt2_tiny");
    r.set_text("Hello");
    r.mutable_stopping()->set_max_new_tokens(4);
    return r;
  };
  using grpc::StatusCode;
  {
    auto r = gen();
    r.set_text(std::string(2001, 'a'));
    ExpectNames(client.Generate(r), StatusCode::INVALID_ARGUMENT, "max_prompt_bytes");
  }
  {
    auto r = gen();
    for (int i = 0; i < 21; ++i) r.mutable_token_ids()->add_ids(1);
    ExpectNames(client.Generate(r), StatusCode::INVALID_ARGUMENT, "max_prompt_tokens");
  }
  {
    auto r = gen();
    r.set_text(std::string(200, 'a') + " b c d e f g h i j k l m n o p q r s t u v w x y z");
    ExpectNames(client.Generate(r), StatusCode::INVALID_ARGUMENT, "max_prompt_tokens");
  }
  {
    auto r = gen();
    r.mutable_stopping()->set_max_new_tokens(17);
    ExpectNames(client.Generate(r), StatusCode::INVALID_ARGUMENT, "max_new_tokens");
  }
  {
    auto r = gen();
    for (int i = 0; i < 18; ++i) r.mutable_token_ids()->add_ids(1);
    r.mutable_stopping()->set_max_new_tokens(16);
    ExpectNames(client.Generate(r), StatusCode::INVALID_ARGUMENT, "max_total_tokens");
  }
  {
    auto r = gen();
    for (const char* x : {"a", "b", "c"}) r.mutable_stopping()->add_stop(x);
    ExpectNames(client.Generate(r), StatusCode::INVALID_ARGUMENT, "max_stop_sequences");
  }
  {
    auto r = gen();
    r.mutable_stopping()->add_stop("123456789");
    ExpectNames(client.Generate(r), StatusCode::INVALID_ARGUMENT, "max_stop_sequence_bytes");
  }
  {
    auto r = gen();
    r.set_logprobs(4);
    ExpectNames(client.Generate(r), StatusCode::INVALID_ARGUMENT, "max_logprobs");
  }
  {
    v1::TokenizeRequest t;
    v1::TokenizeResponse resp;
    t.set_model("gpt2_tiny");
    t.set_text(std::string(2001, 'a'));
    ExpectNames(client.Tokenize(t, &resp), StatusCode::INVALID_ARGUMENT, "max_prompt_bytes");
  }
  {
    // Larger than max_receive_message_bytes: refused by gRPC before any handler runs.
    auto r = gen();
    r.set_text(std::string(70000, 'a'));
    grpc::Status s = client.Generate(r);
    EXPECT_EQ(s.error_code(), StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
  }
  {
    v1::LoadModelRequest second;
    second.set_model("llama_tiny");
    ExpectNames(client.LoadModel(second), StatusCode::RESOURCE_EXHAUSTED, "max_loaded_models");
  }
  // Still serving after every violation.
  std::string text;
  EXPECT_TRUE(client.Generate(gen(), &text).ok());
}

TEST_F(LimitsTest, ArtifactLimitViolationsNameTheLimit) {
  struct Case {
    std::string flag, mention;
  };
  // gpt2_tiny: vocab 480, a dozen-plus tensors, JSON nested a few levels, tokenizer.json KBs.
  const std::vector<Case> cases = {
      {"--max_vocab_size=100", "vocab"},
      {"--max_tensors_per_file=3", "tensors"},
      {"--max_json_depth=2", "depth"},
      {"--max_json_bytes=1000", "bytes"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.flag);
    auto kilnd = Start({c.flag});
    ASSERT_NE(kilnd, nullptr);
    Client client(kilnd->grpc_address(), kAdminToken);
    grpc::Status s = client.LoadModel("gpt2_tiny");
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
    EXPECT_NE(s.error_message().find(c.mention), std::string::npos) << s.error_message();
    for (const auto& p : HygieneProblems(s.error_message(), {fixtures_})) ADD_FAILURE() << p;
  }
}

}  // namespace
}  // namespace kiln::security
