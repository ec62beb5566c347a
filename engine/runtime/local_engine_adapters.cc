// LocalEngine, adapters: LoadAdapter, UnloadAdapter, ListAdapters, and the adapter side of
// LoadModel (default adapter, auto-detection, merge). See local_engine.h.
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/adapter/adapter_config.h"
#include "engine/common/status_macros.h"
#include "engine/model/lora.h"
#include "engine/runtime/local_engine.h"
#include "engine/runtime/lora_payloads.h"

namespace kiln::engine {

void LocalEngine::LoadAdapter(const LoadAdapterOptions& options,
                 std::function<void(absl::StatusOr<AdapterInfo>)> done) {
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

void LocalEngine::UnloadAdapter(const std::string& model, const std::string& served_name, bool force,
                   std::function<void(absl::StatusOr<int64_t>)> done) {
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

absl::StatusOr<std::vector<AdapterInfo>> LocalEngine::ListAdapters(const std::string& model) {
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

std::shared_ptr<AdapterDirectory> LocalEngine::DirectoryOf(const std::string& model) {
  absl::MutexLock lock(&mu_);
  auto it = models_.find(model);
  return it == models_.end() ? nullptr : it->second.adapters;
}

AdapterInfo LocalEngine::AdapterInfoOf(const std::string& model, const AdapterEntryInfo& entry) {
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

absl::StatusOr<LoadedModel> LocalEngine::LoadWithAdapters(const LoadModelOptions& requested, const std::string& served_name,
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
                        LoadResidentModel(options, store_, options_.limits, device_backends_, progress, ledger_.get()));
  loaded.parts.reservations = std::move(loaded.reservations);
  ModelAdapterContext context;
  context.config = loaded.parts.model->config();
  context.base_name = options.model;
  context.sites.assign(loaded.parts.model->lora_sites().begin(), loaded.parts.model->lora_sites().end());
  context.backend = backend_.get();
  context.device_backends = device_backends_;
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

}  // namespace kiln::engine
