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
#include "engine/adapter/adapter_config.h"
#include "engine/common/status_macros.h"
#include "engine/common/thread_pool.h"
#include "engine/io/model_store.h"
#include "engine/model/model_config.h"
#include "engine/placement/ledger.h"
#include "engine/runtime/engine_factory.h"
#include "engine/runtime/engine_metrics.h"
#include "engine/runtime/model_loader.h"
#include "engine/runtime/model_adapters.h"
#include "engine/runtime/model_runtime.h"
#include "engine/runtime/placement_glue.h"
#include "engine/runtime/lora_payloads.h"
#include "kernels/backend_factory.h"

namespace kiln::engine {
namespace {

// Progress is lossy (a slow reader may miss some), the ready event is not: keep room for it.
constexpr size_t kLoadStreamCapacity = 1024;

class LocalEngine final : public Engine {
 public:
  LocalEngine(EngineOptions options, std::unique_ptr<kernels::Backend> backend,
              std::unique_ptr<placement::MemoryLedger> ledger)
      : options_(std::move(options)),
        backend_(std::move(backend)),
        ledger_(std::move(ledger)),
        store_(options_.model_roots,
               options_.hub_cache.empty() ? ModelStore::DefaultHubCache() : options_.hub_cache),
        adapter_store_(options_.adapter_roots,
                       options_.hub_cache.empty() ? ModelStore::DefaultHubCache() : options_.hub_cache,
                       "adapter"),
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
    const bool submitted = control_.Submit([runtime, drain, done, served_name, this]() mutable {
      if (drain) runtime->WaitUntilIdle(absl::Seconds(options_.drain_timeout_s));
      UnloadResult result;
      result.aborted_requests = runtime->in_flight();
      // Everything the ledger holds for it: weights, KV cache and device-resident adapters.
      result.freed_bytes = ledger_->OwnerBytes(served_name);
      runtime->Stop(absl::AbortedError("model was unloaded while the request was running"));
      runtime.reset();  // usually the last reference: memory and ledger bytes go back here
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

  // Loads (or finds) an adapter for a ready model on a control thread; `served_name` becomes
  // its id (default: the adapter name). The id stays registered until UnloadAdapter.
  void LoadAdapter(const LoadAdapterOptions& options,
                   std::function<void(absl::StatusOr<AdapterInfo>)> done) override {
    absl::StatusOr<std::shared_ptr<ModelRuntime>> runtime = RequireReady(options.model);
    if (!runtime.ok()) return done(runtime.status());
    if (options.adapter.empty()) return done(absl::InvalidArgumentError("adapter: must not be empty"));
    const std::string id = options.served_name.empty() ? options.adapter : options.served_name;
    if (absl::Status valid = ValidateModelName(id, "adapter"); !valid.ok()) return done(valid);
    if (absl::Status valid = ValidateModelName(options.adapter, "adapter"); !valid.ok()) return done(valid);
    std::shared_ptr<AdapterDirectory> directory = DirectoryOf(options.model);
    if (directory == nullptr) return done(NotFound(options.model));
    AdapterSource source = directory->Find(id);
    source.store = &adapter_store_;
    source.name = options.adapter;
    source.revision = options.revision;
    source.allow_base_mismatch = options.ignore_base_model_mismatch;
    directory->Register(id, source);
    std::shared_ptr<ModelRuntime> held = *runtime;
    const bool submitted = control_.Submit([this, held, id, options, done] {
      AdapterCache& cache = *held->adapters();
      absl::StatusOr<AdapterCache::Handle> handle = cache.AcquireAndWait(id);
      if (!handle.ok()) return done(handle.status());
      if (options.pin) (void)cache.Pin(id, true);
      handle->Reset();
      std::optional<AdapterEntryInfo> entry = cache.Find(id);
      if (!entry.has_value()) return done(absl::AbortedError(absl::StrCat("adapter '", id, "' was unloaded meanwhile")));
      done(AdapterInfoOf(options.model, *entry));
    });
    if (!submitted) done(absl::UnavailableError("server is shutting down"));
  }

  void UnloadAdapter(const std::string& model, const std::string& served_name, bool force,
                     std::function<void(absl::StatusOr<int64_t>)> done) override {
    absl::StatusOr<std::shared_ptr<ModelRuntime>> runtime = RequireReady(model);
    if (!runtime.ok()) return done(runtime.status());
    AdapterCache& cache = *(*runtime)->adapters();
    const std::optional<AdapterEntryInfo> entry = cache.Find(served_name);
    const absl::Status status = cache.Unload(served_name, force);
    if (!status.ok()) {
      return done(status.code() == absl::StatusCode::kNotFound
                      ? absl::NotFoundError(absl::StrCat("adapter '", served_name, "' is not loaded for model '",
                                                         model, "'"))
                      : status);
    }
    if (std::shared_ptr<AdapterDirectory> directory = DirectoryOf(model)) directory->Forget(served_name);
    done(entry.has_value() ? static_cast<int64_t>(entry->bytes) : 0);
  }

  absl::StatusOr<std::vector<AdapterInfo>> ListAdapters(const std::string& model) override {
    std::vector<std::pair<std::string, std::shared_ptr<ModelRuntime>>> runtimes;
    if (!model.empty()) {
      absl::StatusOr<std::shared_ptr<ModelRuntime>> runtime = RequireReady(model);
      if (!runtime.ok()) return runtime.status();
      runtimes.emplace_back(model, *runtime);
    } else {
      absl::MutexLock lock(&mu_);
      for (const auto& [name, entry] : models_) {
        if (entry.runtime) runtimes.emplace_back(name, entry.runtime);
      }
    }
    std::vector<AdapterInfo> out;
    for (const auto& [name, runtime] : runtimes) {
      for (const AdapterEntryInfo& entry : runtime->adapters()->List()) out.push_back(AdapterInfoOf(name, entry));
    }
    return out;
  }

  absl::StatusOr<std::shared_ptr<GenerateStream>> Generate(GenerateRequest request) override {
    if (draining_.load()) return absl::UnavailableError("server is draining");
    if (!request.adapter.empty()) {
      if (absl::Status valid = ValidateModelName(request.adapter, "adapter"); !valid.ok()) return valid;
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
    // Per device, from the memory ledger every load and adapter upload reserves in.
    const int64_t page = sysconf(_SC_PAGESIZE);
    for (const placement::DeviceMemorySnapshot& s : ledger_->Snapshot()) {
      DeviceReport d{.name = s.device.Name(), .description = "host CPU (CPU backend)"};
      d.total_bytes = static_cast<int64_t>(sysconf(_SC_PHYS_PAGES)) * page;
      d.budget_bytes = s.capacity_bytes;
      d.free_bytes = s.available_bytes();
      auto kind = [&](placement::MemoryKind k) { return s.by_kind[static_cast<int>(k)]; };
      d.weight_bytes = kind(placement::MemoryKind::kWeights);
      d.kv_cache_bytes = kind(placement::MemoryKind::kKv);
      d.adapter_bytes = kind(placement::MemoryKind::kAdapter);
      d.workspace_bytes = kind(placement::MemoryKind::kWorkspace) + kind(placement::MemoryKind::kActivations);
      metrics_.SetDeviceMemory(d);
      info.devices.push_back(d);
    }
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
    std::shared_ptr<AdapterDirectory> adapters;  // ids registered for this model
  };

  std::shared_ptr<AdapterDirectory> DirectoryOf(const std::string& model) {
    absl::MutexLock lock(&mu_);
    auto it = models_.find(model);
    return it == models_.end() ? nullptr : it->second.adapters;
  }

  AdapterInfo AdapterInfoOf(const std::string& model, const AdapterEntryInfo& entry) {
    AdapterInfo info;
    info.served_name = entry.id;
    info.model = model;
    std::shared_ptr<AdapterDirectory> directory = DirectoryOf(model);
    info.adapter = directory != nullptr ? directory->Find(entry.id).name : entry.id;
    switch (entry.tier) {
      case AdapterTier::kLoading: info.state = AdapterState::kLoading; break;
      case AdapterTier::kDevice: info.state = AdapterState::kDevice; break;
      case AdapterTier::kHost: info.state = AdapterState::kHost; break;
    }
    if (const auto* host = dynamic_cast<const HostLora*>(entry.host.get())) {
      const LoraAdapter& a = host->adapter();
      info.rank = static_cast<int32_t>(a.config.r);
      info.alpha = static_cast<float>(a.config.lora_alpha);
      for (const LoraModule& m : a.modules) info.target_modules.push_back(m.name);
    }
    info.bytes = static_cast<int64_t>(entry.bytes);
    info.pinned = entry.pinned;
    info.active_requests = entry.handles;
    return info;
  }

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
      models_[name] = Entry{.info = info, .runtime = nullptr, .adapters = nullptr};
    }
    Notify(name, ModelState::kLoading);
    return absl::OkStatus();
  }

  void ForgetLoading(const std::string& name) {
    absl::MutexLock lock(&mu_);
    models_.erase(name);
  }

  // LoadResidentModel plus adapters (issue #6): a `model` naming a PEFT adapter directory
  // loads its base_model_name_or_path with that adapter as the default (from_pretrained's
  // adapter auto-detection); LoadModelOptions.adapter names a default adapter from the adapter
  // roots. The model gets an adapter cache; the default adapter is loaded and pinned before
  // the model is ready, so a bad one fails the LoadModel with its error.
  absl::StatusOr<LoadedModel> LoadWithAdapters(const LoadModelOptions& requested, const std::string& served_name,
                                               const std::shared_ptr<AdapterDirectory>& directory,
                                               const std::function<void(const LoadProgressEvent&)>& progress) {
    LoadModelOptions options = requested;
    std::string default_adapter;
    if (!options.model.empty()) {
      absl::StatusOr<ResolvedModel> resolved = store_.Resolve(options.model, options.revision);
      if (resolved.ok() && resolved->has_adapter_config) {
        AdapterConfigLimits limits;
        limits.max_rank = options_.limits.max_adapter_rank;
        KILN_ASSIGN_OR_RETURN(LoraConfig config, LoadLoraConfig(resolved->dir, limits, resolved->containment_root));
        if (!config.base_model_name_or_path.has_value() || config.base_model_name_or_path->empty()) {
          return absl::InvalidArgumentError(absl::StrCat("model: \"", options.model,
                                                         "\" is a PEFT adapter without base_model_name_or_path"));
        }
        if (!ValidateModelName(*config.base_model_name_or_path).ok()) {
          return absl::InvalidArgumentError(absl::StrCat(
              "adapter_config.json base_model_name_or_path of \"", options.model,
              "\" is not a model name kiln can resolve (a path?); load the base by name with adapter=\"",
              options.model, "\" instead"));
        }
        if (!options.adapter.empty()) {
          return absl::InvalidArgumentError(absl::StrCat("adapter: \"", options.model,
                                                         "\" is itself an adapter; name its base as the model instead"));
        }
        AdapterSource source;
        source.store = &store_;
        source.name = options.model;
        source.revision = options.revision;
        directory->Register(options.model, source);
        default_adapter = options.model;
        options.model = *config.base_model_name_or_path;
        options.revision.clear();
      } else if (!options.adapter.empty()) {
        default_adapter = options.adapter;
      }
    }
    if (options.merge_adapter && default_adapter.empty()) {
      return absl::InvalidArgumentError("merge_adapter: needs an adapter (adapter, or a model that is an adapter)");
    }
    options.adapter.clear();  // handled here, not by the loader
    options.served_name = served_name;  // the ledger owner
    KILN_ASSIGN_OR_RETURN(LoadedModel loaded,
                          LoadResidentModel(options, store_, options_.limits, *backend_, progress, ledger_.get()));
    loaded.parts.reservations = std::move(loaded.reservations);
    ModelAdapterContext context;
    context.config = loaded.parts.model->config();
    context.base_name = options.model;
    context.sites.assign(loaded.parts.model->lora_sites().begin(), loaded.parts.model->lora_sites().end());
    context.backend = backend_.get();
    context.directory = directory;
    context.limits = options_.limits;
    context.ledger = ledger_.get();
    context.owner = served_name;
    AdapterCacheOptions cache;
    cache.max_device_bytes = static_cast<size_t>(options_.limits.max_adapter_device_bytes);
    cache.max_device_adapters = options_.limits.max_resident_adapters;
    cache.max_host_bytes = static_cast<size_t>(options_.limits.max_adapter_host_bytes);
    cache.on_load = [this, served_name](bool ok, absl::Duration took) {
      metrics_.AdapterLoaded(served_name, ok, absl::ToDoubleSeconds(took));
    };
    loaded.parts.adapters = MakeAdapterCache(std::move(context), cache);
    if (!default_adapter.empty()) {
      if (progress) {
        progress(LoadProgressEvent{.stage = LoadProgressEvent::Stage::kLoadingWeights,
                                   .message = absl::StrCat("loading adapter ", default_adapter)});
      }
      absl::StatusOr<AdapterCache::Handle> handle = loaded.parts.adapters->AcquireAndWait(default_adapter);
      if (!handle.ok()) return handle.status();
      if (options.merge_adapter) {
        // PEFT's merge_and_unload: the weights now hold the adapter; it is not kept.
        const auto& lora = static_cast<const DeviceLora*>(handle->device())->weights();
        absl::Status merged = MergeLora(*backend_, loaded.parts.model->lora_sites(), lora);
        if (!merged.ok()) return absl::InvalidArgumentError(absl::StrCat("merge_adapter: ", merged.message()));
        handle->Reset();
        KILN_RETURN_IF_ERROR(loaded.parts.adapters->Unload(default_adapter, /*force=*/false));
        directory->Forget(default_adapter);
        return loaded;
      }
      KILN_RETURN_IF_ERROR(loaded.parts.adapters->Pin(default_adapter, true));
      loaded.parts.default_adapter = default_adapter;
      loaded.info.default_adapter = default_adapter;
    }
    return loaded;
  }

  void RunLoad(const LoadModelOptions& options, const std::string& name,
               const std::shared_ptr<LoadStream>& stream) {
    const absl::Time start = absl::Now();
    auto progress = [&](const LoadProgressEvent& e) {
      if (stream->buffered() < kLoadStreamCapacity / 2) stream->Push(e);
    };
    auto directory = std::make_shared<AdapterDirectory>(&adapter_store_);
    absl::StatusOr<LoadedModel> loaded = LoadWithAdapters(options, name, directory, progress);
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
      it->second = Entry{.info = loaded->info, .runtime = runtime, .adapters = directory};
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
  // Every byte a model or adapter holds on a device (engine/placement/ledger.h). Declared before
  // the models so their reservations are returned before it goes.
  std::unique_ptr<placement::MemoryLedger> ledger_;
  const ModelStore store_;
  const ModelStore adapter_store_;
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
  absl::StatusOr<std::unique_ptr<placement::MemoryLedger>> ledger =
      placement::MemoryLedger::Create(DeviceInventory(options.limits));
  if (!ledger.ok()) return ledger.status();
  return std::make_unique<LocalEngine>(std::move(options), *std::move(backend), *std::move(ledger));
}

}  // namespace kiln::engine
