// LocalEngine: the Engine the daemon runs. It owns the backend, the memory ledger, the model
// and adapter stores, a control thread pool for loads and unloads, and one ModelRuntime (step
// loop) per resident model. Internal to engine/runtime: the daemon gets it from CreateEngine
// (engine_factory.h). Model lifecycle is in local_engine.cc, adapters in
// local_engine_adapters.cc, residency (eviction, reload) in local_engine_residency.cc.
//
// Thread-safety: every Engine method is thread-safe.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "engine/common/thread_pool.h"
#include "engine/io/model_store.h"
#include "engine/placement/ledger.h"
#include "engine/runtime/adapter_cache.h"
#include "engine/runtime/engine.h"
#include "engine/runtime/engine_metrics.h"
#include "engine/runtime/engine_options.h"
#include "engine/runtime/model_adapters.h"
#include "engine/runtime/model_loader.h"
#include "engine/runtime/model_runtime.h"
#include "kernels/backend.h"

namespace kiln::engine {

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

  std::shared_ptr<LoadStream> LoadModel(const LoadModelOptions& options) override;

  void UnloadModel(const std::string& served_name, bool drain,
                   std::function<void(absl::StatusOr<UnloadResult>)> done) override;

  std::vector<ModelInfo> ListModels() override;

  absl::StatusOr<ModelInfo> GetModel(const std::string& served_name) override;

  // Loads (or finds) an adapter for a ready model on a control thread; `served_name` becomes
  // its id (default: the adapter name). The id stays registered until UnloadAdapter.
  void LoadAdapter(const LoadAdapterOptions& options,
                   std::function<void(absl::StatusOr<AdapterInfo>)> done) override;

  void UnloadAdapter(const std::string& model, const std::string& served_name, bool force,
                     std::function<void(absl::StatusOr<int64_t>)> done) override;

  absl::StatusOr<std::vector<AdapterInfo>> ListAdapters(const std::string& model) override;

  absl::StatusOr<std::shared_ptr<GenerateStream>> Generate(GenerateRequest request) override;

  absl::StatusOr<ModelStats> GetModelStats(const std::string& served_name) override;

  absl::StatusOr<TokenizeResult> Tokenize(const std::string& model, const std::string& text,
                                          bool add_special_tokens) override;

  EngineInfo GetInfo() override;

  void SetModelStateObserver(ModelStateObserver observer) override;

  void BeginDrain() override { draining_.store(true); }

  int InFlightRequests() override;

  void Shutdown() override;

 private:
  struct Entry {
    ModelInfo info;
    std::shared_ptr<ModelRuntime> runtime;  // set once ready
    std::shared_ptr<AdapterDirectory> adapters;  // ids registered for this model
  };

  std::shared_ptr<AdapterDirectory> DirectoryOf(const std::string& model);

  AdapterInfo AdapterInfoOf(const std::string& model, const AdapterEntryInfo& entry);

  static absl::Status NotFound(const std::string& name);

  absl::Status AdmitLoad(const LoadModelOptions& options, const std::string& name);

  void ForgetLoading(const std::string& name);

  // LoadResidentModel plus adapters (issue #6): a `model` naming a PEFT adapter directory
  // loads its base_model_name_or_path with that adapter as the default (from_pretrained's
  // adapter auto-detection); LoadModelOptions.adapter names a default adapter from the adapter
  // roots. The model gets an adapter cache; the default adapter is loaded and pinned before
  // the model is ready, so a bad one fails the LoadModel with its error.
  absl::StatusOr<LoadedModel> LoadWithAdapters(const LoadModelOptions& requested, const std::string& served_name,
                                               const std::shared_ptr<AdapterDirectory>& directory,
                                               const std::function<void(const LoadProgressEvent&)>& progress);

  void RunLoad(const LoadModelOptions& options, const std::string& name,
               const std::shared_ptr<LoadStream>& stream);

  absl::StatusOr<std::shared_ptr<ModelRuntime>> RequireReady(const std::string& name);

  void PublishModelCountLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  void Notify(const std::string& name, ModelState state);

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

}  // namespace kiln::engine
