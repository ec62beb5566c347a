// Workload, client side: catalog and references, the client threads, Generate checks.
// The admin thread and the quiesce step are in workload_admin.cc.
#include "bench/soak/workload.h"

#include <algorithm>
#include <thread>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace kiln::bench::soak {
namespace {

double Uniform(std::mt19937_64& rng) { return std::uniform_real_distribution<double>(0, 1)(rng); }
int64_t Pick(std::mt19937_64& rng, int64_t lo, int64_t hi) {  // [lo, hi]
  return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
}

}  // namespace

// What one Generate stream delivered.
struct Workload::Outcome {
  std::vector<int32_t> ids;
  std::string text;
  int messages = 0;
  int finishes = 0;               // responses carrying a finish reason
  bool data_after_finish = false;
  bool invalid_utf8 = false;
  int32_t completion_tokens = -1;
  kiln::v1::FinishReason finish_reason = kiln::v1::FINISH_REASON_UNSPECIFIED;
  bool cancelled = false;          // the reader itself called TryCancel
};

Workload::Workload(WorkloadOptions options, SoakLedger* ledger)
    : o_(std::move(options)), ledger_(ledger), canceller_(std::make_unique<Canceller>()) {
  // D6: ASCII, code, CJK, emoji (4-byte UTF-8), combining marks, RTL.
  texts_ = {"Hello world",
            "The quick brown fox jumps over the lazy dog. ",
            "你好，世界 🙂 emoji 🚀🔥",
            "def f(x):\n    return x * 2\n",
            "Ünïcödé ßtrings and numbers 12345 67890",
            "e\u0301 a\u0308 \u05e9\u05dc\u05d5\u05dd \u0645\u0631\u062d\u0628\u0627",
            "System: you are a helpful assistant that answers briefly and politely. User: hi"};
  admin_channel_ = NewChannel(-1);
  admin_stub_ = kiln::v1::Kiln::NewStub(admin_channel_);
}

Workload::~Workload() = default;

std::shared_ptr<grpc::Channel> Workload::NewChannel(int index) const {
  grpc::ChannelArguments args;
  args.SetInt("kiln.soak.channel_index", index);  // distinct args: distinct connections
  args.SetMaxReceiveMessageSize(64 << 20);
  return grpc::CreateCustomChannel(o_.target, grpc::InsecureChannelCredentials(), args);
}

std::unique_ptr<grpc::ClientContext> Workload::Context(absl::Duration deadline) const {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(absl::ToChronoTime(absl::Now() + deadline));
  return ctx;
}

absl::Status Workload::Prepare(absl::Duration ready_timeout) {
  const absl::Time deadline = absl::Now() + ready_timeout;
  for (const ModelSpec& m : o_.models) {
    // kilnd is another process: polling with a deadline is the synchronization.
    for (;;) {
      auto ctx = Context(absl::Seconds(10));
      kiln::v1::GetModelRequest req;
      req.set_served_name(m.name);
      kiln::v1::ModelInfo info;
      grpc::Status s = admin_stub_->GetModel(ctx.get(), req, &info);
      if (s.ok() && info.state() == kiln::v1::MODEL_STATE_READY) {
        vocab_[m.name] = info.vocab_size();
        break;
      }
      if (absl::Now() > deadline) {
        return absl::UnavailableError(absl::StrCat(
            "model ", m.name, " not READY within the deadline: ",
            s.ok() ? kiln::v1::ModelState_Name(info.state()) : s.error_message()));
      }
      absl::SleepFor(absl::Milliseconds(100));
    }
    absl::StatusOr<std::unique_ptr<tokenizer::Tokenizer>> tok =
        tokenizer::Tokenizer::FromDirectory(o_.model_root + "/" + m.name);
    if (!tok.ok()) return tok.status();
    tokenizers_[m.name] = *std::move(tok);
  }
  std::mt19937_64 rng(o_.seed);
  for (int i = 0; i < o_.greedy_variants; ++i) {
    Variant v = RandomShape(rng, o_.models[static_cast<size_t>(i) % o_.models.size()].name);
    v.index = i;
    v.greedy = true;
    catalog_.push_back(std::move(v));
  }
  // The references: each greedy variant alone, one at a time (also the warm-up).
  for (Variant& v : catalog_) {
    const kiln::v1::GenerateRequest request = BuildRequest(v, rng);
    auto ctx = Context(absl::Seconds(o_.rpc_timeout_s));
    Outcome out;
    grpc::Status s = Stream(admin_stub_.get(), ctx.get(), request, &out, -1);
    if (!s.ok() || out.finishes != 1) {
      return absl::InternalError(absl::StrCat("reference run of variant ", v.index, " (", v.model,
                                              " adapter '", v.adapter, "'): ", CodeName(s.error_code()),
                                              " ", s.error_message(), ", finishes ", out.finishes));
    }
    std::vector<int32_t> emitted = out.ids;  // a stopping token's text is not emitted
    if (!emitted.empty() && out.finish_reason != kiln::v1::FINISH_REASON_LENGTH) emitted.pop_back();
    absl::StatusOr<std::string> decoded = tokenizers_[v.model]->Decode(emitted, false);
    if (!decoded.ok() || *decoded != out.text) {
      ledger_->Fail(Criterion::kG2, absl::StrCat("reference of variant ", v.index,
                                                 ": streamed text != offline decode of its ids"));
    }
    v.ref_ids = out.ids;
    v.ref_text = out.text;
  }
  return absl::OkStatus();
}

Variant Workload::RandomShape(std::mt19937_64& rng, const std::string& model) const {
  Variant v;
  v.model = model;
  for (const ModelSpec& m : o_.models) {
    if (m.name == model && !m.adapters.empty() && Uniform(rng) < o_.adapter_fraction) {
      v.adapter = m.adapters[static_cast<size_t>(Pick(rng, 0, static_cast<int64_t>(m.adapters.size()) - 1))];
    }
  }
  if (Uniform(rng) < 0.5) {
    // One text: the longest is ~60 tokens, so prompt + max_new_tokens fits gpt2_tiny's 128.
    v.text = texts_[static_cast<size_t>(Pick(rng, 0, static_cast<int64_t>(texts_.size()) - 1))];
  } else {
    const int64_t vocab = vocab_.at(model);
    const int n = static_cast<int>(Pick(rng, 1, 40));
    for (int k = 0; k < n; ++k) v.ids.push_back(static_cast<int32_t>(Pick(rng, 3, vocab - 1)));
  }
  v.max_new_tokens = static_cast<int32_t>(Pick(rng, 1, o_.max_new_tokens));
  v.ignore_eos = Uniform(rng) < 0.7;
  return v;
}

Variant Workload::SampledVariant(std::mt19937_64& rng) const {
  Variant v = RandomShape(
      rng, o_.models[static_cast<size_t>(Pick(rng, 0, static_cast<int64_t>(o_.models.size()) - 1))].name);
  v.greedy = false;
  return v;
}

kiln::v1::GenerateRequest Workload::BuildRequest(const Variant& v, std::mt19937_64& rng) const {
  kiln::v1::GenerateRequest r;
  r.set_model(v.model);
  r.set_adapter(v.adapter);
  if (v.ids.empty()) {
    r.set_text(v.text);
  } else {
    for (int32_t id : v.ids) r.mutable_token_ids()->add_ids(id);
  }
  if (v.greedy) {
    r.mutable_sampling()->set_temperature(0);
  } else {
    r.mutable_sampling()->set_temperature(static_cast<float>(0.5 + Uniform(rng)));
    if (Uniform(rng) < 0.5) r.mutable_sampling()->set_top_k(static_cast<int32_t>(Pick(rng, 1, 50)));
    if (Uniform(rng) < 0.5) r.mutable_sampling()->set_top_p(static_cast<float>(0.5 + Uniform(rng) / 2));
    r.mutable_sampling()->set_seed(rng());
  }
  r.mutable_stopping()->set_max_new_tokens(v.max_new_tokens);
  r.mutable_stopping()->set_ignore_eos(v.ignore_eos);
  return r;
}

grpc::Status Workload::Stream(kiln::v1::Kiln::Stub* stub, grpc::ClientContext* ctx,
                              const kiln::v1::GenerateRequest& request, Outcome* out,
                              int cancel_after) {
  std::unique_ptr<grpc::ClientReader<kiln::v1::GenerateResponse>> reader =
      stub->Generate(ctx, request);
  if (cancel_after == 0) {
    ctx->TryCancel();
    out->cancelled = true;
  }
  kiln::v1::GenerateResponse response;
  while (reader->Read(&response)) {
    ++out->messages;
    if (out->finishes > 0) out->data_after_finish = true;
    if (!IsValidUtf8(response.text())) out->invalid_utf8 = true;
    out->ids.insert(out->ids.end(), response.token_ids().begin(), response.token_ids().end());
    out->text += response.text();
    if (response.finish_reason() != kiln::v1::FINISH_REASON_UNSPECIFIED) {
      ++out->finishes;
      out->finish_reason = response.finish_reason();
      out->completion_tokens = response.usage().completion_tokens();
    }
    if (cancel_after > 0 && out->messages >= cancel_after && !out->cancelled) {
      ctx->TryCancel();
      out->cancelled = true;
    }
  }
  return reader->Finish();
}

void Workload::DoGenerate(std::mt19937_64& rng, kiln::v1::Kiln::Stub* stub, const std::string& tag) {
  const bool greedy = Uniform(rng) < o_.greedy_fraction;
  const Variant v = greedy ? catalog_[static_cast<size_t>(Pick(rng, 0, static_cast<int64_t>(catalog_.size()) - 1))]
                           : SampledVariant(rng);
  kiln::v1::GenerateRequest request = BuildRequest(v, rng);
  request.set_request_id(tag);
  OpSituation situation;
  // Cancel modes: before the first read (0), after k reads (k >= 1), on a timer (-2).
  int cancel_after = -1;
  absl::Duration deadline = absl::Seconds(o_.rpc_timeout_s);
  const double roll = Uniform(rng);
  if (roll < o_.cancel_fraction) {
    cancel_after = Uniform(rng) < 0.3 ? -2 : static_cast<int>(Pick(rng, 0, 4));
  } else if (roll < o_.cancel_fraction + o_.deadline_fraction) {
    situation.short_deadline = true;
    deadline = absl::Milliseconds(Pick(rng, 1, 80));
  }
  auto ctx = Context(deadline);
  int64_t timer = -1;
  if (cancel_after == -2) {
    timer = canceller_->Schedule(ctx.get(), absl::Now() + absl::Milliseconds(Pick(rng, 0, 150)));
  }
  const Lifecycle::Mark mark = lifecycle_.Begin(v.model);
  Outcome out;
  const grpc::Status status = Stream(stub, ctx.get(), request, &out, cancel_after);
  if (timer >= 0 && canceller_->Remove(timer)) out.cancelled = true;
  situation.client_cancelled = out.cancelled;
  situation.model_lifecycle = lifecycle_.Overlapped(mark);
  const std::string kind = absl::StrCat("generate/", v.greedy ? "greedy" : "sampled", "/",
                                        v.ids.empty() ? "text" : "ids", v.adapter.empty() ? "" : "+adapter");
  const std::string what = absl::StrCat("Generate ", tag, " model=", v.model, " adapter='", v.adapter,
                                        "' variant=", v.index, v.greedy ? " greedy" : " sampled",
                                        situation.client_cancelled ? " cancelled" : "",
                                        situation.short_deadline ? " short-deadline" : "",
                                        situation.model_lifecycle ? " during-reload" : "");
  Finish(Op::kGenerate, kind, situation, status, what, static_cast<int64_t>(out.ids.size()));
  if (out.data_after_finish || out.finishes > 1) {
    ledger_->Fail(Criterion::kG1, absl::StrCat(what, ": ", out.finishes,
                                               " finish responses / data after the finish"));
  }
  if (out.invalid_utf8) ledger_->Fail(Criterion::kG2, absl::StrCat(what, ": a text chunk is not valid UTF-8"));
  if (status.ok()) CheckGenerate(v, request, out, what);
}

void Workload::CheckGenerate(const Variant& v, const kiln::v1::GenerateRequest& request,
                             const Outcome& out, const std::string& what) {
  ledger_->Checked(Criterion::kG2);
  if (out.finishes != 1) {
    ledger_->Fail(Criterion::kG1, absl::StrCat(what, ": OK without exactly one finish response (",
                                               out.finishes, ")"));
    return;
  }
  if (out.completion_tokens != static_cast<int32_t>(out.ids.size())) {
    ledger_->Fail(Criterion::kG2, absl::StrCat(what, ": usage.completion_tokens ", out.completion_tokens,
                                               " != ", out.ids.size(), " streamed ids"));
  }
  if (request.stopping().ignore_eos() && out.ids.size() != static_cast<size_t>(v.max_new_tokens)) {
    ledger_->Fail(Criterion::kG2, absl::StrCat(what, ": ", out.ids.size(), " tokens with ignore_eos, max_new_tokens ",
                                               v.max_new_tokens));
  }
  // The text of a token that stops generation (eos, a stop token id) is not emitted
  // (engine/sample/stop_checker.h), though its id is streamed.
  std::vector<int32_t> emitted = out.ids;
  if (!emitted.empty() && (out.finish_reason == kiln::v1::FINISH_REASON_EOS ||
                           out.finish_reason == kiln::v1::FINISH_REASON_STOP)) {
    emitted.pop_back();
  }
  absl::StatusOr<std::string> decoded = tokenizers_.at(v.model)->Decode(emitted, false);
  if (!decoded.ok() || *decoded != out.text) {
    ledger_->Fail(Criterion::kG2, absl::StrCat(what, ": streamed text \"", absl::CEscape(out.text),
                                               "\" != offline decode \"",
                                               absl::CEscape(decoded.ok() ? *decoded : decoded.status().ToString()),
                                               "\" of its ids [", absl::StrJoin(out.ids, ","), "] (finish ",
                                               kiln::v1::FinishReason_Name(out.finish_reason), "); request {",
                                               request.ShortDebugString(), "}"));
  }
  if (v.greedy && (out.ids != v.ref_ids || out.text != v.ref_text)) {
    ledger_->Fail(Criterion::kG2, absl::StrCat(what, ": greedy ids [", absl::StrJoin(out.ids, ","),
                                               "] != reference [", absl::StrJoin(v.ref_ids, ","), "]",
                                               out.text == v.ref_text ? "" : " (text differs too)"));
  }
}

void Workload::DoTokenize(std::mt19937_64& rng, kiln::v1::Kiln::Stub* stub) {
  const std::string& model = o_.models[static_cast<size_t>(Pick(rng, 0, static_cast<int64_t>(o_.models.size()) - 1))].name;
  kiln::v1::TokenizeRequest req;
  req.set_model(model);
  req.set_text(texts_[static_cast<size_t>(Pick(rng, 0, static_cast<int64_t>(texts_.size()) - 1))]);
  req.set_add_special_tokens(Uniform(rng) < 0.5);
  auto ctx = Context(absl::Seconds(o_.rpc_timeout_s));
  const Lifecycle::Mark mark = lifecycle_.Begin(model);
  kiln::v1::TokenizeResponse resp;
  const grpc::Status s = stub->Tokenize(ctx.get(), req, &resp);
  OpSituation situation;
  situation.model_lifecycle = lifecycle_.Overlapped(mark);
  Finish(Op::kTokenize, "tokenize", situation, s, absl::StrCat("Tokenize model=", model));
  if (!s.ok()) return;
  absl::StatusOr<std::vector<int32_t>> expected = tokenizers_.at(model)->Encode(req.text(), req.add_special_tokens());
  if (!expected.ok() || std::vector<int32_t>(resp.token_ids().begin(), resp.token_ids().end()) != *expected) {
    ledger_->Fail(Criterion::kG2, absl::StrCat("Tokenize model=", model, " '", req.text(),
                                               "': ids differ from the offline tokenizer"));
  }
}

void Workload::DoInfo(std::mt19937_64& rng, kiln::v1::Kiln::Stub* stub,
                      const std::shared_ptr<grpc::Channel>& channel) {
  auto ctx = Context(absl::Seconds(o_.rpc_timeout_s));
  const int which = static_cast<int>(Pick(rng, 0, 2));
  if (which == 0) {
    kiln::v1::ListModelsResponse resp;
    Finish(Op::kListModels, "list_models", {}, stub->ListModels(ctx.get(), {}, &resp), "ListModels");
  } else if (which == 1) {
    kiln::v1::ServerInfo resp;
    Finish(Op::kGetServerInfo, "get_server_info", {}, stub->GetServerInfo(ctx.get(), {}, &resp),
           "GetServerInfo");
  } else {
    grpc::health::v1::Health::Stub health(channel);
    grpc::health::v1::HealthCheckResponse resp;
    const grpc::Status s = health.Check(ctx.get(), {}, &resp);
    Finish(Op::kHealthCheck, "health_check", {}, s, "Health.Check('')");
    if (s.ok() && resp.status() != grpc::health::v1::HealthCheckResponse::SERVING) {
      ledger_->Fail(Criterion::kG6, absl::StrCat("Health.Check('') under load: ",
                                                 grpc::health::v1::HealthCheckResponse::ServingStatus_Name(resp.status())));
    }
  }
}

void Workload::ClientLoop(int index) {
  std::mt19937_64 rng(o_.seed * 1000003 + static_cast<uint64_t>(index) + 1);
  const std::shared_ptr<grpc::Channel> channel = NewChannel(index);
  const std::unique_ptr<kiln::v1::Kiln::Stub> stub = kiln::v1::Kiln::NewStub(channel);
  int64_t n = 0;
  while (absl::Now() < end_ && issued_.fetch_add(1) < o_.max_requests) {
    const double roll = Uniform(rng);
    if (roll < o_.tokenize_fraction) {
      DoTokenize(rng, stub.get());
    } else if (roll < o_.tokenize_fraction + o_.info_fraction) {
      DoInfo(rng, stub.get(), channel);
    } else {
      DoGenerate(rng, stub.get(), absl::StrCat("soak-", o_.seed, "-", index, "-", n));
    }
    ++n;
  }
}

void Workload::Run() {
  end_ = absl::Now() + absl::Seconds(o_.duration_s);
  std::vector<std::thread> threads;
  for (int i = 0; i < o_.threads; ++i) threads.emplace_back([this, i] { ClientLoop(i); });
  std::thread admin([this] { AdminLoop(); });
  for (std::thread& t : threads) t.join();
  admin.join();
}

}  // namespace kiln::bench::soak
