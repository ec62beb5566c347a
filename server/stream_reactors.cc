#include "server/stream_reactors.h"

#include <chrono>
#include <deque>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/random/random.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "server/raw_request.h"

namespace kiln::server {
namespace {

// Engine → reactor link that survives the reactor (see the header's lifetime note).
template <typename Reactor>
struct Link {
  absl::Mutex mu;
  Reactor* reactor ABSL_GUARDED_BY(mu) = nullptr;

  void Notify() {
    absl::MutexLock lock(&mu);
    if (reactor != nullptr) reactor->Pump();
  }
  void Abort() {
    absl::MutexLock lock(&mu);
    if (reactor != nullptr) reactor->OnEngineAbort();
  }
};

// Shared machinery. `Derived` supplies Convert(events, &pending) and may prepare the first
// message. Event is the engine's event type, Response the proto message written; Wire is what
// the method's handler writes: Response itself, or grpc::ByteBuffer for a raw method
// (raw_request.h), in which case each message is serialized here before its write.
template <typename Derived, typename Event, typename Response, typename Wire = Response>
class StreamReactor : public grpc::ServerWriteReactor<Wire> {
 public:
  StreamReactor(ServiceContext* service, grpc::CallbackServerContext* ctx, const char* method)
      : service_(service), ctx_(ctx), rpc_(service, method, ctx) {}

  // Drains the engine stream and starts the next write or the finish. Called on gRPC
  // threads (start, OnWriteDone) and engine threads (ready callback via Link).
  void Pump() {
    Wire* to_write = nullptr;
    std::optional<grpc::Status> finish;
    bool cancel_stream = false;
    {
      absl::MutexLock lock(&mu_);
      if (finish_called_ || write_in_flight_) return;
      while (pending_.empty() && !final_.has_value()) {
        typename engine::EventStream<Event>::Batch batch = stream_->Drain();
        if (batch.empty()) return;  // the ready callback is armed
        static_cast<Derived*>(this)->Convert(std::move(batch.events), &pending_);
        if (batch.final_status.has_value()) final_ = ToGrpcStatus(*batch.final_status);
      }
      if (!pending_.empty()) {
        current_ = std::move(pending_.front());
        pending_.pop_front();
        if constexpr (std::is_same_v<Wire, Response>) {
          to_write = &current_;
        } else {
          absl::Status serialized = SerializeResponse(current_, &wire_);
          if (!serialized.ok()) {  // a bug, not bad input: fail this RPC, not the process
            finish = ToGrpcStatus(serialized);
            MarkFinishLocked(*finish);
            cancel_stream = true;
          } else {
            to_write = &wire_;
          }
        }
        write_in_flight_ = to_write != nullptr;
      } else {
        finish = *final_;
        MarkFinishLocked(*finish);
      }
    }
    if (to_write != nullptr) {
      this->StartWrite(to_write);
    } else {
      if (cancel_stream) stream_->Cancel();  // outside mu_: Cancel may call back into Pump
      this->Finish(*finish);
    }
  }

  // The engine ended the stream with an error. Normally Pump delivers that status after the
  // pending write; but a client that stopped reading at the HTTP/2 level (flow-control window
  // closed) never completes the write, so the status would wait forever and the call would
  // hold its resources: cancel the write instead (OnWriteDone(false) then finishes with the
  // engine's status, e.g. RESOURCE_EXHAUSTED "client stalled").
  void OnEngineAbort() {
    {
      absl::MutexLock lock(&mu_);
      if (finish_called_ || !write_in_flight_) return;  // Pump delivers the status as usual
      aborted_in_write_ = true;
    }
    ctx_->TryCancel();
  }

  void OnWriteDone(bool ok) override {
    std::optional<grpc::Status> finish;
    {
      absl::MutexLock lock(&mu_);
      write_in_flight_ = false;
      // !ok: the client is gone, and OnCancel follows or came already. cancelled_: OnCancel
      // came while this write was in flight and left the finish to us, but the write had
      // already reached the client, so gRPC reports it ok. Either way finish now: Pump would
      // wait for the engine to end the cancelled stream, which it need not do promptly.
      if ((!ok || cancelled_) && !finish_called_) {
        finish = CancelStatus();
        if (aborted_in_write_) {  // we cancelled: record why the engine gave up
          typename engine::EventStream<Event>::Batch batch = stream_->Drain();
          if (batch.final_status.has_value()) finish = ToGrpcStatus(*batch.final_status);
        }
        MarkFinishLocked(*finish);
      }
    }
    if (finish.has_value()) {
      stream_->Cancel();
      this->Finish(*finish);
      return;
    }
    Pump();
  }

  void OnCancel() override {
    if (stream_) stream_->Cancel();
    std::optional<grpc::Status> finish;
    {
      absl::MutexLock lock(&mu_);
      cancelled_ = true;
      if (finish_called_ || write_in_flight_) return;  // OnWriteDone will finish
      finish = CancelStatus();
      MarkFinishLocked(*finish);
    }
    this->Finish(*finish);
  }

  void OnDone() override {
    if (link_) {
      absl::MutexLock lock(&link_->mu);
      link_->reactor = nullptr;
    }
    rpc_.End(RecordedStatus());
    delete static_cast<Derived*>(this);
  }

 protected:
  // Finishes at once (before any stream exists).
  void FinishEarly(const grpc::Status& status) {
    {
      absl::MutexLock lock(&mu_);
      MarkFinishLocked(status);
    }
    this->Finish(status);
  }

  // Wires the engine stream and starts pumping.
  void Attach(std::shared_ptr<engine::EventStream<Event>> stream) {
    stream_ = std::move(stream);
    link_ = std::make_shared<Link<Derived>>();
    {
      absl::MutexLock lock(&link_->mu);
      link_->reactor = static_cast<Derived*>(this);
    }
    stream_->SetReadyCallback([link = link_] { link->Notify(); });
    stream_->SetAbortCallback([link = link_] { link->Abort(); });
    Pump();
  }

  ServiceContext* const service_;
  grpc::CallbackServerContext* const ctx_;
  RpcScope rpc_;

  grpc::Status CancelStatus() const {
    // gRPC's deadline timer runs on its own clock and can fire a little before
    // system_clock reaches the deadline, hence the slack.
    const auto deadline = ctx_->deadline();
    if (deadline != std::chrono::system_clock::time_point::max() &&
        deadline <= std::chrono::system_clock::now() + std::chrono::milliseconds(100)) {
      return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "deadline exceeded");
    }
    return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled by the client");
  }

 private:

  // What the logs and metrics record. A client that cancelled (or whose deadline passed)
  // before our status reached it saw CANCELLED / DEADLINE_EXCEEDED, whatever we finished with:
  // e.g. a Generate cancelled before its request message arrived is finished INVALID_ARGUMENT
  // ("no message") at once, since gRPC reports the cancel only later. Our own cancel of a
  // stuck write (OnEngineAbort) keeps the engine's status.
  grpc::Status RecordedStatus() {
    {
      absl::MutexLock lock(&mu_);
      if (aborted_in_write_) return final_code_;
    }
    const grpc::StatusCode code = final_code_.error_code();
    if (code != grpc::StatusCode::OK && code != grpc::StatusCode::CANCELLED &&
        code != grpc::StatusCode::DEADLINE_EXCEEDED && ctx_->IsCancelled()) {
      return CancelStatus();
    }
    return final_code_;
  }

  void MarkFinishLocked(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    finish_called_ = true;
    final_code_ = status;
  }

  std::shared_ptr<engine::EventStream<Event>> stream_;
  std::shared_ptr<Link<Derived>> link_;
  absl::Mutex mu_;
  bool write_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  bool finish_called_ ABSL_GUARDED_BY(mu_) = false;
  bool aborted_in_write_ ABSL_GUARDED_BY(mu_) = false;  // OnEngineAbort cancelled a write
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;         // OnCancel ran
  std::deque<Response> pending_ ABSL_GUARDED_BY(mu_);
  std::optional<grpc::Status> final_ ABSL_GUARDED_BY(mu_);
  Response current_;              // the message being written; touched only while no write
  Wire wire_;                     // current_ serialized, for raw methods (unused otherwise)
  grpc::Status final_code_;       // what OnDone records (set once, before Finish)
};

const char* FinishReasonName(engine::FinishReason reason) {
  switch (reason) {
    case engine::FinishReason::kLength: return "length";
    case engine::FinishReason::kEos: return "eos";
    case engine::FinishReason::kStop: return "stop";
  }
  return "?";
}

std::string NewRequestId() {
  absl::BitGen gen;
  return absl::StrFormat("%016x", absl::Uniform<uint64_t>(gen));
}

// Generate is a raw method (service.h): the request arrives as bytes and is parsed here, after
// admission, so that invalid UTF-8 gets INVALID_ARGUMENT naming the field (raw_request.h).
class GenerateReactor final : public StreamReactor<GenerateReactor, engine::GenerateChunk,
                                                   v1::GenerateResponse, grpc::ByteBuffer> {
 public:
  GenerateReactor(ServiceContext* service, grpc::CallbackServerContext* ctx,
                  const grpc::ByteBuffer* raw_request)
      : StreamReactor(service, ctx, "Generate") {
    grpc::Status admitted = rpc_.Admit(RpcClass::kInference);
    if (!admitted.ok()) {
      FinishEarly(admitted);
      return;
    }
    v1::GenerateRequest request;
    if (absl::Status parsed = ParseRequest(*raw_request, &request); !parsed.ok()) {
      // No message usually means the client cancelled before sending it; gRPC tells us only
      // later, so OnDone records the cancel (RecordedStatus).
      FinishEarly(ToGrpcStatus(parsed));
      return;
    }
    absl::StatusOr<engine::GenerateRequest> converted = ToEngineGenerateRequest(request);
    if (!converted.ok()) {
      FinishEarly(ToGrpcStatus(converted.status()));
      return;
    }
    if (converted->request_id.empty()) converted->request_id = NewRequestId();
    request_id_ = converted->request_id;
    rpc_.set_request_id(request_id_);
    rpc_.AddLogField({"model", converted->model});
    rpc_.AddLogField({"adapter", converted->adapter});
    if (service_->log_prompts() && converted->prompt_text.has_value()) {
      rpc_.AddLogField({"prompt", *converted->prompt_text});  // debug only (--log_prompts)
    }
    const auto deadline = ctx->deadline();
    if (deadline != std::chrono::system_clock::time_point::max()) {
      if (deadline <= std::chrono::system_clock::now()) {
        {
      FinishEarly(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                                        "deadline already expired on arrival"));
      return;
    }
      }
      converted->deadline = absl::FromChrono(deadline);
    }
    absl::StatusOr<std::shared_ptr<engine::GenerateStream>> stream =
        service_->engine().Generate(*std::move(converted));
    if (!stream.ok()) {
      FinishEarly(ToGrpcStatus(stream.status()));
      return;
    }
    Attach(*std::move(stream));
  }

  // Everything that piled up becomes one response.
  void Convert(std::vector<engine::GenerateChunk> chunks,
               std::deque<v1::GenerateResponse>* pending) {
    if (chunks.empty()) return;
    v1::GenerateResponse response;
    if (first_) {
      response.set_request_id(request_id_);
      first_ = false;
    }
    for (engine::GenerateChunk& chunk : chunks) {
      if (chunk.finish.has_value()) LogFinish(*chunk.finish);
      AppendChunk(std::move(chunk), &response);
    }
    pending->push_back(std::move(response));
  }

 private:
  // Counts and timings only: generated text is never logged.
  void LogFinish(const engine::GenerateChunk::Finish& finish) {
    rpc_.AddLogField({"prompt_tokens", static_cast<int64_t>(finish.usage.prompt_tokens)});
    rpc_.AddLogField(
        {"completion_tokens", static_cast<int64_t>(finish.usage.completion_tokens)});
    rpc_.AddLogField(
        {"cached_prompt_tokens", static_cast<int64_t>(finish.usage.cached_prompt_tokens)});
    rpc_.AddLogField({"queue_ms", finish.timing.queue_ms});
    rpc_.AddLogField({"ttft_ms", finish.timing.time_to_first_token_ms});
    rpc_.AddLogField({"finish_reason", FinishReasonName(finish.reason)});
  }

  std::string request_id_;
  bool first_ = true;  // under the base's mu_ (Convert runs only there)
};

class LoadModelReactor final
    : public StreamReactor<LoadModelReactor, engine::LoadEvent, v1::LoadModelEvent> {
 public:
  LoadModelReactor(ServiceContext* service, grpc::CallbackServerContext* ctx,
                   const v1::LoadModelRequest* request)
      : StreamReactor(service, ctx, "LoadModel") {
    grpc::Status admitted = rpc_.Admit(RpcClass::kAdmin);
    if (!admitted.ok()) {
      FinishEarly(admitted);
      return;
    }
    absl::StatusOr<engine::LoadModelOptions> options = ToEngineLoadOptions(*request);
    if (!options.ok()) {
      FinishEarly(ToGrpcStatus(options.status()));
      return;
    }
    rpc_.AddLogField({"model", options->model});
    Attach(service_->engine().LoadModel(*options));
  }

  // Stale progress is dropped: only the newest progress event and the ready event matter.
  void Convert(std::vector<engine::LoadEvent> events, std::deque<v1::LoadModelEvent>* pending) {
    std::optional<size_t> last_progress;
    for (size_t i = 0; i < events.size(); ++i) {
      if (std::holds_alternative<engine::LoadProgressEvent>(events[i])) last_progress = i;
    }
    for (size_t i = 0; i < events.size(); ++i) {
      const bool progress = std::holds_alternative<engine::LoadProgressEvent>(events[i]);
      if (progress && i != *last_progress) continue;
      // The engine reported the model ready before it pushed this event; make that visible
      // in health before the client learns of it.
      if (!progress) service_->FlushHealth();
      v1::LoadModelEvent event;
      ToProto(events[i], &event);
      pending->push_back(std::move(event));
    }
  }
};

}  // namespace

grpc::ServerWriteReactor<grpc::ByteBuffer>* StartGenerate(ServiceContext* service,
                                                          grpc::CallbackServerContext* ctx,
                                                          const grpc::ByteBuffer* request) {
  return new GenerateReactor(service, ctx, request);
}

grpc::ServerWriteReactor<v1::LoadModelEvent>* StartLoadModel(ServiceContext* service,
                                                             grpc::CallbackServerContext* ctx,
                                                             const v1::LoadModelRequest* request) {
  return new LoadModelReactor(service, ctx, request);
}

}  // namespace kiln::server
