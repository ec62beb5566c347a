// Fuzz target: the sharded checkpoint index (model.safetensors.index.json) through
// Checkpoint::Open, test matrix A10. A fixed model directory holds two valid shards
// (a.safetensors: "x", b.safetensors: "y") and a symlink escaping it (out.safetensors ->
// ../outside.safetensors, tensor "z"); the input becomes the index file. Whatever the index
// says, a successful open may only contain x and y: "z" would mean a file outside the
// containment root was opened.
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "engine/io/checkpoint.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

std::filesystem::path g_root;

void WriteShard(const std::filesystem::path& p, const std::string& tensor) {
  std::string header = "{\"" + tensor + "\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
  uint64_t n = header.size();
  std::ofstream out(p, std::ios::binary);
  out.write(reinterpret_cast<const char*>(&n), 8);  // little-endian host (x86-64, aarch64)
  out << header;
  out.write("\0\0\x80\x3f", 4);
}

void Cleanup() {
  std::error_code ec;
  if (!g_root.empty()) std::filesystem::remove_all(g_root, ec);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  std::string tmpl = (std::filesystem::temp_directory_path() / "kiln-fuzz-ckpt-XXXXXX").string();
  if (mkdtemp(tmpl.data()) == nullptr) std::abort();
  g_root = tmpl;
  std::filesystem::create_directory(g_root / "model");
  WriteShard(g_root / "model" / "a.safetensors", "x");
  WriteShard(g_root / "model" / "b.safetensors", "y");
  WriteShard(g_root / "outside.safetensors", "z");
  std::filesystem::create_symlink("../outside.safetensors", g_root / "model" / "out.safetensors");
  std::atexit(Cleanup);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto index = g_root / "model" / "model.safetensors.index.json";
  {
    std::ofstream out(index, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  kiln::engine::CheckpointLimits limits;
  limits.max_shards = 64;
  auto ckpt = kiln::engine::Checkpoint::Open((g_root / "model").string(), limits);
  if (!ckpt.ok()) {
    const auto m = ckpt.status().message();
    KILN_FUZZ_CHECK(kiln::fuzz::MessageIsClean(m));
    // The temp dir may appear only when the input itself spelled it (messages may quote the
    // index text): a path the daemon adds on its own would be a leak.
    const bool in_input = kiln::fuzz::AsText(data, size).find(g_root.string()) != std::string_view::npos;
    KILN_FUZZ_CHECK(in_input || m.find(g_root.string()) == std::string_view::npos,
                    "message leaks the absolute path: %s", std::string(m).c_str());
    return 0;
  }
  for (const auto& name : (*ckpt)->TensorNames()) {
    KILN_FUZZ_CHECK(name == "x" || name == "y", "tensor %s from outside the model dir",
                    name.c_str());
  }
  return 0;
}
