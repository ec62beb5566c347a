// LoRA serving benchmark core (issue #6): drives the real CPU engine (CreateEngine, per-model
// AdapterCache, heterogeneous LoRA batches) on a synthetic Llama and random PEFT adapters, and
// measures, in one process:
//  1. base-only throughput: `batch` concurrent greedy requests (ignore_eos, exactly
//     max_new_tokens each), generated tokens/s over wall time;
//  2. the same with 1, 8, 32 ... distinct adapters spread round-robin over the requests
//     (request i uses adapter i % n; every request carries an adapter), adapters pre-loaded
//     with LoadAdapter so the runs measure the step cost, not loading; ratio to base-only;
//  3. cold attach: time from Generate naming a not-yet-loaded small adapter to its first token,
//     the same request again with the adapter resident, the base model's, and LoadAdapter time
//     of a fresh small adapter (medians over `cold_samples`).
// Throughput configurations run interleaved for `rounds` rounds; the best round counts (the
// machine is shared; the best run is the least disturbed), the median is reported next to it. It is a benchmark, never a timed
// test (DESIGN.md §8): callers print the ratios; tests check the counts and outputs only.
//
// Sanity checks recorded in the report (never timings): every request produced exactly
// max_new_tokens; per configuration, how many requests' greedy tokens differ from the base-only
// run of the same prompt (adapters really applied) and whether every round produced the same
// tokens (batch composition does not change results).
//
// Thread-safety: RunLoraBench is reentrant; it owns its engine and temp directory.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "bench/lora/synthetic_checkpoint.h"

namespace kiln::bench {

struct LoraBenchOptions {
  SyntheticLlama model;
  int batch = 32;             // concurrent requests per throughput run
  int prompt_tokens = 16;
  int max_new_tokens = 64;
  std::vector<int> adapter_counts = {1, 8, 32};  // distinct adapters per run, each <= batch
  int rank = 16;              // throughput adapters: q/k/v/o + MLP, every layer
  int rounds = 5;
  int cold_samples = 5;
  int cold_rank = 8;          // the "small" adapter: q_proj + v_proj only
  int cold_new_tokens = 4;
  int threads = 0;            // CPU backend threads; 0 = all cores
  std::string tokenizer_dir;  // holds tokenizer.json whose vocab matches model.vocab
  std::string work_dir;       // "" = a fresh temp dir, removed at the end
};

struct ThroughputRow {
  int num_adapters = 0;  // 0 = base only
  int64_t generated_tokens = 0;           // of the best round
  std::vector<double> tokens_per_s;       // per round
  double best_tokens_per_s = 0;
  double ratio_vs_base = 0;               // best / best of the base-only row
  double median_tokens_per_s = 0;
  double median_ratio_vs_base = 0;        // median / median of the base-only row
  int requests_differing_from_base = 0;   // greedy ids != the base-only run's (round 0)
  bool same_tokens_every_round = true;
};

struct ColdAttach {
  std::vector<double> cold_ttft_ms;   // Generate naming a not-yet-loaded adapter → first token
  std::vector<double> warm_ttft_ms;   // the same request, adapter resident
  std::vector<double> base_ttft_ms;   // the same prompt without an adapter
  std::vector<double> load_adapter_ms;  // LoadAdapter of a fresh small adapter → callback
  double median_cold_ms = 0, median_warm_ms = 0, median_base_ms = 0, median_load_ms = 0;
  int64_t adapter_bytes = 0;          // fp32 A/B bytes of one small adapter
};

struct LoraBenchReport {
  std::vector<ThroughputRow> throughput;   // base-only first, then adapter_counts in order
  std::vector<double> preload_ms;          // LoadAdapter of each throughput adapter
  double median_preload_ms = 0;
  int64_t throughput_adapter_bytes = 0;    // fp32 A/B bytes of one throughput adapter
  ColdAttach cold;
  int resident_adapters = 0;               // ListAdapters at the end
  int64_t weight_parameters = 0;           // Linear + embedding parameters of the base
};

// INVALID_ARGUMENT for options out of range (the message names the option and its value);
// otherwise any engine error (load, generate) with the step that failed.
absl::StatusOr<LoraBenchReport> RunLoraBench(const LoraBenchOptions& options);

// The human summary: setup line, throughput table (tokens/s and ratios against base-only),
// cold-attach table.
std::string FormatLoraReport(const LoraBenchOptions& options, const LoraBenchReport& report);

double Median(std::vector<double> values);

}  // namespace kiln::bench
