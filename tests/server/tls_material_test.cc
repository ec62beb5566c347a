#include "server/tls_material.h"

#include <unistd.h>

#include <cstdlib>

#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/server/tls_test_certs.h"

namespace kiln::server {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class TlsMaterialTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string templ = ::testing::TempDir() + "/tls_material_XXXXXX";
    ASSERT_NE(mkdtemp(templ.data()), nullptr);
    dir_ = new std::string(templ);
    certs_ = new testing::TestCerts(*dir_);
    certs_->MakeCa("ca");
    certs_->MakeLeaf("server", "ca");
    certs_->MakeLeaf("other", "ca");
    certs_->MakeEncryptedKey("locked");
  }
  static void TearDownTestSuite() {
    const int rc = std::system(("rm -rf " + *dir_).c_str());
    (void)rc;
    delete certs_;
    delete dir_;
  }
  static std::string Pem(const std::string& f) { return certs_->Read(f); }

  static std::string* dir_;
  static testing::TestCerts* certs_;
};
std::string* TlsMaterialTest::dir_ = nullptr;
testing::TestCerts* TlsMaterialTest::certs_ = nullptr;

TEST_F(TlsMaterialTest, AcceptsAMatchingPairAndReadsTheLeaf) {
  const absl::Time now = absl::Now();
  absl::StatusOr<TlsMaterial> m =
      ValidateTlsMaterial(Pem("server.key"), Pem("server.crt"), Pem("ca.crt"), now);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->subject, "CN=server");
  EXPECT_TRUE(m->valid_now);
  // -days 2: notAfter two days from issue (a few seconds ago), to the second.
  EXPECT_LT(absl::AbsDuration(m->not_after - (now + absl::Hours(48))), absl::Minutes(5));
  EXPECT_EQ(m->ca_pem, Pem("ca.crt"));
}

TEST_F(TlsMaterialTest, AcceptsAChainLeafFirst) {
  absl::StatusOr<TlsMaterial> m = ValidateTlsMaterial(
      Pem("server.key"), Pem("server.crt") + Pem("ca.crt"), "", absl::Now());
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->subject, "CN=server");
}

TEST_F(TlsMaterialTest, RefusesAKeyOfAnotherCertificate) {
  absl::StatusOr<TlsMaterial> m =
      ValidateTlsMaterial(Pem("other.key"), Pem("server.crt"), "", absl::Now());
  ASSERT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(m.status().message()), HasSubstr("does not match"));
  EXPECT_THAT(std::string(m.status().message()), HasSubstr("tls_key_file"));
}

TEST_F(TlsMaterialTest, RefusesTruncatedPem) {
  const std::string cert = Pem("server.crt");
  const std::string key = Pem("server.key");
  absl::StatusOr<TlsMaterial> m =
      ValidateTlsMaterial(key, cert.substr(0, cert.size() / 2), "", absl::Now());
  ASSERT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(m.status().message()), HasSubstr("tls_cert_file"));

  m = ValidateTlsMaterial(key.substr(0, key.size() / 2), cert, "", absl::Now());
  ASSERT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(m.status().message()), HasSubstr("tls_key_file"));

  // A good leaf followed by a cut-off second certificate is refused, not silently shortened.
  const std::string ca = Pem("ca.crt");
  m = ValidateTlsMaterial(key, cert + ca.substr(0, ca.size() - 40), "", absl::Now());
  ASSERT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(m.status().message()), HasSubstr("certificate #2"));
}

TEST_F(TlsMaterialTest, RefusesGarbageEmptyAndEncrypted) {
  const std::string cert = Pem("server.crt");
  EXPECT_EQ(ValidateTlsMaterial("garbage", cert, "", absl::Now()).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(ValidateTlsMaterial(Pem("server.key"), "", "", absl::Now())
                              .status()
                              .message()),
              HasSubstr("tls_cert_file"));
  absl::StatusOr<TlsMaterial> ca =
      ValidateTlsMaterial(Pem("server.key"), cert, "not a certificate\n", absl::Now());
  ASSERT_EQ(ca.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(ca.status().message()), HasSubstr("tls_client_ca_file"));
  // An encrypted key would need a passphrase prompt: refused, never prompted for.
  absl::StatusOr<TlsMaterial> locked =
      ValidateTlsMaterial(Pem("locked.key"), cert, "", absl::Now());
  EXPECT_EQ(locked.status().code(), absl::StatusCode::kInvalidArgument);
  // The key text never appears in a message.
  absl::StatusOr<TlsMaterial> mismatch =
      ValidateTlsMaterial(Pem("other.key"), cert, "", absl::Now());
  EXPECT_THAT(std::string(mismatch.status().message()), Not(HasSubstr("PRIVATE KEY")));
}

TEST_F(TlsMaterialTest, OutsideTheValidityWindowIsAcceptedButFlagged) {
  // Decided (tls_material.h): served anyway, flagged for a warning and the expiry metric.
  absl::StatusOr<TlsMaterial> later = ValidateTlsMaterial(
      Pem("server.key"), Pem("server.crt"), "", absl::Now() + absl::Hours(24 * 10));
  ASSERT_TRUE(later.ok()) << later.status();
  EXPECT_FALSE(later->valid_now);
  absl::StatusOr<TlsMaterial> earlier = ValidateTlsMaterial(
      Pem("server.key"), Pem("server.crt"), "", absl::Now() - absl::Hours(1));
  ASSERT_TRUE(earlier.ok()) << earlier.status();
  EXPECT_FALSE(earlier->valid_now);
}

TEST_F(TlsMaterialTest, ReadNamesTheFile) {
  TlsFiles files{certs_->Path("server.crt"), certs_->Path("absent.key"), ""};
  absl::StatusOr<TlsMaterial> m = ReadTlsMaterial(files, absl::Now());
  ASSERT_EQ(m.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(m.status().message()), HasSubstr("tls_key_file"));

  files.key_file = certs_->Path("other.key");
  m = ReadTlsMaterial(files, absl::Now());
  ASSERT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(m.status().message()), HasSubstr(certs_->Path("other.key")));

  files = {certs_->Path("server.crt"), certs_->Path("server.key"), certs_->Path("ca.crt")};
  m = ReadTlsMaterial(files, absl::Now());
  ASSERT_TRUE(m.ok()) << m.status();
}

}  // namespace
}  // namespace kiln::server
