#include "kernels/checks/gemm_checks.h"

namespace kiln::kernels::checks {}  // namespace kiln::kernels::checks
