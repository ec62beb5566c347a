// A strict parser for the Prometheus text exposition format (version 0.0.4), for tests
// that scrape kilnd's /metrics.
//
// Accepted lines: blank; `# HELP <name> <text>`; `# TYPE <name> <counter|gauge|histogram|
// summary|untyped>`; other `#` comments; samples `name{label="value",...} value [timestamp]`
// with names [a-zA-Z_:][a-zA-Z0-9_:]*, label names [a-zA-Z_][a-zA-Z0-9_]*, label values with
// \\ \" \n escapes, and values as Go's ParseFloat reads them (NaN/Inf in any case).
// Also checked: at most one TYPE and one HELP per family, TYPE before the family's samples,
// every sample belongs to a TYPE'd family (histogram/summary samples may carry _sum,
// _count or _bucket), no duplicate label names, counters never negative.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace kiln::testing {

struct PromSample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

struct PromExposition {
  std::vector<PromSample> samples;
  std::map<std::string, std::string> help;  // family → text
  std::map<std::string, std::string> type;  // family → type
};

// INVALID_ARGUMENT naming the line number and the problem.
absl::StatusOr<PromExposition> ParsePrometheusText(const std::string& text);

// Sum of the values of samples called `name` whose labels include every pair in `match`.
double SumSamples(const PromExposition& exposition, const std::string& name,
                  const std::map<std::string, std::string>& match = {});
// Number of samples called `name` matching `match`.
int CountSamples(const PromExposition& exposition, const std::string& name,
                 const std::map<std::string, std::string>& match = {});

}  // namespace kiln::testing
