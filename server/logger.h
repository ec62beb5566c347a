// Logger: structured, one line per event (start, listening, rpc end, drain, exit).
//
// Text format:  2025-01-02T03:04:05.678Z INFO rpc_end method=Generate code=OK duration_ms=12
// JSON format:  {"ts":"...","level":"INFO","event":"rpc_end","method":"Generate",...}
// Values are escaped so a client-supplied string (request id, peer) cannot forge a line.
// Tokens and other secrets are never passed to the logger.
//
// Thread-safety: Log() may be called from any thread; each line is written atomically.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "server/config.h"

namespace kiln::server {

enum class LogLevel { kInfo, kWarning, kError };

struct LogField {
  LogField(std::string k, std::string v) : key(std::move(k)), value(std::move(v)) {}
  LogField(std::string k, const char* v) : key(std::move(k)), value(v) {}
  LogField(std::string k, int64_t v) : key(std::move(k)), value(std::to_string(v)), number(true) {}
  LogField(std::string k, int v) : LogField(std::move(k), static_cast<int64_t>(v)) {}
  LogField(std::string k, double v);
  std::string key;
  std::string value;
  bool number = false;  // emitted unquoted in JSON
};

class Logger {
 public:
  // Receives each finished line without the trailing newline.
  using Sink = std::function<void(const std::string& line)>;

  // `sink` null = stderr.
  explicit Logger(LogFormat format, Sink sink = nullptr);

  void Log(LogLevel level, const std::string& event, std::initializer_list<LogField> fields);
  void Log(LogLevel level, const std::string& event, const std::vector<LogField>& fields);

  // Formats one line (exposed for tests).
  std::string Format(LogLevel level, const std::string& event,
                     const std::vector<LogField>& fields) const;

 private:
  const LogFormat format_;
  const Sink sink_;
  absl::Mutex mu_;  // serializes writes to the sink
};

}  // namespace kiln::server
