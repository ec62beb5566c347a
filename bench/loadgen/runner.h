// RunLoad: drives kiln.v1.Kiln/Generate over the gRPC callback API as the options say and
// returns the report. Requests use token-id prompts (exact prompt lengths, no tokenizer
// involved), greedy decoding and ignore_eos (exact output lengths).
//
// Scheduling: rate mode issues at Poisson arrival times (exponential gaps, seeded), capped at
// max_concurrency when set; concurrency mode keeps N requests in flight. Issuing stops after
// num_requests or duration_s; requests still in flight grace_s later are cancelled and
// counted as cut off (not as errors).
//
// Thread-safety: one RunLoad at a time per process is the intended use; it is blocking.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "bench/loadgen/options.h"
#include "bench/loadgen/report.h"

namespace kiln::bench {

absl::StatusOr<Report> RunLoad(const LoadgenOptions& options);

// CPU seconds (user + system) of process `pid`: all threads, and those whose comm starts
// with `exclude_prefix` (empty = none). NOT_FOUND when /proc/<pid> is unreadable.
absl::StatusOr<ServerCpu> ReadProcessCpu(int64_t pid, const std::string& exclude_prefix);

}  // namespace kiln::bench
