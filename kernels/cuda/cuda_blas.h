// cuBLASLt entry points behind a plain C++ header (no CUDA types). Linking this library
// loads libcublasLt (see cuda_device.cu).
#pragma once

#include <cstddef>
#include <string>

namespace kiln::kernels::cuda {

// cublasLtGetVersion(): works without a GPU; proves libcublasLt loads.
size_t CublasLtVersion();
// Runs C[m, n] = A[m, k] · B[k, n] in fp32 through cuBLASLt on device `index` with
// deterministic inputs and compares with a host loop (max-abs 1e-3). True on success.
bool GemmSelfTest(int index, int m, int n, int k, std::string* error);

}  // namespace kiln::kernels::cuda
