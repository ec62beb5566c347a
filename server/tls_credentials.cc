#include "server/tls_credentials.h"

#include <map>
#include <string>

#include "grpc/grpc.h"
#include "grpc/grpc_security.h"
#include "grpc/slice.h"
#include "grpcpp/security/tls_certificate_provider.h"
#include "grpcpp/security/tls_credentials_options.h"

namespace kiln::server {
namespace {

// How often gRPC's watcher re-reads the staged files. Only TlsReloader writes them, so a
// short period costs two small reads a second and bounds how long a swap takes to serve.
constexpr unsigned int kStagedRefreshSeconds = 1;

// Plaintext credentials that accept an AuthMetadataProcessor (see the header).
class PlaintextCredentials final : public grpc::ServerCredentials {
 public:
  PlaintextCredentials() : creds_(grpc_insecure_server_credentials_create()) {}
  ~PlaintextCredentials() override { grpc_server_credentials_release(creds_); }

  void SetAuthMetadataProcessor(
      const std::shared_ptr<grpc::AuthMetadataProcessor>& processor) override {
    // The core credentials outlive this object (the server holds a reference), so the
    // processor is owned by the C state and released through `destroy`.
    grpc_auth_metadata_processor c{&Process, &Destroy,
                                   new std::shared_ptr<grpc::AuthMetadataProcessor>(processor)};
    grpc_server_credentials_set_auth_metadata_processor(creds_, c);
  }

 private:
  int AddPortToServer(const std::string& addr, grpc_server* server) override {
    return grpc_server_add_http2_port(server, addr.c_str(), creds_);
  }

  static void Process(void* state, grpc_auth_context*, const grpc_metadata* md, size_t num_md,
                      grpc_process_auth_metadata_done_cb done, void* user_data) {
    auto& processor = *static_cast<std::shared_ptr<grpc::AuthMetadataProcessor>*>(state);
    grpc::AuthMetadataProcessor::InputMetadata input;
    for (size_t i = 0; i < num_md; ++i) {
      input.emplace(
          grpc::string_ref(reinterpret_cast<const char*>(GRPC_SLICE_START_PTR(md[i].key)),
                           GRPC_SLICE_LENGTH(md[i].key)),
          grpc::string_ref(reinterpret_cast<const char*>(GRPC_SLICE_START_PTR(md[i].value)),
                           GRPC_SLICE_LENGTH(md[i].value)));
    }
    grpc::AuthMetadataProcessor::OutputMetadata consumed, response;
    const grpc::Status s = processor->Process(input, nullptr, &consumed, &response);
    done(user_data, nullptr, 0, nullptr, 0, static_cast<grpc_status_code>(s.error_code()),
         s.ok() ? nullptr : s.error_message().c_str());
  }

  static void Destroy(void* state) {
    delete static_cast<std::shared_ptr<grpc::AuthMetadataProcessor>*>(state);
  }

  grpc_server_credentials* const creds_;
};

std::shared_ptr<grpc::ServerCredentials> TlsCredentials(const TlsReloader& tls) {
  std::shared_ptr<grpc::experimental::CertificateProviderInterface> provider;
  // The identity file holds the key and the chain: it is both the key and the cert file.
  if (tls.ca_path().empty()) {
    provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
        tls.identity_path(), tls.identity_path(), kStagedRefreshSeconds);
  } else {
    provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
        tls.identity_path(), tls.identity_path(), tls.ca_path(), kStagedRefreshSeconds);
  }
  grpc::experimental::TlsServerCredentialsOptions options(provider);
  options.watch_identity_key_cert_pairs();
  if (tls.ca_path().empty()) {
    options.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  } else {
    options.watch_root_certs();
    options.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  }
  return grpc::experimental::TlsServerCredentials(options);
}

}  // namespace

std::shared_ptr<grpc::ServerCredentials> MakeServerCredentials(
    const TlsReloader* tls, std::shared_ptr<grpc::AuthMetadataProcessor> processor) {
  std::shared_ptr<grpc::ServerCredentials> creds;
  if (tls != nullptr) {
    creds = TlsCredentials(*tls);
  } else if (processor != nullptr) {
    creds = std::make_shared<PlaintextCredentials>();
  } else {
    creds = grpc::InsecureServerCredentials();
  }
  if (processor != nullptr) creds->SetAuthMetadataProcessor(processor);
  return creds;
}

}  // namespace kiln::server
