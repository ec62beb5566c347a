// Pure parts of the soak test (bench/soak): which gRPC codes each operation may end with in
// which situation (criterion G1 of ../shared/reference/reliability.md §7), the per-run ledger
// of outcomes and findings, and statistics over the sampled /proc series (G4/G5).
// No gRPC calls and no process handling here, so tests/bench-style unit tests cover it.
//
// Thread-safety: SoakLedger is thread-safe; everything else is plain values.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <grpcpp/support/status.h>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "bench/grpc_code_name.h"
#include "nlohmann/json.hpp"

namespace kiln::bench::soak {

enum class Op {
  kGenerate,
  kTokenize,
  kListModels,
  kGetServerInfo,
  kHealthCheck,
  kLoadAdapter,
  kUnloadAdapter,
  kListAdapters,
  kUnloadModel,
  kLoadModel,
};

const char* OpName(Op op);
using ::kiln::bench::CodeName;  // bench/grpc_code_name.h

// What the client knows about the situation one RPC ran in.
struct OpSituation {
  bool client_cancelled = false;  // the client called TryCancel on it
  bool short_deadline = false;    // the client gave it a deliberately short deadline
  // A reload (UnloadModel then LoadModel) of the RPC's model overlapped the RPC.
  bool model_lifecycle = false;
};

// The codes the API documents for `op` in `situation` (proto/kiln/v1/kiln.proto header and
// DESIGN.md §5). INTERNAL and UNKNOWN are never allowed. Exhaustive over Op.
//   Generate:  OK; CANCELLED if cancelled; DEADLINE_EXCEEDED if short deadline;
//              NOT_FOUND / FAILED_PRECONDITION / ABORTED / UNAVAILABLE if its model was
//              being reloaded (unknown, still loading, unloaded mid-request, not resident).
//   Tokenize:  OK; DEADLINE_EXCEEDED if short; NOT_FOUND / FAILED_PRECONDITION /
//              UNAVAILABLE during a reload of its model.
//   ListModels, GetServerInfo, Health: OK only (they never depend on a model's state).
//   LoadAdapter: OK; NOT_FOUND / FAILED_PRECONDITION / UNAVAILABLE / ABORTED during a reload.
//   UnloadAdapter: OK, NOT_FOUND (not loaded), FAILED_PRECONDITION (in use or still loading
//              with force=false); UNAVAILABLE too during a reload.
//   ListAdapters: OK; NOT_FOUND / FAILED_PRECONDITION / UNAVAILABLE during a reload.
//   UnloadModel, LoadModel: OK (the soak is their only caller, one at a time).
std::vector<grpc::StatusCode> AllowedCodes(Op op, const OpSituation& situation);
bool IsAllowed(Op op, const OpSituation& situation, grpc::StatusCode code);

// True when `text` is well-formed UTF-8 (engine/sample/utf8.h, the engine's own check).
bool IsValidUtf8(const std::string& text);

// min / mean / max of a series.
struct SeriesStats {
  int64_t count = 0;
  double min = 0;
  double mean = 0;
  double max = 0;
};
SeriesStats Stats(const std::vector<double>& values);
// max − mean over the second half of `values` (Triton's growth check); 0 when < 2 values.
double SecondHalfMaxMinusMean(const std::vector<double>& values);
// Least-squares slope of values[i] over i (units per sample) for the second half; 0 when < 4.
// Reported next to the growth check, which a slow steady leak can pass.
double SecondHalfSlope(const std::vector<double>& values);

// The global criteria the soak checks (reliability.md §7 as the soak task numbers them).
enum class Criterion { kG1, kG2, kG3, kG4, kG5, kG6 };
const char* CriterionName(Criterion c);

// Outcome counts by kind ("generate/greedy/text+adapter", "tokenize", ...) and final code,
// tokens, and the failures of each criterion (every failure counted, the first
// kMaxKeptMessages messages per criterion kept).
class SoakLedger {
 public:
  static constexpr int kMaxKeptMessages = 20;

  void Count(const std::string& kind, grpc::StatusCode code, int64_t tokens = 0);
  void Fail(Criterion c, const std::string& message);
  // Records that `c` was checked (so a criterion with no failures reads PASS, not "not run").
  void Checked(Criterion c);

  int64_t failures(Criterion c) const;
  int64_t total_failures() const;
  int64_t count(const std::string& kind, grpc::StatusCode code) const;
  int64_t total_rpcs() const;
  int64_t tokens() const;

  // Table: one row per kind, one column per code seen, then the verdict per criterion.
  std::string FormatTable() const;
  nlohmann::json ToJson() const;

 private:
  mutable absl::Mutex mu_;
  std::map<std::string, std::map<std::string, int64_t>> counts_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int64_t> tokens_by_kind_ ABSL_GUARDED_BY(mu_);
  std::map<Criterion, int64_t> failures_ ABSL_GUARDED_BY(mu_);
  std::map<Criterion, std::vector<std::string>> messages_ ABSL_GUARDED_BY(mu_);
  std::map<Criterion, bool> checked_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kiln::bench::soak
