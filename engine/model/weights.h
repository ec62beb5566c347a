// WeightLoader: pulls named tensors out of a Checkpoint into backend memory, checking each one
// (present, floating-point, exact shape) and converting it to the load dtype. Internal to
// engine/model; the architectures call it with the names transformers saves.
//
// Linear layers go through LoadLinear, which decides per module: dense (the load dtype),
// quantized on load (LoadOptions::bitsandbytes and its ShouldQuantize), or pre-quantized
// (tensors like <module>.SCB / <module>.weight.absmax / <module>.qweight in the checkpoint).
//
// Every tensor is uploaded to the loader's target backend (TargetFor; a model split across
// devices moves the target module by module), read with pread (never through the map, so a file truncated under us is an
// error, not a SIGBUS), converted, and copied into its own DeviceBuffer. After loading, an
// architecture calls CheckAllUsed so an unexpected tensor (a checkpoint for another shape or
// architecture) is INVALID_ARGUMENT naming it.
#pragma once

#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/io/checkpoint.h"
#include "engine/model/causal_lm.h"
#include "engine/model/layers.h"
#include "kernels/backend.h"

namespace kiln::engine {

class WeightLoader {
 public:
  WeightLoader(const Checkpoint& checkpoint, kernels::Backend& backend, const LoadOptions& options);

  bool Has(const std::string& name) const { return checkpoint_.Find(name).has_value(); }

  // Placement (LoadOptions::tensor_backend): the backend `tensor` is placed on; the loader's
  // backend when the options place nothing. INVALID_ARGUMENT naming the tensor when the
  // placement gives none.
  absl::StatusOr<kernels::Backend*> BackendOf(const std::string& tensor) const;
  // Makes BackendOf(tensor) the target of the loads that follow (an architecture calls it once
  // per decoder layer or top-level module) and returns it. Every tensor loaded afterwards must
  // be placed on the target too, else UNIMPLEMENTED naming the tensor and both devices.
  absl::StatusOr<kernels::Backend*> TargetFor(const std::string& tensor);
  // The tensor as stored ([d0, d1, ...] must equal `shape`), in the load dtype.
  absl::StatusOr<kernels::TensorView> Load(const std::string& name, std::vector<int64_t> shape);
  // A stored [rows, cols] matrix returned as [cols, rows] (GPT-2 Conv1D weights).
  absl::StatusOr<kernels::TensorView> LoadTransposed(const std::string& name, int64_t rows, int64_t cols);

  // How a Linear's weight is stored: nn.Linear [out, in], or GPT-2's Conv1D [in, out] (which
  // transformers transposes before quantizing, so kiln does too).
  enum class LinearLayout : uint8_t { kLinear, kConv1D };
  // The Linear at `module_prefix` (e.g. "model.layers.0.self_attn.q_proj"): its ".weight" as
  // [out, in] and, when `bias`, its ".bias" [out]. Quantized on load when LoadOptions asks for
  // bitsandbytes and the module is not skipped; read as stored when the checkpoint is
  // pre-quantized (LoadOptions::prequantized) and the module is quantized there. A module
  // holding quantized tensors the config does not describe is INVALID_ARGUMENT naming it.
  // Same errors as Load otherwise.
  absl::StatusOr<LinearWeights> LoadLinear(const std::string& module_prefix, int64_t out, int64_t in, bool bias,
                                           LinearLayout layout = LinearLayout::kLinear);
  // INVALID_ARGUMENT naming the first checkpoint tensor that was never loaded and that
  // `ignorable` does not accept.
  absl::Status CheckAllUsed(const std::function<bool(const std::string&)>& ignorable) const;

  std::vector<kernels::DeviceBuffer> TakeBuffers() { return std::move(buffers_); }
  size_t bytes() const;

 private:
  absl::StatusOr<std::vector<uint8_t>> ReadChecked(const std::string& name, const std::vector<int64_t>& shape,
                                                   kernels::DType* dtype);
  absl::StatusOr<kernels::TensorView> Upload(const std::string& name, std::vector<uint8_t> host,
                                             kernels::DType src, const std::vector<int64_t>& shape);
  // Copies `bytes` as-is into a new backend buffer of `dtype` and `shape` (quantized data).
  absl::StatusOr<kernels::TensorView> UploadRaw(const void* bytes, kernels::DType dtype,
                                                const std::vector<int64_t>& shape);
  void ReportProgress(const std::string& name, uint64_t checkpoint_bytes);
  // OK when no placement is given or `tensor` is placed on the current target.
  absl::Status CheckPlaced(const std::string& tensor) const;
  // The weight as fp32 values rounded through the load dtype, [out, in] whatever the layout.
  absl::StatusOr<std::vector<float>> ReadLinearWeight(const std::string& name, int64_t out, int64_t in,
                                                      LinearLayout layout, uint64_t* checkpoint_bytes);
  absl::StatusOr<kernels::QuantizedMatrix> QuantizeOnLoad(const std::string& module_prefix, int64_t out,
                                                          int64_t in, LinearLayout layout);
  bool IsPrequantized(const std::string& module_prefix) const;
  // A module of a pre-quantized checkpoint (LoadOptions::prequantized), read and validated by
  // engine/quant/prequant and uploaded as stored.
  absl::StatusOr<LinearWeights> LoadPrequantized(const std::string& module_prefix, int64_t out, int64_t in,
                                                 bool bias, LinearLayout layout);

  const Checkpoint& checkpoint_;
  kernels::Backend& backend_;
  kernels::Backend* target_;  // where uploads go: backend_ unless TargetFor moved it
  LoadOptions options_;
  std::set<std::string> used_;
  std::vector<kernels::DeviceBuffer> buffers_;
  int64_t tensors_done_ = 0;
  uint64_t bytes_done_ = 0;
};

}  // namespace kiln::engine
