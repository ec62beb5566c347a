#include "engine/runtime/event_stream.h"

#include <atomic>
#include <thread>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"

namespace kiln::engine {
namespace {

TEST(EventStreamTest, DrainHandsOverEverythingThenTheFinalStatus) {
  EventStream<int> s;
  EXPECT_TRUE(s.Push(1));
  EXPECT_TRUE(s.Push(2));
  EXPECT_TRUE(s.Finish(absl::OkStatus()));
  auto batch = s.Drain();
  EXPECT_EQ(batch.events, (std::vector<int>{1, 2}));
  ASSERT_TRUE(batch.final_status.has_value());
  EXPECT_TRUE(batch.final_status->ok());
  EXPECT_TRUE(s.Drain().empty());  // the final status is delivered once
}

TEST(EventStreamTest, FinishIsExactlyOnceAndPushAfterFinishFails) {
  EventStream<int> s;
  EXPECT_TRUE(s.Finish(absl::CancelledError("first")));
  EXPECT_FALSE(s.Finish(absl::OkStatus()));
  EXPECT_FALSE(s.Push(3));
  auto batch = s.Drain();
  ASSERT_TRUE(batch.final_status.has_value());
  EXPECT_EQ(batch.final_status->code(), absl::StatusCode::kCancelled);
}

TEST(EventStreamTest, BoundedBufferRefusesWhenFull) {
  EventStream<int> s(/*max_buffered=*/2);
  EXPECT_TRUE(s.Push(1));
  EXPECT_TRUE(s.Push(2));
  EXPECT_FALSE(s.Push(3));
  EXPECT_EQ(s.Drain().events.size(), 2u);
  EXPECT_TRUE(s.Push(3));
}

TEST(EventStreamTest, ReadyCallbackFiresOnceAfterAnEmptyDrain) {
  EventStream<int> s;
  std::atomic<int> calls{0};
  s.SetReadyCallback([&] { calls.fetch_add(1); });
  EXPECT_TRUE(s.Push(1));
  EXPECT_EQ(calls.load(), 0);  // not armed: the consumer has not drained yet
  EXPECT_EQ(s.Drain().events.size(), 1u);
  EXPECT_TRUE(s.Drain().empty());  // arms
  s.Push(2);
  s.Push(3);
  EXPECT_EQ(calls.load(), 1);  // once per arming
  EXPECT_EQ(s.Drain().events.size(), 2u);
  EXPECT_TRUE(s.Drain().empty());
  s.Finish(absl::OkStatus());
  EXPECT_EQ(calls.load(), 2);
}

// The abort callback tells a consumer that is stuck (not draining: its write never completes,
// so the buffer filled up) that the producer gave up. An OK finish, or an error while the
// buffer still has room (the consumer keeps up), is not an abort.
TEST(EventStreamTest, AbortCallbackFiresOnAnErrorFinishWithAFullBuffer) {
  for (bool ok : {true, false}) {
    for (int pushed : {1, 2}) {
      EventStream<int> s(/*max_buffered=*/2);
      std::atomic<int> ready{0}, aborts{0};
      s.SetReadyCallback([&] { ready.fetch_add(1); });
      s.SetAbortCallback([&] { aborts.fetch_add(1); });
      for (int i = 0; i < pushed; ++i) EXPECT_TRUE(s.Push(i));  // nothing drained: not armed
      EXPECT_TRUE(s.Finish(ok ? absl::OkStatus() : absl::ResourceExhaustedError("client stalled")));
      EXPECT_EQ(ready.load(), 0);
      EXPECT_EQ(aborts.load(), !ok && pushed == 2 ? 1 : 0) << "ok=" << ok << " pushed=" << pushed;
      auto batch = s.Drain();  // the events and the status are still delivered
      EXPECT_EQ(batch.events.size(), static_cast<size_t>(pushed));
      ASSERT_TRUE(batch.final_status.has_value());
      EXPECT_EQ(batch.final_status->ok(), ok);
    }
  }
}

TEST(EventStreamTest, CancelIsVisibleToTheProducerAndDropsBufferedEvents) {
  EventStream<int> s;
  s.Push(1);
  s.Cancel();
  EXPECT_TRUE(s.cancelled());
  EXPECT_EQ(s.buffered(), 0u);
}

// A consumer thread driven only by the ready callback sees every event in order and the
// final status, whatever the interleaving.
TEST(EventStreamTest, ConcurrentProducerAndConsumerLoseNothing) {
  constexpr int kEvents = 20000;
  EventStream<int> s(/*max_buffered=*/1 << 20);
  std::vector<int> seen;
  absl::Notification done;
  std::function<void()> pump = [&] {
    while (true) {
      auto batch = s.Drain();
      if (batch.empty()) return;  // armed: the callback will call pump again
      seen.insert(seen.end(), batch.events.begin(), batch.events.end());
      if (batch.final_status.has_value()) {
        done.Notify();
        return;
      }
    }
  };
  s.SetReadyCallback(pump);
  pump();
  std::thread producer([&] {
    for (int i = 0; i < kEvents; ++i) ASSERT_TRUE(s.Push(i));
    s.Finish(absl::OkStatus());
  });
  done.WaitForNotification();
  producer.join();
  ASSERT_EQ(seen.size(), static_cast<size_t>(kEvents));
  for (int i = 0; i < kEvents; ++i) ASSERT_EQ(seen[i], i);
}

}  // namespace
}  // namespace kiln::engine
