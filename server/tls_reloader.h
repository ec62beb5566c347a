// TlsReloader: kilnd's private, validated copy of its TLS key material, replaced atomically
// on demand (SIGHUP), at start and every `interval` (issue #9).
//
// Why a copy: gRPC 1.51 has no public API to push new key material into a certificate
// provider, and its FileWatcherCertificateProvider cannot be triggered early. So gRPC
// watches files in a private staging directory (refresh 1 s) that only this class writes,
// and this class writes there only material that ReadTlsMaterial() accepted. A bad new file
// is refused (logged with the file and the reason, counted as an error) and the staged copy,
// hence the served certificate, stays as it was.
//
// Staging layout (directory 0700, files 0600):
//   identity.pem  the private key followed by the certificate chain, ONE file, so a single
//                 rename swaps key and certificate together. gRPC's watcher is given this
//                 path as both key and certificate file (PEM readers skip blocks of the
//                 other type). It reads the path twice (key, then chain) and compares the
//                 file's mtime (seconds) before and after, retrying on a change; every staged
//                 file gets an mtime in a later second than the one it replaces, so a swap
//                 between the two reads is always seen and a mismatched pair never served.
//   ca.pem        the client CA bundle (mTLS only). Swapped after identity.pem; for at most
//                 one refresh (1 s) a new identity may be served with the previous CA.
//
// The directory is `state_dir` (created 0700 if missing; kilnd removes only its own files at
// exit) or, when empty, a fresh mkdtemp under $TMPDIR or /tmp that is removed at exit. One
// kilnd per directory. In Kubernetes: an emptyDir with medium Memory (the root filesystem is
// read-only, and the key then never touches a disk).
//
// Metrics: kiln_tls_reloads_total{status="ok|error"} (reloads after the start, unchanged
// files included) and kiln_tls_certificate_expiry_timestamp_seconds (the served leaf's
// notAfter). Logs: tls_reloaded (subject, not_after, trigger), tls_reload_failed (error,
// trigger), tls_certificate_not_valid_now (warning; the certificate is still served).
//
// Thread-safety: Reload() may be called from any thread; calls are serialized.
#pragma once

#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/logger.h"
#include "server/metrics.h"
#include "server/tls_material.h"

namespace kiln::server {

class TlsReloader {
 public:
  struct Options {
    TlsFiles files;
    std::string state_dir;                      // "" = mkdtemp under $TMPDIR or /tmp
    absl::Duration interval = absl::ZeroDuration();  // > 0: also reload on this period
  };

  // Validates and stages the operator's files. The status of ReadTlsMaterial when they are
  // refused (the start fails); INVALID_ARGUMENT naming tls_state_dir when the directory
  // cannot be created, is not a directory or cannot be made private; UNAVAILABLE when
  // staging fails. `metrics` and `logger` must outlive this object.
  static absl::StatusOr<std::unique_ptr<TlsReloader>> Create(Options options, Metrics* metrics,
                                                             Logger* logger);
  ~TlsReloader();  // stops the periodic thread, removes the staged files (and a mkdtemp dir)
  TlsReloader(const TlsReloader&) = delete;
  TlsReloader& operator=(const TlsReloader&) = delete;

  // Re-reads and validates the operator's files and, when they changed, swaps the staged
  // copies. `trigger` ("sighup", "interval") goes into the log line. The refusal status
  // (see ReadTlsMaterial) or UNAVAILABLE when staging failed; the served material is then
  // unchanged.
  absl::Status Reload(const std::string& trigger);

  // What gRPC's watcher reads.
  const std::string& identity_path() const { return identity_path_; }
  const std::string& ca_path() const { return ca_path_; }  // "" without mTLS
  const std::string& state_dir() const { return dir_; }

 private:
  TlsReloader(Options options, Metrics* metrics, Logger* logger)
      : options_(std::move(options)), metrics_(metrics), logger_(logger) {}

  absl::Status PrepareDir();
  absl::Status Stage(const TlsMaterial& m) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Announce(const TlsMaterial& m, const std::string& trigger);
  void PeriodicLoop();

  const Options options_;
  Metrics* const metrics_;
  Logger* const logger_;
  std::string dir_;
  bool made_dir_ = false;
  std::string identity_path_;
  std::string ca_path_;

  absl::Mutex mu_;  // serializes reloads
  TlsMaterial current_ ABSL_GUARDED_BY(mu_);
  absl::Mutex stop_mu_;
  bool stop_ ABSL_GUARDED_BY(stop_mu_) = false;
  std::thread periodic_;
};

}  // namespace kiln::server
