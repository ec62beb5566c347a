// kilnctl: command-line client for the kiln daemon. See `kilnctl --help` and cli/output.h
// for exit codes.
#include <sys/ioctl.h>
#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/output.h"
#include "cli/requests.h"

int main(int argc, char** argv) {
  using namespace kiln::cli;
  const std::vector<std::string> words(argv + 1, argv + argc);
  absl::StatusOr<ParsedArgs> args = ParseArgs(words);
  if (!args.ok()) {
    std::cerr << "error: " << args.status().message() << "\n(run `kilnctl --help` for usage)\n";
    return kExitUsage;
  }
  if (args->command == "help") {
    std::cout << UsageText();
    return 0;
  }
  const char* env_token = std::getenv("KILN_TOKEN");
  absl::StatusOr<ClientOptions> options = BuildClientOptions(
      *args, env_token ? std::optional<std::string>(env_token) : std::nullopt);
  if (!options.ok()) {
    std::cerr << "error: " << options.status().message() << "\n";
    return kExitUsage;
  }
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = MakeChannel(*options);
  if (!channel.ok()) {
    std::cerr << "error: " << channel.status().message() << "\n";
    return kExitUsage;
  }
  Terminal terminal;
  terminal.stdout_is_tty = isatty(STDOUT_FILENO) == 1;
  terminal.stderr_is_tty = isatty(STDERR_FILENO) == 1;
  winsize ws{};
  if (terminal.stderr_is_tty && ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) {
    terminal.width = ws.ws_col;
  }
  return RunCommand(*args, *options, *channel, terminal, std::cout, std::cerr);
}
