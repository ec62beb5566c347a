#include "engine/io/json_util.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/engine/io/io_test_util.h"

namespace kiln::engine {
namespace {

using ::testing::HasSubstr;

std::string Message(const absl::Status& s) { return std::string(s.message()); }

TEST(JsonUtilTest, ParsesAndRejectsDuplicateKeysAtAnyDepth) {
  absl::StatusOr<nlohmann::json> ok = ParseJson(R"({"a": {"b": 1, "c": [1, {"b": 2}]}})", "f.json");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ((*ok)["a"]["b"], 1);
  absl::Status dup = ParseJson(R"({"a": {"b": 1, "b": 2}})", "f.json").status();
  EXPECT_EQ(dup.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Message(dup), "f.json: duplicate key \"b\"");
  // Same key in sibling objects is fine.
  EXPECT_TRUE(ParseJson(R"([{"b": 1}, {"b": 2}])", "f.json").ok());
}

TEST(JsonUtilTest, DepthIsCheckedBeforeParsing) {
  EXPECT_TRUE(CheckJsonDepth("[[[]]]", 3, "f").ok());
  EXPECT_FALSE(CheckJsonDepth("[[[[]]]]", 3, "f").ok());
  // Brackets inside strings (and escaped quotes) do not count.
  EXPECT_TRUE(CheckJsonDepth(R"(["[[[[\"[[[["])", 1, "f").ok());
  absl::Status s = ParseJson(std::string(1 << 20, '['), "f.json").status();
  EXPECT_THAT(Message(s), HasSubstr("f.json: JSON nesting depth exceeds the limit of 64"));
}

TEST(JsonUtilTest, Utf8Validation) {
  EXPECT_TRUE(CheckUtf8("plain \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "f").ok());
  for (std::string bad : {"\xff", "\xc0\xaf", "\xe0\x80\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80",
                          "\xc3", "\x80"}) {
    EXPECT_EQ(CheckUtf8(bad, "f").code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST(JsonUtilTest, SizeLimitAndSyntaxErrors) {
  JsonLimits limits;
  limits.max_bytes = 10;
  EXPECT_THAT(Message(ParseJson(R"({"a": "0123456789"})", "f.json", limits).status()),
              HasSubstr("over the limit of 10"));
  absl::Status s = ParseJson("{\"a\": \x01}", "f.json").status();
  EXPECT_THAT(Message(s), HasSubstr("f.json: invalid JSON at byte"));
  EXPECT_EQ(Message(s).find('\x01'), std::string::npos);
  EXPECT_FALSE(ParseJson("{} x", "f.json").ok());
  EXPECT_FALSE(ParseJson("{\"a\": NaN}", "f.json").ok());
}

TEST(JsonUtilTest, QuoteForMessageEscapesAndCaps) {
  EXPECT_EQ(QuoteForMessage(std::string("a\0\"\n\xff", 5)), "\"a\\x00\\\"\\x0a\\xff\"");
  EXPECT_EQ(QuoteForMessage(std::string(100, 'x'), 10), "\"xxxxxxxxxx...\"");
}

TEST(JsonUtilTest, TypedGettersNameFileAndField) {
  const nlohmann::json j = *ParseJson(
      R"({"s": "4096", "i": 4096, "neg": -3, "f": 1.5, "fi": 4096.0, "b": true, "n": null,
          "l": [1, 2], "bad_l": [1, "2"], "big": 18446744073709551615})",
      "config.json");
  const JsonFields f(j, "config.json");
  EXPECT_EQ(Message(f.RequiredPositiveInt("s").status()),
            "config.json: s: expected a positive integer, got \"4096\"");
  EXPECT_EQ(*f.RequiredPositiveInt("i"), 4096);
  EXPECT_EQ(Message(f.RequiredPositiveInt("neg").status()),
            "config.json: neg: expected a positive integer, got -3");
  EXPECT_EQ(*f.RequiredInt("neg"), -3);
  EXPECT_FALSE(f.OptionalInt("fi").ok());  // 4096.0 is not an integer
  EXPECT_FALSE(f.OptionalInt("big").ok());
  EXPECT_EQ(Message(f.RequiredInt("missing").status()), "config.json: missing: missing required integer");
  EXPECT_FALSE(f.OptionalInt("n")->has_value());
  EXPECT_FALSE(f.OptionalInt("missing")->has_value());
  EXPECT_DOUBLE_EQ(**f.OptionalNumber("f"), 1.5);
  EXPECT_DOUBLE_EQ(**f.OptionalNumber("i"), 4096.0);
  EXPECT_FALSE(f.OptionalNumber("s").ok());
  EXPECT_TRUE(**f.OptionalBool("b"));
  EXPECT_FALSE(f.OptionalBool("i").ok());
  EXPECT_EQ(**f.OptionalString("s"), "4096");
  EXPECT_EQ(*f.IntOrIntList("l"), std::vector<int64_t>({1, 2}));
  EXPECT_EQ(*f.IntOrIntList("i"), std::vector<int64_t>({4096}));
  EXPECT_TRUE(f.IntOrIntList("n")->empty());
  EXPECT_EQ(Message(f.IntOrIntList("bad_l").status()),
            "config.json: bad_l: expected an integer or a list of integers, got [1,\"2\"]");
  const JsonFields nested(j, "config.json", "rope_scaling.");
  EXPECT_EQ(Message(nested.TypeError("s", "a number")),
            "config.json: rope_scaling.s: expected a number, got \"4096\"");
}

TEST(JsonUtilTest, ReadJsonFileRefusesNonRegularFiles) {
  testing::TempDir dir;
  testing::WriteFile(dir / "c.json", R"({"a": 1})");
  EXPECT_TRUE(ReadJsonFile(dir / "c.json", "c.json").ok());
  EXPECT_EQ(ReadJsonFile(dir / "nope.json", "nope.json").status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Message(ReadJsonFile("/dev/zero", "zero.json").status()),
              HasSubstr("zero.json: not a regular file"));
}

}  // namespace
}  // namespace kiln::engine
