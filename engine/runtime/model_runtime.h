// ModelRuntime: one resident model and the step loop that serves it (DESIGN.md §2-3).
//
// The step-loop thread owns the model's KV cache, the running batch and every request's
// sampling state; nothing it touches per step is shared, so it takes no locks except to
// drain its inbox. Each step it admits waiting requests (FCFS) while KV blocks allow, runs one
// forward pass over every running sequence (new ones prefill their whole prompt, the others
// decode one token), samples, detokenizes incrementally, checks stop conditions and pushes one
// chunk per sequence into the request's GenerateStream.
//
// KV policy (until the paged block manager of engine/kv lands): a request reserves the blocks
// for prompt + max_new_tokens when admitted, so a running request never runs out; a request
// that could never fit the whole pool is refused at Submit with RESOURCE_EXHAUSTED.
//
// Thread-safety: Submit, Stop, in_flight and the accessors are thread-safe. The step loop runs
// on its own thread from construction until Stop().
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "engine/model/causal_lm.h"
#include "engine/model/kv_cache.h"
#include "engine/runtime/engine.h"
#include "engine/runtime/engine_options.h"
#include "engine/runtime/request.h"
#include "engine/sample/sampling_params.h"
#include "engine/tokenizer/tokenizer.h"

namespace kiln::engine {

// Everything a loaded model brings to its runtime.
struct RuntimeParts {
  std::string served_name;
  std::unique_ptr<CausalLm> model;
  std::unique_ptr<KvCache> kv_cache;
  std::shared_ptr<const tokenizer::Tokenizer> tokenizer;
  sample::GenerationDefaults generation_defaults;
  std::vector<int32_t> eos_token_ids;  // from generation_config.json, else config.json
  int64_t max_seq_len = 0;             // prompt + generated, per sequence
  int32_t max_running = 16;            // sequences decoded together per step
};

class ModelRuntime {
 public:
  ModelRuntime(RuntimeParts parts, const EngineLimits& limits);
  ~ModelRuntime();  // Stop(UNAVAILABLE) if still running
  ModelRuntime(const ModelRuntime&) = delete;
  ModelRuntime& operator=(const ModelRuntime&) = delete;

  // Validates `request` (sampling, stopping, logprobs, prompt limits), tokenizes the prompt
  // and queues it. INVALID_ARGUMENT naming the field for a bad request; RESOURCE_EXHAUSTED
  // when the waiting queue is full or the request can never fit the KV cache; UNAVAILABLE
  // once stopped.
  absl::StatusOr<std::shared_ptr<GenerateStream>> Submit(GenerateRequest request);

  // Ends every queued and running request with `reason` (e.g. ABORTED on unload) and joins
  // the step loop. Idempotent: later calls do nothing.
  void Stop(absl::Status reason);

  // Requests submitted and not yet finished.
  int in_flight() const;
  // Blocks until no request is in flight or `timeout` passes; true when idle.
  bool WaitUntilIdle(absl::Duration timeout);

  const tokenizer::Tokenizer& tokenizer() const { return *parts_.tokenizer; }
  const CausalLm& model() const { return *parts_.model; }
  int64_t max_seq_len() const { return parts_.max_seq_len; }
  int64_t kv_cache_bytes() const { return parts_.kv_cache->bytes(); }
  int32_t kv_num_blocks() const { return parts_.kv_cache->num_blocks(); }
  int32_t kv_block_size() const { return parts_.kv_cache->block_size(); }

 private:
  void Loop();
  // Moves new submissions into waiting_; returns false when the loop must exit.
  bool TakeInbox(bool block);
  void ReapCancelledAndExpired();
  void Admit();
  void Step();
  // Finishes `r` with `status` (OK after its last chunk), frees its blocks, drops it.
  void Finish(Request& r, absl::Status status);
  void FailAll(const absl::Status& status);
  // The text of one token (for logprobs and matched stop tokens).
  std::string TokenText(int32_t token_id) const;

  RuntimeParts parts_;
  const EngineLimits limits_;

  mutable absl::Mutex mu_;
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<std::unique_ptr<Request>> inbox_ ABSL_GUARDED_BY(mu_);
  int num_waiting_ ABSL_GUARDED_BY(mu_) = 0;  // inbox + waiting_, for the queue limit
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status stop_reason_ ABSL_GUARDED_BY(mu_);

  // Step-loop state (only the loop thread touches these).
  KvBlockPool block_pool_;
  std::deque<std::unique_ptr<Request>> waiting_;
  std::vector<std::unique_ptr<Request>> running_;

  absl::Mutex stop_mu_;  // serializes Stop() callers around the join
  std::thread thread_;
};

}  // namespace kiln::engine
