// The whole engine on the CPU backend against the golden fixtures: LoadModel through the model
// store (roots and hub cache), Generate through the step loop, compared with what
// transformers' generate() produced (tests/golden/fixtures/reference/<name>/greedy.json).
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "engine/runtime/engine_factory.h"
#include "tests/engine/runtime/engine_test_util.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace kiln::engine {
namespace {

using testing::kFixtures;
using testing::MakeEngine;

nlohmann::json ReadJson(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return nlohmann::json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
}

using testing::Collect;
using testing::Collected;

// Loads through the helper and also checks that a successful load reported progress.
absl::Status LoadAndWait(Engine& engine, const LoadModelOptions& options, ModelInfo* info) {
  int progress_events = 0;
  absl::Status status = testing::LoadAndWait(engine, options, info, &progress_events);
  if (status.ok()) {
    EXPECT_GT(progress_events, 0);
  }
  return status;
}

LoadModelOptions Opts(const std::string& model) {
  LoadModelOptions o;
  o.model = model;
  return o;
}

GenerateRequest GreedyRequest(const std::string& model, std::vector<int32_t> prompt, int max_new) {
  GenerateRequest r;
  r.request_id = "test";
  r.model = model;
  r.prompt_token_ids = std::move(prompt);
  r.sampling.do_sample = false;
  r.stopping.max_new_tokens = max_new;
  return r;
}

class GreedyParityTest : public ::testing::TestWithParam<std::string> {};

// Every greedy run transformers recorded, replayed through kiln's engine (one at a time,
// then all at once in one batch): identical token ids, finish reason and text.
TEST_P(GreedyParityTest, MatchesTransformersGenerate) {
  const std::string name = GetParam();
  auto engine = MakeEngine();
  ModelInfo info;
  ASSERT_TRUE(LoadAndWait(*engine, Opts(name), &info).ok());
  EXPECT_EQ(info.state, ModelState::kReady);
  const nlohmann::json greedy = ReadJson(kFixtures + "/reference/" + name + "/greedy.json");
  ASSERT_FALSE(greedy.is_discarded());

  std::vector<GenerateRequest> requests;
  std::vector<nlohmann::json> runs;
  for (const nlohmann::json& run : greedy["runs"]) {
    GenerateRequest r = GreedyRequest(name, run["input_ids"].get<std::vector<int32_t>>(),
                                      run["params"]["max_new_tokens"].get<int>());
    r.stopping.min_new_tokens = run["params"]["min_new_tokens"].get<int>();
    r.stopping.ignore_eos = run["params"]["ignore_eos"].get<bool>();
    requests.push_back(r);
    runs.push_back(run);
  }
  auto check = [&](const Collected& c, const nlohmann::json& run) {
    ASSERT_TRUE(c.status.ok()) << c.status;
    const auto expected = run["new_ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(c.ids, expected) << run["name"];
    ASSERT_TRUE(c.finish.has_value());
    EXPECT_EQ(c.finish->reason,
              run["stopped_by_eos"].get<bool>() ? FinishReason::kEos : FinishReason::kLength)
        << run["name"];
    // The stream's text is the decode of the new ids without the eos token's text.
    if (!run["stopped_by_eos"].get<bool>()) {
      EXPECT_EQ(c.text, run["text"].get<std::string>()) << run["name"];
    }
    EXPECT_EQ(c.finish->usage.completion_tokens, static_cast<int32_t>(expected.size()));
  };
  for (size_t i = 0; i < requests.size(); ++i) {
    auto stream = engine->Generate(requests[i]);
    ASSERT_TRUE(stream.ok()) << stream.status();
    check(Collect(*stream), runs[i]);
  }
  // All at once: continuous batching must not change a single token.
  std::vector<std::shared_ptr<GenerateStream>> streams;
  for (const GenerateRequest& r : requests) {
    auto stream = engine->Generate(r);
    ASSERT_TRUE(stream.ok()) << stream.status();
    streams.push_back(*stream);
  }
  for (size_t i = 0; i < streams.size(); ++i) check(Collect(streams[i]), runs[i]);
  EXPECT_EQ(engine->InFlightRequests(), 0);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GreedyParityTest,
                         ::testing::Values("llama_tiny", "llama3_tiny", "mistral_tiny",
                                           "qwen2_tiny", "gpt2_tiny"));

TEST(EngineTest, LoadsFromTheHubCacheLayoutAndTokenizesText) {
  auto engine = MakeEngine();
  ModelInfo info;
  ASSERT_TRUE(LoadAndWait(*engine, [] { auto o = Opts("kiln-test/qwen2-tiny"); o.served_name = "q"; return o; }(), &info)
                  .ok());
  EXPECT_EQ(info.revision.size(), 40u);
  EXPECT_EQ(info.architecture, "Qwen2ForCausalLM");
  const nlohmann::json tokens = ReadJson(kFixtures + "/reference/qwen2_tiny/tokens.json");
  for (const nlohmann::json& c : tokens["cases"]) {
    auto result = engine->Tokenize("q", c["text"].get<std::string>(), true);
    if (c["text"].get<std::string>().empty()) {
      continue;
    }
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_EQ(result->token_ids, c["ids"].get<std::vector<int32_t>>()) << c["name"];
  }
}

TEST(EngineTest, TextPromptsStreamValidUtf8ThatConcatenatesToTheDecode) {
  auto engine = MakeEngine();
  ASSERT_TRUE(LoadAndWait(*engine, Opts("llama3_tiny"), nullptr).ok());
  GenerateRequest r;
  r.model = "llama3_tiny";
  r.prompt_text = "Hello wörld 你好 🙂";
  r.sampling.temperature = 1.0f;
  r.sampling.seed = 7;
  r.stopping.max_new_tokens = 40;
  r.stopping.ignore_eos = true;
  auto first = engine->Generate(r);
  ASSERT_TRUE(first.ok());
  Collected a = Collect(*first);
  ASSERT_TRUE(a.status.ok()) << a.status;
  EXPECT_EQ(a.ids.size(), 40u);
  // Same seed, same tokens.
  auto second = engine->Generate(r);
  ASSERT_TRUE(second.ok());
  Collected b = Collect(*second);
  EXPECT_EQ(a.ids, b.ids);
  EXPECT_EQ(a.text, b.text);
}

TEST(EngineTest, BadRequestsAreRefusedWithTheFieldNamed) {
  auto engine = MakeEngine();
  ASSERT_TRUE(LoadAndWait(*engine, Opts("gpt2_tiny"), nullptr).ok());
  auto expect_invalid = [&](GenerateRequest r, const std::string& field) {
    auto s = engine->Generate(std::move(r));
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument) << s.status();
    EXPECT_NE(s.status().message().find(field), std::string::npos) << s.status();
  };
  expect_invalid(GreedyRequest("gpt2_tiny", {1, 999999}, 4), "prompt.token_ids[1]");
  expect_invalid(GreedyRequest("gpt2_tiny", {}, 4), "prompt");
  GenerateRequest too_long = GreedyRequest("gpt2_tiny", {1, 2, 3}, 4);
  too_long.stopping.max_new_tokens = 200;  // gpt2_tiny has 128 positions
  expect_invalid(too_long, "max_seq_len");
  GenerateRequest nan_temp = GreedyRequest("gpt2_tiny", {1, 2}, 4);
  nan_temp.sampling.temperature = std::numeric_limits<float>::quiet_NaN();
  expect_invalid(nan_temp, "temperature");
  auto unknown = engine->Generate(GreedyRequest("nope", {1}, 1));
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kNotFound);
}

TEST(EngineTest, LoadErrorsNameTheProblem) {
  auto engine = MakeEngine();
  EXPECT_EQ(LoadAndWait(*engine, Opts("missing_model"), nullptr).code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(LoadAndWait(*engine, Opts("../models/llama_tiny"), nullptr).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(LoadAndWait(*engine, [] { auto o = Opts("llama_tiny"); o.trust_remote_code = true; return o; }(), nullptr).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(LoadAndWait(*engine, [] { auto o = Opts("llama_tiny"); o.max_memory = {{"cpu", "10KB"}}; return o; }(), nullptr)
                .code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(LoadAndWait(*engine, [] { auto o = Opts("llama_tiny"); o.max_memory = {{"cpu", "lots"}}; return o; }(), nullptr)
                .code(),
            absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(LoadAndWait(*engine, Opts("llama_tiny"), nullptr).ok());
  EXPECT_EQ(LoadAndWait(*engine, Opts("llama_tiny"), nullptr).code(),
            absl::StatusCode::kFailedPrecondition);  // served name taken
}

TEST(EngineTest, CancelAndUnloadEndStreamsWithOneStatusEach) {
  auto engine = MakeEngine();
  ASSERT_TRUE(LoadAndWait(*engine, Opts("llama_tiny"), nullptr).ok());
  GenerateRequest r = GreedyRequest("llama_tiny", {1, 5, 9}, 100);
  r.stopping.ignore_eos = true;
  auto cancelled = engine->Generate(r);
  ASSERT_TRUE(cancelled.ok());
  (*cancelled)->Cancel();
  Collected c = Collect(*cancelled);
  EXPECT_EQ(c.status.code(), absl::StatusCode::kCancelled);

  GenerateRequest expired = r;
  expired.deadline = absl::Now() - absl::Seconds(1);
  auto late = engine->Generate(expired);
  ASSERT_TRUE(late.ok());
  EXPECT_EQ(Collect(*late).status.code(), absl::StatusCode::kDeadlineExceeded);

  auto running = engine->Generate(r);
  ASSERT_TRUE(running.ok());
  absl::Notification unloaded;
  absl::StatusOr<UnloadResult> result;
  engine->UnloadModel("llama_tiny", /*drain=*/false, [&](absl::StatusOr<UnloadResult> u) {
    result = u;
    unloaded.Notify();
  });
  unloaded.WaitForNotification();
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_GT(result->freed_bytes, 0);
  Collected aborted = Collect(*running);
  // Either it finished its 100 tokens first or it was aborted; never both, never neither.
  EXPECT_TRUE(aborted.status.code() == absl::StatusCode::kAborted || aborted.status.ok())
      << aborted.status;
  EXPECT_EQ(engine->Generate(r).status().code(), absl::StatusCode::kNotFound);
}

TEST(EngineTest, WaitingQueueLimitIsEnforced) {
  EngineLimits limits;
  limits.max_waiting_requests = 2;
  auto engine = MakeEngine(limits);
  // Tiny KV cache: one request at a time, the rest wait.
  ASSERT_TRUE(LoadAndWait(*engine, [] {
    // gpt2_tiny: 2 layers x 4 heads x 16 dims x (K+V) x 4 bytes = 1 KiB per token; 8 blocks
    // of 16 tokens hold one 103-token request at a time.
    auto o = Opts("gpt2_tiny");
    o.kv_cache_bytes = 8 * 16 * 1024;
    return o;
  }(),
                          nullptr)
                  .ok());
  GenerateRequest r = GreedyRequest("gpt2_tiny", {1, 2, 3}, 100);
  r.stopping.ignore_eos = true;
  std::vector<std::shared_ptr<GenerateStream>> accepted;
  absl::Status refused;
  for (int i = 0; i < 20 && refused.ok(); ++i) {
    auto s = engine->Generate(r);
    if (s.ok()) {
      accepted.push_back(*s);
    } else {
      refused = s.status();
    }
  }
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(refused.message().find("max_waiting_requests"), std::string::npos);
  for (auto& s : accepted) EXPECT_TRUE(Collect(s).status.ok());
}

}  // namespace
}  // namespace kiln::engine
