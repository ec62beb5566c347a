// kiln_soak: the soak test of issue #10 (reliability.md §7, D1/D6 with criteria G1–G6).
// Starts kilnd on the golden fixtures (or attaches to a running one on loopback), warms up
// while recording greedy references, measures the idle baseline, runs the mixed workload of
// workload.h for --duration_s, then checks that the server returns to its baseline and still
// serves, and stops it with SIGTERM. Prints a summary table; --json_out writes the details.
// Exit status: 0 all criteria pass, 1 a criterion failed, 2 the soak could not run.
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "bench/loadgen/options.h"
#include "bench/loadgen/runner.h"
#include "bench/soak/proc_sampler.h"
#include "bench/soak/server_state.h"
#include "bench/soak/soak_checks.h"
#include "bench/soak/workload.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "tests/integration/kilnd_process.h"

#define FIXTURES KILN_SOURCE_DIR "/tests/golden/fixtures"

ABSL_FLAG(std::string, kilnd, "", "kilnd binary to start; empty: attach to --target");
ABSL_FLAG(std::string, target, "", "attach mode: a running kilnd (loopback host:port)");
ABSL_FLAG(int64_t, server_pid, 0, "attach mode: kilnd's pid (for /proc sampling)");
ABSL_FLAG(int32_t, metrics_port, 0, "attach mode: kilnd's /metrics port on 127.0.0.1");
ABSL_FLAG(std::string, model_roots, FIXTURES "/models", "--model_roots for kilnd; the first also "
          "holds the tokenizers used for the offline decode");
ABSL_FLAG(std::string, adapter_roots, FIXTURES "/lora/adapters", "--adapter_roots for kilnd");
ABSL_FLAG(std::vector<std::string>, models, std::vector<std::string>({"llama_tiny", "gpt2_tiny"}),
          "served models (preloaded by name)");
ABSL_FLAG(std::vector<std::string>, adapters,
          std::vector<std::string>({"llama_tiny/llama_qv_r4", "llama_tiny/llama_all_linear_rslora_r8",
                                    "llama_tiny/llama_nf4_base", "gpt2_tiny/gpt2_fan_in_fan_out"}),
          "model/adapter pairs used by requests and the adapter churn");
ABSL_FLAG(int64_t, kv_cache_bytes, 256 << 10,
          "KV cache bytes per model (preload and reloads); small enough that concurrent requests "
          "preempt each other");
ABSL_FLAG(std::vector<std::string>, kilnd_flags, std::vector<std::string>({"--num_compute_threads=1"}),
          "extra kilnd flags");
ABSL_FLAG(int64_t, drain_timeout_s, 10, "kilnd --drain_timeout_s (bounds the SIGTERM wait)");
ABSL_FLAG(double, duration_s, 60, "length of the load phase");
ABSL_FLAG(int64_t, max_requests, 1000000, "client operations issued at most");
ABSL_FLAG(int32_t, threads, 4, "client threads");
ABSL_FLAG(uint64_t, seed, 1, "RNG seed: the same seed replays the same request sequence per thread");
ABSL_FLAG(int32_t, greedy_variants, 24, "greedy request shapes with offline references");
ABSL_FLAG(int32_t, max_new_tokens, 32, "largest max_new_tokens requested");
ABSL_FLAG(double, cancel_fraction, 0.10, "Generate requests the client cancels");
ABSL_FLAG(double, deadline_fraction, 0.05, "Generate requests with a 1-80 ms deadline");
ABSL_FLAG(double, churn_interval_s, 0.5, "one adapter load/unload/list per interval");
ABSL_FLAG(double, reload_interval_s, 15, "one model reload per interval (0: none)");
ABSL_FLAG(double, force_unload_fraction, 0.1, "adapter unloads with force=true");
ABSL_FLAG(double, rss_bound_mib, 64, "G4: RSS max - mean over the load's second half");
ABSL_FLAG(int64_t, fd_bound, 8, "G5: |fds at the end - fds after warm-up|");
ABSL_FLAG(int64_t, thread_bound, 8, "G5: |threads at the end - threads after warm-up|");
ABSL_FLAG(double, idle_timeout_s, 60, "G3/G5: how long the server may take to settle at idle");
ABSL_FLAG(double, sample_interval_s, 1, "/proc sampling period");
ABSL_FLAG(std::string, json_out, "", "write the JSON report here");

namespace kiln::bench::soak {
namespace {

using kiln::testing::KilndProcess;

struct Series {
  std::vector<double> rss_mib, fds, threads;
};

Series Collect(const std::vector<ProcSample>& samples, const std::string& phase) {
  Series s;
  for (const ProcSample& p : samples) {
    if (!phase.empty() && p.phase != phase) continue;
    s.rss_mib.push_back(static_cast<double>(p.rss_bytes) / (1 << 20));
    s.fds.push_back(static_cast<double>(p.fds));
    s.threads.push_back(static_cast<double>(p.threads));
  }
  return s;
}

std::string SeriesLine(const std::string& name, const std::vector<double>& v) {
  const SeriesStats st = Stats(v);
  return absl::StrFormat("%-10s n=%-5d min=%-10.1f mean=%-10.1f max=%-10.1f\n", name, st.count, st.min,
                         st.mean, st.max);
}

// Polls until NotIdleReasons is empty and, with a baseline, the ledger equals it.
absl::StatusOr<ServerState> WaitIdle(kiln::v1::Kiln::Stub* stub, int metrics_port,
                                     const std::vector<std::string>& models, const ServerState* baseline,
                                     absl::Duration timeout, std::vector<std::string>* reasons) {
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    absl::StatusOr<ServerState> s = ReadServerState(stub, metrics_port, models);
    if (!s.ok()) return s.status();
    *reasons = NotIdleReasons(*s);
    if (baseline != nullptr) {
      for (std::string& d : LedgerDifferences(*baseline, *s)) reasons->push_back(std::move(d));
    }
    if (reasons->empty() || absl::Now() > deadline) return s;
    absl::SleepFor(absl::Milliseconds(200));  // polling another process, bounded above
  }
}

int Main() {
  std::vector<ModelSpec> models;
  for (const std::string& m : absl::GetFlag(FLAGS_models)) models.push_back({m, {}});
  for (const std::string& pair : absl::GetFlag(FLAGS_adapters)) {
    std::vector<std::string> parts = absl::StrSplit(pair, '/');
    bool found = false;
    for (ModelSpec& m : models) {
      if (parts.size() == 2 && m.name == parts[0]) {
        m.adapters.push_back(parts[1]);
        found = true;
      }
    }
    if (!found) {
      std::fprintf(stderr, "--adapters: '%s' is not model/adapter of a --models entry\n", pair.c_str());
      return 2;
    }
  }
  const std::vector<std::string> roots = absl::StrSplit(absl::GetFlag(FLAGS_model_roots), ',');
  const int64_t kv_bytes = absl::GetFlag(FLAGS_kv_cache_bytes);

  std::unique_ptr<KilndProcess> kilnd;
  std::string target = absl::GetFlag(FLAGS_target);
  pid_t pid = static_cast<pid_t>(absl::GetFlag(FLAGS_server_pid));
  int metrics_port = absl::GetFlag(FLAGS_metrics_port);
  if (!absl::GetFlag(FLAGS_kilnd).empty()) {
    std::vector<std::string> preload;
    for (const ModelSpec& m : models) {
      preload.push_back(absl::StrCat("{\"model\":\"", m.name, "\",\"kv_cache_bytes\":", kv_bytes, "}"));
    }
    std::vector<std::string> flags = {"--model_roots=" + absl::GetFlag(FLAGS_model_roots),
                                      "--adapter_roots=" + absl::GetFlag(FLAGS_adapter_roots),
                                      "--preload=[" + absl::StrJoin(preload, ",") + "]",
                                      absl::StrCat("--drain_timeout_s=", absl::GetFlag(FLAGS_drain_timeout_s))};
    for (const std::string& f : absl::GetFlag(FLAGS_kilnd_flags)) flags.push_back(f);
    absl::StatusOr<std::unique_ptr<KilndProcess>> started =
        KilndProcess::Start({absl::GetFlag(FLAGS_kilnd), flags, std::chrono::seconds(120)});
    if (!started.ok()) {
      std::fprintf(stderr, "kiln_soak: cannot start kilnd: %s\n", started.status().ToString().c_str());
      return 2;
    }
    kilnd = *std::move(started);
    target = kilnd->grpc_address();
    pid = kilnd->pid();
    metrics_port = kilnd->metrics_port();
  }
  if (!IsLoopbackTarget(target) || pid <= 0 || metrics_port <= 0) {
    std::fprintf(stderr, "kiln_soak: give --kilnd, or --target (loopback), --server_pid and --metrics_port\n");
    return 2;
  }
  std::printf("kiln_soak: kilnd pid %d on %s, metrics :%d, seed %llu, %d threads, %.0f s\n", pid,
              target.c_str(), metrics_port, static_cast<unsigned long long>(absl::GetFlag(FLAGS_seed)),
              absl::GetFlag(FLAGS_threads), absl::GetFlag(FLAGS_duration_s));
  std::fflush(stdout);

  SoakLedger ledger;
  WorkloadOptions wo;
  wo.target = target;
  wo.model_root = roots.front();
  wo.models = models;
  wo.kv_cache_bytes = kv_bytes;
  wo.threads = absl::GetFlag(FLAGS_threads);
  wo.duration_s = absl::GetFlag(FLAGS_duration_s);
  wo.max_requests = absl::GetFlag(FLAGS_max_requests);
  wo.seed = absl::GetFlag(FLAGS_seed);
  wo.greedy_variants = absl::GetFlag(FLAGS_greedy_variants);
  wo.max_new_tokens = absl::GetFlag(FLAGS_max_new_tokens);
  wo.cancel_fraction = absl::GetFlag(FLAGS_cancel_fraction);
  wo.deadline_fraction = absl::GetFlag(FLAGS_deadline_fraction);
  wo.churn_interval_s = absl::GetFlag(FLAGS_churn_interval_s);
  wo.reload_interval_s = absl::GetFlag(FLAGS_reload_interval_s);
  wo.force_unload_fraction = absl::GetFlag(FLAGS_force_unload_fraction);
  std::vector<std::string> model_names;
  for (const ModelSpec& m : models) model_names.push_back(m.name);

  ProcSampler sampler(pid, absl::Seconds(absl::GetFlag(FLAGS_sample_interval_s)));
  sampler.SetPhase("warmup");
  Workload workload(wo, &ledger);
  const absl::Time t0 = absl::Now();
  if (absl::Status s = workload.Prepare(absl::Seconds(120)); !s.ok()) {
    std::fprintf(stderr, "kiln_soak: warm-up failed: %s\n%s\n", s.ToString().c_str(),
                 kilnd ? kilnd->Log().c_str() : "");
    return 2;
  }
  const absl::Duration idle_timeout = absl::Seconds(absl::GetFlag(FLAGS_idle_timeout_s));
  workload.Quiesce(idle_timeout);
  std::vector<std::string> reasons;
  absl::StatusOr<ServerState> baseline =
      WaitIdle(workload.admin_stub(), metrics_port, model_names, nullptr, idle_timeout, &reasons);
  if (!baseline.ok() || !reasons.empty()) {
    std::fprintf(stderr, "kiln_soak: no idle baseline after the warm-up: %s %s\n",
                 baseline.status().ToString().c_str(), absl::StrJoin(reasons, "; ").c_str());
    return 2;
  }
  absl::StatusOr<ProcSample> base_proc = sampler.SampleNow();
  if (!base_proc.ok()) {
    std::fprintf(stderr, "kiln_soak: %s\n", base_proc.status().ToString().c_str());
    return 2;
  }
  std::printf("warm-up done in %.1f s: %zu greedy references; baseline rss %.1f MiB, %lld fds, %lld threads\n",
              absl::ToDoubleSeconds(absl::Now() - t0), workload.catalog().size(),
              static_cast<double>(base_proc->rss_bytes) / (1 << 20), static_cast<long long>(base_proc->fds),
              static_cast<long long>(base_proc->threads));
  std::fflush(stdout);

  sampler.SetPhase("load");
  const absl::Time load_start = absl::Now();
  workload.Run();
  const double load_s = absl::ToDoubleSeconds(absl::Now() - load_start);
  sampler.SetPhase("idle");

  // G3: back to the baseline at idle.
  workload.Quiesce(idle_timeout);
  absl::StatusOr<ServerState> end_state =
      WaitIdle(workload.admin_stub(), metrics_port, model_names, &*baseline, idle_timeout, &reasons);
  ledger.Checked(Criterion::kG3);
  if (!end_state.ok()) {
    ledger.Fail(Criterion::kG3, "cannot read the server state at idle: " + end_state.status().ToString());
  }
  for (const std::string& r : reasons) ledger.Fail(Criterion::kG3, "at idle after " +
                                                   absl::StrFormat("%.0f", absl::ToDoubleSeconds(idle_timeout)) + " s: " + r);

  // G1, server side: the soak sends only valid requests, so the server must never have
  // counted INVALID_ARGUMENT, INTERNAL or UNKNOWN for any RPC.
  if (end_state.ok()) {
    for (const auto& [key, n] : end_state->rpc_codes) {
      if (!absl::EndsWith(key, " INVALID_ARGUMENT") && !absl::EndsWith(key, " INTERNAL") &&
          !absl::EndsWith(key, " UNKNOWN")) {
        continue;
      }
      if (n <= 0) continue;
      ledger.Fail(Criterion::kG1, absl::StrCat("kiln_rpc_requests_total{", key, "} = ", n,
                                               " on the server for a client that sent only valid requests"));
    }
  }

  // G5: fd and thread counts back near the post-warm-up values (sockets close asynchronously:
  // poll with a deadline).
  ledger.Checked(Criterion::kG5);
  absl::StatusOr<ProcSample> end_proc;
  const absl::Time g5_deadline = absl::Now() + idle_timeout;
  for (;;) {
    end_proc = sampler.SampleNow();
    if (!end_proc.ok()) break;
    const bool flat = std::abs(end_proc->fds - base_proc->fds) <= absl::GetFlag(FLAGS_fd_bound) &&
                      std::abs(end_proc->threads - base_proc->threads) <= absl::GetFlag(FLAGS_thread_bound);
    if (flat || absl::Now() > g5_deadline) break;
    absl::SleepFor(absl::Milliseconds(500));
  }
  if (!end_proc.ok()) {
    ledger.Fail(Criterion::kG5, "kilnd vanished: " + end_proc.status().ToString());
  } else {
    if (std::abs(end_proc->fds - base_proc->fds) > absl::GetFlag(FLAGS_fd_bound)) {
      ledger.Fail(Criterion::kG5, absl::StrCat("fds ", base_proc->fds, " after warm-up, ", end_proc->fds,
                                               " at idle (bound ", absl::GetFlag(FLAGS_fd_bound), ")"));
    }
    if (std::abs(end_proc->threads - base_proc->threads) > absl::GetFlag(FLAGS_thread_bound)) {
      ledger.Fail(Criterion::kG5, absl::StrCat("threads ", base_proc->threads, " after warm-up, ",
                                               end_proc->threads, " at idle (bound ",
                                               absl::GetFlag(FLAGS_thread_bound), ")"));
    }
  }

  // G4: RSS growth over the second half of the load.
  const std::vector<ProcSample> samples = sampler.samples();
  const Series load = Collect(samples, "load");
  const double growth = SecondHalfMaxMinusMean(load.rss_mib);
  ledger.Checked(Criterion::kG4);
  if (load.rss_mib.size() < 4) {
    ledger.Fail(Criterion::kG4, absl::StrCat("only ", load.rss_mib.size(), " RSS samples during the load"));
  } else if (growth > absl::GetFlag(FLAGS_rss_bound_mib)) {
    ledger.Fail(Criterion::kG4, absl::StrFormat("RSS max - mean over the second half %.1f MiB > %.1f MiB",
                                                growth, absl::GetFlag(FLAGS_rss_bound_mib)));
  }

  // G6: still serving; exits 0 on SIGTERM.
  ledger.Checked(Criterion::kG6);
  {
    grpc::health::v1::Health::Stub health(workload.admin_channel());
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    grpc::health::v1::HealthCheckResponse resp;
    grpc::Status s = health.Check(&ctx, {}, &resp);
    if (!s.ok() || resp.status() != grpc::health::v1::HealthCheckResponse::SERVING) {
      ledger.Fail(Criterion::kG6, absl::StrCat("Health.Check('') at the end: ", CodeName(s.error_code()), " ",
                                               grpc::health::v1::HealthCheckResponse::ServingStatus_Name(resp.status())));
    }
  }
  int exit_code = -1;
  if (kilnd) {
    absl::StatusOr<int> code = kilnd->Stop(
        SIGTERM, std::chrono::seconds(absl::GetFlag(FLAGS_drain_timeout_s) + 30));
    exit_code = code.ok() ? *code : -1;
    if (!code.ok() || *code != 0) {
      ledger.Fail(Criterion::kG6, absl::StrCat("kilnd after SIGTERM: ",
                                               code.ok() ? absl::StrCat("exit ", *code) : code.status().ToString(),
                                               "; log tail: ", kilnd->Log().substr(kilnd->Log().size() > 2000 ? kilnd->Log().size() - 2000 : 0)));
    }
  }

  // Summary.
  const Series all = Collect(samples, "");
  std::string summary = absl::StrFormat(
      "\nsoak: %.1f s load, %d client threads, seed %llu, %lld operations, %lld model reloads, "
      "%lld streamed tokens, load average %.2f\n\n",
      load_s, wo.threads, static_cast<unsigned long long>(wo.seed), static_cast<long long>(ledger.total_rpcs()),
      static_cast<long long>(workload.reloads()), static_cast<long long>(ledger.tokens()), ReadLoadAverage());
  summary += ledger.FormatTable();
  summary += absl::StrFormat("\nkilnd /proc series (%s s period; load phase | whole run):\n",
                             absl::StrCat(absl::GetFlag(FLAGS_sample_interval_s)));
  summary += SeriesLine("rss_mib", load.rss_mib) + SeriesLine("  (all)", all.rss_mib);
  summary += SeriesLine("fds", load.fds) + SeriesLine("  (all)", all.fds);
  summary += SeriesLine("threads", load.threads) + SeriesLine("  (all)", all.threads);
  const double slope_mib_per_min =
      SecondHalfSlope(load.rss_mib) * 60 / absl::GetFlag(FLAGS_sample_interval_s);
  summary += absl::StrFormat("rss growth (max - mean, second half of the load): %.2f MiB (bound %.0f); "
                             "trend over the second half %+.3f MiB/min\n",
                             growth, absl::GetFlag(FLAGS_rss_bound_mib), slope_mib_per_min);
  if (end_proc.ok()) {
    summary += absl::StrFormat("fds %lld -> %lld, threads %lld -> %lld (after warm-up -> idle)\n",
                               static_cast<long long>(base_proc->fds), static_cast<long long>(end_proc->fds),
                               static_cast<long long>(base_proc->threads), static_cast<long long>(end_proc->threads));
  }
  if (kilnd) summary += absl::StrFormat("kilnd exit status after SIGTERM: %d\n", exit_code);
  const bool pass = ledger.total_failures() == 0;
  summary += pass ? "\nRESULT: PASS\n" : "\nRESULT: FAIL\n";
  std::fputs(summary.c_str(), stdout);

  if (!absl::GetFlag(FLAGS_json_out).empty()) {
    nlohmann::json j = ledger.ToJson();
    j["pass"] = pass;
    j["seed"] = wo.seed;
    j["threads"] = wo.threads;
    j["duration_s"] = wo.duration_s;
    j["load_s"] = load_s;
    j["operations"] = ledger.total_rpcs();
    j["tokens"] = ledger.tokens();
    j["model_reloads"] = workload.reloads();
    j["rss_growth_mib"] = growth;
    j["rss_second_half_trend_mib_per_min"] = slope_mib_per_min;
    j["kilnd_exit_status"] = exit_code;
    j["baseline"] = ToJson(*baseline);
    if (end_state.ok()) j["end"] = ToJson(*end_state);
    nlohmann::json series = nlohmann::json::array();
    for (const ProcSample& p : samples) {
      series.push_back({{"t_s", p.t_s}, {"phase", p.phase}, {"rss_bytes", p.rss_bytes}, {"fds", p.fds},
                        {"threads", p.threads}});
    }
    j["proc_series"] = series;
    std::ofstream out(absl::GetFlag(FLAGS_json_out));
    out << j.dump(1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    if (!out) std::fprintf(stderr, "kiln_soak: cannot write %s\n", absl::GetFlag(FLAGS_json_out).c_str());
  }
  return pass ? 0 : 1;
}

}  // namespace
}  // namespace kiln::bench::soak

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return kiln::bench::soak::Main();
}
