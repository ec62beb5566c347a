// Path containment helpers shared by the checkpoint reader, the model store and config
// loaders. Model and adapter files are only ever opened through these, so nothing outside an
// operator-configured root (or a hub cache repo folder) is opened, whatever the artifact says.
//
// Thread-safety: reentrant. Messages name the relative file, never absolute paths.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kiln::engine {

// realpath(3); NOT_FOUND when the path (or a symlink target) does not exist.
absl::StatusOr<std::string> RealPath(const std::string& path);

// True when `path` equals `root` or lies below it. Both must be canonical (realpath) strings.
bool IsWithin(std::string_view path, std::string_view root);

// Checks that `rel` is a safe relative file reference as found in artifacts (shard names in
// an index): non-empty, at most 1024 bytes, not absolute, no empty, "." or ".." components,
// no backslashes, NUL or control characters. INVALID_ARGUMENT naming `what` otherwise.
absl::Status CheckRelativeFileName(std::string_view rel, std::string_view what);

// Resolves `dir`/`rel` with realpath and requires the result to be a file inside
// `containment_root` (canonical). `rel` is checked with CheckRelativeFileName. Symlinks are
// followed but the final target must stay inside the root.
// NOT_FOUND "<what> <rel>: file not found"; INVALID_ARGUMENT when it escapes.
absl::StatusOr<std::string> ResolveFileInside(const std::string& dir, std::string_view rel,
                                              const std::string& containment_root,
                                              std::string_view what);

// The folder a model directory's symlinks may point into: for a hub cache snapshot
// (<cache>/models--org--name/snapshots/<rev>) the repo folder <cache>/models--org--name, whose
// blobs/ hold the targets; otherwise the directory itself. `model_dir_real` must be canonical.
std::string ContainmentRootFor(const std::string& model_dir_real);

}  // namespace kiln::engine
