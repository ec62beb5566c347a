// FakeEngine: a scriptable engine::Engine test double for server tests.
//
// Generate / LoadModel: every call is recorded with its stream; the current script decides
// the submit status, the events pushed before the stream is returned (so they pile up and
// must be coalesced) and whether the stream is finished at once. Otherwise the stream stays
// open and the test drives it (Push/Finish) through the recorded call: slow streams and
// "blocks until released" are the test pushing later. Cancels are visible as
// stream->cancelled(); Shutdown() finishes every open stream with UNAVAILABLE.
// Unary calls answer with scripted results; their done callbacks run inline unless
// `hold_callbacks` is set, in which case ReleaseCallbacks() runs them on a fresh thread.
//
// Thread-safety: all methods are thread-safe.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "engine/runtime/engine.h"

namespace kiln::testing {

class FakeEngine final : public engine::Engine {
 public:
  struct GenerateScript {
    absl::Status submit_status;                     // non-OK: Generate returns it, no stream
    std::vector<engine::GenerateChunk> chunks;      // pushed before the stream is returned
    std::optional<absl::Status> finish;             // finish right after the chunks
  };
  struct LoadScript {
    std::vector<engine::LoadEvent> events;
    std::optional<absl::Status> finish;
  };
  struct GenerateCall {
    engine::GenerateRequest request;
    std::shared_ptr<engine::GenerateStream> stream;
  };
  struct LoadCall {
    engine::LoadModelOptions options;
    std::shared_ptr<engine::LoadStream> stream;
  };

  FakeEngine() = default;
  ~FakeEngine() override;

  // --- scripting --------------------------------------------------------------------------
  void ScriptGenerate(GenerateScript script);
  void ScriptLoad(LoadScript script);
  void SetUnloadResult(absl::StatusOr<engine::UnloadResult> result);
  void SetModels(std::vector<engine::ModelInfo> models);
  void SetGetModelResult(absl::StatusOr<engine::ModelInfo> result);
  void SetLoadAdapterResult(absl::StatusOr<engine::AdapterInfo> result);
  void SetUnloadAdapterResult(absl::StatusOr<int64_t> result);
  void SetListAdaptersResult(absl::StatusOr<std::vector<engine::AdapterInfo>> result);
  void SetTokenizeResult(absl::StatusOr<engine::TokenizeResult> result);
  void SetInfo(engine::EngineInfo info);
  void set_hold_callbacks(bool hold);
  // Runs the held done callbacks on a new thread (as an engine thread would) and waits.
  void ReleaseCallbacks();
  // Calls the registered model state observer (as an engine thread would).
  void NotifyModelState(const std::string& served_name, engine::ModelState state);

  // --- observation ------------------------------------------------------------------------
  // Waits (up to `timeout`) until call number `index` (0-based) arrived.
  std::optional<GenerateCall> WaitForGenerate(size_t index, absl::Duration timeout = absl::Seconds(10));
  std::optional<LoadCall> WaitForLoad(size_t index, absl::Duration timeout = absl::Seconds(10));
  size_t num_generate_calls() const;
  size_t num_held_callbacks() const;
  // Waits (up to `timeout`) until at least `n` done callbacks are held.
  bool WaitForHeldCallbacks(size_t n, absl::Duration timeout = absl::Seconds(10));
  int num_unary_calls() const;  // engine calls made by unary RPCs
  std::string last_unary_args() const;
  bool drain_begun() const;
  bool shut_down() const;

  // --- engine::Engine ---------------------------------------------------------------------
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
  void RunOrHold(std::function<void()> callback);
  void RecordUnary(std::string args);

  mutable absl::Mutex mu_;
  GenerateScript generate_script_ ABSL_GUARDED_BY(mu_);
  LoadScript load_script_ ABSL_GUARDED_BY(mu_);
  std::vector<GenerateCall> generate_calls_ ABSL_GUARDED_BY(mu_);
  std::vector<LoadCall> load_calls_ ABSL_GUARDED_BY(mu_);
  absl::StatusOr<engine::UnloadResult> unload_result_ ABSL_GUARDED_BY(mu_) =
      engine::UnloadResult{};
  std::vector<engine::ModelInfo> models_ ABSL_GUARDED_BY(mu_);
  absl::StatusOr<engine::ModelInfo> get_model_ ABSL_GUARDED_BY(mu_) = engine::ModelInfo{};
  absl::StatusOr<engine::AdapterInfo> load_adapter_ ABSL_GUARDED_BY(mu_) = engine::AdapterInfo{};
  absl::StatusOr<int64_t> unload_adapter_ ABSL_GUARDED_BY(mu_) = int64_t{0};
  absl::StatusOr<std::vector<engine::AdapterInfo>> list_adapters_ ABSL_GUARDED_BY(mu_) =
      std::vector<engine::AdapterInfo>{};
  absl::StatusOr<engine::TokenizeResult> tokenize_ ABSL_GUARDED_BY(mu_) = engine::TokenizeResult{};
  engine::EngineInfo info_ ABSL_GUARDED_BY(mu_);
  engine::ModelStateObserver observer_ ABSL_GUARDED_BY(mu_);
  bool hold_callbacks_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::function<void()>> held_ ABSL_GUARDED_BY(mu_);
  int unary_calls_ ABSL_GUARDED_BY(mu_) = 0;
  std::string last_unary_args_ ABSL_GUARDED_BY(mu_);
  bool drain_begun_ ABSL_GUARDED_BY(mu_) = false;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace kiln::testing
