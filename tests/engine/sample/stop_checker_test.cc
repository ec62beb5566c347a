// StopChecker: token stops, stop strings across token boundaries, holding back, UTF-8.
#include "engine/sample/stop_checker.h"

#include <string>
#include <vector>

#include "engine/sample/utf8.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kiln::engine::sample {
namespace {

ResolvedStopping Stops(std::vector<std::string> stop, int32_t max_new_tokens = 100,
                       int32_t min_new_tokens = 0) {
  ResolvedStopping s;
  s.stop = std::move(stop);
  s.max_new_tokens = max_new_tokens;
  s.min_new_tokens = min_new_tokens;
  return s;
}

// Feeds deltas (token ids 100, 101, ...) until a finish; returns the emitted text.
struct FeedResult {
  std::string text;
  std::optional<FinishReason> finish;
  std::string matched;
  std::vector<std::string> per_step;
};
FeedResult Feed(StopChecker& checker, const std::vector<std::string>& deltas) {
  FeedResult run;
  int32_t id = 100;
  for (const std::string& d : deltas) {
    const StopUpdate u = checker.Append(id++, d);
    run.per_step.push_back(u.text);
    run.text += u.text;
    if (u.finish) {
      run.finish = u.finish;
      run.matched = u.matched_stop;
      break;
    }
  }
  return run;
}

TEST(StopCheckerTest, StopStringSplitOverThreeDeltas) {
  StopChecker checker(Stops({"STOP"}));
  const FeedResult run = Feed(checker, {"Hello S", "T", "OP and more"});
  EXPECT_EQ(run.finish, FinishReason::kStop);
  EXPECT_EQ(run.matched, "STOP");
  EXPECT_EQ(run.text, "Hello ");
  // "S" and then "ST" were held back: nothing after "Hello " was ever emitted.
  EXPECT_THAT(run.per_step, ::testing::ElementsAre("Hello ", "", ""));
}

TEST(StopCheckerTest, HeldTextIsReleasedWhenThePrefixStopsMatching) {
  StopChecker checker(Stops({"STOP"}));
  const FeedResult run = Feed(checker, {"a ST", "OX", "!"});
  EXPECT_FALSE(run.finish.has_value());
  EXPECT_THAT(run.per_step, ::testing::ElementsAre("a ", "STOX", "!"));
}

TEST(StopCheckerTest, OverlappingCandidatesTheEarliestEndingWins) {
  for (const auto& deltas : std::vector<std::vector<std::string>>{
           {"xabc"}, {"x", "a", "b", "c"}, {"xa", "bc"}}) {
    StopChecker checker(Stops({"abc", "ab"}));
    const FeedResult run = Feed(checker, deltas);
    EXPECT_EQ(run.finish, FinishReason::kStop);
    EXPECT_EQ(run.matched, "ab");
    EXPECT_EQ(run.text, "x");
  }
  // Same end: the longer (earlier-starting) one.
  StopChecker checker(Stops({"bc", "abc"}));
  const FeedResult run = Feed(checker, {"zab", "cd"});
  EXPECT_EQ(run.matched, "abc");
  EXPECT_EQ(run.text, "z");
}

TEST(StopCheckerTest, HoldsTheLongestPossiblePrefixAcrossCandidates) {
  StopChecker checker(Stops({"abcd", "cx"}));
  const FeedResult run = Feed(checker, {"zzabc", "q"});
  // "abc" could start "abcd"; "c" could start "cx": hold "abc".
  EXPECT_THAT(run.per_step, ::testing::ElementsAre("zz", "abcq"));
}

TEST(StopCheckerTest, MultiByteCharactersAreNeverSplit) {
  // "€" is E2 82 AC. The stop string "€!" arrives byte by byte.
  StopChecker checker(Stops({"\xE2\x82\xAC!"}));
  const FeedResult run = Feed(checker, {"5\xE2", "\x82", "\xAC", "!"});
  EXPECT_EQ(run.finish, FinishReason::kStop);
  EXPECT_EQ(run.text, "5");
  // Text with an incomplete character and no stop prefix: held until complete.
  StopChecker plain(Stops({"zz"}));
  const FeedResult p = Feed(plain, {"a\xC3", "\xA9", "b"});
  EXPECT_THAT(p.per_step, ::testing::ElementsAre("a", "\xC3\xA9", "b"));
}

TEST(StopCheckerTest, StopStringInsideAMultiByteCharacterDoesNotMatch) {
  // "é" (C3 A9) and "©" (C2 A9) share the byte A9, but a stop string is whole characters:
  // "©" must not match inside "é" even when the bytes arrive one at a time.
  StopChecker checker(Stops({"\xC2\xA9"}));
  const FeedResult run = Feed(checker, {"\xC3", "\xA9", "x"});
  EXPECT_FALSE(run.finish.has_value());
  EXPECT_EQ(run.text, "\xC3\xA9x");
}

TEST(StopCheckerTest, MinNewTokensSuppressesStopsUntilReached) {
  StopChecker checker(Stops({"END"}, 100, /*min_new_tokens=*/2));
  const FeedResult run = Feed(checker, {"END", "x", "END", "y"});
  EXPECT_EQ(run.finish, FinishReason::kStop);
  EXPECT_EQ(run.text, "ENDx");  // the first END came from token 1 (< min): emitted at once
  EXPECT_THAT(run.per_step, ::testing::ElementsAre("END", "x", ""));

  ResolvedStopping s = Stops({}, 100, 2);
  s.eos_token_ids = {7};
  StopChecker eos(s);
  EXPECT_FALSE(eos.Append(7, "").finish.has_value());
  EXPECT_FALSE(eos.Append(7, "").finish.has_value());
  EXPECT_EQ(eos.Append(7, "").finish, FinishReason::kEos);
}

TEST(StopCheckerTest, EosListAndStopTokenIds) {
  ResolvedStopping s = Stops({"zz"});
  s.eos_token_ids = {2, 9};
  s.stop_token_ids = {5};
  StopChecker a(s);
  EXPECT_EQ(a.Append(1, "hi z").text, "hi ");
  EXPECT_FALSE(a.StopsOn(1));
  EXPECT_TRUE(a.StopsOn(9));
  // The caller passes what the detokenizer still held for earlier tokens ("?"), never the
  // eos token's own text: both the stop checker's and the detokenizer's held text come out.
  const StopUpdate eos = a.Append(9, "?");
  EXPECT_EQ(eos.finish, FinishReason::kEos);
  EXPECT_EQ(eos.text, "z?");
  EXPECT_FALSE(a.StopsOn(9));  // already finished
  EXPECT_EQ(a.Append(1, "more").finish, FinishReason::kEos);  // stays finished
  EXPECT_EQ(a.Append(1, "more").text, "");

  StopChecker b(s);
  EXPECT_TRUE(b.StopsOn(5));
  const StopUpdate stop = b.Append(5, "");
  EXPECT_EQ(stop.finish, FinishReason::kStop);
  EXPECT_EQ(stop.matched_stop_token_id, 5);
  EXPECT_EQ(stop.text, "");
}

TEST(StopCheckerTest, IgnoreEosDisablesOnlyEos) {
  ResolvedStopping s = Stops({});
  s.ignore_eos = true;  // ResolveStopping leaves eos_token_ids empty then
  s.stop_token_ids = {5};
  StopChecker checker(s);
  EXPECT_FALSE(checker.Append(2, "a").finish.has_value());
  EXPECT_EQ(checker.Append(5, "b").finish, FinishReason::kStop);
}

TEST(StopCheckerTest, LengthFlushesHeldText) {
  StopChecker checker(Stops({"STOP"}, /*max_new_tokens=*/2));
  EXPECT_EQ(checker.Append(1, "ab").text, "ab");
  const StopUpdate last = checker.Append(2, "ST");
  EXPECT_EQ(last.finish, FinishReason::kLength);
  EXPECT_EQ(last.text, "ST");
  EXPECT_EQ(checker.num_generated(), 2);
}

TEST(StopCheckerTest, StopStringOnTheLastTokenBeatsLength) {
  StopChecker checker(Stops({"!"}, 1));
  const StopUpdate u = checker.Append(1, "a!");
  EXPECT_EQ(u.finish, FinishReason::kStop);
  EXPECT_EQ(u.text, "a");
}

TEST(StopCheckerTest, FlushAndInvalidBytesGiveValidUtf8) {
  StopChecker checker(Stops({"xyz"}));
  EXPECT_EQ(checker.Append(1, "a\xFF" "b").text, "a\xEF\xBF\xBD" "b");
  EXPECT_EQ(checker.Append(2, "xy").text, "");                // could become "xyz"
  EXPECT_EQ(checker.Append(3, "\xE2\x82").text, "xy");       // cannot; the char is held
  EXPECT_EQ(checker.Flush(), "\xEF\xBF\xBD");  // the truncated character, replaced
}

TEST(Utf8Test, Helpers) {
  EXPECT_TRUE(IsValidUtf8("a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80"));
  EXPECT_FALSE(IsValidUtf8("\xC0\xAF"));          // overlong
  EXPECT_FALSE(IsValidUtf8("\xED\xA0\x80"));      // surrogate
  EXPECT_FALSE(IsValidUtf8("\xF4\x90\x80\x80"));  // > U+10FFFF
  EXPECT_FALSE(IsValidUtf8("\xE2\x82"));          // truncated
  EXPECT_EQ(CompleteUtf8PrefixLength("ab\xF0\x9F\x98"), 2u);
  EXPECT_EQ(CompleteUtf8PrefixLength("ab\xF0\x9F\x98\x80"), 6u);
  EXPECT_EQ(CompleteUtf8PrefixLength("ab\xFF"), 3u);  // invalid, not incomplete
  std::string out;
  AppendSanitizedUtf8("\xE2\x82x", &out);
  EXPECT_EQ(out, "\xEF\xBF\xBDx");
}

}  // namespace
}  // namespace kiln::engine::sample
