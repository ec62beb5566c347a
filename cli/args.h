// kilnctl argument parsing: a tiny explicit parser (no global flag registry).
//
// Grammar:  kilnctl [global flags] <command> [subcommand] [positional args and flags]
// Flags are `--name=value` or `--name value`; boolean flags are `--name`, `--name=true` or
// `--name=false` and never consume the next word; `--` ends flag parsing (so a prompt may
// start with "--"). Repeatable flags (e.g. --stop) collect every occurrence in order.
// Global flags (--addr, --token, --tls*, --timeout, --json) are accepted anywhere.
//
// Errors are INVALID_ARGUMENT statuses whose message names the flag or argument; the
// caller turns them into exit code 64 (kExitUsage) plus the usage text.
//
// Thread-safety: plain value types and pure functions.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kiln::cli {

enum class FlagKind { kBool, kValue, kRepeated };

struct FlagSpec {
  const char* name;  // without the leading "--"
  FlagKind kind;
  const char* value_name;  // shown in usage ("N", "NAME"); "" for booleans
  const char* help;
};

struct CommandSpec {
  const char* name;       // "load", "adapters list"
  const char* args;       // positional synopsis, e.g. "<model>"
  int min_positional;
  int max_positional;     // -1 = unbounded
  const char* help;
  std::vector<FlagSpec> flags;  // command-specific flags (globals are added implicitly)
};

// Every command, in usage order.
const std::vector<CommandSpec>& Commands();
// Flags every command accepts.
const std::vector<FlagSpec>& GlobalFlags();
// The full usage text (generated from the tables above).
std::string UsageText();

struct ParsedArgs {
  std::string command;                   // CommandSpec::name; "help" for -h/--help/help
  std::vector<std::string> positional;   // after the command words
  std::map<std::string, std::vector<std::string>> flags;  // name → values in order

  bool Has(const std::string& name) const { return flags.count(name) > 0; }
  // Last value of a flag, or `fallback` when absent.
  std::string GetString(const std::string& name, const std::string& fallback = "") const;
  std::vector<std::string> GetAll(const std::string& name) const;
  // INVALID_ARGUMENT naming the flag when the text is not a boolean / number.
  absl::StatusOr<bool> GetBool(const std::string& name, bool fallback) const;
  absl::StatusOr<std::optional<int64_t>> GetInt64(const std::string& name) const;
  absl::StatusOr<std::optional<double>> GetDouble(const std::string& name) const;
};

// Parses argv[1..]. INVALID_ARGUMENT for an unknown command or flag, a missing value, a
// value on a boolean flag that is not true/false, or a wrong number of positional args.
absl::StatusOr<ParsedArgs> ParseArgs(const std::vector<std::string>& argv);

// "k=v,k2=v2" → map. INVALID_ARGUMENT naming `flag` for an item without '=' or an empty key.
absl::StatusOr<std::map<std::string, std::string>> ParseKeyValueList(const std::string& flag,
                                                                     const std::string& text);

// Splits "a,b,,c" → {"a","b","c"} (empty items dropped).
std::vector<std::string> SplitCommaList(const std::string& text);

}  // namespace kiln::cli
