#include "engine/io/checkpoint.h"

#include <unistd.h>

#include <filesystem>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/engine/io/io_test_util.h"

namespace kiln::engine {
namespace {

using ::testing::HasSubstr;
using kernels::DType;
using testing::Entry;
using testing::Safetensors;
using testing::TempDir;
using testing::WriteFile;

const std::string kTestdata = std::string(KILN_SOURCE_DIR) + "/tests/engine/io/testdata";

// A two-shard checkpoint: s1 holds a, b; s2 holds c.
void WriteSharded(const TempDir& dir, const std::string& weight_map) {
  WriteFile(dir / "s1.safetensors",
            Safetensors("{" + Entry("a", "F32", "[1]", 0, 4) + "," + Entry("b", "F32", "[1]", 4, 8) + "}",
                        std::string(8, '\0')));
  WriteFile(dir / "s2.safetensors",
            Safetensors("{" + Entry("c", "BF16", "[2]", 0, 4) + "}", std::string(4, '\0')));
  WriteFile(dir / std::string(kSafetensorsIndexFile),
            R"({"metadata": {"total_size": 12}, "weight_map": )" + weight_map + "}");
}

constexpr char kGoodMap[] = R"({"a": "s1.safetensors", "b": "s1.safetensors", "c": "s2.safetensors"})";

TEST(CheckpointTest, ShardedValid) {
  TempDir dir;
  WriteSharded(dir, kGoodMap);
  absl::StatusOr<std::unique_ptr<Checkpoint>> c = Checkpoint::Open(dir.path());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE((*c)->sharded());
  ASSERT_EQ((*c)->num_shards(), 2u);
  EXPECT_EQ((*c)->shard(0).display_name(), "s1.safetensors");
  EXPECT_EQ((*c)->TensorNames(), std::vector<std::string>({"a", "b", "c"}));
  EXPECT_EQ((*c)->total_tensor_bytes(), 12u);
  EXPECT_EQ((*c)->index_metadata().at("total_size"), "12");
  std::optional<TensorRef> ref = (*c)->Find("c");
  ASSERT_TRUE(ref.has_value());
  EXPECT_EQ(ref->shard->display_name(), "s2.safetensors");
  EXPECT_EQ(ref->info->dtype, DType::kBF16);
  EXPECT_EQ(ref->data.size(), 4u);
  absl::StatusOr<TensorRef> missing = (*c)->Require("model.norm.weight");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(missing.status().message()),
              HasSubstr("checkpoint is missing tensor \"model.norm.weight\""));
  EXPECT_EQ((*c)->FirstFloatingPointDType(), DType::kF32);
}

struct BadIndex {
  std::string name;
  std::string weight_map;
  std::string message;
};

class CheckpointBadIndexTest : public ::testing::TestWithParam<BadIndex> {};

// reliability.md §7 A10.
TEST_P(CheckpointBadIndexTest, Rejected) {
  TempDir dir;
  WriteSharded(dir, GetParam().weight_map);
  absl::StatusOr<std::unique_ptr<Checkpoint>> c = Checkpoint::Open(dir.path());
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument) << c.status();
  EXPECT_THAT(std::string(c.status().message()), HasSubstr(GetParam().message));
  EXPECT_EQ(std::string(c.status().message()).find(dir.path()), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(
    A10, CheckpointBadIndexTest,
    ::testing::Values(
        BadIndex{"DotDot", R"({"a": "../../etc/passwd", "b": "s1.safetensors", "c": "s2.safetensors"})",
                 "shard \"../../etc/passwd\": empty, '.' and '..' path components are not allowed"},
        BadIndex{"Absolute", R"({"a": "/etc/passwd", "b": "s1.safetensors", "c": "s2.safetensors"})",
                 "shard: absolute paths are not allowed"},
        BadIndex{"Backslash", R"({"a": "..\\s1.safetensors", "b": "s1.safetensors", "c": "s2.safetensors"})",
                 "backslashes are not allowed"},
        BadIndex{"MissingShard", R"({"a": "s1.safetensors", "b": "s1.safetensors", "c": "s3.safetensors"})",
                 "shard \"s3.safetensors\" is missing"},
        BadIndex{"ListedButAbsent",
                 R"({"a": "s1.safetensors", "b": "s1.safetensors", "c": "s2.safetensors", "d": "s2.safetensors"})",
                 "tensor \"d\" is mapped to shard \"s2.safetensors\", which does not contain it"},
        BadIndex{"WrongShard", R"({"a": "s1.safetensors", "b": "s2.safetensors", "c": "s2.safetensors"})",
                 "tensor \"b\" is mapped to shard \"s2.safetensors\", which does not contain it"},
        BadIndex{"ExtraTensorInShard", R"({"a": "s1.safetensors", "c": "s2.safetensors"})",
                 "shard \"s1.safetensors\" holds tensor \"b\", which the index does not list"},
        BadIndex{"CaseCollision",
                 R"({"a": "s1.safetensors", "b": "S1.safetensors", "c": "s2.safetensors"})",
                 "differ only in case"},
        BadIndex{"NotAString", R"({"a": 1, "b": "s1.safetensors", "c": "s2.safetensors"})",
                 "weight_map: value for tensor \"a\" must be a file name, got 1"},
        BadIndex{"DuplicateKey",
                 R"({"a": "s1.safetensors", "a": "s2.safetensors", "b": "s1.safetensors", "c": "s2.safetensors"})",
                 "duplicate key \"a\""},
        BadIndex{"Empty", R"({})", "weight_map is empty"},
        BadIndex{"NotAnObject", R"(["s1.safetensors"])", "weight_map: expected an object"}),
    [](const ::testing::TestParamInfo<BadIndex>& i) { return i.param.name; });

TEST(CheckpointTest, SameTensorInTwoShards) {
  TempDir dir;
  WriteSharded(dir, kGoodMap);
  WriteFile(dir / "s2.safetensors",
            Safetensors("{" + Entry("a", "F32", "[1]", 0, 4) + "," + Entry("c", "BF16", "[2]", 4, 8) + "}",
                        std::string(8, '\0')));
  absl::StatusOr<std::unique_ptr<Checkpoint>> c = Checkpoint::Open(dir.path());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(c.status().message()),
              HasSubstr("tensor \"a\" is in shard \"s2.safetensors\" but the index maps it to "
                        "\"s1.safetensors\""));
}

TEST(CheckpointTest, ShardSymlinkEscapingTheModelDirIsRefused) {
  TempDir outside;
  TempDir dir;
  WriteSharded(dir, kGoodMap);
  std::filesystem::rename(dir / "s2.safetensors", outside / "s2.safetensors");
  std::filesystem::create_symlink(outside / "s2.safetensors", dir / "s2.safetensors");
  absl::StatusOr<std::unique_ptr<Checkpoint>> c = Checkpoint::Open(dir.path());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(c.status().message()),
              HasSubstr("shard \"s2.safetensors\": resolves outside the model directory"));
  EXPECT_EQ(std::string(c.status().message()).find(outside.path()), std::string::npos);
}

TEST(CheckpointTest, DevZeroSymlinkedAsShardIsRefused) {
  TempDir dir;
  WriteSharded(dir, kGoodMap);
  std::filesystem::remove(dir / "s2.safetensors");
  std::filesystem::create_symlink("/dev/zero", dir / "s2.safetensors");
  absl::StatusOr<std::unique_ptr<Checkpoint>> c = Checkpoint::Open(dir.path());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("resolves outside the model directory"));
}

TEST(CheckpointTest, SymlinkInsideTheModelDirIsFine) {
  TempDir dir;
  WriteSharded(dir, kGoodMap);
  std::filesystem::create_directories(dir / "real");
  std::filesystem::rename(dir / "s2.safetensors", dir / "real/s2.safetensors");
  std::filesystem::create_symlink("real/s2.safetensors", dir / "s2.safetensors");
  absl::StatusOr<std::unique_ptr<Checkpoint>> c = Checkpoint::Open(dir.path());
  EXPECT_TRUE(c.ok()) << c.status();
}

// A17: pickle weights are never opened.
TEST(CheckpointTest, PickleOnlyIsRejectedWithAdvice) {
  for (std::string name : {"pytorch_model.bin", "pytorch_model.bin.index.json", "model.pt",
                           "weights.ckpt", "consolidated.pth"}) {
    TempDir dir;
    WriteFile(dir / name, "\x80\x02}q\x00.");
    absl::StatusOr<std::unique_ptr<Checkpoint>> c = Checkpoint::Open(dir.path());
    EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument) << name;
    EXPECT_THAT(std::string(c.status().message()),
                HasSubstr("checkpoint has only pickle weights (" + name +
                          "); convert it to safetensors (e.g. transformers' "
                          "save_pretrained(safe_serialization=True))"));
  }
}

TEST(CheckpointTest, PickleAlongsideSafetensorsIsIgnored) {
  TempDir dir;
  WriteFile(dir / "pytorch_model.bin", "\x80\x02}q\x00.");
  WriteFile(dir / "model.safetensors", Safetensors("{" + Entry("w", "F16", "[2]", 0, 4) + "}", "abcd"));
  absl::StatusOr<std::unique_ptr<Checkpoint>> c = Checkpoint::Open(dir.path());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FALSE((*c)->sharded());
  EXPECT_EQ((*c)->TensorNames(), std::vector<std::string>({"w"}));
}

TEST(CheckpointTest, NoWeightsAtAll) {
  TempDir dir;
  WriteFile(dir / "config.json", "{}");
  absl::StatusOr<std::unique_ptr<Checkpoint>> c = Checkpoint::Open(dir.path());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(c.status().message()),
              HasSubstr("has no model.safetensors or model.safetensors.index.json"));
  EXPECT_EQ(Checkpoint::Open(dir / "nope").status().code(), absl::StatusCode::kNotFound);
}

TEST(CheckpointTest, ShardErrorsNameTheShard) {
  TempDir dir;
  WriteSharded(dir, kGoodMap);
  WriteFile(dir / "s2.safetensors", "abc");
  absl::StatusOr<std::unique_ptr<Checkpoint>> c = Checkpoint::Open(dir.path());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("s2.safetensors: file is 3 bytes"));
}

// transformers' get_state_dict_dtype(load_state_dict(path, map_location="meta")) prints
// torch.bfloat16 for interop.safetensors (make_testdata.py), although the first tensor in
// the header is F32: safe_open().keys() is sorted by name.
TEST(CheckpointTest, FirstFloatingPointDTypeMatchesTransformers) {
  TempDir dir;
  std::filesystem::copy_file(kTestdata + "/interop.safetensors", dir / "model.safetensors");
  absl::StatusOr<std::unique_ptr<Checkpoint>> c = Checkpoint::Open(dir.path());
  ASSERT_TRUE(c.ok()) << c.status();
  const TensorInfo* first_in_header = nullptr;
  for (const TensorInfo& t : (*c)->shard(0).tensors()) {
    if (first_in_header == nullptr && kernels::IsFloatingPoint(t.dtype)) first_in_header = &t;
  }
  ASSERT_NE(first_in_header, nullptr);
  EXPECT_EQ(first_in_header->name, "b.f32");  // header order differs from safe_open order
  EXPECT_EQ((*c)->FirstFloatingPointDType(), DType::kBF16);
}

// Sharded checkpoint written by transformers' save_pretrained(max_shard_size="4KB").
TEST(CheckpointTest, ReadsShardedCheckpointWrittenByTransformers) {
  absl::StatusOr<std::unique_ptr<Checkpoint>> c = Checkpoint::Open(kTestdata + "/tiny_llama_sharded");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE((*c)->sharded());
  EXPECT_EQ((*c)->num_shards(), 2u);
  EXPECT_EQ((*c)->shard(0).display_name(), "model-00001-of-00002.safetensors");
  EXPECT_EQ((*c)->num_tensors(), 12u);
  std::optional<TensorRef> emb = (*c)->Find("model.embed_tokens.weight");
  ASSERT_TRUE(emb.has_value());
  EXPECT_EQ(emb->info->shape, std::vector<int64_t>({32, 16}));
  EXPECT_EQ(emb->info->dtype, DType::kBF16);
  EXPECT_EQ((*c)->FirstFloatingPointDType(), DType::kBF16);
  EXPECT_EQ(std::to_string((*c)->total_tensor_bytes()), (*c)->index_metadata().at("total_size"));
}

}  // namespace
}  // namespace kiln::engine
