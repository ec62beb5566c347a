#include "engine/io/checkpoint.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <set>

#include "absl/strings/ascii.h"
#include "engine/io/str_cat.h"
#include "engine/common/status_macros.h"
#include "engine/io/path_util.h"

namespace kiln::engine {

using io_internal::Append;
using io_internal::Cat;
namespace {

using nlohmann::json;

bool IsPickleName(std::string_view name) {
  return name.ends_with(".bin") || name.ends_with(".pt") || name.ends_with(".pth") ||
         name.ends_with(".ckpt") ||
         name == "pytorch_model.bin.index.json";
}

// Looks (boundedly) for pickle weights so the error can say what to do; never opens them.
std::optional<std::string> FindPickleWeights(const std::string& dir, size_t max_entries) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return std::nullopt;
  std::optional<std::string> found;
  size_t seen = 0;
  while (dirent* e = ::readdir(d)) {
    if (++seen > max_entries) break;
    const std::string_view name(e->d_name);
    if (IsPickleName(name) && (!found.has_value() || name < *found)) found = std::string(name);
  }
  ::closedir(d);
  return found;
}

bool FileExists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Checkpoint>> Checkpoint::Open(const std::string& model_dir,
                                                             const CheckpointLimits& limits,
                                                             const std::string& containment_root) {
  absl::StatusOr<std::string> dir = RealPath(model_dir);
  if (!dir.ok()) {
    return absl::NotFoundError("model directory not found");
  }
  struct stat st;
  if (::stat(dir->c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return absl::InvalidArgumentError("model path is not a directory");
  }
  std::string root = containment_root.empty() ? ContainmentRootFor(*dir) : containment_root;
  if (!IsWithin(*dir, root)) {
    return absl::InvalidArgumentError("model directory lies outside its root");
  }
  std::unique_ptr<Checkpoint> ckpt(new Checkpoint());
  if (FileExists(Cat(*dir, "/", kSafetensorsFile))) {
    KILN_RETURN_IF_ERROR(ckpt->OpenSingle(*dir, root, limits));
  } else if (FileExists(Cat(*dir, "/", kSafetensorsIndexFile))) {
    KILN_RETURN_IF_ERROR(ckpt->OpenSharded(*dir, root, limits));
  } else {
    std::optional<std::string> pickle = FindPickleWeights(*dir, limits.max_dir_entries_scanned);
    if (pickle.has_value()) {
      return absl::InvalidArgumentError(Cat(
          "checkpoint has only pickle weights (", *pickle,
          "); convert it to safetensors (e.g. transformers' save_pretrained(safe_serialization=True))"));
    }
    return absl::InvalidArgumentError(Cat("model directory has no ", kSafetensorsFile,
                                                   " or ", kSafetensorsIndexFile));
  }
  ckpt->BuildIndex();
  return ckpt;
}

absl::Status Checkpoint::OpenSingle(const std::string& dir, const std::string& root,
                                    const CheckpointLimits& limits) {
  absl::StatusOr<std::string> path = ResolveFileInside(dir, kSafetensorsFile, root, "weights file");
  if (!path.ok()) return path.status();
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> f =
      SafetensorsFile::Open(*path, kSafetensorsFile, limits.safetensors);
  if (!f.ok()) return f.status();
  shards_.push_back(*std::move(f));
  return absl::OkStatus();
}

absl::Status Checkpoint::OpenSharded(const std::string& dir, const std::string& root,
                                     const CheckpointLimits& limits) {
  sharded_ = true;
  const std::string idx_name(kSafetensorsIndexFile);
  absl::StatusOr<std::string> idx_path = ResolveFileInside(dir, idx_name, root, "index file");
  if (!idx_path.ok()) return idx_path.status();
  absl::StatusOr<json> idx = ReadJsonFile(*idx_path, idx_name, limits.index_json);
  if (!idx.ok()) return idx.status();
  auto invalid = [&](std::string_view what) {
    return absl::InvalidArgumentError(Cat(idx_name, ": ", what));
  };
  if (!idx->is_object()) return invalid("expected a JSON object");
  auto wm = idx->find("weight_map");
  if (wm == idx->end() || !wm->is_object()) return invalid("weight_map: expected an object");
  if (wm->empty()) return invalid("weight_map is empty");
  if (auto md = idx->find("metadata"); md != idx->end() && !md->is_null()) {
    if (!md->is_object()) return invalid("metadata: expected an object");
    for (auto it = md->begin(); it != md->end(); ++it) {
      if (it->is_string()) {
        index_metadata_[it.key()] = it->get<std::string>();
      } else if (it->is_number_integer()) {
        index_metadata_[it.key()] = it->dump();
      }
    }
  }
  // Shard names, validated, in sorted order (transformers: sorted(set(weight_map.values()))).
  std::set<std::string> names;
  for (auto it = wm->begin(); it != wm->end(); ++it) {
    if (!it->is_string()) {
      return invalid(Cat("weight_map: value for tensor ", QuoteForMessage(it.key()),
                                  " must be a file name, got ", JsonValueForMessage(*it)));
    }
    const std::string& shard = it->get_ref<const std::string&>();
    if (names.insert(shard).second) {
      if (absl::Status s = CheckRelativeFileName(shard, Cat(idx_name, ": shard"));
          !s.ok()) {
        return s;
      }
      if (names.size() > limits.max_shards) {
        return invalid(Cat("more than ", limits.max_shards, " shards"));
      }
    }
  }
  std::map<std::string, std::string> lower;
  for (const std::string& n : names) {
    auto [it, inserted] = lower.emplace(absl::AsciiStrToLower(n), n);
    if (!inserted) {
      return invalid(Cat("shard names ", QuoteForMessage(it->second), " and ",
                                  QuoteForMessage(n), " differ only in case"));
    }
  }
  std::map<std::string, size_t> shard_index;
  for (const std::string& n : names) {
    absl::StatusOr<std::string> path =
        ResolveFileInside(dir, n, root, Cat(idx_name, ": shard"));
    if (!path.ok()) {
      if (absl::IsNotFound(path.status())) {
        return invalid(Cat("shard ", QuoteForMessage(n), " is missing"));
      }
      return path.status();
    }
    absl::StatusOr<std::unique_ptr<SafetensorsFile>> f =
        SafetensorsFile::Open(*path, n, limits.safetensors);
    if (!f.ok()) return f.status();
    shard_index[n] = shards_.size();
    shards_.push_back(*std::move(f));
  }
  // Every listed tensor is in its shard...
  for (auto it = wm->begin(); it != wm->end(); ++it) {
    const std::string& shard = it->get_ref<const std::string&>();
    if (shards_[shard_index[shard]]->Find(it.key()) == nullptr) {
      return invalid(Cat("tensor ", QuoteForMessage(it.key()), " is mapped to shard ",
                                  QuoteForMessage(shard), ", which does not contain it"));
    }
  }
  // ...and every shard holds only tensors mapped to it.
  for (size_t i = 0; i < shards_.size(); ++i) {
    for (const TensorInfo& t : shards_[i]->tensors()) {
      auto it = wm->find(t.name);
      if (it == wm->end()) {
        return invalid(Cat("shard ", QuoteForMessage(shards_[i]->display_name()),
                                    " holds tensor ", QuoteForMessage(t.name),
                                    ", which the index does not list"));
      }
      if (it->get_ref<const std::string&>() != shards_[i]->display_name()) {
        return invalid(Cat("tensor ", QuoteForMessage(t.name), " is in shard ",
                                    QuoteForMessage(shards_[i]->display_name()),
                                    " but the index maps it to ", JsonValueForMessage(*it)));
      }
    }
  }
  return absl::OkStatus();
}

void Checkpoint::BuildIndex() {
  for (size_t i = 0; i < shards_.size(); ++i) {
    for (const TensorInfo& t : shards_[i]->tensors()) {
      index_.emplace(std::string_view(t.name), std::make_pair(i, &t));
      total_bytes_ += t.num_bytes();
    }
  }
}

std::vector<std::string> Checkpoint::TensorNames() const {
  std::vector<std::string> out;
  out.reserve(index_.size());
  for (const auto& s : shards_) {
    for (const TensorInfo& t : s->tensors()) out.push_back(t.name);
  }
  return out;
}

std::optional<TensorRef> Checkpoint::Find(std::string_view name) const {
  auto it = index_.find(name);
  if (it == index_.end()) return std::nullopt;
  const SafetensorsFile* shard = shards_[it->second.first].get();
  return TensorRef{it->second.second, shard, shard->Data(*it->second.second)};
}

absl::StatusOr<TensorRef> Checkpoint::Require(std::string_view name) const {
  std::optional<TensorRef> ref = Find(name);
  if (!ref.has_value()) {
    return absl::InvalidArgumentError(
        Cat("checkpoint is missing tensor ", QuoteForMessage(name)));
  }
  return *ref;
}

std::optional<kernels::DType> Checkpoint::FirstFloatingPointDType() const {
  if (shards_.empty()) return std::nullopt;
  const TensorInfo* best = nullptr;
  for (const TensorInfo& t : shards_.front()->tensors()) {
    if (kernels::IsFloatingPoint(t.dtype) && (best == nullptr || t.name < best->name)) best = &t;
  }
  if (best == nullptr) return std::nullopt;
  return best->dtype;
}

}  // namespace kiln::engine
