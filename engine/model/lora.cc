#include "engine/model/lora.h"

#include <algorithm>
#include <cstring>
#include <set>

#include "absl/strings/str_cat.h"
#include "engine/common/status_macros.h"

namespace kiln::engine {
namespace {

absl::StatusOr<kernels::DeviceBuffer> UploadFloats(kernels::Backend& backend, std::span<const float> host) {
  const size_t bytes = host.size() * sizeof(float);
  absl::StatusOr<kernels::DeviceBuffer> buffer = backend.Allocate(bytes);
  if (!buffer.ok()) return buffer.status();
  kernels::TensorView view(buffer->data(), kernels::DType::kF32, {static_cast<int64_t>(host.size())},
                           buffer->device());
  absl::Status copied = backend.CopyFromHost(host.data(), view);
  if (!copied.ok()) return copied;
  return buffer;
}

}  // namespace

absl::StatusOr<LoraWeights> UploadLora(kernels::Backend& backend, std::span<const LoraSite> sites,
                                       std::span<const HostLoraModule> modules) {
  LoraWeights weights;
  weights.sites_.resize(sites.size());
  std::set<std::string_view> seen;
  for (const HostLoraModule& m : modules) {
    const std::string name(m.module);
    if (!seen.insert(m.module).second) {
      return absl::InvalidArgumentError(absl::StrCat("adapter module ", name, " appears twice"));
    }
    std::vector<size_t> matches;
    for (size_t i = 0; i < sites.size(); ++i) {
      if (sites[i].module == name) matches.push_back(i);
    }
    if (matches.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("adapter module ", name, " is not a Linear layer this model can adapt"));
    }
    const LoraSite& first = sites[matches.front()];
    if (m.rank < 1 || m.a.size() != static_cast<size_t>(m.rank * first.in) ||
        m.b.size() != static_cast<size_t>(first.module_out * m.rank)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "adapter module ", name, ": lora_A has ", m.a.size(), " values and lora_B ", m.b.size(),
          " for rank ", m.rank, "; the module needs [", m.rank, ", ", first.in, "] and [", first.module_out,
          ", ", m.rank, "]"));
    }
    // The pair lives on the device of the layer that applies it (the slices of a fused module
    // all belong to one layer, so one device).
    kernels::Backend& target = first.backend != nullptr ? *first.backend : backend;
    absl::StatusOr<kernels::DeviceBuffer> a = UploadFloats(target, m.a);
    if (!a.ok()) return a.status();
    absl::StatusOr<kernels::DeviceBuffer> b = UploadFloats(target, m.b);
    if (!b.ok()) return b.status();
    for (size_t i : matches) {
      const LoraSite& site = sites[i];
      kernels::LoraPair pair;
      pair.a = kernels::TensorView(a->data(), kernels::DType::kF32, {m.rank, site.in}, a->device());
      pair.b = kernels::TensorView(static_cast<float*>(b->data()) + site.row_offset * m.rank,
                                   kernels::DType::kF32, {site.out, m.rank}, b->device());
      pair.scale = m.scale;
      weights.sites_[i] = pair;
    }
    weights.max_rank_ = std::max(weights.max_rank_, m.rank);
    weights.bytes_ += a->bytes() + b->bytes();
    weights.buffers_.push_back(*std::move(a));
    weights.buffers_.push_back(*std::move(b));
  }
  return weights;
}

absl::Status MergeLora(kernels::Backend& default_backend, std::span<const LoraSite> sites,
                       const LoraWeights& lora) {
  if (lora.num_sites() != sites.size()) {
    return absl::InvalidArgumentError(absl::StrCat("merge: the adapter has ", lora.num_sites(),
                                                   " LoRA sites; the model has ", sites.size()));
  }
  for (size_t i = 0; i < sites.size(); ++i) {
    if (lora.site(i) != nullptr && sites[i].dense.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("merge: ", sites[i].module,
                                                     " is quantized; merging an adapter needs dense weights"));
    }
  }
  for (size_t i = 0; i < sites.size(); ++i) {
    const kernels::LoraPair* pair = lora.site(i);
    if (pair == nullptr) continue;
    const LoraSite& site = sites[i];
    kernels::Backend& backend = site.backend != nullptr ? *site.backend : default_backend;
    const int64_t r = pair->a.dim(0);
    std::vector<float> w(static_cast<size_t>(site.out * site.in)), a(static_cast<size_t>(r * site.in)),
        b(static_cast<size_t>(site.out * r));
    // W goes through an fp32 scratch buffer: Convert handles the weight dtype on any backend.
    absl::StatusOr<kernels::DeviceBuffer> scratch = backend.Allocate(w.size() * sizeof(float));
    if (!scratch.ok()) return scratch.status();
    kernels::TensorView w32(scratch->data(), kernels::DType::kF32, {site.out, site.in}, scratch->device());
    KILN_RETURN_IF_ERROR(backend.Convert(site.dense, w32));
    KILN_RETURN_IF_ERROR(backend.CopyToHost(w32, w.data()));
    KILN_RETURN_IF_ERROR(backend.CopyToHost(pair->a, a.data()));
    KILN_RETURN_IF_ERROR(backend.CopyToHost(pair->b, b.data()));
    for (int64_t o = 0; o < site.out; ++o) {
      for (int64_t k = 0; k < r; ++k) {
        const float s = pair->scale * b[static_cast<size_t>(o * r + k)];
        const float* arow = &a[static_cast<size_t>(k * site.in)];
        float* wrow = &w[static_cast<size_t>(o * site.in)];
        for (int64_t j = 0; j < site.in; ++j) wrow[j] += s * arow[j];
      }
    }
    KILN_RETURN_IF_ERROR(backend.CopyFromHost(w.data(), w32));
    KILN_RETURN_IF_ERROR(backend.Convert(w32, site.dense));
  }
  return absl::OkStatus();
}

size_t LoraSiteWorkspace(const kernels::Backend& backend, const LoraBatch& batch, int64_t tokens) {
  if (batch.empty()) return 0;
  return backend.LoraWorkspaceBytes(tokens, batch.max_rank);
}

absl::Status ApplyLoraSite(kernels::Backend& backend, const LoraBatch& batch, size_t site,
                           kernels::TensorView x, kernels::TensorView out, kernels::TensorView workspace) {
  if (batch.empty()) return absl::OkStatus();
  // Pairs of the adapters that target this site; adapter index -> pair slot (or -1).
  std::vector<kernels::LoraPair> pairs;
  std::vector<int32_t> slot_of(batch.adapters.size(), -1);
  for (size_t i = 0; i < batch.adapters.size(); ++i) {
    if (const kernels::LoraPair* pair = batch.adapters[i]->site(site)) {
      slot_of[i] = static_cast<int32_t>(pairs.size());
      pairs.push_back(*pair);
    }
  }
  if (pairs.empty()) return absl::OkStatus();
  std::vector<int32_t> slots(batch.seg_adapter.size());
  for (size_t s = 0; s < slots.size(); ++s) {
    slots[s] = batch.seg_adapter[s] < 0 ? -1 : slot_of[static_cast<size_t>(batch.seg_adapter[s])];
  }
  kernels::LoraSegments segments;
  segments.seg_start = batch.seg_start;
  segments.slot = slots;
  return backend.LoraApply(x, pairs, segments, out, workspace);
}

}  // namespace kiln::engine
