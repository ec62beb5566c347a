#include "kernels/checks/elementwise_checks.h"

namespace kiln::kernels::checks {}  // namespace kiln::kernels::checks
