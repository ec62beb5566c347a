// Backend: the one compute interface the engine talks to (one implementation per device kind:
// kernels/cpu/ is the numeric reference, kernels/cuda/ the GPU one). Shaped like ggml's backend
// vtable and FlashInfer's kernels: every op works on non-owning TensorViews plus, where it needs
// scratch, a caller-provided workspace view; ops never allocate. Memory comes from Allocate() as
// move-only DeviceBuffers.
//
// Conventions for every op:
//  - Views are contiguous row-major and live on this backend's device. Activations are F32 on
//    the CPU backend; weights may be F32, F16 or BF16 (converted on the fly, fp32 accumulation).
//  - Metadata (token ids, positions, block tables) is host memory given as spans; a device
//    backend copies it into its workspace before launching.
//  - Ops return INVALID_ARGUMENT when shapes/dtypes do not fit (naming the op, the argument and
//    the shapes), or when an index (token id, block id, slot) is out of range: indices are
//    validated before any kernel touches memory. UNIMPLEMENTED for a dtype the backend lacks.
//
// Usage:
//   auto backend = kiln::kernels::CreateBackend(BackendKind::kCpu);     // backend_factory.h
//   KILN_ASSIGN_OR_RETURN(DeviceBuffer buf, (*backend)->Allocate(bytes));
//   TensorView x(buf.data(), DType::kF32, {tokens, hidden}, buf.device());
//   KILN_RETURN_IF_ERROR((*backend)->RmsNorm(x, w, 1e-6f, y));
//
// Thread-safety: Allocate/Free are thread-safe. Ops may be called from several threads; a
// backend serializes its internal worker pool, so concurrent ops run one after the other.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/dtype.h"
#include "kernels/quant/quant_matrix.h"
#include "kernels/tensor.h"

namespace kiln::kernels {

enum class BackendKind : uint8_t { kCpu, kCuda };
std::string BackendKindName(BackendKind kind);  // "cpu", "cuda"

// A device error that leaves the device unusable for the rest of the process (CUDA's sticky
// errors: illegal address, launch failure, ECC...). DESIGN.md §5: the engine treats it as fatal
// (health NOT_SERVING, open streams UNAVAILABLE, exit non-zero so Kubernetes restarts kilnd).
// INTERNAL with a payload that IsDeviceLost recognizes.
absl::Status DeviceLostError(std::string_view message);
bool IsDeviceLost(const absl::Status& status);

// Frees memory it handed out. Implemented by backends; outlives every buffer it allocated.
class DeviceAllocator {
 public:
  virtual ~DeviceAllocator() = default;
  virtual void Free(void* data, size_t bytes) = 0;
};

// Owns one allocation; move-only; frees on destruction through its allocator.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(void* data, size_t bytes, Device device, DeviceAllocator* allocator)
      : data_(data), bytes_(bytes), device_(device), allocator_(allocator) {}
  ~DeviceBuffer() { Reset(); }
  DeviceBuffer(DeviceBuffer&& other) noexcept { *this = std::move(other); }
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  Device device() const { return device_; }
  // A view of the whole buffer (or its prefix) as `dtype` with `shape`; numel must fit.
  TensorView View(DType dtype, std::initializer_list<int64_t> shape) const;
  void Reset();

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
  Device device_;
  DeviceAllocator* allocator_ = nullptr;
};

enum class GeluKind : uint8_t {
  kErf,   // transformers "gelu": x * 0.5 * (1 + erf(x / sqrt(2)))
  kTanh,  // "gelu_new" / "gelu_pytorch_tanh": 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
};

// One layer of paged KV storage. Both views are [num_blocks, block_size, num_kv_heads, head_dim].
struct PagedKvLayer {
  TensorView k;
  TensorView v;
};

// Describes a batch of sequences for attention over paged KV, CSR style (FlashInfer's
// indptr/indices). Sequence s owns new tokens [query_start[s], query_start[s+1]) of q; after
// this step's KvWrite its cache holds kv_len[s] tokens, so its new tokens sit at positions
// kv_len[s] - q_len .. kv_len[s] - 1, and token position p lives in block
// block_table[s * max_blocks_per_seq + p / block_size] at offset p % block_size.
struct AttentionParams {
  std::span<const int32_t> query_start = {};  // [num_seqs + 1], query_start[0] == 0
  std::span<const int32_t> kv_len = {};       // [num_seqs]
  std::span<const int32_t> block_table = {};  // [num_seqs, max_blocks_per_seq]
  int32_t max_blocks_per_seq = 0;
  int32_t sliding_window = 0;  // > 0: position p attends to (p - sliding_window, p]; 0: full
  float scale = 1.0f;          // usually 1/sqrt(head_dim)
};

// One adapter's low-rank pair for LoraApply: delta = scale * (x A^T) B^T.
struct LoraPair {
  TensorView a;        // [r, in]  F32 (lora_A.weight)
  TensorView b;        // [out, r] F32 (lora_B.weight)
  float scale = 1.0f;  // lora_alpha / r, or lora_alpha / sqrt(r) with rslora
};

// Rows of a batch grouped by adapter (SGMV style): segment s covers rows
// [seg_start[s], seg_start[s+1]) and uses pairs[slot[s]], or no adapter when slot[s] < 0.
struct LoraSegments {
  std::span<const int32_t> seg_start = {};  // [segments + 1], seg_start[0] == 0, non-decreasing
  std::span<const int32_t> slot = {};       // [segments]
};

class Backend : public DeviceAllocator {
 public:
  ~Backend() override = default;

  virtual BackendKind kind() const = 0;
  virtual Device device() const = 0;
  virtual std::string Describe() const = 0;  // for logs and GetServerInfo

  // ---- memory -------------------------------------------------------------------------
  // RESOURCE_EXHAUSTED when the device cannot provide `bytes`. Memory is 64-byte aligned and
  // uninitialized.
  virtual absl::StatusOr<DeviceBuffer> Allocate(size_t bytes) = 0;
  // Host <-> device copies; sizes are dst/src view bytes.
  virtual absl::Status CopyFromHost(const void* src, TensorView dst) = 0;
  virtual absl::Status CopyToHost(TensorView src, void* dst) = 0;
  // Same-shape copy with dtype conversion between F32/F16/BF16 (or same dtype: raw copy).
  virtual absl::Status Convert(TensorView src, TensorView dst) = 0;

  // ---- ops ----------------------------------------------------------------------------
  // out[i] = table[ids[i]]. Every id must be in [0, rows) or INVALID_ARGUMENT (nothing written).
  virtual absl::Status Embedding(TensorView table,              // [rows, dim], F32/F16/BF16
                                 std::span<const int32_t> ids,  // [n]
                                 TensorView out) = 0;           // [n, dim] F32

  // out = x · w^T (+ bias), fp32 accumulation.
  virtual absl::Status Matmul(TensorView x,          // [m, k] F32
                              TensorView w,          // [n, k] F32/F16/BF16
                              TensorView bias,       // [n] any float, or empty
                              TensorView out,        // [m, n] F32
                              TensorView workspace)  // >= MatmulWorkspaceBytes(m, n, k, w.dtype)
      = 0;
  virtual size_t MatmulWorkspaceBytes(int64_t m, int64_t n, int64_t k, DType w) const = 0;

  // out = x · W^T (+ bias) for a quantized W (kernels/quant/quant_matrix.h), fp32 accumulation,
  // rounding as w.compute_dtype prescribes. INVALID_ARGUMENT for shapes that do not fit w;
  // UNIMPLEMENTED for a format this backend lacks.
  virtual absl::Status QuantMatmul(TensorView x,                // [m, w.cols] F32
                                   const QuantizedMatrix& w,    // [w.rows, w.cols]
                                   TensorView bias,             // [w.rows] any float, or empty
                                   TensorView out,              // [m, w.rows] F32
                                   TensorView workspace)        // QuantMatmulWorkspaceBytes
      = 0;
  virtual size_t QuantMatmulWorkspaceBytes(int64_t m, const QuantizedMatrix& w) const = 0;

  // Heterogeneous LoRA: out[rows of segment s] += pairs[slot].scale * (x A^T) B^T for every
  // segment with an adapter, each pair with its own rank. Slots, segment bounds and every
  // pair's shapes ([r, in] / [out, r], r >= 1) are validated before anything is written.
  virtual absl::Status LoraApply(TensorView x,                      // [m, in] F32
                                 std::span<const LoraPair> pairs,   // adapters of this batch
                                 const LoraSegments& segments,
                                 TensorView out,                    // [m, out] F32, accumulated
                                 TensorView workspace)              // LoraWorkspaceBytes
      = 0;
  virtual size_t LoraWorkspaceBytes(int64_t m, int64_t max_rank) const = 0;

  // out = x / sqrt(mean(x^2) + eps) * weight  (per row; HF LlamaRMSNorm).
  virtual absl::Status RmsNorm(TensorView x,       // [m, d] F32
                               TensorView weight,  // [d]
                               float eps, TensorView out) = 0;  // [m, d] F32 (may alias x)
  // residual += x; out = RmsNorm(residual). The fused pre-norm step of a decoder layer.
  virtual absl::Status AddRmsNorm(TensorView residual,  // [m, d] F32, updated in place
                                  TensorView x,         // [m, d] F32
                                  TensorView weight,    // [d]
                                  float eps, TensorView out) = 0;  // [m, d] F32
  // out = (x - mean) / sqrt(var + eps) * weight + bias (biased variance, as torch).
  virtual absl::Status LayerNorm(TensorView x,       // [m, d] F32
                                 TensorView weight,  // [d]
                                 TensorView bias,    // [d] or empty
                                 float eps, TensorView out) = 0;  // [m, d] F32 (may alias x)

  // In place, rotate_half style (HF apply_rotary_pos_emb): for i < rotary_dim/2,
  //   a = x[i], b = x[i + rotary_dim/2], f = positions[t] * inv_freq[i],
  //   x[i] = a cos f - b sin f, x[i + half] = b cos f + a sin f, with cos/sin times
  //   attention_scaling. rotary_dim = 2 * inv_freq.size() <= head_dim; the rest is untouched.
  virtual absl::Status Rope(TensorView x,                        // [t, heads, head_dim] F32
                            std::span<const int32_t> positions,  // [t]
                            std::span<const float> inv_freq,     // [rotary_dim / 2]
                            float attention_scaling) = 0;

  virtual absl::Status Add(TensorView a, TensorView b, TensorView out) = 0;  // same shapes, F32
  // out = silu(gate) * up.
  virtual absl::Status SiluMul(TensorView gate,  // [m, n] F32
                               TensorView up,    // [m, n] F32
                               TensorView out) = 0;
  virtual absl::Status Gelu(TensorView x, GeluKind kind, TensorView out) = 0;  // F32, same shape
  // out[i] = src[rows[i]]; rows validated against src.dim(0).
  virtual absl::Status GatherRows(TensorView src,                 // [m, d] F32
                                  std::span<const int32_t> rows,  // [r]
                                  TensorView out) = 0;            // [r, d] F32

  // Scatter new keys/values into their cache slots: token t goes to block slot[t] / block_size,
  // offset slot[t] % block_size. Slots validated against num_blocks * block_size.
  virtual absl::Status KvWrite(TensorView k,                       // [t, kv_heads, head_dim]
                               TensorView v,                       // [t, kv_heads, head_dim]
                               std::span<const int32_t> slots,     // [t]
                               const PagedKvLayer& cache) = 0;
  // Causal attention of each sequence's new tokens over its paged cache (already containing
  // them), GQA (heads a multiple of kv_heads), optional sliding window, fp32 softmax.
  virtual absl::Status PagedAttention(TensorView q,  // [t, heads, head_dim] F32
                                      const PagedKvLayer& cache, const AttentionParams& params,
                                      TensorView out,         // [t, heads, head_dim] F32
                                      TensorView workspace)   // AttentionWorkspaceBytes
      = 0;
  virtual size_t AttentionWorkspaceBytes(int64_t max_kv_len) const = 0;
};

}  // namespace kiln::kernels
