#include "server/tls_reloader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace kiln::server {
namespace {

absl::Status DirError(const std::string& dir, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("tls_state_dir: '", dir, "' ", what));
}

// gRPC's watcher notices a replaced file by its mtime in whole seconds: the new file must
// carry a later second than the one it replaces, even when both are written in one second.
time_t NextMtime(const std::string& path) {
  const time_t now = time(nullptr);
  struct stat st = {};
  if (stat(path.c_str(), &st) != 0) return now;
  return now > st.st_mtime ? now : st.st_mtime + 1;
}

// Writes `text` to a private temporary file next to `path` with the mtime NextMtime(path),
// then renames it over `path` (atomic within the directory).
absl::Status WriteAtomically(const std::string& path, const std::string& text) {
  const std::string tmp = absl::StrCat(path, ".tmp");
  const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    return absl::UnavailableError(absl::StrCat("tls staging: cannot create '", tmp, "': ",
                                               std::strerror(errno)));
  }
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  const time_t mtime = NextMtime(path);
  const struct timespec times[2] = {{mtime, 0}, {mtime, 0}};
  const bool ok = done == text.size() && fchmod(fd, 0600) == 0 && futimens(fd, times) == 0;
  close(fd);
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    unlink(tmp.c_str());
    return absl::UnavailableError(absl::StrCat("tls staging: cannot write '", path, "'"));
  }
  return absl::OkStatus();
}

std::string Rfc3339(absl::Time t) { return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone()); }

bool SameMaterial(const TlsMaterial& a, const TlsMaterial& b) {
  return a.key_pem == b.key_pem && a.cert_pem == b.cert_pem && a.ca_pem == b.ca_pem;
}

}  // namespace

absl::StatusOr<std::unique_ptr<TlsReloader>> TlsReloader::Create(Options options,
                                                                 Metrics* metrics,
                                                                 Logger* logger) {
  absl::StatusOr<TlsMaterial> material = ReadTlsMaterial(options.files, absl::Now());
  if (!material.ok()) return material.status();
  std::unique_ptr<TlsReloader> r(new TlsReloader(std::move(options), metrics, logger));
  absl::Status s = r->PrepareDir();
  if (!s.ok()) return s;
  {
    absl::MutexLock lock(&r->mu_);
    s = r->Stage(*material);
    if (!s.ok()) return s;
  }
  r->metrics_->EnableTlsMetrics();
  r->Announce(*material, "start");
  if (r->options_.interval > absl::ZeroDuration()) {
    r->periodic_ = std::thread([raw = r.get()] { raw->PeriodicLoop(); });
  }
  return r;
}

TlsReloader::~TlsReloader() {
  {
    absl::MutexLock lock(&stop_mu_);
    stop_ = true;
  }
  if (periodic_.joinable()) periodic_.join();
  for (const std::string& path : {identity_path_, ca_path_}) {
    if (path.empty()) continue;
    unlink(path.c_str());
    unlink(absl::StrCat(path, ".tmp").c_str());
  }
  if (made_dir_) rmdir(dir_.c_str());
}

absl::Status TlsReloader::PrepareDir() {
  if (options_.state_dir.empty()) {
    const char* tmpdir = std::getenv("TMPDIR");
    std::string templ = absl::StrCat(tmpdir != nullptr && *tmpdir != '\0' ? tmpdir : "/tmp",
                                     "/kilnd-tls-XXXXXX");
    std::vector<char> buf(templ.begin(), templ.end());
    buf.push_back('\0');
    if (mkdtemp(buf.data()) == nullptr) {
      return DirError(templ, absl::StrCat("cannot be created: ", std::strerror(errno)));
    }
    dir_ = buf.data();
    made_dir_ = true;  // mkdtemp makes it 0700
  } else {
    dir_ = options_.state_dir;
    if (mkdir(dir_.c_str(), 0700) != 0 && errno != EEXIST) {
      return DirError(dir_, absl::StrCat("cannot be created: ", std::strerror(errno)));
    }
    struct stat st = {};
    if (lstat(dir_.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      return DirError(dir_, "is not a directory");
    }
    // Private: the key lives here. An emptyDir is ours to restrict.
    if ((st.st_mode & 0777) != 0700 && chmod(dir_.c_str(), 0700) != 0) {
      return DirError(dir_, absl::StrCat("cannot be made private (0700): ", std::strerror(errno)));
    }
  }
  identity_path_ = absl::StrCat(dir_, "/identity.pem");
  if (!options_.files.client_ca_file.empty()) ca_path_ = absl::StrCat(dir_, "/ca.pem");
  return absl::OkStatus();
}

absl::Status TlsReloader::Stage(const TlsMaterial& m) {
  std::string identity = m.key_pem;
  if (!identity.empty() && identity.back() != '\n') identity.push_back('\n');
  identity += m.cert_pem;
  absl::Status s = WriteAtomically(identity_path_, identity);
  if (s.ok() && !ca_path_.empty()) s = WriteAtomically(ca_path_, m.ca_pem);
  if (s.ok()) current_ = m;
  return s;
}

void TlsReloader::Announce(const TlsMaterial& m, const std::string& trigger) {
  metrics_->SetTlsCertificateExpiry(m.not_after);
  logger_->Log(LogLevel::kInfo, "tls_reloaded",
               {{"trigger", trigger}, {"subject", m.subject}, {"not_after", Rfc3339(m.not_after)},
                {"state_dir", dir_}});
  if (!m.valid_now) {
    logger_->Log(LogLevel::kWarning, "tls_certificate_not_valid_now",
                 {{"subject", m.subject}, {"not_before", Rfc3339(m.not_before)},
                  {"not_after", Rfc3339(m.not_after)},
                  {"hint", "served anyway; clients will refuse it until it is valid"}});
  }
}

absl::Status TlsReloader::Reload(const std::string& trigger) {
  absl::StatusOr<TlsMaterial> material = ReadTlsMaterial(options_.files, absl::Now());
  absl::Status s = material.status();
  bool changed = false;
  if (s.ok()) {
    absl::MutexLock lock(&mu_);
    changed = !SameMaterial(*material, current_);
    if (changed) s = Stage(*material);
  }
  metrics_->TlsReloaded(s.ok());
  if (!s.ok()) {
    logger_->Log(LogLevel::kError, "tls_reload_failed",
                 {{"trigger", trigger}, {"error", std::string(s.message())},
                  {"serving", "previous certificate"}});
    return s;
  }
  if (changed) {
    Announce(*material, trigger);
  } else if (trigger != "interval") {
    logger_->Log(LogLevel::kInfo, "tls_unchanged", {{"trigger", trigger}});
  }
  return absl::OkStatus();
}

void TlsReloader::PeriodicLoop() {
  while (true) {
    {
      absl::MutexLock lock(&stop_mu_);
      if (stop_mu_.AwaitWithTimeout(absl::Condition(&stop_), options_.interval)) return;
    }
    Reload("interval").IgnoreError();  // logged and counted inside
  }
}

}  // namespace kiln::server
