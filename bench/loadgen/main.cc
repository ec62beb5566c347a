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

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
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
