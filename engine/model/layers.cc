#include "engine/model/layers.h"

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "engine/common/status_macros.h"

namespace kiln::engine {
namespace {

constexpr size_t kAlign = 64;
size_t AlignUp(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

}  // namespace

absl::Status Activations::Reserve(kernels::Backend& backend, const ModelDims& d, int64_t t,
                                  int64_t r, size_t workspace_bytes) {
  const int64_t qd = d.heads * d.head_dim, kd = d.kv_heads * d.head_dim;
  const int64_t per_token[] = {d.hidden, d.hidden, qd, kd, kd, qd, d.hidden, d.intermediate, d.intermediate};
  size_t need = AlignUp(workspace_bytes) + AlignUp(static_cast<size_t>(r * d.hidden) * 4) +
                AlignUp(static_cast<size_t>(r * d.vocab) * 4);
  for (int64_t n : per_token) need += AlignUp(static_cast<size_t>(t * n) * 4);
  if (need > capacity_) {
    buffer_.Reset();
    const size_t grown = std::max(need, capacity_ + capacity_ / 2);
    KILN_ASSIGN_OR_RETURN(buffer_, backend.Allocate(grown));
    capacity_ = grown;
  }
  char* p = static_cast<char*>(buffer_.data());
  const kernels::Device dev = buffer_.device();
  auto take = [&](std::initializer_list<int64_t> shape) {
    kernels::TensorView view(p, kernels::DType::kF32, shape, dev);
    p += AlignUp(view.bytes());
    return view;
  };
  hidden = take({t, d.hidden});
  normed = take({t, d.hidden});
  q = take({t, d.heads, d.head_dim});
  k = take({t, d.kv_heads, d.head_dim});
  v = take({t, d.kv_heads, d.head_dim});
  attn = take({t, d.heads, d.head_dim});
  proj = take({t, d.hidden});
  gate = take({t, d.intermediate});
  up = take({t, d.intermediate});
  rows = take({r, d.hidden});
  logits = take({r, d.vocab});
  workspace = kernels::TensorView(p, kernels::DType::kU8, {static_cast<int64_t>(workspace_bytes)}, dev);
  return absl::OkStatus();
}

absl::Status TransferActivations(kernels::Backend& from, kernels::TensorView src, kernels::Backend& to,
                                 kernels::TensorView dst, std::vector<uint8_t>& staging) {
  if (src.bytes() != dst.bytes() || src.dtype() != dst.dtype()) {
    return absl::InvalidArgumentError(absl::StrCat("transfer: src is ", src.ShapeString(), ", dst ", dst.ShapeString()));
  }
  // CPU device memory is host memory: one copy out of `from` straight into `dst` (or into it
  // from `src`) is enough when either side is a CPU backend.
  if (to.kind() == kernels::BackendKind::kCpu) return from.CopyToHost(src, dst.data());
  if (from.kind() == kernels::BackendKind::kCpu) return to.CopyFromHost(src.data(), dst);
  if (staging.size() < src.bytes()) staging.resize(src.bytes());
  KILN_RETURN_IF_ERROR(from.CopyToHost(src, staging.data()));
  return to.CopyFromHost(staging.data(), dst);
}

DecoderModelBase::DecoderModelBase(const ModelConfig& config, kernels::DType dtype, kernels::Backend& backend,
                                   int64_t kv_heads)
    : config_(config),
      dims_{config.hidden_size, config.num_attention_heads, kv_heads,
            config.head_dim,    config.intermediate_size,   config.vocab_size},
      dtype_(dtype),
      backend_(backend) {}

int DecoderModelBase::SlotFor(kernels::Backend* backend) {
  for (size_t i = 0; i < slots_.size(); ++i) {
    if (slots_[i]->backend == backend) return static_cast<int>(i);
  }
  slots_.push_back(std::make_unique<DeviceSlot>());
  slots_.back()->backend = backend;
  return static_cast<int>(slots_.size()) - 1;
}

absl::Status DecoderModelBase::MoveActivations(int from, int to,
                                               std::initializer_list<kernels::TensorView Activations::*> fields) {
  if (from == to) return absl::OkStatus();
  for (kernels::TensorView Activations::*field : fields) {
    KILN_RETURN_IF_ERROR(TransferActivations(backend(from), act(from).*field, backend(to), act(to).*field, staging_));
  }
  return absl::OkStatus();
}

std::vector<DeviceBytes> DecoderModelBase::weight_bytes_by_device() const {
  std::vector<DeviceBytes> out;
  for (const kernels::DeviceBuffer& b : buffers_) {
    if (std::none_of(out.begin(), out.end(), [&](const DeviceBytes& d) { return d.device == b.device(); })) {
      out.push_back({b.device(), 0});
    }
  }
  for (const kernels::DeviceBuffer& b : buffers_) {
    for (DeviceBytes& d : out) {
      if (d.device == b.device()) {
        d.bytes += b.bytes();
        break;
      }
    }
  }
  return out;
}

absl::StatusOr<std::unique_ptr<KvCache>> DecoderModelBase::CreateKvCache(const KvCacheOptions& options) {
  if (static_cast<int64_t>(layer_slot_.size()) != config_.num_hidden_layers) {
    return KvCache::Create(backend_, config_.num_hidden_layers, dims_.kv_heads, dims_.head_dim, options);
  }
  std::vector<kernels::Backend*> layer_backends;
  for (int slot : layer_slot_) layer_backends.push_back(&backend(slot));
  return KvCache::Create(layer_backends, dims_.kv_heads, dims_.head_dim, options);
}

size_t LinearWorkspace(const kernels::Backend& backend, const LinearWeights& lin, int64_t m) {
  if (lin.quant) return backend.QuantMatmulWorkspaceBytes(m, *lin.quant);
  return backend.MatmulWorkspaceBytes(m, lin.out(), lin.in(), lin.w.dtype());
}

absl::Status ApplyLinear(kernels::Backend& backend, const LinearWeights& lin, const LoraBatch& lora,
                         kernels::TensorView x, kernels::TensorView out, kernels::TensorView workspace) {
  if (lin.quant) {
    KILN_RETURN_IF_ERROR(backend.QuantMatmul(x, *lin.quant, lin.b, out, workspace));
  } else {
    KILN_RETURN_IF_ERROR(backend.Matmul(x, lin.w, lin.b, out, workspace));
  }
  if (lora.empty() || lin.lora_site < 0) return absl::OkStatus();
  return ApplyLoraSite(backend, lora, static_cast<size_t>(lin.lora_site), x, out, workspace);
}

absl::StatusOr<LinearWeights> SliceLinearRows(const LinearWeights& lin, int64_t begin, int64_t count,
                                              const std::string& name) {
  LinearWeights part;
  if (!lin.b.empty()) part.b = lin.b.Rows(begin, count);
  if (!lin.quant) {
    part.w = lin.w.Rows(begin, count);
    return part;
  }
  kernels::QuantizedMatrix q = *lin.quant;
  q.rows = count;
  const int64_t first = begin * q.cols, numel = count * q.cols;
  switch (q.format) {
    case kernels::QuantFormat::kInt8:
      q.int8.weight = q.int8.weight.Rows(begin, count);
      q.int8.scb = q.int8.scb.Rows(begin, count);
      break;
    case kernels::QuantFormat::kBnb4: {
      const int64_t bs = q.bnb4.blocksize;
      const bool last = begin + count == lin.quant->rows;  // a tail may end in a partial block/byte
      if (first % bs != 0 || first % 2 != 0 || (!last && (numel % bs != 0 || numel % 2 != 0))) {
        return absl::UnimplementedError(absl::StrCat(
            name, ": a fused 4-bit weight [", lin.quant->rows, ", ", q.cols, "] cannot be split at row ", begin,
            " (the split must fall on a quantization block of ", bs, " values)"));
      }
      q.bnb4.packed = q.bnb4.packed.Rows(first / 2, (numel + 1) / 2);
      q.bnb4.absmax = q.bnb4.absmax.Rows(first / bs, (numel + bs - 1) / bs);
      break;
    }
    case kernels::QuantFormat::kGptq:
    case kernels::QuantFormat::kAwq:
      return absl::UnimplementedError(absl::StrCat(name, ": splitting a fused ",
                                                   kernels::QuantFormatName(q.format), " weight is not supported"));
  }
  part.quant = q;
  return part;
}

absl::Status SelfAttention(kernels::Backend& backend, const AttentionLayer& layer,
                           const RotaryEmbedding* rope, const BatchPlan& plan,
                           const kernels::PagedKvLayer& cache, Activations& act,
                           kernels::TensorView x, kernels::TensorView out) {
  const int64_t t = x.dim(0);
  const auto flat = [t](const kernels::TensorView& v) { return v.Reshape({t, v.row_numel()}); };
  KILN_RETURN_IF_ERROR(ApplyLinear(backend, layer.q, plan.lora, x, flat(act.q), act.workspace));
  KILN_RETURN_IF_ERROR(ApplyLinear(backend, layer.k, plan.lora, x, flat(act.k), act.workspace));
  KILN_RETURN_IF_ERROR(ApplyLinear(backend, layer.v, plan.lora, x, flat(act.v), act.workspace));
  if (rope != nullptr) {
    KILN_RETURN_IF_ERROR(rope->Apply(backend, plan, act.q));
    KILN_RETURN_IF_ERROR(rope->Apply(backend, plan, act.k));
  }
  KILN_RETURN_IF_ERROR(backend.KvWrite(act.k, act.v, plan.slots, cache));
  KILN_RETURN_IF_ERROR(backend.PagedAttention(act.q, cache, plan.Attention(layer.sliding_window, layer.scale),
                                              act.attn, act.workspace));
  return ApplyLinear(backend, layer.o, plan.lora, flat(act.attn), out, act.workspace);
}

absl::Status GatedMlp(kernels::Backend& backend, const GatedMlpLayer& layer, const LoraBatch& lora,
                      Activations& act,
                      kernels::TensorView x, kernels::TensorView out) {
  KILN_RETURN_IF_ERROR(ApplyLinear(backend, layer.gate, lora, x, act.gate, act.workspace));
  KILN_RETURN_IF_ERROR(ApplyLinear(backend, layer.up, lora, x, act.up, act.workspace));
  KILN_RETURN_IF_ERROR(backend.SiluMul(act.gate, act.up, act.up));
  return ApplyLinear(backend, layer.down, lora, act.up, out, act.workspace);
}

absl::Status GeluMlp(kernels::Backend& backend, const GeluMlpLayer& layer, const LoraBatch& lora,
                     Activations& act,
                     kernels::TensorView x, kernels::TensorView out) {
  KILN_RETURN_IF_ERROR(ApplyLinear(backend, layer.fc, lora, x, act.gate, act.workspace));
  KILN_RETURN_IF_ERROR(backend.Gelu(act.gate, layer.kind, act.up));
  return ApplyLinear(backend, layer.proj, lora, act.up, out, act.workspace);
}

absl::Status ComputeLogits(kernels::Backend& backend, kernels::TensorView lm_head, const BatchPlan& plan,
                           Activations& act, kernels::TensorView final_hidden, ForwardOutput* out) {
  KILN_RETURN_IF_ERROR(backend.GatherRows(final_hidden, plan.logit_rows, act.rows));
  KILN_RETURN_IF_ERROR(backend.Matmul(act.rows, lm_head, kernels::TensorView(), act.logits, act.workspace));
  out->vocab_size = lm_head.dim(0);
  out->row_begin = plan.row_begin;
  out->logits.resize(static_cast<size_t>(act.logits.numel()));
  return backend.CopyToHost(act.logits, out->logits.data());
}

absl::Status CheckCacheShape(const KvCache& cache, int64_t layers, const ModelDims& dims) {
  if (cache.num_layers() != layers || cache.num_kv_heads() != dims.kv_heads || cache.head_dim() != dims.head_dim) {
    return absl::InvalidArgumentError(absl::StrCat("forward: kv cache has ", cache.num_layers(), " layers x ",
                                                   cache.num_kv_heads(), " kv heads x ", cache.head_dim(),
                                                   " head_dim; the model needs ", layers, " x ", dims.kv_heads,
                                                   " x ", dims.head_dim));
  }
  return absl::OkStatus();
}

}  // namespace kiln::engine
