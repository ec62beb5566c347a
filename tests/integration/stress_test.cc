// A bounded randomized stress test of serving at load against the real kilnd on loopback
// (issue 4): many concurrent clients with mixed prompts and lengths, random cancels and short
// deadlines, a KV pool small enough to force preemption, fixed seed, well under a minute.
// Every RPC must end with exactly one terminal status from the allowed set; every completed
// stream's text must equal the offline decode of its token ids (engine/tokenizer on the
// fixture's tokenizer.json); at the end nothing leaks (engine gauges at idle, KV free == total).
#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "engine/tokenizer/tokenizer.h"
#include "gtest/gtest.h"
#include "kiln/v1/kiln.grpc.pb.h"
#include "tests/integration/grpc_clients.h"
#include "tests/integration/kilnd_process.h"

namespace kiln::testing {
namespace {

const std::string kFixtures = std::string(KILN_SOURCE_DIR) + "/tests/golden/fixtures/";
constexpr char kModel[] = "llama_tiny";
constexpr int kClients = 24;
constexpr int kRequestsPerClient = 20;

struct Outcome {
  grpc::StatusCode code = grpc::StatusCode::OK;
  std::vector<int32_t> ids;
  std::string text;
  int finishes = 0;           // responses carrying a finish reason
  bool data_after_finish = false;
  int max_new_tokens = 0;
  int completion_tokens = 0;
};

double Sample(const PromExposition& m, const std::string& name, const std::string& model) {
  for (const auto& s : m.samples) {
    if (s.name == name && s.labels.count("model") && s.labels.at("model") == model) return s.value;
  }
  return -1;
}

TEST(StressTest, ConcurrentClientsRandomCancelsEveryRpcOneTerminalStatusNoLeaks) {
  absl::StatusOr<std::unique_ptr<KilndProcess>> started = KilndProcess::Start(
      {KilndPath(), {"--model_roots=" + kFixtures + "models", "--max_waiting_requests=64",
                     "--num_compute_threads=2"}});
  ASSERT_TRUE(started.ok()) << started.status();
  std::unique_ptr<KilndProcess> kilnd = *std::move(started);
  auto channel = Connect(kilnd->grpc_address());
  auto stub = kiln::v1::Kiln::NewStub(channel);

  // 24 blocks of 16 tokens: a dozen concurrent requests of up to ~110 tokens preempt.
  ASSERT_TRUE(LoadModelWithKvBlocks(*stub, kModel, 24).ok()) << kilnd->Log();

  absl::StatusOr<std::unique_ptr<tokenizer::Tokenizer>> tok =
      tokenizer::Tokenizer::FromDirectory(kFixtures + "models/" + kModel);
  ASSERT_TRUE(tok.ok()) << tok.status();

  const std::vector<std::string> texts = {
      "Hello world", "The quick brown fox jumps over the lazy dog. ", "你好，世界 🙂 emoji",
      "def f(x):\n    return x * 2\n", "Ünïcödé ßtrings and numbers 12345 67890"};
  std::mutex mu;
  std::vector<Outcome> outcomes;
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      std::mt19937 rng(1000 + c);
      for (int i = 0; i < kRequestsPerClient; ++i) {
        kiln::v1::GenerateRequest request;
        request.set_model(kModel);
        // Half the prompts share a preamble longer than a KV block: prefix-cache hits.
        std::string text = rng() % 2 ? "System: you are a helpful assistant that answers "
                                       "briefly, precisely and politely. User: "
                                     : "";
        text += texts[rng() % texts.size()];
        for (int k = 0, n = static_cast<int>(rng() % 4); k < n; ++k) text += texts[rng() % texts.size()];
        request.set_text(text);
        request.mutable_sampling()->set_temperature(rng() % 2 ? 0.0f : 1.0f);
        request.mutable_sampling()->set_seed(rng());
        const int max_new = 1 + static_cast<int>(rng() % 40);
        request.mutable_stopping()->set_max_new_tokens(max_new);
        request.mutable_stopping()->set_ignore_eos(true);
        const int action = static_cast<int>(rng() % 10);  // 0-1 cancel, 2 short deadline
        const int cancel_after = static_cast<int>(rng() % 4);
        auto ctx = MakeContext("", action == 2 ? std::chrono::milliseconds(1 + rng() % 40)
                                               : std::chrono::milliseconds(50000));
        auto stream = stub->Generate(ctx.get(), request);
        Outcome o;
        o.max_new_tokens = max_new;
        kiln::v1::GenerateResponse response;
        int reads = 0;
        while (stream->Read(&response)) {
          if (o.finishes > 0) o.data_after_finish = true;
          o.ids.insert(o.ids.end(), response.token_ids().begin(), response.token_ids().end());
          o.text += response.text();
          if (response.finish_reason() != kiln::v1::FINISH_REASON_UNSPECIFIED) {
            ++o.finishes;
            o.completion_tokens = response.usage().completion_tokens();
          }
          if (action < 2 && ++reads > cancel_after) ctx->TryCancel();
        }
        if (action < 2 && reads <= cancel_after) ctx->TryCancel();
        o.code = stream->Finish().error_code();
        std::lock_guard<std::mutex> lock(mu);
        outcomes.push_back(std::move(o));
      }
    });
  }
  for (std::thread& t : clients) t.join();

  ASSERT_EQ(outcomes.size(), static_cast<size_t>(kClients * kRequestsPerClient));
  std::map<grpc::StatusCode, int> by_code;
  for (const Outcome& o : outcomes) {
    ++by_code[o.code];
    EXPECT_TRUE(o.code == grpc::StatusCode::OK || o.code == grpc::StatusCode::CANCELLED ||
                o.code == grpc::StatusCode::DEADLINE_EXCEEDED)
        << "unexpected status " << o.code;
    EXPECT_FALSE(o.data_after_finish);
    if (o.code != grpc::StatusCode::OK) continue;
    EXPECT_EQ(o.finishes, 1);
    EXPECT_EQ(static_cast<int>(o.ids.size()), o.max_new_tokens);
    EXPECT_EQ(o.completion_tokens, o.max_new_tokens);
    absl::StatusOr<std::string> decoded = (*tok)->Decode(o.ids, /*skip_special_tokens=*/false);
    ASSERT_TRUE(decoded.ok());
    EXPECT_EQ(o.text, *decoded);
  }
  std::printf("stress: %d ok, %d cancelled, %d deadline exceeded\n", by_code[grpc::StatusCode::OK],
              by_code[grpc::StatusCode::CANCELLED], by_code[grpc::StatusCode::DEADLINE_EXCEEDED]);
  EXPECT_GT(by_code[grpc::StatusCode::OK], kClients * kRequestsPerClient / 2);
  EXPECT_GT(by_code[grpc::StatusCode::CANCELLED], 0);

  // Nothing leaks: the engine's gauges return to idle (published after the step that ended
  // the last stream, so poll the external process briefly).
  PromExposition metrics;
  bool idle = false;
  for (int attempt = 0; attempt < 100 && !idle; ++attempt) {
    absl::StatusOr<PromExposition> scraped = ScrapeMetrics(kilnd->metrics_port());
    ASSERT_TRUE(scraped.ok()) << scraped.status();
    metrics = *scraped;
    idle = Sample(metrics, "kiln_requests_running", kModel) == 0 &&
           Sample(metrics, "kiln_requests_waiting", kModel) == 0 &&
           Sample(metrics, "kiln_kv_blocks_free", kModel) == 24 &&
           Sample(metrics, "kiln_kv_blocks_total", kModel) == 24;
    if (!idle) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(idle) << "running " << Sample(metrics, "kiln_requests_running", kModel)
                    << " waiting " << Sample(metrics, "kiln_requests_waiting", kModel)
                    << " free " << Sample(metrics, "kiln_kv_blocks_free", kModel);
  EXPECT_GT(Sample(metrics, "kiln_preemptions_total", kModel), 0);
  EXPECT_GT(Sample(metrics, "kiln_prefix_cache_hits_total", kModel), 0);
}

}  // namespace
}  // namespace kiln::testing
