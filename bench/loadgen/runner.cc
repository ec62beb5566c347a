#include "bench/loadgen/runner.h"

#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <deque>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "bench/grpc_code_name.h"
#include "grpcpp/grpcpp.h"
#include "kiln/v1/kiln.grpc.pb.h"

namespace kiln::bench {
namespace {

using Clock = std::chrono::steady_clock;

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }


class Runner;

// One Generate stream. Owned by the Runner; the record outlives it.
class Call final : public grpc::ClientReadReactor<v1::GenerateResponse> {
 public:
  Call(Runner* runner, RequestRecord* record, v1::GenerateRequest request, double timeout_s)
      : runner_(runner), record_(record), request_(std::move(request)) {
    ctx_.set_deadline(std::chrono::system_clock::now() +
                      std::chrono::microseconds(static_cast<int64_t>(timeout_s * 1e6)));
  }
  void Start(v1::Kiln::Stub* stub) {
    start_ = Clock::now();
    stub->async()->Generate(&ctx_, &request_, this);
    StartRead(&response_);
    StartCall();
  }
  void Cancel() {
    record_->cut_off = true;  // written before TryCancel; read after OnDone
    ctx_.TryCancel();
  }
  void OnReadDone(bool ok) override {
    if (!ok) return;  // OnDone follows
    const auto now = Clock::now();
    const int n = response_.token_ids_size();
    if (n > 0) {
      if (record_->ttft_ms < 0) {
        record_->ttft_ms = Ms(now - start_);
      } else {
        record_->itl_ms.push_back(Ms(now - last_));
      }
      last_ = now;
      record_->output_tokens += n;
      ++record_->messages;
    }
    StartRead(&response_);
  }
  void OnDone(const grpc::Status& status) override;
  Clock::time_point end() const { return end_; }

 private:
  Runner* const runner_;
  RequestRecord* const record_;
  v1::GenerateRequest request_;
  v1::GenerateResponse response_;
  grpc::ClientContext ctx_;
  Clock::time_point start_;
  Clock::time_point last_;
  Clock::time_point end_;
};

class Runner {
 public:
  explicit Runner(const LoadgenOptions& o) : o_(o), rng_(o.seed) {
    const int64_t expected = o.concurrency > 0 ? o.concurrency : std::max(o.max_concurrency, 64);
    const int channels = o.channels > 0 ? o.channels
                                        : static_cast<int>(std::max<int64_t>(1, (expected + 63) / 64));
    for (int i = 0; i < channels; ++i) {
      grpc::ChannelArguments args;
      args.SetInt("kiln.bench.channel_index", i);  // distinct args → distinct connections
      args.SetMaxReceiveMessageSize(64 << 20);
      auto channel = grpc::CreateCustomChannel(o.target, grpc::InsecureChannelCredentials(), args);
      stubs_.push_back(v1::Kiln::NewStub(channel));
    }
  }

  absl::StatusOr<Report> Run() {
    // Connect first so connection setup is not charged to the first request's TTFT.
    // With --wait_ready_s, polls (an external process: polling with a deadline is the only
    // synchronization available) until the model is READY, e.g. while kilnd preloads.
    const absl::Time ready_deadline = absl::Now() + absl::Seconds(o_.wait_ready_s);
    for (auto& stub : stubs_) {
      for (;;) {
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
        v1::GetModelRequest req;
        req.set_served_name(o_.model);
        v1::ModelInfo info;
        grpc::Status s = stub->GetModel(&ctx, req, &info);
        if (s.ok() && info.state() == v1::MODEL_STATE_READY) break;
        if (absl::Now() >= ready_deadline) {
          return absl::UnavailableError(absl::StrCat(
              "GetModel(", o_.model, ") on ", o_.target, ": ",
              s.ok() ? absl::StrCat("state ", v1::ModelState_Name(info.state()))
                     : absl::StrCat(CodeName(s.error_code()), " ", s.error_message())));
        }
        absl::SleepFor(absl::Milliseconds(200));
      }
    }
    for (int i = 0; i < o_.warmup; ++i) {
      Launch(/*measured=*/false);
      WaitInFlightBelow(1, absl::InfiniteFuture());
    }
    absl::StatusOr<ServerCpu> cpu_start;
    if (o_.server_pid > 0) {
      cpu_start = ReadProcessCpu(o_.server_pid, o_.exclude_threads);
      if (!cpu_start.ok()) return cpu_start.status();
    }
    Report report_meta;
    report_meta.load_avg_start = ReadLoadAverage();
    const auto t0 = Clock::now();
    const absl::Time issue_end = o_.duration_s > 0
                                     ? absl::Now() + absl::Seconds(o_.duration_s)
                                     : absl::InfiniteFuture();
    std::exponential_distribution<double> gap(std::isinf(o_.request_rate) ? 1.0 : o_.request_rate);
    auto next_arrival = t0;
    for (int64_t i = 0; i < o_.num_requests; ++i) {
      if (absl::Now() >= issue_end) break;
      if (o_.rate_mode()) {
        if (!std::isinf(o_.request_rate)) {
          std::this_thread::sleep_until(next_arrival);
          next_arrival += std::chrono::duration_cast<Clock::duration>(
              std::chrono::duration<double>(gap(rng_)));
        }
        if (o_.max_concurrency > 0 && !WaitInFlightBelow(o_.max_concurrency, issue_end)) break;
      } else if (!WaitInFlightBelow(o_.concurrency, issue_end)) {
        break;
      }
      Launch(/*measured=*/true);
    }
    if (!WaitInFlightBelow(1, absl::Now() + absl::Seconds(o_.grace_s))) {
      absl::MutexLock lock(&mu_);
      for (Call* call : in_flight_) call->Cancel();
    }
    WaitInFlightBelow(1, absl::InfiniteFuture());
    auto t_end = t0;
    {
      absl::MutexLock lock(&mu_);
      for (const auto& call : measured_calls_) t_end = std::max(t_end, call->end());
    }
    Report report = BuildReport(std::vector<RequestRecord>(records_.begin(), records_.end()),
                                std::chrono::duration<double>(t_end - t0).count());
    report.load_avg_start = report_meta.load_avg_start;
    report.load_avg_end = ReadLoadAverage();
    if (o_.server_pid > 0) {
      absl::StatusOr<ServerCpu> cpu_end = ReadProcessCpu(o_.server_pid, o_.exclude_threads);
      if (cpu_end.ok()) {
        report.server_cpu.measured = true;
        report.server_cpu.total_s = cpu_end->total_s - cpu_start->total_s;
        report.server_cpu.excluded_s = cpu_end->excluded_s - cpu_start->excluded_s;
      }
    }
    return report;
  }

  void CallDone(Call* call) {
    absl::MutexLock lock(&mu_);
    in_flight_.erase(std::find(in_flight_.begin(), in_flight_.end(), call));
  }

 private:
  void Launch(bool measured) {
    v1::GenerateRequest req;
    req.set_model(o_.model);
    RequestRecord* record;
    {
      absl::MutexLock lock(&mu_);
      if (measured) {
        records_.emplace_back();
        record = &records_.back();
      } else {
        warmup_records_.emplace_back();
        record = &warmup_records_.back();
      }
    }
    req.set_adapter(SampleAdapter(o_.adapters, rng_));
    const int32_t prompt_len = o_.prompt_len.Sample(rng_);
    std::uniform_int_distribution<int32_t> id(o_.min_token_id, o_.vocab_size - 1);
    for (int32_t i = 0; i < prompt_len; ++i) req.mutable_token_ids()->add_ids(id(rng_));
    record->prompt_tokens = prompt_len;
    req.mutable_sampling()->set_temperature(0);
    req.mutable_stopping()->set_max_new_tokens(o_.output_len.Sample(rng_));
    req.mutable_stopping()->set_ignore_eos(true);
    auto call = std::make_unique<Call>(this, record, std::move(req), o_.timeout_s);
    Call* raw = call.get();
    v1::Kiln::Stub* stub = stubs_[launched_++ % stubs_.size()].get();
    {
      absl::MutexLock lock(&mu_);
      in_flight_.push_back(raw);
      (measured ? measured_calls_ : warmup_calls_).push_back(std::move(call));
    }
    raw->Start(stub);
  }

  // True once fewer than `n` calls are in flight; false if `deadline` passed first.
  bool WaitInFlightBelow(size_t n, absl::Time deadline) {
    absl::MutexLock lock(&mu_);
    auto below = [this, n]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return in_flight_.size() < n; };
    return mu_.AwaitWithDeadline(absl::Condition(&below), deadline);
  }

  const LoadgenOptions& o_;
  std::mt19937_64 rng_;
  std::vector<std::unique_ptr<v1::Kiln::Stub>> stubs_;
  size_t launched_ = 0;
  absl::Mutex mu_;
  std::deque<RequestRecord> records_ ABSL_GUARDED_BY(mu_);  // deque: stable addresses
  std::deque<RequestRecord> warmup_records_ ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<Call>> measured_calls_ ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<Call>> warmup_calls_ ABSL_GUARDED_BY(mu_);
  std::vector<Call*> in_flight_ ABSL_GUARDED_BY(mu_);
};

void Call::OnDone(const grpc::Status& status) {
  end_ = Clock::now();
  record_->e2e_ms = Ms(end_ - start_);
  record_->status = CodeName(status.error_code());
  runner_->CallDone(this);  // the last touch: the runner may read the record from now on
}

}  // namespace

namespace {

// utime + stime (clock ticks) and comm of a /proc stat file.
bool ReadStat(const std::string& path, std::string* comm, double* seconds) {
  std::ifstream in(path);
  std::stringstream buf;
  buf << in.rdbuf();
  const std::string text = buf.str();
  const size_t open = text.find('(');
  const size_t close = text.rfind(')');
  if (open == std::string::npos || close == std::string::npos || close < open) return false;
  *comm = text.substr(open + 1, close - open - 1);
  std::vector<std::string> fields = absl::StrSplit(text.substr(close + 2), ' ');
  // After ") ": field 3 (state) is index 0, so utime (14) is index 11 and stime (15) 12.
  if (fields.size() < 13) return false;
  double utime = 0;
  double stime = 0;
  if (!absl::SimpleAtod(fields[11], &utime) || !absl::SimpleAtod(fields[12], &stime)) return false;
  *seconds = (utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
  return true;
}

}  // namespace

absl::StatusOr<ServerCpu> ReadProcessCpu(int64_t pid, const std::string& exclude_prefix) {
  ServerCpu cpu;
  std::string comm;
  const std::string base = absl::StrCat("/proc/", pid);
  if (!ReadStat(base + "/stat", &comm, &cpu.total_s)) {
    return absl::NotFoundError(absl::StrCat("--server_pid=", pid, ": /proc/", pid,
                                            "/stat is not readable"));
  }
  cpu.measured = true;
  if (exclude_prefix.empty()) return cpu;
  DIR* dir = opendir((base + "/task").c_str());
  if (dir == nullptr) return cpu;
  while (dirent* entry = readdir(dir)) {
    if (entry->d_name[0] == '.') continue;
    double seconds = 0;
    if (ReadStat(absl::StrCat(base, "/task/", entry->d_name, "/stat"), &comm, &seconds) &&
        absl::StartsWith(comm, exclude_prefix)) {
      cpu.excluded_s += seconds;
    }
  }
  closedir(dir);
  return cpu;
}

absl::StatusOr<Report> RunLoad(const LoadgenOptions& options) {
  Runner runner(options);
  absl::StatusOr<Report> report = runner.Run();
  if (!report.ok()) return report;
  report->label = options.label;
  report->target = options.target;
  report->model = options.model;
  report->mode = options.rate_mode()
                     ? absl::StrCat("rate=", options.request_rate,
                                    options.max_concurrency > 0
                                        ? absl::StrCat(" max_concurrency=", options.max_concurrency)
                                        : "")
                     : absl::StrCat("concurrency=", options.concurrency);
  report->prompt_len = options.prompt_len.ToString();
  report->output_len = options.output_len.ToString();
  report->argv = options.argv;
  report->nproc = static_cast<int>(std::thread::hardware_concurrency());
  return report;
}

}  // namespace kiln::bench
