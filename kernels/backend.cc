#include "kernels/backend.h"

#include <cstdio>
#include <cstdlib>
#include <utility>

#include "absl/strings/cord.h"

namespace kiln::kernels {

std::string BackendKindName(BackendKind kind) {
  switch (kind) {
    case BackendKind::kCpu: return "cpu";
    case BackendKind::kCuda: return "cuda";
  }
  return "?";
}

namespace {
constexpr char kDeviceLostPayload[] = "kiln.dev/device-lost";
}  // namespace

absl::Status DeviceLostError(std::string_view message) {
  absl::Status status = absl::InternalError(std::string(message));
  status.SetPayload(kDeviceLostPayload, absl::Cord("1"));
  return status;
}

bool IsDeviceLost(const absl::Status& status) {
  return status.GetPayload(kDeviceLostPayload).has_value();
}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    Reset();
    data_ = std::exchange(other.data_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
    device_ = other.device_;
    allocator_ = std::exchange(other.allocator_, nullptr);
  }
  return *this;
}

void DeviceBuffer::Reset() {
  if (data_ != nullptr && allocator_ != nullptr) allocator_->Free(data_, bytes_);
  data_ = nullptr;
  bytes_ = 0;
  allocator_ = nullptr;
}

TensorView DeviceBuffer::View(DType dtype, std::initializer_list<int64_t> shape) const {
  TensorView v(data_, dtype, shape, device_);
  if (v.bytes() > bytes_) {
    // A view larger than its buffer is a bug in the caller, never bad input.
    std::fprintf(stderr, "kiln::kernels::DeviceBuffer::View: %s exceeds %zu bytes\n",
                 v.ShapeString().c_str(), bytes_);
    std::abort();
  }
  return v;
}

}  // namespace kiln::kernels
