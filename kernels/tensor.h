// TensorView: a non-owning, contiguous, row-major view of device memory (data pointer, dtype,
// shape up to rank 4, device). Kernels take views; ownership lives in DeviceBuffers (backend.h)
// or in whoever produced the pointer. A view never frees anything.
//
// Only contiguous row-major layouts exist: strides are implied by the shape. Slicing along the
// first dimension (Rows) and reshaping keep contiguity, which is all the forward pass needs.
//
// Thread-safety: a view is a value; concurrent reads are fine, writes through it are the
// caller's to order.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>

#include "kernels/dtype.h"

namespace kiln::kernels {

enum class DeviceKind : uint8_t { kCpu, kCuda };

struct Device {
  DeviceKind kind = DeviceKind::kCpu;
  int index = 0;
  friend bool operator==(const Device&, const Device&) = default;
};

std::string DeviceName(const Device& device);  // "cpu", "cuda:0"

inline constexpr int kMaxRank = 4;

class TensorView {
 public:
  TensorView() = default;
  TensorView(void* data, DType dtype, std::initializer_list<int64_t> shape, Device device = {});
  TensorView(const void* data, DType dtype, std::initializer_list<int64_t> shape,
             Device device = {})
      : TensorView(const_cast<void*>(data), dtype, shape, device) {}
  // Shape from a runtime list (rank <= kMaxRank, checked).
  TensorView(void* data, DType dtype, std::span<const int64_t> shape, Device device = {});

  bool empty() const { return data_ == nullptr; }
  void* data() const { return data_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(data_);
  }
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  int rank() const { return rank_; }
  int64_t dim(int i) const { return shape_[static_cast<size_t>(i)]; }
  int64_t numel() const;
  size_t bytes() const { return static_cast<size_t>(numel()) * DTypeSize(dtype_); }
  // Elements in one index of dim 0 (product of the remaining dims).
  int64_t row_numel() const;

  // Rows [begin, begin + count) of dim 0. Requires 0 <= begin <= begin + count <= dim(0).
  TensorView Rows(int64_t begin, int64_t count) const;
  // The same memory with another shape of equal numel (checked; aborts on a mismatch: a bug).
  TensorView Reshape(std::initializer_list<int64_t> shape) const;

  // "[3, 4] F32": for error messages.
  std::string ShapeString() const;

 private:
  void* data_ = nullptr;
  DType dtype_ = DType::kF32;
  Device device_;
  int rank_ = 0;
  std::array<int64_t, kMaxRank> shape_{};
};

// True when both views have the same rank and dims.
bool SameShape(const TensorView& a, const TensorView& b);

}  // namespace kiln::kernels
