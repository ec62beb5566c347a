// kilnctl as a subprocess against the real kilnd: exit codes, stdout/stderr contracts.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "kiln/v1/kiln.grpc.pb.h"
#include "tests/integration/grpc_clients.h"
#include "tests/integration/kilnd_process.h"

namespace kiln::testing {
namespace {

using ::testing::AnyOf;
using ::testing::HasSubstr;
using ::testing::StartsWith;

std::string LastLine(const std::string& text) {
  std::string t = text;
  while (!t.empty() && t.back() == '\n') t.pop_back();
  const size_t nl = t.rfind('\n');
  return nl == std::string::npos ? t : t.substr(nl + 1);
}

class KilnctlTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<std::unique_ptr<KilndProcess>> p = KilndProcess::Start({KilndPath(), {}});
    // Not ASSERT: a fatal failure in SetUpTestSuite makes gtest *skip* the tests, and a
    // daemon that cannot start must fail them (SetUp asserts kilnd_ is set).
    EXPECT_TRUE(p.ok()) << p.status();
    if (p.ok()) kilnd_ = p->release();
  }
  static void TearDownTestSuite() {
    delete kilnd_;
    kilnd_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(kilnd_, nullptr); }

  // KILN_TOKEN is cleared so the developer's environment never leaks into the test.
  static ProcessResult Kilnctl(std::vector<std::string> args) {
    args.insert(args.begin(), {KilnctlPath(), "--addr=" + kilnd_->grpc_address()});
    absl::StatusOr<ProcessResult> r = RunProcess(args, {"KILN_TOKEN="}, std::chrono::seconds(30));
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : ProcessResult{};
  }

  static KilndProcess* kilnd_;
};
KilndProcess* KilnctlTest::kilnd_ = nullptr;

TEST_F(KilnctlTest, Health) {
  ProcessResult r = Kilnctl({"health"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "SERVING\n");
  r = Kilnctl({"health", "kiln.v1.Kiln"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "SERVING\n");
  r = Kilnctl({"health", "no.such.Service"});
  EXPECT_EQ(r.exit_code, 5);
  EXPECT_THAT(r.err, StartsWith("error: NOT_FOUND: "));
  EXPECT_EQ(r.out, "");
}

TEST_F(KilnctlTest, InfoJsonMatchesTheServer) {
  ProcessResult r = Kilnctl({"info", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_FALSE(r.out.empty());
  EXPECT_EQ(r.out.find('\n'), r.out.size() - 1) << "one JSON object on one line";
  nlohmann::json j = nlohmann::json::parse(r.out, nullptr, /*allow_exceptions=*/false);
  ASSERT_FALSE(j.is_discarded()) << r.out;
  ASSERT_TRUE(j.is_object());
  ASSERT_TRUE(j.contains("version") && j["version"].is_string());
  EXPECT_EQ(j["version"].get<std::string>(), KILN_VERSION);
  EXPECT_TRUE(j.contains("limits") && j["limits"].is_object());
  ASSERT_TRUE(j.contains("draining") && j["draining"].is_boolean());
  EXPECT_FALSE(j["draining"].get<bool>());

  r = Kilnctl({"info"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr(std::string("version:       ") + KILN_VERSION));
}

TEST_F(KilnctlTest, ModelsEmpty) {
  // Runs in its own process under ctest; other tests of this suite only fail loads, which
  // add FAILED entries, so check for READY rather than for an empty list when run together.
  ProcessResult r = Kilnctl({"models"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, ::testing::Not(HasSubstr(" ready ")));
  r = Kilnctl({"models", "--json"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, StartsWith("{\"models\":["));
  EXPECT_EQ(r.out.find('\n'), r.out.size() - 1);
  EXPECT_THAT(r.out, ::testing::Not(HasSubstr("MODEL_STATE_READY")));
  r = Kilnctl({"adapters", "list"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "no adapters\n");
}

TEST_F(KilnctlTest, UnknownModelExitsNotFound) {
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"generate", "nope", "hello", "--max_new_tokens=4"},
        std::vector<std::string>{"models", "nope"},
        std::vector<std::string>{"tokenize", "nope", "hello"},
        std::vector<std::string>{"unload", "nope"}}) {
    ProcessResult r = Kilnctl(args);
    EXPECT_EQ(r.exit_code, 5) << args[0] << ": " << r.err;
    EXPECT_THAT(r.err, StartsWith("error: NOT_FOUND: ")) << args[0];
    EXPECT_THAT(r.err, HasSubstr("nope")) << args[0];
    EXPECT_EQ(r.out, "") << args[0];
  }
}

TEST_F(KilnctlTest, LoadErrorsExitWithTheStatusCode) {
  ProcessResult r = Kilnctl({"load", "org/m", "--dtype=bfloat16", "--max_memory=cpu=1GiB"});
  EXPECT_THAT(r.exit_code, AnyOf(12, 5)) << r.err;
  // Progress lines (one per stage, stderr is not a TTY) may come first; the error is last.
  EXPECT_THAT(LastLine(r.err),
              AnyOf(StartsWith("error: UNIMPLEMENTED: "), StartsWith("error: NOT_FOUND: ")));
  r = Kilnctl({"load", "org/m", "--trust_remote_code"});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_THAT(LastLine(r.err), StartsWith("error: INVALID_ARGUMENT: "));
  EXPECT_THAT(r.err, HasSubstr("trust_remote_code"));
}

TEST_F(KilnctlTest, UsageErrorsExit64WithoutCallingTheServer) {
  ProcessResult r = Kilnctl({"generate", "only-model"});
  EXPECT_EQ(r.exit_code, 64);
  EXPECT_THAT(r.err, HasSubstr("'generate' takes <model> <prompt>"));
  r = Kilnctl({"load", "m", "--dtype=int3"});
  EXPECT_EQ(r.exit_code, 64);
  EXPECT_THAT(r.err, HasSubstr("--dtype"));
  r = Kilnctl({"frobnicate"});
  EXPECT_EQ(r.exit_code, 64);
  r = Kilnctl({"--help"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.out, HasSubstr("usage: kilnctl"));
}

TEST_F(KilnctlTest, UnreachableServerIsUnavailable) {
  // Port 1 on loopback: nothing listens there in a test sandbox.
  absl::StatusOr<ProcessResult> r = RunProcess(
      {KilnctlPath(), "--addr=127.0.0.1:1", "--timeout=5", "info"}, {}, std::chrono::seconds(30));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 14) << r->err;
  EXPECT_THAT(r->err, StartsWith("error: UNAVAILABLE: "));
}

TEST_F(KilnctlTest, RpcsAreCountedInMetrics) {
  absl::StatusOr<PromExposition> before = ScrapeMetrics(kilnd_->metrics_port());
  ASSERT_TRUE(before.ok()) << before.status();
  const std::map<std::string, std::string> match = {{"method", "Generate"},
                                                    {"code", "NOT_FOUND"}};
  const double n = SumSamples(*before, "kiln_rpc_requests_total", match);
  ProcessResult r = Kilnctl({"generate", "nope", "hi"});
  EXPECT_EQ(r.exit_code, 5);
  absl::StatusOr<PromExposition> after = ScrapeMetrics(kilnd_->metrics_port());
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(SumSamples(*after, "kiln_rpc_requests_total", match), n + 1);
}

}  // namespace
}  // namespace kiln::testing
