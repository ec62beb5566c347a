// cuBLASLt: version and an fp32 GEMM self-test. Only CUDA headers are included here.
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "kernels/cuda/cuda_blas.h"

namespace kiln::kernels::cuda {
namespace {

bool Ok(cudaError_t e, const char* what, std::string* error) {
  if (e == cudaSuccess) return true;
  *error = std::string(what) + ": " + cudaGetErrorString(e);
  return false;
}

bool Ok(cublasStatus_t s, const char* what, std::string* error) {
  if (s == CUBLAS_STATUS_SUCCESS) return true;
  *error = std::string(what) + ": cublas status " + std::to_string(static_cast<int>(s));
  return false;
}

// Releases everything GemmSelfTest acquired, in reverse order, whatever path it leaves by.
struct GemmResources {
  cublasLtHandle_t lt = nullptr;
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t la = nullptr, lb = nullptr, lc = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  float *a = nullptr, *b = nullptr, *c = nullptr;
  void* workspace = nullptr;
  ~GemmResources() {
    cudaFree(workspace);
    cudaFree(c);
    cudaFree(b);
    cudaFree(a);
    if (pref != nullptr) cublasLtMatmulPreferenceDestroy(pref);
    if (lc != nullptr) cublasLtMatrixLayoutDestroy(lc);
    if (lb != nullptr) cublasLtMatrixLayoutDestroy(lb);
    if (la != nullptr) cublasLtMatrixLayoutDestroy(la);
    if (op != nullptr) cublasLtMatmulDescDestroy(op);
    if (lt != nullptr) cublasLtDestroy(lt);
  }
};

}  // namespace

size_t CublasLtVersion() { return cublasLtGetVersion(); }

bool GemmSelfTest(int index, int m, int n, int k, std::string* error) {
  if (!Ok(cudaSetDevice(index), "cudaSetDevice", error)) return false;
  // Column-major throughout: A is m x k, B is k x n, C is m x n.
  std::vector<float> ha(static_cast<size_t>(m) * k), hb(static_cast<size_t>(k) * n), hc(static_cast<size_t>(m) * n);
  for (size_t i = 0; i < ha.size(); ++i) ha[i] = static_cast<float>(static_cast<int>(i % 7) - 3) * 0.25f;
  for (size_t i = 0; i < hb.size(); ++i) hb[i] = static_cast<float>(static_cast<int>(i % 5) - 2) * 0.5f;
  GemmResources r;
  const size_t ws_bytes = 4u << 20;
  if (!Ok(cudaMalloc(&r.a, ha.size() * 4), "cudaMalloc", error) ||
      !Ok(cudaMalloc(&r.b, hb.size() * 4), "cudaMalloc", error) ||
      !Ok(cudaMalloc(&r.c, hc.size() * 4), "cudaMalloc", error) ||
      !Ok(cudaMalloc(&r.workspace, ws_bytes), "cudaMalloc", error) ||
      !Ok(cudaMemcpy(r.a, ha.data(), ha.size() * 4, cudaMemcpyHostToDevice), "cudaMemcpy", error) ||
      !Ok(cudaMemcpy(r.b, hb.data(), hb.size() * 4, cudaMemcpyHostToDevice), "cudaMemcpy", error)) {
    return false;
  }
  if (!Ok(cublasLtCreate(&r.lt), "cublasLtCreate", error) ||
      !Ok(cublasLtMatmulDescCreate(&r.op, CUBLAS_COMPUTE_32F, CUDA_R_32F), "MatmulDescCreate", error) ||
      !Ok(cublasLtMatrixLayoutCreate(&r.la, CUDA_R_32F, m, k, m), "LayoutCreate", error) ||
      !Ok(cublasLtMatrixLayoutCreate(&r.lb, CUDA_R_32F, k, n, k), "LayoutCreate", error) ||
      !Ok(cublasLtMatrixLayoutCreate(&r.lc, CUDA_R_32F, m, n, m), "LayoutCreate", error) ||
      !Ok(cublasLtMatmulPreferenceCreate(&r.pref), "PreferenceCreate", error) ||
      !Ok(cublasLtMatmulPreferenceSetAttribute(r.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_bytes,
                                               sizeof(ws_bytes)), "PreferenceSetAttribute", error)) {
    return false;
  }
  cublasLtMatmulHeuristicResult_t heur{};
  int found = 0;
  if (!Ok(cublasLtMatmulAlgoGetHeuristic(r.lt, r.op, r.la, r.lb, r.lc, r.lc, r.pref, 1, &heur, &found),
          "AlgoGetHeuristic", error)) {
    return false;
  }
  if (found == 0) {
    *error = "cuBLASLt found no algorithm";
    return false;
  }
  const float alpha = 1.0f, beta = 0.0f;
  if (!Ok(cublasLtMatmul(r.lt, r.op, &alpha, r.a, r.la, r.b, r.lb, &beta, r.c, r.lc, r.c, r.lc, &heur.algo,
                         r.workspace, ws_bytes, nullptr), "cublasLtMatmul", error) ||
      !Ok(cudaMemcpy(hc.data(), r.c, hc.size() * 4, cudaMemcpyDeviceToHost), "cudaMemcpy", error)) {
    return false;
  }
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < n; ++j) {
      float want = 0;
      for (int p = 0; p < k; ++p) want += ha[static_cast<size_t>(p) * m + i] * hb[static_cast<size_t>(j) * k + p];
      const float got = hc[static_cast<size_t>(j) * m + i];
      if (std::fabs(got - want) > 1e-3f) {
        char buf[160];
        std::snprintf(buf, sizeof(buf), "C[%d, %d] = %g, expected %g", i, j, got, want);
        *error = buf;
        return false;
      }
    }
  }
  return true;
}

}  // namespace kiln::kernels::cuda
