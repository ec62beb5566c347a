#include "cli/args.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace kiln::cli {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(ParseArgs, CommandPositionalAndFlagForms) {
  absl::StatusOr<ParsedArgs> a =
      ParseArgs({"generate", "m", "hello", "--max_new_tokens", "8", "--temperature=0.5",
                 "--ignore_eos", "--stop", "a", "--stop=b", "--addr=h:1"});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->command, "generate");
  EXPECT_THAT(a->positional, ElementsAre("m", "hello"));
  EXPECT_EQ(a->GetString("max_new_tokens"), "8");
  EXPECT_EQ(a->GetString("temperature"), "0.5");
  EXPECT_EQ(a->GetString("ignore_eos"), "true");
  EXPECT_THAT(a->GetAll("stop"), ElementsAre("a", "b"));
  EXPECT_EQ(a->GetString("addr"), "h:1");
}

TEST(ParseArgs, GlobalFlagsBeforeCommand) {
  absl::StatusOr<ParsedArgs> a = ParseArgs({"--addr", "x:2", "--json", "models"});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->command, "models");
  EXPECT_TRUE(a->positional.empty());
  EXPECT_EQ(a->GetString("addr"), "x:2");
  EXPECT_EQ(a->GetString("json"), "true");
}

TEST(ParseArgs, CommandFlagBeforeCommandIsUnknown) {
  absl::StatusOr<ParsedArgs> a = ParseArgs({"--drain", "unload", "m"});
  ASSERT_FALSE(a.ok());
  EXPECT_THAT(std::string(a.status().message()), HasSubstr("--drain"));
}

TEST(ParseArgs, AdaptersTwoWordCommands) {
  absl::StatusOr<ParsedArgs> a = ParseArgs({"adapters", "load", "base", "ad", "--pin"});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->command, "adapters load");
  EXPECT_THAT(a->positional, ElementsAre("base", "ad"));
  EXPECT_FALSE(ParseArgs({"adapters"}).ok());
  absl::StatusOr<ParsedArgs> bad = ParseArgs({"adapters", "frob"});
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("adapters frob"));
}

TEST(ParseArgs, LaterValueWinsForSingleValuedFlags) {
  absl::StatusOr<ParsedArgs> a = ParseArgs({"info", "--addr=a:1", "--addr=b:2"});
  ASSERT_TRUE(a.ok());
  EXPECT_THAT(a->GetAll("addr"), ElementsAre("b:2"));
}

TEST(ParseArgs, DoubleDashEndsFlags) {
  absl::StatusOr<ParsedArgs> a = ParseArgs({"generate", "m", "--", "--not-a-flag"});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_THAT(a->positional, ElementsAre("m", "--not-a-flag"));
}

TEST(ParseArgs, Help) {
  for (const char* h : {"-h", "--help", "help"}) {
    absl::StatusOr<ParsedArgs> a = ParseArgs({h});
    ASSERT_TRUE(a.ok());
    EXPECT_EQ(a->command, "help");
  }
  ASSERT_TRUE(ParseArgs({"load", "--help"}).ok());
}

TEST(ParseArgs, UsageErrorsNameTheProblem) {
  struct Case {
    std::vector<std::string> argv;
    std::string expect;
  };
  const std::vector<Case> cases = {
      {{}, "missing command"},
      {{"frobnicate"}, "unknown command 'frobnicate'"},
      {{"info", "--nope"}, "unknown flag --nope for 'info'"},
      {{"load", "m", "--drain"}, "unknown flag --drain"},
      {{"generate", "m"}, "'generate' takes <model> <prompt>, got 1"},
      {{"info", "extra"}, "'info' takes no arguments, got 1"},
      {{"load", "m", "--dtype"}, "--dtype needs a value"},
      {{"load", "m", "--pin=yes"}, "--pin: expected true or false, got 'yes'"},
      {{"generate", "m", "-x"}, "unknown flag '-x'"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<ParsedArgs> a = ParseArgs(c.argv);
    ASSERT_FALSE(a.ok()) << c.expect;
    EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(a.status().message()), HasSubstr(c.expect));
  }
}

TEST(ParseArgs, BoolFlagDoesNotConsumeNextWord) {
  absl::StatusOr<ParsedArgs> a = ParseArgs({"unload", "--drain", "m"});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_THAT(a->positional, ElementsAre("m"));
  absl::StatusOr<bool> drain = a->GetBool("drain", false);
  ASSERT_TRUE(drain.ok());
  EXPECT_TRUE(*drain);
  absl::StatusOr<ParsedArgs> off = ParseArgs({"unload", "--drain=false", "m"});
  ASSERT_TRUE(off.ok());
  EXPECT_FALSE(*off->GetBool("drain", true));
}

TEST(ParsedArgs, NumericGetters) {
  absl::StatusOr<ParsedArgs> a =
      ParseArgs({"generate", "m", "p", "--max_new_tokens=12x", "--temperature=0.25"});
  ASSERT_TRUE(a.ok());
  absl::StatusOr<std::optional<int64_t>> n = a->GetInt64("max_new_tokens");
  ASSERT_FALSE(n.ok());
  EXPECT_THAT(std::string(n.status().message()),
              HasSubstr("--max_new_tokens: expected an integer, got '12x'"));
  absl::StatusOr<std::optional<double>> t = a->GetDouble("temperature");
  ASSERT_TRUE(t.ok());
  EXPECT_DOUBLE_EQ(t->value(), 0.25);
  absl::StatusOr<std::optional<int64_t>> absent = a->GetInt64("top_k");
  ASSERT_TRUE(absent.ok());
  EXPECT_FALSE(absent->has_value());
}

TEST(ParseKeyValueList, ParsesAndRejects) {
  absl::StatusOr<std::map<std::string, std::string>> kv =
      ParseKeyValueList("max_memory", "0=20GiB,cpu=8GiB");
  ASSERT_TRUE(kv.ok());
  EXPECT_EQ(kv->size(), 2u);
  EXPECT_EQ(kv->at("0"), "20GiB");
  EXPECT_EQ(kv->at("cpu"), "8GiB");
  absl::StatusOr<std::map<std::string, std::string>> bad = ParseKeyValueList("max_memory", "0");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()),
              HasSubstr("--max_memory: expected key=value, got '0'"));
  EXPECT_FALSE(ParseKeyValueList("max_memory", "=1").ok());
  EXPECT_FALSE(ParseKeyValueList("max_memory", ",").ok());
}

TEST(SplitCommaList, DropsEmptyItems) {
  EXPECT_THAT(SplitCommaList("a,b,,c,"), ElementsAre("a", "b", "c"));
  EXPECT_TRUE(SplitCommaList("").empty());
}

TEST(UsageText, ListsEveryCommandAndFlag) {
  const std::string usage = UsageText();
  for (const CommandSpec& c : Commands()) {
    EXPECT_THAT(usage, HasSubstr(std::string("  ") + c.name)) << c.name;
    for (const FlagSpec& f : c.flags) EXPECT_THAT(usage, HasSubstr(std::string("--") + f.name));
  }
  for (const FlagSpec& f : GlobalFlags()) EXPECT_THAT(usage, HasSubstr(std::string("--") + f.name));
  EXPECT_THAT(usage, HasSubstr("64 for usage errors"));
}

}  // namespace
}  // namespace kiln::cli
