// CUDA Matmul: out[m, n] = x[m, k] · w[n, k]^T (+ bias), fp32 accumulation, and the GemmEngine
// (cuBLASLt handle + plan cache) that the dense and quantized paths share.
//
// Paths:
//  - m <= kGemvMaxRows (decode): our GEMV kernel (cuda_gemm_kernels.cu) reads w in its dtype,
//    exactly the CPU reference's math (fp32 x times the converted weight, fp32 accumulation).
//  - larger m, F32 weights: cuBLASLt fp32 (CUBLAS_COMPUTE_32F, which never uses TF32), so
//    parity with the CPU's sgemm stays well under 1e-3 relative.
//  - larger m, F16/BF16 weights: x is converted to w's dtype in the workspace and cuBLASLt runs
//    with fp32 compute and fp32 output. The CPU reference converts nothing (it multiplies fp32
//    x by the widened weight), so rounding x to bf16/fp16 moves results by about that dtype's
//    epsilon: inside the per-dtype tolerance, and what every GPU engine does for prefill.
// Bias: cuBLASLt's BIAS epilogue for an aligned F32 bias, else a small kernel afterwards.
#include <cublasLt.h>

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "kernels/checks/gemm_checks.h"
#include "kernels/cuda/cuda_gemm_internal.h"
#include "kernels/cuda/cuda_gemm_launch.h"
#include "kernels/cuda/cuda_ops.h"

namespace kiln::kernels::cuda {
namespace {

// More distinct shapes than this (prefill lengths vary) and the cache starts over.
constexpr size_t kMaxPlans = 4096;

absl::Status LtCheck(cublasStatus_t s, const char* what) {
  if (s == CUBLAS_STATUS_SUCCESS) return absl::OkStatus();
  if (s == CUBLAS_STATUS_NOT_SUPPORTED) {  // a shape/alignment/epilogue cuBLASLt cannot do
    return absl::UnimplementedError(absl::StrCat("cuBLASLt ", what, ": not supported"));
  }
  return absl::InternalError(absl::StrCat("cuBLASLt ", what, ": ", cublasLtGetStatusName(s), " (",
                                          cublasLtGetStatusString(s), ")"));
}

cudaDataType_t LtType(GemmDType t) {
  switch (t) {
    case GemmDType::kF16: return CUDA_R_16F;
    case GemmDType::kBF16: return CUDA_R_16BF;
    case GemmDType::kF32: return CUDA_R_32F;
  }
  return CUDA_R_32F;
}

// Largest power of two <= 256 dividing the address: the alignment cuBLASLt may assume.
uint32_t AlignmentOf(const void* p) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  uint32_t align = 256;
  while (align > 1 && a % align != 0) align >>= 1;
  return align;
}

// out = x · w^T (+ bias) through the GEMV kernel, kGemvMaxRows rows per launch.
absl::Status GemvRows(CudaContext& ctx, const TensorView& x, const TensorView& w, const void* bias, GemmDType bt,
                      const TensorView& out) {
  const int64_t m = x.dim(0), k = x.dim(1), n = w.dim(0);
  for (int64_t r0 = 0; r0 < m; r0 += kGemvMaxRows) {
    const int64_t rows = std::min<int64_t>(kGemvMaxRows, m - r0);
    if (auto s = CudaCheck(LaunchGemv(x.as<float>() + r0 * k, w.data(), ToGemmDType(w.dtype()), bias, bt,
                                      out.as<float>() + r0 * n, rows, n, k, ctx.stream),
                           "launch Gemv(Matmul)");
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

}  // namespace

// A cuBLASLt handle and one plan (descriptor, layouts, heuristic's algorithm) per shape,
// created on first use. Used only under the backend's op lock (CudaContext contract).
class GemmEngine {
 public:
  explicit GemmEngine(cublasLtHandle_t handle) : handle_(handle) {}
  ~GemmEngine() {
    plans_.clear();
    if (handle_ != nullptr) cublasLtDestroy(handle_);
  }
  GemmEngine(const GemmEngine&) = delete;
  GemmEngine& operator=(const GemmEngine&) = delete;

  absl::StatusOr<bool> Run(const LtGemmArgs& args, cudaStream_t stream);

 private:
  // (m, n, k, ldo, A/B type, bias epilogue wanted, alignments of w, x, out, bias).
  using Key = std::tuple<int64_t, int64_t, int64_t, int64_t, int, bool, uint32_t, uint32_t, uint32_t, uint32_t>;
  struct Plan {
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    cublasLtMatmulAlgo_t algo{};
    bool bias_epilogue = false;
    ~Plan() {
      if (c != nullptr) cublasLtMatrixLayoutDestroy(c);
      if (b != nullptr) cublasLtMatrixLayoutDestroy(b);
      if (a != nullptr) cublasLtMatrixLayoutDestroy(a);
      if (desc != nullptr) cublasLtMatmulDescDestroy(desc);
    }
  };

  absl::StatusOr<std::unique_ptr<Plan>> MakePlan(const LtGemmArgs& args, bool epilogue, const Key& key);

  cublasLtHandle_t handle_ = nullptr;
  std::map<Key, std::unique_ptr<Plan>> plans_;
};

void GemmEngineDeleter::operator()(GemmEngine* engine) const { delete engine; }

absl::StatusOr<GemmEnginePtr> CreateGemmEngine(int device_index) {
  if (auto s = CudaCheck(cudaSetDevice(device_index), "cudaSetDevice(CreateGemmEngine)"); !s.ok()) return s;
  cublasLtHandle_t handle = nullptr;
  if (auto s = LtCheck(cublasLtCreate(&handle), "cublasLtCreate"); !s.ok()) return s;
  return GemmEnginePtr(new GemmEngine(handle));
}

absl::StatusOr<std::unique_ptr<GemmEngine::Plan>> GemmEngine::MakePlan(const LtGemmArgs& a, bool epilogue,
                                                                        const Key& key) {
  auto plan = std::make_unique<Plan>();
  const cudaDataType_t ab = LtType(a.ab_type);
  if (auto s = LtCheck(cublasLtMatmulDescCreate(&plan->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), "MatmulDescCreate");
      !s.ok()) {
    return s;
  }
  // Column-major view: C[n, m] (ld ldo) = op(A)[n, k] · B[k, m] with A = w stored k x n (ld k)
  // and transposed, B = x^T stored k x m (ld k).
  const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  if (auto s = LtCheck(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)),
                       "TRANSA");
      !s.ok()) {
    return s;
  }
  if (auto s = LtCheck(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)),
                       "TRANSB");
      !s.ok()) {
    return s;
  }
  if (epilogue) {
    const cublasLtEpilogue_t ep = CUBLASLT_EPILOGUE_BIAS;
    if (auto s = LtCheck(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &ep, sizeof(ep)),
                         "EPILOGUE");
        !s.ok()) {
      return s;
    }
    const cudaDataType_t bias_type = CUDA_R_32F;
    if (auto s = LtCheck(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type,
                                                        sizeof(bias_type)),
                         "BIAS_DATA_TYPE");
        !s.ok()) {
      return s;
    }
  }
  const auto uk = static_cast<uint64_t>(a.k), un = static_cast<uint64_t>(a.n), um = static_cast<uint64_t>(a.m);
  if (auto s = LtCheck(cublasLtMatrixLayoutCreate(&plan->a, ab, uk, un, a.k), "LayoutCreate(w)"); !s.ok()) return s;
  if (auto s = LtCheck(cublasLtMatrixLayoutCreate(&plan->b, ab, uk, um, a.k), "LayoutCreate(x)"); !s.ok()) return s;
  if (auto s = LtCheck(cublasLtMatrixLayoutCreate(&plan->c, CUDA_R_32F, un, um, a.ldo), "LayoutCreate(out)");
      !s.ok()) {
    return s;
  }
  cublasLtMatmulPreference_t pref = nullptr;
  if (auto s = LtCheck(cublasLtMatmulPreferenceCreate(&pref), "PreferenceCreate"); !s.ok()) return s;
  std::unique_ptr<cublasLtMatmulPreferenceOpaque_t, cublasStatus_t (*)(cublasLtMatmulPreference_t)> pref_guard(
      pref, cublasLtMatmulPreferenceDestroy);
  const size_t ws = kLtWorkspaceBytes;
  absl::Status s = LtCheck(
      cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)),
      "PREF_MAX_WORKSPACE_BYTES");
  // The pointers of this call may be less aligned than the 256 bytes cuBLASLt assumes by default.
  const uint32_t align[4] = {std::get<6>(key), std::get<7>(key), std::get<8>(key), std::get<8>(key)};
  const cublasLtMatmulPreferenceAttributes_t attrs[4] = {
      CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
      CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
  for (int i = 0; i < 4 && s.ok(); ++i) {
    s = LtCheck(cublasLtMatmulPreferenceSetAttribute(pref, attrs[i], &align[i], sizeof(align[i])), "PREF_ALIGNMENT");
  }
  if (!s.ok()) return s;
  cublasLtMatmulHeuristicResult_t heur{};
  int found = 0;
  if (auto st = LtCheck(cublasLtMatmulAlgoGetHeuristic(handle_, plan->desc, plan->a, plan->b, plan->c, plan->c, pref,
                                                        1, &heur, &found),
                        "AlgoGetHeuristic");
      !st.ok()) {
    return st;
  }
  if (found == 0) {
    return absl::UnimplementedError(absl::StrCat("cuBLASLt has no algorithm for [", a.m, ", ", a.k, "] x [", a.n,
                                                 ", ", a.k, "]^T"));
  }
  plan->algo = heur.algo;
  plan->bias_epilogue = epilogue;
  return plan;
}

absl::StatusOr<bool> GemmEngine::Run(const LtGemmArgs& a, cudaStream_t stream) {
  const bool want_epilogue = a.bias != nullptr && AlignmentOf(a.bias) >= 16;
  const Key key{a.m, a.n, a.k, a.ldo, static_cast<int>(a.ab_type), want_epilogue,
                AlignmentOf(a.w), AlignmentOf(a.x), AlignmentOf(a.out), want_epilogue ? 16u : 0u};
  auto it = plans_.find(key);
  if (it == plans_.end()) {
    if (plans_.size() >= kMaxPlans) plans_.clear();
    auto plan = MakePlan(a, want_epilogue, key);
    if (!plan.ok() && want_epilogue) plan = MakePlan(a, false, key);  // no epilogue kernel: bias afterwards
    if (!plan.ok()) return plan.status();
    it = plans_.emplace(key, std::move(*plan)).first;
  }
  Plan& plan = *it->second;
  if (plan.bias_epilogue) {
    const void* bias = a.bias;
    if (auto s = LtCheck(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                                        sizeof(bias)),
                         "BIAS_POINTER");
        !s.ok()) {
      return s;
    }
  }
  const float alpha = 1.0f, beta = 0.0f;
  // A = w, B = x: out^T = w · x^T.
  if (auto s = LtCheck(cublasLtMatmul(handle_, plan.desc, &alpha, a.w, plan.a, a.x, plan.b, &beta, a.out, plan.c,
                                      a.out, plan.c, &plan.algo, a.lt_workspace, kLtWorkspaceBytes, stream),
                       "Matmul");
      !s.ok()) {
    // An execution failure may be a sticky device error: report that one if so.
    if (auto e = CudaCheck(cudaPeekAtLastError(), "cublasLtMatmul"); !e.ok()) return e;
    return s;
  }
  return plan.bias_epilogue;
}

absl::StatusOr<bool> LtGemm(GemmEngine& engine, const LtGemmArgs& args, cudaStream_t stream) {
  return engine.Run(args, stream);
}

size_t MatmulWorkspaceBytes(int64_t m, int64_t n, int64_t k, DType w) {
  if (m <= kGemvMaxRows || n <= 0 || k <= 0) return 0;
  size_t bytes = kWorkspaceAlign + kLtWorkspaceBytes;
  if (w != DType::kF32) bytes += AlignUp(static_cast<size_t>(m) * static_cast<size_t>(k) * 2);
  return bytes;
}

absl::Status Matmul(CudaContext& ctx, TensorView x, TensorView w, TensorView bias, TensorView out,
                    TensorView workspace) {
  if (auto s = checks::CheckMatmul(x, w, bias, out, DeviceKind::kCuda); !s.ok()) return s;
  const int64_t m = x.dim(0), k = x.dim(1), n = w.dim(0);
  const size_t need = MatmulWorkspaceBytes(m, n, k, w.dtype());
  if (auto s = checks::CheckWorkspaceBytes("Matmul", workspace, need); !s.ok()) return s;
  if (need > 0 && workspace.device().kind != DeviceKind::kCuda) {
    return absl::InvalidArgumentError(absl::StrCat("Matmul: workspace is on ", DeviceName(workspace.device()),
                                                   ", expected ", DeviceName(ctx.device)));
  }
  if (m == 0 || n == 0) return absl::OkStatus();
  const GemmDType wt = ToGemmDType(w.dtype());
  const GemmDType bt = ToGemmDType(bias.dtype());
  const void* pb = bias.empty() ? nullptr : bias.data();
  // k == 0 (out = bias) also takes the GEMV: cuBLASLt refuses empty reductions.
  if (m <= kGemvMaxRows || k == 0) return GemvRows(ctx, x, w, pb, bt, out);
  if (ctx.gemm == nullptr) return absl::InternalError("Matmul: the CUDA context has no GemmEngine");
  WorkspaceCarver carve(workspace.data());
  void* lt_ws = carve.Take(kLtWorkspaceBytes);
  const void* px = x.data();
  if (wt != GemmDType::kF32) {
    void* xc = carve.Take(static_cast<size_t>(m * k) * 2);  // [m, k] in w's dtype
    if (auto s = CudaCheck(LaunchConvertFromF32(x.as<float>(), xc, wt, m * k, ctx.stream), "launch Convert(Matmul)");
        !s.ok()) {
      return s;
    }
    px = xc;
  }
  LtGemmArgs args;
  args.m = m;
  args.n = n;
  args.k = k;
  args.ab_type = wt;
  args.w = w.data();
  args.x = px;
  args.out = out.as<float>();
  args.ldo = n;
  args.bias = (pb != nullptr && bias.dtype() == DType::kF32) ? bias.as<float>() : nullptr;
  args.lt_workspace = lt_ws;
  auto bias_done = LtGemm(*ctx.gemm, args, ctx.stream);
  // No cuBLASLt algorithm for this shape/alignment: the GEMV is slower here but exact.
  if (!bias_done.ok() && absl::IsUnimplemented(bias_done.status())) return GemvRows(ctx, x, w, pb, bt, out);
  if (!bias_done.ok()) return bias_done.status();
  if (pb != nullptr && !*bias_done) {
    return CudaCheck(LaunchBiasRound(out.as<float>(), pb, bt, GemmDType::kF32, m, n, ctx.stream),
                     "launch BiasRound(Matmul)");
  }
  return absl::OkStatus();
}

}  // namespace kiln::kernels::cuda
