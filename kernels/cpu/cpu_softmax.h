// Internal to kernels/cpu: the exponentials of attention's softmax, the part of a CPU
// attention step that a compiler cannot vectorize (a libm call per element). A flash-style tile
// evaluates one exp per score, so exp, not the dot products, bounded prefill attention.
#pragma once

#include <cstdint>

namespace kiln::kernels::cpu {

// x[i] = exp(x[i] - shift) for i in [0, n); returns the sum of the new values, added in a
// fixed order for a given n. On AVX2+FMA machines eight lanes at a time with a degree-6
// polynomial after range reduction by ln 2 (max error 2 ulp against a correctly rounded exp,
// tested against std::exp); elsewhere std::exp. NaN stays NaN; results below 2^-126 flush to 0
// (they cannot change a sum that contains exp(0) = 1).
float ExpShiftedSum(float* x, int64_t n, float shift);

}  // namespace kiln::kernels::cpu
