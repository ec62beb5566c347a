// Containment (reliability.md §7 A10, B4, F1): LoadModel through the real kilnd, run under
// strace, with every traversal variant we know - "..", absolute paths, percent-encoding,
// fullwidth dots, NUL, a symlinked model directory pointing outside the root, shards named
// with ".." / absolute paths / symlinked outside, and tokenizer.json / config.json symlinked
// outside. The "outside" tree holds complete, loadable copies of the model, so any escape
// would succeed. After the RPCs the strace log must show no open/openat/openat2/creat/execve
// of any path in the outside tree, while the positive control (a model inside the root)
// shows that opens are being recorded.
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/integration/grpc_clients.h"
#include "tests/security/security_util.h"

namespace kiln::security {
namespace {

namespace fs = std::filesystem;

constexpr char kStrace[] = "/usr/bin/strace";

struct Opened {
  std::string syscall;
  std::string path;
  std::string line;
};

// The path arguments of open-family syscalls in an strace -f log.
std::vector<Opened> OpensIn(const std::string& log) {
  static const std::regex kOpen(
      R"(^(?:\[pid\s+)?\d*\]?\s*(open|openat|openat2|creat|execve|truncate|name_to_handle_at)\((?:AT_FDCWD, |\d+<[^>]*>, |\d+, )?\"([^\"]*)\")");
  std::vector<Opened> out;
  std::istringstream in(log);
  std::string line;
  while (std::getline(in, line)) {
    std::smatch m;
    if (std::regex_search(line, m, kOpen)) out.push_back({m[1].str(), m[2].str(), line});
  }
  return out;
}

class ContainmentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (access(kStrace, X_OK) != 0) {
      GTEST_SKIP() << "strace is not installed: the lead must add the Debian package `strace` "
                      "to scripts/bootstrap (this test installs nothing itself)";
    }
    auto dir = testing::TempDir::Create("kiln-containment");
    ASSERT_TRUE(dir.ok()) << dir.status();
    tmp_ = std::move(*dir);
    base_ = Canonical(tmp_->path());
    root_ = base_ + "/roots/models";
    outside_ = base_ + "/outside";
    fs::create_directories(root_);
    fs::create_directories(base_ + "/hub");

    // Outside: complete models that would load if reached.
    CopyFixture("gpt2_tiny", outside_ + "/model");
    CopyFixture("llama_tiny", outside_ + "/llama");
    // Inside: the positive control and the escape attempts.
    CopyFixture("gpt2_tiny", root_ + "/good");
    fs::create_directory_symlink("../../outside/model", root_ + "/esc");
    CopyFixture("gpt2_tiny", root_ + "/tok_escape");
    fs::remove(root_ + "/tok_escape/tokenizer.json");
    fs::create_symlink(outside_ + "/model/tokenizer.json", root_ + "/tok_escape/tokenizer.json");
    CopyFixture("gpt2_tiny", root_ + "/config_escape");
    fs::remove(root_ + "/config_escape/config.json");
    fs::create_symlink("../../../outside/model/config.json", root_ + "/config_escape/config.json");
    CopyFixture("gpt2_tiny", root_ + "/weights_escape");
    fs::remove(root_ + "/weights_escape/model.safetensors");
    fs::create_symlink(outside_ + "/model/model.safetensors",
                       root_ + "/weights_escape/model.safetensors");
    const std::string shard = "model-00001-of-00004.safetensors";
    MakeShardVariant("shard_dotdot", "../../../outside/llama/" + shard);
    MakeShardVariant("shard_abs", outside_ + "/llama/" + shard);
    MakeShardVariant("shard_percent", "%2e%2e%2f%2e%2e%2f%2e%2e%2foutside%2fllama%2f" + shard);
    CopyFixture("llama_tiny", root_ + "/shard_symlink");
    fs::remove(root_ + "/shard_symlink/" + shard);
    fs::create_symlink(outside_ + "/llama/" + shard, root_ + "/shard_symlink/" + shard);

    // kilnd under strace: a wrapper so KilndProcess's own flags pass through unchanged; -D
    // keeps kilnd at the wrapper's pid (strace runs as a detached grandchild).
    trace_ = base_ + "/trace.log";
    const std::string wrapper = base_ + "/kilnd-strace.sh";
    WriteText(wrapper, "#!/bin/sh\nexec " + std::string(kStrace) +
                           " -D -f -q -e trace=%file -o " + trace_ + " -- " +
                           testing::KilndPath() + " \"$@\"\n");
    fs::permissions(wrapper, fs::perms::owner_all);
    auto k = StartKilnd({"--model_roots=" + root_, "--hub_cache=" + base_ + "/hub"}, base_,
                        wrapper);
    ASSERT_TRUE(k.ok()) << k.status();
    kilnd_ = std::move(*k);
    client_ = std::make_unique<Client>(kilnd_->grpc_address(), kAdminToken);
  }

  // A llama_tiny copy whose index maps layer tensors of shard 1 to `shard_name`.
  void MakeShardVariant(const std::string& name, const std::string& shard_name) {
    const std::string dir = CopyFixture("llama_tiny", root_ + "/" + name);
    const std::string index_path = dir + "/model.safetensors.index.json";
    nlohmann::json index = nlohmann::json::parse(ReadText(index_path), nullptr, false);
    ASSERT_FALSE(index.is_discarded());
    for (auto& [tensor, file] : index["weight_map"].items()) {
      if (file == "model-00001-of-00004.safetensors") file = shard_name;
    }
    fs::remove(dir + "/model-00001-of-00004.safetensors");
    WriteText(index_path, index.dump());
  }

  // Stops kilnd and returns the trace once strace has recorded its exit. strace is a
  // detached grandchild, so polling its log (bounded) is the only way to see it finish.
  std::string StopAndReadTrace() {
    const pid_t pid = kilnd_->pid();
    auto code = kilnd_->Stop(SIGTERM, std::chrono::seconds(30));
    if (!code.ok()) kilnd_->Stop(SIGKILL, std::chrono::seconds(10)).IgnoreError();
    const std::string exited = std::to_string(pid) + " +++ ";
    std::string trace;
    for (int i = 0; i < 200; ++i) {
      trace = ReadText(trace_);
      if (trace.find(exited) != std::string::npos) break;
      usleep(50 * 1000);
    }
    return trace;
  }

  std::unique_ptr<testing::TempDir> tmp_;
  std::string base_, root_, outside_, trace_;
  std::unique_ptr<testing::KilndProcess> kilnd_;
  std::unique_ptr<Client> client_;
};

TEST_F(ContainmentTest, NoFileOutsideTheRootsIsOpened) {
  struct Case {
    std::string name;
    std::vector<grpc::StatusCode> allowed;
    // An absolute path the message may echo because the caller or the artifact supplied it
    // (it reveals nothing the client did not send, or the index file's own text).
    std::string echo_ok = "";
  };
  const std::vector<grpc::StatusCode> kRefused = {grpc::StatusCode::INVALID_ARGUMENT,
                                                  grpc::StatusCode::NOT_FOUND};
  const std::vector<Case> cases = {
      {"../outside/model", kRefused},
      {"../../outside/model", kRefused},
      {"a/../../../outside/model", kRefused},
      {outside_ + "/model", kRefused, outside_ + "/model"},
      {"%2e%2e%2f%2e%2e%2foutside%2fmodel", kRefused},
      {"\xef\xbc\x8e\xef\xbc\x8e\xef\xbc\x8f\xef\xbc\x8e\xef\xbc\x8e\xef\xbc\x8foutside", kRefused},
      {std::string("good\0/../../../outside/model", 28), kRefused},
      {"good/../../../outside/model", kRefused},
      {"esc", kRefused},
      {"tok_escape", kRefused},
      {"config_escape", kRefused},
      {"weights_escape", kRefused},
      {"shard_dotdot", kRefused},
      {"shard_abs", kRefused},
      {"shard_percent", kRefused},
      {"shard_symlink", kRefused},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE("model name: " + c.name);
    grpc::Status s = client_->LoadModel(c.name);
    EXPECT_NE(std::find(c.allowed.begin(), c.allowed.end(), s.error_code()), c.allowed.end())
        << s.error_code() << ": " << s.error_message();
    for (const auto& p : HygieneProblems(s.error_message(), {root_, c.echo_ok})) {
      ADD_FAILURE() << p << " in: " << s.error_message();
    }
  }
  // Positive control: a model inside the root loads, and its weights show up in the trace.
  grpc::Status good = client_->LoadModel("good");
  ASSERT_TRUE(good.ok()) << good.error_message();

  const std::string trace = StopAndReadTrace();
  const std::vector<Opened> opens = OpensIn(trace);
  ASSERT_FALSE(opens.empty()) << "strace recorded no opens; trace:\n" << trace.substr(0, 2000);
  bool saw_good_weights = false;
  for (const Opened& o : opens) {
    if (o.path == root_ + "/good/model.safetensors") saw_good_weights = true;
    const std::string resolved =
        o.path.empty() || o.path[0] == '/' ? o.path : std::string("<relative>/") + o.path;
    EXPECT_EQ(resolved.find(outside_), std::string::npos) << "opened outside the root: " << o.line;
    EXPECT_EQ(o.path.find("outside"), std::string::npos) << "suspicious open: " << o.line;
  }
  EXPECT_TRUE(saw_good_weights) << "positive control missing: no open of "
                                << root_ << "/good/model.safetensors in the trace";
}

}  // namespace
}  // namespace kiln::security
