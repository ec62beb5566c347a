#include "engine/model/weights.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/common/status_macros.h"
#include "engine/quant/bnb4.h"
#include "engine/quant/bnb_int8.h"
#include "engine/quant/prequant/prequant_reader.h"

namespace kiln::engine {
namespace {

std::string ShapeText(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

float ToF32(const uint8_t* p, kernels::DType t) {
  if (t == kernels::DType::kF32) {
    float f;
    std::memcpy(&f, p, 4);
    return f;
  }
  uint16_t h;
  std::memcpy(&h, p, 2);
  return t == kernels::DType::kF16 ? kernels::HalfToFloat(h) : kernels::BFloat16ToFloat(h);
}

void FromF32(float f, kernels::DType t, uint8_t* p) {
  if (t == kernels::DType::kF32) {
    std::memcpy(p, &f, 4);
    return;
  }
  const uint16_t h = t == kernels::DType::kF16 ? kernels::FloatToHalf(f) : kernels::FloatToBFloat16(f);
  std::memcpy(p, &h, 2);
}

// "cpu:N" for logical CPU device N (DeviceName says "cpu" for every CPU device).
std::string DeviceLabel(const kernels::Device& d) {
  if (d.kind == kernels::DeviceKind::kCpu && d.index != 0) return absl::StrCat("cpu:", d.index);
  return kernels::DeviceName(d);
}

}  // namespace

WeightLoader::WeightLoader(const Checkpoint& checkpoint, kernels::Backend& backend, const LoadOptions& options)
    : checkpoint_(checkpoint), backend_(backend), target_(&backend), options_(options) {}

absl::StatusOr<kernels::Backend*> WeightLoader::BackendOf(const std::string& tensor) const {
  if (!options_.tensor_backend) return &backend_;
  kernels::Backend* b = options_.tensor_backend(tensor);
  if (b == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("tensor \"", tensor, "\" has no device in the placement"));
  }
  return b;
}

absl::StatusOr<kernels::Backend*> WeightLoader::TargetFor(const std::string& tensor) {
  KILN_ASSIGN_OR_RETURN(target_, BackendOf(tensor));
  return target_;
}

absl::Status WeightLoader::CheckPlaced(const std::string& tensor) const {
  if (!options_.tensor_backend) return absl::OkStatus();
  KILN_ASSIGN_OR_RETURN(kernels::Backend * b, BackendOf(tensor));
  if (b == target_) return absl::OkStatus();
  return absl::UnimplementedError(absl::StrCat(
      "tensor \"", tensor, "\" is placed on ", DeviceLabel(b->device()), " but the layer or module using it runs on ",
      DeviceLabel(target_->device()), "; a decoder layer or module cannot be split across devices"));
}

absl::StatusOr<std::vector<uint8_t>> WeightLoader::ReadChecked(const std::string& name,
                                                               const std::vector<int64_t>& shape,
                                                               kernels::DType* dtype) {
  auto ref = checkpoint_.Require(name);
  if (!ref.ok()) return ref.status();
  const TensorInfo& info = *ref->info;
  if (info.shape != shape) {
    return absl::InvalidArgumentError(absl::StrCat("tensor \"", name, "\" has shape ", ShapeText(info.shape),
                                                   ", expected ", ShapeText(shape)));
  }
  if (info.dtype != kernels::DType::kF32 && info.dtype != kernels::DType::kF16 && info.dtype != kernels::DType::kBF16) {
    return absl::InvalidArgumentError(absl::StrCat("tensor \"", name, "\" has dtype ", std::string(kernels::DTypeName(info.dtype)),
                                                   ", expected F32, F16 or BF16"));
  }
  std::vector<uint8_t> host(info.num_bytes());
  if (absl::Status s = ref->shard->Read(info, host); !s.ok()) return s;
  *dtype = info.dtype;
  used_.insert(name);
  return host;
}

absl::StatusOr<kernels::TensorView> WeightLoader::Upload(const std::string& name, std::vector<uint8_t> host,
                                                         kernels::DType src, const std::vector<int64_t>& shape) {
  const kernels::DType dst = options_.dtype;
  int64_t numel = 1;
  for (int64_t d : shape) numel *= d;
  kernels::Backend& backend = *target_;
  if (src != dst && backend.kind() != kernels::BackendKind::kCpu) {
    // Convert on the host so device backends only ever receive bytes in the load dtype.
    std::vector<uint8_t> converted(static_cast<size_t>(numel) * kernels::DTypeSize(dst));
    for (int64_t i = 0; i < numel; ++i) {
      FromF32(ToF32(host.data() + i * static_cast<int64_t>(kernels::DTypeSize(src)), src), dst,
              converted.data() + i * static_cast<int64_t>(kernels::DTypeSize(dst)));
    }
    host = std::move(converted);
    src = dst;
  }
  auto buf = backend.Allocate(static_cast<size_t>(numel) * kernels::DTypeSize(dst));
  if (!buf.ok()) return buf.status();
  kernels::TensorView view(buf->data(), dst, std::span<const int64_t>(shape), buf->device());
  absl::Status s = src == dst ? backend.CopyFromHost(host.data(), view)
                              : backend.Convert(kernels::TensorView(host.data(), src, std::span<const int64_t>(shape)), view);
  if (!s.ok()) return s;
  buffers_.push_back(std::move(*buf));
  ReportProgress(name, host.size());
  return view;
}

void WeightLoader::ReportProgress(const std::string& name, uint64_t checkpoint_bytes) {
  ++tensors_done_;
  bytes_done_ += checkpoint_bytes;
  if (options_.progress) {
    options_.progress({name, tensors_done_, static_cast<int64_t>(checkpoint_.num_tensors()), bytes_done_,
                       checkpoint_.total_tensor_bytes()});
  }
}

absl::StatusOr<kernels::TensorView> WeightLoader::UploadRaw(const void* bytes, kernels::DType dtype,
                                                            const std::vector<int64_t>& shape) {
  int64_t numel = 1;
  for (int64_t d : shape) numel *= d;
  KILN_ASSIGN_OR_RETURN(kernels::DeviceBuffer buf, target_->Allocate(static_cast<size_t>(numel) * kernels::DTypeSize(dtype)));
  kernels::TensorView view(buf.data(), dtype, std::span<const int64_t>(shape), buf.device());
  KILN_RETURN_IF_ERROR(target_->CopyFromHost(bytes, view));
  buffers_.push_back(std::move(buf));
  return view;
}

absl::StatusOr<kernels::TensorView> WeightLoader::Load(const std::string& name, std::vector<int64_t> shape) {
  KILN_RETURN_IF_ERROR(CheckPlaced(name));
  kernels::DType src;
  auto host = ReadChecked(name, shape, &src);
  if (!host.ok()) return host.status();
  return Upload(name, std::move(*host), src, shape);
}

absl::StatusOr<kernels::TensorView> WeightLoader::LoadTransposed(const std::string& name, int64_t rows, int64_t cols) {
  KILN_RETURN_IF_ERROR(CheckPlaced(name));
  kernels::DType src;
  auto host = ReadChecked(name, {rows, cols}, &src);
  if (!host.ok()) return host.status();
  const size_t es = kernels::DTypeSize(src);
  std::vector<uint8_t> t(host->size());
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      std::memcpy(&t[static_cast<size_t>(c * rows + r) * es], &(*host)[static_cast<size_t>(r * cols + c) * es], es);
    }
  }
  return Upload(name, std::move(t), src, {cols, rows});
}

absl::StatusOr<LinearWeights> WeightLoader::LoadLinear(const std::string& module_prefix, int64_t out, int64_t in,
                                                       bool bias, LinearLayout layout) {
  KILN_RETURN_IF_ERROR(CheckPlaced(module_prefix + ".weight"));
  LinearWeights lin;
  if (options_.prequantized.has_value() && options_.prequantized->IsQuantized(module_prefix)) {
    return LoadPrequantized(module_prefix, out, in, bias, layout);
  }
  if (IsPrequantized(module_prefix)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "\"", module_prefix, "\" is stored quantized but ",
        options_.prequantized.has_value() ? "the checkpoint's quantization config excludes it"
                                          : "config.json has no quantization_config (nor a quantize_config.json)"));
  }
  if (options_.bitsandbytes.has_value() && options_.bitsandbytes->ShouldQuantize(module_prefix)) {
    KILN_ASSIGN_OR_RETURN(lin.quant, QuantizeOnLoad(module_prefix, out, in, layout));
  } else if (layout == LinearLayout::kConv1D) {
    KILN_ASSIGN_OR_RETURN(lin.w, LoadTransposed(module_prefix + ".weight", in, out));
  } else {
    KILN_ASSIGN_OR_RETURN(lin.w, Load(module_prefix + ".weight", {out, in}));
  }
  if (bias) {
    KILN_ASSIGN_OR_RETURN(lin.b, Load(module_prefix + ".bias", {out}));
  }
  return lin;
}

absl::StatusOr<LinearWeights> WeightLoader::LoadPrequantized(const std::string& module_prefix, int64_t out,
                                                             int64_t in, bool bias, LinearLayout layout) {
  if (layout == LinearLayout::kConv1D) {
    return absl::UnimplementedError(absl::StrCat("\"", module_prefix,
                                                 "\": pre-quantized GPT-2 Conv1D weights are not supported"));
  }
  quant::PrequantReadOptions read_options;
  read_options.compute_dtype = options_.dtype;
  KILN_ASSIGN_OR_RETURN(quant::PrequantLinear p, quant::ReadPrequantizedLinear(checkpoint_, *options_.prequantized,
                                                                               module_prefix, out, in, read_options));
  uint64_t bytes = 0;
  std::vector<kernels::TensorView> views;
  for (const quant::HostTensor& t : p.tensors) {
    KILN_ASSIGN_OR_RETURN(kernels::TensorView view, UploadRaw(t.bytes.data(), t.dtype, t.shape));
    views.push_back(view);
    bytes += t.bytes.size();
  }
  LinearWeights lin;
  KILN_ASSIGN_OR_RETURN(lin.quant, p.Rebind(views));
  KILN_RETURN_IF_ERROR(kernels::ValidateQuantizedMatrix(*lin.quant, module_prefix));
  for (const std::string& name : p.consumed) used_.insert(name);
  if (bias != p.bias.has_value()) {
    return absl::InvalidArgumentError(absl::StrCat("\"", module_prefix, "\": ",
                                                   bias ? "the model config expects a bias, the checkpoint has none"
                                                        : "the checkpoint has a bias the model config does not use"));
  }
  if (bias) {
    KILN_ASSIGN_OR_RETURN(lin.b, Upload(module_prefix + ".bias", std::move(p.bias->bytes), p.bias->dtype, {out}));
    used_.insert(module_prefix + ".bias");
  }
  ReportProgress(module_prefix + ".weight", bytes);
  return lin;
}

bool WeightLoader::IsPrequantized(const std::string& module_prefix) const {
  // The tensors each serialized format adds next to (or instead of) a float ".weight".
  for (const char* suffix : {".SCB", ".weight.absmax", ".weight.quant_map", ".qweight", ".qzeros", ".scales"}) {
    if (Has(module_prefix + suffix)) return true;
  }
  auto ref = checkpoint_.Find(module_prefix + ".weight");
  return ref.has_value() && !kernels::IsFloatingPoint(ref->info->dtype);
}

absl::StatusOr<std::vector<float>> WeightLoader::ReadLinearWeight(const std::string& name, int64_t out, int64_t in,
                                                                  LinearLayout layout, uint64_t* checkpoint_bytes) {
  kernels::DType src;
  const std::vector<int64_t> stored = layout == LinearLayout::kConv1D ? std::vector<int64_t>{in, out}
                                                                       : std::vector<int64_t>{out, in};
  KILN_ASSIGN_OR_RETURN(std::vector<uint8_t> host, ReadChecked(name, stored, &src));
  *checkpoint_bytes = host.size();
  const size_t es = kernels::DTypeSize(src);
  std::vector<float> w(static_cast<size_t>(out * in));
  for (int64_t r = 0; r < out; ++r) {
    for (int64_t c = 0; c < in; ++c) {
      // transformers casts the checkpoint to the load dtype before the quantizer sees it.
      const int64_t at = layout == LinearLayout::kConv1D ? c * out + r : r * in + c;
      float v = ToF32(host.data() + static_cast<size_t>(at) * es, src);
      uint8_t tmp[4];
      FromF32(v, options_.dtype, tmp);
      w[static_cast<size_t>(r * in + c)] = ToF32(tmp, options_.dtype);
    }
  }
  return w;
}

absl::StatusOr<kernels::QuantizedMatrix> WeightLoader::QuantizeOnLoad(const std::string& module_prefix, int64_t out,
                                                                      int64_t in, LinearLayout layout) {
  const quant::BnbQuantConfig& cfg = *options_.bitsandbytes;
  const std::string name = module_prefix + ".weight";
  uint64_t checkpoint_bytes = 0;
  KILN_ASSIGN_OR_RETURN(std::vector<float> w, ReadLinearWeight(name, out, in, layout, &checkpoint_bytes));
  kernels::QuantizedMatrix q;
  q.rows = out;
  q.cols = in;
  switch (cfg.mode) {
    case quant::BnbMode::k4Bit: {
      KILN_ASSIGN_OR_RETURN(quant::Packed4bit packed, quant::Quantize4bit(w, cfg.quant_type, cfg.blocksize));
      if (cfg.double_quant) {
        // The forward uses the absmax the double-quantized state dequantizes to, not the
        // exact one (bitsandbytes' gemm_4bit: dequantize_blockwise(codes) + offset).
        packed.absmax = quant::DequantizeAbsmax(quant::DoubleQuantize(packed.absmax));
      }
      q.format = kernels::QuantFormat::kBnb4;
      q.compute_dtype = cfg.compute_dtype;
      q.bnb4.blocksize = cfg.blocksize;
      const std::span<const float> code = quant::Code4bit(cfg.quant_type);
      std::copy(code.begin(), code.end(), q.bnb4.code.begin());
      KILN_ASSIGN_OR_RETURN(q.bnb4.packed, UploadRaw(packed.packed.data(), kernels::DType::kU8,
                                                     {static_cast<int64_t>(packed.packed.size())}));
      KILN_ASSIGN_OR_RETURN(q.bnb4.absmax, UploadRaw(packed.absmax.data(), kernels::DType::kF32,
                                                     {static_cast<int64_t>(packed.absmax.size())}));
      break;
    }
    case quant::BnbMode::k8Bit: {
      KILN_ASSIGN_OR_RETURN(quant::Int8Quantized q8, quant::QuantizeInt8(w, out, in));
      q.format = kernels::QuantFormat::kInt8;
      // LLM.int8 computes in the activations' dtype (the model's load dtype).
      q.compute_dtype = options_.dtype;
      q.int8.threshold = cfg.int8_threshold;
      KILN_ASSIGN_OR_RETURN(q.int8.weight, UploadRaw(q8.cb.data(), kernels::DType::kI8, {out, in}));
      KILN_ASSIGN_OR_RETURN(q.int8.scb, UploadRaw(q8.scb.data(), kernels::DType::kF32, {out}));
      break;
    }
  }
  KILN_RETURN_IF_ERROR(kernels::ValidateQuantizedMatrix(q, module_prefix));
  ReportProgress(name, checkpoint_bytes);
  return q;
}

absl::Status WeightLoader::CheckAllUsed(const std::function<bool(const std::string&)>& ignorable) const {
  for (const std::string& name : checkpoint_.TensorNames()) {
    if (used_.count(name) == 0 && !ignorable(name)) {
      return absl::InvalidArgumentError(absl::StrCat("checkpoint has unexpected tensor \"", name,
                                                     "\" (not part of this architecture and config)"));
    }
  }
  return absl::OkStatus();
}

size_t WeightLoader::bytes() const {
  size_t total = 0;
  for (const kernels::DeviceBuffer& b : buffers_) total += b.bytes();
  return total;
}

}  // namespace kiln::engine
