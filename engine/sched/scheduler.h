// The iteration-level scheduling policy (DESIGN.md §1-2, engine/sched): a pure function from
// the step loop's state to the plan of one step. No model, no KV storage, no clocks — tests
// drive it with plain structs.
//
// Policy (vLLM v1 style, recompute preemption):
// 1. Running sequences, oldest first, each get their outstanding tokens (1 for a decode, the
//    rest of the prompt for a prefill — capped by the step's token budget when chunked
//    prefill is on). A sequence that needs blocks when none are free preempts the newest
//    running sequence (possibly itself), whose releasable blocks return to the pool; the
//    preempted sequence restarts its prefill later from prompt + generated tokens.
// 2. If nothing was preempted, waiting sequences are admitted in FCFS order while there is a
//    running slot, token budget and enough free blocks for their first chunk (cached prefix
//    blocks that are evictable count against the free pool). The head of the queue is never
//    overtaken: admission stops at the first request that does not fit.
//
// Thread-safety: Schedule is a pure function.
#pragma once

#include <cstdint>
#include <vector>

namespace kiln::engine::sched {

struct SchedulerConfig {
  int32_t max_running = 16;           // sequences in one step's batch
  int32_t max_batched_tokens = 2048;  // new tokens in one step's batch
  bool chunked_prefill = true;
  int32_t block_size = 16;
};

struct RunningSeq {
  int32_t num_tokens = 0;         // tokens known (prompt + generated) that must reach the cache
  int32_t num_computed = 0;       // tokens whose KV is in the cache
  int32_t num_blocks = 0;         // blocks held (its block table)
  int32_t num_releasable_blocks = 0;  // held blocks nobody else references
};

struct WaitingSeq {
  int32_t num_tokens = 0;               // prompt (+ generated, after a preemption)
  int32_t num_cached_tokens = 0;        // prefix the cache can serve (whole blocks, < num_tokens)
  int32_t num_cached_evictable_blocks = 0;  // of those blocks, how many are unreferenced now
};

struct SchedulerState {
  std::vector<RunningSeq> running;  // admission order, oldest first
  std::vector<WaitingSeq> waiting;  // FCFS order; may be a prefix of the whole queue
  int32_t num_free_blocks = 0;      // never-used free + evictable cached
};

struct ScheduledSeq {
  bool from_waiting = false;  // index into waiting (admitted now) or running
  int32_t index = 0;
  int32_t num_new_tokens = 0;
  int32_t num_new_blocks = 0;  // blocks to allocate beyond what it holds (or the cached prefix)
};

struct StepPlan {
  std::vector<ScheduledSeq> scheduled;  // running ones first, then admissions in order
  std::vector<int32_t> preempted;       // running indices, newest first
  int32_t num_admitted = 0;             // the first num_admitted waiting sequences
  int32_t num_batched_tokens = 0;
};

int32_t BlocksFor(int64_t tokens, int32_t block_size);

StepPlan Schedule(const SchedulerState& state, const SchedulerConfig& config);

}  // namespace kiln::engine::sched
