#include "engine/io/model_store.h"

#include <stdlib.h>

#include <filesystem>
#include <string>

#include "engine/io/checkpoint.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/engine/io/io_test_util.h"

namespace kiln::engine {
namespace {

using ::testing::HasSubstr;
using testing::Entry;
using testing::Safetensors;
using testing::TempDir;
using testing::WriteFile;

constexpr char kCommit[] = "0123456789abcdef0123456789abcdef01234567";
constexpr char kCommit2[] = "fedcba9876543210fedcba9876543210fedcba98";

class ModelNameTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ModelNameTest, Rejected) {
  absl::Status s = ValidateModelName(GetParam());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << GetParam();
  EXPECT_THAT(std::string(s.message()), HasSubstr("model name"));
  EXPECT_EQ(std::string(s.message()).find('\0'), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(
    Traversal, ModelNameTest,
    ::testing::Values("", "/etc", "/abs/model", "..", "../x", "a/../b", "a/..", "./a", "a/./b",
                      "a\\b", "..\\..\\x", std::string("a\0b", 3), "a\nb", "a\x7f", "%2e%2e%2f",
                      "%2E%2E/x", "\xef\xbc\x8e\xef\xbc\x8e/x" /* fullwidth dots */, "caf\xc3\xa9",
                      std::string(257, 'a'), ".hidden", "x-", "-x", "x.", "a//b", "a/", "a--b",
                      "a/b/c/d/e", "a b", "a:b", "~/m"));

TEST(ModelNameTest, Accepted) {
  for (std::string n : {"llama", "meta-llama/Llama-3.1-8B", "Qwen/Qwen2.5-0.5B-Instruct", "a_b.c",
                        "family/size/variant"}) {
    EXPECT_TRUE(ValidateModelName(n).ok()) << n;
  }
}

TEST(ModelStoreTest, ResolvesUnderRootsInOrder) {
  TempDir r1, r2;
  std::filesystem::create_directories(r2 / "fam/m");
  std::filesystem::create_directories(r1 / "only1");
  std::filesystem::create_directories(r2 / "only1");
  ModelStore store({r1 / "missing-root", r1.path(), r2.path()}, "");
  absl::StatusOr<ResolvedModel> m = store.Resolve("fam/m");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->dir, r2 / "fam/m");
  EXPECT_EQ(m->containment_root, m->dir);
  EXPECT_EQ(m->source, ModelSource::kRoot);
  EXPECT_TRUE(m->revision.empty());
  EXPECT_FALSE(m->has_adapter_config);
  EXPECT_EQ(store.Resolve("only1")->dir, r1 / "only1");
  absl::Status rev = store.Resolve("only1", "dev").status();
  EXPECT_EQ(rev.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(rev.message()), HasSubstr("revisions apply to hub cache models only"));
}

TEST(ModelStoreTest, UnknownIsNotFoundWithoutPaths) {
  TempDir root;
  ModelStore store({root.path()}, root / "hub");
  absl::Status s = store.Resolve("org/missing").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(s.message()), HasSubstr("model \"org/missing\" not found"));
  EXPECT_EQ(std::string(s.message()).find(root.path()), std::string::npos);
}

TEST(ModelStoreTest, SymlinkInsideRootPointingOutsideIsRefused) {
  TempDir root, outside;
  std::filesystem::create_directories(outside / "secret");
  std::filesystem::create_symlink(outside / "secret", root / "evil");
  std::filesystem::create_directories(root / "real");
  std::filesystem::create_symlink(root / "real", root / "alias");
  ModelStore store({root.path()}, "");
  absl::Status s = store.Resolve("evil").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("model \"evil\" resolves outside its model root"));
  EXPECT_EQ(std::string(s.message()).find(outside.path()), std::string::npos);
  absl::StatusOr<ResolvedModel> alias = store.Resolve("alias");
  ASSERT_TRUE(alias.ok()) << alias.status();
  EXPECT_EQ(alias->dir, root / "real");
}

TEST(ModelStoreTest, AdapterStoreDetectsAdapterConfig) {
  TempDir root;
  WriteFile(root / "my-lora/adapter_config.json", R"({"base_model_name_or_path": "llama"})");
  ModelStore adapters({root.path()}, "", "adapter");
  absl::StatusOr<ResolvedModel> a = adapters.Resolve("my-lora");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_TRUE(a->has_adapter_config);
  absl::Status bad = adapters.Resolve("../x").status();
  EXPECT_THAT(std::string(bad.message()), HasSubstr("adapter name \"../x\""));
}

// <cache>/models--org--name/{blobs/<etag>, refs/main, snapshots/<commit>/<file> -> ../../blobs/<etag>}
class HubCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    repo_ = cache_ / "models--org--tiny";
    WriteFile(repo_ + "/blobs/etag-config", R"({"model_type": "gpt2", "vocab_size": 8})");
    WriteFile(repo_ + "/blobs/etag-weights",
              Safetensors("{" + Entry("w", "F32", "[1]", 0, 4) + "}", "abcd"));
    WriteFile(repo_ + "/refs/main", std::string(kCommit) + "\n");
    WriteFile(repo_ + "/refs/dev", kCommit2);
    for (const char* commit : {kCommit, kCommit2}) {
      const std::string snap = repo_ + "/snapshots/" + commit;
      std::filesystem::create_directories(snap);
      std::filesystem::create_symlink("../../blobs/etag-config", snap + "/config.json");
      std::filesystem::create_symlink("../../blobs/etag-weights", snap + "/model.safetensors");
    }
  }

  TempDir cache_;
  std::string repo_;
};

TEST_F(HubCacheTest, ResolvesRefsAndCommits) {
  ModelStore store({}, cache_.path());
  absl::StatusOr<ResolvedModel> m = store.Resolve("org/tiny");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->source, ModelSource::kHub);
  EXPECT_EQ(m->revision, kCommit);
  EXPECT_EQ(m->dir, repo_ + "/snapshots/" + kCommit);
  EXPECT_EQ(m->containment_root, repo_);
  EXPECT_EQ(store.Resolve("org/tiny", "dev")->revision, kCommit2);
  EXPECT_EQ(store.Resolve("org/tiny", kCommit2)->dir, repo_ + "/snapshots/" + kCommit2);
  // The snapshot's symlinks point into ../../blobs: inside the repo folder, so allowed.
  absl::StatusOr<std::unique_ptr<Checkpoint>> ckpt = Checkpoint::Open(m->dir);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_EQ((*ckpt)->TensorNames(), std::vector<std::string>({"w"}));
}

TEST_F(HubCacheTest, Errors) {
  ModelStore store({}, cache_.path());
  EXPECT_EQ(store.Resolve("org/tiny", "nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store.Resolve("org/tiny", std::string(40, 'a')).status().code(),
            absl::StatusCode::kNotFound);  // no such snapshot
  EXPECT_EQ(store.Resolve("org/other").status().code(), absl::StatusCode::kNotFound);
  absl::Status trav = store.Resolve("org/tiny", "../../../etc").status();
  EXPECT_EQ(trav.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(trav.message()), HasSubstr("revision name"));
  WriteFile(repo_ + "/refs/bad", "not-a-hash");
  absl::Status bad = store.Resolve("org/tiny", "bad").status();
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.message()), HasSubstr("refs/bad does not hold a 40-hex commit hash"));
}

TEST_F(HubCacheTest, SnapshotFileEscapingTheRepoIsRefused) {
  TempDir outside;
  WriteFile(outside / "model.safetensors", Safetensors("{}"));
  const std::string snap = repo_ + "/snapshots/" + kCommit;
  std::filesystem::remove(snap + "/model.safetensors");
  std::filesystem::create_symlink(outside / "model.safetensors", snap + "/model.safetensors");
  absl::Status s = Checkpoint::Open(snap).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("resolves outside the model directory"));
}

TEST_F(HubCacheTest, SnapshotDirSymlinkEscapingTheRepoIsRefused) {
  TempDir outside;
  std::filesystem::create_directories(outside / "snap");
  const std::string evil = std::string(40, 'e');
  std::filesystem::create_symlink(outside / "snap", repo_ + "/snapshots/" + evil);
  absl::Status s = ModelStore({}, cache_.path()).Resolve("org/tiny", evil).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("snapshot resolves outside its hub cache folder"));
}

TEST(ModelStoreTest, DefaultHubCacheFollowsHuggingFaceEnv) {
  const char* saved[] = {"HF_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME", "HOME"};
  std::vector<std::optional<std::string>> old;
  for (const char* k : saved) {
    const char* v = std::getenv(k);
    old.push_back(v == nullptr ? std::nullopt : std::optional<std::string>(v));
  }
  ::setenv("HOME", "/home/u", 1);
  ::unsetenv("HF_HUB_CACHE");
  ::unsetenv("HF_HOME");
  ::unsetenv("XDG_CACHE_HOME");
  EXPECT_EQ(ModelStore::DefaultHubCache(), "/home/u/.cache/huggingface/hub");
  ::setenv("XDG_CACHE_HOME", "/xdg", 1);
  EXPECT_EQ(ModelStore::DefaultHubCache(), "/xdg/huggingface/hub");
  ::setenv("HF_HOME", "/hf", 1);
  EXPECT_EQ(ModelStore::DefaultHubCache(), "/hf/hub");
  ::setenv("HF_HUB_CACHE", "/cache", 1);
  EXPECT_EQ(ModelStore::DefaultHubCache(), "/cache");
  for (size_t i = 0; i < old.size(); ++i) {
    if (old[i].has_value()) {
      ::setenv(saved[i], old[i]->c_str(), 1);
    } else {
      ::unsetenv(saved[i]);
    }
  }
}

TEST(ModelStoreTest, HubRepoFolderRoundTrips) {
  EXPECT_EQ(HubRepoFolder("meta-llama/Llama-2-7b-hf"), "models--meta-llama--Llama-2-7b-hf");
  EXPECT_EQ(HubRepoFolder("gpt2"), "models--gpt2");
  for (const char* id : {"meta-llama/Llama-2-7b-hf", "gpt2", "org/a.b_c-d"}) {
    EXPECT_EQ(HubRepoIdFromFolder(HubRepoFolder(id)), id);
  }
  EXPECT_EQ(HubRepoIdFromFolder("datasets--org--x"), std::nullopt);
  EXPECT_EQ(HubRepoIdFromFolder("llama_tiny"), std::nullopt);
}

}  // namespace
}  // namespace kiln::engine
