// engine/sched: the scheduling policy as a pure function — limits, chunked prefill mixed with
// decodes, FCFS admission without overtaking, preemption of the newest sequence, and a
// randomized simulation that checks the plan never over-commits blocks or tokens.
#include "engine/sched/scheduler.h"

#include <algorithm>
#include <random>

#include "gtest/gtest.h"

namespace kiln::engine::sched {
namespace {

SchedulerConfig Config(int max_running, int max_tokens, bool chunked = true, int block = 4) {
  return {.max_running = max_running, .max_batched_tokens = max_tokens,
          .chunked_prefill = chunked, .block_size = block};
}

// A decoding sequence: `n` tokens known, all but the last computed, blocks to cover them.
RunningSeq Decoding(int n, int block = 4) {
  return {.num_tokens = n, .num_computed = n - 1, .num_blocks = BlocksFor(n - 1, block),
          .num_releasable_blocks = BlocksFor(n - 1, block)};
}

TEST(SchedulerTest, DecodesAndAdmitsWithinLimits) {
  SchedulerState s;
  s.running = {Decoding(6), Decoding(9)};
  s.waiting = {{.num_tokens = 6}, {.num_tokens = 3}, {.num_tokens = 2}};
  s.num_free_blocks = 100;
  StepPlan p = Schedule(s, Config(/*max_running=*/4, /*max_tokens=*/100));
  ASSERT_EQ(p.scheduled.size(), 4u);  // 2 running + 2 admitted: max_running
  EXPECT_EQ(p.num_admitted, 2);
  EXPECT_EQ(p.scheduled[0].num_new_tokens, 1);
  EXPECT_EQ(p.scheduled[0].num_new_blocks, 0);  // position 5 is in its second block, held
  EXPECT_EQ(p.scheduled[1].num_new_blocks, 1);  // position 8 starts a third block
  EXPECT_EQ(p.scheduled[2].num_new_tokens, 6);
  EXPECT_EQ(p.scheduled[2].num_new_blocks, 2);
  EXPECT_EQ(p.num_batched_tokens, 1 + 1 + 6 + 3);
  EXPECT_TRUE(p.preempted.empty());
}

TEST(SchedulerTest, DecodeThatCrossesABlockBoundaryGetsOneBlock) {
  SchedulerState s;
  s.running = {{.num_tokens = 5, .num_computed = 4, .num_blocks = 1, .num_releasable_blocks = 1}};
  s.num_free_blocks = 1;
  StepPlan p = Schedule(s, Config(4, 100));
  ASSERT_EQ(p.scheduled.size(), 1u);
  EXPECT_EQ(p.scheduled[0].num_new_blocks, 1);
}

TEST(SchedulerTest, ChunkedPrefillSplitsLongPromptsAndMixesWithDecodes) {
  SchedulerState s;
  s.running = {Decoding(5), Decoding(7)};
  s.waiting = {{.num_tokens = 50}};
  s.num_free_blocks = 100;
  StepPlan p = Schedule(s, Config(8, /*max_tokens=*/16));
  ASSERT_EQ(p.scheduled.size(), 3u);
  EXPECT_TRUE(p.scheduled[2].from_waiting);
  EXPECT_EQ(p.scheduled[2].num_new_tokens, 14);  // 16 - two decodes
  EXPECT_EQ(p.num_batched_tokens, 16);
  // A running sequence mid-prefill continues with the next chunk.
  s.running = {{.num_tokens = 50, .num_computed = 14, .num_blocks = 4, .num_releasable_blocks = 4}};
  s.waiting.clear();
  p = Schedule(s, Config(8, 16));
  ASSERT_EQ(p.scheduled.size(), 1u);
  EXPECT_EQ(p.scheduled[0].num_new_tokens, 16);
  EXPECT_EQ(p.scheduled[0].num_new_blocks, BlocksFor(30, 4) - 4);
}

TEST(SchedulerTest, WithoutChunkingALongPromptRunsAloneOrWaits) {
  SchedulerState s;
  s.waiting = {{.num_tokens = 50}, {.num_tokens = 3}};
  s.num_free_blocks = 100;
  StepPlan p = Schedule(s, Config(8, 16, /*chunked=*/false));
  ASSERT_EQ(p.scheduled.size(), 1u);  // first in the batch: runs whole, over budget
  EXPECT_EQ(p.scheduled[0].num_new_tokens, 50);
  EXPECT_EQ(p.num_admitted, 1);  // budget spent: the short one waits (no overtaking)
  s.running = {Decoding(5)};
  p = Schedule(s, Config(8, 16, false));
  EXPECT_EQ(p.num_admitted, 0);  // would exceed the budget behind a decode
}

TEST(SchedulerTest, FcfsHeadIsNeverOvertaken) {
  SchedulerState s;
  s.waiting = {{.num_tokens = 40}, {.num_tokens = 2}};
  s.num_free_blocks = 5;  // the head needs 10 blocks
  StepPlan p = Schedule(s, Config(8, 100));
  EXPECT_EQ(p.num_admitted, 0);
  EXPECT_TRUE(p.scheduled.empty());
}

TEST(SchedulerTest, CachedPrefixReducesWorkAndEvictableBlocksCountAsUsed) {
  SchedulerState s;
  s.waiting = {{.num_tokens = 17, .num_cached_tokens = 16, .num_cached_evictable_blocks = 4}};
  s.num_free_blocks = 5;
  StepPlan p = Schedule(s, Config(8, 100));
  ASSERT_EQ(p.num_admitted, 1);
  EXPECT_EQ(p.scheduled[0].num_new_tokens, 1);
  EXPECT_EQ(p.scheduled[0].num_new_blocks, 1);
  s.num_free_blocks = 4;  // 4 evictable cached + 1 new > 4
  EXPECT_EQ(Schedule(s, Config(8, 100)).num_admitted, 0);
}

TEST(SchedulerTest, PreemptsTheNewestWhenBlocksRunOut) {
  SchedulerState s;
  // Three decodes, each at a block boundary, one block free.
  for (int i = 0; i < 3; ++i) {
    s.running.push_back({.num_tokens = 9, .num_computed = 8, .num_blocks = 2, .num_releasable_blocks = 2});
  }
  s.waiting = {{.num_tokens = 2}};
  s.num_free_blocks = 1;
  StepPlan p = Schedule(s, Config(8, 100));
  // 0 takes the free block; 1 preempts 2 and takes one of its blocks.
  EXPECT_EQ(p.preempted, std::vector<int32_t>({2}));
  ASSERT_EQ(p.scheduled.size(), 2u);
  EXPECT_EQ(p.scheduled[0].index, 0);
  EXPECT_EQ(p.scheduled[1].index, 1);
  EXPECT_EQ(p.num_admitted, 0);  // no admission in a step that preempts
}

TEST(SchedulerTest, ASequenceThatCannotGrowPreemptsItselfLast) {
  SchedulerState s;
  s.running = {{.num_tokens = 9, .num_computed = 8, .num_blocks = 2, .num_releasable_blocks = 2}};
  s.num_free_blocks = 0;
  StepPlan p = Schedule(s, Config(8, 100));
  EXPECT_EQ(p.preempted, std::vector<int32_t>({0}));
  EXPECT_TRUE(p.scheduled.empty());
}

TEST(SchedulerTest, SharedBlocksAreNotCountedAsFreedByPreemption) {
  SchedulerState s;
  s.running = {{.num_tokens = 9, .num_computed = 8, .num_blocks = 2, .num_releasable_blocks = 2},
               {.num_tokens = 9, .num_computed = 8, .num_blocks = 2, .num_releasable_blocks = 0},
               {.num_tokens = 9, .num_computed = 8, .num_blocks = 2, .num_releasable_blocks = 1}};
  s.num_free_blocks = 0;
  StepPlan p = Schedule(s, Config(8, 100));
  // 0 needs one block: preempting 2 frees one. 1 then needs one: preempting itself frees none.
  EXPECT_EQ(p.preempted, std::vector<int32_t>({2, 1}));
  ASSERT_EQ(p.scheduled.size(), 1u);
  EXPECT_EQ(p.scheduled[0].index, 0);
}

// Random states: the plan never uses more blocks than free + released, never more tokens than
// the budget (chunked), never more sequences than max_running, and always makes progress on
// a non-empty state whose oldest sequence fits the pool.
TEST(SchedulerTest, RandomStatesNeverOvercommit) {
  std::mt19937 rng(42);
  for (int iter = 0; iter < 5000; ++iter) {
    const int block = 1 + static_cast<int>(rng() % 8);
    const SchedulerConfig config = Config(1 + rng() % 8, 1 + rng() % 64, true, block);
    SchedulerState s;
    const int n_running = static_cast<int>(rng() % static_cast<uint32_t>(config.max_running + 1));
    for (int i = 0; i < n_running; ++i) {
      RunningSeq r;
      r.num_tokens = 1 + static_cast<int>(rng() % 100);
      r.num_computed = static_cast<int>(rng() % static_cast<uint32_t>(r.num_tokens));
      r.num_blocks = BlocksFor(r.num_computed, block);
      r.num_releasable_blocks = static_cast<int>(rng() % static_cast<uint32_t>(r.num_blocks + 1));
      s.running.push_back(r);
    }
    for (int i = 0, n = static_cast<int>(rng() % 5); i < n; ++i) {
      WaitingSeq w;
      w.num_tokens = 1 + static_cast<int>(rng() % 100);
      w.num_cached_tokens = (static_cast<int>(rng() % static_cast<uint32_t>(w.num_tokens)) / block) * block;
      w.num_cached_evictable_blocks =
          static_cast<int>(rng() % static_cast<uint32_t>(w.num_cached_tokens / block + 1));
      s.waiting.push_back(w);
    }
    s.num_free_blocks = static_cast<int>(rng() % 40);
    const StepPlan p = Schedule(s, config);
    int freed = 0;
    for (int32_t v : p.preempted) freed += s.running[static_cast<size_t>(v)].num_releasable_blocks;
    int used = 0, tokens = 0;
    for (const ScheduledSeq& item : p.scheduled) {
      used += item.num_new_blocks;
      if (item.from_waiting) used += s.waiting[static_cast<size_t>(item.index)].num_cached_evictable_blocks;
      tokens += item.num_new_tokens;
      EXPECT_GT(item.num_new_tokens, 0);
      if (!item.from_waiting) {
        EXPECT_EQ(std::count(p.preempted.begin(), p.preempted.end(), item.index), 0);
        const RunningSeq& r = s.running[static_cast<size_t>(item.index)];
        EXPECT_LE(item.num_new_tokens, r.num_tokens - r.num_computed);
        EXPECT_GE(r.num_blocks + item.num_new_blocks, BlocksFor(r.num_computed + item.num_new_tokens, block));
      }
    }
    ASSERT_LE(used, s.num_free_blocks + freed) << iter;
    ASSERT_LE(tokens, config.max_batched_tokens) << iter;
    ASSERT_LE(static_cast<int>(p.scheduled.size()), config.max_running) << iter;
    ASSERT_LE(n_running - static_cast<int>(p.preempted.size()) + p.num_admitted, config.max_running);
    if (!s.running.empty() && p.preempted.empty()) {
      EXPECT_FALSE(p.scheduled.empty()) << iter;  // the oldest always runs or preempts
    }
  }
}

}  // namespace
}  // namespace kiln::engine::sched
