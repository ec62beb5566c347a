#include "server/preload.h"

#include <cstdint>
#include <limits>

#include "absl/strings/str_cat.h"

namespace kiln::server {
namespace {

struct DTypeName {
  engine::WeightDType dtype;
  const char* name;
};
constexpr DTypeName kDTypes[] = {{engine::WeightDType::kAuto, "auto"},
                                 {engine::WeightDType::kFloat32, "float32"},
                                 {engine::WeightDType::kFloat16, "float16"},
                                 {engine::WeightDType::kBFloat16, "bfloat16"}};

const char* DTypeToName(engine::WeightDType dtype) {
  for (const DTypeName& d : kDTypes) {
    if (d.dtype == dtype) return d.name;
  }
  return "auto";
}

}  // namespace

absl::StatusOr<engine::LoadModelOptions> PreloadFromJson(const nlohmann::json& item,
                                                         size_t index) {
  const std::string where = absl::StrCat("preload[", index, "]");
  engine::LoadModelOptions o;
  if (item.is_string()) {
    o.model = item.get_ref<const std::string&>();
  } else if (item.is_object()) {
    for (const auto& [key, v] : item.items()) {
      const std::string field = absl::StrCat(where, ".", key);
      auto wrong = [&](const char* want) {
        return absl::InvalidArgumentError(
            absl::StrCat(field, ": expected ", want, ", got ", v.type_name()));
      };
      auto str = [&](std::string* out) -> absl::Status {
        if (!v.is_string()) return wrong("a string");
        *out = v.get_ref<const std::string&>();
        return absl::OkStatus();
      };
      auto boolean = [&](bool* out) -> absl::Status {
        if (!v.is_boolean()) return wrong("a boolean");
        *out = v.get<bool>();
        return absl::OkStatus();
      };
      auto count = [&](int64_t* out) -> absl::Status {
        if (!v.is_number_integer() ||
            (v.is_number_unsigned() &&
             v.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))) {
          return wrong("an integer");
        }
        if (v.get<int64_t>() < 0) {
          return absl::InvalidArgumentError(absl::StrCat(field, ": must be >= 0"));
        }
        *out = v.get<int64_t>();
        return absl::OkStatus();
      };
      absl::Status s;
      if (key == "model") {
        s = str(&o.model);
      } else if (key == "revision") {
        s = str(&o.revision);
      } else if (key == "served_name") {
        s = str(&o.served_name);
      } else if (key == "device_map") {
        s = str(&o.device_map_strategy);
      } else if (key == "attn_implementation") {
        s = str(&o.attn_implementation);
      } else if (key == "adapter") {
        s = str(&o.adapter);
      } else if (key == "pin") {
        s = boolean(&o.pin);
      } else if (key == "disable_prefix_caching") {
        s = boolean(&o.disable_prefix_caching);
      } else if (key == "keep_alive_ms") {
        s = count(&o.keep_alive_ms);
      } else if (key == "max_seq_len") {
        s = count(&o.max_seq_len);
      } else if (key == "kv_cache_bytes") {
        s = count(&o.kv_cache_bytes);
      } else if (key == "dtype") {
        std::string name;
        s = str(&name);
        if (s.ok()) {
          bool found = false;
          for (const DTypeName& d : kDTypes) {
            if (name == d.name) {
              o.dtype = d.dtype;
              found = true;
            }
          }
          if (!found) {
            s = absl::InvalidArgumentError(absl::StrCat(
                field, ": '", name, "' is not one of auto, float32, float16, bfloat16"));
          }
        }
      } else if (key == "max_memory") {
        if (!v.is_object()) return wrong("an object of device -> size");
        for (const auto& [device, size] : v.items()) {
          if (!size.is_string()) {
            return absl::InvalidArgumentError(
                absl::StrCat(field, ".", device, ": expected a string such as \"70GiB\""));
          }
          o.max_memory[device] = size.get_ref<const std::string&>();
        }
      } else {
        return absl::InvalidArgumentError(absl::StrCat(where, ": unknown key '", key, "'"));
      }
      if (!s.ok()) return s;
    }
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": expected a model name or an object, got ", item.type_name()));
  }
  if (o.model.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ".model: must not be empty"));
  }
  return o;
}

nlohmann::json PreloadToJson(const engine::LoadModelOptions& o) {
  nlohmann::json j = nlohmann::json::object();
  j["model"] = o.model;
  j["revision"] = o.revision;
  j["served_name"] = o.served_name;
  j["dtype"] = DTypeToName(o.dtype);
  j["device_map"] = o.device_map_strategy;
  j["max_memory"] = nlohmann::json::object();
  for (const auto& [device, size] : o.max_memory) j["max_memory"][device] = size;
  j["attn_implementation"] = o.attn_implementation;
  j["adapter"] = o.adapter;
  j["pin"] = o.pin;
  j["keep_alive_ms"] = o.keep_alive_ms;
  j["max_seq_len"] = o.max_seq_len;
  j["kv_cache_bytes"] = o.kv_cache_bytes;
  j["disable_prefix_caching"] = o.disable_prefix_caching;
  return j;
}

std::string PreloadServedName(const engine::LoadModelOptions& o) {
  return o.served_name.empty() ? o.model : o.served_name;
}

}  // namespace kiln::server
