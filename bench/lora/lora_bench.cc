#include "bench/lora/lora_bench.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <utility>

#include <unistd.h>

#include "absl/status/status.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "engine/common/status_macros.h"
#include "engine/runtime/engine_factory.h"

namespace kiln::bench {
namespace {

namespace fs = std::filesystem;
using engine::Engine;
using engine::GenerateChunk;
using engine::GenerateRequest;
using engine::GenerateStream;

constexpr char kModelName[] = "bench";

// One Generate in flight, drained through the ready callback as the server's reactor does.
// The callback holds a raw pointer: the owner keeps the Pending alive until `done`.
struct Pending {
  std::shared_ptr<GenerateStream> stream;
  absl::Time submitted;
  std::optional<absl::Time> first_token;
  std::vector<int32_t> ids;
  absl::Status status;
  absl::Notification done;
};

void Pump(Pending* p) {
  while (true) {
    GenerateStream::Batch batch = p->stream->Drain();
    if (batch.empty()) return;
    for (const GenerateChunk& chunk : batch.events) {
      if (!chunk.token_ids.empty() && !p->first_token.has_value()) p->first_token = absl::Now();
      p->ids.insert(p->ids.end(), chunk.token_ids.begin(), chunk.token_ids.end());
    }
    if (batch.final_status.has_value()) {
      p->status = *batch.final_status;
      p->done.Notify();
      return;
    }
  }
}

absl::StatusOr<std::unique_ptr<Pending>> Submit(Engine& engine, GenerateRequest request) {
  auto p = std::make_unique<Pending>();
  p->submitted = absl::Now();
  KILN_ASSIGN_OR_RETURN(p->stream, engine.Generate(std::move(request)));
  Pending* raw = p.get();
  p->stream->SetReadyCallback([raw] { Pump(raw); });
  Pump(raw);
  return p;
}

// Waits for `p`; its status, or FAILED_PRECONDITION when it produced a wrong token count.
absl::Status Finish(Pending& p, int expected_tokens, const std::string& what) {
  p.done.WaitForNotification();
  if (!p.status.ok()) {
    return absl::Status(p.status.code(), what + ": " + std::string(p.status.message()));
  }
  if (static_cast<int>(p.ids.size()) != expected_tokens) {
    return absl::FailedPreconditionError(what + ": generated " + std::to_string(p.ids.size()) +
                                         " tokens, expected " + std::to_string(expected_tokens));
  }
  return absl::OkStatus();
}

GenerateRequest Greedy(int index, const LoraBenchOptions& o, std::string adapter, int max_new) {
  GenerateRequest r;
  r.request_id = "lora-bench-" + std::to_string(index);
  r.model = kModelName;
  r.adapter = std::move(adapter);
  std::vector<int32_t> prompt;
  for (int i = 0; i < o.prompt_tokens; ++i) prompt.push_back(3 + (index * 31 + i * 7) % (o.model.vocab - 3));
  r.prompt_token_ids = std::move(prompt);
  r.sampling.do_sample = false;
  r.stopping.max_new_tokens = max_new;
  r.stopping.min_new_tokens = max_new;
  r.stopping.ignore_eos = true;
  return r;
}

double Ms(absl::Duration d) { return absl::ToDoubleMilliseconds(d); }

absl::StatusOr<double> LoadAdapterMs(Engine& engine, const std::string& adapter, bool pin) {
  engine::LoadAdapterOptions options;
  options.model = kModelName;
  options.adapter = adapter;
  options.pin = pin;
  absl::Notification done;
  absl::StatusOr<engine::AdapterInfo> result = absl::UnknownError("no answer");
  const absl::Time t0 = absl::Now();
  engine.LoadAdapter(options, [&](absl::StatusOr<engine::AdapterInfo> info) {
    result = std::move(info);
    done.Notify();
  });
  done.WaitForNotification();
  const double ms = Ms(absl::Now() - t0);
  if (!result.ok()) {
    return absl::Status(result.status().code(), "LoadAdapter " + adapter + ": " + std::string(result.status().message()));
  }
  return ms;
}

absl::Status LoadModel(Engine& engine, const LoraBenchOptions& o) {
  engine::LoadModelOptions load;
  load.model = kModelName;
  // Every run uses the same prompts: without prefix caching each run pays the same prefill.
  load.disable_prefix_caching = true;
  const int64_t per_token = int64_t{2} * o.model.layers * o.model.kv_heads * o.model.head_dim() * 4;
  load.kv_cache_bytes = per_token * o.batch * (o.prompt_tokens + std::max(o.max_new_tokens, o.cold_new_tokens) + 64);
  std::shared_ptr<engine::LoadStream> stream = engine.LoadModel(load);
  absl::Notification done;
  absl::Status status;
  std::function<void()> pump = [&] {
    while (true) {
      engine::LoadStream::Batch batch = stream->Drain();
      if (batch.empty()) return;
      if (batch.final_status.has_value()) {
        status = *batch.final_status;
        done.Notify();
        return;
      }
    }
  };
  stream->SetReadyCallback(pump);
  pump();
  done.WaitForNotification();
  if (!status.ok()) return absl::Status(status.code(), "LoadModel: " + std::string(status.message()));
  return absl::OkStatus();
}

absl::Status Validate(const LoraBenchOptions& o) {
  auto bad = [](const std::string& name, int v, const std::string& limit) {
    return absl::InvalidArgumentError("lora bench: " + name + " = " + std::to_string(v) + " must be " + limit);
  };
  if (o.batch < 1 || o.batch > 1024) return bad("batch", o.batch, "in [1, 1024]");
  if (o.prompt_tokens < 1 || o.prompt_tokens > 256) return bad("prompt_tokens", o.prompt_tokens, "in [1, 256]");
  if (o.max_new_tokens < 1 || o.max_new_tokens > 256) return bad("max_new_tokens", o.max_new_tokens, "in [1, 256]");
  if (o.cold_new_tokens < 1 || o.cold_new_tokens > 256) return bad("cold_new_tokens", o.cold_new_tokens, "in [1, 256]");
  if (o.prompt_tokens + std::max(o.max_new_tokens, o.cold_new_tokens) > o.model.max_position_embeddings) {
    return bad("prompt_tokens + max_new_tokens", o.prompt_tokens + o.max_new_tokens,
               "<= max_position_embeddings " + std::to_string(o.model.max_position_embeddings));
  }
  if (o.rounds < 1 || o.rounds > 20) return bad("rounds", o.rounds, "in [1, 20]");
  if (o.cold_samples < 1 || o.cold_samples > 50) return bad("cold_samples", o.cold_samples, "in [1, 50]");
  if (o.rank < 1 || o.rank > 256) return bad("rank", o.rank, "in [1, 256]");
  if (o.cold_rank < 1 || o.cold_rank > 256) return bad("cold_rank", o.cold_rank, "in [1, 256]");
  if (o.model.vocab < 4) return bad("vocab", o.model.vocab, ">= 4");
  for (int n : o.adapter_counts) {
    if (n < 1 || n > o.batch) return bad("adapter count", n, "in [1, batch " + std::to_string(o.batch) + "]");
  }
  return absl::OkStatus();
}

// Removes the temp dir it made, whatever path the run leaves by.
class WorkDir {
 public:
  explicit WorkDir(const std::string& requested) {
    static std::atomic<int> counter{0};
    owned_ = requested.empty();
    path_ = owned_ ? fs::temp_directory_path() /
                         ("kiln-lora-bench-" + std::to_string(::getpid()) + "-" + std::to_string(counter++))
                   : fs::path(requested);
  }
  ~WorkDir() {
    std::error_code ec;
    if (owned_) fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
  bool owned_ = false;
};

struct BatchRun {
  double tokens_per_s = 0;
  int64_t tokens = 0;
  std::vector<std::vector<int32_t>> ids;  // per request
};

// `batch` concurrent requests; request i names adapters[i % size] ("" = base).
absl::StatusOr<BatchRun> RunBatch(Engine& engine, const LoraBenchOptions& o, const std::vector<std::string>& adapters) {
  std::vector<std::unique_ptr<Pending>> pending;
  const absl::Time t0 = absl::Now();
  absl::Status submit_status;
  for (int i = 0; i < o.batch && submit_status.ok(); ++i) {
    auto p = Submit(engine, Greedy(i, o, adapters[static_cast<size_t>(i) % adapters.size()], o.max_new_tokens));
    if (p.ok()) {
      pending.push_back(*std::move(p));
    } else {
      submit_status = p.status();
    }
  }
  BatchRun run;
  absl::Status status = submit_status;
  for (auto& p : pending) {  // wait for all, even after a failure: the callbacks point into them
    absl::Status s = Finish(*p, o.max_new_tokens, "throughput request");
    if (status.ok()) status = s;
    run.tokens += static_cast<int64_t>(p->ids.size());
    run.ids.push_back(p->ids);
  }
  if (!status.ok()) return status;
  run.tokens_per_s = static_cast<double>(run.tokens) / absl::ToDoubleSeconds(absl::Now() - t0);
  return run;
}

// One timed request; returns its time to first token in ms.
absl::StatusOr<double> TtftMs(Engine& engine, const LoraBenchOptions& o, int index, const std::string& adapter) {
  KILN_ASSIGN_OR_RETURN(std::unique_ptr<Pending> p, Submit(engine, Greedy(index, o, adapter, o.cold_new_tokens)));
  KILN_RETURN_IF_ERROR(Finish(*p, o.cold_new_tokens, "cold-attach request (" + (adapter.empty() ? "base" : adapter) + ")"));
  return Ms(*p->first_token - p->submitted);
}

absl::Status MeasureThroughput(Engine& engine, const LoraBenchOptions& o, LoraBenchReport& report) {
  std::vector<std::vector<std::string>> configs = {{""}};
  report.throughput.push_back({});
  for (int n : o.adapter_counts) {
    std::vector<std::string> names;
    for (int a = 0; a < n; ++a) names.push_back("t" + std::to_string(a));
    configs.push_back(names);
    ThroughputRow row;
    row.num_adapters = n;
    report.throughput.push_back(row);
  }
  std::vector<std::vector<std::vector<int32_t>>> first_ids(configs.size());
  for (int round = 0; round < o.rounds; ++round) {
    for (size_t c = 0; c < configs.size(); ++c) {
      KILN_ASSIGN_OR_RETURN(BatchRun run, RunBatch(engine, o, configs[c]));
      ThroughputRow& row = report.throughput[c];
      row.tokens_per_s.push_back(run.tokens_per_s);
      if (run.tokens_per_s > row.best_tokens_per_s) {
        row.best_tokens_per_s = run.tokens_per_s;
        row.generated_tokens = run.tokens;
      }
      if (round == 0) {
        first_ids[c] = std::move(run.ids);
      } else if (run.ids != first_ids[c]) {
        row.same_tokens_every_round = false;
      }
    }
  }
  for (size_t c = 0; c < configs.size(); ++c) {
    ThroughputRow& row = report.throughput[c];
    row.ratio_vs_base = row.best_tokens_per_s / report.throughput[0].best_tokens_per_s;
    row.median_tokens_per_s = Median(row.tokens_per_s);
    row.median_ratio_vs_base = row.median_tokens_per_s / Median(report.throughput[0].tokens_per_s);
    for (size_t i = 0; i < first_ids[c].size(); ++i) {
      if (first_ids[c][i] != first_ids[0][i]) ++row.requests_differing_from_base;
    }
  }
  return absl::OkStatus();
}

absl::Status MeasureColdAttach(Engine& engine, const LoraBenchOptions& o, ColdAttach& cold) {
  for (int k = 0; k < o.cold_samples; ++k) {
    const int index = 100000 + k;  // a prompt no throughput request used
    const std::string adapter = "cold" + std::to_string(k);
    KILN_ASSIGN_OR_RETURN(double cold_ms, TtftMs(engine, o, index, adapter));
    KILN_ASSIGN_OR_RETURN(double warm_ms, TtftMs(engine, o, index, adapter));
    KILN_ASSIGN_OR_RETURN(double base_ms, TtftMs(engine, o, index, ""));
    KILN_ASSIGN_OR_RETURN(double load_ms, LoadAdapterMs(engine, "load" + std::to_string(k), /*pin=*/false));
    cold.cold_ttft_ms.push_back(cold_ms);
    cold.warm_ttft_ms.push_back(warm_ms);
    cold.base_ttft_ms.push_back(base_ms);
    cold.load_adapter_ms.push_back(load_ms);
  }
  cold.median_cold_ms = Median(cold.cold_ttft_ms);
  cold.median_warm_ms = Median(cold.warm_ttft_ms);
  cold.median_base_ms = Median(cold.base_ttft_ms);
  cold.median_load_ms = Median(cold.load_adapter_ms);
  return absl::OkStatus();
}

absl::Status WriteInputs(const LoraBenchOptions& o, const fs::path& root, LoraBenchReport& report) {
  KILN_RETURN_IF_ERROR(WriteSyntheticLlama(o.model, (root / "models" / kModelName).string(), o.tokenizer_dir, 7));
  const int max_adapters = *std::max_element(o.adapter_counts.begin(), o.adapter_counts.end());
  for (int a = 0; a < max_adapters; ++a) {
    SyntheticAdapter spec;
    spec.rank = o.rank;
    spec.alpha = 2.0 * o.rank;
    spec.base_model_name_or_path = kModelName;
    spec.seed = 1000 + static_cast<uint32_t>(a);
    KILN_RETURN_IF_ERROR(WriteSyntheticAdapter(o.model, spec, (root / "adapters" / ("t" + std::to_string(a))).string(),
                                               &report.throughput_adapter_bytes));
  }
  SyntheticAdapter small;
  small.rank = o.cold_rank;
  small.alpha = 2.0 * o.cold_rank;
  small.target_modules = {"self_attn.q_proj", "self_attn.v_proj"};
  small.base_model_name_or_path = kModelName;
  for (int k = 0; k < o.cold_samples; ++k) {
    for (const char* prefix : {"cold", "load"}) {
      small.seed = 5000 + static_cast<uint32_t>(2 * k + (prefix[0] == 'l' ? 1 : 0));
      KILN_RETURN_IF_ERROR(WriteSyntheticAdapter(o.model, small, (root / "adapters" / (prefix + std::to_string(k))).string(),
                                                 &report.cold.adapter_bytes));
    }
  }
  const SyntheticLlama& m = o.model;
  const int64_t q = int64_t{m.heads} * m.head_dim(), kv = int64_t{m.kv_heads} * m.head_dim();
  report.weight_parameters = int64_t{2} * m.vocab * m.hidden +
                             int64_t{m.layers} * (2 * q * m.hidden + 2 * kv * m.hidden + 3 * int64_t{m.intermediate} * m.hidden);
  return absl::OkStatus();
}

}  // namespace

double Median(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 == 1 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

absl::StatusOr<LoraBenchReport> RunLoraBench(const LoraBenchOptions& o) {
  KILN_RETURN_IF_ERROR(Validate(o));
  WorkDir work(o.work_dir);
  LoraBenchReport report;
  KILN_RETURN_IF_ERROR(WriteInputs(o, work.path(), report));

  engine::EngineOptions options;
  options.model_roots = {(work.path() / "models").string()};
  options.adapter_roots = {(work.path() / "adapters").string()};
  options.num_compute_threads = o.threads;
  options.limits.max_running_requests = o.batch;
  options.limits.max_batched_tokens = std::max(4096, o.batch * o.prompt_tokens);
  options.limits.max_resident_adapters = 1024;
  options.limits.max_adapter_device_bytes = int64_t{8} << 30;
  KILN_ASSIGN_OR_RETURN(std::unique_ptr<Engine> engine, engine::CreateEngine(std::move(options)));
  absl::Status status = LoadModel(*engine, o);

  // Warm-up: one base request so workspaces exist before anything is timed.
  if (status.ok()) status = TtftMs(*engine, o, 99999, "").status();
  if (status.ok()) {
    const int max_adapters = *std::max_element(o.adapter_counts.begin(), o.adapter_counts.end());
    for (int a = 0; a < max_adapters && status.ok(); ++a) {
      absl::StatusOr<double> ms = LoadAdapterMs(*engine, "t" + std::to_string(a), /*pin=*/true);
      if (ms.ok()) {
        report.preload_ms.push_back(*ms);
      } else {
        status = ms.status();
      }
    }
    report.median_preload_ms = Median(report.preload_ms);
  }
  if (status.ok()) status = MeasureThroughput(*engine, o, report);
  if (status.ok()) status = MeasureColdAttach(*engine, o, report.cold);
  if (status.ok()) {
    absl::StatusOr<std::vector<engine::AdapterInfo>> listed = engine->ListAdapters(kModelName);
    if (listed.ok()) {
      report.resident_adapters = static_cast<int>(listed->size());
    } else {
      status = listed.status();
    }
  }
  engine->Shutdown();
  if (!status.ok()) return status;
  return report;
}

std::string FormatLoraReport(const LoraBenchOptions& o, const LoraBenchReport& r) {
  std::string md;
  char line[512];
  std::snprintf(line, sizeof(line),
                "model: random Llama hidden %d x %d layers, %d/%d heads, intermediate %d, vocab %d, fp32 "
                "(%.1fM parameters); CPU backend, %d threads (0 = all cores)\n"
                "throughput: %d concurrent greedy requests, %d prompt + %d new tokens (ignore_eos), adapters "
                "r=%d on q/k/v/o/gate/up/down (%.2f MB fp32 each, pre-loaded and pinned; median LoadAdapter "
                "%.1f ms), request i uses adapter i %% n; best and median of %d interleaved rounds\n\n",
                o.model.hidden, o.model.layers, o.model.heads, o.model.kv_heads, o.model.intermediate, o.model.vocab,
                static_cast<double>(r.weight_parameters) / 1e6, o.threads, o.batch, o.prompt_tokens, o.max_new_tokens,
                o.rank, static_cast<double>(r.throughput_adapter_bytes) / 1e6, r.median_preload_ms, o.rounds);
  md += line;
  md += "| adapters in batch | generated tokens | tokens/s (best) | vs base-only (best) | tokens/s (median) | "
        "vs base-only (median) | tokens/s per round | requests != base tokens | same tokens every round |\n"
        "|---|---|---|---|---|---|---|---|---|\n";
  for (const ThroughputRow& row : r.throughput) {
    std::string rounds;
    for (double t : row.tokens_per_s) {
      std::snprintf(line, sizeof(line), "%s%.1f", rounds.empty() ? "" : " / ", t);
      rounds += line;
    }
    std::snprintf(line, sizeof(line), "| %s | %lld | %.1f | %.3f | %.1f | %.3f | %s | %d/%d | %s |\n",
                  row.num_adapters == 0 ? "0 (base only)" : std::to_string(row.num_adapters).c_str(),
                  static_cast<long long>(row.generated_tokens), row.best_tokens_per_s, row.ratio_vs_base,
                  row.median_tokens_per_s, row.median_ratio_vs_base, rounds.c_str(),
                  row.requests_differing_from_base, o.batch,
                  row.same_tokens_every_round ? "yes" : "NO");
    md += line;
  }
  const ColdAttach& c = r.cold;
  std::snprintf(line, sizeof(line),
                "\ncold attach: small adapter r=%d on q_proj/v_proj (%.2f MB fp32), one request at a time on an "
                "idle engine, %d prompt + %d new tokens; medians of %d samples\n\n",
                o.cold_rank, static_cast<double>(c.adapter_bytes) / 1e6, o.prompt_tokens, o.cold_new_tokens,
                o.cold_samples);
  md += line;
  md += "| measurement | median ms | vs resident (warm) TTFT |\n|---|---|---|\n";
  const double warm = c.median_warm_ms > 0 ? c.median_warm_ms : 1;
  for (const auto& [name, v] : {std::pair<const char*, double>{"TTFT, adapter not yet loaded (cold)", c.median_cold_ms},
                                {"TTFT, adapter resident (warm)", c.median_warm_ms},
                                {"TTFT, base model (no adapter)", c.median_base_ms},
                                {"LoadAdapter of a fresh small adapter", c.median_load_ms}}) {
    std::snprintf(line, sizeof(line), "| %s | %.2f | %.2f |\n", name, v, v / warm);
    md += line;
  }
  std::snprintf(line, sizeof(line), "\nresident adapters at the end: %d\n", r.resident_adapters);
  md += line;
  return md;
}

}  // namespace kiln::bench
