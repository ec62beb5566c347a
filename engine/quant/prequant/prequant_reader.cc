#include "engine/quant/prequant/prequant_reader.h"

#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/common/status_macros.h"
#include "engine/quant/prequant/prequant_internal.h"

namespace kiln::engine::quant {

using kernels::DType;
using kernels::QuantFormat;
using kernels::TensorView;

namespace prequant_internal {

std::string ShapeString(const std::vector<int64_t>& shape, DType dtype) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "] ", std::string(kernels::DTypeName(dtype)));
}

absl::StatusOr<TensorRef> RequireTensor(const Checkpoint& ckpt, const std::string& name,
                                        std::initializer_list<DType> dtypes, const std::vector<int64_t>& shape,
                                        const std::string& why) {
  KILN_ASSIGN_OR_RETURN(TensorRef ref, ckpt.Require(name));
  bool dtype_ok = false;
  for (DType d : dtypes) dtype_ok = dtype_ok || ref.info->dtype == d;
  if (!dtype_ok || ref.info->shape != shape) {
    std::string expected = ShapeString(shape, *dtypes.begin());
    for (auto it = dtypes.begin() + 1; it != dtypes.end(); ++it) {
      absl::StrAppend(&expected, " or ", std::string(kernels::DTypeName(*it)));
    }
    return absl::InvalidArgumentError(absl::StrCat(name, ": shape ", ShapeString(ref.info->shape, ref.info->dtype),
                                                   ", expected ", expected, why.empty() ? "" : " (", why,
                                                   why.empty() ? "" : ")"));
  }
  return ref;
}

absl::StatusOr<HostTensor> ReadHost(const TensorRef& ref, QuantRole role) {
  HostTensor t;
  t.role = role;
  t.dtype = ref.info->dtype;
  t.shape = ref.info->shape;
  t.bytes.resize(ref.info->num_bytes());
  KILN_RETURN_IF_ERROR(ref.shard->Read(*ref.info, t.bytes));
  return t;
}

absl::Status CheckFinite(const std::vector<float>& values, const std::string& name) {
  for (size_t i = 0; i < values.size(); ++i) {
    if (!std::isfinite(values[i])) {
      return absl::InvalidArgumentError(absl::StrCat(name, "[", i, "] = ", values[i], " is not finite"));
    }
  }
  return absl::OkStatus();
}

}  // namespace prequant_internal

namespace {

using prequant_internal::CheckFinite;
using prequant_internal::ReadHost;
using prequant_internal::RequireTensor;

std::vector<float> ToFloats(const HostTensor& t) {
  const size_t n = t.bytes.size() / kernels::DTypeSize(t.dtype);
  std::vector<float> out(n);
  for (size_t i = 0; i < n; ++i) {
    uint16_t h;
    switch (t.dtype) {
      case DType::kF16:
        std::memcpy(&h, t.bytes.data() + 2 * i, 2);
        out[i] = kernels::HalfToFloat(h);
        break;
      case DType::kBF16:
        std::memcpy(&h, t.bytes.data() + 2 * i, 2);
        out[i] = kernels::BFloat16ToFloat(h);
        break;
      case DType::kF32: std::memcpy(&out[i], t.bytes.data() + 4 * i, 4); break;
      case DType::kF64:
      case DType::kI8:
      case DType::kU8:
      case DType::kI16:
      case DType::kI32:
      case DType::kI64:
      case DType::kBool: out[i] = 0.0f; break;  // callers pass float tensors only
    }
  }
  return out;
}

// Scales: F16 kept as stored (the reference multiplies in fp16); BF16 widened to F32 (exact),
// so the kernels see only the contract's F16/F32. All must be finite (A15).
absl::StatusOr<HostTensor> ReadScales(const TensorRef& ref, QuantRole role, const std::string& name) {
  KILN_ASSIGN_OR_RETURN(HostTensor t, ReadHost(ref, role));
  std::vector<float> values = ToFloats(t);
  KILN_RETURN_IF_ERROR(CheckFinite(values, name));
  if (t.dtype == DType::kBF16) {
    t.dtype = DType::kF32;
    t.bytes.resize(values.size() * 4);
    std::memcpy(t.bytes.data(), values.data(), t.bytes.size());
  }
  return t;
}

absl::Status ReadBias(const Checkpoint& ckpt, const std::string& module, int64_t rows, PrequantLinear& out) {
  const std::string name = module + ".bias";
  if (!ckpt.Find(name).has_value()) return absl::OkStatus();
  KILN_ASSIGN_OR_RETURN(TensorRef ref, RequireTensor(ckpt, name, {DType::kF32, DType::kF16, DType::kBF16}, {rows}));
  PrequantLinear::Bias b{ref.info->dtype, std::vector<uint8_t>(ref.info->num_bytes())};
  KILN_RETURN_IF_ERROR(ref.shard->Read(*ref.info, b.bytes));
  out.bias = std::move(b);
  out.consumed.push_back(name);
  return absl::OkStatus();
}

absl::Status ReadGptq(const Checkpoint& ckpt, const GptqSettings& g, const std::string& P, int64_t rows, int64_t cols,
                      PrequantLinear& out) {
  const int64_t pack = 32 / g.bits;
  if (cols % pack != 0 || rows % pack != 0) {
    return absl::InvalidArgumentError(absl::StrCat(P, ": GPTQ ", g.bits, "-bit needs in_features (", cols,
                                                   ") and out_features (", rows, ") divisible by ", pack));
  }
  const int64_t group_size = g.group_size == -1 ? cols : g.group_size;
  const int64_t groups = (cols + group_size - 1) / group_size;
  const std::string why = absl::StrCat(groups, " groups = ceil(", cols, " / group_size ", group_size, ")");
  KILN_ASSIGN_OR_RETURN(TensorRef qweight, RequireTensor(ckpt, P + ".qweight", {DType::kI32}, {cols / pack, rows},
                                                         absl::StrCat(g.bits, "-bit packed along the input dim")));
  KILN_ASSIGN_OR_RETURN(TensorRef qzeros,
                        RequireTensor(ckpt, P + ".qzeros", {DType::kI32}, {groups, rows / pack}, why));
  KILN_ASSIGN_OR_RETURN(TensorRef scales, RequireTensor(ckpt, P + ".scales", {DType::kF16, DType::kF32, DType::kBF16},
                                                        {groups, rows}, why));
  std::optional<TensorRef> g_idx_ref;
  if (ckpt.Find(P + ".g_idx").has_value()) {
    KILN_ASSIGN_OR_RETURN(g_idx_ref, RequireTensor(ckpt, P + ".g_idx", {DType::kI32}, {cols}));
  } else if (g.desc_act) {
    return absl::InvalidArgumentError(
        absl::StrCat("checkpoint is missing tensor \"", P, ".g_idx\" (required with desc_act = true)"));
  }
  HostTensor g_idx;
  if (g_idx_ref.has_value()) {
    KILN_ASSIGN_OR_RETURN(g_idx, ReadHost(*g_idx_ref, QuantRole::kGptqGIdx));
  } else {
    g_idx = HostTensor{QuantRole::kGptqGIdx, DType::kI32, {cols}, std::vector<uint8_t>(static_cast<size_t>(cols) * 4)};
    for (int64_t k = 0; k < cols; ++k) {
      const auto v = static_cast<int32_t>(k / group_size);
      std::memcpy(g_idx.bytes.data() + 4 * k, &v, 4);
    }
  }
  std::vector<int32_t> idx(static_cast<size_t>(cols));
  std::memcpy(idx.data(), g_idx.bytes.data(), g_idx.bytes.size());
  KILN_RETURN_IF_ERROR(kernels::ValidateGptqIndex(idx, groups, P));

  KILN_ASSIGN_OR_RETURN(HostTensor qw, ReadHost(qweight, QuantRole::kGptqQweight));
  KILN_ASSIGN_OR_RETURN(HostTensor qz, ReadHost(qzeros, QuantRole::kGptqQzeros));
  KILN_ASSIGN_OR_RETURN(HostTensor sc, ReadScales(scales, QuantRole::kGptqScales, P + ".scales"));
  out.tensors.push_back(std::move(qw));
  out.tensors.push_back(std::move(qz));
  out.tensors.push_back(std::move(sc));
  out.tensors.push_back(std::move(g_idx));
  out.matrix.format = QuantFormat::kGptq;
  out.matrix.gptq.bits = g.bits;
  out.matrix.gptq.zero_offset = g.zero_offset;
  out.matrix.gptq.groups = groups;
  out.consumed.insert(out.consumed.end(), {P + ".qweight", P + ".qzeros", P + ".scales"});
  if (g_idx_ref.has_value()) out.consumed.push_back(P + ".g_idx");
  return absl::OkStatus();
}

absl::Status ReadAwq(const Checkpoint& ckpt, const AwqSettings& a, const std::string& P, int64_t rows, int64_t cols,
                     PrequantLinear& out) {
  if (rows % 8 != 0 || cols % a.group_size != 0) {
    return absl::InvalidArgumentError(absl::StrCat(P, ": AWQ needs out_features (", rows,
                                                   ") divisible by 8 and in_features (", cols,
                                                   ") divisible by group_size ", a.group_size));
  }
  const int64_t groups = cols / a.group_size;
  const std::string why = absl::StrCat(groups, " groups = ", cols, " / group_size ", a.group_size);
  KILN_ASSIGN_OR_RETURN(TensorRef qweight, RequireTensor(ckpt, P + ".qweight", {DType::kI32}, {cols, rows / 8},
                                                         "4-bit packed along the output dim"));
  KILN_ASSIGN_OR_RETURN(TensorRef qzeros, RequireTensor(ckpt, P + ".qzeros", {DType::kI32}, {groups, rows / 8}, why));
  KILN_ASSIGN_OR_RETURN(TensorRef scales, RequireTensor(ckpt, P + ".scales", {DType::kF16, DType::kF32, DType::kBF16},
                                                        {groups, rows}, why));
  KILN_ASSIGN_OR_RETURN(HostTensor qw, ReadHost(qweight, QuantRole::kAwqQweight));
  KILN_ASSIGN_OR_RETURN(HostTensor qz, ReadHost(qzeros, QuantRole::kAwqQzeros));
  KILN_ASSIGN_OR_RETURN(HostTensor sc, ReadScales(scales, QuantRole::kAwqScales, P + ".scales"));
  out.tensors.push_back(std::move(qw));
  out.tensors.push_back(std::move(qz));
  out.tensors.push_back(std::move(sc));
  out.matrix.format = QuantFormat::kAwq;
  out.matrix.awq.group_size = a.group_size;
  out.consumed.insert(out.consumed.end(), {P + ".qweight", P + ".qzeros", P + ".scales"});
  return absl::OkStatus();
}

absl::Status ReadInt8(const Checkpoint& ckpt, const BnbQuantConfig& bnb, const std::string& P, int64_t rows,
                      int64_t cols, PrequantLinear& out) {
  KILN_ASSIGN_OR_RETURN(TensorRef weight, RequireTensor(ckpt, P + ".weight", {DType::kI8}, {rows, cols}));
  KILN_ASSIGN_OR_RETURN(TensorRef scb, RequireTensor(ckpt, P + ".SCB", {DType::kF32}, {rows}, "one absmax per row"));
  if (std::optional<TensorRef> format = ckpt.Find(P + ".weight_format"); format.has_value()) {
    const TensorInfo& info = *format->info;
    if (info.num_elements != 1 || (info.dtype != DType::kU8 && info.dtype != DType::kI8 &&
                                   info.dtype != DType::kI32 && info.dtype != DType::kI64)) {
      return absl::InvalidArgumentError(absl::StrCat(P, ".weight_format: shape ",
                                                     prequant_internal::ShapeString(info.shape, info.dtype),
                                                     ", expected a U8 scalar"));
    }
    KILN_ASSIGN_OR_RETURN(HostTensor f, ReadHost(*format, QuantRole::kInt8Weight));
    int64_t value = 0;
    for (size_t i = f.bytes.size(); i-- > 0;) value = (value << 8) | f.bytes[i];  // little-endian
    if (value != 0) {
      return absl::UnimplementedError(absl::StrCat(P, ".weight_format = ", value,
                                                   " is not supported; supported: 0 (row-major)"));
    }
    out.consumed.push_back(P + ".weight_format");
  }
  KILN_ASSIGN_OR_RETURN(HostTensor w, ReadHost(weight, QuantRole::kInt8Weight));
  KILN_ASSIGN_OR_RETURN(HostTensor s, ReadHost(scb, QuantRole::kInt8Scb));
  KILN_RETURN_IF_ERROR(CheckFinite(ToFloats(s), P + ".SCB"));
  out.tensors.push_back(std::move(w));
  out.tensors.push_back(std::move(s));
  out.matrix.format = QuantFormat::kInt8;
  out.matrix.int8.threshold = bnb.int8_threshold;
  out.consumed.insert(out.consumed.end(), {P + ".weight", P + ".SCB"});
  return absl::OkStatus();
}

TensorView& ViewFor(kernels::QuantizedMatrix& m, QuantRole role) {
  switch (role) {
    case QuantRole::kBnb4Packed: return m.bnb4.packed;
    case QuantRole::kBnb4Absmax: return m.bnb4.absmax;
    case QuantRole::kInt8Weight: return m.int8.weight;
    case QuantRole::kInt8Scb: return m.int8.scb;
    case QuantRole::kGptqQweight: return m.gptq.qweight;
    case QuantRole::kGptqQzeros: return m.gptq.qzeros;
    case QuantRole::kGptqScales: return m.gptq.scales;
    case QuantRole::kGptqGIdx: return m.gptq.g_idx;
    case QuantRole::kAwqQweight: return m.awq.qweight;
    case QuantRole::kAwqQzeros: return m.awq.qzeros;
    case QuantRole::kAwqScales: return m.awq.scales;
  }
  return m.bnb4.packed;  // unreachable: every role is listed
}

}  // namespace

std::string QuantRoleName(QuantRole role) {
  switch (role) {
    case QuantRole::kBnb4Packed: return "bnb4.packed";
    case QuantRole::kBnb4Absmax: return "bnb4.absmax";
    case QuantRole::kInt8Weight: return "int8.weight";
    case QuantRole::kInt8Scb: return "int8.scb";
    case QuantRole::kGptqQweight: return "gptq.qweight";
    case QuantRole::kGptqQzeros: return "gptq.qzeros";
    case QuantRole::kGptqScales: return "gptq.scales";
    case QuantRole::kGptqGIdx: return "gptq.g_idx";
    case QuantRole::kAwqQweight: return "awq.qweight";
    case QuantRole::kAwqQzeros: return "awq.qzeros";
    case QuantRole::kAwqScales: return "awq.scales";
  }
  return "unknown";
}

TensorView HostTensor::View() const {
  return TensorView(const_cast<uint8_t*>(bytes.data()), dtype, std::span<const int64_t>(shape));
}

absl::StatusOr<kernels::QuantizedMatrix> PrequantLinear::Rebind(std::span<const TensorView> views) const {
  if (views.size() != tensors.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("Rebind: ", views.size(), " views for ", tensors.size(), " tensors"));
  }
  kernels::QuantizedMatrix m = matrix;
  for (size_t i = 0; i < views.size(); ++i) {
    const TensorView host = tensors[i].View();
    if (views[i].dtype() != host.dtype() || !kernels::SameShape(views[i], host)) {
      return absl::InvalidArgumentError(absl::StrCat("Rebind: ", QuantRoleName(tensors[i].role), " view ",
                                                     views[i].ShapeString(), ", expected ", host.ShapeString()));
    }
    ViewFor(m, tensors[i].role) = views[i];
  }
  return m;
}

absl::StatusOr<PrequantLinear> ReadPrequantizedLinear(const Checkpoint& checkpoint, const PrequantConfig& config,
                                                      const std::string& module, int64_t out, int64_t in,
                                                      const PrequantReadOptions& options) {
  if (out <= 0 || in <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(module, ": Linear shape [", out, ", ", in, "] is not positive"));
  }
  PrequantLinear result;
  result.matrix.rows = out;
  result.matrix.cols = in;
  result.matrix.compute_dtype = options.compute_dtype;
  switch (config.method) {
    case PrequantMethod::kBitsAndBytes:
      switch (config.bnb.mode) {
        case BnbMode::k4Bit:
          KILN_RETURN_IF_ERROR(prequant_internal::ReadBnb4(checkpoint, config, module, out, in, result));
          break;
        case BnbMode::k8Bit: KILN_RETURN_IF_ERROR(ReadInt8(checkpoint, config.bnb, module, out, in, result)); break;
      }
      break;
    case PrequantMethod::kGptq: KILN_RETURN_IF_ERROR(ReadGptq(checkpoint, config.gptq, module, out, in, result)); break;
    case PrequantMethod::kAwq: KILN_RETURN_IF_ERROR(ReadAwq(checkpoint, config.awq, module, out, in, result)); break;
  }
  KILN_RETURN_IF_ERROR(ReadBias(checkpoint, module, out, result));
  for (const HostTensor& t : result.tensors) ViewFor(result.matrix, t.role) = t.View();
  // The kernels' own contract check, belt and braces. The bnb halves of kernels/quant are
  // validated by this reader alone until their owner's ValidateBnb4/ValidateInt8 land.
  if (result.matrix.format == QuantFormat::kGptq || result.matrix.format == QuantFormat::kAwq) {
    KILN_RETURN_IF_ERROR(kernels::ValidateQuantizedMatrix(result.matrix, module));
  }
  return result;
}

std::vector<std::string> PrequantTensorNames(const Checkpoint& checkpoint, const PrequantConfig& config,
                                             const std::string& module) {
  std::vector<std::string> suffixes;
  switch (config.method) {
    case PrequantMethod::kBitsAndBytes:
      switch (config.bnb.mode) {
        case BnbMode::k4Bit:
          suffixes = {".weight", ".weight.absmax", ".weight.quant_map", ".weight.nested_absmax",
                      ".weight.nested_quant_map", ".weight.quant_state.bitsandbytes__nf4",
                      ".weight.quant_state.bitsandbytes__fp4"};
          break;
        case BnbMode::k8Bit: suffixes = {".weight", ".SCB", ".weight_format"}; break;
      }
      break;
    case PrequantMethod::kGptq: suffixes = {".qweight", ".qzeros", ".scales", ".g_idx"}; break;
    case PrequantMethod::kAwq: suffixes = {".qweight", ".qzeros", ".scales"}; break;
  }
  suffixes.push_back(".bias");
  std::vector<std::string> names;
  for (const std::string& s : suffixes) {
    if (checkpoint.Find(module + s).has_value()) names.push_back(module + s);
  }
  return names;
}

}  // namespace kiln::engine::quant
