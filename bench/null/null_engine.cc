#include "bench/null/null_engine.h"

#include <pthread.h>

#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace kiln::bench {

NullEngine::NullEngine(NullEngineOptions options) : options_(std::move(options)) {
  thread_ = std::thread([this] { StepLoop(); });
  pthread_setname_np(thread_.native_handle(), "null-engine");
}

NullEngine::~NullEngine() { Shutdown(); }

engine::ModelInfo NullEngine::Info() const {
  engine::ModelInfo info;
  info.served_name = options_.model;
  info.model = options_.model;
  info.architecture = "NullForBenchmarks";
  info.state = engine::ModelState::kReady;
  info.max_seq_len = 1 << 24;
  info.vocab_size = options_.vocab_size;
  return info;
}

std::shared_ptr<engine::LoadStream> NullEngine::LoadModel(const engine::LoadModelOptions& o) {
  auto stream = std::make_shared<engine::LoadStream>();
  const std::string name = o.served_name.empty() ? o.model : o.served_name;
  if (name != options_.model) {
    stream->Finish(absl::UnimplementedError(
        absl::StrCat("kilnd_null serves only model '", options_.model, "'")));
    return stream;
  }
  stream->Push(Info());
  stream->Finish(absl::OkStatus());
  return stream;
}

void NullEngine::UnloadModel(const std::string&, bool,
                             std::function<void(absl::StatusOr<engine::UnloadResult>)> done) {
  done(absl::UnimplementedError("kilnd_null cannot unload its model"));
}

std::vector<engine::ModelInfo> NullEngine::ListModels() { return {Info()}; }

absl::StatusOr<engine::ModelInfo> NullEngine::GetModel(const std::string& served_name) {
  if (served_name != options_.model) {
    return absl::NotFoundError(absl::StrCat("model '", served_name, "' is not served"));
  }
  return Info();
}

void NullEngine::LoadAdapter(const engine::LoadAdapterOptions&,
                             std::function<void(absl::StatusOr<engine::AdapterInfo>)> done) {
  done(absl::UnimplementedError("kilnd_null has no adapters (names in Generate are ignored)"));
}

void NullEngine::UnloadAdapter(const std::string&, const std::string&, bool,
                               std::function<void(absl::StatusOr<int64_t>)> done) {
  done(absl::UnimplementedError("kilnd_null has no adapters"));
}

absl::StatusOr<std::vector<engine::AdapterInfo>> NullEngine::ListAdapters(const std::string&) {
  return std::vector<engine::AdapterInfo>{};
}

absl::StatusOr<std::shared_ptr<engine::GenerateStream>> NullEngine::Generate(
    engine::GenerateRequest request) {
  if (request.model != options_.model) {
    return absl::NotFoundError(absl::StrCat("model '", request.model, "' is not served"));
  }
  Active a;
  if (request.prompt_token_ids.has_value()) {
    a.prompt_tokens = static_cast<int32_t>(request.prompt_token_ids->size());
  } else if (request.prompt_text.has_value()) {
    a.prompt_tokens = static_cast<int32_t>(request.prompt_text->size());  // bytes as tokens
  }
  a.max_new_tokens = request.stopping.max_new_tokens > 0 ? request.stopping.max_new_tokens
                                                         : options_.default_max_new_tokens;
  if (a.max_new_tokens > options_.max_new_tokens) {
    return absl::InvalidArgumentError(absl::StrCat("stopping.max_new_tokens=", a.max_new_tokens,
                                                   " exceeds the limit ",
                                                   options_.max_new_tokens));
  }
  a.submitted = absl::Now();
  a.deadline = request.deadline;
  a.stream = std::make_shared<engine::GenerateStream>();
  std::shared_ptr<engine::GenerateStream> stream = a.stream;
  absl::MutexLock lock(&mu_);
  if (draining_ || stop_) return absl::UnavailableError("kilnd_null is draining");
  incoming_.push_back(std::move(a));
  ++in_flight_;
  return stream;
}

absl::StatusOr<engine::TokenizeResult> NullEngine::Tokenize(const std::string&, const std::string&,
                                                            bool) {
  return absl::UnimplementedError("kilnd_null has no tokenizer");
}

engine::EngineInfo NullEngine::GetInfo() {
  engine::EngineInfo info;
  info.architectures = {"NullForBenchmarks"};
  return info;
}

void NullEngine::SetModelStateObserver(engine::ModelStateObserver) {}

void NullEngine::BeginDrain() {
  absl::MutexLock lock(&mu_);
  draining_ = true;
}

int NullEngine::InFlightRequests() {
  absl::MutexLock lock(&mu_);
  return in_flight_;
}

void NullEngine::Shutdown() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

bool NullEngine::Emit(Active& a, absl::Time now) {
  engine::GenerateChunk chunk;
  // A short token-like text so the response carries text as a real one would.
  chunk.text = " t";
  chunk.token_ids.push_back(a.next_token);
  a.next_token = static_cast<int32_t>((a.next_token + 7919) % options_.vocab_size);
  if (a.emitted == 0) a.first_token = now;
  ++a.emitted;
  const bool last = a.emitted >= a.max_new_tokens;
  if (last) {
    engine::GenerateChunk::Finish finish;
    finish.reason = engine::FinishReason::kLength;
    finish.usage.prompt_tokens = a.prompt_tokens;
    finish.usage.completion_tokens = a.emitted;
    finish.timing.time_to_first_token_ms = absl::ToInt64Milliseconds(a.first_token - a.submitted);
    finish.timing.total_ms = absl::ToInt64Milliseconds(now - a.submitted);
    chunk.finish = std::move(finish);
  }
  a.stream->Push(std::move(chunk));
  if (last) FinishStream(a, absl::OkStatus());
  return last;
}

void NullEngine::FinishStream(Active& a, absl::Status status) {
  // Counted down before Finish so InFlightRequests() is 0 once a consumer sees the end.
  {
    absl::MutexLock lock(&mu_);
    --in_flight_;
  }
  a.stream->Finish(std::move(status));
}

void NullEngine::StepLoop() {
  std::vector<Active> active;
  const absl::Duration step =
      options_.step_hz > 0 ? absl::Seconds(1.0 / options_.step_hz) : absl::ZeroDuration();
  absl::Time next_step = absl::Now();
  int idle_rounds = 0;
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      if (active.empty() && incoming_.empty() && !stop_) {
        auto has_work = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return !incoming_.empty() || stop_;
        };
        mu_.Await(absl::Condition(&has_work));
        next_step = absl::Now();
      }
      if (stop_) break;
      while (!incoming_.empty()) {
        active.push_back(std::move(incoming_.front()));
        incoming_.pop_front();
      }
    }
    if (step > absl::ZeroDuration()) {
      absl::SleepFor(next_step - absl::Now());
      next_step += step;
    }
    const absl::Time now = absl::Now();
    bool pushed = false;
    for (size_t i = 0; i < active.size();) {
      Active& a = active[i];
      bool done = false;
      if (a.stream->cancelled()) {
        FinishStream(a, absl::CancelledError("cancelled by the client"));
        done = true;
      } else if (a.deadline.has_value() && now > *a.deadline) {
        FinishStream(a, absl::DeadlineExceededError("deadline exceeded"));
        done = true;
      } else if (a.stream->buffered() < static_cast<size_t>(options_.max_buffered)) {
        done = Emit(a, now);
        pushed = true;
      }
      if (done) {
        active[i] = std::move(active.back());
        active.pop_back();
      } else {
        ++i;
      }
    }
    // Every stream is backpressured: yield a few times (cheap, keeps latency low), then
    // sleep briefly so an idle-but-blocked engine does not burn a core.
    if (!pushed && step == absl::ZeroDuration()) {
      if (++idle_rounds < 64) {
        std::this_thread::yield();
      } else {
        std::this_thread::sleep_for(std::chrono::microseconds(50));
      }
    } else {
      idle_rounds = 0;
    }
  }
  for (Active& a : active) FinishStream(a, absl::UnavailableError("kilnd_null shut down"));
  absl::MutexLock lock(&mu_);
  for (Active& a : incoming_) a.stream->Finish(absl::UnavailableError("kilnd_null shut down"));
  incoming_.clear();
  in_flight_ = 0;
}

}  // namespace kiln::bench
