#include "tests/integration/kilnd_process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

extern char** environ;

namespace kiln::testing {
namespace {

using Clock = std::chrono::steady_clock;

std::string Tail(const std::string& text, size_t n = 4000) {
  return text.size() <= n ? text : "..." + text.substr(text.size() - n);
}

int DecodeWaitStatus(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

// argv/envp arrays for posix_spawn; the strings must outlive the call.
std::vector<char*> CStrings(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (std::string& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

}  // namespace

std::string ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream data;
  if (in) data << in.rdbuf();
  return data.str();
}

absl::StatusOr<std::unique_ptr<TempDir>> TempDir::Create(const std::string& prefix) {
  const char* base = std::getenv("TMPDIR");
  std::string templ = std::string(base && *base ? base : "/tmp") + "/" + prefix + ".XXXXXX";
  if (mkdtemp(templ.data()) == nullptr) {
    return absl::InternalError("mkdtemp(" + templ + "): " + std::strerror(errno));
  }
  return std::unique_ptr<TempDir>(new TempDir(templ));
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

absl::StatusOr<std::string> TempDir::WriteFile(const std::string& name,
                                               const std::string& contents) {
  const std::string path = path_ + "/" + name;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << contents;
  out.close();
  if (!out) return absl::InternalError("cannot write " + path);
  return path;
}

absl::StatusOr<std::unique_ptr<KilndProcess>> KilndProcess::Start(Options options) {
  std::unique_ptr<KilndProcess> p(new KilndProcess());
  absl::StatusOr<std::unique_ptr<TempDir>> dir = TempDir::Create("kilnd_test");
  if (!dir.ok()) return dir.status();
  p->dir_ = *std::move(dir);
  p->log_path_ = p->dir_->path() + "/kilnd.log";
  const std::string ready_file =
      options.ready_file.empty() ? p->dir_->path() + "/ready.json" : options.ready_file;

  std::vector<std::string> args = {options.binary, "--listen=" + options.listen,
                                   "--metrics_listen=" + options.metrics_listen,
                                   "--ready_file=" + ready_file};
  args.insert(args.end(), options.flags.begin(), options.flags.end());
  std::vector<char*> argv = CStrings(args);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, p->log_path_.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  const int rc = posix_spawn(&p->pid_, options.binary.c_str(), &actions, nullptr, argv.data(),
                             environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    p->pid_ = -1;
    return absl::InternalError("posix_spawn(" + options.binary + "): " + std::strerror(rc));
  }

  const Clock::time_point deadline = Clock::now() + options.ready_timeout;
  while (true) {
    // The file appears atomically (rename), so any content seen is complete.
    const std::string text = ReadWholeFile(ready_file);
    if (!text.empty()) {
      nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
      if (j.is_discarded() || !j.is_object() || !j.contains("grpc_port") ||
          !j["grpc_port"].is_number_integer() || !j.contains("metrics_port") ||
          !j["metrics_port"].is_number_integer() || !j.contains("pid") ||
          !j["pid"].is_number_integer()) {
        return absl::InternalError("ready_file is not {grpc_port,metrics_port,pid}: " + text);
      }
      // Another pid: a previous run's file, which kilnd removes as it starts; keep waiting.
      if (j["pid"].get<int>() == p->pid_) {
        p->grpc_port_ = j["grpc_port"].get<int>();
        p->metrics_port_ = j["metrics_port"].get<int>();
        return p;
      }
    }
    int status = 0;
    if (waitpid(p->pid_, &status, WNOHANG) == p->pid_) {
      p->exit_code_ = DecodeWaitStatus(status);
      return absl::UnavailableError("kilnd exited with " + std::to_string(*p->exit_code_) +
                                    " before it was ready; log:\n" + Tail(p->Log()));
    }
    if (Clock::now() > deadline) {
      return absl::UnavailableError("kilnd not ready within the deadline; log:\n" +
                                    Tail(p->Log()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

KilndProcess::~KilndProcess() {
  if (pid_ > 0 && !exit_code_.has_value()) {
    kill(pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
  }
}

absl::Status KilndProcess::Signal(int signal) {
  if (pid_ <= 0 || exit_code_.has_value()) return absl::FailedPreconditionError("not running");
  if (kill(pid_, signal) != 0) return absl::InternalError(std::strerror(errno));
  return absl::OkStatus();
}

absl::StatusOr<int> KilndProcess::Wait(std::chrono::milliseconds timeout) {
  if (exit_code_.has_value()) return *exit_code_;
  if (pid_ <= 0) return absl::FailedPreconditionError("never started");
  const Clock::time_point deadline = Clock::now() + timeout;
  while (true) {
    int status = 0;
    const pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      exit_code_ = DecodeWaitStatus(status);
      return *exit_code_;
    }
    if (r < 0) return absl::InternalError(std::string("waitpid: ") + std::strerror(errno));
    if (Clock::now() > deadline) {
      return absl::DeadlineExceededError("kilnd still running; log:\n" + Tail(Log()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

absl::StatusOr<int> KilndProcess::Stop(int signal, std::chrono::milliseconds timeout) {
  if (absl::Status s = Signal(signal); !s.ok()) return s;
  return Wait(timeout);
}

std::string KilndProcess::Log() const { return ReadWholeFile(log_path_); }

absl::StatusOr<ProcessResult> RunProcess(const std::vector<std::string>& argv_in,
                                         const std::vector<std::string>& env,
                                         std::chrono::milliseconds timeout) {
  std::vector<std::string> args = argv_in;
  std::vector<char*> argv = CStrings(args);
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) env_strings.emplace_back(*e);
  env_strings.insert(env_strings.end(), env.begin(), env.end());
  std::vector<char*> envp = CStrings(env_strings);

  int out_pipe[2];
  int err_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0) return absl::InternalError("pipe2");
  if (pipe2(err_pipe, O_CLOEXEC) != 0) {
    close(out_pipe[0]);
    close(out_pipe[1]);
    return absl::InternalError("pipe2");
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err_pipe[1], 2);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, args[0].c_str(), &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  close(out_pipe[1]);
  close(err_pipe[1]);
  if (rc != 0) {
    close(out_pipe[0]);
    close(err_pipe[0]);
    return absl::InternalError("posix_spawn(" + args[0] + "): " + std::strerror(rc));
  }

  ProcessResult result;
  const Clock::time_point deadline = Clock::now() + timeout;
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  std::string* sinks[2] = {&result.out, &result.err};
  int open_fds = 2;
  bool timed_out = false;
  while (open_fds > 0) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      timed_out = true;
      break;
    }
    if (poll(fds, 2, static_cast<int>(left)) < 0 && errno != EINTR) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buf[4096];
      const ssize_t n = read(fds[i].fd, buf, sizeof(buf));
      if (n > 0) {
        sinks[i]->append(buf, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  for (pollfd& f : fds) {
    if (f.fd >= 0) close(f.fd);
  }
  if (timed_out) kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  result.exit_code = DecodeWaitStatus(status);
  if (timed_out) {
    return absl::DeadlineExceededError("'" + args[0] + "' timed out; stderr: " + result.err);
  }
  return result;
}

absl::StatusOr<std::string> HttpGet(int port, const std::string& path) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError("socket");
  timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return absl::UnavailableError("connect to port " + std::to_string(port) + ": " +
                                  std::strerror(errno));
  }
  const std::string request = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  if (send(fd, request.data(), request.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(request.size())) {
    close(fd);
    return absl::UnavailableError("send failed");
  }
  std::string response;
  char buf[8192];
  while (true) {
    const ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n > 0) {
      response.append(buf, static_cast<size_t>(n));
    } else if (n == 0) {
      break;
    } else if (errno != EINTR) {
      close(fd);
      return absl::UnavailableError(std::string("recv: ") + std::strerror(errno));
    }
  }
  close(fd);
  return response;
}

}  // namespace kiln::testing
