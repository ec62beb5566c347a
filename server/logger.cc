#include "server/logger.h"

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace kiln::server {
namespace {

const char* LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kInfo: return "INFO";
    case LogLevel::kWarning: return "WARNING";
    case LogLevel::kError: return "ERROR";
  }
  return "?";
}

// JSON string escaping; also used for text values so control characters never split a line.
void AppendEscaped(const std::string& s, std::string* out) {
  for (unsigned char ch : s) {
    switch (ch) {
      case '"': out->append("\\\""); break;
      case '\\': out->append("\\\\"); break;
      case '\n': out->append("\\n"); break;
      case '\r': out->append("\\r"); break;
      case '\t': out->append("\\t"); break;
      default:
        if (ch < 0x20 || ch == 0x7f) {
          absl::StrAppendFormat(out, "\\u%04x", ch);
        } else {
          out->push_back(static_cast<char>(ch));
        }
    }
  }
}

bool NeedsQuotes(const std::string& s) {
  if (s.empty()) return true;
  for (unsigned char ch : s) {
    if (ch <= ' ' || ch == '"' || ch == '=' || ch == '\\' || ch == 0x7f) return true;
  }
  return false;
}

}  // namespace

LogField::LogField(std::string k, double v)
    : key(std::move(k)), value(absl::StrFormat("%.6g", v)), number(true) {}

Logger::Logger(LogFormat format, Sink sink) : format_(format), sink_(std::move(sink)) {}

void Logger::Log(LogLevel level, const std::string& event,
                 std::initializer_list<LogField> fields) {
  Log(level, event, std::vector<LogField>(fields));
}

void Logger::Log(LogLevel level, const std::string& event, const std::vector<LogField>& fields) {
  const std::string line = Format(level, event, fields);
  absl::MutexLock lock(&mu_);
  if (sink_) {
    sink_(line);
  } else {
    std::fprintf(stderr, "%s\n", line.c_str());
    std::fflush(stderr);
  }
}

std::string Logger::Format(LogLevel level, const std::string& event,
                           const std::vector<LogField>& fields) const {
  const std::string ts =
      absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone());
  std::string out;
  switch (format_) {
    case LogFormat::kJson:
      out = absl::StrCat("{\"ts\":\"", ts, "\",\"level\":\"", LevelName(level),
                         "\",\"event\":\"");
      AppendEscaped(event, &out);
      out.push_back('"');
      for (const LogField& f : fields) {
        out.append(",\"");
        AppendEscaped(f.key, &out);
        out.append("\":");
        if (f.number) {
          out.append(f.value);
        } else {
          out.push_back('"');
          AppendEscaped(f.value, &out);
          out.push_back('"');
        }
      }
      out.push_back('}');
      break;
    case LogFormat::kText:
      out = absl::StrCat(ts, " ", LevelName(level), " ", event);
      for (const LogField& f : fields) {
        absl::StrAppend(&out, " ", f.key, "=");
        if (NeedsQuotes(f.value)) {
          out.push_back('"');
          AppendEscaped(f.value, &out);
          out.push_back('"');
        } else {
          out.append(f.value);
        }
      }
      break;
  }
  return out;
}

}  // namespace kiln::server
