#include "engine/sched/scheduler.h"

#include <algorithm>

namespace kiln::engine::sched {

int32_t BlocksFor(int64_t tokens, int32_t block_size) {
  return static_cast<int32_t>((tokens + block_size - 1) / block_size);
}

namespace {

// Tokens to run for a sequence with `outstanding` tokens given `budget` left this step.
// Without chunked prefill a prompt runs whole, over budget only as the step's first item (so
// a long prompt still makes progress).
int32_t TokensToRun(int32_t outstanding, int32_t budget, bool chunked, bool batch_empty) {
  if (outstanding <= budget) return outstanding;
  if (chunked) return budget;
  return batch_empty ? outstanding : 0;
}

}  // namespace

StepPlan Schedule(const SchedulerState& state, const SchedulerConfig& config) {
  StepPlan plan;
  int32_t free_blocks = state.num_free_blocks;
  int32_t budget = config.max_batched_tokens;
  // Running sequences not preempted so far: [0, live_end).
  int32_t live_end = static_cast<int32_t>(state.running.size());

  for (int32_t i = 0; i < live_end; ++i) {
    if (static_cast<int32_t>(plan.scheduled.size()) >= config.max_running) break;
    const RunningSeq& seq = state.running[static_cast<size_t>(i)];
    const int32_t outstanding = seq.num_tokens - seq.num_computed;
    if (outstanding <= 0) continue;
    const int32_t n = TokensToRun(outstanding, budget, config.chunked_prefill, plan.scheduled.empty());
    if (n <= 0) continue;
    const int32_t needed =
        std::max(0, BlocksFor(seq.num_computed + n, config.block_size) - seq.num_blocks);
    bool self_preempted = false;
    while (needed > free_blocks) {
      // Preempt the newest running sequence; it may be this one.
      const int32_t victim = live_end - 1;
      plan.preempted.push_back(victim);
      free_blocks += state.running[static_cast<size_t>(victim)].num_releasable_blocks;
      --live_end;
      if (victim == i) {
        self_preempted = true;
        break;
      }
    }
    if (self_preempted) break;
    free_blocks -= needed;
    budget -= n;
    plan.num_batched_tokens += n;
    plan.scheduled.push_back({.from_waiting = false, .index = i, .num_new_tokens = n,
                              .num_new_blocks = needed});
  }

  if (!plan.preempted.empty()) return plan;
  const int32_t slots = config.max_running - static_cast<int32_t>(state.running.size());
  for (int32_t w = 0; w < static_cast<int32_t>(state.waiting.size()); ++w) {
    if (plan.num_admitted >= slots || budget <= 0) break;
    const WaitingSeq& seq = state.waiting[static_cast<size_t>(w)];
    const int32_t outstanding = seq.num_tokens - seq.num_cached_tokens;
    const int32_t n = TokensToRun(outstanding, budget, config.chunked_prefill, plan.scheduled.empty());
    if (n <= 0) break;
    const int32_t cached_blocks = seq.num_cached_tokens / config.block_size;
    const int32_t needed = BlocksFor(seq.num_cached_tokens + n, config.block_size) - cached_blocks;
    if (needed + seq.num_cached_evictable_blocks > free_blocks) break;
    free_blocks -= needed + seq.num_cached_evictable_blocks;
    budget -= n;
    plan.num_batched_tokens += n;
    plan.scheduled.push_back({.from_waiting = true, .index = w, .num_new_tokens = n,
                              .num_new_blocks = needed});
    ++plan.num_admitted;
  }
  return plan;
}

}  // namespace kiln::engine::sched
