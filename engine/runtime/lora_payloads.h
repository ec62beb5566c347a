// The two payloads a model's AdapterCache holds for a LoRA adapter: HostLora (parsed and
// validated host weights, the host tier) and DeviceLora (the weights on the model's device).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "engine/adapter/adapter_loader.h"
#include "engine/model/lora.h"
#include "engine/placement/ledger.h"
#include "engine/runtime/adapter_cache.h"

namespace kiln::engine {

// The modules of a loaded adapter as UploadLora takes them (views into `adapter`).
inline std::vector<HostLoraModule> LoraModuleViews(const LoraAdapter& adapter) {
  std::vector<HostLoraModule> views;
  for (const LoraModule& m : adapter.modules) {
    HostLoraModule view;
    view.module = m.name;
    view.rank = m.r;
    view.scale = m.scale;
    view.a = m.a;
    view.b = m.b;
    views.push_back(view);
  }
  return views;
}

class HostLora final : public AdapterPayload {
 public:
  explicit HostLora(std::unique_ptr<LoraAdapter> adapter)
      : adapter_(std::move(adapter)), views_(LoraModuleViews(*adapter_)) {}
  const LoraAdapter& adapter() const { return *adapter_; }
  // The modules as UploadLora takes them (views into adapter()).
  std::span<const HostLoraModule> modules() const { return views_; }
  size_t bytes() const override { return adapter_->total_bytes; }

 private:
  std::unique_ptr<LoraAdapter> adapter_;
  std::vector<HostLoraModule> views_;
};

class DeviceLora final : public AdapterPayload {
 public:
  // `reservations`: the ledger bytes of `weights`, one per device the pairs sit on (a split
  // model's layers are on several); returned after the weights are freed, when the last Handle
  // or the cache drops this payload.
  DeviceLora(LoraWeights weights, std::vector<placement::Reservation> reservations)
      : reservations_(std::move(reservations)), weights_(std::move(weights)) {}
  const LoraWeights& weights() const { return weights_; }
  size_t bytes() const override { return weights_.bytes(); }

 private:
  std::vector<placement::Reservation> reservations_;  // first: released after weights_ is destroyed
  LoraWeights weights_;
};

}  // namespace kiln::engine
