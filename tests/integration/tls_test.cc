// TLS and mTLS on the real kilnd, with certificates made by the openssl CLI in the test:
// a CA, a server certificate for localhost/127.0.0.1 and a client certificate.
// Covers: TLS serves, a plaintext client fails, mTLS refuses a client without a certificate
// (and one signed by another CA), a rotated certificate is served to new connections after
// the periodic re-read (--tls_reload_interval_s=1) and after SIGHUP alone (interval 0), a bad
// new key is refused while the previous certificate keeps serving (counted in /metrics), bad
// files fail the start, and token auth runs on the TLS port too. Errors are handshake
// failures (UNAVAILABLE at the client), never a response.
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "tests/integration/prometheus_text.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "tests/integration/grpc_clients.h"
#include "tests/integration/kilnd_process.h"

namespace kiln::testing {
namespace {

using grpc::health::v1::HealthCheckResponse;

std::string ReadText(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

class Certs {
 public:
  explicit Certs(std::string dir) : dir_(std::move(dir)) {}

  // Creates <name>.crt/<name>.key: a self-signed CA.
  void MakeCa(const std::string& name) {
    Openssl({"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", Path(name + ".key"), "-out", Path(name + ".crt"), "-days", "2",
             "-subj", "/CN=" + name, "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign"});
  }

  // Creates <name>.crt/<name>.key signed by `ca`, for serverAuth or clientAuth.
  void MakeLeaf(const std::string& name, const std::string& ca, bool server) {
    const std::string ext = Path(name + ".ext");
    std::ofstream(ext) << (server ? "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                                    "extendedKeyUsage=serverAuth\n"
                                  : "extendedKeyUsage=clientAuth\n");
    Openssl({"req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", Path(name + ".key"), "-out", Path(name + ".csr"), "-subj",
             "/CN=" + name});
    Openssl({"x509", "-req", "-in", Path(name + ".csr"), "-CA", Path(ca + ".crt"), "-CAkey",
             Path(ca + ".key"), "-set_serial", std::to_string(++serial_), "-days", "2",
             "-extfile", ext, "-out", Path(name + ".crt")});
  }

  std::string Path(const std::string& file) const { return dir_ + "/" + file; }
  std::string Pem(const std::string& file) const { return ReadText(Path(file)); }

 private:
  void Openssl(std::vector<std::string> args) {
    args.insert(args.begin(), "/usr/bin/openssl");  // RunProcess does no PATH lookup
    absl::StatusOr<ProcessResult> r = RunProcess(args, {}, std::chrono::seconds(30));
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ(r->exit_code, 0) << args[1] << ": " << r->err;
  }

  std::string dir_;
  int serial_ = 1000;
};

// A TLS channel to 127.0.0.1:port that verifies the server against `ca_pem` as "localhost",
// presenting a client certificate when `cert_pem` is set.
std::shared_ptr<grpc::Channel> TlsChannel(int port, const std::string& ca_pem,
                                          const std::string& key_pem = "",
                                          const std::string& cert_pem = "") {
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = ca_pem;
  options.pem_private_key = key_pem;
  options.pem_cert_chain = cert_pem;
  grpc::ChannelArguments args;
  args.SetSslTargetNameOverride("localhost");
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // fresh connection per channel
  return grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port),
                                   grpc::SslCredentials(options), args);
}

grpc::Status Check(const std::shared_ptr<grpc::Channel>& channel) {
  HealthCheckResponse::ServingStatus status;
  return HealthCheck(channel, "liveness", &status);
}

// Polls `check` until it holds or `timeout` passes (the state lives in another process; there
// is no event to wait on). True when it held.
template <typename F>
bool PollUntil(F check, std::chrono::seconds timeout = std::chrono::seconds(20)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (check()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return check();
}

double TlsReloads(int metrics_port, const std::string& status) {
  absl::StatusOr<PromExposition> m = ScrapeMetrics(metrics_port);
  if (!m.ok()) return -1;
  return SumSamples(*m, "kiln_tls_reloads_total", {{"status", status}});
}

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<TempDir>> dir = TempDir::Create("kiln-tls");
    ASSERT_TRUE(dir.ok()) << dir.status();
    dir_ = *std::move(dir);
    certs_ = std::make_unique<Certs>(dir_->path());
    certs_->MakeCa("ca");
    certs_->MakeLeaf("server", "ca", /*server=*/true);
    certs_->MakeLeaf("client", "ca", /*server=*/false);
    certs_->MakeCa("other-ca");
    certs_->MakeLeaf("stranger", "other-ca", /*server=*/false);
  }

  std::unique_ptr<KilndProcess> StartKilnd(std::vector<std::string> flags) {
    flags.push_back("--tls_cert_file=" + certs_->Path("server.crt"));
    flags.push_back("--tls_key_file=" + certs_->Path("server.key"));
    absl::StatusOr<std::unique_ptr<KilndProcess>> kilnd =
        KilndProcess::Start({KilndPath(), std::move(flags)});
    EXPECT_TRUE(kilnd.ok()) << kilnd.status();
    return kilnd.ok() ? *std::move(kilnd) : nullptr;
  }

  std::unique_ptr<TempDir> dir_;
  std::unique_ptr<Certs> certs_;
};

TEST_F(TlsTest, ServesTlsAndRefusesPlaintext) {
  auto kilnd = StartKilnd({});
  ASSERT_NE(kilnd, nullptr);
  grpc::Status ok = Check(TlsChannel(kilnd->grpc_port(), certs_->Pem("ca.crt")));
  EXPECT_TRUE(ok.ok()) << ok.error_message() << "\n" << kilnd->Log();

  grpc::Status plain = Check(Connect(kilnd->grpc_address()));
  EXPECT_EQ(plain.error_code(), grpc::StatusCode::UNAVAILABLE) << plain.error_message();
  // A client that does not trust the server's CA fails the handshake.
  grpc::Status untrusted = Check(TlsChannel(kilnd->grpc_port(), certs_->Pem("other-ca.crt")));
  EXPECT_EQ(untrusted.error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(TlsTest, MutualTlsRequiresAClientCertificateFromTheClientCa) {
  auto kilnd = StartKilnd({"--tls_client_ca_file=" + certs_->Path("ca.crt")});
  ASSERT_NE(kilnd, nullptr);
  const std::string ca = certs_->Pem("ca.crt");
  grpc::Status with_cert = Check(
      TlsChannel(kilnd->grpc_port(), ca, certs_->Pem("client.key"), certs_->Pem("client.crt")));
  EXPECT_TRUE(with_cert.ok()) << with_cert.error_message() << "\n" << kilnd->Log();

  grpc::Status no_cert = Check(TlsChannel(kilnd->grpc_port(), ca));
  EXPECT_EQ(no_cert.error_code(), grpc::StatusCode::UNAVAILABLE) << no_cert.error_message();
  grpc::Status wrong_ca = Check(TlsChannel(kilnd->grpc_port(), ca, certs_->Pem("stranger.key"),
                                           certs_->Pem("stranger.crt")));
  EXPECT_EQ(wrong_ca.error_code(), grpc::StatusCode::UNAVAILABLE) << wrong_ca.error_message();
}

TEST_F(TlsTest, RotatedCertificateIsServedWithoutRestart) {
  auto kilnd = StartKilnd({"--tls_reload_interval_s=1"});
  ASSERT_NE(kilnd, nullptr);
  ASSERT_TRUE(Check(TlsChannel(kilnd->grpc_port(), certs_->Pem("ca.crt"))).ok());

  // Rotate to a certificate from a new CA, each file replaced atomically (as the kubelet
  // does), key first: the watcher may read between the renames, and a mismatched pair is
  // skipped until both are new.
  certs_->MakeCa("new-ca");
  certs_->MakeLeaf("server2", "new-ca", /*server=*/true);
  ASSERT_EQ(std::rename(certs_->Path("server2.key").c_str(), certs_->Path("server.key").c_str()),
            0);
  ASSERT_EQ(std::rename(certs_->Path("server2.crt").c_str(), certs_->Path("server.crt").c_str()),
            0);
  ASSERT_TRUE(kilnd->Signal(SIGHUP).ok());

  // The watcher polls every second: a new connection trusting only the new CA must succeed
  // within a bounded time (polling an external process's state; there is no event to wait on).
  const std::string new_ca = certs_->Pem("new-ca.crt");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  grpc::Status rotated;
  do {
    rotated = Check(TlsChannel(kilnd->grpc_port(), new_ca));
    if (rotated.ok()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  } while (std::chrono::steady_clock::now() < deadline);
  EXPECT_TRUE(rotated.ok()) << rotated.error_message() << "\n" << kilnd->Log();
  EXPECT_TRUE(kilnd->running()) << "SIGHUP must not end kilnd";
  // And the old certificate is no longer served.
  EXPECT_EQ(Check(TlsChannel(kilnd->grpc_port(), certs_->Pem("ca.crt"))).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(kilnd->Log(), ::testing::HasSubstr("sighup"));

  absl::StatusOr<int> code = kilnd->Stop(SIGTERM, std::chrono::seconds(30));
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0);
}

TEST_F(TlsTest, SighupReloadsValidatedFilesAndKeepsServingOnABadOne) {
  // Interval 0: only SIGHUP re-reads the files, so what changes below is SIGHUP's doing.
  auto kilnd = StartKilnd({"--tls_reload_interval_s=0"});
  ASSERT_NE(kilnd, nullptr);
  const std::string ca_a = certs_->Pem("ca.crt");
  ASSERT_TRUE(Check(TlsChannel(kilnd->grpc_port(), ca_a)).ok()) << kilnd->Log();
  {
    absl::StatusOr<PromExposition> m = ScrapeMetrics(kilnd->metrics_port());
    ASSERT_TRUE(m.ok()) << m.status();
    // Two days from now, as the openssl -days 2 certificate says (to a few minutes).
    const double expiry = SumSamples(*m, "kiln_tls_certificate_expiry_timestamp_seconds");
    const double now = static_cast<double>(std::time(nullptr));
    EXPECT_NEAR(expiry, now + 2 * 86400, 600);
  }

  // The operator's files now hold certificate B from CA B (plain overwrites: kilnd copies
  // only validated material, so it never serves a half-written file).
  certs_->MakeCa("ca-b");
  certs_->MakeLeaf("server-b", "ca-b", /*server=*/true);
  std::ofstream(certs_->Path("server.key"), std::ios::trunc) << certs_->Pem("server-b.key");
  std::ofstream(certs_->Path("server.crt"), std::ios::trunc) << certs_->Pem("server-b.crt");
  ASSERT_TRUE(kilnd->Signal(SIGHUP).ok());
  const std::string ca_b = certs_->Pem("ca-b.crt");
  EXPECT_TRUE(PollUntil([&] { return Check(TlsChannel(kilnd->grpc_port(), ca_b)).ok(); }))
      << kilnd->Log();
  EXPECT_EQ(Check(TlsChannel(kilnd->grpc_port(), ca_a)).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(kilnd->Log(), ::testing::HasSubstr("CN=server-b"));
  EXPECT_EQ(TlsReloads(kilnd->metrics_port(), "ok"), 1);

  // A garbage key: refused, counted, and certificate B keeps serving.
  std::ofstream(certs_->Path("server.key"), std::ios::trunc)
      << "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n";
  ASSERT_TRUE(kilnd->Signal(SIGHUP).ok());
  EXPECT_TRUE(PollUntil([&] { return TlsReloads(kilnd->metrics_port(), "error") == 1; }))
      << kilnd->Log();
  EXPECT_THAT(kilnd->Log(), ::testing::HasSubstr("tls_reload_failed"));
  EXPECT_THAT(kilnd->Log(), ::testing::HasSubstr(certs_->Path("server.key")));
  // Past at least two of gRPC's 1 s refreshes of the staged files, B is still served
  // (a fresh connection each time).
  for (int i = 0; i < 3; ++i) {
    const grpc::Status b = Check(TlsChannel(kilnd->grpc_port(), ca_b));
    EXPECT_TRUE(b.ok()) << b.error_message() << "\n" << kilnd->Log();
    std::this_thread::sleep_for(std::chrono::milliseconds(800));  // spans refreshes; not sync
  }
  EXPECT_TRUE(kilnd->running());
  absl::StatusOr<int> code = kilnd->Stop(SIGTERM, std::chrono::seconds(30));
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0);
}

TEST_F(TlsTest, MutualTlsClientCaIsReloadedToo) {
  absl::StatusOr<std::unique_ptr<KilndProcess>> missing = KilndProcess::Start(
      {KilndPath(),
       {"--tls_cert_file=" + certs_->Path("server.crt"),
        "--tls_key_file=" + certs_->Path("server.key"),
        "--tls_client_ca_file=" + certs_->Path("client-ca.pem")},
       std::chrono::milliseconds(10000)});
  ASSERT_FALSE(missing.ok()) << "a missing client CA file must fail the start";
  EXPECT_THAT(std::string(missing.status().message()),
              ::testing::HasSubstr("tls_client_ca_file"));

  std::ofstream(certs_->Path("client-ca.pem")) << certs_->Pem("ca.crt");
  auto kilnd = StartKilnd({"--tls_reload_interval_s=0",
                           "--tls_client_ca_file=" + certs_->Path("client-ca.pem")});
  ASSERT_NE(kilnd, nullptr);
  const std::string ca = certs_->Pem("ca.crt");
  ASSERT_TRUE(Check(TlsChannel(kilnd->grpc_port(), ca, certs_->Pem("client.key"),
                               certs_->Pem("client.crt")))
                  .ok())
      << kilnd->Log();
  // Trust other-ca's clients instead.
  std::ofstream(certs_->Path("client-ca.pem"), std::ios::trunc) << certs_->Pem("other-ca.crt");
  ASSERT_TRUE(kilnd->Signal(SIGHUP).ok());
  EXPECT_TRUE(PollUntil([&] {
    return Check(TlsChannel(kilnd->grpc_port(), ca, certs_->Pem("stranger.key"),
                            certs_->Pem("stranger.crt")))
        .ok();
  })) << kilnd->Log();
  EXPECT_EQ(Check(TlsChannel(kilnd->grpc_port(), ca, certs_->Pem("client.key"),
                             certs_->Pem("client.crt")))
                .error_code(),
            grpc::StatusCode::UNAVAILABLE);
}

TEST_F(TlsTest, MismatchedKeyFailsTheStart) {
  absl::StatusOr<std::unique_ptr<KilndProcess>> kilnd = KilndProcess::Start(
      {KilndPath(),
       {"--tls_cert_file=" + certs_->Path("server.crt"),
        "--tls_key_file=" + certs_->Path("client.key")},
       std::chrono::milliseconds(10000)});
  ASSERT_FALSE(kilnd.ok());
  EXPECT_THAT(std::string(kilnd.status().message()), ::testing::HasSubstr("does not match"));
}

TEST_F(TlsTest, TokensAreCheckedOnTheTlsPort) {
  const std::string tokens = certs_->Path("tokens");
  std::ofstream(tokens) << "tls-infer-token\n";
  auto kilnd = StartKilnd({"--inference_token_file=" + tokens});
  ASSERT_NE(kilnd, nullptr);
  const std::string ca = certs_->Pem("ca.crt");
  // Health stays open (default --auth_health=false); reflection needs the token.
  EXPECT_TRUE(Check(TlsChannel(kilnd->grpc_port(), ca)).ok()) << kilnd->Log();
  EXPECT_FALSE(ReflectionListServices(TlsChannel(kilnd->grpc_port(), ca)).ok());

  grpc::SslCredentialsOptions options;
  options.pem_root_certs = ca;
  grpc::ChannelArguments args;
  args.SetSslTargetNameOverride("localhost");
  auto with_token = grpc::CreateCustomChannel(
      "127.0.0.1:" + std::to_string(kilnd->grpc_port()),
      grpc::CompositeChannelCredentials(grpc::SslCredentials(options),
                                        grpc::AccessTokenCredentials("tls-infer-token")),
      args);
  absl::StatusOr<std::vector<std::string>> services = ReflectionListServices(with_token);
  ASSERT_TRUE(services.ok()) << services.status() << "\n" << kilnd->Log();
  EXPECT_THAT(*services, ::testing::Contains("kiln.v1.Kiln"));
}

TEST_F(TlsTest, MissingCertificateFileFailsTheStart) {
  absl::StatusOr<std::unique_ptr<KilndProcess>> kilnd = KilndProcess::Start(
      {KilndPath(),
       {"--tls_cert_file=" + certs_->Path("absent.crt"),
        "--tls_key_file=" + certs_->Path("server.key")},
       std::chrono::milliseconds(10000)});
  ASSERT_FALSE(kilnd.ok());
  EXPECT_THAT(std::string(kilnd.status().message()), ::testing::HasSubstr("tls_cert_file"));
}

}  // namespace
}  // namespace kiln::testing
