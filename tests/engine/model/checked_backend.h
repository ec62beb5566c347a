// CheckedBackend: a kernels::Backend that forwards to a real one and first checks that every
// tensor an op touches lives on this backend's device (TensorView::device(), which buffers
// inherit from the backend that allocated them). FAILED_PRECONDITION naming the op and the
// argument otherwise. Tests wrap logical CPU devices in it so a split model that reads another
// device's memory fails instead of silently working because all CPU memory is host memory.
// Host-side copies (CopyFromHost's src, CopyToHost's dst) are plain pointers and not checked.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/backend.h"

namespace kiln::engine {

class CheckedBackend final : public kernels::Backend {
 public:
  explicit CheckedBackend(std::unique_ptr<kernels::Backend> inner) : inner_(std::move(inner)) {}

  // Ops run (not counting memory management).
  int64_t ops() const { return ops_.load(); }

  kernels::BackendKind kind() const override { return inner_->kind(); }
  kernels::Device device() const override { return inner_->device(); }
  std::string Describe() const override { return "checked " + inner_->Describe(); }

  void Free(void* data, size_t bytes) override { inner_->Free(data, bytes); }
  absl::StatusOr<kernels::DeviceBuffer> Allocate(size_t bytes) override { return inner_->Allocate(bytes); }
  absl::Status CopyFromHost(const void* src, kernels::TensorView dst) override {
    if (absl::Status s = On("CopyFromHost", {{"dst", dst}}); !s.ok()) return s;
    return inner_->CopyFromHost(src, dst);
  }
  absl::Status CopyToHost(kernels::TensorView src, void* dst) override {
    if (absl::Status s = On("CopyToHost", {{"src", src}}); !s.ok()) return s;
    return inner_->CopyToHost(src, dst);
  }
  absl::Status Convert(kernels::TensorView src, kernels::TensorView dst) override {
    // src may be a host staging view (WeightLoader converts checkpoint bytes on upload).
    if (absl::Status s = On("Convert", {{"dst", dst}}); !s.ok()) return s;
    return inner_->Convert(src, dst);
  }
  absl::Status Embedding(kernels::TensorView table, std::span<const int32_t> ids, kernels::TensorView out) override {
    if (absl::Status s = Op("Embedding", {{"table", table}, {"out", out}}); !s.ok()) return s;
    return inner_->Embedding(table, ids, out);
  }
  absl::Status Matmul(kernels::TensorView x, kernels::TensorView w, kernels::TensorView bias, kernels::TensorView out,
                      kernels::TensorView workspace) override {
    if (absl::Status s = Op("Matmul", {{"x", x}, {"w", w}, {"bias", bias}, {"out", out}, {"workspace", workspace}});
        !s.ok()) {
      return s;
    }
    return inner_->Matmul(x, w, bias, out, workspace);
  }
  size_t MatmulWorkspaceBytes(int64_t m, int64_t n, int64_t k, kernels::DType w) const override {
    return inner_->MatmulWorkspaceBytes(m, n, k, w);
  }
  absl::Status QuantMatmul(kernels::TensorView x, const kernels::QuantizedMatrix& w, kernels::TensorView bias,
                           kernels::TensorView out, kernels::TensorView workspace) override {
    if (absl::Status s = Op("QuantMatmul", {{"x", x},
                                            {"packed", w.bnb4.packed},
                                            {"absmax", w.bnb4.absmax},
                                            {"int8", w.int8.weight},
                                            {"scb", w.int8.scb},
                                            {"bias", bias},
                                            {"out", out},
                                            {"workspace", workspace}});
        !s.ok()) {
      return s;
    }
    return inner_->QuantMatmul(x, w, bias, out, workspace);
  }
  size_t QuantMatmulWorkspaceBytes(int64_t m, const kernels::QuantizedMatrix& w) const override {
    return inner_->QuantMatmulWorkspaceBytes(m, w);
  }
  absl::Status LoraApply(kernels::TensorView x, std::span<const kernels::LoraPair> pairs,
                         const kernels::LoraSegments& segments, kernels::TensorView out,
                         kernels::TensorView workspace) override {
    for (const kernels::LoraPair& p : pairs) {
      if (absl::Status s = On("LoraApply", {{"lora A", p.a}, {"lora B", p.b}}); !s.ok()) return s;
    }
    if (absl::Status s = Op("LoraApply", {{"x", x}, {"out", out}, {"workspace", workspace}}); !s.ok()) return s;
    return inner_->LoraApply(x, pairs, segments, out, workspace);
  }
  size_t LoraWorkspaceBytes(int64_t m, int64_t max_rank) const override {
    return inner_->LoraWorkspaceBytes(m, max_rank);
  }
  absl::Status RmsNorm(kernels::TensorView x, kernels::TensorView weight, float eps, kernels::TensorView out) override {
    if (absl::Status s = Op("RmsNorm", {{"x", x}, {"weight", weight}, {"out", out}}); !s.ok()) return s;
    return inner_->RmsNorm(x, weight, eps, out);
  }
  absl::Status AddRmsNorm(kernels::TensorView residual, kernels::TensorView x, kernels::TensorView weight, float eps,
                          kernels::TensorView out) override {
    if (absl::Status s = Op("AddRmsNorm", {{"residual", residual}, {"x", x}, {"weight", weight}, {"out", out}});
        !s.ok()) {
      return s;
    }
    return inner_->AddRmsNorm(residual, x, weight, eps, out);
  }
  absl::Status LayerNorm(kernels::TensorView x, kernels::TensorView weight, kernels::TensorView bias, float eps,
                         kernels::TensorView out) override {
    if (absl::Status s = Op("LayerNorm", {{"x", x}, {"weight", weight}, {"bias", bias}, {"out", out}}); !s.ok()) {
      return s;
    }
    return inner_->LayerNorm(x, weight, bias, eps, out);
  }
  absl::Status Rope(kernels::TensorView x, std::span<const int32_t> positions, std::span<const float> inv_freq,
                    float attention_scaling) override {
    if (absl::Status s = Op("Rope", {{"x", x}}); !s.ok()) return s;
    return inner_->Rope(x, positions, inv_freq, attention_scaling);
  }
  absl::Status Add(kernels::TensorView a, kernels::TensorView b, kernels::TensorView out) override {
    if (absl::Status s = Op("Add", {{"a", a}, {"b", b}, {"out", out}}); !s.ok()) return s;
    return inner_->Add(a, b, out);
  }
  absl::Status SiluMul(kernels::TensorView gate, kernels::TensorView up, kernels::TensorView out) override {
    if (absl::Status s = Op("SiluMul", {{"gate", gate}, {"up", up}, {"out", out}}); !s.ok()) return s;
    return inner_->SiluMul(gate, up, out);
  }
  absl::Status Gelu(kernels::TensorView x, kernels::GeluKind kind, kernels::TensorView out) override {
    if (absl::Status s = Op("Gelu", {{"x", x}, {"out", out}}); !s.ok()) return s;
    return inner_->Gelu(x, kind, out);
  }
  absl::Status GatherRows(kernels::TensorView src, std::span<const int32_t> rows, kernels::TensorView out) override {
    if (absl::Status s = Op("GatherRows", {{"src", src}, {"out", out}}); !s.ok()) return s;
    return inner_->GatherRows(src, rows, out);
  }
  absl::Status KvWrite(kernels::TensorView k, kernels::TensorView v, std::span<const int32_t> slots,
                       const kernels::PagedKvLayer& cache) override {
    if (absl::Status s = Op("KvWrite", {{"k", k}, {"v", v}, {"cache k", cache.k}, {"cache v", cache.v}}); !s.ok()) {
      return s;
    }
    return inner_->KvWrite(k, v, slots, cache);
  }
  absl::Status PagedAttention(kernels::TensorView q, const kernels::PagedKvLayer& cache,
                              const kernels::AttentionParams& params, kernels::TensorView out,
                              kernels::TensorView workspace) override {
    if (absl::Status s = Op("PagedAttention",
                            {{"q", q}, {"cache k", cache.k}, {"cache v", cache.v}, {"out", out}, {"workspace", workspace}});
        !s.ok()) {
      return s;
    }
    return inner_->PagedAttention(q, cache, params, out, workspace);
  }
  size_t AttentionWorkspaceBytes(int64_t max_kv_len) const override {
    return inner_->AttentionWorkspaceBytes(max_kv_len);
  }

 private:
  struct Arg {
    const char* name;
    const kernels::TensorView& view;
  };
  absl::Status On(const char* op, std::initializer_list<Arg> args) const {
    for (const Arg& a : args) {
      if (a.view.empty()) continue;
      if (!(a.view.device() == device())) {
        return absl::FailedPreconditionError(absl::StrCat(op, ": ", a.name, " is on cpu:", a.view.device().index,
                                                          ", this backend is cpu:", device().index));
      }
    }
    return absl::OkStatus();
  }
  absl::Status Op(const char* op, std::initializer_list<Arg> args) {
    ops_.fetch_add(1);
    return On(op, args);
  }

  std::unique_ptr<kernels::Backend> inner_;
  std::atomic<int64_t> ops_{0};
};

}  // namespace kiln::engine
