#include "engine/runtime/model_adapters.h"

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
    placement::Reservation reservation;
    if (shared->ledger != nullptr) {
      // The upload allocates exactly the host payload's fp32 A/B bytes: reserve them first.
      absl::StatusOr<placement::Reservation> r = shared->ledger->Reserve(
          placement::Device::Cpu(), placement::MemoryKind::kAdapter, shared->owner, static_cast<int64_t>(host.bytes()));
      if (!r.ok()) return absl::Status(r.status().code(), absl::StrCat("adapter '", id, "': ", r.status().message()));
      reservation = *std::move(r);
    }
    absl::StatusOr<LoraWeights> weights = UploadLora(*shared->backend, shared->sites, lora.modules());
    if (!weights.ok()) {
      return absl::Status(weights.status().code(), absl::StrCat("adapter '", id, "': ", weights.status().message()));
    }
    return std::make_shared<const DeviceLora>(*std::move(weights), std::move(reservation));
  };
  return std::make_unique<AdapterCache>(options, std::move(read), std::move(upload));
}

}  // namespace kiln::engine
