// The soak workload (issue #10, tables D1/D6): a mixed, seeded load on a running kilnd over
// the generated kiln.v1 client, loopback only, bounded in time and request count.
//
//   client threads  greedy and sampled Generate (text and token-id prompts) on every model,
//                   with and without adapters, random client cancels (before the first read,
//                   after k reads, or on a timer) and random short deadlines; Tokenize;
//                   ListModels / GetServerInfo / Health.Check.
//   admin thread    adapter churn (LoadAdapter / UnloadAdapter, force=false mostly, so a
//                   refusal while in use is a legal outcome; ListAdapters) and, periodically,
//                   a reload (UnloadModel then LoadModel) of one model while the others serve.
//
// Every RPC's final status is checked against AllowedCodes (G1); every completed Generate's
// streamed text must equal the offline decode of its ids (D6) and, for greedy requests, the
// ids and text of the same request run alone before the load (the references, G2).
// Findings go to the SoakLedger; nothing here aborts the run.
//
// Thread-safety: Prepare, Run and Quiesce are called in that order from one thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "bench/soak/lifecycle.h"
#include "bench/soak/soak_checks.h"
#include "engine/tokenizer/tokenizer.h"
#include "kiln/v1/kiln.grpc.pb.h"

namespace kiln::bench::soak {

struct ModelSpec {
  std::string name;                   // served name == model name under the model root
  std::vector<std::string> adapters;  // adapter ids under the adapter roots
};

struct WorkloadOptions {
  std::string target;                // loopback host:port
  std::string model_root;            // <model_root>/<name>/tokenizer.json for offline decode
  std::vector<ModelSpec> models;
  int64_t kv_cache_bytes = 0;        // LoadModel option used for reloads (as preloaded)
  int threads = 4;
  double duration_s = 60;
  int64_t max_requests = 1000000;    // issuing stops at whichever bound comes first
  uint64_t seed = 1;
  int greedy_variants = 24;          // distinct greedy requests with references
  int max_new_tokens = 32;
  double greedy_fraction = 0.5;      // of Generate
  double adapter_fraction = 0.4;     // of Generate on a model that has adapters
  double cancel_fraction = 0.10;     // of Generate
  double deadline_fraction = 0.05;   // of Generate
  double tokenize_fraction = 0.05;   // of client operations
  double info_fraction = 0.03;       // of client operations
  double churn_interval_s = 0.5;     // admin thread: one adapter operation per interval
  double reload_interval_s = 15;     // admin thread: one model reload per interval (0: none)
  double force_unload_fraction = 0.1;
  double rpc_timeout_s = 120;        // deadline of every RPC that is not deliberately short
};

// One request shape. Greedy variants carry the reference of the same request run alone.
struct Variant {
  int index = -1;
  std::string model;
  std::string adapter;
  std::string text;             // text prompt, or
  std::vector<int32_t> ids;     // token-id prompt
  bool greedy = true;
  int32_t max_new_tokens = 16;
  bool ignore_eos = true;
  std::vector<int32_t> ref_ids;
  std::string ref_text;
};

class Workload {
 public:
  Workload(WorkloadOptions options, SoakLedger* ledger);
  ~Workload();

  // Waits (polling, up to `ready_timeout`) for every model to be READY, loads the
  // tokenizers, builds the greedy catalog and runs each variant alone to record its
  // reference (this is the warm-up). An error means the soak cannot start.
  absl::Status Prepare(absl::Duration ready_timeout);
  // The load: blocks for duration_s (or max_requests).
  void Run();
  // Unloads every adapter (force=false) so the adapter ledger can return to its baseline;
  // an adapter still "in use" after `timeout` at idle is a G3 failure.
  void Quiesce(absl::Duration timeout);

  const std::vector<Variant>& catalog() const { return catalog_; }
  int64_t issued() const { return issued_.load(); }
  int64_t reloads() const { return reloads_.load(); }
  kiln::v1::Kiln::Stub* admin_stub() { return admin_stub_.get(); }
  std::shared_ptr<grpc::Channel> admin_channel() { return admin_channel_; }

 private:
  struct Outcome;
  void ClientLoop(int index);
  void AdminLoop();
  void DoGenerate(std::mt19937_64& rng, kiln::v1::Kiln::Stub* stub, const std::string& tag);
  void DoTokenize(std::mt19937_64& rng, kiln::v1::Kiln::Stub* stub);
  void DoInfo(std::mt19937_64& rng, kiln::v1::Kiln::Stub* stub,
              const std::shared_ptr<grpc::Channel>& channel);
  void DoAdapterChurn(std::mt19937_64& rng);
  void DoReload(const std::string& model);
  Variant SampledVariant(std::mt19937_64& rng) const;
  Variant RandomShape(std::mt19937_64& rng, const std::string& model) const;
  kiln::v1::GenerateRequest BuildRequest(const Variant& v, std::mt19937_64& rng) const;
  // Streams one Generate; no checks.
  grpc::Status Stream(kiln::v1::Kiln::Stub* stub, grpc::ClientContext* ctx,
                      const kiln::v1::GenerateRequest& request, Outcome* out, int cancel_after);
  void CheckGenerate(const Variant& v, const kiln::v1::GenerateRequest& request,
                     const Outcome& out, const std::string& tag);
  // Records the code (ledger) and checks it against AllowedCodes (G1).
  void Finish(Op op, const std::string& kind, const OpSituation& s, const grpc::Status& status,
              const std::string& what, int64_t tokens = 0);
  std::unique_ptr<grpc::ClientContext> Context(absl::Duration deadline) const;
  std::shared_ptr<grpc::Channel> NewChannel(int index) const;

  const WorkloadOptions o_;
  SoakLedger* const ledger_;
  std::vector<std::string> texts_;
  std::map<std::string, int64_t> vocab_;
  std::map<std::string, std::unique_ptr<tokenizer::Tokenizer>> tokenizers_;
  std::vector<Variant> catalog_;
  std::shared_ptr<grpc::Channel> admin_channel_;
  std::unique_ptr<kiln::v1::Kiln::Stub> admin_stub_;
  Lifecycle lifecycle_;
  std::unique_ptr<Canceller> canceller_;
  std::atomic<int64_t> issued_{0};
  std::atomic<int64_t> reloads_{0};
  absl::Time end_;
};

}  // namespace kiln::bench::soak
