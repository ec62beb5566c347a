// TLS key material as kilnd serves it: the server's private key, its certificate chain and
// (for mTLS) the client CA bundle, parsed and cross-checked with OpenSSL before any of it
// reaches gRPC (server/tls_reloader.h stages only validated material).
//
// Checks: the key is an unencrypted PEM private key; the chain holds >= 1 PEM certificate
// and nothing truncated; the key matches the first (leaf) certificate; the CA bundle, when
// set, holds >= 1 PEM certificate. A certificate outside its validity window is NOT refused:
// clock skew can make a fresh certificate briefly "not yet valid", and refusing it would keep
// a certificate that is about to expire. `valid_now` says so, the caller logs a warning, and
// kiln_tls_certificate_expiry_timestamp_seconds lets an alert catch an expired one.
//
// Thread-safety: free functions, no shared state.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace kiln::server {

struct TlsMaterial {
  std::string key_pem;
  std::string cert_pem;  // leaf first, then intermediates
  std::string ca_pem;    // "" without mTLS
  // From the leaf certificate.
  std::string subject;   // RFC 2253, e.g. "CN=kiln.example"
  absl::Time not_before;
  absl::Time not_after;
  bool valid_now = true;  // not_before <= now < not_after
};

// The operator's files (cert and key required; ca may be "").
struct TlsFiles {
  std::string cert_file;
  std::string key_file;
  std::string client_ca_file;
};

// Parses and cross-checks PEM text. INVALID_ARGUMENT naming the setting (tls_cert_file,
// tls_key_file, tls_client_ca_file) and the reason; never echoes key bytes.
absl::StatusOr<TlsMaterial> ValidateTlsMaterial(std::string key_pem, std::string cert_pem,
                                                std::string ca_pem, absl::Time now);

// Reads the files, then ValidateTlsMaterial. NOT_FOUND naming the setting and path when a
// file cannot be read; INVALID_ARGUMENT (with the path) when one is refused.
absl::StatusOr<TlsMaterial> ReadTlsMaterial(const TlsFiles& files, absl::Time now);

}  // namespace kiln::server
