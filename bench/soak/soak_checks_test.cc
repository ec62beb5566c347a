// Unit tests of the pure soak checks: the allowed-code table (G1), the UTF-8 validator (D6),
// the series statistics (G4) and the ledger's verdicts.
#include "bench/soak/soak_checks.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kiln::bench::soak {
namespace {

using ::testing::HasSubstr;

TEST(AllowedCodesTest, InternalAndUnknownAreNeverAllowed) {
  for (Op op : {Op::kGenerate, Op::kTokenize, Op::kListModels, Op::kGetServerInfo, Op::kHealthCheck,
                Op::kLoadAdapter, Op::kUnloadAdapter, Op::kListAdapters, Op::kUnloadModel, Op::kLoadModel}) {
    for (int mask = 0; mask < 8; ++mask) {
      OpSituation s{(mask & 1) != 0, (mask & 2) != 0, (mask & 4) != 0};
      EXPECT_TRUE(IsAllowed(op, s, grpc::OK)) << OpName(op);
      EXPECT_FALSE(IsAllowed(op, s, grpc::INTERNAL)) << OpName(op);
      EXPECT_FALSE(IsAllowed(op, s, grpc::UNKNOWN)) << OpName(op);
    }
  }
}

TEST(AllowedCodesTest, GenerateCodesFollowTheSituation) {
  const OpSituation plain;
  EXPECT_FALSE(IsAllowed(Op::kGenerate, plain, grpc::CANCELLED));  // nobody cancelled it
  EXPECT_FALSE(IsAllowed(Op::kGenerate, plain, grpc::DEADLINE_EXCEEDED));
  EXPECT_FALSE(IsAllowed(Op::kGenerate, plain, grpc::ABORTED));
  EXPECT_FALSE(IsAllowed(Op::kGenerate, plain, grpc::NOT_FOUND));
  EXPECT_FALSE(IsAllowed(Op::kGenerate, plain, grpc::RESOURCE_EXHAUSTED));

  OpSituation cancelled;
  cancelled.client_cancelled = true;
  EXPECT_TRUE(IsAllowed(Op::kGenerate, cancelled, grpc::CANCELLED));
  EXPECT_FALSE(IsAllowed(Op::kGenerate, cancelled, grpc::DEADLINE_EXCEEDED));

  OpSituation reload;
  reload.model_lifecycle = true;
  for (grpc::StatusCode c : {grpc::NOT_FOUND, grpc::FAILED_PRECONDITION, grpc::ABORTED, grpc::UNAVAILABLE}) {
    EXPECT_TRUE(IsAllowed(Op::kGenerate, reload, c)) << CodeName(c);
  }
  EXPECT_FALSE(IsAllowed(Op::kGenerate, reload, grpc::CANCELLED));
}

TEST(AllowedCodesTest, UnloadAdapterMayBeRefusedWhileInUse) {
  EXPECT_TRUE(IsAllowed(Op::kUnloadAdapter, {}, grpc::FAILED_PRECONDITION));
  EXPECT_TRUE(IsAllowed(Op::kUnloadAdapter, {}, grpc::NOT_FOUND));
  EXPECT_FALSE(IsAllowed(Op::kLoadAdapter, {}, grpc::FAILED_PRECONDITION));
  EXPECT_FALSE(IsAllowed(Op::kLoadModel, {}, grpc::FAILED_PRECONDITION));
}

TEST(IsValidUtf8Test, AcceptsWellFormedAndRejectsMalformed) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("ascii"));
  EXPECT_TRUE(IsValidUtf8("你好 🙂 ß"));
  EXPECT_FALSE(IsValidUtf8("\xC3"));              // truncated
  EXPECT_FALSE(IsValidUtf8("\xC0\xAF"));          // overlong '/'
  EXPECT_FALSE(IsValidUtf8("\xED\xA0\x80"));      // surrogate U+D800
  EXPECT_FALSE(IsValidUtf8("\xF4\x90\x80\x80"));  // > U+10FFFF
  EXPECT_FALSE(IsValidUtf8("\x80"));              // lone continuation byte
}

TEST(SeriesTest, StatsAndSecondHalfGrowth) {
  const SeriesStats s = Stats({1, 2, 3, 6});
  EXPECT_EQ(s.count, 4);
  EXPECT_DOUBLE_EQ(s.min, 1);
  EXPECT_DOUBLE_EQ(s.mean, 3);
  EXPECT_DOUBLE_EQ(s.max, 6);
  // Second half {3, 6}: max 6 - mean 4.5.
  EXPECT_DOUBLE_EQ(SecondHalfMaxMinusMean({1, 2, 3, 6}), 1.5);
  EXPECT_DOUBLE_EQ(SecondHalfMaxMinusMean({100, 100, 100, 100}), 0);
  EXPECT_DOUBLE_EQ(SecondHalfMaxMinusMean({5}), 0);
  // Second half {10, 12, 14, 16}: slope 2 per sample; a flat series has none.
  EXPECT_DOUBLE_EQ(SecondHalfSlope({0, 0, 0, 0, 10, 12, 14, 16}), 2);
  EXPECT_DOUBLE_EQ(SecondHalfSlope({7, 7, 7, 7, 7, 7}), 0);
  EXPECT_DOUBLE_EQ(SecondHalfSlope({1, 2, 3}), 0);
}

TEST(SoakLedgerTest, CountsAndVerdicts) {
  SoakLedger ledger;
  ledger.Count("generate/greedy/text", grpc::OK, 10);
  ledger.Count("generate/greedy/text", grpc::CANCELLED, 2);
  ledger.Checked(Criterion::kG1);
  ledger.Fail(Criterion::kG2, "variant 3 differs");
  EXPECT_EQ(ledger.total_rpcs(), 2);
  EXPECT_EQ(ledger.tokens(), 12);
  EXPECT_EQ(ledger.count("generate/greedy/text", grpc::CANCELLED), 1);
  EXPECT_EQ(ledger.failures(Criterion::kG2), 1);
  EXPECT_EQ(ledger.total_failures(), 1);
  const std::string table = ledger.FormatTable();
  EXPECT_THAT(table, HasSubstr("G1 one terminal status, documented code"));
  EXPECT_THAT(table, HasSubstr("PASS"));
  EXPECT_THAT(table, HasSubstr("FAIL (1)"));
  EXPECT_THAT(table, HasSubstr("variant 3 differs"));
  EXPECT_THAT(table, HasSubstr("NOT CHECKED"));  // G3..G6
  EXPECT_EQ(ledger.ToJson()["criteria"]["G2"]["failures"], 1);
}

}  // namespace
}  // namespace kiln::bench::soak
