#include "server/tls_reloader.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/server/tls_test_certs.h"

namespace kiln::server {
namespace {

using ::testing::HasSubstr;

class TlsReloaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string templ = ::testing::TempDir() + "/tls_reloader_XXXXXX";
    ASSERT_NE(mkdtemp(templ.data()), nullptr);
    dir_ = templ;
    certs_ = std::make_unique<testing::TestCerts>(dir_);
    certs_->MakeCa("ca");
    certs_->MakeLeaf("a", "ca");
    certs_->MakeLeaf("b", "ca");
    // The operator's files.
    certs_->Write("live.crt", certs_->Read("a.crt"));
    certs_->Write("live.key", certs_->Read("a.key"));
    certs_->Write("live-ca.crt", certs_->Read("ca.crt"));
  }
  void TearDown() override {
    const int rc = std::system(("rm -rf " + dir_).c_str());
    (void)rc;
  }

  TlsReloader::Options Options(std::string state_dir = "") {
    return {{certs_->Path("live.crt"), certs_->Path("live.key"), certs_->Path("live-ca.crt")},
            std::move(state_dir),
            absl::ZeroDuration()};
  }
  std::vector<std::string> Lines() {
    absl::MutexLock lock(&mu_);
    return lines_;
  }

  std::string dir_;
  std::unique_ptr<testing::TestCerts> certs_;
  Metrics metrics_{"v", "c", false};
  absl::Mutex mu_;
  std::vector<std::string> lines_;
  Logger logger_{LogFormat::kText, [this](const std::string& line) {
                   absl::MutexLock lock(&mu_);
                   lines_.push_back(line);
                 }};
};

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST_F(TlsReloaderTest, StagesPrivateCopiesAndRemovesThemAtExit) {
  std::string state_dir;
  {
    absl::StatusOr<std::unique_ptr<TlsReloader>> r =
        TlsReloader::Create(Options(), &metrics_, &logger_);
    ASSERT_TRUE(r.ok()) << r.status();
    state_dir = (*r)->state_dir();
    struct stat st = {};
    ASSERT_EQ(stat(state_dir.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0700u);
    ASSERT_EQ(stat((*r)->identity_path().c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    // Key and chain in one file: one rename swaps both.
    EXPECT_EQ(ReadAll((*r)->identity_path()), certs_->Read("a.key") + certs_->Read("a.crt"));
    EXPECT_EQ(ReadAll((*r)->ca_path()), certs_->Read("ca.crt"));
    EXPECT_THAT(metrics_.Text(), HasSubstr("kiln_tls_reloads_total{status=\"error\"} 0"));
    EXPECT_THAT(metrics_.Text(), HasSubstr("kiln_tls_certificate_expiry_timestamp_seconds"));
  }
  struct stat st = {};
  EXPECT_NE(stat(state_dir.c_str(), &st), 0) << "the mkdtemp directory outlived kilnd";
}

TEST_F(TlsReloaderTest, SwapsAValidNewPairWithALaterMtime) {
  absl::StatusOr<std::unique_ptr<TlsReloader>> r =
      TlsReloader::Create(Options(dir_ + "/state"), &metrics_, &logger_);
  ASSERT_TRUE(r.ok()) << r.status();
  struct stat before = {};
  ASSERT_EQ(stat((*r)->identity_path().c_str(), &before), 0);

  certs_->Write("live.crt", certs_->Read("b.crt"));
  certs_->Write("live.key", certs_->Read("b.key"));
  ASSERT_TRUE((*r)->Reload("sighup").ok());
  EXPECT_EQ(ReadAll((*r)->identity_path()), certs_->Read("b.key") + certs_->Read("b.crt"));
  // gRPC's watcher detects a swap between its two reads by the mtime second changing.
  struct stat after = {};
  ASSERT_EQ(stat((*r)->identity_path().c_str(), &after), 0);
  EXPECT_GT(after.st_mtime, before.st_mtime);
  EXPECT_THAT(metrics_.Text(), HasSubstr("kiln_tls_reloads_total{status=\"ok\"} 1"));
  bool logged = false;
  for (const std::string& line : Lines()) {
    if (line.find("tls_reloaded") != std::string::npos &&
        line.find("CN=b") != std::string::npos && line.find("not_after") != std::string::npos) {
      logged = true;
    }
  }
  EXPECT_TRUE(logged);
}

TEST_F(TlsReloaderTest, RefusesABadNewFileAndKeepsTheOldCopy) {
  absl::StatusOr<std::unique_ptr<TlsReloader>> r =
      TlsReloader::Create(Options(), &metrics_, &logger_);
  ASSERT_TRUE(r.ok()) << r.status();
  const std::string staged = ReadAll((*r)->identity_path());

  certs_->Write("live.key", certs_->Read("b.key"));  // b's key, a's certificate
  absl::Status s = (*r)->Reload("sighup");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr(certs_->Path("live.key")));
  certs_->Write("live.key", "-----BEGIN PRIVATE KEY-----\ngarbage\n");
  EXPECT_FALSE((*r)->Reload("sighup").ok());

  EXPECT_EQ(ReadAll((*r)->identity_path()), staged);
  EXPECT_THAT(metrics_.Text(), HasSubstr("kiln_tls_reloads_total{status=\"error\"} 2"));
  bool logged = false;
  for (const std::string& line : Lines()) {
    if (line.find("tls_reload_failed") != std::string::npos &&
        line.find("live.key") != std::string::npos) {
      logged = true;
    }
  }
  EXPECT_TRUE(logged);
}

TEST_F(TlsReloaderTest, BadStateDirIsRefused) {
  certs_->Write("plainfile", "x");
  absl::StatusOr<std::unique_ptr<TlsReloader>> r =
      TlsReloader::Create(Options(certs_->Path("plainfile")), &metrics_, &logger_);
  ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("tls_state_dir"));
}

}  // namespace
}  // namespace kiln::server
