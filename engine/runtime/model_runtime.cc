#include "engine/runtime/model_runtime.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/common/check.h"
#include "engine/common/status_macros.h"

namespace kiln::engine {
namespace {

int32_t BlocksFor(int64_t tokens, int32_t block_size) {
  return static_cast<int32_t>((tokens + block_size - 1) / block_size);
}

}  // namespace

std::string ModelRuntime::TokenText(int32_t token_id) const {
  absl::StatusOr<std::string> text =
      parts_.tokenizer->Decode(absl::Span<const int32_t>(&token_id, 1), /*skip_special_tokens=*/false);
  return text.ok() ? *std::move(text) : std::string();
}

namespace {

int64_t MillisBetween(absl::Time from, absl::Time to) {
  return absl::ToInt64Milliseconds(to - from);
}

}  // namespace

ModelRuntime::ModelRuntime(RuntimeParts parts, const EngineLimits& limits)
    : parts_(std::move(parts)),
      limits_(limits),
      block_pool_(parts_.kv_cache->num_blocks()) {
  thread_ = std::thread([this] { Loop(); });
}

ModelRuntime::~ModelRuntime() { Stop(absl::UnavailableError("model runtime shut down")); }

absl::StatusOr<std::shared_ptr<GenerateStream>> ModelRuntime::Submit(GenerateRequest request) {
  const RequestContext context{
      .tokenizer = parts_.tokenizer.get(),
      .limits = &limits_,
      .generation_defaults = &parts_.generation_defaults,
      .eos_token_ids = parts_.eos_token_ids,
      .vocab_size = parts_.model->config().vocab_size,
      .max_seq_len = parts_.max_seq_len,
  };
  KILN_ASSIGN_OR_RETURN(std::unique_ptr<Request> r, BuildRequest(std::move(request), context));
  const int32_t blocks_needed = BlocksFor(r->MaxTokens(), parts_.kv_cache->block_size());
  if (blocks_needed > block_pool_.num_blocks()) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "request needs ", r->MaxTokens(), " tokens of KV cache (", blocks_needed,
        " blocks) but the model's whole cache has ", block_pool_.num_blocks(), " blocks of ",
        parts_.kv_cache->block_size(), " tokens"));
  }
  r->stream = std::make_shared<GenerateStream>(
      static_cast<size_t>(std::max(1, limits_.max_stream_buffer_events)));
  std::shared_ptr<GenerateStream> stream = r->stream;
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
    inbox_.push_back(std::move(r));
  }
  return stream;
}

int ModelRuntime::in_flight() const {
  absl::MutexLock lock(&mu_);
  return in_flight_;
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
  if (thread_.joinable()) thread_.join();
}

bool ModelRuntime::TakeInbox(bool block) {
  absl::MutexLock lock(&mu_);
  if (block) {
    mu_.Await(absl::Condition(
        +[](ModelRuntime* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
          return self->stopping_ || !self->inbox_.empty();
        },
        this));
  }
  if (stopping_) return false;
  while (!inbox_.empty()) {
    waiting_.push_back(std::move(inbox_.front()));
    inbox_.pop_front();
  }
  return true;
}

void ModelRuntime::Loop() {
  while (true) {
    const bool idle = running_.empty() && waiting_.empty();
    if (!TakeInbox(/*block=*/idle)) break;
    ReapCancelledAndExpired();
    Admit();
    if (!running_.empty()) Step();
  }
  absl::Status reason;
  {
    absl::MutexLock lock(&mu_);
    reason = stop_reason_;
    while (!inbox_.empty()) {
      waiting_.push_back(std::move(inbox_.front()));
      inbox_.pop_front();
    }
  }
  FailAll(reason);
}

void ModelRuntime::ReapCancelledAndExpired() {
  const absl::Time now = absl::Now();
  auto reap = [&](Request& r) -> bool {
    if (r.stream->cancelled()) {
      Finish(r, absl::CancelledError("request cancelled by the client"));
      return true;
    }
    if (r.deadline.has_value() && now >= *r.deadline) {
      Finish(r, absl::DeadlineExceededError("request deadline exceeded"));
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

void ModelRuntime::Admit() {
  // FCFS: the head of the queue waits for blocks rather than being overtaken, so a long
  // request is never starved by a stream of short ones.
  while (!waiting_.empty() && static_cast<int32_t>(running_.size()) < parts_.max_running) {
    Request& r = *waiting_.front();
    const int32_t needed = BlocksFor(r.MaxTokens(), parts_.kv_cache->block_size());
    absl::StatusOr<std::vector<int32_t>> blocks = block_pool_.Allocate(needed);
    if (!blocks.ok()) break;  // not enough free blocks yet
    r.blocks = *std::move(blocks);
    r.admitted_at = absl::Now();
    running_.push_back(std::move(waiting_.front()));
    waiting_.pop_front();
    absl::MutexLock lock(&mu_);
    --num_waiting_;
  }
}

void ModelRuntime::Step() {
  ForwardBatch batch;
  std::vector<int32_t> last_token(running_.size());
  for (size_t i = 0; i < running_.size(); ++i) {
    Request& r = *running_[i];
    SequenceInput seq;
    if (!r.prefilled) {
      seq.token_ids = r.prompt_ids;
      seq.start_pos = 0;
    } else {
      last_token[i] = r.generated_ids.back();
      seq.token_ids = std::span<const int32_t>(&last_token[i], 1);
      seq.start_pos = static_cast<int32_t>(r.prompt_ids.size() + r.generated_ids.size() - 1);
    }
    seq.block_table = r.blocks;
    batch.sequences.push_back(seq);
  }
  ForwardOutput out;
  const absl::Status forward = parts_.model->Forward(batch, *parts_.kv_cache, &out);
  if (!forward.ok()) {
    // Inputs were validated at Submit, so a failing forward is an engine fault: fail the
    // batch, keep serving others.
    const absl::Status status(forward.code() == absl::StatusCode::kInvalidArgument
                                  ? absl::StatusCode::kInternal
                                  : forward.code(),
                              absl::StrCat("forward pass failed: ", forward.message()));
    for (auto& r : running_) Finish(*r, status);
    running_.clear();
    return;
  }

  const absl::Time now = absl::Now();
  std::vector<std::unique_ptr<Request>> still_running;
  still_running.reserve(running_.size());
  for (size_t i = 0; i < running_.size(); ++i) {
    Request& r = *running_[i];
    r.prefilled = true;
    absl::StatusOr<sample::SampleResult> sampled = r.sampler->Sample(out.Last(i));
    if (!sampled.ok()) {
      Finish(r, sampled.status());
      continue;
    }
    const int32_t token = sampled->token_id;
    r.generated_ids.push_back(token);
    if (!r.first_token_at.has_value()) r.first_token_at = now;

    absl::StatusOr<std::string> delta = r.detokenizer->Push(token);
    // The last token a request can produce releases what the detokenizer held back (an
    // incomplete character becomes U+FFFD, as the offline decode renders it).
    if (delta.ok() && static_cast<int32_t>(r.generated_ids.size()) >= r.max_new_tokens) {
      absl::StatusOr<std::string> rest = r.detokenizer->Flush();
      if (rest.ok()) {
        *delta += *rest;
      } else {
        delta = rest.status();
      }
    }
    if (!delta.ok()) {
      Finish(r, delta.status());
      continue;
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
      finish.timing.queue_ms = MillisBetween(r.submitted_at, r.admitted_at.value_or(now));
      finish.timing.time_to_first_token_ms = MillisBetween(r.submitted_at, *r.first_token_at);
      finish.timing.total_ms = MillisBetween(r.submitted_at, now);
      chunk.finish = finish;
    }
    const bool finished = chunk.finish.has_value();
    if (!r.stream->Push(std::move(chunk))) {
      if (r.stream->cancelled()) {
        Finish(r, absl::CancelledError("request cancelled by the client"));
      } else {
        Finish(r, absl::ResourceExhaustedError(absl::StrCat(
                      "client is not reading: ", limits_.max_stream_buffer_events,
                      " responses buffered (max_stream_buffer_events)")));
      }
      continue;
    }
    if (finished) {
      Finish(r, absl::OkStatus());
      continue;
    }
    still_running.push_back(std::move(running_[i]));
  }
  running_ = std::move(still_running);
}

void ModelRuntime::Finish(Request& r, absl::Status status) {
  if (!r.blocks.empty()) {
    KILN_CHECK(block_pool_.Free(r.blocks).ok());
    r.blocks.clear();
  }
  // Only this thread finishes streams, so finished() cannot change underneath. The count
  // drops before the consumer can observe the end, so "stream ended" implies "not in flight".
  if (r.stream->finished()) return;
  {
    absl::MutexLock lock(&mu_);
    --in_flight_;
  }
  r.stream->Finish(std::move(status));
}

void ModelRuntime::FailAll(const absl::Status& status) {
  for (auto& r : running_) Finish(*r, status);
  running_.clear();
  for (auto& r : waiting_) Finish(*r, status);
  waiting_.clear();
}

}  // namespace kiln::engine
