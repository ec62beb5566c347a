// Workload, admin side: adapter churn, model reloads, the quiesce step, and the status
// bookkeeping every operation shares.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "bench/soak/workload.h"

namespace kiln::bench::soak {
namespace {

double Uniform(std::mt19937_64& rng) { return std::uniform_real_distribution<double>(0, 1)(rng); }

}  // namespace

void Workload::Finish(Op op, const std::string& kind, const OpSituation& s, const grpc::Status& status,
                      const std::string& what, int64_t tokens) {
  ledger_->Count(kind, status.error_code(), tokens);
  ledger_->Checked(Criterion::kG1);
  if (!IsAllowed(op, s, status.error_code())) {
    ledger_->Fail(Criterion::kG1, absl::StrCat(what, ": ", CodeName(status.error_code()), " \"",
                                               status.error_message(), "\" is not a documented outcome of ",
                                               OpName(op), " here"));
  }
}

void Workload::AdminLoop() {
  std::mt19937_64 rng(o_.seed * 7919 + 17);
  absl::Time next_reload = absl::Now() + absl::Seconds(o_.reload_interval_s);
  size_t next_model = 0;
  while (absl::Now() < end_) {
    if (o_.reload_interval_s > 0 && absl::Now() >= next_reload) {
      DoReload(o_.models[next_model++ % o_.models.size()].name);
      next_reload = absl::Now() + absl::Seconds(o_.reload_interval_s);
    } else {
      DoAdapterChurn(rng);
    }
    // Pacing of the churn, not synchronization; never past the end of the load.
    absl::SleepFor(std::min(absl::Seconds(o_.churn_interval_s), end_ - absl::Now()));
  }
}

void Workload::DoAdapterChurn(std::mt19937_64& rng) {
  std::vector<const ModelSpec*> with_adapters;
  for (const ModelSpec& m : o_.models) {
    if (!m.adapters.empty()) with_adapters.push_back(&m);
  }
  if (with_adapters.empty()) return;
  const ModelSpec& m = *with_adapters[rng() % with_adapters.size()];
  const std::string& adapter = m.adapters[rng() % m.adapters.size()];
  const Lifecycle::Mark mark = lifecycle_.Begin(m.name);
  auto ctx = Context(absl::Seconds(o_.rpc_timeout_s));
  const double roll = Uniform(rng);
  OpSituation s;
  if (roll < 0.45) {
    kiln::v1::LoadAdapterRequest req;
    req.set_model(m.name);
    req.set_adapter(adapter);
    kiln::v1::AdapterInfo info;
    const grpc::Status status = admin_stub_->LoadAdapter(ctx.get(), req, &info);
    s.model_lifecycle = lifecycle_.Overlapped(mark);
    Finish(Op::kLoadAdapter, "load_adapter", s, status, absl::StrCat("LoadAdapter ", m.name, "/", adapter));
  } else if (roll < 0.9) {
    kiln::v1::UnloadAdapterRequest req;
    req.set_model(m.name);
    req.set_served_name(adapter);
    req.set_force(Uniform(rng) < o_.force_unload_fraction);
    kiln::v1::UnloadAdapterResponse resp;
    const grpc::Status status = admin_stub_->UnloadAdapter(ctx.get(), req, &resp);
    s.model_lifecycle = lifecycle_.Overlapped(mark);
    Finish(Op::kUnloadAdapter, req.force() ? "unload_adapter/force" : "unload_adapter", s, status,
           absl::StrCat("UnloadAdapter ", m.name, "/", adapter, req.force() ? " force" : ""));
  } else {
    kiln::v1::ListAdaptersRequest req;
    req.set_model(m.name);
    kiln::v1::ListAdaptersResponse resp;
    const grpc::Status status = admin_stub_->ListAdapters(ctx.get(), req, &resp);
    s.model_lifecycle = lifecycle_.Overlapped(mark);
    Finish(Op::kListAdapters, "list_adapters", s, status, absl::StrCat("ListAdapters ", m.name));
  }
}

void Workload::DoReload(const std::string& model) {
  lifecycle_.StartReload(model);
  {
    auto ctx = Context(absl::Seconds(o_.rpc_timeout_s));
    kiln::v1::UnloadModelRequest req;
    req.set_served_name(model);
    kiln::v1::UnloadModelResponse resp;
    Finish(Op::kUnloadModel, "unload_model", {}, admin_stub_->UnloadModel(ctx.get(), req, &resp),
           absl::StrCat("UnloadModel ", model));
  }
  {
    auto ctx = Context(absl::Seconds(o_.rpc_timeout_s));
    kiln::v1::LoadModelRequest req;
    req.set_model(model);
    req.set_kv_cache_bytes(o_.kv_cache_bytes);
    auto reader = admin_stub_->LoadModel(ctx.get(), req);
    kiln::v1::LoadModelEvent event;
    bool ready = false;
    while (reader->Read(&event)) ready = ready || event.has_ready();
    const grpc::Status status = reader->Finish();
    Finish(Op::kLoadModel, "load_model", {}, status, absl::StrCat("LoadModel ", model));
    if (status.ok() && !ready) {
      ledger_->Fail(Criterion::kG1, absl::StrCat("LoadModel ", model, ": OK without a ready event"));
    }
  }
  lifecycle_.EndReload(model);
  ++reloads_;
}

void Workload::Quiesce(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  ledger_->Checked(Criterion::kG3);
  for (const ModelSpec& m : o_.models) {
    for (;;) {
      auto ctx = Context(absl::Seconds(10));
      kiln::v1::ListAdaptersRequest req;
      req.set_model(m.name);
      kiln::v1::ListAdaptersResponse resp;
      const grpc::Status s = admin_stub_->ListAdapters(ctx.get(), req, &resp);
      Finish(Op::kListAdapters, "quiesce/list_adapters", {}, s, absl::StrCat("ListAdapters ", m.name));
      if (!s.ok() || resp.adapters_size() == 0) break;
      std::string busy;
      for (const kiln::v1::AdapterInfo& a : resp.adapters()) {
        auto uctx = Context(absl::Seconds(10));
        kiln::v1::UnloadAdapterRequest ureq;
        ureq.set_model(m.name);
        ureq.set_served_name(a.served_name());
        kiln::v1::UnloadAdapterResponse uresp;
        const grpc::Status us = admin_stub_->UnloadAdapter(uctx.get(), ureq, &uresp);
        Finish(Op::kUnloadAdapter, "quiesce/unload_adapter", {}, us,
               absl::StrCat("UnloadAdapter ", m.name, "/", a.served_name()));
        if (!us.ok()) {
          absl::StrAppend(&busy, " ", a.served_name(), " (", CodeName(us.error_code()), " ",
                          us.error_message(), "; active_requests ", a.active_requests(), ")");
        }
      }
      if (busy.empty()) continue;  // list again: nothing may be left
      if (absl::Now() > deadline) {
        ledger_->Fail(Criterion::kG3, absl::StrCat("at idle, adapters of ", m.name,
                                                   " cannot be unloaded:", busy));
        break;
      }
      absl::SleepFor(absl::Milliseconds(100));  // polling another process, bounded above
    }
  }
}

}  // namespace kiln::bench::soak
