#include "engine/common/thread_pool.h"

#include <atomic>
#include <memory>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"

namespace kiln {
namespace {

TEST(ThreadPoolTest, RunsEverySubmittedTask) {
  std::atomic<int> ran{0};
  {
    ThreadPool pool(3);
    for (int i = 0; i < 1000; ++i) ASSERT_TRUE(pool.Submit([&] { ran.fetch_add(1); }));
  }  // the destructor drains the queue before joining
  EXPECT_EQ(ran.load(), 1000);
}

TEST(ThreadPoolTest, TasksRunConcurrently) {
  // Declared before the pool, so they outlive its workers: the pool's destructor joins the
  // first task, which may still be inside release.WaitForNotification() after Notify().
  absl::Notification first_started, release, second_done;
  std::atomic<bool> second_ran{false};
  ThreadPool pool(2);
  pool.Submit([&] {
    first_started.Notify();
    release.WaitForNotification();
  });
  first_started.WaitForNotification();
  pool.Submit([&] {
    second_ran = true;
    second_done.Notify();
  });
  second_done.WaitForNotification();  // would deadlock with a single worker
  EXPECT_TRUE(second_ran.load());
  release.Notify();
}

TEST(ThreadPoolTest, ZeroThreadsStillMakesOneWorker) {
  absl::Notification done;
  ThreadPool pool(0);
  pool.Submit([&] { done.Notify(); });
  done.WaitForNotification();
  EXPECT_TRUE(done.HasBeenNotified());
}

}  // namespace
}  // namespace kiln
