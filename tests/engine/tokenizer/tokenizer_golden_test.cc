// Golden parity with AutoTokenizer on the committed fixtures (tests/golden/fixtures, written by
// tools/fixtures): for every model, every case of reference/<name>/tokens.json must give the same
// ids (with and without special tokens), tokens and decodes; streaming must match Decode.
#include <string>
#include <vector>

#include "engine/tokenizer/streaming_detokenizer.h"
#include "engine/tokenizer/tokenizer.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/engine/tokenizer/test_util.h"

namespace kiln::tokenizer {
namespace {

using ::kiln::tokenizer::testing::ReadFileOrEmpty;
using Json = nlohmann::json;

const std::string kFixtures = std::string(KILN_SOURCE_DIR) + "/tests/golden/fixtures";

std::optional<int32_t> OptionalId(const Json& j) {
  if (j.is_null()) return std::nullopt;
  return j.get<int32_t>();
}

class TokenizerGoldenTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    ref_ = Json::parse(ReadFileOrEmpty(kFixtures + "/reference/" + GetParam() + "/tokens.json"),
                       nullptr, false);
    ASSERT_FALSE(ref_.is_discarded()) << "missing tokens.json for " << GetParam();
    auto tok = Tokenizer::FromDirectory(kFixtures + "/models/" + GetParam());
    ASSERT_TRUE(tok.ok()) << tok.status();
    tok_ = std::move(tok).value();
  }
  Json ref_;
  std::unique_ptr<Tokenizer> tok_;
};

TEST_P(TokenizerGoldenTest, IdsTokensAndDecodesMatchAutoTokenizer) {
  ASSERT_GT(ref_["cases"].size(), 20u);
  for (const Json& c : ref_["cases"]) {
    const std::string name = c["name"].get<std::string>();
    const std::string text = c["text"].get<std::string>();
    const auto ids = c["ids"].get<std::vector<int32_t>>();
    const auto ids_ns = c["ids_no_special"].get<std::vector<int32_t>>();
    auto got = tok_->Encode(text, true);
    auto got_ns = tok_->Encode(text, false);
    ASSERT_TRUE(got.ok() && got_ns.ok()) << name;
    EXPECT_EQ(*got, ids) << name;
    EXPECT_EQ(*got_ns, ids_ns) << name;
    std::vector<std::string> tokens;
    for (int32_t id : ids) tokens.push_back(tok_->IdToToken(id).value_or("<none>"));
    EXPECT_EQ(tokens, c["tokens"].get<std::vector<std::string>>()) << name;
    EXPECT_EQ(tok_->Decode(ids, false).value_or("<err>"), c["decoded"].get<std::string>()) << name;
    EXPECT_EQ(tok_->Decode(ids, true).value_or("<err>"), c["decoded_skip"].get<std::string>())
        << name;
    EXPECT_EQ(tok_->Decode(ids_ns, false).value_or("<err>"),
              c["decoded_no_special"].get<std::string>())
        << name;
    for (bool skip : {false, true}) {
      StreamingDetokenizer detok(tok_.get(), skip);
      std::string streamed;
      for (int32_t id : ids) streamed += detok.Push(id).value_or("<err>");
      streamed += detok.Flush().value_or("<err>");
      EXPECT_EQ(streamed, tok_->Decode(ids, skip).value_or("")) << name << " skip=" << skip;
    }
  }
}

TEST_P(TokenizerGoldenTest, VocabSizeAndSpecialTokens) {
  EXPECT_EQ(tok_->vocab_size(), ref_["vocab_size"].get<size_t>());
  const Json& sp = ref_["special_tokens"];
  EXPECT_EQ(tok_->bos_id(), OptionalId(sp["bos_token_id"]));
  EXPECT_EQ(tok_->pad_id(), OptionalId(sp["pad_token_id"]));
  EXPECT_EQ(tok_->unk_id(), OptionalId(sp["unk_token_id"]));
  const std::optional<int32_t> eos = OptionalId(sp["eos_token_id"]);
  EXPECT_EQ(tok_->eos_ids(), eos.has_value() ? std::vector<int32_t>{*eos} : std::vector<int32_t>{});
}

INSTANTIATE_TEST_SUITE_P(Fixtures, TokenizerGoldenTest,
                         ::testing::Values("gpt2_tiny", "llama_tiny", "llama3_tiny", "mistral_tiny",
                                           "qwen2_tiny"));

}  // namespace
}  // namespace kiln::tokenizer
