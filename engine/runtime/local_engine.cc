// LocalEngine, model lifecycle: LoadModel, UnloadModel, Generate, Tokenize, GetServerInfo,
// drain and shutdown. See local_engine.h.
#include "engine/runtime/local_engine.h"

#include <unistd.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "engine/common/status_macros.h"
#include "engine/model/model_config.h"
#include "engine/runtime/engine_factory.h"
#include "engine/runtime/placement_glue.h"
#include "kernels/backend_factory.h"

namespace kiln::engine {
namespace {

// Progress is lossy (a slow reader may miss some), the ready event is not: keep room for it.
constexpr size_t kLoadStreamCapacity = 1024;

}  // namespace

std::shared_ptr<LoadStream> LocalEngine::LoadModel(const LoadModelOptions& options) {
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

void LocalEngine::UnloadModel(const std::string& served_name, bool drain,
                 std::function<void(absl::StatusOr<UnloadResult>)> done) {
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
    for (PendingRequest& p : it->second.pending) {
      p.stream->Finish(absl::AbortedError(absl::StrCat("model '", served_name, "' was unloaded")));
    }
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

std::vector<ModelInfo> LocalEngine::ListModels() {
  absl::MutexLock lock(&mu_);
  std::vector<ModelInfo> out;
  for (const auto& [name, entry] : models_) out.push_back(entry.info);
  return out;
}

absl::StatusOr<ModelInfo> LocalEngine::GetModel(const std::string& served_name) {
  absl::MutexLock lock(&mu_);
  auto it = models_.find(served_name);
  if (it == models_.end()) return NotFound(served_name);
  return it->second.info;
}

absl::StatusOr<std::shared_ptr<GenerateStream>> LocalEngine::Generate(GenerateRequest request) {
  if (draining_.load()) return absl::UnavailableError("server is draining");
  if (!request.adapter.empty()) {
    if (absl::Status valid = ValidateModelName(request.adapter, "adapter"); !valid.ok()) return valid;
  }
  const std::string model = request.model;  // not request.model: the request moves below
  std::shared_ptr<ModelRuntime> runtime;
  {
    absl::MutexLock lock(&mu_);
    auto it = models_.find(model);
    if (it != models_.end() && (it->second.info.state == ModelState::kEvicted || it->second.reloading)) {
      return QueueForReloadLocked(it->second, model, std::move(request));
    }
    if (it != models_.end() && it->second.info.state == ModelState::kReady) {
      it->second.last_used = absl::Now();
      runtime = it->second.runtime;
    }
  }
  if (runtime == nullptr) {
    absl::StatusOr<std::shared_ptr<ModelRuntime>> ready = RequireReady(model);  // the error
    if (!ready.ok()) return ready.status();
    runtime = *ready;
  }
  GenerateRequest copy = request;  // kept in case an eviction retires the runtime under us
  absl::StatusOr<std::shared_ptr<GenerateStream>> stream = runtime->Submit(std::move(request));
  if (stream.ok() || stream.status().code() != absl::StatusCode::kUnavailable) return stream;
  absl::MutexLock lock(&mu_);
  auto it = models_.find(model);
  if (it != models_.end() && (it->second.info.state == ModelState::kEvicted || it->second.reloading)) {
    return QueueForReloadLocked(it->second, model, std::move(copy));
  }
  return stream;
}

absl::StatusOr<ModelStats> LocalEngine::GetModelStats(const std::string& served_name) {
  absl::StatusOr<std::shared_ptr<ModelRuntime>> runtime = RequireReady(served_name);
  if (!runtime.ok()) return runtime.status();
  return (*runtime)->stats();
}

absl::StatusOr<TokenizeResult> LocalEngine::Tokenize(const std::string& model, const std::string& text,
                                        bool add_special_tokens) {
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

EngineInfo LocalEngine::GetInfo() {
  EngineInfo info;
  info.cuda_built = kernels::CudaBuilt();
  for (Architecture a : {Architecture::kLlama, Architecture::kMistral, Architecture::kQwen2,
                         Architecture::kGpt2}) {
    info.architectures.emplace_back(ArchitectureName(a));
  }
  // Per device, from the memory ledger every load and adapter upload reserves in.
  const int64_t physical = static_cast<int64_t>(sysconf(_SC_PHYS_PAGES)) * sysconf(_SC_PAGESIZE);
  for (const placement::DeviceMemorySnapshot& s : ledger_->Snapshot()) {
    DeviceReport d{.name = s.device.Name(), .description = "host CPU (CPU backend)"};
    d.total_bytes = physical;  // the CPU and logical CPU devices share host memory
    if (auto it = device_backends_.find(s.device); it != device_backends_.end()) {
      d.description = it->second->Describe();
    }
    if (s.device.is_gpu() && static_cast<size_t>(s.device.index) < cuda_devices_.size()) {
      d.total_bytes = cuda_devices_[static_cast<size_t>(s.device.index)].total_bytes;
    }
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

void LocalEngine::SetModelStateObserver(ModelStateObserver observer) {
  absl::MutexLock lock(&observer_mu_);
  observer_ = std::move(observer);
}

int LocalEngine::InFlightRequests() {
  absl::MutexLock lock(&mu_);
  int n = 0;
  for (const auto& [name, entry] : models_) {
    if (entry.runtime) n += entry.runtime->in_flight();
    n += static_cast<int>(entry.pending.size());
  }
  return n;
}

void LocalEngine::Shutdown() {
  draining_.store(true);
  {
    absl::MutexLock lock(&reaper_mu_);
    reaper_stop_ = true;
  }
  {
    absl::MutexLock lock(&join_mu_);
    if (reaper_.joinable()) reaper_.join();
  }
  std::map<std::string, Entry> models;
  {
    absl::MutexLock lock(&mu_);
    models.swap(models_);
  }
  for (auto& [name, entry] : models) {
    if (entry.runtime) entry.runtime->Stop(absl::UnavailableError("server is shutting down"));
    for (PendingRequest& p : entry.pending) p.stream->Finish(absl::UnavailableError("server is shutting down"));
  }
}

DeviceBackends LocalEngine::MakeDeviceBackends(kernels::Backend* cpu,
                                               const std::vector<std::unique_ptr<kernels::Backend>>& accelerators) {
  DeviceBackends backends = {{placement::Device::Cpu(), cpu}};
  for (size_t i = 0; i < accelerators.size(); ++i) {
    backends[placement::Device::Gpu(static_cast<int>(i))] = accelerators[i].get();
  }
  return backends;
}

absl::Status LocalEngine::NotFound(const std::string& name) {
  return absl::NotFoundError(absl::StrCat("model '", name, "' is not loaded"));
}

absl::Status LocalEngine::AdmitLoad(const LoadModelOptions& options, const std::string& name) {
  if (draining_.load()) return absl::UnavailableError("server is draining; not accepting loads");
  if (options.model.empty()) return absl::InvalidArgumentError("model: must not be empty");
  if (name.size() > 256) {
    return absl::InvalidArgumentError(
        absl::StrCat("served_name: ", name.size(), " bytes exceeds 256"));
  }
  Victim victim;
  {
    absl::MutexLock lock(&mu_);
    auto it = models_.find(name);
    if (it != models_.end() && it->second.info.state != ModelState::kFailed &&
        !(it->second.info.state == ModelState::kEvicted && !it->second.reloading)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "served_name: a model named '", name, "' is already ",
          it->second.info.state == ModelState::kLoading ? "loading" : "loaded",
          "; unload it first or pick another served_name"));
    }
    int resident = 0;
    for (const auto& [n, e] : models_) {
      resident += e.info.state == ModelState::kReady || e.info.state == ModelState::kLoading;
    }
    if (resident >= options_.limits.max_loaded_models) {
      victim = DetachLruVictimLocked(name, "count");
      if (victim.runtime == nullptr) {
        return absl::ResourceExhaustedError(absl::StrCat(
            "max_loaded_models: ", resident, " models are loaded or loading (limit ",
            options_.limits.max_loaded_models, ") and none is idle and unpinned"));
      }
    }
    Entry entry;
    entry.info.served_name = name;
    entry.info.model = options.model;
    entry.info.state = ModelState::kLoading;
    entry.options = options;
    entry.last_used = absl::Now();
    if (it != models_.end()) {  // a failed or evicted registration: waiting requests stay queued
      entry.pending = std::move(it->second.pending);
    }
    models_[name] = std::move(entry);
  }
  FinishEviction(std::move(victim));
  Notify(name, ModelState::kLoading);
  return absl::OkStatus();
}

void LocalEngine::ForgetLoading(const std::string& name) {
  absl::MutexLock lock(&mu_);
  models_.erase(name);
}

void LocalEngine::RunLoad(const LoadModelOptions& options, const std::string& name,
             const std::shared_ptr<LoadStream>& stream) {
  const absl::Time start = absl::Now();
  auto progress = [&](const LoadProgressEvent& e) {
    if (stream->buffered() < kLoadStreamCapacity / 2) stream->Push(e);
  };
  auto directory = std::make_shared<AdapterDirectory>(&adapter_store_);
  absl::StatusOr<LoadedModel> loaded = LoadMakingRoom(options, name, directory, progress);
  metrics_.ModelLoaded(loaded.ok(), absl::ToDoubleSeconds(absl::Now() - start));
  if (!loaded.ok()) {
    {
      absl::MutexLock lock(&mu_);
      auto it = models_.find(name);
      if (it != models_.end()) {
        it->second.info.state = ModelState::kFailed;
        it->second.info.error = std::string(loaded.status().message());
        for (PendingRequest& p : it->second.pending) p.stream->Finish(loaded.status());
        it->second.pending.clear();
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
  std::vector<RefusedRequest> refused;
  {
    absl::MutexLock lock(&mu_);
    auto it = models_.find(name);
    if (it == models_.end() || draining_.load()) {
      // Shut down while loading: nothing may stay resident.
      runtime->Stop(absl::UnavailableError("server is shutting down"));
      stream->Finish(absl::UnavailableError("server shut down while the model was loading"));
      return;
    }
    it->second.adapters = directory;
    refused = InstallRuntimeLocked(it->second, runtime, loaded->info);
  }
  for (auto& [s, status] : refused) s->Finish(status);
  metrics_.SetModelWeightBytes(name, loaded->info.weight_bytes);
  Notify(name, ModelState::kReady);
  stream->Push(loaded->info);
  stream->Finish(absl::OkStatus());
}

std::vector<LocalEngine::RefusedRequest> LocalEngine::InstallRuntimeLocked(Entry& entry,
                                                                          std::shared_ptr<ModelRuntime> runtime,
                                                                          const ModelInfo& info) {
  entry.info = info;
  entry.runtime = runtime;
  entry.last_used = absl::Now();
  PublishModelCountLocked();
  std::vector<RefusedRequest> refused;
  std::vector<PendingRequest> pending = std::move(entry.pending);
  entry.pending.clear();
  for (PendingRequest& p : pending) {
    absl::StatusOr<std::shared_ptr<GenerateStream>> submitted = runtime->Submit(std::move(p.request), p.stream);
    if (!submitted.ok()) refused.emplace_back(p.stream, submitted.status());
  }
  return refused;
}

absl::StatusOr<std::shared_ptr<ModelRuntime>> LocalEngine::RequireReady(const std::string& name) {
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

void LocalEngine::PublishModelCountLocked() {
  int ready = 0;
  for (const auto& [n, e] : models_) ready += e.runtime != nullptr;
  metrics_.SetModelsLoaded(ready);
}

void LocalEngine::Notify(const std::string& name, ModelState state) {
  absl::MutexLock lock(&observer_mu_);
  if (observer_) observer_(name, state);
}

absl::StatusOr<std::unique_ptr<Engine>> CreateEngine(EngineOptions options) {
  if (options.num_control_threads < 1) {
    return absl::InvalidArgumentError(absl::StrCat("num_control_threads: must be >= 1, got ",
                                                   options.num_control_threads));
  }
  absl::StatusOr<std::unique_ptr<kernels::Backend>> backend = kernels::CreateBackend(
      {.kind = kernels::BackendKind::kCpu, .num_threads = options.num_compute_threads});
  if (!backend.ok()) return backend.status();
  // Accelerators: logical CPU devices (EngineLimits::logical_cpu_device_bytes, the multi-device
  // code path without a GPU) or else the visible CUDA devices; each gets its own backend, seen
  // by the planner as device i.
  std::vector<std::unique_ptr<kernels::Backend>> accelerators;
  std::vector<kernels::AcceleratorInfo> cuda_devices;
  if (!options.limits.logical_cpu_device_bytes.empty()) {
    for (size_t i = 0; i < options.limits.logical_cpu_device_bytes.size(); ++i) {
      kernels::BackendOptions device;
      device.kind = kernels::BackendKind::kCpu;
      device.num_threads = options.num_compute_threads;
      device.logical_device = static_cast<int>(i) + 1;
      absl::StatusOr<std::unique_ptr<kernels::Backend>> b = kernels::CreateBackend(device);
      if (!b.ok()) return b.status();
      accelerators.push_back(*std::move(b));
    }
  } else if (options.limits.use_cuda) {
    cuda_devices = kernels::ListCudaDevices();
    for (const kernels::AcceleratorInfo& info : cuda_devices) {
      kernels::BackendOptions device;
      device.kind = kernels::BackendKind::kCuda;
      device.device_index = info.index;
      absl::StatusOr<std::unique_ptr<kernels::Backend>> b = kernels::CreateBackend(device);
      if (!b.ok()) {
        return absl::Status(b.status().code(), absl::StrCat("cuda:", info.index, " (", info.name,
                                                            "): ", b.status().message()));
      }
      accelerators.push_back(*std::move(b));
    }
  }
  absl::StatusOr<std::unique_ptr<placement::MemoryLedger>> ledger =
      placement::MemoryLedger::Create(DeviceInventory(options.limits, cuda_devices));
  if (!ledger.ok()) return ledger.status();
  return std::make_unique<LocalEngine>(std::move(options), *std::move(backend), std::move(accelerators),
                                       std::move(cuda_devices), *std::move(ledger));
}

}  // namespace kiln::engine
