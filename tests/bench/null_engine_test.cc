// NullEngine (bench/null): the contract the overhead benchmark relies on. Tokens are exact
// in number, never more than max_buffered wait in a stream (max_buffered = 1 is "coalescing
// off": every Drain hands over at most one token), the last chunk carries finish + usage,
// cancellation and unknown models end as the engine contract says.
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "bench/null/null_engine.h"
#include "gtest/gtest.h"

namespace kiln::bench {
namespace {

struct Drained {
  std::vector<size_t> batch_sizes;
  std::vector<engine::GenerateChunk> chunks;
  absl::Status status;
};

// Drains `stream` from its ready callback until the final status, as a reactor does.
Drained DrainAll(const std::shared_ptr<engine::GenerateStream>& stream) {
  absl::Mutex mu;
  bool ready = false;
  stream->SetReadyCallback([&] {
    absl::MutexLock lock(&mu);
    ready = true;
  });
  Drained out;
  for (;;) {
    engine::GenerateStream::Batch batch = stream->Drain();
    if (!batch.events.empty()) out.batch_sizes.push_back(batch.events.size());
    for (auto& c : batch.events) out.chunks.push_back(std::move(c));
    if (batch.final_status.has_value()) {
      out.status = *batch.final_status;
      return out;
    }
    if (batch.empty()) {
      absl::MutexLock lock(&mu);
      mu.Await(absl::Condition(&ready));
      ready = false;
    }
  }
}

engine::GenerateRequest Request(int32_t max_new_tokens) {
  engine::GenerateRequest r;
  r.model = "null";
  r.prompt_token_ids = std::vector<int32_t>{1, 2, 3};
  r.stopping.max_new_tokens = max_new_tokens;
  return r;
}

TEST(NullEngineTest, MaxBufferedOneMeansOneTokenPerDrain) {
  NullEngineOptions o;
  o.max_buffered = 1;
  NullEngine engine(o);
  auto stream = engine.Generate(Request(200));
  ASSERT_TRUE(stream.ok()) << stream.status();
  Drained d = DrainAll(*stream);
  EXPECT_TRUE(d.status.ok()) << d.status;
  ASSERT_EQ(d.chunks.size(), 200u);
  for (size_t n : d.batch_sizes) EXPECT_EQ(n, 1u);
  ASSERT_TRUE(d.chunks.back().finish.has_value());
  EXPECT_EQ(d.chunks.back().finish->usage.completion_tokens, 200);
  EXPECT_EQ(d.chunks.back().finish->usage.prompt_tokens, 3);
  for (size_t i = 0; i + 1 < d.chunks.size(); ++i) EXPECT_FALSE(d.chunks[i].finish.has_value());
}

TEST(NullEngineTest, BatchesNeverExceedMaxBuffered) {
  NullEngineOptions o;
  o.max_buffered = 4;
  NullEngine engine(o);
  auto stream = engine.Generate(Request(500));
  ASSERT_TRUE(stream.ok());
  Drained d = DrainAll(*stream);
  EXPECT_TRUE(d.status.ok());
  EXPECT_EQ(d.chunks.size(), 500u);
  for (size_t n : d.batch_sizes) EXPECT_LE(n, 4u);
  EXPECT_EQ(engine.InFlightRequests(), 0);
}

TEST(NullEngineTest, CancelEndsWithCancelled) {
  NullEngineOptions o;
  o.step_hz = 1000;  // slow enough that 1e6 tokens cannot finish first
  NullEngine engine(o);
  auto stream = engine.Generate(Request(1000000));
  ASSERT_TRUE(stream.ok());
  (*stream)->Cancel();
  Drained d = DrainAll(*stream);
  EXPECT_EQ(d.status.code(), absl::StatusCode::kCancelled);
}

TEST(NullEngineTest, UnknownModelAndDrain) {
  NullEngine engine(NullEngineOptions{});
  engine::GenerateRequest r = Request(1);
  r.model = "other";
  EXPECT_EQ(engine.Generate(r).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(engine.GetModel("other").status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(engine.GetModel("null").ok());
  EXPECT_EQ(engine.GetModel("null")->state, engine::ModelState::kReady);
  engine.BeginDrain();
  EXPECT_EQ(engine.Generate(Request(1)).status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace kiln::bench
