#include "kernels/tensor.h"

#include <cstdio>
#include <cstdlib>

namespace kiln::kernels {
namespace {

// kernels/ may not include engine/common; a broken view is a bug in the caller.
[[noreturn]] void ViewBug(const char* what) {
  std::fprintf(stderr, "kiln::kernels::TensorView misuse: %s\n", what);
  std::abort();
}

}  // namespace

std::string DeviceName(const Device& device) {
  switch (device.kind) {
    case DeviceKind::kCpu: return "cpu";
    case DeviceKind::kCuda: return "cuda:" + std::to_string(device.index);
  }
  return "?";
}

TensorView::TensorView(void* data, DType dtype, std::initializer_list<int64_t> shape,
                       Device device)
    : data_(data), dtype_(dtype), device_(device), rank_(static_cast<int>(shape.size())) {
  if (shape.size() > kMaxRank) ViewBug("rank above kMaxRank");
  size_t i = 0;
  for (int64_t d : shape) {
    if (d < 0) ViewBug("negative dim");
    shape_[i++] = d;
  }
}

TensorView::TensorView(void* data, DType dtype, std::span<const int64_t> shape, Device device)
    : data_(data), dtype_(dtype), device_(device), rank_(static_cast<int>(shape.size())) {
  if (shape.size() > kMaxRank) ViewBug("rank above kMaxRank");
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] < 0) ViewBug("negative dim");
    shape_[i] = shape[i];
  }
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int i = 0; i < rank_; ++i) n *= shape_[static_cast<size_t>(i)];
  return n;
}

int64_t TensorView::row_numel() const {
  int64_t n = 1;
  for (int i = 1; i < rank_; ++i) n *= shape_[static_cast<size_t>(i)];
  return n;
}

TensorView TensorView::Rows(int64_t begin, int64_t count) const {
  if (rank_ == 0 || begin < 0 || count < 0 || begin + count > shape_[0]) ViewBug("Rows out of range");
  TensorView out = *this;
  out.shape_[0] = count;
  out.data_ = static_cast<char*>(data_) +
              static_cast<size_t>(begin * row_numel()) * DTypeSize(dtype_);
  return out;
}

TensorView TensorView::Reshape(std::initializer_list<int64_t> shape) const {
  TensorView out(data_, dtype_, shape, device_);
  if (out.numel() != numel()) ViewBug("Reshape changes numel");
  return out;
}

std::string TensorView::ShapeString() const {
  std::string s = "[";
  for (int i = 0; i < rank_; ++i) {
    if (i > 0) s += ", ";
    s += std::to_string(shape_[static_cast<size_t>(i)]);
  }
  s += "] ";
  s += DTypeName(dtype_);
  return s;
}

bool SameShape(const TensorView& a, const TensorView& b) {
  if (a.rank() != b.rank()) return false;
  for (int i = 0; i < a.rank(); ++i) {
    if (a.dim(i) != b.dim(i)) return false;
  }
  return true;
}

}  // namespace kiln::kernels
