// The credentials kilnd's gRPC port listens with: plaintext, or TLS/mTLS served from the
// TlsReloader's staged files through gRPC's FileWatcherCertificateProvider (refresh 1 s, so a
// staged swap reaches new handshakes within about a second); with an AuthMetadataProcessor
// (server/auth.h AuthProcessor) on either when auth is on.
//
// Plaintext + processor: gRPC 1.51's InsecureServerCredentials() aborts on
// SetAuthMetadataProcessor, so the plaintext port is built from the C core's insecure
// credentials, which run the server auth filter like secure ones. On that path the processor
// is given a null AuthContext (AuthProcessor does not read it).
//
// Thread-safety: call before the server starts.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "grpcpp/security/auth_metadata_processor.h"
#include "grpcpp/security/server_credentials.h"
#include "server/tls_reloader.h"

namespace kiln::server {

// `tls` null = plaintext; `processor` null = no transport-level auth check. `tls` must have
// staged its files (TlsReloader::Create did) and outlive the server.
std::shared_ptr<grpc::ServerCredentials> MakeServerCredentials(
    const TlsReloader* tls, std::shared_ptr<grpc::AuthMetadataProcessor> processor);

}  // namespace kiln::server
