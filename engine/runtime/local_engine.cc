// The engine the daemon runs. Transitional: models cannot be loaded yet (the engine core
// lands the loader, runtime and step loop); everything else answers with the statuses the
// API promises, so the daemon, its clients and tests are real from the start.
#include <atomic>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "engine/runtime/engine_factory.h"

namespace kiln::engine {
namespace {

class LocalEngine final : public Engine {
 public:
  explicit LocalEngine(EngineOptions options) : options_(std::move(options)) {}

  std::shared_ptr<LoadStream> LoadModel(const LoadModelOptions& options) override {
    auto stream = std::make_shared<LoadStream>();
    if (draining_.load()) {
      stream->Finish(absl::UnavailableError("server is draining; not accepting loads"));
    } else if (options.model.empty()) {
      stream->Finish(absl::InvalidArgumentError("model: must not be empty"));
    } else if (options.trust_remote_code) {
      stream->Finish(absl::InvalidArgumentError(
          "trust_remote_code: kiln never runs code from a checkpoint; must be false"));
    } else {
      stream->Finish(absl::UnimplementedError("model loading is not available in this build"));
    }
    return stream;
  }

  void UnloadModel(const std::string& served_name, bool,
                   std::function<void(absl::StatusOr<UnloadResult>)> done) override {
    done(NotFound(served_name));
  }
  std::vector<ModelInfo> ListModels() override { return {}; }
  absl::StatusOr<ModelInfo> GetModel(const std::string& served_name) override {
    return NotFound(served_name);
  }
  void LoadAdapter(const LoadAdapterOptions& options,
                   std::function<void(absl::StatusOr<AdapterInfo>)> done) override {
    done(NotFound(options.model));
  }
  void UnloadAdapter(const std::string& model, const std::string&, bool,
                     std::function<void(absl::StatusOr<int64_t>)> done) override {
    done(NotFound(model));
  }
  absl::StatusOr<std::vector<AdapterInfo>> ListAdapters(const std::string& model) override {
    if (model.empty()) return std::vector<AdapterInfo>{};
    return NotFound(model);
  }
  absl::StatusOr<std::shared_ptr<GenerateStream>> Generate(GenerateRequest request) override {
    if (draining_.load()) return absl::UnavailableError("server is draining");
    return NotFound(request.model);
  }
  absl::StatusOr<TokenizeResult> Tokenize(const std::string& model, const std::string&,
                                          bool) override {
    return NotFound(model);
  }
  EngineInfo GetInfo() override {
    EngineInfo info;
    info.devices.push_back(DeviceReport{.name = "cpu", .description = "host CPU"});
    return info;
  }
  void SetModelStateObserver(ModelStateObserver observer) override {
    absl::MutexLock lock(&mu_);
    observer_ = std::move(observer);
  }
  void BeginDrain() override { draining_.store(true); }
  int InFlightRequests() override { return 0; }
  void Shutdown() override { draining_.store(true); }

 private:
  static absl::Status NotFound(const std::string& name) {
    return absl::NotFoundError(absl::StrCat("model '", name, "' is not loaded"));
  }

  const EngineOptions options_;
  std::atomic<bool> draining_{false};
  absl::Mutex mu_;
  ModelStateObserver observer_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

absl::StatusOr<std::unique_ptr<Engine>> CreateEngine(EngineOptions options) {
  return std::make_unique<LocalEngine>(std::move(options));
}

}  // namespace kiln::engine
