// Samples a process's resident memory, open file descriptors and threads from /proc
// (criteria G4 and G5 of the soak): VmRSS and Threads from /proc/<pid>/status, the fd count
// from the entries of /proc/<pid>/fd. A ProcSampler thread takes one sample per interval and
// tags it with the phase the soak was in.
//
// Thread-safety: ProcSampler's methods may be called from any thread.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

namespace kiln::bench::soak {

struct ProcSample {
  double t_s = 0;  // seconds since the sampler started
  std::string phase;
  int64_t rss_bytes = 0;
  int64_t fds = 0;
  int64_t threads = 0;
};

// One sample now (t_s and phase left empty). NOT_FOUND when the process is gone.
absl::StatusOr<ProcSample> ReadProcSample(pid_t pid);

class ProcSampler {
 public:
  ProcSampler(pid_t pid, absl::Duration interval);
  ~ProcSampler();  // stops the thread
  ProcSampler(const ProcSampler&) = delete;
  ProcSampler& operator=(const ProcSampler&) = delete;

  // Samples taken from now on carry `phase`.
  void SetPhase(const std::string& phase);
  // Takes one sample at once (besides the periodic ones) and returns it.
  absl::StatusOr<ProcSample> SampleNow();
  std::vector<ProcSample> samples() const;

 private:
  void Loop();
  void Record(ProcSample s);

  const pid_t pid_;
  const absl::Duration interval_;
  const absl::Time start_;
  mutable absl::Mutex mu_;
  std::string phase_ ABSL_GUARDED_BY(mu_);
  std::vector<ProcSample> samples_ ABSL_GUARDED_BY(mu_);
  absl::Notification stop_;
  std::thread thread_;
};

}  // namespace kiln::bench::soak
