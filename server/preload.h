// Preload entries of the kilnd config: what LoadModel is called with at start.
//
// In the config file `preload` is a JSON array whose items are either a model name
// ("llama3_tiny") or an object with LoadModel options:
//   {"model": "meta-llama/Llama-3.1-8B", "served_name": "llama8b", "dtype": "bfloat16",
//    "revision": "main", "device_map": "auto", "max_memory": {"cuda:0": "70GiB"},
//    "attn_implementation": "", "adapter": "", "pin": true, "keep_alive_ms": 0,
//    "max_seq_len": 8192, "kv_cache_bytes": 0, "disable_prefix_caching": false}
// On the command line (--preload) only names, comma-separated.
//
// Thread-safety: pure functions.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "engine/runtime/api_types.h"
#include "nlohmann/json.hpp"

namespace kiln::server {

// INVALID_ARGUMENT naming "preload[<index>].<key>" for an unknown key, a wrong type, a
// missing or empty model, or a bad dtype.
absl::StatusOr<engine::LoadModelOptions> PreloadFromJson(const nlohmann::json& item, size_t index);

// The object form with every supported key (the effective options).
nlohmann::json PreloadToJson(const engine::LoadModelOptions& options);

// The name readiness waits for: served_name, or the model when that is empty.
std::string PreloadServedName(const engine::LoadModelOptions& options);

}  // namespace kiln::server
