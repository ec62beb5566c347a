// ParallelRunner: every index exactly once with the documented static chunks, on both wait
// paths (spinning and sleeping: spin_us = 0 sleeps at once), with jobs that use fewer chunks
// than threads, with concurrent callers, and through destruction. Runs under TSan in CI.
#include "kernels/cpu/parallel.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace kiln::kernels::cpu {
namespace {

// Runs For(n, min_chunk) and checks that each index was visited once, by the worker whose
// static chunk holds it, and that the expected number of chunks ran.
void ExpectEveryIndexOnceInStaticChunks(ParallelRunner& runner, int64_t n, int64_t min_chunk) {
  const int64_t by_size = std::max<int64_t>(1, n / min_chunk);
  const int chunks = static_cast<int>(std::min<int64_t>(runner.num_threads(), by_size));
  std::vector<std::atomic<int>> visits(static_cast<size_t>(n));
  std::vector<std::atomic<int>> owner(static_cast<size_t>(n));
  std::atomic<int> calls{0};
  runner.For(n, min_chunk, [&](int64_t begin, int64_t end, int worker) {
    calls.fetch_add(1);
    for (int64_t i = begin; i < end; ++i) {
      visits[static_cast<size_t>(i)].fetch_add(1);
      owner[static_cast<size_t>(i)].store(worker);
    }
  });
  EXPECT_EQ(calls.load(), n > 0 ? chunks : 0) << "n=" << n;
  for (int64_t i = 0; i < n; ++i) {
    ASSERT_EQ(visits[static_cast<size_t>(i)].load(), 1) << "n=" << n << " i=" << i;
    // chunk c = [c*n/chunks, (c+1)*n/chunks)
    int expect_owner = -1;
    for (int c = 0; c < chunks; ++c) {
      if (n * c / chunks <= i && i < n * (c + 1) / chunks) expect_owner = c;
    }
    ASSERT_EQ(owner[static_cast<size_t>(i)].load(), expect_owner) << "n=" << n << " i=" << i;
  }
}

class ParallelRunnerTest : public ::testing::TestWithParam<int /*spin_us*/> {};

TEST_P(ParallelRunnerTest, EveryIndexOnceInStaticChunksForManyShapes) {
  for (int threads : {1, 2, 3, 5}) {
    ParallelRunner runner(threads, GetParam());
    EXPECT_EQ(runner.num_threads(), threads);
    for (int64_t n : {0, 1, 2, 3, 7, 64, 1000}) {
      for (int64_t min_chunk : {1, 2, 16, 400}) {
        SCOPED_TRACE(testing::Message() << "threads=" << threads << " min_chunk=" << min_chunk);
        ExpectEveryIndexOnceInStaticChunks(runner, n, min_chunk);
      }
    }
  }
}

// Jobs that alternate between all workers and only some of them: a worker skipped by one
// job must still take part in the next (the ticket carries the job's chunk count).
TEST_P(ParallelRunnerTest, AlternatingChunkCountsNeverLoseAWorker) {
  ParallelRunner runner(4, GetParam());
  for (int i = 0; i < 2000; ++i) {
    const int64_t n = (i % 3 == 0) ? 4 : (i % 3 == 1) ? 2 : 3;
    std::atomic<int64_t> sum{0};
    runner.For(n, 1, [&](int64_t b, int64_t e, int) {
      for (int64_t j = b; j < e; ++j) sum.fetch_add(j + 1);
    });
    ASSERT_EQ(sum.load(), n * (n + 1) / 2) << "job " << i;
  }
}

// Callers on several threads are serialized; each sees its own job complete before For()
// returns, and no index of any job is lost.
TEST_P(ParallelRunnerTest, ConcurrentCallersEachGetTheirWholeJob) {
  ParallelRunner runner(3, GetParam());
  constexpr int kCallers = 4, kJobs = 300;
  std::atomic<int> failures{0};
  std::vector<std::thread> callers;
  for (int c = 0; c < kCallers; ++c) {
    callers.emplace_back([&, c] {
      for (int j = 0; j < kJobs; ++j) {
        const int64_t n = 10 + (c * 7 + j) % 50;
        std::vector<int> hits(static_cast<size_t>(n), 0);  // written by disjoint chunks
        runner.For(n, 4, [&](int64_t b, int64_t e, int) {
          for (int64_t i = b; i < e; ++i) ++hits[static_cast<size_t>(i)];
        });
        for (int h : hits) failures.fetch_add(h == 1 ? 0 : 1);
      }
    });
  }
  for (auto& t : callers) t.join();
  EXPECT_EQ(failures.load(), 0);
}

// Results written by workers are visible to the caller once For() returns (the completion
// count is released by workers and acquired by the caller; TSan checks the ordering).
TEST_P(ParallelRunnerTest, WorkerWritesAreVisibleAfterForReturns) {
  ParallelRunner runner(2, GetParam());
  std::vector<int64_t> out(4096);
  for (int round = 0; round < 200; ++round) {
    runner.For(static_cast<int64_t>(out.size()), 1, [&](int64_t b, int64_t e, int) {
      for (int64_t i = b; i < e; ++i) out[static_cast<size_t>(i)] = i * round;
    });
    for (size_t i = 0; i < out.size(); ++i) {
      ASSERT_EQ(out[i], static_cast<int64_t>(i) * round) << "round " << round;
    }
  }
}

TEST_P(ParallelRunnerTest, DestroysCleanlyWhetherWorkersSpinOrSleep) {
  for (int i = 0; i < 50; ++i) {
    ParallelRunner runner(3, GetParam());
    if (i % 2 == 0) {
      std::atomic<int> n{0};
      runner.For(3, 1, [&](int64_t, int64_t, int) { n.fetch_add(1); });
      EXPECT_EQ(n.load(), 3);
    }
  }  // each destructor joins its workers, right after a job or before any
}

INSTANTIATE_TEST_SUITE_P(SpinAndSleep, ParallelRunnerTest, ::testing::Values(50, 0),
                         [](const testing::TestParamInfo<int>& p) {
                           return p.param == 0 ? std::string("Sleep") : std::string("Spin");
                         });

TEST(ParallelRunnerLimitsTest, ClampsThreadCount) {
  EXPECT_EQ(ParallelRunner(0).num_threads(), 1);
  EXPECT_EQ(ParallelRunner(-3).num_threads(), 1);
}

}  // namespace
}  // namespace kiln::kernels::cpu
