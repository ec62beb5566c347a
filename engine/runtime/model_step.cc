// ModelRuntime's step: build the scheduler state, apply the plan (preempt, admit, allocate
// blocks on demand), run one forward pass over prefill chunks and decodes, commit full blocks
// to the prefix cache, sample, detokenize, stop, push.
#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/common/check.h"
#include "engine/runtime/model_runtime.h"

namespace kiln::engine {
namespace {

int64_t MillisBetween(absl::Time from, absl::Time to) {
  return absl::ToInt64Milliseconds(to - from);
}

FinishKind KindOf(FinishReason reason) {
  switch (reason) {
    case FinishReason::kLength: return FinishKind::kLength;
    case FinishReason::kEos: return FinishKind::kEos;
    case FinishReason::kStop: return FinishKind::kStop;
  }
  return FinishKind::kLength;
}

}  // namespace

sched::SchedulerState ModelRuntime::BuildState(std::vector<Request*>& active) {
  sched::SchedulerState state;
  state.num_free_blocks = blocks_.num_free();
  for (auto& r : running_) {
    if (r->pending.has_value()) continue;  // paused slow reader: keeps its blocks, skips steps
    active.push_back(r.get());
    int32_t releasable = 0;
    for (int32_t b : r->blocks) releasable += blocks_.ref_count(b) == 1;
    state.running.push_back({.num_tokens = static_cast<int32_t>(r->tokens.size()),
                             .num_computed = r->num_computed,
                             .num_blocks = static_cast<int32_t>(r->blocks.size()),
                             .num_releasable_blocks = releasable});
  }
  // Only as many waiting requests as there are free slots can be admitted this step.
  const size_t slots = static_cast<size_t>(
      std::max<int64_t>(0, sched_config_.max_running - static_cast<int64_t>(running_.size())));
  const int32_t block_size = blocks_.block_size();
  for (size_t w = 0; w < std::min(slots, waiting_.size()); ++w) {
    const Request& r = *waiting_[w];
    // At least one token must run to produce logits, so a fully cached prompt still
    // recomputes its last block.
    const int32_t max_blocks = static_cast<int32_t>(r.tokens.size() - 1) / block_size;
    const kv::BlockManager::PrefixMatch match =
        blocks_.MatchPrefix(r.root_hash, r.tokens, max_blocks);
    state.waiting.push_back({.num_tokens = static_cast<int32_t>(r.tokens.size()),
                             .num_cached_tokens = match.num_blocks * block_size,
                             .num_cached_evictable_blocks = match.num_evictable});
  }
  return state;
}

void ModelRuntime::Preempt(Request& r) {
  ReleaseBlocks(r);
  ++r.num_preemptions;
  ++preemptions_;
  metrics_->Preempted();
}

void ModelRuntime::Admit(Request& r) {
  const int32_t block_size = blocks_.block_size();
  const int32_t max_blocks = static_cast<int32_t>(r.tokens.size() - 1) / block_size;
  r.blocks = blocks_.AcquireCachedPrefix(r.root_hash, r.tokens, max_blocks);
  r.num_computed = static_cast<int32_t>(r.blocks.size()) * block_size;
  CommitFullBlocks(r);  // fills block_hashes for the cached prefix
  const absl::Time now = absl::Now();
  if (!r.admitted_once) {
    r.admitted_once = true;
    r.admitted_at = now;
    r.cached_prompt_tokens = r.num_computed;
    prefix_queries_ += static_cast<int64_t>(r.prompt_ids.size());
    prefix_hits_ += r.num_computed;
    metrics_->PrefixLookup(static_cast<int64_t>(r.prompt_ids.size()), r.num_computed);
    metrics_->QueueTime(absl::ToDoubleSeconds(now - r.submitted_at));
    metrics_->PromptTokens(r.adapter, static_cast<int64_t>(r.prompt_ids.size()));
  }
}

bool ModelRuntime::EnsureBlocks(Request& r, int32_t num_tokens) {
  const size_t needed = static_cast<size_t>(sched::BlocksFor(num_tokens, blocks_.block_size()));
  while (r.blocks.size() < needed) {
    std::optional<int32_t> block = blocks_.Allocate();
    if (!block.has_value()) return false;
    r.blocks.push_back(*block);
  }
  return true;
}

void ModelRuntime::CommitFullBlocks(Request& r) {
  if (!blocks_.prefix_caching()) return;
  const int32_t block_size = blocks_.block_size();
  const size_t full = static_cast<size_t>(r.num_computed / block_size);
  const std::span<const int32_t> tokens(r.tokens);
  for (size_t i = r.block_hashes.size(); i < full; ++i) {
    const uint64_t parent = i == 0 ? r.root_hash : r.block_hashes[i - 1];
    const std::span<const int32_t> chunk = tokens.subspan(i * block_size, block_size);
    const uint64_t hash = kv::BlockManager::BlockHash(parent, chunk);
    blocks_.Commit(r.blocks[i], parent, hash, chunk);
    r.block_hashes.push_back(hash);
  }
}

bool ModelRuntime::Step() {
  std::vector<Request*> active;
  const sched::SchedulerState state = BuildState(active);
  if (active.empty() && state.waiting.empty()) return false;
  const sched::StepPlan plan = sched::Schedule(state, sched_config_);

  // Preempted sequences go back to the head of the queue, oldest first.
  for (int32_t idx : plan.preempted) {
    Request* victim = active[static_cast<size_t>(idx)];
    Preempt(*victim);
    auto it = std::find_if(running_.begin(), running_.end(),
                           [&](const std::unique_ptr<Request>& r) { return r.get() == victim; });
    KILN_CHECK(it != running_.end());
    waiting_.push_front(std::move(*it));
    running_.erase(it);
  }
  std::vector<Request*> admitted;
  for (int32_t i = 0; i < plan.num_admitted; ++i) {
    running_.push_back(std::move(waiting_.front()));
    waiting_.pop_front();
    admitted.push_back(running_.back().get());
    Admit(*admitted.back());
  }
  {
    absl::MutexLock lock(&mu_);
    num_waiting_ += static_cast<int>(plan.preempted.size()) - plan.num_admitted;
  }

  // The batch: spans point into each request's tokens, which do not change until sampling.
  std::vector<Request*> batch_requests;
  ForwardBatch batch;
  for (const sched::ScheduledSeq& item : plan.scheduled) {
    Request& r = item.from_waiting ? *admitted[static_cast<size_t>(item.index)]
                                   : *active[static_cast<size_t>(item.index)];
    const int32_t outstanding = static_cast<int32_t>(r.tokens.size()) - r.num_computed;
    const int32_t n = std::min(item.num_new_tokens, outstanding);
    if (n <= 0 || !EnsureBlocks(r, r.num_computed + n)) continue;  // retried next step
    batch_requests.push_back(&r);
    batch.sequences.push_back(
        {.token_ids = std::span<const int32_t>(r.tokens).subspan(static_cast<size_t>(r.num_computed),
                                                                 static_cast<size_t>(n)),
         .start_pos = r.num_computed,
         .block_table = r.blocks,
         .all_logits = false,
         .lora = r.lora});
  }
  if (batch.sequences.empty()) return plan.num_admitted > 0 || !plan.preempted.empty();

  ForwardOutput out;
  const absl::Status forward = parts_.model->Forward(batch, *parts_.kv_cache, &out);
  ++steps_;
  std::vector<Request*> done;
  if (!forward.ok()) {
    // Inputs were validated at Submit, so a failing forward is an engine fault: fail the
    // batch, keep serving others.
    const absl::Status status(forward.code() == absl::StatusCode::kInvalidArgument
                                  ? absl::StatusCode::kInternal
                                  : forward.code(),
                              absl::StrCat("forward pass failed: ", forward.message()));
    for (Request* r : batch_requests) {
      Finish(*r, status, FinishKind::kError);
      done.push_back(r);
    }
  } else {
    const absl::Time now = absl::Now();
    for (size_t i = 0; i < batch_requests.size(); ++i) {
      Request& r = *batch_requests[i];
      r.num_computed += static_cast<int32_t>(batch.sequences[i].token_ids.size());
      CommitFullBlocks(r);
      if (r.num_computed < static_cast<int32_t>(r.tokens.size())) continue;  // mid-prefill
      if (!SampleAndEmit(r, out.Last(i), now)) done.push_back(&r);
    }
  }
  std::erase_if(running_, [&](const std::unique_ptr<Request>& r) {
    return std::find(done.begin(), done.end(), r.get()) != done.end();
  });
  return true;
}

bool ModelRuntime::SampleAndEmit(Request& r, std::span<const float> logits, absl::Time now) {
  absl::StatusOr<sample::SampleResult> sampled = r.sampler->Sample(logits);
  if (!sampled.ok()) {
    Finish(r, sampled.status(), FinishKind::kError);
    return false;
  }
  const int32_t token = sampled->token_id;
  r.generated_ids.push_back(token);
  r.tokens.push_back(token);
  metrics_->GeneratedTokens(r.adapter, 1);
  if (!r.first_token_at.has_value()) {
    r.first_token_at = now;
    metrics_->FirstToken(r.adapter, absl::ToDoubleSeconds(now - r.submitted_at));
  } else {
    metrics_->InterToken(r.adapter, absl::ToDoubleSeconds(now - *r.last_token_at));
  }
  r.last_token_at = now;

  // A token that ends the request (eos, a stop id) adds no text of its own, but releases what
  // the detokenizer held back for the earlier tokens; so does the last token a request can
  // produce (an incomplete character becomes U+FFFD, as the offline decode renders it).
  const bool ends_on_token = r.stop_checker->StopsOn(token);
  absl::StatusOr<std::string> delta =
      ends_on_token ? r.detokenizer->Flush() : r.detokenizer->Push(token);
  if (!ends_on_token && delta.ok() && static_cast<int32_t>(r.generated_ids.size()) >= r.max_new_tokens) {
    absl::StatusOr<std::string> rest = r.detokenizer->Flush();
    if (rest.ok()) {
      *delta += *rest;
    } else {
      delta = rest.status();
    }
  }
  if (!delta.ok()) {
    Finish(r, delta.status(), FinishKind::kError);
    return false;
  }
  sample::StopUpdate update = r.stop_checker->Append(token, *delta);
  GenerateChunk chunk;
  chunk.text = std::move(update.text);
  chunk.token_ids.push_back(token);
  if (sampled->logprobs.has_value()) {
    TokenLogprobs lp = *std::move(sampled->logprobs);
    lp.sampled.text = TokenText(lp.sampled.token_id);
    for (TokenLogprob& alt : lp.top) alt.text = TokenText(alt.token_id);
    chunk.logprobs.push_back(std::move(lp));
  }
  if (update.finish.has_value()) {
    GenerateChunk::Finish finish;
    finish.reason = *update.finish;
    finish.matched_stop = update.matched_stop;
    if (update.matched_stop_token_id.has_value()) {
      finish.matched_stop = TokenText(*update.matched_stop_token_id);
    }
    finish.usage.prompt_tokens = static_cast<int32_t>(r.prompt_ids.size());
    finish.usage.completion_tokens = static_cast<int32_t>(r.generated_ids.size());
    finish.usage.cached_prompt_tokens = r.cached_prompt_tokens;
    finish.timing.queue_ms = MillisBetween(r.submitted_at, r.admitted_at.value_or(now));
    finish.timing.time_to_first_token_ms = MillisBetween(r.submitted_at, *r.first_token_at);
    finish.timing.total_ms = MillisBetween(r.submitted_at, now);
    chunk.finish = finish;
  }
  return Emit(r, std::move(chunk), now);
}

bool ModelRuntime::Emit(Request& r, GenerateChunk chunk, absl::Time now) {
  if (!r.stream->Push(chunk)) {
    if (r.stream->cancelled() || r.stream->finished()) {
      Finish(r, absl::CancelledError("request cancelled by the client"), FinishKind::kCancelled);
      return false;
    }
    // The buffer is full: pause this request (it leaves the batch) until the client reads
    // or the stall timeout ends it (ReapCancelledAndExpired).
    r.pending = std::move(chunk);
    if (!r.stalled_since.has_value()) r.stalled_since = now;
    return true;
  }
  if (chunk.finish.has_value()) {
    Finish(r, absl::OkStatus(), KindOf(chunk.finish->reason));
    return false;
  }
  return true;
}

}  // namespace kiln::engine
