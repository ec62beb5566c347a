#include "bench/soak/proc_sampler.h"

#include <dirent.h>

#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"

namespace kiln::bench::soak {
namespace {

// "VmRSS:	  123456 kB" -> 123456 (the number before an optional unit).
bool ParseStatusNumber(const std::string& line, const std::string& key, int64_t* out) {
  absl::string_view rest = line;
  if (!absl::ConsumePrefix(&rest, key)) return false;
  rest = absl::StripAsciiWhitespace(rest);
  std::vector<absl::string_view> parts = absl::StrSplit(rest, ' ', absl::SkipEmpty());
  return !parts.empty() && absl::SimpleAtoi(parts[0], out);
}

}  // namespace

absl::StatusOr<ProcSample> ReadProcSample(pid_t pid) {
  const std::string base = absl::StrCat("/proc/", pid);
  std::ifstream status(base + "/status");
  if (!status) return absl::NotFoundError(absl::StrCat(base, "/status is not readable"));
  ProcSample s;
  bool have_rss = false;
  bool have_threads = false;
  for (std::string line; std::getline(status, line);) {
    int64_t v = 0;
    if (ParseStatusNumber(line, "VmRSS:", &v)) {
      s.rss_bytes = v * 1024;
      have_rss = true;
    } else if (ParseStatusNumber(line, "Threads:", &v)) {
      s.threads = v;
      have_threads = true;
    }
  }
  if (!have_rss || !have_threads) {
    return absl::NotFoundError(absl::StrCat(base, "/status has no VmRSS/Threads (exited?)"));
  }
  DIR* dir = opendir((base + "/fd").c_str());
  if (dir == nullptr) return absl::NotFoundError(absl::StrCat(base, "/fd is not readable"));
  while (dirent* entry = readdir(dir)) {
    if (entry->d_name[0] != '.') ++s.fds;
  }
  closedir(dir);
  return s;
}

ProcSampler::ProcSampler(pid_t pid, absl::Duration interval)
    : pid_(pid), interval_(interval), start_(absl::Now()), thread_([this] { Loop(); }) {}

ProcSampler::~ProcSampler() {
  stop_.Notify();
  thread_.join();
}

void ProcSampler::SetPhase(const std::string& phase) {
  absl::MutexLock lock(&mu_);
  phase_ = phase;
}

absl::StatusOr<ProcSample> ProcSampler::SampleNow() {
  absl::StatusOr<ProcSample> s = ReadProcSample(pid_);
  if (s.ok()) Record(*s);
  return s;
}

std::vector<ProcSample> ProcSampler::samples() const {
  absl::MutexLock lock(&mu_);
  return samples_;
}

void ProcSampler::Record(ProcSample s) {
  s.t_s = absl::ToDoubleSeconds(absl::Now() - start_);
  absl::MutexLock lock(&mu_);
  s.phase = phase_;
  samples_.push_back(std::move(s));
}

void ProcSampler::Loop() {
  // The interval is a sampling period, not synchronization: stop_ ends the wait at once.
  while (!stop_.WaitForNotificationWithTimeout(interval_)) {
    absl::StatusOr<ProcSample> s = ReadProcSample(pid_);
    if (s.ok()) Record(*s);
  }
}

}  // namespace kiln::bench::soak
