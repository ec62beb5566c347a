// kilnctl commands: one function per RPC, each returning the process exit code.
//
// Output contract: results go to `out` (stdout); progress, summaries and errors go to `err`
// (stderr), so `--json` output on stdout is always one JSON object per line and nothing else.
// Exit codes as output.h states.
//
// Thread-safety: runs on the calling thread; blocking RPCs.
#pragma once

#include <memory>
#include <ostream>
#include <string>

#include <grpcpp/channel.h>

#include "absl/status/statusor.h"
#include "cli/args.h"
#include "cli/requests.h"

namespace kiln::cli {

struct Terminal {
  bool stdout_is_tty = false;
  bool stderr_is_tty = false;
  int width = 80;  // columns of stderr's terminal
};

// A channel to options.addr (TLS files are read here). INVALID_ARGUMENT naming the flag when
// a TLS file cannot be read.
absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(const ClientOptions& options);

// Runs `args.command` (never "help") over `channel`.
int RunCommand(const ParsedArgs& args, const ClientOptions& options,
               const std::shared_ptr<grpc::Channel>& channel, const Terminal& terminal,
               std::ostream& out, std::ostream& err);

}  // namespace kiln::cli
