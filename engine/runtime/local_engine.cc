// LocalEngine: the Engine the daemon runs. It owns the backend, the model store, a control
// thread pool for loads and unloads, and one ModelRuntime (step loop) per resident model.
#include <atomic>
#include <map>
#include <memory>
#include <unistd.h>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "engine/common/thread_pool.h"
#include "engine/io/model_store.h"
#include "engine/model/model_config.h"
#include "engine/runtime/engine_factory.h"
#include "engine/runtime/engine_metrics.h"
#include "engine/runtime/model_loader.h"
#include "engine/runtime/model_runtime.h"
#include "kernels/backend_factory.h"

namespace kiln::engine {
namespace {

// Progress is lossy (a slow reader may miss some), the ready event is not: keep room for it.
constexpr size_t kLoadStreamCapacity = 1024;

class LocalEngine final : public Engine {
 public:
  LocalEngine(EngineOptions options, std::unique_ptr<kernels::Backend> backend)
      : options_(std::move(options)),
        backend_(std::move(backend)),
        store_(options_.model_roots,
               options_.hub_cache.empty() ? ModelStore::DefaultHubCache() : options_.hub_cache),
        metrics_(options_.metrics_registry),
        control_(options_.num_control_threads) {}

  ~LocalEngine() override { Shutdown(); }

  std::shared_ptr<LoadStream> LoadModel(const LoadModelOptions& options) override {
    auto stream = std::make_shared<LoadStream>(kLoadStreamCapacity);
    const std::string name = options.served_name.empty() ? options.model : options.served_name;
    absl::Status admitted = AdmitLoad(options, name);
    if (!admitted.ok()) {
      stream->Finish(std::move(admitted));
      return stream;
    }
    if (!control_.Submit([this, options, name, stream] { RunLoad(options, name, stream); })) {
      ForgetLoading(name);
      stream->Finish(absl::UnavailableError("server is shutting down"));
    }
    return stream;
  }

  void UnloadModel(const std::string& served_name, bool drain,
                   std::function<void(absl::StatusOr<UnloadResult>)> done) override {
    std::shared_ptr<ModelRuntime> runtime;
    {
      absl::MutexLock lock(&mu_);
      auto it = models_.find(served_name);
      if (it == models_.end()) {
        done(NotFound(served_name));
        return;
      }
      if (it->second.info.state == ModelState::kLoading) {
        done(absl::FailedPreconditionError(
            absl::StrCat("model '", served_name, "' is still loading")));
        return;
      }
      runtime = std::move(it->second.runtime);
      models_.erase(it);  // new requests get NOT_FOUND from here on
      PublishModelCountLocked();
    }
    metrics_.RemoveModel(served_name);
    Notify(served_name, ModelState::kUnloading);
    if (!runtime) {  // a failed load: nothing resident
      done(UnloadResult{});
      return;
    }
    const bool submitted = control_.Submit([runtime, drain, done, this] {
      if (drain) runtime->WaitUntilIdle(absl::Seconds(options_.drain_timeout_s));
      UnloadResult result;
      result.aborted_requests = runtime->in_flight();
      result.freed_bytes = static_cast<int64_t>(runtime->model().weight_bytes()) +
                           runtime->kv_cache_bytes();
      runtime->Stop(absl::AbortedError("model was unloaded while the request was running"));
      done(result);
    });
    if (!submitted) {
      runtime->Stop(absl::AbortedError("model was unloaded while the request was running"));
      done(UnloadResult{});
    }
  }

  std::vector<ModelInfo> ListModels() override {
    absl::MutexLock lock(&mu_);
    std::vector<ModelInfo> out;
    for (const auto& [name, entry] : models_) out.push_back(entry.info);
    return out;
  }

  absl::StatusOr<ModelInfo> GetModel(const std::string& served_name) override {
    absl::MutexLock lock(&mu_);
    auto it = models_.find(served_name);
    if (it == models_.end()) return NotFound(served_name);
    return it->second.info;
  }

  void LoadAdapter(const LoadAdapterOptions& options,
                   std::function<void(absl::StatusOr<AdapterInfo>)> done) override {
    absl::Status model = RequireReady(options.model).status();
    done(model.ok() ? absl::UnimplementedError("adapters: LoRA adapters are not supported by this build yet")
                    : model);
  }
  void UnloadAdapter(const std::string& model, const std::string& served_name, bool,
                     std::function<void(absl::StatusOr<int64_t>)> done) override {
    absl::Status status = RequireReady(model).status();
    done(status.ok() ? absl::NotFoundError(absl::StrCat("adapter '", served_name,
                                                        "' is not loaded for model '", model, "'"))
                     : status);
  }
  absl::StatusOr<std::vector<AdapterInfo>> ListAdapters(const std::string& model) override {
    if (!model.empty()) {
      absl::Status status = RequireReady(model).status();
      if (!status.ok()) return status;
    }
    return std::vector<AdapterInfo>{};
  }

  absl::StatusOr<std::shared_ptr<GenerateStream>> Generate(GenerateRequest request) override {
    if (draining_.load()) return absl::UnavailableError("server is draining");
    if (!request.adapter.empty()) {
      return absl::UnimplementedError("adapter: LoRA adapters are not supported by this build yet");
    }
    absl::StatusOr<std::shared_ptr<ModelRuntime>> runtime = RequireReady(request.model);
    if (!runtime.ok()) return runtime.status();
    return (*runtime)->Submit(std::move(request));
  }

  absl::StatusOr<ModelStats> GetModelStats(const std::string& served_name) override {
    absl::StatusOr<std::shared_ptr<ModelRuntime>> runtime = RequireReady(served_name);
    if (!runtime.ok()) return runtime.status();
    return (*runtime)->stats();
  }

  absl::StatusOr<TokenizeResult> Tokenize(const std::string& model, const std::string& text,
                                          bool add_special_tokens) override {
    absl::StatusOr<std::shared_ptr<ModelRuntime>> runtime = RequireReady(model);
    if (!runtime.ok()) return runtime.status();
    if (static_cast<int64_t>(text.size()) > options_.limits.max_prompt_bytes) {
      return absl::InvalidArgumentError(absl::StrCat("text: ", text.size(),
                                                     " bytes exceeds max_prompt_bytes ",
                                                     options_.limits.max_prompt_bytes));
    }
    const tokenizer::Tokenizer& tok = (*runtime)->tokenizer();
    absl::StatusOr<std::vector<int32_t>> ids = tok.Encode(text, add_special_tokens);
    if (!ids.ok()) return ids.status();
    TokenizeResult result;
    result.token_ids = *std::move(ids);
    for (int32_t id : result.token_ids) result.tokens.push_back(tok.IdToToken(id).value_or(""));
    return result;
  }

  EngineInfo GetInfo() override {
    EngineInfo info;
    info.cuda_built = kernels::CudaBuilt();
    for (Architecture a : {Architecture::kLlama, Architecture::kMistral, Architecture::kQwen2,
                           Architecture::kGpt2}) {
      info.architectures.emplace_back(ArchitectureName(a));
    }
    DeviceReport cpu{.name = "cpu", .description = "host CPU (CPU backend)"};
    const int64_t page = sysconf(_SC_PAGESIZE);
    cpu.total_bytes = static_cast<int64_t>(sysconf(_SC_PHYS_PAGES)) * page;
    cpu.free_bytes = static_cast<int64_t>(sysconf(_SC_AVPHYS_PAGES)) * page;
    absl::MutexLock lock(&mu_);
    for (const auto& [name, entry] : models_) {
      cpu.weight_bytes += entry.info.weight_bytes;
      cpu.kv_cache_bytes += entry.info.kv_cache_bytes;
    }
    metrics_.SetDeviceMemory(cpu);
    info.devices.push_back(cpu);
    return info;
  }

  void SetModelStateObserver(ModelStateObserver observer) override {
    absl::MutexLock lock(&observer_mu_);
    observer_ = std::move(observer);
  }

  void BeginDrain() override { draining_.store(true); }

  int InFlightRequests() override {
    absl::MutexLock lock(&mu_);
    int n = 0;
    for (const auto& [name, entry] : models_) {
      if (entry.runtime) n += entry.runtime->in_flight();
    }
    return n;
  }

  void Shutdown() override {
    draining_.store(true);
    std::map<std::string, Entry> models;
    {
      absl::MutexLock lock(&mu_);
      models.swap(models_);
    }
    for (auto& [name, entry] : models) {
      if (entry.runtime) entry.runtime->Stop(absl::UnavailableError("server is shutting down"));
    }
  }

 private:
  struct Entry {
    ModelInfo info;
    std::shared_ptr<ModelRuntime> runtime;  // set once ready
  };

  static absl::Status NotFound(const std::string& name) {
    return absl::NotFoundError(absl::StrCat("model '", name, "' is not loaded"));
  }

  absl::Status AdmitLoad(const LoadModelOptions& options, const std::string& name) {
    if (draining_.load()) return absl::UnavailableError("server is draining; not accepting loads");
    if (options.model.empty()) return absl::InvalidArgumentError("model: must not be empty");
    if (name.size() > 256) {
      return absl::InvalidArgumentError(
          absl::StrCat("served_name: ", name.size(), " bytes exceeds 256"));
    }
    {
      absl::MutexLock lock(&mu_);
      auto it = models_.find(name);
      if (it != models_.end() && it->second.info.state != ModelState::kFailed) {
        return absl::FailedPreconditionError(absl::StrCat(
            "served_name: a model named '", name, "' is already ",
            it->second.info.state == ModelState::kLoading ? "loading" : "loaded",
            "; unload it first or pick another served_name"));
      }
      int active = 0;
      for (const auto& [n, e] : models_) active += e.info.state != ModelState::kFailed;
      if (active >= options_.limits.max_loaded_models) {
        return absl::ResourceExhaustedError(absl::StrCat(
            "max_loaded_models: ", active, " models are loaded or loading (limit ",
            options_.limits.max_loaded_models, ")"));
      }
      ModelInfo info;
      info.served_name = name;
      info.model = options.model;
      info.state = ModelState::kLoading;
      models_[name] = Entry{.info = info, .runtime = nullptr};
    }
    Notify(name, ModelState::kLoading);
    return absl::OkStatus();
  }

  void ForgetLoading(const std::string& name) {
    absl::MutexLock lock(&mu_);
    models_.erase(name);
  }

  void RunLoad(const LoadModelOptions& options, const std::string& name,
               const std::shared_ptr<LoadStream>& stream) {
    const absl::Time start = absl::Now();
    auto progress = [&](const LoadProgressEvent& e) {
      if (stream->buffered() < kLoadStreamCapacity / 2) stream->Push(e);
    };
    absl::StatusOr<LoadedModel> loaded =
        LoadResidentModel(options, store_, options_.limits, *backend_, progress);
    metrics_.ModelLoaded(loaded.ok(), absl::ToDoubleSeconds(absl::Now() - start));
    if (!loaded.ok()) {
      {
        absl::MutexLock lock(&mu_);
        auto it = models_.find(name);
        if (it != models_.end()) {
          it->second.info.state = ModelState::kFailed;
          it->second.info.error = std::string(loaded.status().message());
        }
      }
      Notify(name, ModelState::kFailed);
      stream->Finish(loaded.status());
      return;
    }
    loaded->info.served_name = name;
    loaded->info.load_duration_ms = absl::ToInt64Milliseconds(absl::Now() - start);
    auto runtime = std::make_shared<ModelRuntime>(std::move(loaded->parts), options_.limits,
                                                  metrics_.ForModel(name));
    {
      absl::MutexLock lock(&mu_);
      auto it = models_.find(name);
      if (it == models_.end() || draining_.load()) {
        // Shut down while loading: nothing may stay resident.
        runtime->Stop(absl::UnavailableError("server is shutting down"));
        stream->Finish(absl::UnavailableError("server shut down while the model was loading"));
        return;
      }
      it->second = Entry{.info = loaded->info, .runtime = runtime};
      PublishModelCountLocked();
    }
    metrics_.SetModelWeightBytes(name, loaded->info.weight_bytes);
    Notify(name, ModelState::kReady);
    stream->Push(loaded->info);
    stream->Finish(absl::OkStatus());
  }

  absl::StatusOr<std::shared_ptr<ModelRuntime>> RequireReady(const std::string& name) {
    absl::MutexLock lock(&mu_);
    auto it = models_.find(name);
    if (it == models_.end()) return NotFound(name);
    switch (it->second.info.state) {
      case ModelState::kReady:
        return it->second.runtime;
      case ModelState::kLoading:
        return absl::FailedPreconditionError(absl::StrCat("model '", name, "' is still loading"));
      case ModelState::kFailed:
        return absl::UnavailableError(absl::StrCat("model '", name,
                                                   "' failed to load: ", it->second.info.error));
      case ModelState::kUnloading:
      case ModelState::kEvicted:
        return absl::UnavailableError(absl::StrCat("model '", name, "' is not resident"));
    }
    return NotFound(name);
  }

  void PublishModelCountLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    int ready = 0;
    for (const auto& [n, e] : models_) ready += e.runtime != nullptr;
    metrics_.SetModelsLoaded(ready);
  }

  void Notify(const std::string& name, ModelState state) {
    absl::MutexLock lock(&observer_mu_);
    if (observer_) observer_(name, state);
  }

  const EngineOptions options_;
  std::unique_ptr<kernels::Backend> backend_;
  const ModelStore store_;
  std::atomic<bool> draining_{false};
  EngineMetrics metrics_;

  absl::Mutex mu_;
  std::map<std::string, Entry> models_ ABSL_GUARDED_BY(mu_);

  absl::Mutex observer_mu_;
  ModelStateObserver observer_ ABSL_GUARDED_BY(observer_mu_);

  ThreadPool control_;  // last member: joined first, while everything it uses is alive
};

}  // namespace

absl::StatusOr<std::unique_ptr<Engine>> CreateEngine(EngineOptions options) {
  if (options.num_control_threads < 1) {
    return absl::InvalidArgumentError(absl::StrCat("num_control_threads: must be >= 1, got ",
                                                   options.num_control_threads));
  }
  absl::StatusOr<std::unique_ptr<kernels::Backend>> backend = kernels::CreateBackend(
      {.kind = kernels::BackendKind::kCpu, .num_threads = options.num_compute_threads});
  if (!backend.ok()) return backend.status();
  return std::make_unique<LocalEngine>(std::move(options), *std::move(backend));
}

}  // namespace kiln::engine
