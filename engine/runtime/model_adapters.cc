#include "engine/runtime/model_adapters.h"

#include <algorithm>
#include <map>
#include <span>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/adapter/adapter_loader.h"
#include "engine/adapter/base_modules.h"
#include "engine/runtime/lora_payloads.h"

namespace kiln::engine {

void AdapterDirectory::Register(const std::string& id, AdapterSource source) {
  absl::MutexLock lock(&mu_);
  sources_[id] = std::move(source);
}

AdapterSource AdapterDirectory::Find(const std::string& id) const {
  absl::MutexLock lock(&mu_);
  auto it = sources_.find(id);
  if (it != sources_.end()) return it->second;
  AdapterSource source;
  source.store = default_store_;
  source.name = id;
  return source;
}

void AdapterDirectory::Forget(const std::string& id) {
  absl::MutexLock lock(&mu_);
  sources_.erase(id);
}

namespace {

// Bytes UploadLora allocates per planner device: each module's A and B (fp32) go to the backend
// of the first site it matches (LoraSite::backend), which is on the device its layer was placed
// on. A module matching no site is left out here; UploadLora refuses it by name.
std::map<placement::Device, int64_t> AdapterBytesPerDevice(const ModelAdapterContext& context,
                                                           std::span<const HostLoraModule> modules) {
  std::map<placement::Device, int64_t> out;
  for (const HostLoraModule& m : modules) {
    const auto site = std::find_if(context.sites.begin(), context.sites.end(),
                                   [&](const LoraSite& s) { return s.module == m.module; });
    if (site == context.sites.end()) continue;
    const kernels::Backend* target = site->backend != nullptr ? site->backend : context.backend;
    const placement::Device device =
        target == nullptr ? placement::Device::Cpu()
                          : PlannerDeviceOf(context.device_backends, target->device()).value_or(placement::Device::Cpu());
    out[device] += static_cast<int64_t>((m.a.size() + m.b.size()) * sizeof(float));
  }
  return out;
}

}  // namespace

std::unique_ptr<AdapterCache> MakeAdapterCache(ModelAdapterContext context, AdapterCacheOptions options) {
  auto shared = std::make_shared<const ModelAdapterContext>(std::move(context));
  auto base = std::make_shared<const BaseModules>(ListBaseModules(shared->config));
  AdapterCache::ReadFn read = [shared, base](const std::string& id)
      -> absl::StatusOr<std::shared_ptr<const AdapterPayload>> {
    const AdapterSource source = shared->directory->Find(id);
    if (source.store == nullptr) {
      return absl::NotFoundError(absl::StrCat("adapter '", id, "': no adapter roots are configured"));
    }
    absl::StatusOr<ResolvedModel> resolved = source.store->Resolve(source.name, source.revision);
    if (!resolved.ok()) return resolved.status();
    if (!resolved->has_adapter_config) {
      return absl::InvalidArgumentError(
          absl::StrCat("adapter '", id, "': its directory has no adapter_config.json"));
    }
    AdapterLoadOptions load;
    load.expected_base = shared->base_name;
    load.allow_base_mismatch = source.allow_base_mismatch;
    load.config_limits.max_rank = shared->limits.max_adapter_rank;
    load.containment_root = resolved->containment_root;
    absl::StatusOr<std::unique_ptr<LoraAdapter>> adapter = LoadLoraAdapter(resolved->dir, *base, load);
    if (!adapter.ok()) {
      return absl::Status(adapter.status().code(), absl::StrCat("adapter '", id, "': ", adapter.status().message()));
    }
    return std::make_shared<const HostLora>(*std::move(adapter));
  };
  AdapterCache::UploadFn upload = [shared](const std::string& id, const AdapterPayload& host)
      -> absl::StatusOr<std::shared_ptr<const AdapterPayload>> {
    const auto& lora = static_cast<const HostLora&>(host);
    std::vector<placement::Reservation> reservations;
    if (shared->ledger != nullptr) {
      // The upload allocates exactly each module's fp32 A/B bytes on its layer's device:
      // reserve them there first (all devices or none: a failed Reserve drops the others).
      for (const auto& [device, bytes] : AdapterBytesPerDevice(*shared, lora.modules())) {
        absl::StatusOr<placement::Reservation> r =
            shared->ledger->Reserve(device, placement::MemoryKind::kAdapter, shared->owner, bytes);
        if (!r.ok()) return absl::Status(r.status().code(), absl::StrCat("adapter '", id, "': ", r.status().message()));
        reservations.push_back(*std::move(r));
      }
    }
    absl::StatusOr<LoraWeights> weights = UploadLora(*shared->backend, shared->sites, lora.modules());
    if (!weights.ok()) {
      return absl::Status(weights.status().code(), absl::StrCat("adapter '", id, "': ", weights.status().message()));
    }
    return std::make_shared<const DeviceLora>(*std::move(weights), std::move(reservations));
  };
  return std::make_unique<AdapterCache>(options, std::move(read), std::move(upload));
}

}  // namespace kiln::engine
