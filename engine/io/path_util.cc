#include "engine/io/path_util.h"

#include <limits.h>
#include <stdlib.h>

#include <cerrno>
#include <cstdlib>
#include <memory>

#include "engine/io/str_cat.h"
#include "engine/io/json_util.h"

namespace kiln::engine {

using io_internal::Append;
using io_internal::Cat;

absl::StatusOr<std::string> RealPath(const std::string& path) {
  std::unique_ptr<char, decltype(&std::free)> p(::realpath(path.c_str(), nullptr), &std::free);
  if (p == nullptr) {
    const int err = errno;
    if (err == ENOENT || err == ENOTDIR) return absl::NotFoundError("not found");
    if (err == EACCES) return absl::PermissionDeniedError("permission denied");
    if (err == ELOOP) return absl::InvalidArgumentError("too many levels of symbolic links");
    return absl::InvalidArgumentError("cannot resolve path");
  }
  return std::string(p.get());
}

bool IsWithin(std::string_view path, std::string_view root) {
  if (root == "/") return path.starts_with('/');
  if (!path.starts_with(root)) return false;
  return path.size() == root.size() || path[root.size()] == '/';
}

absl::Status CheckRelativeFileName(std::string_view rel, std::string_view what) {
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError(
        Cat(what, " ", QuoteForMessage(rel), ": ", why));
  };
  if (rel.empty()) return bad("empty file name");
  if (rel.size() > 1024) return bad("file name longer than 1024 bytes");
  // Not quoted: an absolute path would put a location outside the model roots into the
  // message (reliability.md G2).
  if (rel.front() == '/') {
    return absl::InvalidArgumentError(Cat(what, ": absolute paths are not allowed"));
  }
  for (char c : rel) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) return bad("control characters are not allowed");
    if (c == '\\') return bad("backslashes are not allowed");
  }
  size_t start = 0;
  while (start <= rel.size()) {
    size_t end = rel.find('/', start);
    if (end == std::string_view::npos) end = rel.size();
    const std::string_view comp = rel.substr(start, end - start);
    if (comp.empty() || comp == "." || comp == "..") {
      return bad("empty, '.' and '..' path components are not allowed");
    }
    start = end + 1;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ResolveFileInside(const std::string& dir, std::string_view rel,
                                              const std::string& containment_root,
                                              std::string_view what) {
  if (absl::Status s = CheckRelativeFileName(rel, what); !s.ok()) return s;
  absl::StatusOr<std::string> real = RealPath(Cat(dir, "/", rel));
  if (!real.ok()) {
    if (absl::IsNotFound(real.status())) {
      return absl::NotFoundError(Cat(what, " ", QuoteForMessage(rel), ": file not found"));
    }
    return absl::Status(real.status().code(), Cat(what, " ", QuoteForMessage(rel), ": ",
                                                           real.status().message()));
  }
  if (!IsWithin(*real, containment_root)) {
    return absl::InvalidArgumentError(Cat(
        what, " ", QuoteForMessage(rel), ": resolves outside the model directory (symlink escape)"));
  }
  return *real;
}

std::string ContainmentRootFor(const std::string& model_dir_real) {
  // <cache>/models--org--name/snapshots/<rev>
  const size_t slash_rev = model_dir_real.rfind('/');
  if (slash_rev == std::string::npos || slash_rev == 0) return model_dir_real;
  const std::string parent = model_dir_real.substr(0, slash_rev);
  const size_t slash_snap = parent.rfind('/');
  if (slash_snap == std::string::npos || parent.substr(slash_snap + 1) != "snapshots") {
    return model_dir_real;
  }
  const std::string repo = parent.substr(0, slash_snap);
  const size_t slash_repo = repo.rfind('/');
  const std::string repo_name = repo.substr(slash_repo == std::string::npos ? 0 : slash_repo + 1);
  if (std::string_view(repo_name).starts_with("models--")) {
    return repo;
  }
  return model_dir_real;
}

}  // namespace kiln::engine
