// A line-by-line transcription of transformers 5.23's infer_auto_device_map (integrations/
// accelerate.py) for kiln's layouts: the golden test requires identical assignments, so the
// quirks stay (substring tests for tied parameters, split modules dropping their direct
// buffers, the largest-layer reservation being charged when moving to the next device).
// `no_placement_params` is None for every architecture kiln serves, so that branch is absent.
#include "engine/placement/infer_device_map.h"

#include <algorithm>
#include <deque>
#include <set>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace kiln::engine::placement::internal {
namespace {

// One entry of modules_to_treat: a module or a tensor (parameter/buffer), by index.
struct Item {
  std::string name;
  int module = -1;
  int tensor = -1;
  bool is_module() const { return module >= 0; }
};

class Inference {
 public:
  Inference(const ModelLayout& layout, const std::vector<Slot>& slots) : l_(layout), slots_(slots) {}

  absl::StatusOr<InferredMap> Run();

 private:
  bool NoSplit(int module) const {
    const std::string& c = l_.modules[module].class_name;
    return std::find(l_.no_split_module_classes.begin(), l_.no_split_module_classes.end(), c) !=
           l_.no_split_module_classes.end();
  }
  Item ModuleItem(int m) const { return Item{l_.modules[m].name, m, -1}; }
  Item TensorItem(int t) const { return Item{l_.tensors[t].name, -1, t}; }
  // named_parameters(recurse=False) + named_children(): what a split puts in its place.
  std::vector<Item> SplitChildren(int m) const {
    std::vector<Item> out;
    for (int t : l_.modules[m].params) out.push_back(TensorItem(t));
    for (int c : l_.modules[m].children) out.push_back(ModuleItem(c));
    return out;
  }
  void MaxLayerSize(const std::deque<Item>& items, bool modules_only);
  void RecomputeMaxLayer() { MaxLayerSize(queue_, /*modules_only=*/true); }

  const ModelLayout& l_;
  const std::vector<Slot>& slots_;
  std::deque<Item> queue_;
  double max_layer_size_ = 0;
  std::vector<std::string> max_layer_names_;
};

// get_max_layer_size: a layer is a tensor, a module without children, or a no-split module.
void Inference::MaxLayerSize(const std::deque<Item>& items, bool modules_only) {
  std::deque<Item> todo;
  for (const Item& it : items) {
    if (!modules_only || it.is_module()) todo.push_back(it);
  }
  max_layer_size_ = 0;
  max_layer_names_.clear();
  while (!todo.empty()) {
    Item it = std::move(todo.front());
    todo.pop_front();
    if (!it.is_module() || l_.modules[it.module].children.empty() || NoSplit(it.module)) {
      const double size = l_.SizeOf(it.name);
      if (size > max_layer_size_) {
        max_layer_size_ = size;
        max_layer_names_ = {it.name};
      } else if (size == max_layer_size_) {
        max_layer_names_.push_back(it.name);
      }
    } else {
      const auto& children = l_.modules[it.module].children;
      for (auto c = children.rbegin(); c != children.rend(); ++c) todo.push_front(ModuleItem(*c));
    }
  }
}

// Python's `a + "." in b + "."`: a substring test, not a prefix test.
bool DottedIn(const std::string& a, const std::string& b) {
  return absl::StrCat(b, ".").find(absl::StrCat(a, ".")) != std::string::npos;
}

absl::StatusOr<InferredMap> Inference::Run() {
  const ModuleInfo& root = l_.modules[0];
  for (int t : root.params) queue_.push_back(TensorItem(t));
  for (int c : root.children) queue_.push_back(ModuleItem(c));
  for (int t : root.buffers) queue_.push_back(TensorItem(t));

  // main_devices: the first GPU and "cpu" keep room for the largest layer.
  std::optional<Device> first_gpu;
  for (const Slot& s : slots_) {
    if (s.device && s.device->is_gpu()) {
      first_gpu = s.device;
      break;
    }
  }
  auto is_main = [&](const Slot& s) {
    if (!s.device) return false;
    return !s.device->is_gpu() || (first_gpu && *s.device == *first_gpu);
  };

  InferredMap out;
  out.used_bytes.assign(slots_.size(), 0.0);
  size_t current = 0;
  MaxLayerSize(queue_, /*modules_only=*/false);

  while (!queue_.empty()) {
    Item item = std::move(queue_.front());
    queue_.pop_front();
    const std::string& name = item.name;
    std::erase_if(max_layer_names_, [&](const std::string& n) {
      return n == name || absl::StartsWith(n, name + ".");
    });
    if (max_layer_names_.empty()) RecomputeMaxLayer();
    const double module_size = l_.SizeOf(name);

    // Tied parameters outside the current module whose partner is inside it.
    std::vector<std::string> tied_params;
    for (const auto& group : l_.tied_groups) {
      bool any = false, all = true;
      for (const std::string& k : group) {
        const bool in = DottedIn(name, k);
        any = any || in;
        all = all && in;
      }
      if (!any || all) continue;
      for (const std::string& p : group) {
        if (!DottedIn(name, p)) tied_params.push_back(p);
      }
    }

    if (current >= slots_.size()) return absl::InternalError("device map inference ran past disk");
    const Slot& slot = slots_[current];
    const bool bounded = slot.device.has_value();
    double current_max = slot.budget_bytes;
    double reserved = 0;
    if (is_main(slot)) {
      current_max -= max_layer_size_;
      reserved = max_layer_size_;
    }

    // get_module_size_with_ties (transformers' variant: the whole tied module counts).
    double size_with_ties = module_size;
    std::vector<std::string> tied_names;
    std::vector<int> tied_modules;
    for (const std::string& tp : tied_params) {
      auto it = std::find_if(queue_.begin(), queue_.end(),
                             [&](const Item& q) { return absl::StartsWith(tp, q.name + "."); });
      if (it == queue_.end()) {
        return absl::InternalError(absl::StrCat("device map inference: the module holding tied parameter ",
                                                tp, " is no longer pending"));
      }
      if (std::find(tied_names.begin(), tied_names.end(), it->name) == tied_names.end()) {
        tied_names.push_back(it->name);
        tied_modules.push_back(it->module);
        size_with_ties += l_.SizeOf(it->name);
      }
    }

    double& used = out.used_bytes[current];
    if (!bounded || used + size_with_ties <= current_max) {
      used += size_with_ties;
      out.map.emplace_back(name, static_cast<int>(current));
      for (const std::string& tn : tied_names) {
        auto it = std::find_if(queue_.begin(), queue_.end(), [&](const Item& q) { return q.name == tn; });
        if (it != queue_.end()) queue_.erase(it);
        out.map.emplace_back(tn, static_cast<int>(current));
      }
      continue;
    }

    if (!tied_params.empty() && used + module_size <= current_max) {
      bool split = false;
      for (size_t i = 0; i < tied_names.size(); ++i) {
        const int tm = tied_modules[i];
        if (tm < 0 || l_.modules[tm].children.empty() || NoSplit(tm)) continue;
        auto pos = std::find_if(queue_.begin(), queue_.end(),
                                [&](const Item& q) { return q.name == tied_names[i]; });
        const std::vector<Item> children = SplitChildren(tm);
        pos = queue_.erase(pos);
        queue_.insert(pos, children.begin(), children.end());
        queue_.push_front(item);
        RecomputeMaxLayer();
        split = true;
        break;
      }
      if (split) continue;
    }

    if (item.is_module() && !l_.modules[item.module].children.empty() && !NoSplit(item.module)) {
      const std::vector<Item> children = SplitChildren(item.module);
      queue_.insert(queue_.begin(), children.begin(), children.end());
      RecomputeMaxLayer();
      continue;
    }

    // Neither the module nor its tied modules can be split: next device.
    used += reserved;
    ++current;
    queue_.push_front(std::move(item));
  }
  CleanDeviceMap(&out.map, "");
  return out;
}

}  // namespace

template <typename V>
void CleanDeviceMap(std::vector<std::pair<std::string, V>>* map, const std::string& module_name) {
  const std::string prefix = module_name.empty() ? "" : module_name + ".";
  std::vector<V> values;
  for (const auto& [k, v] : *map) {
    if (absl::StartsWith(k, prefix)) values.push_back(v);
  }
  const bool one_value = values.size() > 1 &&
                         std::all_of(values.begin(), values.end(), [&](const V& v) { return v == values[0]; });
  if (one_value) {
    std::erase_if(*map, [&](const auto& kv) { return absl::StartsWith(kv.first, prefix); });
    map->emplace_back(module_name, values[0]);
  }
  const size_t depth = module_name.empty() ? 1 : std::count(module_name.begin(), module_name.end(), '.') + 2;
  std::set<std::string> children;
  for (const auto& kv : *map) {
    if (!absl::StartsWith(kv.first, prefix) || kv.first.size() <= module_name.size()) continue;
    std::vector<std::string> parts = absl::StrSplit(kv.first, '.');
    parts.resize(std::min(parts.size(), depth));
    children.insert(absl::StrJoin(parts, "."));
  }
  for (const std::string& child : children) CleanDeviceMap(map, child);
}

template void CleanDeviceMap<int>(std::vector<std::pair<std::string, int>>*, const std::string&);

absl::StatusOr<InferredMap> InferAutoDeviceMap(const ModelLayout& layout, const std::vector<Slot>& slots) {
  return Inference(layout, slots).Run();
}

}  // namespace kiln::engine::placement::internal
