#include "engine/io/model_store.h"

#include <sys/stat.h>

#include <cstdlib>
#include <utility>

#include "engine/io/json_util.h"
#include "engine/io/path_util.h"
#include "engine/io/str_cat.h"

namespace kiln::engine {

using io_internal::Cat;

namespace {

constexpr size_t kMaxNameBytes = 256;
constexpr int kMaxComponents = 4;

bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

bool IsHex40(std::string_view s) {
  if (s.size() != 40) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

bool IsDir(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::vector<std::string_view> Split(std::string_view s) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (true) {
    const size_t end = s.find('/', start);
    out.push_back(s.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start));
    if (end == std::string_view::npos) break;
    start = end + 1;
  }
  return out;
}

// Components follow the hub's repo-name rules; also used for revisions (branch names).
absl::Status CheckComponents(std::string_view name, std::string_view what, int max_components) {
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError(Cat(what, " name ", QuoteForMessage(name), ": ", why));
  };
  if (name.empty()) return bad("empty");
  if (name.size() > kMaxNameBytes) return bad(Cat("longer than ", kMaxNameBytes, " bytes"));
  for (char c : name) {
    if (c != '/' && !IsNameChar(c)) {
      return bad("only letters, digits, '.', '_', '-' and '/' are allowed");
    }
  }
  const std::vector<std::string_view> comps = Split(name);
  if (static_cast<int>(comps.size()) > max_components) {
    return bad(Cat("more than ", max_components, " '/'-separated components"));
  }
  for (std::string_view c : comps) {
    if (c.empty()) return bad("empty path component (absolute path or '//')");
    if (c.front() == '.' || c.front() == '-' || c.back() == '.' || c.back() == '-') {
      return bad("components may not start or end with '.' or '-'");
    }
    if (c.find("..") != std::string_view::npos || c.find("--") != std::string_view::npos) {
      return bad("'..' and '--' are not allowed");
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateModelName(std::string_view name, std::string_view what) {
  return CheckComponents(name, what, kMaxComponents);
}

ModelStore::ModelStore(std::vector<std::string> roots, std::string hub_cache, std::string what)
    : roots_(std::move(roots)), hub_cache_(std::move(hub_cache)), what_(std::move(what)) {}

std::string ModelStore::DefaultHubCache() {
  auto env = [](const char* k) -> std::string {
    const char* v = std::getenv(k);
    return v == nullptr ? std::string() : std::string(v);
  };
  if (std::string v = env("HF_HUB_CACHE"); !v.empty()) return v;
  if (std::string v = env("HF_HOME"); !v.empty()) return v + "/hub";
  if (std::string v = env("XDG_CACHE_HOME"); !v.empty()) return v + "/huggingface/hub";
  if (std::string v = env("HOME"); !v.empty()) return v + "/.cache/huggingface/hub";
  return "";
}

absl::StatusOr<ResolvedModel> ModelStore::Resolve(std::string_view name,
                                                  std::string_view revision) const {
  if (absl::Status s = ValidateModelName(name, what_); !s.ok()) return s;
  for (const std::string& root : roots_) {
    absl::StatusOr<std::string> root_real = RealPath(root);
    if (!root_real.ok()) continue;  // a missing root is skipped, not an error
    const std::string candidate = Cat(*root_real, "/", name);
    struct stat st;
    if (::lstat(candidate.c_str(), &st) != 0) continue;
    absl::StatusOr<std::string> real = RealPath(candidate);
    if (!real.ok() || !IsWithin(*real, *root_real) || *real == *root_real) {
      return absl::InvalidArgumentError(
          Cat(what_, " ", QuoteForMessage(name), " resolves outside its ", what_, " root"));
    }
    if (!IsDir(*real)) {
      return absl::InvalidArgumentError(Cat(what_, " ", QuoteForMessage(name), " is not a directory"));
    }
    if (!revision.empty() && revision != "main") {
      return absl::InvalidArgumentError(Cat("revision ", QuoteForMessage(revision), " for ", what_, " ",
                                            QuoteForMessage(name),
                                            ": revisions apply to hub cache models only"));
    }
    ResolvedModel r;
    r.dir = *real;
    r.containment_root = *real;
    r.source = ModelSource::kRoot;
    r.has_adapter_config = ResolveFileInside(*real, "adapter_config.json", *real, "adapter").ok();
    return r;
  }
  if (!hub_cache_.empty() && Split(name).size() <= 2) {
    absl::StatusOr<ResolvedModel> hub = ResolveHub(name, revision);
    if (hub.ok() || !absl::IsNotFound(hub.status())) return hub;
  }
  return absl::NotFoundError(Cat(what_, " ", QuoteForMessage(name),
                                 revision.empty() ? "" : Cat(" at revision ", QuoteForMessage(revision)),
                                 " not found in the ", what_, " roots or the hub cache"));
}

namespace {
constexpr std::string_view kHubRepoPrefix = "models--";
}  // namespace

std::string HubRepoFolder(std::string_view repo_id) {
  if (const size_t slash = repo_id.find('/'); slash != std::string_view::npos) {
    return Cat(kHubRepoPrefix, repo_id.substr(0, slash), "--", repo_id.substr(slash + 1));
  }
  return Cat(kHubRepoPrefix, repo_id);
}

std::optional<std::string> HubRepoIdFromFolder(std::string_view folder) {
  if (!folder.starts_with(kHubRepoPrefix)) return std::nullopt;
  const std::string_view id = folder.substr(kHubRepoPrefix.size());
  // Repo names cannot contain "--" (ValidateModelName), so the first one separates the org.
  if (const size_t sep = id.find("--"); sep != std::string_view::npos) {
    return Cat(id.substr(0, sep), "/", id.substr(sep + 2));
  }
  return std::string(id);
}

absl::StatusOr<ResolvedModel> ModelStore::ResolveHub(std::string_view name,
                                                     std::string_view revision) const {
  const std::string rev = revision.empty() ? "main" : std::string(revision);
  if (absl::Status s = CheckComponents(rev, "revision", 3); !s.ok()) return s;
  absl::StatusOr<std::string> cache_real = RealPath(hub_cache_);
  if (!cache_real.ok()) return absl::NotFoundError("no hub cache");
  absl::StatusOr<std::string> repo = RealPath(Cat(*cache_real, "/", HubRepoFolder(name)));
  if (!repo.ok()) return absl::NotFoundError("not in hub cache");
  if (!IsWithin(*repo, *cache_real) || !IsDir(*repo)) {
    return absl::InvalidArgumentError(
        Cat(what_, " ", QuoteForMessage(name), ": hub cache folder resolves outside the cache"));
  }
  std::string commit;
  if (IsHex40(rev)) {
    commit = rev;
  } else {
    absl::StatusOr<std::string> ref_path = ResolveFileInside(*repo, Cat("refs/", rev), *repo, "ref");
    if (!ref_path.ok()) {
      if (absl::IsNotFound(ref_path.status())) return absl::NotFoundError("no such ref");
      return ref_path.status();
    }
    absl::StatusOr<std::string> text = ReadSmallFile(*ref_path, Cat("refs/", rev), 256);
    if (!text.ok()) return text.status();
    while (!text->empty() && (text->back() == '\n' || text->back() == ' ' || text->back() == '\r')) {
      text->pop_back();
    }
    if (!IsHex40(*text)) {
      return absl::InvalidArgumentError(Cat(what_, " ", QuoteForMessage(name), ": refs/", rev,
                                            " does not hold a 40-hex commit hash"));
    }
    commit = *text;
  }
  absl::StatusOr<std::string> snap = RealPath(Cat(*repo, "/snapshots/", commit));
  if (!snap.ok()) return absl::NotFoundError("no snapshot");
  if (!IsWithin(*snap, *repo) || !IsDir(*snap)) {
    return absl::InvalidArgumentError(
        Cat(what_, " ", QuoteForMessage(name), ": snapshot resolves outside its hub cache folder"));
  }
  ResolvedModel r;
  r.dir = *snap;
  r.containment_root = *repo;
  r.revision = commit;
  r.source = ModelSource::kHub;
  r.has_adapter_config = ResolveFileInside(*snap, "adapter_config.json", *repo, "adapter").ok();
  return r;
}

}  // namespace kiln::engine
