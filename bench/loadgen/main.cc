// kiln_loadgen: a gRPC load generator for kilnd (see bench/README.md and options.h).
// Prints the table to stdout (unless --quiet) and writes the JSON report to --json_out.
// Exit codes: 0 ran (even with request errors; they are in the report), 2 bad flags,
// 1 the target could not be reached or the report could not be written.
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "bench/loadgen/options.h"
#include "bench/loadgen/report.h"
#include "bench/loadgen/runner.h"

namespace {

constexpr char kUsage[] =
    "usage: kiln_loadgen --model=NAME (--concurrency=N | --request_rate=R|inf) [flags]\n"
    "  --target=127.0.0.1:50051 (loopback only)  --num_requests=100  --duration_s=60\n"
    "  --grace_s=30  --max_concurrency=0  --prompt_len=128|fixed:N|uniform:MIN:MAX\n"
    "  --output_len=128|...  --vocab_size=32000  --min_token_id=3  --adapters=none=2,a=1\n"
    "  --warmup=1  --channels=0  --seed=1  --timeout_s=600  --wait_ready_s=0\n"
    "  --server_pid=P  --exclude_threads=PREFIX  --label=TEXT  --json_out=PATH|-  --quiet\n"
    "See bench/README.md and bench/loadgen/options.h.\n";

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  for (const std::string& arg : args) {
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
  }
  absl::StatusOr<kiln::bench::LoadgenOptions> options = kiln::bench::ParseArgs(args);
  if (!options.ok()) {
    std::fprintf(stderr, "kiln_loadgen: %s\n", std::string(options.status().message()).c_str());
    return 2;
  }
  absl::StatusOr<kiln::bench::Report> report = kiln::bench::RunLoad(*options);
  if (!report.ok()) {
    std::fprintf(stderr, "kiln_loadgen: %s\n", std::string(report.status().message()).c_str());
    return 1;
  }
  if (!options->quiet) std::fputs(kiln::bench::FormatTable(*report).c_str(), stdout);
  const std::string json = kiln::bench::ToJson(*report).dump(2) + "\n";
  if (options->json_out == "-") {
    std::fputs(json.c_str(), stdout);
  } else if (!options->json_out.empty()) {
    std::ofstream out(options->json_out, std::ios::trunc);
    out << json;
    if (!out.good()) {
      std::fprintf(stderr, "kiln_loadgen: --json_out=%s: cannot write\n",
                   options->json_out.c_str());
      return 1;
    }
  }
  return 0;
}
