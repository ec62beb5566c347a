// StreamingDetokenizer: concatenated deltas + Flush == Decode(all ids) on every reference corpus
// string and crafted id sequence of every family, each delta valid UTF-8.
#include "engine/tokenizer/streaming_detokenizer.h"

#include <string>
#include <vector>

#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/unicode.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/engine/tokenizer/test_util.h"

namespace kiln::tokenizer {
namespace {

using ::kiln::tokenizer::testing::ReadFileOrEmpty;
using ::kiln::tokenizer::testing::TestdataDir;
using Json = nlohmann::json;

// Streams `ids` and checks the invariant; returns the number of non-empty deltas.
size_t CheckStream(const Tokenizer& tok, const std::vector<int32_t>& ids, bool skip,
                   const std::string& what) {
  StreamingDetokenizer detok(&tok, skip);
  std::string streamed;
  size_t pieces = 0;
  for (int32_t id : ids) {
    auto delta = detok.Push(id);
    EXPECT_TRUE(delta.ok()) << delta.status();
    if (!delta.ok()) return pieces;
    EXPECT_TRUE(IsValidUtf8(*delta)) << what;
    if (!delta->empty()) ++pieces;
    streamed += *delta;
  }
  auto rest = detok.Flush();
  EXPECT_TRUE(rest.ok()) << rest.status();
  if (!rest.ok()) return pieces;
  EXPECT_TRUE(IsValidUtf8(*rest)) << what;
  streamed += *rest;
  auto full = tok.Decode(ids, skip);
  EXPECT_TRUE(full.ok()) << full.status();
  if (full.ok()) {
    EXPECT_EQ(streamed, *full) << what << " skip=" << skip;
  }
  return pieces;
}

class StreamingTest : public ::testing::TestWithParam<std::string> {};

TEST_P(StreamingTest, DeltasConcatenateToDecode) {
  const std::string dir = TestdataDir(GetParam());
  const Json ref = Json::parse(ReadFileOrEmpty(dir + "/reference.json"), nullptr, false);
  ASSERT_FALSE(ref.is_discarded());
  auto tok = Tokenizer::FromDirectory(dir);
  ASSERT_TRUE(tok.ok()) << tok.status();
  size_t streamed_pieces = 0;
  for (const char* list : {"cases", "decode_cases"}) {
    const Json& cases = ref["auto"][list];
    for (size_t i = 0; i < cases.size(); ++i) {
      const auto ids = cases[i]["ids"].get<std::vector<int32_t>>();
      for (bool skip : {false, true}) {
        streamed_pieces += CheckStream(**tok, ids, skip, std::string(list) + " #" + std::to_string(i));
      }
    }
  }
  // The detokenizer really streams (it does not just hold everything until Flush).
  EXPECT_GT(streamed_pieces, 200u);
}

INSTANTIATE_TEST_SUITE_P(Families, StreamingTest,
                         ::testing::Values("gpt2", "gpt2_added", "llama2", "mistral", "llama3",
                                           "qwen2"));

TEST(StreamingDetokenizer, HoldsBackPartialCharacters) {
  auto tok = Tokenizer::FromDirectory(TestdataDir("gpt2"));
  ASSERT_TRUE(tok.ok()) << tok.status();
  // "😀" is four byte-level tokens in this tiny vocab: nothing may come out before the last.
  auto ids = (*tok)->Encode("\xF0\x9F\x98\x80", false);
  ASSERT_TRUE(ids.ok());
  ASSERT_GE(ids->size(), 2u);
  StreamingDetokenizer detok(tok->get(), false);
  for (size_t i = 0; i + 1 < ids->size(); ++i) {
    auto d = detok.Push((*ids)[i]);
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(*d, "");
  }
  auto last = detok.Push(ids->back());
  ASSERT_TRUE(last.ok());
  EXPECT_EQ(*last, "\xF0\x9F\x98\x80");
}

TEST(StreamingDetokenizer, ByteFallbackRunsAreHeldUntilClosed) {
  auto tok = Tokenizer::FromDirectory(TestdataDir("llama2"));
  ASSERT_TRUE(tok.ok()) << tok.status();
  const int32_t a = *(*tok)->TokenToId("<0x41>");   // 'A' as a byte token
  const int32_t c3 = *(*tok)->TokenToId("<0xC3>");  // starts a 2-byte sequence, never finished
  const int32_t x = *(*tok)->TokenToId("x");
  // Decode turns the invalid run "A\xC3" into two U+FFFD (not "A" + U+FFFD): emitting "A" early
  // would break the invariant, so nothing may be emitted before the run is closed.
  StreamingDetokenizer detok(tok->get(), false);
  EXPECT_EQ(*detok.Push(a), "");
  EXPECT_EQ(*detok.Push(c3), "");
  EXPECT_EQ(*detok.Push(x), "\xEF\xBF\xBD\xEF\xBF\xBDx");
  EXPECT_EQ(*detok.Flush(), "");
}

TEST(StreamingDetokenizer, WorkStaysBoundedOnLongStreams) {
  auto tok = Tokenizer::FromDirectory(TestdataDir("llama3"));
  ASSERT_TRUE(tok.ok()) << tok.status();
  std::string text;
  for (int i = 0; i < 2000; ++i) text += "the model world " + std::to_string(i) + "\n";
  auto ids = (*tok)->Encode(text, false);
  ASSERT_TRUE(ids.ok());
  ASSERT_GT(ids->size(), 10000u);
  CheckStream(**tok, *ids, false, "long");
}

}  // namespace
}  // namespace kiln::tokenizer
