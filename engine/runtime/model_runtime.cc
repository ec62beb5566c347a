// ModelRuntime lifecycle: Submit, the loop, reaping, finishing. The step itself (plan,
// forward, sample, emit) is in model_step.cc.
#include "engine/runtime/model_runtime.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/common/check.h"
#include "engine/common/status_macros.h"
#include "engine/runtime/lora_payloads.h"

namespace kiln::engine {
namespace {

// How often a loop whose only work is paused streams looks at them again.
constexpr absl::Duration kStalledPollInterval = absl::Milliseconds(2);

sched::SchedulerConfig SchedConfig(const RuntimeParts& parts, const EngineLimits& limits) {
  return sched::SchedulerConfig{.max_running = std::max(1, parts.max_running),
                                .max_batched_tokens = std::max(1, limits.max_batched_tokens),
                                .chunked_prefill = limits.enable_chunked_prefill,
                                .block_size = parts.kv_cache->block_size()};
}

}  // namespace

std::string ModelRuntime::TokenText(int32_t token_id) const {
  absl::StatusOr<std::string> text =
      parts_.tokenizer->Decode(absl::Span<const int32_t>(&token_id, 1), /*skip_special_tokens=*/false);
  return text.ok() ? *std::move(text) : std::string();
}

ModelRuntime::ModelRuntime(RuntimeParts parts, const EngineLimits& limits,
                           std::unique_ptr<ModelMetrics> metrics)
    : parts_(std::move(parts)),
      limits_(limits),
      sched_config_(SchedConfig(parts_, limits_)),
      blocks_({.num_blocks = parts_.kv_cache->num_blocks(),
               .block_size = parts_.kv_cache->block_size(),
               .enable_prefix_caching = parts_.enable_prefix_caching}),
      metrics_(metrics ? std::move(metrics) : EngineMetrics(nullptr).ForModel(parts_.served_name)) {
  PublishStats();
  {
    absl::MutexLock lock(&delivery_->mu);
    delivery_->runtime = this;
  }
  thread_ = std::thread([this] { Loop(); });
}

ModelRuntime::~ModelRuntime() { Stop(absl::UnavailableError("model runtime shut down")); }

bool ModelRuntime::TryRetire(absl::Status reason) {
  absl::MutexLock lock(&mu_);
  if (stopping_ || in_flight_ > 0) return false;
  stopping_ = true;
  stop_reason_ = std::move(reason);
  return true;
}

absl::StatusOr<std::shared_ptr<GenerateStream>> ModelRuntime::Submit(GenerateRequest request,
                                                                     std::shared_ptr<GenerateStream> existing) {
  if (request.adapter.empty()) request.adapter = parts_.default_adapter;
  if (!request.adapter.empty() && parts_.adapters == nullptr) {
    return absl::NotFoundError(absl::StrCat("adapter '", request.adapter, "': model '", parts_.served_name,
                                            "' serves no adapters"));
  }
  const RequestContext context{
      .tokenizer = parts_.tokenizer.get(),
      .limits = &limits_,
      .generation_defaults = &parts_.generation_defaults,
      .eos_token_ids = parts_.eos_token_ids,
      .vocab_size = parts_.model->config().vocab_size,
      .max_seq_len = parts_.max_seq_len,
  };
  KILN_ASSIGN_OR_RETURN(std::unique_ptr<Request> r, BuildRequest(std::move(request), context));
  const int32_t block_size = parts_.kv_cache->block_size();
  const int32_t blocks_needed = sched::BlocksFor(r->MaxTokens(), block_size);
  if (blocks_needed > blocks_.num_blocks()) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "request needs ", r->MaxTokens(), " tokens of KV cache (", blocks_needed,
        " blocks) but the model's whole cache has ", blocks_.num_blocks(), " blocks of ",
        block_size, " tokens"));
  }
  r->root_hash = kv::BlockManager::RootHash(parts_.served_name, r->adapter, r->cache_salt);
  r->stream = existing != nullptr ? std::move(existing)
                                  : std::make_shared<GenerateStream>(
                                        static_cast<size_t>(std::max(1, limits_.max_stream_buffer_events)));
  std::shared_ptr<GenerateStream> stream = r->stream;
  Request* parked = nullptr;
  std::string adapter;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return absl::UnavailableError("model is shutting down");
    if (num_waiting_ >= limits_.max_waiting_requests) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "waiting queue full: ", num_waiting_, " requests waiting (max_waiting_requests ",
          limits_.max_waiting_requests, ")"));
    }
    ++num_waiting_;
    ++in_flight_;
    if (r->adapter.empty()) {
      inbox_.push_back(std::move(r));
      return stream;
    }
    parked = r.get();
    adapter = r->adapter;
    parked_[parked] = std::move(r);  // parked before Acquire: its callback may run at once
  }
  std::optional<AdapterCache::Handle> resident = parts_.adapters->Acquire(
      adapter, [delivery = delivery_, parked](absl::StatusOr<AdapterCache::Handle> handle) {
        absl::MutexLock lock(&delivery->mu);
        if (delivery->runtime != nullptr) delivery->runtime->OnAdapterReady(parked, std::move(handle));
      });
  if (resident.has_value()) OnAdapterReady(parked, *std::move(resident));
  return stream;
}

void ModelRuntime::AttachAdapter(Request& r, AdapterCache::Handle handle) {
  r.lora = &static_cast<const DeviceLora*>(handle.device())->weights();
  r.adapter_handle = std::move(handle);
}

void ModelRuntime::OnAdapterReady(Request* parked, absl::StatusOr<AdapterCache::Handle> handle) {
  absl::MutexLock lock(&mu_);
  auto it = parked_.find(parked);
  if (it == parked_.end()) return;  // already failed by Stop
  std::unique_ptr<Request> r = std::move(it->second);
  parked_.erase(it);
  if (handle.ok()) {
    AttachAdapter(*r, *std::move(handle));
  } else {
    r->adapter_error = handle.status();  // the step loop ends it with the load error
  }
  inbox_.push_back(std::move(r));
}

int ModelRuntime::in_flight() const {
  absl::MutexLock lock(&mu_);
  return in_flight_;
}

ModelStats ModelRuntime::stats() const {
  absl::MutexLock lock(&mu_);
  // A stream that ended was finished inside a step that publishes right after: wait for that
  // snapshot so "my stream ended" implies "its blocks show as free" for the caller.
  mu_.AwaitWithTimeout(absl::Condition(
                           +[](const ModelRuntime* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
                             return self->published_finishes_ >= self->finishes_ || self->stopping_;
                           },
                           this),
                       absl::Seconds(5));
  ModelStats s = stats_;
  s.in_flight = in_flight_;
  return s;
}

bool ModelRuntime::WaitUntilIdle(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithTimeout(
      absl::Condition(
          +[](int* n) { return *n == 0; }, &in_flight_),
      timeout);
}

void ModelRuntime::Stop(absl::Status reason) {
  absl::MutexLock stop_lock(&stop_mu_);
  {
    absl::MutexLock lock(&mu_);
    if (!stopping_) {
      stopping_ = true;
      stop_reason_ = std::move(reason);
    }
  }
  {
    // From here on adapter-load callbacks find no runtime; the loop fails what is parked.
    absl::MutexLock lock(&delivery_->mu);
    delivery_->runtime = nullptr;
  }
  if (thread_.joinable()) thread_.join();
}

bool ModelRuntime::TakeInbox(bool block, std::optional<absl::Duration> max_wait) {
  absl::MutexLock lock(&mu_);
  if (block) {
    const absl::Condition ready(
        +[](ModelRuntime* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
          return self->stopping_ || !self->inbox_.empty();
        },
        this);
    if (max_wait.has_value()) {
      mu_.AwaitWithTimeout(ready, *max_wait);
    } else {
      mu_.Await(ready);
    }
  }
  if (stopping_) return false;
  while (!inbox_.empty()) {
    waiting_.push_back(std::move(inbox_.front()));
    inbox_.pop_front();
  }
  return true;
}

void ModelRuntime::Loop() {
  bool progressed = true;
  while (true) {
    const bool idle = running_.empty() && waiting_.empty();
    // Nothing runnable (only paused slow readers, or requests waiting on them for blocks):
    // look again shortly instead of spinning.
    const bool blocked = !idle && !progressed;
    if (!TakeInbox(/*block=*/idle || blocked,
                   blocked ? std::optional<absl::Duration>(kStalledPollInterval) : std::nullopt)) {
      break;
    }
    ReapCancelledAndExpired();
    FlushPending();
    progressed = Step();
    PublishStats();
  }
  absl::Status reason;
  {
    absl::MutexLock lock(&mu_);
    reason = stop_reason_;
    while (!inbox_.empty()) {
      waiting_.push_back(std::move(inbox_.front()));
      inbox_.pop_front();
    }
    for (auto& [raw, r] : parked_) waiting_.push_back(std::move(r));
    parked_.clear();
  }
  FailAll(reason);
  PublishStats();
}

void ModelRuntime::ReapCancelledAndExpired() {
  const absl::Time now = absl::Now();
  const absl::Duration stall_timeout = absl::Milliseconds(limits_.stream_stall_timeout_ms);
  auto reap = [&](Request& r) -> bool {
    if (r.adapter_error.has_value()) {
      Finish(r, *r.adapter_error, FinishKind::kError);
      return true;
    }
    if (r.stream->cancelled()) {
      Finish(r, absl::CancelledError("request cancelled by the client"), FinishKind::kCancelled);
      return true;
    }
    if (r.deadline.has_value() && now >= *r.deadline) {
      Finish(r, absl::DeadlineExceededError("request deadline exceeded"), FinishKind::kDeadline);
      return true;
    }
    if (r.stalled_since.has_value() && now - *r.stalled_since >= stall_timeout) {
      Finish(r,
             absl::ResourceExhaustedError(absl::StrCat(
                 "client is not reading: ", limits_.max_stream_buffer_events,
                 " responses buffered for ", limits_.stream_stall_timeout_ms,
                 " ms (max_stream_buffer_events, stream_stall_timeout_ms)")),
             FinishKind::kCancelled);
      return true;
    }
    return false;
  };
  const size_t waiting_before = waiting_.size();
  std::erase_if(waiting_, [&](std::unique_ptr<Request>& r) { return reap(*r); });
  if (waiting_.size() != waiting_before) {
    absl::MutexLock lock(&mu_);
    num_waiting_ -= static_cast<int>(waiting_before - waiting_.size());
  }
  std::erase_if(running_, [&](std::unique_ptr<Request>& r) { return reap(*r); });
}

void ModelRuntime::FlushPending() {
  const absl::Time now = absl::Now();
  std::erase_if(running_, [&](std::unique_ptr<Request>& r) {
    if (!r->pending.has_value()) return false;
    GenerateChunk chunk = *std::move(r->pending);
    r->pending.reset();
    if (!Emit(*r, std::move(chunk), now)) return true;
    if (!r->pending.has_value()) r->stalled_since.reset();  // delivered: the clock restarts
    return false;
  });
}

void ModelRuntime::ReleaseBlocks(Request& r) {
  // Tail first: the LRU then evicts a sequence's last blocks before its prefix, which is
  // what other requests are likeliest to share.
  for (auto it = r.blocks.rbegin(); it != r.blocks.rend(); ++it) blocks_.Release(*it);
  r.blocks.clear();
  r.block_hashes.clear();
  r.num_computed = 0;
}

void ModelRuntime::Finish(Request& r, absl::Status status, FinishKind kind) {
  ReleaseBlocks(r);
  // Only this thread finishes streams, so finished() cannot change underneath. The count
  // drops before the consumer can observe the end, so "stream ended" implies "not in flight".
  if (r.stream->finished()) return;
  const absl::Time now = absl::Now();
  metrics_->Finished(r.adapter, kind, absl::ToDoubleSeconds(now - r.submitted_at), status.ok());
  {
    absl::MutexLock lock(&mu_);
    --in_flight_;
    ++finishes_;
  }
  // The adapter is released before the end is observable too: a client that saw its stream
  // end may UnloadAdapter at once without finding it still "in use".
  r.lora = nullptr;
  r.adapter_handle.Reset();
  r.stream->Finish(std::move(status));
}

void ModelRuntime::FailAll(const absl::Status& status) {
  const FinishKind kind = status.code() == absl::StatusCode::kAborted ? FinishKind::kAborted
                                                                       : FinishKind::kError;
  for (auto& r : running_) Finish(*r, status, kind);
  running_.clear();
  for (auto& r : waiting_) Finish(*r, status, kind);
  waiting_.clear();
  absl::MutexLock lock(&mu_);
  num_waiting_ = 0;
}

void ModelRuntime::PublishAdapterStatsLocked() {
  if (parts_.adapters == nullptr) return;
  std::map<std::string, std::pair<int, int>> requests;  // adapter -> (running, waiting)
  for (const auto& r : running_) {
    if (!r->adapter.empty()) ++requests[r->adapter].first;
  }
  for (const auto& r : waiting_) {
    if (!r->adapter.empty()) ++requests[r->adapter].second;
  }
  for (const auto& [raw, r] : parked_) ++requests[r->adapter].second;
  // The step loop publishes every step: base-only traffic over an unchanged cache costs nothing
  // beyond the scan above.
  const uint64_t version = parts_.adapters->version();
  if (requests.empty() && !adapter_requests_published_ && version == adapter_version_published_) return;
  const AdapterCacheStats a = parts_.adapters->stats();
  metrics_->SetAdapters(a.device_adapters, a.host_adapters, a.evictions, requests);
  adapter_requests_published_ = !requests.empty();
  adapter_version_published_ = version;
}

void ModelRuntime::PublishStats() {
  const kv::BlockManagerStats kv = blocks_.stats();
  metrics_->SetKvBlocks(kv.num_blocks, kv.num_free);
  absl::MutexLock lock(&mu_);
  PublishAdapterStatsLocked();
  metrics_->SetQueue(static_cast<int>(running_.size()), num_waiting_);
  stats_.running = static_cast<int32_t>(running_.size());
  stats_.waiting = num_waiting_;
  stats_.kv_blocks_total = kv.num_blocks;
  stats_.kv_blocks_free = kv.num_free;
  stats_.kv_blocks_cached = kv.num_cached;
  stats_.preemptions = preemptions_;
  stats_.prefix_cache_queries = prefix_queries_;
  stats_.prefix_cache_hits = prefix_hits_;
  stats_.steps = steps_;
  published_finishes_ = finishes_;
}

}  // namespace kiln::engine
