// CUDA device query and a cuBLASLt self-test, behind a plain C++ header: no CUDA, absl or other
// heavy types here, so .cc code can call it and the .cu stays quick to compile (toolchain.md
// §7, pitfall 13). The full CUDA Backend is a later piece of work.
//
// Errors come back as a message in *error (empty on success); nothing here throws or aborts.
// Thread-safety: all functions may be called from any thread.
#pragma once

#include <cstddef>
#include <string>

namespace kiln::kernels::cuda {

struct DeviceInfo {
  int index = 0;
  std::string name;
  int compute_major = 0;
  int compute_minor = 0;
  size_t free_bytes = 0;
  size_t total_bytes = 0;
};

// Visible devices; 0 with *error set when the driver/runtime is unusable (e.g. no libcuda).
int DeviceCount(std::string* error);
// Name, compute capability and free/total memory of device `index`; false with *error set.
bool QueryDevice(int index, DeviceInfo* info, std::string* error);
}  // namespace kiln::kernels::cuda
