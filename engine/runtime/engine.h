// Engine: the facade server/ talks to (DESIGN.md §1-3). Everything that turns requests into
// tokens sits behind it; it knows nothing of gRPC.
//
// Threading contract: every method returns quickly and may be called from any thread
// (gRPC callback threads never block on inference or I/O). Slow work (loads) happens on the
// engine's control threads and reports through an EventStream or a completion callback;
// generation happens on the model's step loop and reports through the request's stream.
//
// Status codes (DESIGN.md §5): INVALID_ARGUMENT bad parameter/artifact, NOT_FOUND unknown
// model/adapter, FAILED_PRECONDITION still loading / adapter in use, RESOURCE_EXHAUSTED
// queue full / cannot fit, UNAVAILABLE draining or failed, ABORTED unloaded mid-request,
// CANCELLED, DEADLINE_EXCEEDED, UNIMPLEMENTED unsupported format/feature, INTERNAL bugs.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/runtime/api_types.h"
#include "engine/runtime/event_stream.h"

namespace kiln::engine {

using LoadStream = EventStream<LoadEvent>;
using GenerateStream = EventStream<GenerateChunk>;

// Called on every model state change (for per-model health). May be called from any
// engine thread; must not call back into the Engine.
using ModelStateObserver = std::function<void(const std::string& served_name, ModelState state)>;

class Engine {
 public:
  virtual ~Engine() = default;

  // Starts loading; returns the stream of progress events at once. The stream's last event
  // is the ready ModelInfo, then Finish(OK); a failed load Finishes with the error.
  virtual std::shared_ptr<LoadStream> LoadModel(const LoadModelOptions& options) = 0;

  virtual void UnloadModel(const std::string& served_name, bool drain,
                           std::function<void(absl::StatusOr<UnloadResult>)> done) = 0;

  virtual std::vector<ModelInfo> ListModels() = 0;
  virtual absl::StatusOr<ModelInfo> GetModel(const std::string& served_name) = 0;

  virtual void LoadAdapter(const LoadAdapterOptions& options,
                           std::function<void(absl::StatusOr<AdapterInfo>)> done) = 0;
  virtual void UnloadAdapter(const std::string& model, const std::string& served_name,
                             bool force, std::function<void(absl::StatusOr<int64_t>)> done) = 0;
  virtual absl::StatusOr<std::vector<AdapterInfo>> ListAdapters(const std::string& model) = 0;

  // Validates and submits. A request that is invalid, or names an unknown or not-ready
  // model, gets a non-OK status here and no stream. Otherwise the stream carries the chunks
  // and exactly one terminal status; cancel by calling Cancel() on the stream.
  virtual absl::StatusOr<std::shared_ptr<GenerateStream>> Generate(GenerateRequest request) = 0;

  virtual absl::StatusOr<TokenizeResult> Tokenize(const std::string& model, const std::string& text,
                                                  bool add_special_tokens) = 0;

  virtual EngineInfo GetInfo() = 0;

  // Scheduler/KV counters of a ready model (NOT_FOUND when unknown). The default says
  // UNIMPLEMENTED, so engines that predate it (fakes) need not care.
  virtual absl::StatusOr<ModelStats> GetModelStats(const std::string& served_name) {
    return absl::UnimplementedError("GetModelStats: not supported by this engine (" +
                                    served_name.substr(0, 64) + ")");
  }

  // Registers the observer for model state changes (one; replaces any previous).
  virtual void SetModelStateObserver(ModelStateObserver observer) = 0;

  // Stops admitting work: new Generate/LoadModel calls get UNAVAILABLE; in-flight
  // requests continue. Idempotent.
  virtual void BeginDrain() = 0;
  // Number of requests still running (Generate streams not yet finished).
  virtual int InFlightRequests() = 0;
  // Ends everything still running with UNAVAILABLE and joins the engine's threads.
  virtual void Shutdown() = 0;
};

}  // namespace kiln::engine
