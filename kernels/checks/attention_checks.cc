#include "kernels/checks/attention_checks.h"

namespace kiln::kernels::checks {}  // namespace kiln::kernels::checks
