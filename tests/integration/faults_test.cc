// Injected faults against the real kilnd on loopback (reliability.md table C):
//  - C2, KV exhaustion under load: a KV pool far smaller than the load preempts, and nobody
//    notices. Every stream completes with the tokens it gets alone. A request that could never
//    fit is refused at admission with RESOURCE_EXHAUSTED naming the cache, and idle returns
//    every block.
//  - C7, SIGKILL mid-stream: clients see UNAVAILABLE, exactly once. The restart is clean. A
//    failed start does not leave the dead run's ready file claiming readiness. The next kilnd
//    binds the same gRPC and metrics ports, serves the same text, and removes its ready file
//    on SIGTERM.
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "gtest/gtest.h"
#include "kiln/v1/kiln.grpc.pb.h"
#include "tests/integration/grpc_clients.h"
#include "tests/integration/kilnd_process.h"

namespace kiln::testing {
namespace {

using ::grpc::health::v1::HealthCheckResponse;

const std::string kFixtures = std::string(KILN_SOURCE_DIR) + "/tests/golden/fixtures/";
constexpr char kModel[] = "llama_tiny";  // max_position_embeddings 256, KV blocks of 16

struct StreamResult {
  grpc::StatusCode code = grpc::StatusCode::UNKNOWN;
  std::string message;
  std::vector<int32_t> ids;
  std::string text;
  int finishes = 0;  // responses carrying a finish reason
};

kiln::v1::GenerateRequest Greedy(const std::string& text, int max_new_tokens) {
  kiln::v1::GenerateRequest request;
  request.set_model(kModel);
  request.set_text(text);
  request.mutable_sampling()->set_temperature(0.0f);
  request.mutable_stopping()->set_max_new_tokens(max_new_tokens);
  request.mutable_stopping()->set_ignore_eos(true);
  return request;
}

// Reads the stream to its end; `on_first` runs after the first response (if any).
StreamResult RunStream(kiln::v1::Kiln::Stub& stub, const kiln::v1::GenerateRequest& request,
                       const std::function<void()>& on_first = nullptr) {
  std::unique_ptr<grpc::ClientContext> ctx = MakeContext("", std::chrono::seconds(60));
  auto stream = stub.Generate(ctx.get(), request);
  StreamResult r;
  kiln::v1::GenerateResponse response;
  bool first = true;
  while (stream->Read(&response)) {
    r.ids.insert(r.ids.end(), response.token_ids().begin(), response.token_ids().end());
    r.text += response.text();
    if (response.finish_reason() != kiln::v1::FINISH_REASON_UNSPECIFIED) ++r.finishes;
    if (first && on_first) on_first();
    first = false;
  }
  if (first && on_first) on_first();  // ended before any response: do not block the waiter
  const grpc::Status status = stream->Finish();
  r.code = status.error_code();
  r.message = status.error_message();
  return r;
}

// Health "" reaches SERVING (a preloading kilnd is NOT_SERVING until its models are ready).
// Polls an external process within a bounded deadline.
bool WaitServing(const std::shared_ptr<grpc::Channel>& channel) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    HealthCheckResponse::ServingStatus status = HealthCheckResponse::UNKNOWN;
    if (HealthCheck(channel, "", &status).ok() && status == HealthCheckResponse::SERVING) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

// --- C2 -------------------------------------------------------------------------------------

TEST(FaultsTest, KvExhaustionPreemptsWithoutClientErrorsAndRefusesWhatCanNeverFit) {
  absl::StatusOr<std::unique_ptr<KilndProcess>> started = KilndProcess::Start(
      {KilndPath(), {"--model_roots=" + kFixtures + "models", "--max_waiting_requests=64",
                     "--num_compute_threads=2"}});
  ASSERT_TRUE(started.ok()) << started.status();
  std::unique_ptr<KilndProcess> kilnd = *std::move(started);
  auto stub = kiln::v1::Kiln::NewStub(Connect(kilnd->grpc_address()));
  // 12 blocks of 16 tokens = 192 tokens, while the load below wants ~16 × 6 blocks at once.
  constexpr int kBlocks = 12;
  ASSERT_TRUE(LoadModelWithKvBlocks(*stub, kModel, kBlocks).ok()) << kilnd->Log();

  const std::vector<std::string> prompts = {
      "Hello world", "The quick brown fox", "def f(x):\n    return x", "Once upon a time",
      "你好，世界", "1 2 3 4 5 6 7 8", "System: be brief. User: hi", "Ünïcödé ßtrings"};
  constexpr int kNewTokens = 80;
  // Each prompt alone: the reference every contended stream must reproduce token for token
  // (preemption recomputes, so what a stream generates must not depend on being preempted).
  std::vector<StreamResult> alone;
  for (const std::string& p : prompts) {
    alone.push_back(RunStream(*stub, Greedy(p, kNewTokens)));
    ASSERT_EQ(alone.back().code, grpc::StatusCode::OK) << alone.back().message;
    ASSERT_EQ(alone.back().ids.size(), static_cast<size_t>(kNewTokens));
  }
  absl::StatusOr<PromExposition> before = ScrapeMetrics(kilnd->metrics_port());
  ASSERT_TRUE(before.ok()) << before.status();
  const double preemptions_before =
      SumSamples(*before, "kiln_preemptions_total", {{"model", kModel}});

  constexpr int kCopies = 2;
  std::vector<StreamResult> contended(prompts.size() * kCopies);
  StreamResult never_fits;
  std::vector<std::thread> clients;
  for (size_t i = 0; i < contended.size(); ++i) {
    clients.emplace_back([&, i] {
      contended[i] = RunStream(*stub, Greedy(prompts[i % prompts.size()], kNewTokens));
    });
  }
  // Prompt + 240 new tokens fits the model (256 positions) but needs 16 blocks of a 12-block
  // cache: no amount of waiting or preempting could run it.
  clients.emplace_back([&] { never_fits = RunStream(*stub, Greedy("Hello world", 240)); });
  for (std::thread& t : clients) t.join();

  for (size_t i = 0; i < contended.size(); ++i) {
    const StreamResult& r = contended[i];
    ASSERT_EQ(r.code, grpc::StatusCode::OK) << "stream " << i << ": " << r.message;
    EXPECT_EQ(r.finishes, 1) << "stream " << i;
    EXPECT_EQ(r.ids, alone[i % prompts.size()].ids) << "stream " << i;
    EXPECT_EQ(r.text, alone[i % prompts.size()].text) << "stream " << i;
  }
  EXPECT_EQ(never_fits.code, grpc::StatusCode::RESOURCE_EXHAUSTED) << never_fits.message;
  EXPECT_TRUE(never_fits.ids.empty());
  EXPECT_NE(never_fits.message.find("whole cache has 12 blocks of 16 tokens"), std::string::npos)
      << never_fits.message;

  // Idle: every block back, nothing running or waiting, and the preemptions were counted.
  // (The gauges are published after the step that ends the last stream: poll briefly.)
  PromExposition metrics;
  bool idle = false;
  for (int attempt = 0; attempt < 100 && !idle; ++attempt) {
    absl::StatusOr<PromExposition> scraped = ScrapeMetrics(kilnd->metrics_port());
    ASSERT_TRUE(scraped.ok()) << scraped.status();
    metrics = *std::move(scraped);
    const std::map<std::string, std::string> model = {{"model", kModel}};
    idle = CountSamples(metrics, "kiln_kv_blocks_free", model) == 1 &&
           SumSamples(metrics, "kiln_kv_blocks_free", model) == kBlocks &&
           SumSamples(metrics, "kiln_kv_blocks_total", model) == kBlocks &&
           SumSamples(metrics, "kiln_requests_running", model) == 0 &&
           SumSamples(metrics, "kiln_requests_waiting", model) == 0;
    if (!idle) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(idle) << "free " << SumSamples(metrics, "kiln_kv_blocks_free", {{"model", kModel}});
  EXPECT_GT(SumSamples(metrics, "kiln_preemptions_total", {{"model", kModel}}), preemptions_before);
}

// --- C7 -------------------------------------------------------------------------------------

// A listening TCP socket on 127.0.0.1:port that kilnd cannot share (no SO_REUSEPORT), so a
// kilnd told to listen there fails to start. SO_REUSEADDR lets it bind over the dead run's
// TIME_WAIT connections.
class PortBlocker {
 public:
  explicit PortBlocker(int port) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    const int one = 1;
    setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok_ = bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 && listen(fd_, 1) == 0;
  }
  ~PortBlocker() { close(fd_); }
  bool ok() const { return ok_; }

 private:
  int fd_ = -1;
  bool ok_ = false;
};

TEST(FaultsTest, SigkillMidStreamIsUnavailableAndTheRestartOnTheSamePortsIsClean) {
  absl::StatusOr<std::unique_ptr<TempDir>> state = TempDir::Create("kilnd_restart");
  ASSERT_TRUE(state.ok()) << state.status();
  KilndProcess::Options options{
      KilndPath(), {"--model_roots=" + kFixtures + "models", "--preload=" + std::string(kModel)}};
  options.ready_file = (*state)->path() + "/ready.json";

  absl::StatusOr<std::unique_ptr<KilndProcess>> started = KilndProcess::Start(options);
  ASSERT_TRUE(started.ok()) << started.status();
  std::unique_ptr<KilndProcess> first = *std::move(started);
  auto channel = Connect(first->grpc_address());
  ASSERT_TRUE(WaitServing(channel)) << first->Log();
  auto stub = kiln::v1::Kiln::NewStub(channel);
  const StreamResult reference = RunStream(*stub, Greedy("Once upon a time", 32));
  ASSERT_EQ(reference.code, grpc::StatusCode::OK) << reference.message;
  // A scrape leaves the metrics port with a closed connection, as Prometheus would.
  ASSERT_TRUE(ScrapeMetrics(first->metrics_port()).ok());

  // Long streams; SIGKILL once every one of them has its first tokens.
  constexpr int kStreams = 6;
  std::mutex mu;
  std::condition_variable cv;
  int started_streams = 0;
  std::vector<StreamResult> results(kStreams);
  std::vector<std::thread> clients;
  for (int i = 0; i < kStreams; ++i) {
    clients.emplace_back([&, i] {
      results[i] = RunStream(*stub, Greedy("Stream " + std::to_string(i), 240), [&] {
        std::lock_guard<std::mutex> lock(mu);
        ++started_streams;
        cv.notify_all();
      });
    });
  }
  {
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(60), [&] { return started_streams == kStreams; }));
  }
  absl::StatusOr<int> killed = first->Stop(SIGKILL, std::chrono::seconds(10));
  for (std::thread& t : clients) t.join();
  ASSERT_TRUE(killed.ok()) << killed.status();
  EXPECT_EQ(*killed, 128 + SIGKILL);

  int cut = 0;
  for (int i = 0; i < kStreams; ++i) {
    const StreamResult& r = results[i];
    ASSERT_FALSE(r.ids.empty()) << "stream " << i;
    if (r.finishes == 1) {  // finished before the kill
      EXPECT_EQ(r.code, grpc::StatusCode::OK) << "stream " << i << ": " << r.message;
      continue;
    }
    ++cut;
    EXPECT_EQ(r.finishes, 0);
    EXPECT_EQ(r.code, grpc::StatusCode::UNAVAILABLE) << "stream " << i << ": " << r.message;
  }
  EXPECT_GT(cut, 0) << "every stream of 240 tokens ended before the SIGKILL";

  // The dead run's ready file is still there, naming it.
  const std::string stale = ReadWholeFile(options.ready_file);
  ASSERT_NE(stale.find("\"pid\":" + std::to_string(first->pid())), std::string::npos) << stale;

  // A start that fails (its gRPC port is taken) must not leave that file behind: a supervisor
  // reading it would believe the dead ports are up.
  options.listen = "127.0.0.1:" + std::to_string(first->grpc_port());
  options.metrics_listen = "127.0.0.1:" + std::to_string(first->metrics_port());
  {
    PortBlocker blocker(first->grpc_port());
    ASSERT_TRUE(blocker.ok());
    absl::StatusOr<std::unique_ptr<KilndProcess>> failed = KilndProcess::Start(options);
    ASSERT_FALSE(failed.ok());
    EXPECT_NE(std::string(failed.status().message()).find("before it was ready"), std::string::npos)
        << failed.status();
    EXPECT_FALSE(std::filesystem::exists(options.ready_file)) << ReadWholeFile(options.ready_file);
  }

  // The restart binds the same ports, writes its own ready file and serves the same text.
  started = KilndProcess::Start(options);
  ASSERT_TRUE(started.ok()) << started.status();
  std::unique_ptr<KilndProcess> second = *std::move(started);
  EXPECT_EQ(second->grpc_port(), first->grpc_port());
  EXPECT_EQ(second->metrics_port(), first->metrics_port());
  auto channel2 = Connect(second->grpc_address());
  ASSERT_TRUE(WaitServing(channel2)) << second->Log();
  auto stub2 = kiln::v1::Kiln::NewStub(channel2);
  const StreamResult again = RunStream(*stub2, Greedy("Once upon a time", 32));
  ASSERT_EQ(again.code, grpc::StatusCode::OK) << again.message;
  EXPECT_EQ(again.ids, reference.ids);
  EXPECT_EQ(again.text, reference.text);
  EXPECT_TRUE(ScrapeMetrics(second->metrics_port()).ok());

  absl::StatusOr<int> stopped = second->Stop(SIGTERM, std::chrono::seconds(30));
  ASSERT_TRUE(stopped.ok()) << stopped.status();
  EXPECT_EQ(*stopped, 0) << second->Log();
  EXPECT_FALSE(std::filesystem::exists(options.ready_file));
}

}  // namespace
}  // namespace kiln::testing
