// NullEngine: an engine::Engine for benchmarks only. It serves one model name and "generates"
// tokens without computing anything, so a loadgen run against kilnd_null measures what the
// server side (gRPC, reactors, conversion, EventStream) costs per streamed token.
//
// One step thread (named "null-engine", so the loadgen can leave its CPU time out with
// --exclude_threads=null-engine) loops over the active streams and pushes one token per
// stream per step, like a batched decode loop:
//   - step_hz > 0 paces the steps (each stream gets step_hz tokens/s); 0 = as fast as the
//     streams accept tokens.
//   - max_buffered bounds the tokens waiting per stream: a stream holding that many is
//     skipped this step (backpressure instead of the real engine's RESOURCE_EXHAUSTED).
//     max_buffered = 1 turns coalescing off: a token is pushed only once the reactor has
//     drained the previous one, so every GenerateResponse carries exactly one token. Larger
//     values let tokens pile up while a write is in flight and the reactor coalesces them.
// The first token is pushed on the step after submission (no prefill), so the client-side
// TTFT is the server's added latency. Adapter names are accepted and ignored.
//
// Thread-safety: all methods are thread-safe (engine::Engine's contract).
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "engine/runtime/engine.h"

namespace kiln::bench {

struct NullEngineOptions {
  std::string model = "null";
  int64_t vocab_size = 32000;
  double step_hz = 0;            // 0 = as fast as possible
  int32_t max_buffered = 16;     // 1 = no coalescing
  int32_t default_max_new_tokens = 256;
  int32_t max_new_tokens = 1 << 20;
};

class NullEngine final : public engine::Engine {
 public:
  explicit NullEngine(NullEngineOptions options);
  ~NullEngine() override;

  std::shared_ptr<engine::LoadStream> LoadModel(const engine::LoadModelOptions& options) override;
  void UnloadModel(const std::string& served_name, bool drain,
                   std::function<void(absl::StatusOr<engine::UnloadResult>)> done) override;
  std::vector<engine::ModelInfo> ListModels() override;
  absl::StatusOr<engine::ModelInfo> GetModel(const std::string& served_name) override;
  void LoadAdapter(const engine::LoadAdapterOptions& options,
                   std::function<void(absl::StatusOr<engine::AdapterInfo>)> done) override;
  void UnloadAdapter(const std::string& model, const std::string& served_name, bool force,
                     std::function<void(absl::StatusOr<int64_t>)> done) override;
  absl::StatusOr<std::vector<engine::AdapterInfo>> ListAdapters(const std::string& model) override;
  absl::StatusOr<std::shared_ptr<engine::GenerateStream>> Generate(
      engine::GenerateRequest request) override;
  absl::StatusOr<engine::TokenizeResult> Tokenize(const std::string& model,
                                                  const std::string& text,
                                                  bool add_special_tokens) override;
  engine::EngineInfo GetInfo() override;
  void SetModelStateObserver(engine::ModelStateObserver observer) override;
  void BeginDrain() override;
  int InFlightRequests() override;
  void Shutdown() override;

 private:
  struct Active {
    std::shared_ptr<engine::GenerateStream> stream;
    int32_t prompt_tokens = 0;
    int32_t max_new_tokens = 0;
    int32_t emitted = 0;
    int32_t next_token = 0;
    absl::Time submitted;
    absl::Time first_token;
    std::optional<absl::Time> deadline;
  };

  engine::ModelInfo Info() const;
  void StepLoop();
  // Pushes the next token of `a`; true when the request is complete (stream finished).
  bool Emit(Active& a, absl::Time now);
  // Counts the request out of InFlightRequests(), then finishes its stream.
  void FinishStream(Active& a, absl::Status status) ABSL_LOCKS_EXCLUDED(mu_);

  const NullEngineOptions options_;
  absl::Mutex mu_;
  std::deque<Active> incoming_ ABSL_GUARDED_BY(mu_);
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace kiln::bench
