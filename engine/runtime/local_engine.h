// LocalEngine: the Engine the daemon runs. It owns the backend, the memory ledger, the model
// and adapter stores, a control thread pool for loads and unloads, and one ModelRuntime (step
// loop) per resident model. Internal to engine/runtime: the daemon gets it from CreateEngine
// (engine_factory.h). Model lifecycle is in local_engine.cc, adapters in
// local_engine_adapters.cc, residency (eviction, reload) in local_engine_residency.cc.
//
// Residency (issue #7): any number of models may be registered; at most max_loaded_models are
// resident (ready or loading) and all of them must fit the memory ledger. When a LoadModel
// needs a slot or bytes, idle (nothing in flight) unpinned models are evicted least recently
// used first; idle models are also evicted after their keep-alive (LoadModel keep_alive_ms,
// else EngineLimits::default_keep_alive_ms; 0/negative = never). An evicted model stays
// registered (ModelState::kEvicted, listed): a Generate for it reloads it with the options it
// was loaded with and its request waits in the returned stream meanwhile. A model with
// requests in flight is never evicted; UnloadModel drains (or aborts after the drain timeout).
//
// Thread-safety: every Engine method is thread-safe.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <optional>
#include <thread>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
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
#include "engine/runtime/placement_glue.h"
#include "kernels/backend.h"
#include "kernels/backend_factory.h"

namespace kiln::engine {

class LocalEngine final : public Engine {
 public:
  // `accelerators`: the backends of planner devices 0, 1, ... in order: the logical CPU
  // devices of EngineLimits::logical_cpu_device_bytes, or else the CUDA devices `cuda_devices`
  // describes (one backend each); empty: the CPU backend alone.
  LocalEngine(EngineOptions options, std::unique_ptr<kernels::Backend> backend,
              std::vector<std::unique_ptr<kernels::Backend>> accelerators,
              std::vector<kernels::AcceleratorInfo> cuda_devices,
              std::unique_ptr<placement::MemoryLedger> ledger)
      : options_(std::move(options)),
        backend_(std::move(backend)),
        accelerator_backends_(std::move(accelerators)),
        cuda_devices_(std::move(cuda_devices)),
        device_backends_(MakeDeviceBackends(backend_.get(), accelerator_backends_)),
        ledger_(std::move(ledger)),
        store_(options_.model_roots,
               options_.hub_cache.empty() ? ModelStore::DefaultHubCache() : options_.hub_cache),
        adapter_store_(options_.adapter_roots,
                       options_.hub_cache.empty() ? ModelStore::DefaultHubCache() : options_.hub_cache,
                       "adapter"),
        metrics_(options_.metrics_registry),
        control_(options_.num_control_threads),
        reaper_([this] { ReaperLoop(); }) {}

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
  // A Generate waiting for its model's reload: submitted into `stream` once it is ready.
  struct PendingRequest {
    GenerateRequest request;
    std::shared_ptr<GenerateStream> stream;
  };
  struct Entry {
    ModelInfo info;
    std::shared_ptr<ModelRuntime> runtime;  // set while ready
    std::shared_ptr<AdapterDirectory> adapters;  // ids registered for this model
    LoadModelOptions options;  // how it was loaded: a reload after eviction uses them
    absl::Time last_used = absl::InfinitePast();  // last Generate (or load) time, for LRU and keep-alive
    bool reloading = false;
    std::vector<PendingRequest> pending;
  };

  // A waiting request the new runtime refused, to be finished with its status outside mu_.
  using RefusedRequest = std::pair<std::shared_ptr<GenerateStream>, absl::Status>;
  // Makes `runtime` the entry's (state ready) and submits the requests that waited for it.
  // Under mu_ so that no eviction can retire the fresh runtime before they are in flight.
  std::vector<RefusedRequest> InstallRuntimeLocked(Entry& entry, std::shared_ptr<ModelRuntime> runtime,
                                                   const ModelInfo& info) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // --- residency (local_engine_residency.cc) ---
  // The idle, unpinned, ready model used least recently (other than `keep`), retired (no new
  // requests) and marked evicted; null when there is none. The caller Stop()s it outside mu_.
  struct Victim {
    std::string name;
    std::shared_ptr<ModelRuntime> runtime;  // null: nothing could be evicted
  };
  Victim DetachLruVictimLocked(const std::string& keep, const char* reason) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Retires `entry`'s runtime if it is idle (and marks the model evicted); null otherwise.
  std::shared_ptr<ModelRuntime> DetachIfIdleLocked(Entry& entry, const char* reason)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Stops a detached runtime and frees what it held (outside mu_).
  void FinishEviction(Victim victim);
  void EvictExpired();
  // LoadWithAdapters, evicting idle models while the ledger or planner says the model does not fit.
  absl::StatusOr<LoadedModel> LoadMakingRoom(const LoadModelOptions& options, const std::string& name,
                                             const std::shared_ptr<AdapterDirectory>& directory,
                                             const std::function<void(const LoadProgressEvent&)>& progress);
  // Queues `request` for the evicted model `name` and starts its reload if none runs. `name`
  // must not refer into `request`.
  std::shared_ptr<GenerateStream> QueueForReloadLocked(Entry& entry, const std::string& name,
                                                       GenerateRequest request) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RunReload(const std::string& name);
  // The keep-alive of `entry` (nullopt: never evicted for idleness).
  std::optional<absl::Duration> KeepAlive(const Entry& entry) const;
  void ReaperLoop();


  std::shared_ptr<AdapterDirectory> DirectoryOf(const std::string& model);

  AdapterInfo AdapterInfoOf(const std::string& model, const AdapterEntryInfo& entry);

  static absl::Status NotFound(const std::string& name);
  static DeviceBackends MakeDeviceBackends(kernels::Backend* cpu,
                                           const std::vector<std::unique_ptr<kernels::Backend>>& accelerators);

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
  std::vector<std::unique_ptr<kernels::Backend>> accelerator_backends_;  // accelerators 0..n-1
  const std::vector<kernels::AcceleratorInfo> cuda_devices_;  // when the accelerators are CUDA
  const DeviceBackends device_backends_;  // planner device -> backend (the CPU and logical devices)

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

  ThreadPool control_;  // joined before the state its tasks use goes away

  // Evicts models idle past their keep-alive; stopped by Shutdown.
  absl::Mutex reaper_mu_;
  bool reaper_stop_ ABSL_GUARDED_BY(reaper_mu_) = false;
  absl::Mutex join_mu_;  // serializes Shutdown's join of the reaper
  std::thread reaper_;  // last member: started after everything else exists
};

}  // namespace kiln::engine
