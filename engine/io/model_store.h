// ModelStore: turns a model (or adapter) *name* from a request into a directory, never a
// caller-chosen path (reliability.md §1.6).
//
// Names: 1-4 '/'-separated components of [A-Za-z0-9._-], each not starting or ending with
// '.' or '-', with no ".." or "--"; at most 256 bytes. That rejects absolute paths, "..",
// backslashes, NUL/control characters, percent-encoding ("%2e%2e%2f") and look-alike Unicode
// (fullwidth dots) by construction.
// Resolution, first match wins:
//  1. each configured root, in order: <root>/<name> must be a directory whose realpath stays
//     inside realpath(root) (a symlink inside a root that points outside is refused);
//  2. the Hugging Face hub cache (anchors-features.md §4.8), for names "org/name" or "name":
//     <cache>/models--org--name/snapshots/<commit>, where <commit> is `revision` itself when it
//     is 40 hex digits, else the content of refs/<revision> (default "main"). The snapshot's
//     realpath must stay inside the repo folder.
// Revisions apply to hub models only; a root match with a revision other than ""/"main" is
// INVALID_ARGUMENT.
// Adapters use the same rules: construct a second ModelStore over the adapter roots.
//
// Thread-safety: immutable after construction; Resolve may be called concurrently.
// Status codes: INVALID_ARGUMENT (bad name or revision, escape), NOT_FOUND (unknown model;
// the message names the model, never a path outside the roots).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kiln::engine {

enum class ModelSource { kRoot, kHub };

struct ResolvedModel {
  std::string dir;               // canonical absolute directory holding config.json etc.
  std::string containment_root;  // canonical folder every file of the model must resolve into
  std::string revision;          // hub: the commit hash; roots: empty
  ModelSource source = ModelSource::kRoot;
  bool has_adapter_config = false;  // adapter_config.json present (a PEFT adapter dir)
};

// INVALID_ARGUMENT unless `name` follows the naming rules above. `what` is "model" or
// "adapter" (used in messages).
absl::Status ValidateModelName(std::string_view name, std::string_view what = "model");

// The hub cache's folder for a repo id and back: "org/name" <-> "models--org--name",
// "name" <-> "models--name". HubRepoIdFromFolder is nullopt for a folder without the
// "models--" prefix.
std::string HubRepoFolder(std::string_view repo_id);
std::optional<std::string> HubRepoIdFromFolder(std::string_view folder);

class ModelStore {
 public:
  // `roots`: operator-configured folders (missing ones are skipped at resolve time).
  // `hub_cache`: the hub cache folder; pass DefaultHubCache() for the HF default, or "" to
  // disable the hub lookup.
  ModelStore(std::vector<std::string> roots, std::string hub_cache, std::string what = "model");

  // $HF_HUB_CACHE, else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else
  // $HOME/.cache/huggingface/hub ("" when none can be formed).
  static std::string DefaultHubCache();

  absl::StatusOr<ResolvedModel> Resolve(std::string_view name,
                                        std::string_view revision = "") const;

  const std::vector<std::string>& roots() const { return roots_; }
  const std::string& hub_cache() const { return hub_cache_; }

 private:
  absl::StatusOr<ResolvedModel> ResolveHub(std::string_view name, std::string_view revision) const;

  std::vector<std::string> roots_;
  std::string hub_cache_;
  std::string what_;
};

}  // namespace kiln::engine
