// Hostile or malformed tokenizer files (reliability A12) are rejected at load with a status that
// names the field; bad encode inputs are INVALID_ARGUMENT; decode never fails on unknown ids.
#include <filesystem>
#include <string>
#include <vector>

#include "engine/tokenizer/tokenizer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/engine/tokenizer/test_util.h"

namespace kiln::tokenizer {
namespace {

using ::kiln::tokenizer::testing::ReadFileOrEmpty;
using ::kiln::tokenizer::testing::TestdataDir;
using ::testing::HasSubstr;
using ::testing::Not;
using Json = nlohmann::json;

Json Base(const std::string& family = "gpt2") {
  return Json::parse(ReadFileOrEmpty(TestdataDir(family) + "/tokenizer.json"), nullptr, false);
}

// Base() without the added tokens that sit after the model vocab, so tests can grow the vocab
// (a bigger vocab moves where tokenizers puts new added tokens).
Json BaseVocabOnly(const std::string& family = "gpt2") {
  Json tj = Base(family);
  Json kept = Json::array();
  for (const Json& t : tj["added_tokens"]) {
    if (tj["model"]["vocab"].contains(t["content"].get<std::string>())) kept.push_back(t);
  }
  tj["added_tokens"] = kept;
  return tj;
}

void ExpectError(const Json& tj, absl::StatusCode code, const std::string& substr) {
  auto tok = Tokenizer::FromJson(tj.dump());
  ASSERT_FALSE(tok.ok()) << "loaded, expected: " << substr;
  EXPECT_EQ(tok.status().code(), code) << tok.status();
  EXPECT_THAT(tok.status().message(), HasSubstr(substr));
}

TEST(TokenizerValidation, BaseLoads) { ASSERT_TRUE(Tokenizer::FromJson(Base().dump()).ok()); }

TEST(TokenizerValidation, MalformedJson) {
  for (const std::string text : {"", "{", "[1,2]", "{\"model\": 3}", "not json"}) {
    auto tok = Tokenizer::FromJson(text);
    ASSERT_FALSE(tok.ok()) << text;
    EXPECT_EQ(tok.status().code(), absl::StatusCode::kInvalidArgument) << text;
  }
}

TEST(TokenizerValidation, DepthAndSizeLimits) {
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  auto tok = Tokenizer::FromJson(deep);
  ASSERT_FALSE(tok.ok());
  EXPECT_THAT(tok.status().message(), HasSubstr("nests deeper"));
  TokenizerLimits small;
  small.max_json_bytes = 1000;
  auto big = Tokenizer::FromJson(Base().dump(), {}, {}, small);
  ASSERT_FALSE(big.ok());
  EXPECT_THAT(big.status().message(), HasSubstr("over the limit of 1000"));
  TokenizerLimits few;
  few.max_vocab_size = 100;
  auto vocab = Tokenizer::FromJson(Base().dump(), {}, {}, few);
  ASSERT_FALSE(vocab.ok());
  EXPECT_THAT(vocab.status().message(), HasSubstr("model.vocab"));
}

TEST(TokenizerValidation, UnsupportedComponentsAreUnimplementedAndNamed) {
  Json tj = Base();
  tj["model"]["type"] = "WordPiece";
  ExpectError(tj, absl::StatusCode::kUnimplemented, "WordPiece");
  tj = Base();
  tj["normalizer"] = {{"type", "BertNormalizer"}};
  ExpectError(tj, absl::StatusCode::kUnimplemented, "BertNormalizer");
  tj = Base();
  tj["pre_tokenizer"] = {{"type", "Sequence"}, {"pretokenizers", {{{"type", "Whitespace"}}}}};
  ExpectError(tj, absl::StatusCode::kUnimplemented, "pre_tokenizer.pretokenizers[0]");
  tj = Base();
  tj["decoder"] = {{"type", "WordPiece"}};
  ExpectError(tj, absl::StatusCode::kUnimplemented, "decoder type 'WordPiece'");
  tj = Base();
  tj["post_processor"] = {{"type", "Mystery"}};
  ExpectError(tj, absl::StatusCode::kUnimplemented, "Mystery");
  tj = Base();
  tj["model"]["dropout"] = 0.1;
  ExpectError(tj, absl::StatusCode::kUnimplemented, "dropout");
}

TEST(TokenizerValidation, VocabIdsMustBeUniqueAndInRange) {
  Json tj = Base();
  tj["model"]["vocab"]["zzzz"] = 5;
  ExpectError(tj, absl::StatusCode::kInvalidArgument, "id 5 is used by both");
  tj = Base();
  tj["model"]["vocab"]["zzzz"] = -1;
  ExpectError(tj, absl::StatusCode::kInvalidArgument, "has id -1");
  tj = Base();
  tj["model"]["vocab"]["zzzz"] = 1 << 30;
  ExpectError(tj, absl::StatusCode::kInvalidArgument, "zzzz");
  tj = Base();
  tj["model"]["vocab"]["zzzz"] = "7";
  ExpectError(tj, absl::StatusCode::kInvalidArgument, "must be an integer id");
  // Gaps are allowed, as in tokenizers; the gap id has no token.
  tj = BaseVocabOnly();
  tj["model"]["vocab"]["zzzz"] = 5000;
  auto tok = Tokenizer::FromJson(tj.dump());
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_FALSE((*tok)->IdToToken(4000).has_value());
  EXPECT_EQ((*tok)->IdToToken(5000), "zzzz");
  EXPECT_EQ((*tok)->id_bound(), 5001u);
}

TEST(TokenizerValidation, MergesMustNameVocabTokens) {
  Json tj = Base();
  tj["model"]["merges"].push_back(Json::array({"q", "zzzz"}));
  ExpectError(tj, absl::StatusCode::kInvalidArgument, "names token 'zzzz'");
  tj = Base();
  tj["model"]["merges"] = Json::array({"a b c"});
  ExpectError(tj, absl::StatusCode::kInvalidArgument, "model.merges[0]");
  tj = Base();
  tj["model"]["merges"] = Json::array({Json::array({"1", "2", "3"})});
  ExpectError(tj, absl::StatusCode::kInvalidArgument, "model.merges[0]");
  tj = Base();
  tj["model"]["vocab"]["Q"] = 9000;
  tj["model"]["vocab"]["R"] = 9001;
  tj["model"]["merges"].push_back("Q R");  // "QR" is not a token
  ExpectError(tj, absl::StatusCode::kInvalidArgument, "produces 'QR'");
}

TEST(TokenizerValidation, AddedTokenIdsMustBeConsistent) {
  Json tj = Base();
  tj["added_tokens"].push_back({{"id", 3}, {"content", "<new>"}, {"special", true}});
  ExpectError(tj, absl::StatusCode::kInvalidArgument, "'<new>' declares id 3");
  tj = Base();
  tj["added_tokens"].push_back({{"id", 100000}, {"content", "<new>"}, {"special", true}});
  ExpectError(tj, absl::StatusCode::kInvalidArgument, "declares id 100000");
  tj = Base();
  tj["added_tokens"].push_back(tj["added_tokens"][0]);
  ExpectError(tj, absl::StatusCode::kInvalidArgument, "listed twice");
  // An added token whose natural id lands on a model token (vocab with a gap below it).
  tj = BaseVocabOnly();
  const int64_t size = static_cast<int64_t>(tj["model"]["vocab"].size());
  tj["model"]["vocab"]["gap_filler"] = size + 1;
  tj["added_tokens"].push_back({{"id", size + 1}, {"content", "<x>"}, {"special", true}});
  ExpectError(tj, absl::StatusCode::kInvalidArgument, "<x>");
}

TEST(TokenizerValidation, TemplateIdsMustBeTokens) {
  Json tj = Base();
  tj["post_processor"] = {
      {"type", "TemplateProcessing"},
      {"single", {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                  {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
      {"pair", Json::array()},
      {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {99999}}, {"tokens", {"<s>"}}}}}}};
  ExpectError(tj, absl::StatusCode::kInvalidArgument, "99999");
  tj["post_processor"]["special_tokens"] = Json::object();
  ExpectError(tj, absl::StatusCode::kInvalidArgument, "'<s>' has no ids");
}

TEST(TokenizerValidation, BadRegexNamesTheComponent) {
  Json tj = Base();
  tj["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}},
                         {"behavior", "Isolated"}, {"invert", false}};
  ExpectError(tj, absl::StatusCode::kInvalidArgument, "pre_tokenizer Split");
  tj["pre_tokenizer"]["behavior"] = "Sideways";
  tj["pre_tokenizer"]["pattern"] = {{"String", "x"}};
  ExpectError(tj, absl::StatusCode::kInvalidArgument, "Sideways");
}

TEST(TokenizerValidation, OddByteTokensAreOrdinaryTokens) {
  // "<0xZZ>", "<0x-1>" and "<0x100>" are not byte tokens: they load and decode literally, while
  // "<0x+A>" is byte 0x0A for ByteFallback (Rust's from_str_radix accepts a leading '+').
  Json tj = BaseVocabOnly("llama2");
  int32_t next = 5000;
  std::vector<int32_t> ids;
  for (const char* t : {"<0xZZ>", "<0x-1>", "<0x100>", "<0x+A>"}) {
    tj["model"]["vocab"][t] = next;
    ids.push_back(next++);
  }
  auto tok = Tokenizer::FromJson(tj.dump());
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->Decode(ids, false).value_or(""), "<0xZZ><0x-1><0x100>\n");
}

TEST(TokenizerValidation, EncodeRejectsBadInput) {
  TokenizerLimits limits;
  limits.max_input_bytes = 100;
  auto tok = Tokenizer::FromJson(Base().dump(), {}, {}, limits);
  ASSERT_TRUE(tok.ok());
  for (const std::string& bad : {std::string("\xFF"), std::string("ab\xC3"), std::string("\xED\xA0\x80"),
                                std::string("\xC0\xAF")}) {
    auto ids = (*tok)->Encode(bad, false);
    ASSERT_FALSE(ids.ok());
    EXPECT_EQ(ids.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(ids.status().message(), HasSubstr("UTF-8"));
  }
  auto long_input = (*tok)->Encode(std::string(101, 'a'), false);
  ASSERT_FALSE(long_input.ok());
  EXPECT_THAT(long_input.status().message(), HasSubstr("over the limit of 100"));
}

TEST(TokenizerValidation, DecodeDropsUnknownIdsLikeTokenizers) {
  auto tok = Tokenizer::FromJson(Base().dump());
  ASSERT_TRUE(tok.ok());
  const auto hello = *(*tok)->Encode("hello world", false);
  std::vector<int32_t> noisy = {-7, hello[0], 1 << 30};
  noisy.insert(noisy.end(), hello.begin() + 1, hello.end());
  noisy.push_back(999999);
  EXPECT_EQ((*tok)->Decode(noisy, false).value_or("<err>"), "hello world");
}

TEST(TokenizerValidation, UnkTokenOutsideVocabFailsOnlyWhenNeeded) {
  Json tj = Base("llama2");
  tj["model"]["byte_fallback"] = false;
  tj["model"]["unk_token"] = "<missing>";
  auto tok = Tokenizer::FromJson(tj.dump());
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_TRUE((*tok)->Encode("the", false).ok());
  auto ids = (*tok)->Encode("\xF0\x9F\x98\x80", false);
  ASSERT_FALSE(ids.ok());
  EXPECT_THAT(ids.status().message(), HasSubstr("unk_token '<missing>'"));
}

TEST(TokenizerValidation, FromDirectoryDoesNotLeakPaths) {
  const std::string dir = "/nonexistent/secret-root/model";
  auto tok = Tokenizer::FromDirectory(dir);
  ASSERT_FALSE(tok.ok());
  EXPECT_EQ(tok.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(tok.status().message(), HasSubstr("tokenizer.json"));
  EXPECT_THAT(tok.status().message(), Not(HasSubstr("secret-root")));
}

TEST(TokenizerValidation, BadTokenizerConfig) {
  const std::string tj = Base().dump();
  auto tok = Tokenizer::FromJson(tj, "[1]");
  ASSERT_FALSE(tok.ok());
  EXPECT_THAT(tok.status().message(), HasSubstr("tokenizer_config.json"));
  tok = Tokenizer::FromJson(tj, R"({"bos_token": 7})");
  ASSERT_FALSE(tok.ok());
  EXPECT_THAT(tok.status().message(), HasSubstr("bos_token"));
  tok = Tokenizer::FromJson(tj, R"({"split_special_tokens": "yes"})");
  ASSERT_FALSE(tok.ok());
  EXPECT_THAT(tok.status().message(), HasSubstr("split_special_tokens"));
}

}  // namespace
}  // namespace kiln::tokenizer
