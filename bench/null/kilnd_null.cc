// kilnd_null: kilnd's KilnServer (the real gRPC service, reactors and conversion) in front of
// the benchmark-only NullEngine, to measure the server's cost per streamed token. Never a
// production binary: it serves only loopback and one fake model.
//
//   kilnd_null --listen=127.0.0.1:0 --ready_file=/tmp/r.json --max_buffered=1
//
// SIGTERM/SIGINT stop it. The ready file is {"grpc_port":N,"metrics_port":0,"pid":P}.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "bench/loadgen/options.h"
#include "bench/null/null_engine.h"
#include "server/server.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:0", "loopback host:port (port 0 = ephemeral)");
ABSL_FLAG(std::string, ready_file, "", "written once serving: {\"grpc_port\":N,...}");
ABSL_FLAG(std::string, model, "null", "the one served model name");
ABSL_FLAG(int64_t, vocab_size, 32000, "token ids emitted are below this");
ABSL_FLAG(double, step_hz, 0, "engine steps per second (one token per stream per step); 0 = "
                              "as fast as the streams accept tokens");
ABSL_FLAG(int32_t, max_buffered, 16,
          "tokens allowed to wait per stream; 1 = no coalescing (one token per message)");
ABSL_FLAG(int32_t, max_concurrent_streams, 1024, "per HTTP/2 connection");

int main(int argc, char** argv) {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  absl::ParseCommandLine(argc, argv);

  kiln::server::ServerConfig config;
  config.listen = absl::GetFlag(FLAGS_listen);
  // Port 0 (ephemeral) is fine for listening; the loopback check wants a real port.
  std::string probe = config.listen;
  if (absl::EndsWith(probe, ":0")) probe.back() = '1';
  if (!kiln::bench::IsLoopbackTarget(probe)) {
    std::fprintf(stderr, "kilnd_null: --listen=%s: loopback addresses only\n",
                 config.listen.c_str());
    return 2;
  }
  config.metrics_listen = "";
  config.grpc.max_concurrent_streams = absl::GetFlag(FLAGS_max_concurrent_streams);
  absl::Status valid = kiln::server::ValidateConfig(config);
  if (!valid.ok()) {
    std::fprintf(stderr, "kilnd_null: %s\n", std::string(valid.message()).c_str());
    return 2;
  }
  kiln::bench::NullEngineOptions engine_options;
  engine_options.model = absl::GetFlag(FLAGS_model);
  engine_options.vocab_size = absl::GetFlag(FLAGS_vocab_size);
  engine_options.step_hz = absl::GetFlag(FLAGS_step_hz);
  engine_options.max_buffered = absl::GetFlag(FLAGS_max_buffered);
  if (engine_options.max_buffered < 1 || engine_options.vocab_size < 1 ||
      engine_options.step_hz < 0) {
    std::fprintf(stderr, "kilnd_null: --max_buffered and --vocab_size must be >= 1, "
                         "--step_hz >= 0\n");
    return 2;
  }
  auto engine = std::make_shared<kiln::bench::NullEngine>(engine_options);
  auto logger = std::make_shared<kiln::server::Logger>(kiln::server::LogFormat::kText);
  const kiln::server::BuildInfo build = kiln::server::CurrentBuildInfo();
  auto metrics = std::make_shared<kiln::server::Metrics>(build.version, build.git_commit, false);
  absl::StatusOr<std::unique_ptr<kiln::server::KilnServer>> server =
      kiln::server::KilnServer::Start(config, engine, metrics, logger, build);
  if (!server.ok()) {
    std::fprintf(stderr, "kilnd_null: %s\n", std::string(server.status().message()).c_str());
    return 1;
  }
  const std::string ready = absl::GetFlag(FLAGS_ready_file);
  if (!ready.empty()) {
    const std::string tmp = absl::StrCat(ready, ".tmp");
    {
      std::ofstream out(tmp, std::ios::trunc);
      out << "{\"grpc_port\":" << (*server)->grpc_port() << ",\"metrics_port\":0,\"pid\":"
          << getpid() << "}\n";
    }
    std::rename(tmp.c_str(), ready.c_str());
  }
  int sig = 0;
  sigwait(&signals, &sig);
  (*server)->BeginDrain();
  (*server)->Shutdown(absl::ZeroDuration());
  if (!ready.empty()) std::remove(ready.c_str());
  return 0;
}
