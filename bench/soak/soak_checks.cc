#include "bench/soak/soak_checks.h"

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/sample/utf8.h"

namespace kiln::bench::soak {

const char* OpName(Op op) {
  switch (op) {
    case Op::kGenerate: return "Generate";
    case Op::kTokenize: return "Tokenize";
    case Op::kListModels: return "ListModels";
    case Op::kGetServerInfo: return "GetServerInfo";
    case Op::kHealthCheck: return "Health.Check";
    case Op::kLoadAdapter: return "LoadAdapter";
    case Op::kUnloadAdapter: return "UnloadAdapter";
    case Op::kListAdapters: return "ListAdapters";
    case Op::kUnloadModel: return "UnloadModel";
    case Op::kLoadModel: return "LoadModel";
  }
  return "?";
}


std::vector<grpc::StatusCode> AllowedCodes(Op op, const OpSituation& s) {
  std::vector<grpc::StatusCode> codes = {grpc::OK};
  auto add_if = [&codes](bool when, std::initializer_list<grpc::StatusCode> more) {
    if (when) codes.insert(codes.end(), more.begin(), more.end());
  };
  switch (op) {
    case Op::kGenerate:
      add_if(s.client_cancelled, {grpc::CANCELLED});
      add_if(s.short_deadline, {grpc::DEADLINE_EXCEEDED});
      add_if(s.model_lifecycle, {grpc::NOT_FOUND, grpc::FAILED_PRECONDITION, grpc::ABORTED,
                                 grpc::UNAVAILABLE});
      break;
    case Op::kTokenize:
    case Op::kListAdapters:
      add_if(s.short_deadline, {grpc::DEADLINE_EXCEEDED});
      add_if(s.model_lifecycle,
             {grpc::NOT_FOUND, grpc::FAILED_PRECONDITION, grpc::UNAVAILABLE});
      break;
    case Op::kListModels:
    case Op::kGetServerInfo:
    case Op::kHealthCheck:
      add_if(s.short_deadline, {grpc::DEADLINE_EXCEEDED});
      break;
    case Op::kLoadAdapter:
      add_if(s.model_lifecycle, {grpc::NOT_FOUND, grpc::FAILED_PRECONDITION, grpc::UNAVAILABLE,
                                 grpc::ABORTED});
      break;
    case Op::kUnloadAdapter:
      codes.push_back(grpc::NOT_FOUND);
      codes.push_back(grpc::FAILED_PRECONDITION);
      add_if(s.model_lifecycle, {grpc::UNAVAILABLE});
      break;
    case Op::kUnloadModel:
    case Op::kLoadModel:
      break;
  }
  return codes;
}

bool IsAllowed(Op op, const OpSituation& situation, grpc::StatusCode code) {
  const std::vector<grpc::StatusCode> codes = AllowedCodes(op, situation);
  return std::find(codes.begin(), codes.end(), code) != codes.end();
}

bool IsValidUtf8(const std::string& text) { return engine::sample::IsValidUtf8(text); }

SeriesStats Stats(const std::vector<double>& values) {
  SeriesStats s;
  s.count = static_cast<int64_t>(values.size());
  if (values.empty()) return s;
  s.min = *std::min_element(values.begin(), values.end());
  s.max = *std::max_element(values.begin(), values.end());
  double sum = 0;
  for (double v : values) sum += v;
  s.mean = sum / static_cast<double>(values.size());
  return s;
}

double SecondHalfMaxMinusMean(const std::vector<double>& values) {
  if (values.size() < 2) return 0;
  const std::vector<double> half(values.begin() + static_cast<std::ptrdiff_t>(values.size() / 2),
                                 values.end());
  const SeriesStats s = Stats(half);
  return s.max - s.mean;
}

double SecondHalfSlope(const std::vector<double>& values) {
  if (values.size() < 4) return 0;
  const size_t first = values.size() / 2;
  const double n = static_cast<double>(values.size() - first);
  double sx = 0, sy = 0, sxx = 0, sxy = 0;
  for (size_t i = first; i < values.size(); ++i) {
    const double x = static_cast<double>(i - first);
    sx += x;
    sy += values[i];
    sxx += x * x;
    sxy += x * values[i];
  }
  const double denom = n * sxx - sx * sx;
  return denom == 0 ? 0 : (n * sxy - sx * sy) / denom;
}

const char* CriterionName(Criterion c) {
  switch (c) {
    case Criterion::kG1: return "G1 one terminal status, documented code";
    case Criterion::kG2: return "G2 greedy text == offline reference";
    case Criterion::kG3: return "G3 idle: KV free, no requests, ledger at baseline";
    case Criterion::kG4: return "G4 RSS growth bounded";
    case Criterion::kG5: return "G5 fd and thread counts flat";
    case Criterion::kG6: return "G6 still SERVING, exit 0 on SIGTERM";
  }
  return "?";
}

void SoakLedger::Count(const std::string& kind, grpc::StatusCode code, int64_t tokens) {
  absl::MutexLock lock(&mu_);
  ++counts_[kind][CodeName(code)];
  tokens_by_kind_[kind] += tokens;
}

void SoakLedger::Fail(Criterion c, const std::string& message) {
  absl::MutexLock lock(&mu_);
  checked_[c] = true;
  ++failures_[c];
  std::vector<std::string>& kept = messages_[c];
  if (static_cast<int>(kept.size()) < kMaxKeptMessages) kept.push_back(message);
}

void SoakLedger::Checked(Criterion c) {
  absl::MutexLock lock(&mu_);
  checked_[c] = true;
}

int64_t SoakLedger::failures(Criterion c) const {
  absl::MutexLock lock(&mu_);
  auto it = failures_.find(c);
  return it == failures_.end() ? 0 : it->second;
}

int64_t SoakLedger::total_failures() const {
  absl::MutexLock lock(&mu_);
  int64_t total = 0;
  for (const auto& [c, n] : failures_) total += n;
  return total;
}

int64_t SoakLedger::count(const std::string& kind, grpc::StatusCode code) const {
  absl::MutexLock lock(&mu_);
  auto it = counts_.find(kind);
  if (it == counts_.end()) return 0;
  auto jt = it->second.find(CodeName(code));
  return jt == it->second.end() ? 0 : jt->second;
}

int64_t SoakLedger::total_rpcs() const {
  absl::MutexLock lock(&mu_);
  int64_t total = 0;
  for (const auto& [kind, by_code] : counts_) {
    for (const auto& [code, n] : by_code) total += n;
  }
  return total;
}

int64_t SoakLedger::tokens() const {
  absl::MutexLock lock(&mu_);
  int64_t total = 0;
  for (const auto& [kind, n] : tokens_by_kind_) total += n;
  return total;
}

std::string SoakLedger::FormatTable() const {
  absl::MutexLock lock(&mu_);
  std::set<std::string> codes;
  for (const auto& [kind, by_code] : counts_) {
    for (const auto& [code, n] : by_code) codes.insert(code);
  }
  std::string out = absl::StrFormat("%-34s %8s %9s", "kind", "total", "tokens");
  for (const std::string& code : codes) absl::StrAppend(&out, absl::StrFormat(" %19s", code));
  out += "\n";
  for (const auto& [kind, by_code] : counts_) {
    int64_t total = 0;
    for (const auto& [code, n] : by_code) total += n;
    absl::StrAppend(&out, absl::StrFormat("%-34s %8d %9d", kind, total, tokens_by_kind_.at(kind)));
    for (const std::string& code : codes) {
      auto it = by_code.find(code);
      absl::StrAppend(&out, absl::StrFormat(" %19d", it == by_code.end() ? 0 : it->second));
    }
    out += "\n";
  }
  out += "\n";
  for (Criterion c : {Criterion::kG1, Criterion::kG2, Criterion::kG3, Criterion::kG4,
                      Criterion::kG5, Criterion::kG6}) {
    auto f = failures_.find(c);
    const int64_t n = f == failures_.end() ? 0 : f->second;
    const bool checked = checked_.count(c) > 0 && checked_.at(c);
    absl::StrAppend(&out, absl::StrFormat("%-52s %s\n", CriterionName(c),
                                          !checked ? "NOT CHECKED"
                                          : n == 0 ? "PASS"
                                                   : absl::StrCat("FAIL (", n, ")")));
    auto m = messages_.find(c);
    if (m == messages_.end()) continue;
    for (const std::string& message : m->second) absl::StrAppend(&out, "    - ", message, "\n");
  }
  return out;
}

nlohmann::json SoakLedger::ToJson() const {
  absl::MutexLock lock(&mu_);
  nlohmann::json j;
  nlohmann::json kinds = nlohmann::json::object();
  for (const auto& [kind, by_code] : counts_) {
    nlohmann::json k = nlohmann::json::object();
    for (const auto& [code, n] : by_code) k[code] = n;
    kinds[kind] = {{"codes", k}, {"tokens", tokens_by_kind_.at(kind)}};
  }
  j["requests"] = kinds;
  nlohmann::json criteria = nlohmann::json::object();
  for (Criterion c : {Criterion::kG1, Criterion::kG2, Criterion::kG3, Criterion::kG4,
                      Criterion::kG5, Criterion::kG6}) {
    auto f = failures_.find(c);
    const int64_t n = f == failures_.end() ? 0 : f->second;
    auto m = messages_.find(c);
    criteria[std::string(CriterionName(c)).substr(0, 2)] = {
        {"name", CriterionName(c)},
        {"checked", checked_.count(c) > 0 && checked_.at(c)},
        {"failures", n},
        {"messages", m == messages_.end() ? std::vector<std::string>{} : m->second}};
  }
  j["criteria"] = criteria;
  return j;
}

}  // namespace kiln::bench::soak
