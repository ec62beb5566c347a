// bitsandbytes-serialized 4-bit Linear (Linear4bit._save_to_state_dict, QuantState.as_dict
// packed=True) → host tensors. The rules mirror QuantState.from_dict and dequantize_4bit in
// bitsandbytes 0.50 so that what passes here dequantizes exactly as the reference does.
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "engine/common/status_macros.h"
#include "engine/io/json_util.h"
#include "engine/quant/bnb4.h"
#include "engine/quant/prequant/prequant_internal.h"

namespace kiln::engine::quant::prequant_internal {
namespace {

using kernels::DType;
using nlohmann::json;

// The quant_state JSON is ~200 bytes; it is never allowed to be deep or large (A16).
constexpr int64_t kMaxQuantStateBytes = 4096;
constexpr JsonLimits kQuantStateLimits{static_cast<size_t>(kMaxQuantStateBytes), 3};

bool PowerOfTwoIn(int64_t v, int64_t lo, int64_t hi) { return v >= lo && v <= hi && (v & (v - 1)) == 0; }

struct QuantState {
  Bnb4Type type = Bnb4Type::kNf4;
  int64_t blocksize = 64;
  DType dtype = DType::kF32;
  bool nested = false;
  int64_t nested_blocksize = 256;
  float nested_offset = 0.0f;
};

absl::StatusOr<DType> TorchFloatDType(const JsonFields& f, std::string_view key) {
  KILN_ASSIGN_OR_RETURN(std::optional<std::string> s, f.OptionalString(key));
  if (!s.has_value()) return f.Invalid(key, "is missing (expected float32, float16 or bfloat16)");
  if (*s == "float32") return DType::kF32;
  if (*s == "float16") return DType::kF16;
  if (*s == "bfloat16") return DType::kBF16;
  return f.Invalid(key, "must be float32, float16 or bfloat16");
}

absl::StatusOr<QuantState> ParseQuantState(const std::string& text, const std::string& name, Bnb4Type name_type,
                                           int64_t rows, int64_t cols, bool has_nested_tensors) {
  KILN_ASSIGN_OR_RETURN(json obj, ParseJson(text, name, kQuantStateLimits));
  if (!obj.is_object()) return absl::InvalidArgumentError(absl::StrCat(name, ": expected a JSON object"));
  JsonFields f(obj, name);
  QuantState qs;
  KILN_ASSIGN_OR_RETURN(std::optional<std::string> type, f.OptionalString("quant_type"));
  if (!type.has_value()) return f.Invalid("quant_type", "is missing");
  if (*type != "nf4" && *type != "fp4") return f.Invalid("quant_type", "must be nf4 or fp4");
  qs.type = *type == "nf4" ? Bnb4Type::kNf4 : Bnb4Type::kFp4;
  if (qs.type != name_type) return f.Invalid("quant_type", "does not match the tensor name's suffix");
  KILN_ASSIGN_OR_RETURN(std::optional<int64_t> blocksize, f.OptionalInt("blocksize"));
  if (!blocksize.has_value()) return f.Invalid("blocksize", "is missing");
  // bitsandbytes' dequantize_4bit accepts exactly these.
  if (!PowerOfTwoIn(*blocksize, 32, 4096)) return f.Invalid("blocksize", "must be a power of two in [32, 4096]");
  qs.blocksize = *blocksize;
  KILN_ASSIGN_OR_RETURN(qs.dtype, TorchFloatDType(f, "dtype"));
  const json* shape = f.Get("shape");
  if (shape == nullptr || !shape->is_array() || shape->size() != 2 || !(*shape)[0].is_number_integer() ||
      !(*shape)[1].is_number_integer() || (*shape)[0].get<int64_t>() != rows || (*shape)[1].get<int64_t>() != cols) {
    return f.Invalid("shape", absl::StrCat("must be [", rows, ", ", cols, "] (the Linear's [out, in])"));
  }
  const bool json_nested = f.Has("nested_blocksize") || f.Has("nested_offset") || f.Has("nested_dtype");
  if (json_nested != has_nested_tensors) {
    return absl::InvalidArgumentError(absl::StrCat(
        name, ": nested_* entries ", json_nested ? "present" : "absent", " but the nested_absmax tensor is ",
        has_nested_tensors ? "present" : "absent"));
  }
  qs.nested = json_nested;
  if (qs.nested) {
    KILN_ASSIGN_OR_RETURN(std::optional<int64_t> nbs, f.OptionalInt("nested_blocksize"));
    if (!nbs.has_value()) return f.Invalid("nested_blocksize", "is missing");
    if (!PowerOfTwoIn(*nbs, 32, 4096)) return f.Invalid("nested_blocksize", "must be a power of two in [32, 4096]");
    qs.nested_blocksize = *nbs;
    KILN_ASSIGN_OR_RETURN(DType nested_dtype, TorchFloatDType(f, "nested_dtype"));
    if (nested_dtype != DType::kF32) return f.Invalid("nested_dtype", "must be float32");
    KILN_ASSIGN_OR_RETURN(std::optional<double> offset, f.OptionalNumber("nested_offset"));
    if (!offset.has_value()) return f.Invalid("nested_offset", "is missing");
    qs.nested_offset = static_cast<float>(*offset);  // bitsandbytes: torch.tensor(float(offset)), fp32
    if (!std::isfinite(qs.nested_offset)) return f.Invalid("nested_offset", "must be a finite fp32 value");
  }
  return qs;
}

std::vector<float> Floats(const HostTensor& t) {
  std::vector<float> v(t.bytes.size() / 4);
  std::memcpy(v.data(), t.bytes.data(), v.size() * 4);
  return v;
}

}  // namespace

absl::Status ReadBnb4(const Checkpoint& ckpt, const PrequantConfig& config, const std::string& module, int64_t rows,
                      int64_t cols, PrequantLinear& out) {
  const std::string W = module + ".weight";
  const std::string nf4_key = W + ".quant_state.bitsandbytes__nf4";
  const std::string fp4_key = W + ".quant_state.bitsandbytes__fp4";
  const bool has_nf4 = ckpt.Find(nf4_key).has_value();
  const bool has_fp4 = ckpt.Find(fp4_key).has_value();
  if (has_nf4 == has_fp4) {
    return absl::InvalidArgumentError(absl::StrCat(
        W, ": expected exactly one of the tensors quant_state.bitsandbytes__nf4 / __fp4, found ",
        has_nf4 ? "both" : "neither"));
  }
  const std::string qs_key = has_nf4 ? nf4_key : fp4_key;
  const Bnb4Type name_type = has_nf4 ? Bnb4Type::kNf4 : Bnb4Type::kFp4;
  const bool nested = ckpt.Find(W + ".nested_absmax").has_value();

  // Shapes and dtypes from the headers first: the JSON blob, then everything sized by it.
  KILN_ASSIGN_OR_RETURN(TensorRef qs_ref, ckpt.Require(qs_key));
  if (qs_ref.info->dtype != DType::kU8 || qs_ref.info->shape.size() != 1 || qs_ref.info->shape[0] < 2 ||
      qs_ref.info->shape[0] > kMaxQuantStateBytes) {
    return absl::InvalidArgumentError(absl::StrCat(qs_key, ": shape ",
                                                   ShapeString(qs_ref.info->shape, qs_ref.info->dtype),
                                                   ", expected [n] U8 with n in [2, ", kMaxQuantStateBytes, "]"));
  }
  KILN_ASSIGN_OR_RETURN(HostTensor qs_bytes, ReadHost(qs_ref, QuantRole::kBnb4Packed));
  const std::string text(qs_bytes.bytes.begin(), qs_bytes.bytes.end());
  KILN_ASSIGN_OR_RETURN(QuantState qs, ParseQuantState(text, qs_key, name_type, rows, cols, nested));

  const int64_t n = rows * cols;
  const int64_t packed_bytes = (n + 1) / 2;
  const int64_t blocks = (n + qs.blocksize - 1) / qs.blocksize;
  // Packed data may be stored as any quant_storage dtype: [ceil(bytes / itemsize), 1].
  KILN_ASSIGN_OR_RETURN(TensorRef packed_probe, ckpt.Require(W));
  const DType storage = packed_probe.info->dtype;
  const auto itemsize = static_cast<int64_t>(kernels::DTypeSize(storage));
  KILN_ASSIGN_OR_RETURN(TensorRef packed,
                        RequireTensor(ckpt, W, {storage}, {(packed_bytes + itemsize - 1) / itemsize, 1},
                                      absl::StrCat(n, " 4-bit values, 2 per byte")));
  if (storage != DType::kU8 && storage != DType::kI8 && storage != DType::kF16 && storage != DType::kBF16 &&
      storage != DType::kF32 && storage != DType::kF64) {
    return absl::InvalidArgumentError(absl::StrCat(W, ": dtype ", std::string(kernels::DTypeName(storage)),
                                                   " is not a bnb_4bit_quant_storage dtype"));
  }
  KILN_ASSIGN_OR_RETURN(TensorRef absmax, RequireTensor(ckpt, W + ".absmax", {nested ? DType::kU8 : DType::kF32},
                                                        {blocks}, absl::StrCat("one per block of ", qs.blocksize)));
  KILN_ASSIGN_OR_RETURN(TensorRef quant_map, RequireTensor(ckpt, W + ".quant_map", {DType::kF32}, {16}));
  std::optional<TensorRef> nested_absmax, nested_map;
  if (nested) {
    const int64_t nested_blocks = (blocks + qs.nested_blocksize - 1) / qs.nested_blocksize;
    KILN_ASSIGN_OR_RETURN(nested_absmax, RequireTensor(ckpt, W + ".nested_absmax", {DType::kF32}, {nested_blocks},
                                                       absl::StrCat("one per block of ", qs.nested_blocksize)));
    KILN_ASSIGN_OR_RETURN(nested_map, RequireTensor(ckpt, W + ".nested_quant_map", {DType::kF32}, {256}));
  }

  // Values.
  KILN_ASSIGN_OR_RETURN(HostTensor map, ReadHost(quant_map, QuantRole::kBnb4Absmax));
  const std::span<const float> table = Code4bit(qs.type);
  if (std::memcmp(map.bytes.data(), table.data(), 16 * sizeof(float)) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(W, ".quant_map: differs from the ", qs.type == Bnb4Type::kNf4 ?
                                                   "NF4" : "FP4", " code table (bitsandbytes dequantizes with its own "
                                                   "table, so this checkpoint cannot be read as written)"));
  }
  KILN_ASSIGN_OR_RETURN(HostTensor absmax_host, ReadHost(absmax, QuantRole::kBnb4Absmax));
  std::vector<float> absmax_f32;
  if (nested) {
    KILN_ASSIGN_OR_RETURN(HostTensor nabs, ReadHost(*nested_absmax, QuantRole::kBnb4Absmax));
    KILN_ASSIGN_OR_RETURN(HostTensor nmap, ReadHost(*nested_map, QuantRole::kBnb4Absmax));
    const std::vector<float> nested_abs = Floats(nabs);
    const std::vector<float> code = Floats(nmap);
    KILN_RETURN_IF_ERROR(CheckFinite(nested_abs, W + ".nested_absmax"));
    KILN_RETURN_IF_ERROR(CheckFinite(code, W + ".nested_quant_map"));
    absmax_f32.resize(static_cast<size_t>(blocks));
    // dequantize_blockwise (code[c] * absmax[block], fp32), then `absmax += offset` (fp32).
    for (int64_t i = 0; i < blocks; ++i) {
      const float v = code[absmax_host.bytes[static_cast<size_t>(i)]] * nested_abs[static_cast<size_t>(i / qs.nested_blocksize)];
      absmax_f32[static_cast<size_t>(i)] = v + qs.nested_offset;
    }
    out.consumed.insert(out.consumed.end(), {W + ".nested_absmax", W + ".nested_quant_map"});
  } else {
    absmax_f32 = Floats(absmax_host);
  }
  KILN_RETURN_IF_ERROR(CheckFinite(absmax_f32, W + ".absmax"));

  KILN_ASSIGN_OR_RETURN(HostTensor packed_host, ReadHost(packed, QuantRole::kBnb4Packed));
  packed_host.bytes.resize(static_cast<size_t>(packed_bytes));  // storage padding (if any) dropped
  packed_host.dtype = DType::kU8;
  packed_host.shape = {packed_bytes};
  HostTensor absmax_out{QuantRole::kBnb4Absmax, DType::kF32, {blocks}, std::vector<uint8_t>(absmax_f32.size() * 4)};
  std::memcpy(absmax_out.bytes.data(), absmax_f32.data(), absmax_out.bytes.size());
  out.tensors.push_back(std::move(packed_host));
  out.tensors.push_back(std::move(absmax_out));
  out.matrix.format = kernels::QuantFormat::kBnb4;
  out.matrix.compute_dtype = config.bnb.compute_dtype;
  std::memcpy(out.matrix.bnb4.code.data(), table.data(), 16 * sizeof(float));
  out.matrix.bnb4.blocksize = qs.blocksize;
  out.dequant_dtype = qs.dtype;
  out.consumed.insert(out.consumed.end(), {W, W + ".absmax", W + ".quant_map", qs_key});
  return absl::OkStatus();
}

}  // namespace kiln::engine::quant::prequant_internal
