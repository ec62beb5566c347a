// Component coverage against the reference: testdata/components.json holds, per variant, a
// family tokenizer.json with one component swapped (Split behaviours, invert, empty matches,
// look-behind, Digits, NFKC/NFD/Lowercase/StripAccents/Strip/Replace/Prepend, Metaspace schemes
// and legacy fields, unk with/without fuse_unk, ignore_merges, templates, Roberta, decoders)
// and the ids/decodes tokenizers 0.23.3 produced on the corpus. Plus the regex budget.
#include <chrono>
#include <string>
#include <thread>
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
using Json = nlohmann::json;

Json LoadJson(const std::string& path) { return Json::parse(ReadFileOrEmpty(path), nullptr, false); }

Json WithOverrides(const std::string& base, const Json& overrides) {
  Json tj = LoadJson(TestdataDir(base) + "/tokenizer.json");
  for (auto it = overrides.begin(); it != overrides.end(); ++it) {
    const std::string& key = it.key();
    if (key.rfind("model_", 0) == 0) {
      tj["model"][key.substr(6)] = it.value();
    } else {
      tj[key] = it.value();
    }
  }
  return tj;
}

TEST(TokenizerComponents, EveryVariantMatchesReference) {
  const Json ref = LoadJson(TestdataDir("components.json"));
  ASSERT_FALSE(ref.is_discarded());
  const Json& texts = ref["texts"];
  ASSERT_GE(ref["variants"].size(), 20u);
  for (const Json& v : ref["variants"]) {
    const std::string name = v["name"].get<std::string>();
    SCOPED_TRACE(name);
    auto tok = Tokenizer::FromJson(WithOverrides(v["base"], v["overrides"]).dump());
    ASSERT_TRUE(tok.ok()) << tok.status();
    ASSERT_EQ(v["cases"].size(), texts.size());
    for (size_t i = 0; i < texts.size(); ++i) {
      const std::string text = texts[i].get<std::string>();
      const auto want = v["cases"][i]["ids"].get<std::vector<int32_t>>();
      auto ids = (*tok)->Encode(text, /*add_special_tokens=*/true);
      ASSERT_TRUE(ids.ok()) << ids.status();
      EXPECT_EQ(*ids, want) << "text #" << i << ": " << text;
      auto decoded = (*tok)->Decode(want, /*skip_special_tokens=*/false);
      ASSERT_TRUE(decoded.ok()) << decoded.status();
      EXPECT_EQ(*decoded, v["cases"][i]["decoded"].get<std::string>()) << "text #" << i;
    }
  }
}

Json SplitTokenizer(const std::string& regex, const std::string& behavior) {
  return WithOverrides(
      "gpt2", Json{{"pre_tokenizer",
                    {{"type", "Sequence"},
                     {"pretokenizers",
                      {{{"type", "Split"}, {"pattern", {{"Regex", regex}}}, {"behavior", behavior},
                        {"invert", false}},
                       {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}}}});
}

TEST(TokenizerComponents, NestedQuantifierFromPr2060IsFast) {
  // tokenizers PR #2060: Split (a+)+ Removed on "a"*30+"b" backtracks for minutes on Oniguruma.
  auto tok = Tokenizer::FromJson(SplitTokenizer("(a+)+", "Removed").dump());
  ASSERT_TRUE(tok.ok()) << tok.status();
  auto plain = Tokenizer::FromJson(ReadFileOrEmpty(TestdataDir("gpt2") + "/tokenizer.json"));
  ASSERT_TRUE(plain.ok());
  const auto start = std::chrono::steady_clock::now();
  auto ids = (*tok)->Encode(std::string(30, 'a') + "b", false);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(ids.ok()) << ids.status();
  // Removed drops the a-run: what is left is exactly "b".
  EXPECT_EQ(*ids, *(*plain)->Encode("b", false));
  EXPECT_LT(elapsed, std::chrono::seconds(1));
}

TEST(TokenizerComponents, CatastrophicBacktrackingHitsTheBudget) {
  // PCRE2 optimizes the textbook (a+)+$ away; these still explode on a backtracking engine
  // (the required final character is present, so no shortcut rejects the attempt).
  const std::pair<std::string, std::string> kCases[] = {
      {"(x+x+)+y", std::string(40, 'x') + "zy"},
      {"(a|aa)+b", std::string(60, 'a') + "cb"},
      {"(\\w+\\s?)+$", std::string(40, 'w') + "!"}};
  for (const auto& [pattern, text] : kCases) {
    auto tok = Tokenizer::FromJson(SplitTokenizer(pattern, "Isolated").dump());
    ASSERT_TRUE(tok.ok()) << tok.status();
    const auto start = std::chrono::steady_clock::now();
    auto ids = (*tok)->Encode(text, false);
    const auto elapsed = std::chrono::steady_clock::now() - start;
    ASSERT_FALSE(ids.ok()) << pattern;
    EXPECT_EQ(ids.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(ids.status().message(), HasSubstr("pre_tokenizer Split"));
    EXPECT_THAT(ids.status().message(), HasSubstr("budget"));
    EXPECT_LT(elapsed, std::chrono::seconds(5)) << pattern;
  }
  // The same budget guards the Replace normalizer.
  Json tj = WithOverrides(
      "gpt2", Json{{"normalizer",
                    {{"type", "Replace"}, {"pattern", {{"Regex", "(x+x+)+y"}}}, {"content", "x"}}}});
  auto tok = Tokenizer::FromJson(tj.dump());
  ASSERT_TRUE(tok.ok()) << tok.status();
  auto ids = (*tok)->Encode(std::string(40, 'x') + "zy", false);
  ASSERT_FALSE(ids.ok());
  EXPECT_THAT(ids.status().message(), HasSubstr("normalizer Replace"));
}

TEST(TokenizerComponents, LongInputsStayWithinBudgetAndGrowLinearly) {
  // Real patterns on long runs of one character class must neither hit the budget nor go
  // quadratic. Growth is judged as a ratio inside this process (8x the input: linear ~8x the
  // time, quadratic ~64x), not against a wall clock, so a slow or sanitized build passes too.
  auto tok = Tokenizer::FromDirectory(TestdataDir("llama3"));
  ASSERT_TRUE(tok.ok()) << tok.status();
  auto encode_seconds = [&](const std::string& unit, size_t bytes) {
    std::string text;
    while (text.size() < bytes) text += unit;
    const auto start = std::chrono::steady_clock::now();
    auto ids = (*tok)->Encode(text, false);
    const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
    EXPECT_TRUE(ids.ok()) << ids.status();
    EXPECT_TRUE(ids.ok() && !ids->empty());
    return elapsed.count();
  };
  for (const std::string unit : {"a", " ", "\n", "1", "!", "\xE6\x97\xA5"}) {
    const double small = encode_seconds(unit, 64u << 10), large = encode_seconds(unit, 512u << 10);
    // 24x: three times linear, well under quadratic; 20 ms absorbs timer noise on tiny runs.
    EXPECT_LT(large, 24 * small + 0.02) << "unit '" << unit << "': " << small << " s for 64 KiB, "
                                        << large << " s for 512 KiB";
  }
}

TEST(TokenizerComponents, ConcurrentEncodesAgree) {
  // One Tokenizer shared by several threads (the per-thread JIT stack and per-call match data
  // make Encode reentrant) gives every thread the single-threaded answer.
  auto tok = Tokenizer::FromDirectory(TestdataDir("qwen2"));
  ASSERT_TRUE(tok.ok()) << tok.status();
  const Json ref = LoadJson(TestdataDir("qwen2") + "/reference.json");
  std::vector<std::string> texts;
  for (const Json& t : ref["texts"]) texts.push_back(t.get<std::string>());
  std::vector<std::vector<int32_t>> want;
  for (const std::string& t : texts) want.push_back(*(*tok)->Encode(t, true));
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (int w = 0; w < 4; ++w) {
    threads.emplace_back([&, w] {
      for (int round = 0; round < 20; ++round) {
        for (size_t i = 0; i < texts.size(); ++i) {
          auto ids = (*tok)->Encode(texts[i], true);
          if (!ids.ok() || *ids != want[i]) ++mismatches[w];
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(mismatches, std::vector<int>(4, 0));
}

}  // namespace
}  // namespace kiln::tokenizer
