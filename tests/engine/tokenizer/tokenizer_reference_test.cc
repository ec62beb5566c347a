// Token ids and decodes identical to the reference stack on a corpus of hard strings, for a tiny
// tokenizer of each family (tests/engine/tokenizer/testdata, made by make_testdata.py):
// "raw" = tokenizers.Tokenizer.from_file (kiln FromJson), "auto" = AutoTokenizer (FromDirectory).
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
using Json = nlohmann::json;

struct Case {
  std::string family;
  std::string mode;  // "raw" or "auto"
};

std::string Name(const ::testing::TestParamInfo<Case>& info) {
  return info.param.family + "_" + info.param.mode;
}

class ReferenceTest : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    const std::string dir = TestdataDir(GetParam().family);
    ref_ = Json::parse(ReadFileOrEmpty(dir + "/reference.json"), nullptr, false);
    ASSERT_FALSE(ref_.is_discarded()) << "reference.json of " << GetParam().family;
    absl::StatusOr<std::unique_ptr<Tokenizer>> tok =
        GetParam().mode == "raw" ? Tokenizer::FromJson(ReadFileOrEmpty(dir + "/tokenizer.json"))
                                 : Tokenizer::FromDirectory(dir);
    ASSERT_TRUE(tok.ok()) << tok.status();
    tok_ = std::move(tok).value();
  }

  static std::vector<int32_t> Ids(const Json& j) { return j.get<std::vector<int32_t>>(); }

  Json ref_;
  std::unique_ptr<Tokenizer> tok_;
};

TEST_P(ReferenceTest, EncodeMatchesReference) {
  const Json& texts = ref_["texts"];
  const Json& cases = ref_[GetParam().mode]["cases"];
  ASSERT_EQ(texts.size(), cases.size());
  ASSERT_GT(texts.size(), 50u);
  for (size_t i = 0; i < texts.size(); ++i) {
    const std::string text = texts[i].get<std::string>();
    auto with = tok_->Encode(text, /*add_special_tokens=*/true);
    auto without = tok_->Encode(text, /*add_special_tokens=*/false);
    ASSERT_TRUE(with.ok()) << with.status();
    ASSERT_TRUE(without.ok()) << without.status();
    EXPECT_EQ(*with, Ids(cases[i]["ids"])) << "text #" << i << ": " << text;
    EXPECT_EQ(*without, Ids(cases[i]["ids_no_special"])) << "text #" << i << ": " << text;
  }
}

TEST_P(ReferenceTest, DecodeMatchesReference) {
  const Json& mode = ref_[GetParam().mode];
  for (const char* list : {"cases", "decode_cases"}) {
    for (size_t i = 0; i < mode[list].size(); ++i) {
      const Json& c = mode[list][i];
      const std::vector<int32_t> ids = Ids(c["ids"]);
      auto plain = tok_->Decode(ids, /*skip_special_tokens=*/false);
      auto skip = tok_->Decode(ids, /*skip_special_tokens=*/true);
      ASSERT_TRUE(plain.ok()) << plain.status();
      ASSERT_TRUE(skip.ok()) << skip.status();
      EXPECT_EQ(*plain, c["decoded"].get<std::string>()) << list << " #" << i;
      EXPECT_EQ(*skip, c["decoded_skip"].get<std::string>()) << list << " #" << i;
    }
  }
}

TEST_P(ReferenceTest, VocabSizeAndSpecialIds) {
  if (GetParam().mode == "raw") {
    EXPECT_EQ(tok_->vocab_size(), ref_["vocab_size"].get<size_t>());
    return;
  }
  EXPECT_EQ(tok_->vocab_size(), ref_["auto_vocab_size"].get<size_t>());
  const Json& bos = ref_["auto_bos_id"];
  if (bos.is_null()) {
    EXPECT_FALSE(tok_->bos_id().has_value());
  } else {
    EXPECT_EQ(tok_->bos_id(), bos.get<int32_t>());
  }
  EXPECT_THAT(tok_->eos_ids(), ::testing::ElementsAre(ref_["auto_eos_id"].get<int32_t>()));
}

INSTANTIATE_TEST_SUITE_P(
    Families, ReferenceTest,
    ::testing::Values(Case{"gpt2", "raw"}, Case{"gpt2", "auto"}, Case{"gpt2_added", "raw"},
                      Case{"gpt2_added", "auto"}, Case{"llama2", "raw"}, Case{"llama2", "auto"},
                      Case{"mistral", "raw"}, Case{"mistral", "auto"}, Case{"llama3", "raw"},
                      Case{"llama3", "auto"}, Case{"qwen2", "raw"}, Case{"qwen2", "auto"}),
    Name);

}  // namespace
}  // namespace kiln::tokenizer
