// A Hugging Face safetensors checkpoint in one model directory: either `model.safetensors`
// or `model.safetensors.index.json` + shards, validated as a whole before any weight is used.
//
// Rules (reliability.md test matrix A9/A10/A17):
//  - `model.safetensors` wins when both it and an index exist (as transformers does).
//  - Index: a JSON object with "weight_map" {tensor: shard file} (+ optional "metadata").
//    Shard names are relative file names (no absolute paths, no '.'/'..' components, no
//    backslashes/control characters), may not collide case-insensitively, and must resolve
//    (realpath) inside the containment root: the model directory itself, or for a hub cache
//    snapshot the repo folder `models--org--name` (snapshot files are symlinks into ../../blobs).
//    Every shard must exist; every tensor the index lists must be in its shard; a shard may
//    hold no tensor the index does not map to it (so no tensor lives in two shards).
//  - Pickle weights (pytorch_model.bin, *.bin index, *.pt, *.pth, *.ckpt) are never opened.
//    If they are the only weights: INVALID_ARGUMENT telling the user to convert.
//
// Thread-safety: immutable after Open; share freely. TensorRefs live as long as the Checkpoint.
// Status codes: INVALID_ARGUMENT (malformed or inconsistent files, missing shard, escape),
// UNIMPLEMENTED (unsupported dtype), NOT_FOUND (the model directory does not exist),
// PERMISSION_DENIED. Messages name files relative to the model directory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/io/json_util.h"
#include "engine/io/safetensors.h"
#include "kernels/dtype.h"

namespace kiln::engine {

inline constexpr std::string_view kSafetensorsFile = "model.safetensors";
inline constexpr std::string_view kSafetensorsIndexFile = "model.safetensors.index.json";

struct CheckpointLimits {
  SafetensorsLimits safetensors;
  JsonLimits index_json{64u << 20, 8};
  size_t max_shards = 4096;
  size_t max_dir_entries_scanned = 10000;  // when looking for pickle files
};

// One tensor found in the checkpoint.
struct TensorRef {
  const TensorInfo* info = nullptr;         // never null in a returned ref
  const SafetensorsFile* shard = nullptr;   // the file that holds it
  std::span<const uint8_t> data;            // zero-copy view (see mapped_file.h hazard)
};

class Checkpoint {
 public:
  // `containment_root`: canonical folder that every opened file must resolve into; empty means
  // ContainmentRootFor(realpath(model_dir)).
  static absl::StatusOr<std::unique_ptr<Checkpoint>> Open(const std::string& model_dir,
                                                          const CheckpointLimits& limits = {},
                                                          const std::string& containment_root = "");

  Checkpoint(const Checkpoint&) = delete;
  Checkpoint& operator=(const Checkpoint&) = delete;

  bool sharded() const { return sharded_; }
  // Shards in load order (sorted by file name, as transformers orders them).
  size_t num_shards() const { return shards_.size(); }
  const SafetensorsFile& shard(size_t i) const { return *shards_[i]; }

  // All tensor names: shard by shard, each in header order.
  std::vector<std::string> TensorNames() const;
  size_t num_tensors() const { return index_.size(); }
  // nullopt when absent.
  std::optional<TensorRef> Find(std::string_view name) const;
  // INVALID_ARGUMENT "checkpoint is missing tensor \"<name>\"" when absent.
  absl::StatusOr<TensorRef> Require(std::string_view name) const;

  // Sum of all tensors' byte sizes.
  uint64_t total_tensor_bytes() const { return total_bytes_; }

  // The index's "metadata" entries whose values are strings or integers, rendered as strings
  // (e.g. "total_size"); empty for a single file.
  const std::map<std::string, std::string>& index_metadata() const { return index_metadata_; }

  // transformers' rule for dtype="auto" when the config has no dtype: the first floating-point
  // tensor of the first shard, "first" in the order safetensors' safe_open().keys() yields
  // (tensor names sorted bytewise); nullopt when no tensor is floating-point.
  std::optional<kernels::DType> FirstFloatingPointDType() const;

 private:
  Checkpoint() = default;
  absl::Status OpenSingle(const std::string& dir, const std::string& root,
                          const CheckpointLimits& limits);
  absl::Status OpenSharded(const std::string& dir, const std::string& root,
                           const CheckpointLimits& limits);
  void BuildIndex();

  bool sharded_ = false;
  std::vector<std::unique_ptr<SafetensorsFile>> shards_;
  // name -> (shard index, tensor); keys view names inside shards_.
  std::unordered_map<std::string_view, std::pair<size_t, const TensorInfo*>> index_;
  std::map<std::string, std::string> index_metadata_;
  uint64_t total_bytes_ = 0;
};

}  // namespace kiln::engine
