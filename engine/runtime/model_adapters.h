// ModelAdapters: wires one resident model's AdapterCache to the disk and to the model (#6).
//
// Adapter ids are names resolved like model names (engine/io/model_store.h): inside the
// configured adapter roots, then the hub cache; LoadAdapter may register an id for another
// name/revision (served_name), and LoadModel of an adapter directory registers that adapter
// as the model's default. Reading validates the adapter against the base before anything
// takes device memory (engine/adapter/adapter_loader.h): targets, ranks, shapes, and
// base_model_name_or_path against the base's name unless the registration allows a mismatch.
// Uploading puts the A/B pairs next to the model's weights (engine/model/lora.h).
//
// Thread-safety: Register/Find are thread-safe; the cache's functions run on its thread.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "engine/io/model_store.h"
#include "engine/model/lora.h"
#include "engine/model/model_config.h"
#include "engine/placement/ledger.h"
#include "engine/runtime/adapter_cache.h"
#include "engine/runtime/engine_options.h"
#include "engine/runtime/placement_glue.h"
#include "kernels/backend.h"

namespace kiln::engine {

// Where an adapter id's files come from.
struct AdapterSource {
  const ModelStore* store = nullptr;  // adapter roots, or the model store for auto-detection
  std::string name;                   // name resolved in `store`
  std::string revision;
  bool allow_base_mismatch = false;
};

class AdapterDirectory {
 public:
  // `default_store`: where an unregistered id is looked up (the adapter roots + hub).
  explicit AdapterDirectory(const ModelStore* default_store) : default_store_(default_store) {}
  void Register(const std::string& id, AdapterSource source);
  // The registered source, else the id itself in the default store.
  AdapterSource Find(const std::string& id) const;
  void Forget(const std::string& id);

 private:
  const ModelStore* default_store_;
  mutable absl::Mutex mu_;
  std::map<std::string, AdapterSource> sources_ ABSL_GUARDED_BY(mu_);
};

struct ModelAdapterContext {
  ModelConfig config;                     // the base model's config
  std::string base_name;                  // LoadModel's model name (for base_model_name_or_path)
  std::vector<LoraSite> sites;            // CausalLm::lora_sites()
  kernels::Backend* backend = nullptr;    // the model's backend (for sites without their own)
  // Planner device of each backend (the engine's table): adapter bytes are reserved on the
  // device of the layer each pair is uploaded to. Empty: everything counts on the CPU.
  DeviceBackends device_backends;
  std::shared_ptr<AdapterDirectory> directory;
  EngineLimits limits;
  // Device adapter bytes are reserved here (kind adapter, owner = the served model name) before
  // they are allocated; null: not accounted.
  placement::MemoryLedger* ledger = nullptr;
  std::string owner;
};

// The cache for one model, reading through `context.directory` and uploading to its backend.
std::unique_ptr<AdapterCache> MakeAdapterCache(ModelAdapterContext context, AdapterCacheOptions options);

}  // namespace kiln::engine
