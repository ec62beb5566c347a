#include "engine/io/safetensors.h"

#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cmath>
#include <cstring>
#include <limits>
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
using testing::U64Le;
using testing::WriteFile;

const std::string kTestdata = std::string(KILN_SOURCE_DIR) + "/tests/engine/io/testdata";

absl::StatusOr<std::unique_ptr<SafetensorsFile>> OpenBytes(const TempDir& dir, std::string_view bytes,
                                                           const SafetensorsLimits& limits = {}) {
  const std::string path = dir / "x.safetensors";
  WriteFile(path, bytes);
  return SafetensorsFile::Open(path, "x.safetensors", limits);
}

struct BadFile {
  std::string name;  // test label
  std::string bytes;
  absl::StatusCode code;
  std::string message;  // substring of the status message
};

std::string PrintBadFile(const ::testing::TestParamInfo<BadFile>& info) { return info.param.name; }

class SafetensorsBadFileTest : public ::testing::TestWithParam<BadFile> {};

TEST_P(SafetensorsBadFileTest, Rejected) {
  TempDir dir;
  const BadFile& c = GetParam();
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> f = OpenBytes(dir, c.bytes);
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), c.code) << f.status();
  EXPECT_THAT(std::string(f.status().message()), HasSubstr(c.message));
  EXPECT_THAT(std::string(f.status().message()), HasSubstr("x.safetensors: "));
  EXPECT_EQ(std::string(f.status().message()).find('\0'), std::string::npos);
  EXPECT_EQ(std::string(f.status().message()).find(dir.path()), std::string::npos);
}

const std::string kA = Entry("a", "F32", "[2]", 0, 8);
const std::string k8(8, '\x01');

// reliability.md §7 table A: A1 (size field), A2 (header text), A3 (keys), A4 (offsets),
// A5 (shapes), A6 (dtypes), A8 (caps).
INSTANTIATE_TEST_SUITE_P(
    TableA, SafetensorsBadFileTest,
    ::testing::Values(
        // A1
        BadFile{"A1_FileShorterThan8", "abc", absl::StatusCode::kInvalidArgument,
                "file is 3 bytes, too small for the 8-byte header size field"},
        BadFile{"A1_HeaderSizeZero", U64Le(0) + "{}", absl::StatusCode::kInvalidArgument,
                "header size is 0"},
        BadFile{"A1_HeaderSizePastFile", U64Le(100) + "{}", absl::StatusCode::kInvalidArgument,
                "header size 100 exceeds the 2 bytes that follow the size field"},
        BadFile{"A1_HeaderSizeMaxU64", U64Le(~uint64_t{0}) + "{}",
                absl::StatusCode::kInvalidArgument,
                "header size 18446744073709551615 exceeds the limit of 100000000 bytes"},
        BadFile{"A1_HeaderSizeOver100MB", U64Le(100'000'001) + "{}",
                absl::StatusCode::kInvalidArgument, "exceeds the limit of 100000000 bytes"},
        // A2
        BadFile{"A2_NoBrace", Safetensors(" {}"), absl::StatusCode::kInvalidArgument,
                "header must start with '{'"},
        BadFile{"A2_Bom", Safetensors("\xEF\xBB\xBF{}"), absl::StatusCode::kInvalidArgument,
                "header must start with '{'"},
        BadFile{"A2_InvalidUtf8", Safetensors("{\"\xff\":1}"), absl::StatusCode::kInvalidArgument,
                "invalid UTF-8 at byte 2"},
        BadFile{"A2_OverlongUtf8", Safetensors("{\"\xc0\xaf\":1}"),
                absl::StatusCode::kInvalidArgument, "invalid UTF-8"},
        BadFile{"A2_NulByte", Safetensors(std::string("{\"a\0\":1}", 8)),
                absl::StatusCode::kInvalidArgument, "header is not valid JSON"},
        BadFile{"A2_SyntaxError", Safetensors("{\"a\":}"), absl::StatusCode::kInvalidArgument,
                "header is not valid JSON"},
        BadFile{"A2_NewlinePadding", Safetensors("{" + kA + "}\n", k8),
                absl::StatusCode::kInvalidArgument, "followed only by space padding"},
        BadFile{"A2_TabPadding", Safetensors("{" + kA + "}\t ", k8),
                absl::StatusCode::kInvalidArgument, "followed only by space padding"},
        BadFile{"A2_NotAnObject", Safetensors("[1]"), absl::StatusCode::kInvalidArgument,
                "header must start with '{'"},
        BadFile{"A2_TwoObjects", Safetensors("{}{}"), absl::StatusCode::kInvalidArgument,
                "header is not valid JSON"},
        // A3
        BadFile{"A3_DuplicateTensor", Safetensors("{" + kA + "," + kA + "}", k8),
                absl::StatusCode::kInvalidArgument, "duplicate key \"a\""},
        BadFile{"A3_DuplicateMetadata",
                Safetensors("{\"__metadata__\":{},\"__metadata__\":{}}"),
                absl::StatusCode::kInvalidArgument, "duplicate key \"__metadata__\""},
        BadFile{"A3_DuplicateMetadataKey",
                Safetensors("{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}"),
                absl::StatusCode::kInvalidArgument, "__metadata__: duplicate key \"k\""},
        BadFile{"A3_MetadataNumber", Safetensors("{\"__metadata__\":{\"k\":1}}"),
                absl::StatusCode::kInvalidArgument,
                "__metadata__: value of \"k\" must be a string, got 1"},
        BadFile{"A3_MetadataNested", Safetensors("{\"__metadata__\":{\"k\":{\"x\":\"y\"}}}"),
                absl::StatusCode::kInvalidArgument,
                "__metadata__: value of \"k\" must be a string, got an object"},
        BadFile{"A3_MetadataArray", Safetensors("{\"__metadata__\":[\"x\"]}"),
                absl::StatusCode::kInvalidArgument,
                "__metadata__ must be an object of strings, got an array"},
        BadFile{"A3_UnknownField",
                Safetensors("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],"
                            "\"extra\":1}}", k8),
                absl::StatusCode::kInvalidArgument, "tensor \"a\": unknown field \"extra\""},
        BadFile{"A3_DuplicateField",
                Safetensors("{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F16\",\"shape\":[2],"
                            "\"data_offsets\":[0,8]}}", k8),
                absl::StatusCode::kInvalidArgument, "tensor \"a\": duplicate field \"dtype\""},
        BadFile{"A3_MissingField", Safetensors("{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", k8),
                absl::StatusCode::kInvalidArgument, "tensor \"a\": missing field \"data_offsets\""},
        BadFile{"A3_EntryNotObject", Safetensors("{\"a\":5}"), absl::StatusCode::kInvalidArgument,
                "tensor \"a\": entry must be an object, got 5"},
        // A4
        BadFile{"A4_Overlap",
                Safetensors("{" + kA + "," + Entry("b", "F32", "[2]", 4, 12) + "}", k8 + "1234"),
                absl::StatusCode::kInvalidArgument,
                "tensor \"b\": data_offsets [4, 12] overlap the previous tensor, which ends at 8"},
        BadFile{"A4_Alias",
                Safetensors("{" + kA + "," + Entry("b", "F32", "[2]", 0, 8) + "}", k8),
                absl::StatusCode::kInvalidArgument, "overlap the previous tensor"},
        BadFile{"A4_Hole",
                Safetensors("{" + kA + "," + Entry("b", "F32", "[2]", 12, 20) + "}",
                            k8 + "1234" + k8),
                absl::StatusCode::kInvalidArgument,
                "tensor \"b\": data_offsets [12, 20] leave a hole: the previous tensor ends at 8"},
        BadFile{"A4_NotFromZero", Safetensors("{" + Entry("a", "F32", "[2]", 4, 12) + "}",
                                              "1234" + k8),
                absl::StatusCode::kInvalidArgument, "leave a hole"},
        BadFile{"A4_BeginAfterEnd", Safetensors("{" + Entry("a", "F32", "[2]", 8, 0) + "}", k8),
                absl::StatusCode::kInvalidArgument,
                "tensor \"a\": data_offsets [8, 0]: begin is after end"},
        BadFile{"A4_EndPastBuffer", Safetensors("{" + kA + "}", "1234"),
                absl::StatusCode::kInvalidArgument,
                "tensor \"a\": data_offsets [0, 8] extend past the data buffer of 4 bytes"},
        BadFile{"A4_TrailingBytesPolyglot", Safetensors("{" + kA + "}", k8 + "<html>"),
                absl::StatusCode::kInvalidArgument,
                "the tensors cover 8 bytes of the 14-byte data buffer"},
        BadFile{"A4_FloatOffset",
                Safetensors("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8.0]}}", k8),
                absl::StatusCode::kInvalidArgument,
                "tensor \"a\": data_offsets must hold non-negative integers, got 8.0"},
        BadFile{"A4_ExponentOffset",
                Safetensors("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,1e3]}}", k8),
                absl::StatusCode::kInvalidArgument, "got 1e3"},
        BadFile{"A4_NegativeOffset",
                Safetensors("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}}", k8),
                absl::StatusCode::kInvalidArgument, "got -8"},
        BadFile{"A4_OffsetAbove2Pow53Exact",
                Safetensors("{" + Entry("a", "U8", "[9007199254740993]", 0, 9007199254740993ull) + "}", k8),
                absl::StatusCode::kInvalidArgument, "data_offsets [0, 9007199254740993] extend past"},
        BadFile{"A4_OffsetAbove2Pow64",
                Safetensors("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,"
                            "18446744073709551616]}}", k8),
                absl::StatusCode::kInvalidArgument, "got 18446744073709551616"},
        BadFile{"A4_ThreeOffsets",
                Safetensors("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,8]}}", k8),
                absl::StatusCode::kInvalidArgument, "data_offsets must have exactly 2 values"},
        BadFile{"A4_OneOffset",
                Safetensors("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", k8),
                absl::StatusCode::kInvalidArgument, "data_offsets must have exactly 2 values, got 1"},
        // A5
        BadFile{"A5_ElementOverflow",
                Safetensors("{" + Entry("a", "U8", "[4294967296,4294967296,4294967296]", 0, 8) + "}", k8),
                absl::StatusCode::kInvalidArgument,
                "tensor \"a\": shape [4294967296, 4294967296, 4294967296] has more than 2^64 elements"},
        BadFile{"A5_ByteOverflow",
                Safetensors("{" + Entry("a", "F32", "[4611686018427387904]", 0, 8) + "}", k8),
                absl::StatusCode::kInvalidArgument, "overflows 2^64 bytes"},
        BadFile{"A5_NegativeDim", Safetensors("{" + Entry("a", "F32", "[-1]", 0, 8) + "}", k8),
                absl::StatusCode::kInvalidArgument,
                "tensor \"a\": shape must hold non-negative integers, got -1"},
        BadFile{"A5_FloatDim", Safetensors("{" + Entry("a", "F32", "[2.0]", 0, 8) + "}", k8),
                absl::StatusCode::kInvalidArgument, "shape must hold non-negative integers, got 2.0"},
        BadFile{"A5_NineDims",
                Safetensors("{" + Entry("a", "U8", "[1,1,1,1,1,1,1,1,8]", 0, 8) + "}", k8),
                absl::StatusCode::kInvalidArgument, "tensor \"a\": shape has more than 8 dimensions"},
        BadFile{"A5_BytesMismatch", Safetensors("{" + Entry("a", "F32", "[3]", 0, 8) + "}", k8),
                absl::StatusCode::kInvalidArgument,
                "tensor \"a\": data_offsets [0, 8] span 8 bytes but dtype F32 x shape [3] needs 12"},
        BadFile{"A5_NestedShape", Safetensors("{" + Entry("a", "F32", "[[2]]", 0, 8) + "}", k8),
                absl::StatusCode::kInvalidArgument, "shape must hold non-negative integers, got an array"},
        BadFile{"A5_ShapeNotArray", Safetensors("{" + Entry("a", "F32", "2", 0, 8) + "}", k8),
                absl::StatusCode::kInvalidArgument, "tensor \"a\": shape must be an array, got 2"},
        // A6
        BadFile{"A6_UnknownDType", Safetensors("{" + Entry("a", "F31", "[2]", 0, 8) + "}", k8),
                absl::StatusCode::kInvalidArgument, "tensor \"a\": dtype \"F31\" is unknown"},
        BadFile{"A6_UnsupportedDType", Safetensors("{" + Entry("a", "F8_E4M3", "[8]", 0, 8) + "}", k8),
                absl::StatusCode::kUnimplemented, "tensor \"a\": dtype \"F8_E4M3\" is not supported"},
        BadFile{"A6_DTypeNotString",
                Safetensors("{\"a\":{\"dtype\":4,\"shape\":[2],\"data_offsets\":[0,8]}}", k8),
                absl::StatusCode::kInvalidArgument, "tensor \"a\": dtype must be a string, got 4"},
        // A8
        BadFile{"A8_HugeName",
                Safetensors("{" + Entry(std::string(2000, 'n'), "F32", "[2]", 0, 8) + "}", k8),
                absl::StatusCode::kInvalidArgument, "is 2000 bytes, over the limit of 1024"},
        BadFile{"A8_DeepNesting",
                Safetensors("{\"a\":" + std::string(1000, '[') + std::string(1000, ']') + "}"),
                absl::StatusCode::kInvalidArgument, "nesting depth exceeds the limit of 4"},
        BadFile{"A8_ControlCharsEscapedInMessage",
                Safetensors("{" + Entry("a\\u0000\\u0007b", "F31", "[2]", 0, 8) + "}", k8),
                absl::StatusCode::kInvalidArgument, "tensor \"a\\x00\\x07b\": dtype \"F31\""}),
    PrintBadFile);

TEST(SafetensorsTest, AcceptsSpacePaddingScalarsAndEmptyTensors) {
  TempDir dir;
  const std::string header = "{\"__metadata__\":{\"format\":\"pt\"}," +
                             Entry("s", "F32", "[]", 0, 4) + "," +
                             Entry("e", "F16", "[0,3]", 4, 4) + "," +
                             Entry("w", "BF16", "[2,2]", 4, 12) + "}      ";
  // NaN / Inf bytes are allowed by the format (A7).
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::string data(12, '\0');
  std::memcpy(data.data(), &nan, 4);
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> f = OpenBytes(dir, Safetensors(header, data));
  ASSERT_TRUE(f.ok()) << f.status();
  const SafetensorsFile& file = **f;
  ASSERT_EQ(file.tensors().size(), 3u);
  EXPECT_EQ(file.tensors()[0].name, "s");  // header order is kept
  EXPECT_EQ(file.tensors()[1].name, "e");
  EXPECT_EQ(file.metadata().at("format"), "pt");
  const TensorInfo* s = file.Find("s");
  ASSERT_NE(s, nullptr);
  EXPECT_TRUE(s->shape.empty());
  EXPECT_EQ(s->num_elements, 1u);
  EXPECT_EQ(file.Find("e")->num_elements, 0u);
  EXPECT_EQ(file.Find("e")->num_bytes(), 0u);
  EXPECT_EQ(file.Find("w")->dtype, DType::kBF16);
  EXPECT_EQ(file.Find("w")->shape, std::vector<int64_t>({2, 2}));
  EXPECT_EQ(file.Find("missing"), nullptr);
  EXPECT_EQ(file.data_offset(), 8 + header.size());
  float got;
  std::memcpy(&got, file.Data(*s).data(), 4);
  EXPECT_TRUE(std::isnan(got));
  std::array<uint8_t, 4> copy{};
  ASSERT_TRUE(file.Read(*s, copy).ok());
  EXPECT_EQ(std::memcmp(copy.data(), &nan, 4), 0);
  std::array<uint8_t, 3> wrong{};
  EXPECT_EQ(file.Read(*s, wrong).code(), absl::StatusCode::kInvalidArgument);
}

TEST(SafetensorsTest, EmptyHeaderObjectIsValid) {
  TempDir dir;
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> f = OpenBytes(dir, Safetensors("{}"));
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_TRUE((*f)->tensors().empty());
}

TEST(SafetensorsTest, TensorCountCap) {
  TempDir dir;
  SafetensorsLimits limits;
  limits.max_tensors = 3;
  std::string header = "{";
  for (int i = 0; i < 4; ++i) header += (i ? "," : "") + Entry("t" + std::to_string(i), "U8", "[0]", 0, 0);
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> f = OpenBytes(dir, Safetensors(header + "}"), limits);
  EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(f.status().message()), HasSubstr("more than 3 tensors in one file"));
}

// A8: many tiny tensors parse in one streaming pass (no DOM, no quadratic behaviour).
TEST(SafetensorsTest, ManyTinyTensors) {
  TempDir dir;
  constexpr int kCount = 100000;
  std::string header = "{";
  for (int i = 0; i < kCount; ++i) {
    header += (i ? "," : "") + Entry("t" + std::to_string(i), "U8", "[1]", i, i + 1);
  }
  header += "}";
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> f =
      OpenBytes(dir, Safetensors(header, std::string(kCount, 'x')));
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->tensors().size(), static_cast<size_t>(kCount));
  EXPECT_EQ((*f)->Find("t99999")->data_begin, 99999u);
}

// A9: a file truncated mid-tensor is rejected by the tiling rule before any data is read.
TEST(SafetensorsTest, TruncatedMidTensor) {
  TempDir dir;
  std::string bytes = Safetensors("{" + kA + "," + Entry("b", "F32", "[2]", 8, 16) + "}", k8 + k8);
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> f = OpenBytes(dir, bytes.substr(0, bytes.size() - 3));
  EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(f.status().message()),
              HasSubstr("tensor \"b\": data_offsets [8, 16] extend past the data buffer of 13 bytes"));
}

// A9: truncated after Open: the pread path and CheckUnchanged report it; nothing faults.
TEST(SafetensorsTest, TruncatedWhileOpen) {
  TempDir dir;
  std::string bytes = Safetensors("{" + kA + "}", k8);
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> f = OpenBytes(dir, bytes);
  ASSERT_TRUE(f.ok()) << f.status();
  ASSERT_EQ(::truncate((dir / "x.safetensors").c_str(), 10), 0);
  std::array<uint8_t, 8> out{};
  absl::Status s = (*f)->Read(*(*f)->Find("a"), out);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("x.safetensors: file shrank while being read"));
  s = (*f)->file().CheckUnchanged();
  EXPECT_THAT(std::string(s.message()), HasSubstr("file changed during load"));
}

TEST(SafetensorsTest, FifoAndDevicesRefusedWithoutBlocking) {
  TempDir dir;
  ASSERT_EQ(::mkfifo((dir / "fifo").c_str(), 0600), 0);
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> f = SafetensorsFile::Open(dir / "fifo", "fifo");
  EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(f.status().message()), HasSubstr("fifo: not a regular file"));
  f = SafetensorsFile::Open("/dev/zero", "zero");
  EXPECT_THAT(std::string(f.status().message()), HasSubstr("zero: not a regular file"));
  f = SafetensorsFile::Open(dir / "missing", "missing.safetensors");
  EXPECT_EQ(f.status().code(), absl::StatusCode::kNotFound);
}

TEST(SafetensorsTest, PermissionDenied) {
  if (testing::RunningAsRoot()) GTEST_SKIP() << "root ignores file permissions";
  TempDir dir;
  WriteFile(dir / "x.safetensors", Safetensors("{}"));
  ASSERT_EQ(::chmod((dir / "x.safetensors").c_str(), 0), 0);
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> f =
      SafetensorsFile::Open(dir / "x.safetensors", "x.safetensors");
  EXPECT_EQ(f.status().code(), absl::StatusCode::kPermissionDenied);
}

// Written by safetensors.torch.save_file (testdata/make_testdata.py).
TEST(SafetensorsTest, ReadsFilesWrittenByTheReferenceLibrary) {
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> f =
      SafetensorsFile::Open(kTestdata + "/interop.safetensors", "interop.safetensors");
  ASSERT_TRUE(f.ok()) << f.status();
  const SafetensorsFile& file = **f;
  EXPECT_EQ(file.tensors().size(), 6u);
  EXPECT_EQ(file.metadata().at("format"), "pt");
  EXPECT_EQ(file.metadata().at("note"), "kiln interop");
  const TensorInfo* b = file.Find("b.f32");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->dtype, DType::kF32);
  EXPECT_EQ(b->shape, std::vector<int64_t>({2, 3}));
  std::vector<float> values(6);
  std::memcpy(values.data(), file.Data(*b).data(), 24);
  EXPECT_EQ(values, std::vector<float>({0, 0.25, 0.5, 0.75, 1.0, 1.25}));
  const TensorInfo* a = file.Find("a.bf16");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->dtype, DType::kBF16);
  uint16_t bf[4];
  std::memcpy(bf, file.Data(*a).data(), 8);
  EXPECT_EQ(kernels::BFloat16ToFloat(bf[3]), 3.0f);
  const TensorInfo* c = file.Find("c.i64");
  ASSERT_NE(c, nullptr);
  EXPECT_TRUE(c->shape.empty());
  int64_t seven;
  std::memcpy(&seven, file.Data(*c).data(), 8);
  EXPECT_EQ(seven, 7);
  EXPECT_EQ(file.Find("d.empty")->num_bytes(), 0u);
  EXPECT_EQ(file.Find("d.empty")->dtype, DType::kF16);
  EXPECT_EQ(file.Find("e.u8")->dtype, DType::kU8);
  uint16_t h[2];
  std::memcpy(h, file.Data(*file.Find("f.f16")).data(), 4);
  EXPECT_EQ(kernels::HalfToFloat(h[0]), 1.5f);
  EXPECT_EQ(kernels::HalfToFloat(h[1]), -2.0f);
}

}  // namespace
}  // namespace kiln::engine
