// Fuzz target: model/adapter name validation and ModelStore::Resolve (test matrix B4).
// A root holds models "m" and "org/m" and a symlink "esc" pointing outside the root; a hub
// cache holds nothing. Whatever the name, a resolved directory lies inside the root, and
// every accepted name follows the documented grammar.
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "engine/io/model_store.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

std::filesystem::path g_tmp;
std::string g_root_real;

void Cleanup() {
  std::error_code ec;
  if (!g_tmp.empty()) std::filesystem::remove_all(g_tmp, ec);
}

bool FollowsGrammar(std::string_view name) {
  if (name.empty() || name.size() > 256) return false;
  size_t start = 0;
  int parts = 0;
  while (true) {
    size_t end = name.find('/', start);
    std::string_view c = name.substr(start, end == std::string_view::npos ? name.npos : end - start);
    if (c.empty() || ++parts > 4) return false;
    for (char ch : c) {
      bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                ch == '.' || ch == '_' || ch == '-';
      if (!ok) return false;
    }
    if (c.front() == '.' || c.front() == '-' || c.back() == '.' || c.back() == '-') return false;
    if (c.find("..") != c.npos || c.find("--") != c.npos) return false;
    if (end == std::string_view::npos) return true;
    start = end + 1;
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  std::string tmpl = (std::filesystem::temp_directory_path() / "kiln-fuzz-name-XXXXXX").string();
  if (mkdtemp(tmpl.data()) == nullptr) std::abort();
  g_tmp = tmpl;
  std::filesystem::create_directories(g_tmp / "root" / "m");
  std::filesystem::create_directories(g_tmp / "root" / "org" / "m");
  std::filesystem::create_directories(g_tmp / "outside");
  std::filesystem::create_directory_symlink("../outside", g_tmp / "root" / "esc");
  std::filesystem::create_directories(g_tmp / "hub");
  g_root_real = std::filesystem::canonical(g_tmp / "root").string();
  std::atexit(Cleanup);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  kiln::fuzz::FuzzInput in(data, size);
  std::string revision = in.String(48);
  std::string name(in.Rest());
  absl::Status valid = kiln::engine::ValidateModelName(name, "model");
  KILN_FUZZ_CHECK(valid.ok() == FollowsGrammar(name), "name accepted=%d", valid.ok());
  if (!valid.ok()) {
    KILN_FUZZ_CHECK(kiln::fuzz::MessageIsClean(valid.message()));
    return 0;
  }
  kiln::engine::ModelStore store({(g_tmp / "root").string()}, (g_tmp / "hub").string());
  auto r = store.Resolve(name, revision);
  if (!r.ok()) {
    const auto m = r.status().message();
    KILN_FUZZ_CHECK(kiln::fuzz::MessageIsClean(m));
    // Only paths the caller did not send count as leaks (the name/revision are quoted back).
    const std::string outside = (g_tmp / "outside").string();
    const bool in_input = name.find(outside) != std::string::npos ||
                          revision.find(outside) != std::string::npos;
    KILN_FUZZ_CHECK(in_input || m.find(outside) == std::string_view::npos, "path leak: %s",
                    std::string(m).c_str());
    return 0;
  }
  KILN_FUZZ_CHECK(r->dir.rfind(g_root_real + "/", 0) == 0, "resolved outside: %s",
                  r->dir.c_str());
  return 0;
}
