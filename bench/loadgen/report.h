// Load generator results: per-request records, percentile math, and the report (text table
// and JSON). Pure code, unit-tested in tests/bench.
//
// Definitions (as vLLM's benchmark_serving):
//   TTFT  request start → first response carrying a token.
//   ITL   gap between consecutive token-carrying responses of one request (one sample per
//         response, so a response that coalesced k tokens is one gap; tokens_per_message
//         shows how much coalescing happened).
//   TPOT  (e2e − TTFT) / (output_tokens − 1) per request with ≥ 2 tokens.
//   E2E   request start → final status.
// Throughput divides by the measured wall time: first request start → last request end.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"

namespace kiln::bench {

// 1-minute load average from /proc/loadavg (-1 when unreadable).
double ReadLoadAverage();

// Linear interpolation between closest ranks (numpy.percentile's default). `p` in [0, 100].
// 0 for an empty input. `values` need not be sorted.
double Percentile(std::vector<double> values, double p);

struct Summary {
  int64_t count = 0;
  double mean = 0;
  double p50 = 0;
  double p90 = 0;
  double p99 = 0;
  double max = 0;
};
Summary Summarize(const std::vector<double>& values);

struct RequestRecord {
  int32_t prompt_tokens = 0;
  int32_t output_tokens = 0;  // token ids received
  int32_t messages = 0;       // token-carrying responses received
  double ttft_ms = -1;        // < 0: no token arrived
  double e2e_ms = 0;
  std::vector<double> itl_ms;
  std::string status = "OK";  // gRPC status code name
  bool cut_off = false;       // cancelled by the load generator when the grace ran out
};

// Process CPU seconds spent by the server during the measured window (from /proc).
struct ServerCpu {
  bool measured = false;
  double total_s = 0;     // all threads
  double excluded_s = 0;  // threads whose name starts with the excluded prefix
};

struct Report {
  std::string label;
  std::string target;
  std::string model;
  std::string mode;  // "rate=4" / "concurrency=8"
  std::string prompt_len;
  std::string output_len;
  std::vector<std::string> argv;
  double wall_s = 0;
  int64_t issued = 0;
  int64_t completed = 0;  // finished OK
  int64_t cut_off = 0;
  std::map<std::string, int64_t> errors;  // status name → count (OK and cut-offs excluded)
  int64_t prompt_tokens = 0;              // of OK requests
  int64_t output_tokens = 0;              // of OK requests
  int64_t messages = 0;                   // of OK requests
  double request_throughput = 0;          // OK requests / wall_s
  double output_throughput = 0;           // output tokens / wall_s
  double total_token_throughput = 0;      // (prompt + output) / wall_s
  Summary ttft_ms;
  Summary tpot_ms;
  Summary itl_ms;
  Summary e2e_ms;
  ServerCpu server_cpu;
  double load_avg_start = -1;  // 1-minute load average
  double load_avg_end = -1;
  int nproc = 0;
};

// Aggregates the records of one run measured over `wall_s` seconds.
Report BuildReport(const std::vector<RequestRecord>& records, double wall_s);

// Human-readable table (fixed layout, one metric per line).
std::string FormatTable(const Report& report);
nlohmann::json ToJson(const Report& report);

}  // namespace kiln::bench
