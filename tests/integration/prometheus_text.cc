#include "tests/integration/prometheus_text.h"

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <set>
#include <strings.h>

namespace kiln::testing {
namespace {

bool IsNameStart(char c) {
  return std::isalpha(static_cast<unsigned char>(c)) || c == '_' || c == ':';
}
bool IsNameChar(char c) { return IsNameStart(c) || std::isdigit(static_cast<unsigned char>(c)); }
bool IsLabelStart(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; }
bool IsLabelChar(char c) { return IsLabelStart(c) || std::isdigit(static_cast<unsigned char>(c)); }

bool ParseValue(const std::string& text, double* value) {
  if (strcasecmp(text.c_str(), "nan") == 0) {
    *value = std::nan("");
    return true;
  }
  for (const char* inf : {"inf", "+inf", "infinity", "+infinity"}) {
    if (strcasecmp(text.c_str(), inf) == 0) {
      *value = INFINITY;
      return true;
    }
  }
  for (const char* inf : {"-inf", "-infinity"}) {
    if (strcasecmp(text.c_str(), inf) == 0) {
      *value = -INFINITY;
      return true;
    }
  }
  if (text.empty()) return false;
  char* end = nullptr;
  *value = std::strtod(text.c_str(), &end);
  return *end == '\0' && std::isfinite(*value);
}

// Family of a sample name given the TYPE'd families ("x_sum" → "x" for summaries).
std::string FamilyOf(const std::string& name, const std::map<std::string, std::string>& types) {
  if (types.count(name)) return name;
  for (const char* suffix : {"_sum", "_count", "_bucket"}) {
    const std::string s = suffix;
    if (name.size() > s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0) {
      const std::string base = name.substr(0, name.size() - s.size());
      auto it = types.find(base);
      if (it != types.end() && (it->second == "histogram" || it->second == "summary")) {
        return base;
      }
    }
  }
  return "";
}

}  // namespace

absl::StatusOr<PromExposition> ParsePrometheusText(const std::string& text) {
  PromExposition out;
  std::set<std::string> families_with_samples;
  size_t line_no = 0;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    const std::string line = text.substr(start, end - start);
    start = end + 1;
    ++line_no;
    auto bad = [&](const std::string& why) {
      return absl::InvalidArgumentError("line " + std::to_string(line_no) + ": " + why + ": '" +
                                        line + "'");
    };
    if (line.empty()) continue;
    if (line[0] == '#') {
      if (line.rfind("# HELP ", 0) == 0 || line.rfind("# TYPE ", 0) == 0) {
        const bool is_help = line[2] == 'H';
        const std::string rest = line.substr(7);
        const size_t sp = rest.find(' ');
        const std::string name = rest.substr(0, sp);
        const std::string arg = sp == std::string::npos ? "" : rest.substr(sp + 1);
        if (name.empty() || !IsNameStart(name[0])) return bad("bad metric name");
        for (char c : name) {
          if (!IsNameChar(c)) return bad("bad metric name");
        }
        if (is_help) {
          if (out.help.count(name)) return bad("second HELP for " + name);
          out.help[name] = arg;
        } else {
          static const std::set<std::string> kTypes = {"counter", "gauge", "histogram",
                                                       "summary", "untyped"};
          if (!kTypes.count(arg)) return bad("unknown TYPE");
          if (out.type.count(name)) return bad("second TYPE for " + name);
          if (families_with_samples.count(name)) return bad("TYPE after samples of " + name);
          out.type[name] = arg;
        }
      }
      continue;
    }
    PromSample sample;
    size_t i = 0;
    if (!IsNameStart(line[0])) return bad("bad metric name");
    while (i < line.size() && IsNameChar(line[i])) ++i;
    sample.name = line.substr(0, i);
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (i < line.size() && line[i] != '}') {
        const size_t name_start = i;
        if (!IsLabelStart(line[i])) return bad("bad label name");
        while (i < line.size() && IsLabelChar(line[i])) ++i;
        const std::string label = line.substr(name_start, i - name_start);
        if (i + 1 >= line.size() || line[i] != '=' || line[i + 1] != '"') {
          return bad("expected =\" after label " + label);
        }
        i += 2;
        std::string value;
        bool closed = false;
        while (i < line.size()) {
          const char c = line[i++];
          if (c == '"') {
            closed = true;
            break;
          }
          if (c == '\\') {
            if (i >= line.size()) return bad("dangling escape");
            const char e = line[i++];
            if (e == 'n') {
              value += '\n';
            } else if (e == '\\' || e == '"') {
              value += e;
            } else {
              return bad("bad escape");
            }
          } else {
            value += c;
          }
        }
        if (!closed) return bad("unterminated label value");
        if (!sample.labels.emplace(label, value).second) return bad("duplicate label " + label);
        if (i < line.size() && line[i] == ',') {
          ++i;
        } else if (i < line.size() && line[i] != '}') {
          return bad("expected , or } after label " + label);
        }
      }
      if (i >= line.size()) return bad("unterminated label set");
      ++i;  // '}'
    }
    if (i >= line.size() || line[i] != ' ') return bad("expected a space before the value");
    const std::string rest = line.substr(i + 1);
    const size_t sp = rest.find(' ');
    if (!ParseValue(rest.substr(0, sp), &sample.value)) return bad("bad value");
    if (sp != std::string::npos) {
      const std::string ts = rest.substr(sp + 1);
      char* end_ts = nullptr;
      std::strtoll(ts.c_str(), &end_ts, 10);
      if (ts.empty() || *end_ts != '\0') return bad("bad timestamp");
    }
    const std::string family = FamilyOf(sample.name, out.type);
    if (family.empty()) return bad("sample without a TYPE line");
    if (out.type[family] == "counter" && sample.value < 0) return bad("negative counter");
    families_with_samples.insert(family);
    out.samples.push_back(std::move(sample));
  }
  return out;
}

namespace {
bool Matches(const PromSample& s, const std::string& name,
             const std::map<std::string, std::string>& match) {
  if (s.name != name) return false;
  for (const auto& [k, v] : match) {
    auto it = s.labels.find(k);
    if (it == s.labels.end() || it->second != v) return false;
  }
  return true;
}
}  // namespace

double SumSamples(const PromExposition& exposition, const std::string& name,
                  const std::map<std::string, std::string>& match) {
  double sum = 0;
  for (const PromSample& s : exposition.samples) {
    if (Matches(s, name, match)) sum += s.value;
  }
  return sum;
}

int CountSamples(const PromExposition& exposition, const std::string& name,
                 const std::map<std::string, std::string>& match) {
  int n = 0;
  for (const PromSample& s : exposition.samples) n += Matches(s, name, match) ? 1 : 0;
  return n;
}

}  // namespace kiln::testing
