#include "engine/runtime/engine_metrics.h"

#include <utility>

#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace kiln::engine {

using prometheus::Counter;
using prometheus::Family;
using prometheus::Gauge;
using prometheus::Histogram;

namespace {

// Latency buckets from 1 ms to 5 min (TTFT on a loaded CPU server can be seconds).
Histogram::BucketBoundaries LatencyBuckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300};
}

const char* ReasonLabel(FinishKind kind) {
  switch (kind) {
    case FinishKind::kLength: return "length";
    case FinishKind::kEos: return "eos";
    case FinishKind::kStop: return "stop";
    case FinishKind::kCancelled: return "cancelled";
    case FinishKind::kDeadline: return "deadline";
    case FinishKind::kAborted: return "aborted";
    case FinishKind::kError: return "error";
  }
  return "error";
}

}  // namespace

struct EngineMetrics::Families {
  Family<Gauge>& running;
  Family<Gauge>& waiting;
  Family<Gauge>& blocks_total;
  Family<Gauge>& blocks_free;
  Family<Gauge>& usage;
  Family<Counter>& queries;
  Family<Counter>& hits;
  Family<Counter>& preemptions;
  Family<Histogram>& ttft;
  Family<Histogram>& itl;
  Family<Histogram>& e2e;
  Family<Histogram>& queue_time;
  Family<Counter>& prompt_tokens;
  Family<Counter>& generation_tokens;
  Family<Counter>& finished;
  Family<Counter>& loads;
  Family<Histogram>& load_duration;
  Family<Gauge>& models_loaded;
  Family<Gauge>& weight_bytes;
  Family<Gauge>& device_memory;
  Family<Gauge>& adapters_resident;
  Family<Counter>& adapter_loads;
  Family<Histogram>& adapter_load_duration;
  Family<Counter>& adapter_evictions;
  Family<Gauge>& adapter_requests;
  Family<Counter>& model_evictions;
  Family<Counter>& model_reloads;
};

EngineMetrics::EngineMetrics(std::shared_ptr<prometheus::Registry> registry)
    : registry_(std::move(registry)) {
  if (!registry_) return;
  prometheus::Registry& r = *registry_;
  auto gauge = [&](const char* name, const char* help) -> Family<Gauge>& {
    return prometheus::BuildGauge().Name(name).Help(help).Register(r);
  };
  auto counter = [&](const char* name, const char* help) -> Family<Counter>& {
    return prometheus::BuildCounter().Name(name).Help(help).Register(r);
  };
  auto histogram = [&](const char* name, const char* help) -> Family<Histogram>& {
    return prometheus::BuildHistogram().Name(name).Help(help).Register(r);
  };
  f_.reset(new Families{
      gauge("kiln_requests_running", "Requests in the model's running batch"),
      gauge("kiln_requests_waiting", "Requests queued for admission (incl. preempted)"),
      gauge("kiln_kv_blocks_total", "KV cache blocks of the model"),
      gauge("kiln_kv_blocks_free", "KV cache blocks free (incl. evictable prefix-cache blocks)"),
      gauge("kiln_kv_usage_ratio", "Used KV blocks / total (0..1)"),
      counter("kiln_prefix_cache_queries_total", "Prompt tokens looked up in the prefix cache"),
      counter("kiln_prefix_cache_hits_total", "Prompt tokens served from the prefix cache"),
      counter("kiln_preemptions_total", "Sequences preempted (KV recomputed later)"),
      histogram("kiln_time_to_first_token_seconds", "Submit to first generated token"),
      histogram("kiln_inter_token_latency_seconds", "Time between generated tokens"),
      histogram("kiln_e2e_request_latency_seconds", "Submit to finish of completed requests"),
      histogram("kiln_request_queue_time_seconds", "Submit to first admission"),
      counter("kiln_prompt_tokens_total", "Prompt tokens of admitted requests"),
      counter("kiln_generation_tokens_total", "Generated tokens"),
      counter("kiln_requests_finished_total", "Finished requests by reason"),
      counter("kiln_model_loads_total", "Model loads by outcome"),
      histogram("kiln_model_load_duration_seconds", "Model load duration"),
      gauge("kiln_models_loaded", "Resident models"),
      gauge("kiln_model_weight_bytes", "Weight bytes of a resident model per device"),
      gauge("kiln_device_memory_bytes", "Device memory by kind"),
      gauge("kiln_adapters_resident", "LoRA adapters held by a model's adapter cache, by tier (device, host)"),
      counter("kiln_adapter_loads_total", "Adapter loads (disk or host tier to device) by outcome"),
      histogram("kiln_adapter_load_duration_seconds", "Adapter load duration (read + validate + upload)"),
      counter("kiln_adapter_evictions_total", "Adapters evicted from the device tier to make room"),
      gauge("kiln_adapter_requests", "Requests per adapter by state (running, waiting)"),
      counter("kiln_model_evictions_total", "Resident models evicted, by reason (memory, count, idle)"),
      counter("kiln_model_reloads_total", "Evicted models reloaded on demand, by outcome"),
  });
}

EngineMetrics::~EngineMetrics() = default;

std::unique_ptr<ModelMetrics> EngineMetrics::ForModel(const std::string& model) {
  std::unique_ptr<ModelMetrics> m(new ModelMetrics());
  m->model_ = model;
  if (!f_) return m;
  m->f_ = f_.get();
  const std::map<std::string, std::string> labels = {{"model", model}};
  m->running_ = &f_->running.Add(labels);
  m->waiting_ = &f_->waiting.Add(labels);
  m->blocks_total_ = &f_->blocks_total.Add(labels);
  m->blocks_free_ = &f_->blocks_free.Add(labels);
  m->usage_ = &f_->usage.Add(labels);
  m->queries_ = &f_->queries.Add(labels);
  m->hits_ = &f_->hits.Add(labels);
  m->preemptions_ = &f_->preemptions.Add(labels);
  m->queue_time_ = &f_->queue_time.Add(labels, LatencyBuckets());
  return m;
}

void EngineMetrics::ModelLoaded(bool ok, double seconds) {
  if (!f_) return;
  f_->loads.Add({{"status", ok ? "ok" : "error"}}).Increment();
  f_->load_duration.Add({}, Histogram::BucketBoundaries{0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600})
      .Observe(seconds);
}

void EngineMetrics::AdapterLoaded(const std::string& model, bool ok, double seconds) {
  if (!f_) return;
  f_->adapter_loads.Add({{"model", model}, {"status", ok ? "ok" : "error"}}).Increment();
  if (ok) {
    f_->adapter_load_duration.Add({{"model", model}}, LatencyBuckets()).Observe(seconds);
  }
}

void EngineMetrics::ModelEvicted(const std::string& reason) {
  if (f_) f_->model_evictions.Add({{"reason", reason}}).Increment();
}

void EngineMetrics::ModelReloaded(bool ok) {
  if (f_) f_->model_reloads.Add({{"status", ok ? "ok" : "error"}}).Increment();
}

void EngineMetrics::SetModelsLoaded(int n) {
  if (f_) f_->models_loaded.Add({}).Set(n);
}

void EngineMetrics::SetModelWeightBytes(const std::string& model, int64_t bytes) {
  if (f_) f_->weight_bytes.Add({{"model", model}, {"device", "cpu"}}).Set(static_cast<double>(bytes));
}

void EngineMetrics::RemoveModel(const std::string& model) {
  if (f_) f_->weight_bytes.Remove(&f_->weight_bytes.Add({{"model", model}, {"device", "cpu"}}));
}

void EngineMetrics::SetDeviceMemory(const DeviceReport& d) {
  if (!f_) return;
  auto set = [&](const char* kind, int64_t v) {
    f_->device_memory.Add({{"device", d.name}, {"kind", kind}}).Set(static_cast<double>(v));
  };
  set("total", d.total_bytes);
  set("free", d.free_bytes);
  set("weights", d.weight_bytes);
  set("kv_cache", d.kv_cache_bytes);
  set("adapters", d.adapter_bytes);
  set("workspace", d.workspace_bytes);
  set("budget", d.budget_bytes);
}

ModelMetrics::~ModelMetrics() {
  if (!f_) return;
  for (const auto& [key, gauge] : adapter_requests_) f_->adapter_requests.Remove(gauge);
  for (prometheus::Gauge* g : {adapters_device_, adapters_host_}) {
    if (g != nullptr) f_->adapters_resident.Remove(g);
  }
  f_->running.Remove(running_);
  f_->waiting.Remove(waiting_);
  f_->blocks_total.Remove(blocks_total_);
  f_->blocks_free.Remove(blocks_free_);
  f_->usage.Remove(usage_);
}

void ModelMetrics::SetQueue(int running, int waiting) {
  if (!f_) return;
  running_->Set(running);
  waiting_->Set(waiting);
}

void ModelMetrics::SetAdapters(int device, int host, int64_t evictions_total,
                               const std::map<std::string, std::pair<int, int>>& requests) {
  if (!f_) return;
  if (adapters_device_ == nullptr) {
    adapters_device_ = &f_->adapters_resident.Add({{"model", model_}, {"tier", "device"}});
    adapters_host_ = &f_->adapters_resident.Add({{"model", model_}, {"tier", "host"}});
    evictions_ = &f_->adapter_evictions.Add({{"model", model_}});
  }
  adapters_device_->Set(device);
  adapters_host_->Set(host);
  if (evictions_total > evictions_seen_) {
    evictions_->Increment(static_cast<double>(evictions_total - evictions_seen_));
    evictions_seen_ = evictions_total;
  }
  // Series of adapters with no request left are removed, so the label set stays bounded by
  // what is in flight.
  std::map<std::pair<std::string, std::string>, prometheus::Gauge*> next;
  for (const auto& [adapter, counts] : requests) {
    for (const auto& [state, n] : {std::pair<const char*, int>{"running", counts.first}, {"waiting", counts.second}}) {
      auto key = std::make_pair(adapter, std::string(state));
      auto it = adapter_requests_.find(key);
      prometheus::Gauge* g = it != adapter_requests_.end()
                                 ? it->second
                                 : &f_->adapter_requests.Add({{"model", model_}, {"adapter", adapter}, {"state", state}});
      g->Set(n);
      next[key] = g;
    }
  }
  for (const auto& [key, gauge] : adapter_requests_) {
    if (next.count(key) == 0) f_->adapter_requests.Remove(gauge);
  }
  adapter_requests_ = std::move(next);
}

void ModelMetrics::SetKvBlocks(int64_t total, int64_t free) {
  if (!f_) return;
  blocks_total_->Set(static_cast<double>(total));
  blocks_free_->Set(static_cast<double>(free));
  usage_->Set(total > 0 ? static_cast<double>(total - free) / static_cast<double>(total) : 0.0);
}

void ModelMetrics::PrefixLookup(int64_t queried_tokens, int64_t hit_tokens) {
  if (!f_) return;
  queries_->Increment(static_cast<double>(queried_tokens));
  hits_->Increment(static_cast<double>(hit_tokens));
}

void ModelMetrics::Preempted() {
  if (f_) preemptions_->Increment();
}

void ModelMetrics::QueueTime(double seconds) {
  if (f_) queue_time_->Observe(seconds);
}

void ModelMetrics::FirstToken(const std::string& adapter, double seconds) {
  if (f_) f_->ttft.Add({{"model", model_}, {"adapter", adapter}}, LatencyBuckets()).Observe(seconds);
}

void ModelMetrics::InterToken(const std::string& adapter, double seconds) {
  if (f_) f_->itl.Add({{"model", model_}, {"adapter", adapter}}, LatencyBuckets()).Observe(seconds);
}

void ModelMetrics::PromptTokens(const std::string& adapter, int64_t n) {
  if (f_) f_->prompt_tokens.Add({{"model", model_}, {"adapter", adapter}}).Increment(static_cast<double>(n));
}

void ModelMetrics::GeneratedTokens(const std::string& adapter, int64_t n) {
  if (f_) {
    f_->generation_tokens.Add({{"model", model_}, {"adapter", adapter}}).Increment(static_cast<double>(n));
  }
}

void ModelMetrics::Finished(const std::string& adapter, FinishKind kind, double e2e_seconds,
                            bool record_latency) {
  if (!f_) return;
  f_->finished.Add({{"model", model_}, {"reason", ReasonLabel(kind)}}).Increment();
  if (record_latency) {
    f_->e2e.Add({{"model", model_}, {"adapter", adapter}}, LatencyBuckets()).Observe(e2e_seconds);
  }
}

}  // namespace kiln::engine
