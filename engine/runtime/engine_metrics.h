// EngineMetrics: the engine's Prometheus metrics (names listed in deploy/metrics.txt and
// used by deploy/'s dashboard), registered on EngineOptions::metrics_registry. With no registry
// every handle is a no-op, so tests and library users need not care.
//
// ModelMetrics holds one resident model's series. Gauges are removed when it is destroyed (an
// unloaded model leaves no stale gauge); counters and histograms stay, as Prometheus expects.
//
// Thread-safety: prometheus-cpp metrics are thread-safe; EngineMetrics::ForModel may be
// called from any thread.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "engine/runtime/api_types.h"

namespace prometheus {
class Registry;
class Counter;
class Gauge;
class Histogram;
template <typename T>
class Family;
}  // namespace prometheus

namespace kiln::engine {

enum class FinishKind { kLength, kEos, kStop, kCancelled, kDeadline, kAborted, kError };

class ModelMetrics;

class EngineMetrics {
 public:
  // `registry` may be null: then nothing is recorded.
  explicit EngineMetrics(std::shared_ptr<prometheus::Registry> registry);
  ~EngineMetrics();

  std::unique_ptr<ModelMetrics> ForModel(const std::string& model);
  void ModelLoaded(bool ok, double seconds);
  void SetModelsLoaded(int n);
  void SetModelWeightBytes(const std::string& model, int64_t bytes);  // device "cpu"
  void RemoveModel(const std::string& model);
  void SetDeviceMemory(const DeviceReport& device);
  // One adapter load of `model` finished (any thread).
  void AdapterLoaded(const std::string& model, bool ok, double seconds);
  // A resident model was evicted ("memory", "count" or "idle"), or an evicted one reloaded.
  void ModelEvicted(const std::string& reason);
  void ModelReloaded(bool ok);

  struct Families;

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<Families> f_;
};

class ModelMetrics {
 public:
  ~ModelMetrics();
  void SetQueue(int running, int waiting);
  void SetKvBlocks(int64_t total, int64_t free);
  void PrefixLookup(int64_t queried_tokens, int64_t hit_tokens);
  void Preempted();
  void QueueTime(double seconds);
  void FirstToken(const std::string& adapter, double seconds);
  void InterToken(const std::string& adapter, double seconds);
  void PromptTokens(const std::string& adapter, int64_t n);
  void GeneratedTokens(const std::string& adapter, int64_t n);
  void Finished(const std::string& adapter, FinishKind kind, double e2e_seconds,
                bool record_latency);
  // The adapter cache's residency, its eviction count so far, and per adapter (running,
  // waiting) requests; adapters absent from `requests` lose their series.
  void SetAdapters(int device, int host, int64_t evictions_total,
                   const std::map<std::string, std::pair<int, int>>& requests);

 private:
  friend class EngineMetrics;
  ModelMetrics() = default;
  EngineMetrics::Families* f_ = nullptr;  // null: no registry
  std::string model_;
  prometheus::Gauge* running_ = nullptr;
  prometheus::Gauge* waiting_ = nullptr;
  prometheus::Gauge* blocks_total_ = nullptr;
  prometheus::Gauge* blocks_free_ = nullptr;
  prometheus::Gauge* usage_ = nullptr;
  prometheus::Counter* queries_ = nullptr;
  prometheus::Counter* hits_ = nullptr;
  prometheus::Counter* preemptions_ = nullptr;
  prometheus::Histogram* queue_time_ = nullptr;
  prometheus::Gauge* adapters_device_ = nullptr;
  prometheus::Gauge* adapters_host_ = nullptr;
  prometheus::Counter* evictions_ = nullptr;
  int64_t evictions_seen_ = 0;
  std::map<std::pair<std::string, std::string>, prometheus::Gauge*> adapter_requests_;
};

}  // namespace kiln::engine
