// Budgets (transformers' get_max_memory / get_balanced_memory / the bnb quantizer's
// adjust_max_memory), single-device and explicit maps, and the plan's per-tensor view. The
// greedy placement itself is in infer_device_map.cc.
#include "engine/placement/planner.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "engine/io/json_util.h"
#include "engine/placement/infer_device_map.h"

namespace kiln::engine::placement {
namespace {

using internal::Slot;
using Budgets = std::vector<std::pair<Device, double>>;  // accelerate order

const DeviceCapacity* FindInInventory(const std::vector<DeviceCapacity>& inv, const Device& d) {
  for (const DeviceCapacity& c : inv) {
    if (c.device == d) return &c;
  }
  return nullptr;
}

absl::Status NotInInventory(std::string_view field, const Device& d,
                            const std::vector<DeviceCapacity>& inv) {
  std::string have;
  for (const DeviceCapacity& c : inv) absl::StrAppend(&have, have.empty() ? "" : ", ", c.device.Name());
  return absl::InvalidArgumentError(absl::StrCat(std::string(field), ": device ", d.Name(),
                                                 " is not available; devices: ", have.empty() ? "none" : have));
}

// transformers' get_max_memory: the user's max_memory as given, else the inventory with the
// CPU at 90%.
absl::StatusOr<Budgets> GetMaxMemory(const PlacementRequest& r) {
  Budgets out;
  if (r.max_memory) {
    for (const auto& [device, bytes] : *r.max_memory) {
      if (FindInInventory(r.inventory, device) == nullptr) {
        return NotInInventory(absl::StrCat("max_memory[\"", device.HfName(), "\"]"), device, r.inventory);
      }
      out.emplace_back(device, static_cast<double>(bytes));
    }
  } else {
    for (const DeviceCapacity& c : r.inventory) {
      out.emplace_back(c.device, static_cast<double>(c.capacity_bytes));
      if (!c.device.is_gpu()) out.back().second *= 0.90;
    }
  }
  std::stable_sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  return out;
}

double* BudgetOf(Budgets& b, const Device& d) {
  for (auto& [device, bytes] : b) {
    if (device == d) return &bytes;
  }
  return nullptr;
}

bool HasBudget(const Budgets& b, const Device& d) {
  return std::any_of(b.begin(), b.end(), [&](const auto& e) { return e.first == d; });
}

// get_balanced_memory (transformers 5.23).
absl::StatusOr<Budgets> BalancedMemory(const PlacementRequest& r, bool low_zero) {
  const ModelLayout& l = *r.layout;
  absl::StatusOr<Budgets> got = GetMaxMemory(r);
  if (!got.ok()) return got.status();
  Budgets mm = *std::move(got);
  int num_devices = 0;
  for (const auto& [d, bytes] : mm) num_devices += (d.is_gpu() && bytes > 0) ? 1 : 0;
  if (num_devices == 0) return mm;
  if (num_devices == 1) {
    low_zero = false;
    if (!r.max_memory) {
      for (auto& [d, bytes] : mm) {
        if (d.is_gpu()) {
          bytes *= 0.9;
          break;
        }
      }
    }
  }
  const double total = l.TotalBytes();
  const int divisor = low_zero ? num_devices - 1 : num_devices;
  double per_gpu = std::floor(total / divisor);
  if (total == std::floor(total) && total < 9.0e15) {
    per_gpu = static_cast<double>(static_cast<int64_t>(total) / divisor);  // Python int //
  }
  double biggest_no_split = 0;
  for (const ModuleInfo& m : l.modules) {
    if (std::find(l.no_split_module_classes.begin(), l.no_split_module_classes.end(), m.class_name) !=
        l.no_split_module_classes.end()) {
      biggest_no_split = std::max(biggest_no_split, l.SizeOf(m.name));
    }
  }
  std::map<std::string, double> leaves;  // tensor's parent module → bytes
  for (const TensorInfo& t : l.tensors) {
    if (t.tied_to) continue;
    const size_t dot = t.name.rfind('.');
    if (dot != std::string::npos) leaves[t.name.substr(0, dot)] += t.bytes;
  }
  double biggest_leaf = 0;
  for (const auto& [name, bytes] : leaves) biggest_leaf = std::max(biggest_leaf, bytes);
  per_gpu += static_cast<double>(static_cast<int64_t>(1.25 * std::max(biggest_no_split, biggest_leaf)));

  std::vector<int> gpus;
  for (const auto& [d, bytes] : mm) {
    if (d.is_gpu() && bytes > 0) gpus.push_back(d.index);
  }
  if (low_zero) {
    for (int i = 0; i < num_devices; ++i) {
      if (BudgetOf(mm, Device::Gpu(i)) == nullptr) {
        return absl::InvalidArgumentError(absl::StrCat(
            "device_map: \"balanced_low_0\" needs budgets for GPUs 0..", num_devices - 1,
            "; cuda:", i, " has none"));
      }
    }
  }
  for (size_t i = 0; i + 1 < gpus.size(); ++i) {
    double* b = BudgetOf(mm, Device::Gpu(gpus[i]));
    const double cap = (low_zero && gpus[i] == 0) ? *BudgetOf(mm, Device::Gpu(0)) : per_gpu;
    *b = std::min(cap, *b);
  }
  if (low_zero) {
    double others = 0;
    for (int i = 1; i < num_devices; ++i) others += *BudgetOf(mm, Device::Gpu(i));
    double* zero = BudgetOf(mm, Device::Gpu(0));
    *zero = std::min(std::max(0.0, total - others), *zero);
  }
  return mm;
}

std::string DescribeUsage(const std::vector<DeviceUsage>& usage) {
  std::string s;
  for (const DeviceUsage& u : usage) {
    absl::StrAppend(&s, s.empty() ? "" : ", ", u.device.Name(), " budget ",
                    static_cast<int64_t>(u.budget_bytes), " bytes, placed ", u.planned_bytes);
  }
  return s.empty() ? "no devices" : s;
}

// True when `prefix` covers `name` (itself or anything below it; "" covers all).
bool Covers(const std::string& prefix, const std::string& name) {
  return prefix.empty() || name == prefix || absl::StartsWith(name, prefix + ".");
}

// Fills tensor_devices and usage from a prefix map (the longest covering prefix wins).
void FinishPlan(const PlacementRequest& r, const Budgets& budgets, PlacementPlan* plan) {
  const ModelLayout& l = *r.layout;
  plan->tensor_devices.assign(l.tensors.size(), Device::Cpu());
  std::vector<bool> found(l.tensors.size(), false);
  std::optional<Device> first_param_device;
  for (size_t i = 0; i < l.tensors.size(); ++i) {
    size_t best = std::string::npos;
    size_t best_len = 0;
    for (size_t k = 0; k < plan->device_map.size(); ++k) {
      const std::string& p = plan->device_map[k].first;
      if (Covers(p, l.tensors[i].name) && (best == std::string::npos || p.size() >= best_len)) {
        best = k;
        best_len = p.size();
      }
    }
    if (best != std::string::npos) {
      plan->tensor_devices[i] = plan->device_map[best].second;
      found[i] = true;
      if (!first_param_device && l.tensors[i].kind == TensorKind::kParameter) {
        first_param_device = plan->tensor_devices[i];
      }
    }
  }
  for (size_t i = 0; i < l.tensors.size(); ++i) {
    if (l.tensors[i].tied_to) {
      const int target = l.FindTensor(*l.tensors[i].tied_to);
      if (target >= 0 && found[target]) plan->tensor_devices[i] = plan->tensor_devices[target];
    } else if (!found[i] && first_param_device) {
      plan->tensor_devices[i] = *first_param_device;
    }
  }
  std::map<Device, double> placed;
  for (size_t i = 0; i < l.tensors.size(); ++i) placed[plan->tensor_devices[i]] += l.tensors[i].bytes;
  plan->usage.clear();
  for (const auto& [d, b] : budgets) {
    plan->usage.push_back(DeviceUsage{d, b, static_cast<int64_t>(std::ceil(placed[d]))});
  }
  for (const auto& [d, bytes] : placed) {
    if (!HasBudget(budgets, d) && bytes > 0) {
      plan->usage.push_back(DeviceUsage{d, 0, static_cast<int64_t>(std::ceil(bytes))});
    }
  }
}

absl::Status CheckBnbOffload(const PlacementRequest& r, const PlacementPlan& plan) {
  if (!r.bnb_quantized || r.bnb_fp32_cpu_offload) return absl::OkStatus();
  bool cpu = false, gpu = false;
  for (const auto& [k, d] : plan.device_map) (d.is_gpu() ? gpu : cpu) = true;
  if (cpu && gpu) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "device_map: the bitsandbytes-quantized model does not fit on the GPUs and some modules "
        "would be dispatched on the CPU (model needs ", static_cast<int64_t>(std::ceil(r.layout->TotalBytes())),
        " bytes; ", DescribeUsage(plan.usage),
        "); give the GPUs more memory or set llm_int8_enable_fp32_cpu_offload with an explicit device_map"));
  }
  return absl::OkStatus();
}

// Single-device and explicit maps: transformers checks no budget; kiln refuses a plan that
// cannot fit rather than failing halfway through the load.
absl::Status CheckFits(const PlacementRequest& r, const PlacementPlan& plan) {
  for (const DeviceUsage& u : plan.usage) {
    if (static_cast<double>(u.planned_bytes) > u.budget_bytes) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "device_map: the model needs ", static_cast<int64_t>(std::ceil(r.layout->TotalBytes())),
          " bytes and ", u.planned_bytes, " of them are mapped to ", u.device.Name(), ", which has ",
          static_cast<int64_t>(u.budget_bytes), " available (", DescribeUsage(plan.usage), ")"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Budgets> FixedBudgets(const PlacementRequest& r) {
  Budgets b;
  for (const DeviceCapacity& c : r.inventory) b.emplace_back(c.device, static_cast<double>(c.capacity_bytes));
  if (r.max_memory) {
    for (const auto& [d, bytes] : *r.max_memory) {
      double* have = BudgetOf(b, d);
      if (have == nullptr) return NotInInventory(absl::StrCat("max_memory[\"", d.HfName(), "\"]"), d, r.inventory);
      *have = static_cast<double>(bytes);
    }
  }
  std::stable_sort(b.begin(), b.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
  return b;
}

absl::StatusOr<PlacementPlan> PlanExplicit(const PlacementRequest& r, const DeviceMapSpec::Explicit& entries) {
  const ModelLayout& l = *r.layout;
  PlacementPlan plan;
  std::set<std::string> keys;
  for (const auto& [prefix, device] : entries) {
    const std::string field = absl::StrCat("device_map[", QuoteForMessage(prefix), "]");
    if (!keys.insert(prefix).second) {
      return absl::InvalidArgumentError(absl::StrCat(field, ": module listed twice"));
    }
    if (!prefix.empty() && l.FindModule(prefix) < 0 && l.FindTensor(prefix) < 0) {
      return absl::InvalidArgumentError(absl::StrCat(field, ": no module or parameter of ", l.architecture,
                                                     " is called ", QuoteForMessage(prefix)));
    }
    if (FindInInventory(r.inventory, device) == nullptr) return NotInInventory(field, device, r.inventory);
    for (const auto& [other, unused] : plan.device_map) {
      if (Covers(other, prefix) || Covers(prefix, other)) {
        return absl::InvalidArgumentError(absl::StrCat(field, ": overlaps device_map[", QuoteForMessage(other),
                                                       "]; each parameter must be mapped exactly once"));
      }
    }
    plan.device_map.emplace_back(prefix, device);
  }
  for (const TensorInfo& t : l.tensors) {
    if (t.kind != TensorKind::kParameter || t.tied_to) continue;
    bool covered = false;
    for (const auto& kv : plan.device_map) covered = covered || Covers(kv.first, t.name);
    if (!covered) {
      return absl::InvalidArgumentError(absl::StrCat("device_map: parameter ", t.name,
                                                     " is not covered by any module prefix"));
    }
  }
  absl::StatusOr<Budgets> budgets = FixedBudgets(r);
  if (!budgets.ok()) return budgets.status();
  FinishPlan(r, *budgets, &plan);
  absl::Status s = CheckBnbOffload(r, plan);
  if (!s.ok()) return s;
  s = CheckFits(r, plan);
  if (!s.ok()) return s;
  return plan;
}

absl::StatusOr<PlacementPlan> PlanStrategy(const PlacementRequest& r, Strategy strategy) {
  absl::StatusOr<Budgets> budgets;
  switch (strategy) {
    case Strategy::kAuto:
    case Strategy::kBalanced:
      budgets = BalancedMemory(r, /*low_zero=*/false);
      break;
    case Strategy::kBalancedLow0:
      budgets = BalancedMemory(r, /*low_zero=*/true);
      break;
    case Strategy::kSequential:
      budgets = GetMaxMemory(r);
      break;
  }
  if (!budgets.ok()) return budgets.status();
  if (r.bnb_quantized) {
    for (auto& [d, b] : *budgets) b *= 0.90;  // the bnb quantizers' adjust_max_memory
  }
  std::vector<Slot> slots;
  for (const auto& [d, b] : *budgets) slots.push_back(Slot{d, b});
  slots.push_back(Slot{std::nullopt, 0});
  absl::StatusOr<internal::InferredMap> inferred = internal::InferAutoDeviceMap(*r.layout, slots);
  if (!inferred.ok()) return inferred.status();

  PlacementPlan plan;
  double to_disk = 0;
  for (const auto& [name, slot] : inferred->map) {
    if (!slots[slot].device) {
      to_disk += r.layout->SizeOf(name);
      continue;
    }
    plan.device_map.emplace_back(name, *slots[slot].device);
  }
  FinishPlan(r, *budgets, &plan);
  if (to_disk > 0 || plan.device_map.size() != inferred->map.size()) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "device_map: the model needs ", static_cast<int64_t>(std::ceil(r.layout->TotalBytes())),
        " bytes and does not fit: ", DescribeUsage(plan.usage), "; ",
        static_cast<int64_t>(std::ceil(to_disk)),
        " bytes would be offloaded to disk, which kiln does not support (room for the largest layer, ",
        "plus the model, must fit in the GPU and CPU budgets)"));
  }
  absl::Status s = CheckBnbOffload(r, plan);
  if (!s.ok()) return s;
  return plan;
}

}  // namespace

absl::StatusOr<DeviceMapSpec> ParseDeviceMapString(std::string_view value) {
  DeviceMapSpec spec;
  if (value == "auto") {
    spec.value = Strategy::kAuto;
  } else if (value == "balanced") {
    spec.value = Strategy::kBalanced;
  } else if (value == "balanced_low_0") {
    spec.value = Strategy::kBalancedLow0;
  } else if (value == "sequential") {
    spec.value = Strategy::kSequential;
  } else {
    absl::StatusOr<Device> d = ParseDeviceName("device_map", value);
    if (!d.ok()) {
      if (absl::IsUnimplemented(d.status())) return d.status();
      return absl::InvalidArgumentError(absl::StrCat(
          "device_map: ", QuoteForMessage(value),
          " is neither a strategy (\"auto\", \"balanced\", \"balanced_low_0\", \"sequential\") nor a device "
          "(\"cpu\", \"cuda:N\", N)"));
    }
    spec.value = *d;
  }
  return spec;
}

absl::StatusOr<DeviceMapSpec> ParseExplicitDeviceMap(
    const std::vector<std::pair<std::string, std::string>>& entries) {
  DeviceMapSpec::Explicit out;
  for (const auto& [key, value] : entries) {
    absl::StatusOr<Device> d = ParseDeviceName(absl::StrCat("device_map[", QuoteForMessage(key), "]"), value);
    if (!d.ok()) return d.status();
    out.emplace_back(key, *d);
  }
  if (out.empty()) return absl::InvalidArgumentError("device_map: an explicit map needs at least one entry");
  DeviceMapSpec spec;
  spec.value = std::move(out);
  return spec;
}

std::optional<Device> PlacementPlan::DeviceOf(const ModelLayout& layout, const std::string& tensor) const {
  const int i = layout.FindTensor(tensor);
  if (i < 0 || static_cast<size_t>(i) >= tensor_devices.size()) return std::nullopt;
  return tensor_devices[i];
}

absl::StatusOr<PlacementPlan> PlanDeviceMap(const PlacementRequest& r) {
  if (r.layout == nullptr) return absl::InvalidArgumentError("PlanDeviceMap: no model layout");
  std::set<Device> seen;
  for (const DeviceCapacity& c : r.inventory) {
    if (c.capacity_bytes < 0 || !seen.insert(c.device).second) {
      return absl::InvalidArgumentError(absl::StrCat("inventory: device ", c.device.Name(),
                                                     " is listed twice or has a negative capacity"));
    }
  }
  if (const auto* strategy = std::get_if<Strategy>(&r.device_map.value)) return PlanStrategy(r, *strategy);
  if (const auto* device = std::get_if<Device>(&r.device_map.value)) {
    if (FindInInventory(r.inventory, *device) == nullptr) return NotInInventory("device_map", *device, r.inventory);
    return PlanExplicit(r, DeviceMapSpec::Explicit{{"", *device}});
  }
  return PlanExplicit(r, std::get<DeviceMapSpec::Explicit>(r.device_map.value));
}

}  // namespace kiln::engine::placement
