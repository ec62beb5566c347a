// Test helpers that run real processes: KilndProcess (the kilnd daemon on loopback) and
// RunProcess (a short-lived command such as kilnctl, with its output captured).
//
// KilndProcess::Start spawns kilnd with --listen=127.0.0.1:0 --metrics_listen=127.0.0.1:0
// --ready_file=<tmp> plus the caller's flags, then polls the ready file (it waits on an
// external process, so polling with a bounded deadline is the synchronization) until it names
// the spawned pid, and reads the ports from it. stdout/stderr go to a log file whose tail is included in every error.
// The destructor SIGKILLs a still-running daemon and removes the temp directory.
//
// Later tests that load models only need to pass more flags (--model_roots=...).
//
// Thread-safety: one thread per object.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kiln::testing {

// A fresh directory under $TMPDIR (or /tmp); removed with its contents on destruction.
class TempDir {
 public:
  static absl::StatusOr<std::unique_ptr<TempDir>> Create(const std::string& prefix);
  ~TempDir();
  const std::string& path() const { return path_; }
  // Writes `contents` to path()/name; returns the full path.
  absl::StatusOr<std::string> WriteFile(const std::string& name, const std::string& contents);

 private:
  explicit TempDir(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

// The whole file, or "" when it cannot be read.
std::string ReadWholeFile(const std::string& path);

class KilndProcess {
 public:
  struct Options {
    std::string binary;                 // path to kilnd
    std::vector<std::string> flags;     // extra flags, e.g. "--drain_timeout_s=5"
    std::chrono::milliseconds ready_timeout{30000};
    // Where to listen and where the ready file goes (empty: this object's temp dir). A restart
    // test passes the previous run's ports and ready file.
    std::string listen = "127.0.0.1:0";
    std::string metrics_listen = "127.0.0.1:0";
    std::string ready_file{};
  };

  // UNAVAILABLE (with the log tail) when kilnd exits or is not ready in time.
  static absl::StatusOr<std::unique_ptr<KilndProcess>> Start(Options options);
  ~KilndProcess();
  KilndProcess(const KilndProcess&) = delete;
  KilndProcess& operator=(const KilndProcess&) = delete;

  int grpc_port() const { return grpc_port_; }
  int metrics_port() const { return metrics_port_; }
  pid_t pid() const { return pid_; }
  std::string grpc_address() const { return "127.0.0.1:" + std::to_string(grpc_port_); }
  const std::string& dir() const { return dir_->path(); }

  absl::Status Signal(int signal);
  // Waits for the process to end: its exit code, or 128+signal when a signal killed it.
  // DEADLINE_EXCEEDED when still running after `timeout`.
  absl::StatusOr<int> Wait(std::chrono::milliseconds timeout);
  // Signal(signal) then Wait(timeout).
  absl::StatusOr<int> Stop(int signal, std::chrono::milliseconds timeout);
  bool running() const { return !exit_code_.has_value(); }
  // Everything kilnd wrote to stdout/stderr so far.
  std::string Log() const;

 private:
  KilndProcess() = default;
  std::unique_ptr<TempDir> dir_;
  std::string log_path_;
  pid_t pid_ = -1;
  int grpc_port_ = 0;
  int metrics_port_ = 0;
  std::optional<int> exit_code_;
};

struct ProcessResult {
  int exit_code = -1;  // 128+signal when killed by a signal
  std::string out;
  std::string err;
};

// Runs argv[0] with argv (no shell), extra environment `env` ("K=V") added to this
// process's, stdin from /dev/null. DEADLINE_EXCEEDED (after SIGKILL) past `timeout`.
absl::StatusOr<ProcessResult> RunProcess(const std::vector<std::string>& argv,
                                         const std::vector<std::string>& env,
                                         std::chrono::milliseconds timeout);

// GET `path` from 127.0.0.1:port over a raw socket (HTTP/1.0); returns the whole response
// (status line, headers, body).
absl::StatusOr<std::string> HttpGet(int port, const std::string& path);

}  // namespace kiln::testing
