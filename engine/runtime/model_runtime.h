// ModelRuntime: one resident model and the step loop that serves it (DESIGN.md §2-3).
//
// The step-loop thread owns the model's KV cache, its block manager (engine/kv), the running
// batch and every request's sampling state; it takes no locks except to drain its inbox and
// publish stats. Each step it reaps cancelled, expired and stalled requests, asks the
// scheduling policy (engine/sched) for a plan — which sequences run how many tokens, who is
// admitted, who is preempted — allocates KV blocks on demand, runs one forward pass over the
// plan (prefill chunks mixed with decodes), samples where a sequence reached its last known
// token, detokenizes incrementally, checks stops and pushes one chunk per sequence.
//
// KV policy: blocks are allocated as tokens need them. When the pool runs dry the newest
// running sequence is preempted: its blocks are released and it later re-prefills prompt +
// generated tokens (the prefix cache usually serves most of that again); its stream just
// continues. Full blocks are content-hashed (model, adapter, cache_salt, tokens) and reused by
// later requests unless the model disabled prefix caching. A request that could never fit
// (prompt + max_new_tokens beyond the whole pool) is refused at Submit.
//
// Slow readers: when a stream's bounded buffer is full the request pauses (keeps its blocks,
// leaves the batch) and retries each step; after EngineLimits::stream_stall_timeout_ms it ends
// with RESOURCE_EXHAUSTED. Cancel and deadlines act within one step at any phase.
//
// Adapters: a request naming an adapter that is not on the device waits (counted as waiting)
// while the adapter cache loads it, then joins the queue; a failed load ends it with the load
// error. Sequences with different adapters (and none) share every step.
//
// Thread-safety: Submit, Stop, in_flight, stats and the accessors are thread-safe. The step
// loop runs on its own thread from construction until Stop().
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "engine/model/causal_lm.h"
#include "engine/kv/block_manager.h"
#include "engine/model/kv_cache.h"
#include "engine/placement/ledger.h"
#include "engine/runtime/adapter_cache.h"
#include "engine/runtime/engine.h"
#include "engine/runtime/engine_metrics.h"
#include "engine/runtime/engine_options.h"
#include "engine/runtime/request.h"
#include "engine/sample/sampling_params.h"
#include "engine/sched/scheduler.h"
#include "engine/tokenizer/tokenizer.h"

namespace kiln::engine {

// Everything a loaded model brings to its runtime.
struct RuntimeParts {
  // The memory ledger bytes the model holds (weights, KV). First member: destroyed last, so
  // the bytes go back only after the memory they account for is freed, whoever drops the
  // runtime last (an unload, or an in-flight RPC finishing after it).
  std::vector<placement::Reservation> reservations;
  std::string served_name;
  std::unique_ptr<CausalLm> model;
  std::unique_ptr<KvCache> kv_cache;
  std::shared_ptr<const tokenizer::Tokenizer> tokenizer;
  sample::GenerationDefaults generation_defaults;
  std::vector<int32_t> eos_token_ids;  // from generation_config.json, else config.json
  int64_t max_seq_len = 0;             // prompt + generated, per sequence
  int32_t max_running = 16;            // sequences decoded together per step
  bool enable_prefix_caching = true;
  // LoRA adapters of this model (null: the model serves none). Its payloads are
  // runtime/lora_payloads.h's HostLora (host tier) and DeviceLora (device tier).
  std::unique_ptr<AdapterCache> adapters;
  std::string default_adapter;  // used when a request names none ("" = base model)
};

class ModelRuntime {
 public:
  // `metrics` may be null (nothing recorded).
  ModelRuntime(RuntimeParts parts, const EngineLimits& limits,
               std::unique_ptr<ModelMetrics> metrics = nullptr);
  ~ModelRuntime();  // Stop(UNAVAILABLE) if still running
  ModelRuntime(const ModelRuntime&) = delete;
  ModelRuntime& operator=(const ModelRuntime&) = delete;

  // Validates `request` (sampling, stopping, logprobs, prompt limits), tokenizes the prompt
  // and queues it. INVALID_ARGUMENT naming the field for a bad request; RESOURCE_EXHAUSTED
  // when the waiting queue is full or the request can never fit the KV cache; UNAVAILABLE
  // once stopped.
  // `stream`: deliver into this existing stream (a request that waited for a reload) instead
  // of a new one; on an error status nothing was pushed to it and the caller finishes it.
  absl::StatusOr<std::shared_ptr<GenerateStream>> Submit(GenerateRequest request,
                                                         std::shared_ptr<GenerateStream> stream = nullptr);

  // Stops accepting requests if none is in flight (eviction): true when it did, after which
  // the caller runs Stop(); false (and nothing changes) while requests are in flight or once
  // stopping.
  bool TryRetire(absl::Status reason);

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
  bool prefix_caching() const { return parts_.enable_prefix_caching; }
  // Null when the model serves no adapters. Valid while the runtime lives.
  AdapterCache* adapters() const { return parts_.adapters.get(); }
  // A snapshot published by the step loop after every step (and at idle).
  ModelStats stats() const;

 private:
  void Loop();
  // Adapter-load completion for a parked request (runs on the adapter cache's thread).
  void OnAdapterReady(Request* parked, absl::StatusOr<AdapterCache::Handle> handle);
  // Binds a device-resident adapter to `r` (sets r.lora from the handle's payload).
  static void AttachAdapter(Request& r, AdapterCache::Handle handle);
  // Moves new submissions into waiting_; returns false when the loop must exit. Blocks until
  // something arrives when `block`, for at most `max_wait` when given.
  bool TakeInbox(bool block, std::optional<absl::Duration> max_wait);
  void ReapCancelledAndExpired();
  // Retries delivering paused streams' pending chunks.
  void FlushPending();
  // Plans and runs one step; false when nothing could run.
  bool Step();
  sched::SchedulerState BuildState(std::vector<Request*>& active);
  void Preempt(Request& r);
  void Admit(Request& r);
  bool EnsureBlocks(Request& r, int32_t num_tokens);
  void CommitFullBlocks(Request& r);
  void ReleaseBlocks(Request& r);
  // Samples the next token of `r` from `logits` and pushes its chunk. False when r finished.
  bool SampleAndEmit(Request& r, std::span<const float> logits, absl::Time now);
  // Pushes `chunk` (or pauses `r` holding it). False when r finished.
  bool Emit(Request& r, GenerateChunk chunk, absl::Time now);
  // Finishes `r` with `status` (OK after its last chunk), frees its blocks. The caller drops it.
  void Finish(Request& r, absl::Status status, FinishKind kind);
  void FailAll(const absl::Status& status);
  void PublishStats();
  // Adapter residency and per-adapter request gauges (part of PublishStats).
  void PublishAdapterStatsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The text of one token (for logprobs and matched stop tokens).
  std::string TokenText(int32_t token_id) const;

  RuntimeParts parts_;
  const EngineLimits limits_;

  mutable absl::Mutex mu_;
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<std::unique_ptr<Request>> inbox_ ABSL_GUARDED_BY(mu_);
  // Requests waiting for their adapter's load, keyed by address.
  std::map<Request*, std::unique_ptr<Request>> parked_ ABSL_GUARDED_BY(mu_);
  int num_waiting_ ABSL_GUARDED_BY(mu_) = 0;  // inbox + waiting_, for the queue limit
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status stop_reason_ ABSL_GUARDED_BY(mu_);

  ModelStats stats_ ABSL_GUARDED_BY(mu_);
  int64_t finishes_ ABSL_GUARDED_BY(mu_) = 0;            // streams finished so far
  int64_t published_finishes_ ABSL_GUARDED_BY(mu_) = 0;  // ... as of stats_

  // Step-loop state (only the loop thread touches these).
  const sched::SchedulerConfig sched_config_;
  kv::BlockManager blocks_;
  std::unique_ptr<ModelMetrics> metrics_;
  std::deque<std::unique_ptr<Request>> waiting_;
  std::vector<std::unique_ptr<Request>> running_;  // admission order, oldest first
  int64_t preemptions_ = 0, prefix_queries_ = 0, prefix_hits_ = 0, steps_ = 0;
  uint64_t adapter_version_published_ = ~uint64_t{0};  // AdapterCache::version() last published
  bool adapter_requests_published_ = false;            // the last publish had adapter requests

  // Adapter-load callbacks reach the runtime through this (not through `this`), so a
  // callback that outlives the runtime finds it gone instead of touching freed memory.
  struct AdapterDelivery {
    absl::Mutex mu;
    ModelRuntime* runtime ABSL_GUARDED_BY(mu) = nullptr;
  };
  std::shared_ptr<AdapterDelivery> delivery_ = std::make_shared<AdapterDelivery>();

  absl::Mutex stop_mu_;  // serializes Stop() callers around the join
  std::thread thread_;
};

}  // namespace kiln::engine
