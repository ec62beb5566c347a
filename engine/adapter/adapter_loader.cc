// Adapter weights: plan from the safetensors header (names, dtypes, shapes) against the targeted
// base modules, then read each tensor with pread and widen it to fp32. Nothing is read before
// the whole plan checks out.
#include "engine/adapter/adapter_loader.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <vector>
#include <unistd.h>

#include "absl/strings/str_split.h"
#include "engine/adapter/target_match.h"
#include "engine/common/status_macros.h"
#include "engine/io/json_util.h"
#include "engine/io/model_store.h"
#include "engine/io/path_util.h"
#include "engine/io/str_cat.h"
#include "kernels/dtype.h"

namespace kiln::engine {

using io_internal::Cat;

namespace {

constexpr std::string_view kPrefix = "base_model.model.";
constexpr std::string_view kASuffix = ".lora_A.weight";
constexpr std::string_view kBSuffix = ".lora_B.weight";

struct Planned {
  const BaseLinear* base = nullptr;
  ModuleRank rank;
  const TensorInfo* a = nullptr;
  const TensorInfo* b = nullptr;
};

std::string Shape(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += Cat(i ? ", " : "", s[i]);
  return out + "]";
}

std::string ShowBase(std::string_view name) {
  if (!name.empty() && name.front() == '/') {
    const size_t slash = name.find_last_of('/');
    return Cat("an absolute path ending in ", QuoteForMessage(name.substr(slash + 1)));
  }
  return QuoteForMessage(name);
}

// The path components of a model reference ("org/name", a directory name, an absolute path
// from the training machine), with a hub-cache snapshot path
// (".../models--org--name/snapshots/<revision>") read as its repo id "org/name".
std::vector<std::string> ModelRefComponents(std::string_view ref) {
  std::vector<std::string> parts = absl::StrSplit(std::string(ref), '/', absl::SkipEmpty());
  std::erase(parts, ".");
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    // .../models--org--name/snapshots[/<revision>]: nothing may follow the revision.
    if (parts[i + 1] != "snapshots" || i + 3 < parts.size()) continue;
    if (std::optional<std::string> id = HubRepoIdFromFolder(parts[i]); id.has_value()) {
      return absl::StrSplit(*id, '/');
    }
  }
  return parts;
}

// Whether the adapter's base names the served model: their trailing path components agree
// over the shorter one's length. So "/home/me/models/llama" (trained from a local copy)
// matches the served "llama", and "meta-llama/Llama-2-7b-hf" matches a directory served as
// "Llama-2-7b-hf"; "mistral" never matches "llama".
bool BaseNamesServedModel(std::string_view base, std::string_view served) {
  const std::vector<std::string> a = ModelRefComponents(base), b = ModelRefComponents(served);
  if (a.empty() || b.empty()) return a.empty() && b.empty();
  const size_t n = std::min(a.size(), b.size());
  return std::equal(a.end() - static_cast<std::ptrdiff_t>(n), a.end(), b.end() - static_cast<std::ptrdiff_t>(n));
}

absl::Status CheckTensor(const TensorInfo& t, const std::vector<int64_t>& want) {
  if (t.dtype != kernels::DType::kF32 && t.dtype != kernels::DType::kF16 && t.dtype != kernels::DType::kBF16) {
    return absl::InvalidArgumentError(Cat(kAdapterWeightsFile, ": tensor ", QuoteForMessage(t.name), ": dtype ",
                                          kernels::DTypeName(t.dtype), ", expected F32, F16 or BF16"));
  }
  if (t.shape != want) {
    return absl::InvalidArgumentError(Cat(kAdapterWeightsFile, ": tensor ", QuoteForMessage(t.name), ": shape ",
                                          Shape(t.shape), ", expected ", Shape(want),
                                          " (from the base module and the adapter's r)"));
  }
  return absl::OkStatus();
}

// Reads `t` with pread and widens it to fp32; refuses NaN/Inf.
absl::StatusOr<std::vector<float>> ReadF32(const SafetensorsFile& file, const TensorInfo& t) {
  std::vector<uint8_t> raw(t.num_bytes());
  KILN_RETURN_IF_ERROR(file.Read(t, raw));
  std::vector<float> out(t.num_elements);
  for (size_t i = 0; i < out.size(); ++i) {
    switch (t.dtype) {
      case kernels::DType::kF32:
        std::memcpy(&out[i], &raw[i * 4], 4);
        break;
      case kernels::DType::kF16:
      case kernels::DType::kBF16: {
        uint16_t h;
        std::memcpy(&h, &raw[i * 2], 2);
        out[i] = t.dtype == kernels::DType::kF16 ? kernels::HalfToFloat(h) : kernels::BFloat16ToFloat(h);
        break;
      }
      case kernels::DType::kF64:
      case kernels::DType::kI8:
      case kernels::DType::kU8:
      case kernels::DType::kI16:
      case kernels::DType::kI32:
      case kernels::DType::kI64:
      case kernels::DType::kBool:
        return absl::InternalError("ReadF32: dtype not checked");
    }
    if (!std::isfinite(out[i])) {
      return absl::InvalidArgumentError(Cat(kAdapterWeightsFile, ": tensor ", QuoteForMessage(t.name),
                                            ": element ", i, " is not finite"));
    }
  }
  return out;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> OpenWeights(const std::string& dir_real,
                                                            const std::string& root,
                                                            const AdapterLoadOptions& o) {
  auto path = ResolveFileInside(dir_real, kAdapterWeightsFile, root, "adapter weights");
  if (!path.ok()) {
    if (path.status().code() == absl::StatusCode::kNotFound) {
      if (access(Cat(dir_real, "/", kAdapterPickleFile).c_str(), F_OK) == 0) {
        return absl::InvalidArgumentError(Cat(
            "adapter has only ", kAdapterPickleFile, " (a pickle, never opened); save it with safetensors ",
            "(save_pretrained(safe_serialization=True)) to get ", kAdapterWeightsFile));
      }
      return absl::InvalidArgumentError(Cat("adapter directory has no ", kAdapterWeightsFile));
    }
    return path.status();
  }
  return SafetensorsFile::Open(*path, kAdapterWeightsFile, o.safetensors_limits);
}

// Maps every tensor of the file onto the targeted modules.
absl::StatusOr<std::vector<Planned>> Plan(const SafetensorsFile& file, const LoraConfig& config,
                                          const BaseModules& base, const AdapterLoadOptions& o) {
  KILN_ASSIGN_OR_RETURN(std::vector<const BaseLinear*> targets, SelectTargetModules(config, base, o.config_limits));
  std::vector<Planned> plan(targets.size());
  std::map<std::string_view, size_t> index;
  for (size_t i = 0; i < targets.size(); ++i) {
    plan[i].base = targets[i];
    KILN_ASSIGN_OR_RETURN(plan[i].rank, RankForModule(config, targets[i]->name));
    index[targets[i]->name] = i;
  }
  for (const TensorInfo& t : file.tensors()) {
    std::string_view name = t.name;
    const bool is_a = name.ends_with(kASuffix), is_b = name.ends_with(kBSuffix);
    std::string_view module;
    if (name.starts_with(kPrefix) && (is_a || is_b)) {
      module = name.substr(kPrefix.size(), name.size() - kPrefix.size() - kASuffix.size());
    }
    auto it = index.find(module);
    if (it == index.end()) {
      const bool is_linear = std::any_of(base.linears.begin(), base.linears.end(),
                                         [&](const BaseLinear& l) { return !module.empty() && l.name == module; });
      return absl::InvalidArgumentError(Cat(
          kAdapterWeightsFile, ": unexpected tensor ", QuoteForMessage(t.name), ": ",
          module.empty() ? "not a lora_A/lora_B weight (DoRA magnitudes, biases, modules_to_save copies and "
                           "embedding LoRA are not supported)"
          : is_linear    ? "its module is not targeted by adapter_config.json"
                         : "no such Linear module in the base model"));
    }
    Planned& p = plan[it->second];
    const int64_t r = p.rank.r;
    if (is_a) {
      KILN_RETURN_IF_ERROR(CheckTensor(t, {r, p.base->in_features}));
      p.a = &t;
    } else {
      KILN_RETURN_IF_ERROR(CheckTensor(t, {p.base->out_features, r}));
      p.b = &t;
    }
  }
  for (const Planned& p : plan) {
    if (p.a == nullptr || p.b == nullptr) {
      return absl::InvalidArgumentError(Cat(kAdapterWeightsFile, ": missing tensor ",
                                            QuoteForMessage(Cat(kPrefix, p.base->name, p.a ? kBSuffix : kASuffix)),
                                            " for a module adapter_config.json targets"));
    }
  }
  return plan;
}

}  // namespace

const LoraModule* LoraAdapter::Find(std::string_view module) const {
  for (const LoraModule& m : modules) {
    if (m.name == module) return &m;
  }
  return nullptr;
}

absl::Status CheckBaseModelName(const LoraConfig& config, const AdapterLoadOptions& o) {
  if (o.expected_base.empty() || !config.base_model_name_or_path.has_value() || o.allow_base_mismatch) {
    return absl::OkStatus();
  }
  if (BaseNamesServedModel(*config.base_model_name_or_path, o.expected_base)) return absl::OkStatus();
  return absl::InvalidArgumentError(Cat(kAdapterConfigFile, ": base_model_name_or_path ",
                                        ShowBase(*config.base_model_name_or_path), " does not match the base model ",
                                        QuoteForMessage(o.expected_base),
                                        " (the request can override this check)"));
}

absl::StatusOr<std::unique_ptr<LoraAdapter>> LoadLoraAdapter(const std::string& adapter_dir, LoraConfig config,
                                                             const BaseModules& base,
                                                             const AdapterLoadOptions& o) {
  KILN_RETURN_IF_ERROR(CheckBaseModelName(config, o));
  KILN_ASSIGN_OR_RETURN(std::string dir, RealPath(adapter_dir));
  const std::string root = o.containment_root.empty() ? ContainmentRootFor(dir) : o.containment_root;
  KILN_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file, OpenWeights(dir, root, o));
  KILN_ASSIGN_OR_RETURN(std::vector<Planned> plan, Plan(*file, config, base, o));

  auto adapter = std::make_unique<LoraAdapter>();
  for (const Planned& p : plan) adapter->total_bytes += (p.a->num_elements +
                                                         p.b->num_elements) * 4;
  if (adapter->total_bytes > o.max_adapter_bytes) {
    return absl::ResourceExhaustedError(Cat("adapter needs ", adapter->total_bytes,
                                            " bytes of fp32 weights, over the limit of ", o.max_adapter_bytes));
  }
  for (const Planned& p : plan) {
    LoraModule m;
    m.base = p.base;
    m.name = p.base->name;
    m.r = p.rank.r;
    m.alpha = p.rank.alpha;
    m.scale = static_cast<float>(p.rank.scale);
    KILN_ASSIGN_OR_RETURN(m.a, ReadF32(*file, *p.a));
    KILN_ASSIGN_OR_RETURN(m.b, ReadF32(*file, *p.b));
    adapter->max_rank = std::max(adapter->max_rank, m.r);
    adapter->modules.push_back(std::move(m));
  }
  adapter->config = std::move(config);
  return adapter;
}

absl::StatusOr<std::unique_ptr<LoraAdapter>> LoadLoraAdapter(const std::string& adapter_dir, const BaseModules& base,
                                                             const AdapterLoadOptions& o) {
  KILN_ASSIGN_OR_RETURN(LoraConfig config, LoadLoraConfig(adapter_dir, o.config_limits, o.containment_root));
  return LoadLoraAdapter(adapter_dir, std::move(config), base, o);
}

}  // namespace kiln::engine
