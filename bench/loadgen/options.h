// Load generator options (bench/loadgen): what to send, how fast, for how long. Pure code:
// parsing and sampling only, no gRPC, so it is unit-tested (tests/bench).
//
// Flags (all --key=value):
//   --target=127.0.0.1:50051   loopback only (127.0.0.0/8, localhost, ::1); others refused
//   --model=NAME               served model name (required)
//   --request_rate=R           Poisson arrivals at R req/s ("inf" = all at once); or
//   --concurrency=N            N requests always in flight (closed loop). Exactly one.
//   --max_concurrency=N        cap on in-flight requests in rate mode (0 = none)
//   --num_requests=N           stop issuing after N requests (default 100)
//   --duration_s=S             stop issuing after S seconds (0 = no limit; default 60)
//   --grace_s=S                after issuing stops, wait this long for in-flight ones (30)
//   --prompt_len=DIST          prompt tokens: "128" / "fixed:128" / "uniform:64:256"
//   --output_len=DIST          max_new_tokens (ignore_eos is set, so exact): same syntax
//   --vocab_size=V             prompt token ids are drawn uniformly from [min_token_id, V)
//   --min_token_id=K           (default 3; keeps ids clear of bos/eos/pad in small vocabs)
//   --adapters=MIX             "name=weight,..."; "none" is the base model, e.g.
//                              "none=2,sql=1" sends adapter "sql" on a third of requests
//   --warmup=N                 requests sent (concurrency 1) before measuring (default 1)
//   --channels=N               separate HTTP/2 connections (0 = one per 64 in flight)
//   --seed=S                   RNG seed for lengths, ids, arrivals, adapters (default 1)
//   --timeout_s=S              per-request deadline (default 600)
//   --wait_ready_s=S           wait up to S s for the model to be READY (default 0)
//   --server_pid=P             also report this process's CPU time (per-thread split)
//   --exclude_threads=NAME     thread name prefix excluded from the "server CPU" figure
//   --label=TEXT               copied into the report
//   --json_out=PATH            write the JSON report there ("-" = stdout only)
//   --quiet                    no table on stdout
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace kiln::bench {

// A length distribution: fixed (min == max) or uniform over [min, max].
struct LengthDist {
  int32_t min = 0;
  int32_t max = 0;
  std::string ToString() const;
  int32_t Sample(std::mt19937_64& rng) const;
};

// "128", "fixed:128" or "uniform:64:256"; every value in [1, limit].
absl::StatusOr<LengthDist> ParseLengthDist(const std::string& field, const std::string& text,
                                           int32_t limit);

struct AdapterWeight {
  std::string name;  // "" = base model
  double weight = 1;
};

// "none=2,sql=1" (weights > 0; a name without "=w" has weight 1). Empty text = base only.
absl::StatusOr<std::vector<AdapterWeight>> ParseAdapterMix(const std::string& text);
// Picks an adapter name by weight.
const std::string& SampleAdapter(const std::vector<AdapterWeight>& mix, std::mt19937_64& rng);

// True for 127.0.0.0/8, "localhost" and "[::1]" / "::1" (with a port).
bool IsLoopbackTarget(const std::string& target);

struct LoadgenOptions {
  std::string target = "127.0.0.1:50051";
  std::string model;
  double request_rate = 0;  // > 0 (rate mode); +inf = all at once
  int32_t concurrency = 0;  // > 0 (closed-loop mode)
  int32_t max_concurrency = 0;
  int64_t num_requests = 100;
  double duration_s = 60;
  double grace_s = 30;
  LengthDist prompt_len{128, 128};
  LengthDist output_len{128, 128};
  int32_t vocab_size = 32000;
  int32_t min_token_id = 3;
  std::vector<AdapterWeight> adapters{{"", 1}};
  int32_t warmup = 1;
  int32_t channels = 0;
  uint64_t seed = 1;
  double timeout_s = 600;
  double wait_ready_s = 0;
  int64_t server_pid = 0;
  std::string exclude_threads;
  std::string label;
  std::string json_out;
  bool quiet = false;
  std::vector<std::string> argv;  // as given, for the report

  bool rate_mode() const { return request_rate > 0; }
};

// Parses argv[1..]. INVALID_ARGUMENT naming the flag, the value and the limit.
absl::StatusOr<LoadgenOptions> ParseArgs(const std::vector<std::string>& args);

}  // namespace kiln::bench
