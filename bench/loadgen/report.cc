#include "bench/loadgen/report.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace kiln::bench {

double ReadLoadAverage() {
  std::ifstream in("/proc/loadavg");
  double one = -1;
  if (!(in >> one)) return -1;
  return one;
}

double Percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  p = std::clamp(p, 0.0, 100.0);
  const double rank = p / 100.0 * static_cast<double>(values.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(rank));
  const size_t hi = std::min(lo + 1, values.size() - 1);
  const double frac = rank - static_cast<double>(lo);
  return values[lo] + (values[hi] - values[lo]) * frac;
}

Summary Summarize(const std::vector<double>& values) {
  Summary s;
  s.count = static_cast<int64_t>(values.size());
  if (values.empty()) return s;
  s.mean = std::accumulate(values.begin(), values.end(), 0.0) / static_cast<double>(values.size());
  s.p50 = Percentile(values, 50);
  s.p90 = Percentile(values, 90);
  s.p99 = Percentile(values, 99);
  s.max = *std::max_element(values.begin(), values.end());
  return s;
}

Report BuildReport(const std::vector<RequestRecord>& records, double wall_s) {
  Report r;
  r.wall_s = wall_s;
  r.issued = static_cast<int64_t>(records.size());
  std::vector<double> ttft;
  std::vector<double> tpot;
  std::vector<double> itl;
  std::vector<double> e2e;
  for (const RequestRecord& rec : records) {
    if (rec.cut_off) {
      ++r.cut_off;
      continue;
    }
    if (rec.status != "OK") {
      ++r.errors[rec.status];
      continue;
    }
    ++r.completed;
    r.prompt_tokens += rec.prompt_tokens;
    r.output_tokens += rec.output_tokens;
    r.messages += rec.messages;
    if (rec.ttft_ms >= 0) ttft.push_back(rec.ttft_ms);
    if (rec.output_tokens >= 2 && rec.ttft_ms >= 0) {
      tpot.push_back((rec.e2e_ms - rec.ttft_ms) / (rec.output_tokens - 1));
    }
    itl.insert(itl.end(), rec.itl_ms.begin(), rec.itl_ms.end());
    e2e.push_back(rec.e2e_ms);
  }
  if (wall_s > 0) {
    r.request_throughput = static_cast<double>(r.completed) / wall_s;
    r.output_throughput = static_cast<double>(r.output_tokens) / wall_s;
    r.total_token_throughput = static_cast<double>(r.prompt_tokens + r.output_tokens) / wall_s;
  }
  r.ttft_ms = Summarize(ttft);
  r.tpot_ms = Summarize(tpot);
  r.itl_ms = Summarize(itl);
  r.e2e_ms = Summarize(e2e);
  return r;
}

namespace {

std::string SummaryRow(const std::string& name, const Summary& s) {
  return absl::StrFormat("%-14s %10.3f %10.3f %10.3f %10.3f %10.3f %8d\n", name, s.mean, s.p50,
                         s.p90, s.p99, s.max, s.count);
}

nlohmann::json SummaryJson(const Summary& s) {
  return {{"count", s.count}, {"mean", s.mean}, {"p50", s.p50},
          {"p90", s.p90},     {"p99", s.p99},   {"max", s.max}};
}

}  // namespace

std::string FormatTable(const Report& r) {
  std::string out;
  absl::StrAppend(&out, "============ kiln loadgen: ", r.label.empty() ? "run" : r.label,
                  " ============\n");
  absl::StrAppendFormat(&out, "%-28s %s\n", "target / model", r.target + " / " + r.model);
  absl::StrAppendFormat(&out, "%-28s %s\n", "mode", r.mode);
  absl::StrAppendFormat(&out, "%-28s %s -> %s\n", "prompt -> output tokens", r.prompt_len,
                        r.output_len);
  absl::StrAppendFormat(&out, "%-28s %d issued, %d ok, %d cut off\n", "requests", r.issued,
                        r.completed, r.cut_off);
  std::vector<std::string> errors;
  for (const auto& [code, n] : r.errors) errors.push_back(absl::StrCat(code, "=", n));
  absl::StrAppendFormat(&out, "%-28s %s\n", "errors", errors.empty() ? "none"
                                                                      : absl::StrJoin(errors, " "));
  absl::StrAppendFormat(&out, "%-28s %.3f\n", "wall time (s)", r.wall_s);
  absl::StrAppendFormat(&out, "%-28s %.3f\n", "requests/s", r.request_throughput);
  absl::StrAppendFormat(&out, "%-28s %.1f\n", "output tokens/s", r.output_throughput);
  absl::StrAppendFormat(&out, "%-28s %.1f\n", "total tokens/s", r.total_token_throughput);
  absl::StrAppendFormat(&out, "%-28s %.2f\n", "tokens per message",
                        r.messages > 0 ? static_cast<double>(r.output_tokens) / r.messages : 0.0);
  if (r.server_cpu.measured) {
    const double server = r.server_cpu.total_s - r.server_cpu.excluded_s;
    absl::StrAppendFormat(&out, "%-28s %.3f (excluded threads %.3f)\n", "server CPU (s)",
                          r.server_cpu.total_s, r.server_cpu.excluded_s);
    absl::StrAppendFormat(&out, "%-28s %.0f\n", "output tokens/server CPU-s",
                          server > 0 ? static_cast<double>(r.output_tokens) / server : 0.0);
  }
  absl::StrAppendFormat(&out, "%-28s %.2f -> %.2f (nproc %d)\n", "load average (1 min)",
                        r.load_avg_start, r.load_avg_end, r.nproc);
  absl::StrAppendFormat(&out, "%-14s %10s %10s %10s %10s %10s %8s\n", "latency (ms)", "mean",
                        "p50", "p90", "p99", "max", "n");
  out += SummaryRow("TTFT", r.ttft_ms);
  out += SummaryRow("TPOT", r.tpot_ms);
  out += SummaryRow("ITL", r.itl_ms);
  out += SummaryRow("E2E", r.e2e_ms);
  return out;
}

nlohmann::json ToJson(const Report& r) {
  nlohmann::json errors = nlohmann::json::object();
  for (const auto& [code, n] : r.errors) errors[code] = n;
  nlohmann::json j = {
      {"label", r.label},
      {"target", r.target},
      {"model", r.model},
      {"mode", r.mode},
      {"prompt_len", r.prompt_len},
      {"output_len", r.output_len},
      {"argv", r.argv},
      {"wall_s", r.wall_s},
      {"issued", r.issued},
      {"completed", r.completed},
      {"cut_off", r.cut_off},
      {"errors", errors},
      {"prompt_tokens", r.prompt_tokens},
      {"output_tokens", r.output_tokens},
      {"messages", r.messages},
      {"request_throughput", r.request_throughput},
      {"output_throughput", r.output_throughput},
      {"total_token_throughput", r.total_token_throughput},
      {"ttft_ms", SummaryJson(r.ttft_ms)},
      {"tpot_ms", SummaryJson(r.tpot_ms)},
      {"itl_ms", SummaryJson(r.itl_ms)},
      {"e2e_ms", SummaryJson(r.e2e_ms)},
      {"load_avg_start", r.load_avg_start},
      {"load_avg_end", r.load_avg_end},
      {"nproc", r.nproc},
  };
  if (r.server_cpu.measured) {
    const double server = r.server_cpu.total_s - r.server_cpu.excluded_s;
    j["server_cpu"] = {{"total_s", r.server_cpu.total_s},
                       {"excluded_s", r.server_cpu.excluded_s},
                       {"output_tokens_per_cpu_s",
                        server > 0 ? static_cast<double>(r.output_tokens) / server : 0.0}};
  }
  return j;
}

}  // namespace kiln::bench
