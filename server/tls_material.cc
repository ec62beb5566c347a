#include "server/tls_material.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <ctime>
#include <fstream>
#include <memory>
#include <sstream>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace kiln::server {
namespace {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;

// OpenSSL's default callback prompts on the terminal for an encrypted key; a daemon must
// refuse such a key instead (no password = decryption fails).
int NoPassword(char*, int, int, void*) { return 0; }

BioPtr MemBio(const std::string& text) {
  return BioPtr(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
}

// Every certificate in `pem`, in order. A block that does not parse (truncated, bad base64,
// bad DER) is an error; only a clean end (no further BEGIN line) stops the loop.
absl::StatusOr<std::vector<X509Ptr>> ParseCertificates(const char* setting,
                                                       const std::string& pem) {
  ERR_clear_error();
  BioPtr bio = MemBio(pem);
  std::vector<X509Ptr> certs;
  while (true) {
    X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, NoPassword, nullptr));
    if (cert == nullptr) break;
    certs.push_back(std::move(cert));
  }
  const unsigned long err = ERR_peek_last_error();
  const bool clean_end = ERR_GET_LIB(err) == ERR_LIB_PEM && ERR_GET_REASON(err) == PEM_R_NO_START_LINE;
  ERR_clear_error();
  if (!clean_end) {
    return absl::InvalidArgumentError(absl::StrCat(
        setting, ": certificate #", certs.size() + 1, " is truncated or not valid PEM"));
  }
  if (certs.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(setting, ": holds no PEM certificate"));
  }
  return certs;
}

absl::Time AsnTime(const ASN1_TIME* t) {
  struct tm tm = {};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) return absl::InfinitePast();
  return absl::FromTimeT(timegm(&tm));
}

std::string Subject(X509* cert) {
  BioPtr out(BIO_new(BIO_s_mem()));
  X509_NAME_print_ex(out.get(), X509_get_subject_name(cert), 0, XN_FLAG_RFC2253);
  char* data = nullptr;
  const long n = BIO_get_mem_data(out.get(), &data);
  return n > 0 ? std::string(data, static_cast<size_t>(n)) : std::string();
}

absl::StatusOr<std::string> ReadFile(const char* setting, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(setting, ": cannot read '", path, "'"));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

absl::StatusOr<TlsMaterial> ValidateTlsMaterial(std::string key_pem, std::string cert_pem,
                                                std::string ca_pem, absl::Time now) {
  absl::StatusOr<std::vector<X509Ptr>> chain = ParseCertificates("tls_cert_file", cert_pem);
  if (!chain.ok()) return chain.status();
  ERR_clear_error();
  BioPtr key_bio = MemBio(key_pem);
  PkeyPtr key(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, NoPassword, nullptr));
  ERR_clear_error();
  if (key == nullptr) {
    return absl::InvalidArgumentError(
        "tls_key_file: not an unencrypted PEM private key (or truncated)");
  }
  X509* leaf = chain->front().get();
  if (X509_check_private_key(leaf, key.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        "tls_key_file: the private key does not match the certificate in tls_cert_file");
  }
  if (!ca_pem.empty()) {
    absl::StatusOr<std::vector<X509Ptr>> ca = ParseCertificates("tls_client_ca_file", ca_pem);
    if (!ca.ok()) return ca.status();
  }
  TlsMaterial m;
  m.subject = Subject(leaf);
  m.not_before = AsnTime(X509_get0_notBefore(leaf));
  m.not_after = AsnTime(X509_get0_notAfter(leaf));
  m.valid_now = m.not_before <= now && now < m.not_after;
  m.key_pem = std::move(key_pem);
  m.cert_pem = std::move(cert_pem);
  m.ca_pem = std::move(ca_pem);
  return m;
}

absl::StatusOr<TlsMaterial> ReadTlsMaterial(const TlsFiles& files, absl::Time now) {
  absl::StatusOr<std::string> cert = ReadFile("tls_cert_file", files.cert_file);
  if (!cert.ok()) return cert.status();
  absl::StatusOr<std::string> key = ReadFile("tls_key_file", files.key_file);
  if (!key.ok()) return key.status();
  std::string ca;
  if (!files.client_ca_file.empty()) {
    absl::StatusOr<std::string> text = ReadFile("tls_client_ca_file", files.client_ca_file);
    if (!text.ok()) return text.status();
    ca = *std::move(text);
  }
  absl::StatusOr<TlsMaterial> m =
      ValidateTlsMaterial(*std::move(key), *std::move(cert), std::move(ca), now);
  if (!m.ok()) {
    // Name the file the operator has to fix.
    const std::string msg(m.status().message());
    const std::string& path = absl::StartsWith(msg, "tls_key_file") ? files.key_file
                              : absl::StartsWith(msg, "tls_client_ca_file")
                                  ? files.client_ca_file
                                  : files.cert_file;
    return absl::Status(m.status().code(), absl::StrCat(msg, " ('", path, "')"));
  }
  return m;
}

}  // namespace kiln::server
