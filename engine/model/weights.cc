#include "engine/model/weights.h"

#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace kiln::engine {
namespace {

std::string ShapeText(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

float ToF32(const uint8_t* p, kernels::DType t) {
  if (t == kernels::DType::kF32) {
    float f;
    std::memcpy(&f, p, 4);
    return f;
  }
  uint16_t h;
  std::memcpy(&h, p, 2);
  return t == kernels::DType::kF16 ? kernels::HalfToFloat(h) : kernels::BFloat16ToFloat(h);
}

void FromF32(float f, kernels::DType t, uint8_t* p) {
  if (t == kernels::DType::kF32) {
    std::memcpy(p, &f, 4);
    return;
  }
  const uint16_t h = t == kernels::DType::kF16 ? kernels::FloatToHalf(f) : kernels::FloatToBFloat16(f);
  std::memcpy(p, &h, 2);
}

}  // namespace

WeightLoader::WeightLoader(const Checkpoint& checkpoint, kernels::Backend& backend, const LoadOptions& options)
    : checkpoint_(checkpoint), backend_(backend), options_(options) {}

absl::StatusOr<std::vector<uint8_t>> WeightLoader::ReadChecked(const std::string& name,
                                                               const std::vector<int64_t>& shape,
                                                               kernels::DType* dtype) {
  auto ref = checkpoint_.Require(name);
  if (!ref.ok()) return ref.status();
  const TensorInfo& info = *ref->info;
  if (info.shape != shape) {
    return absl::InvalidArgumentError(absl::StrCat("tensor \"", name, "\" has shape ", ShapeText(info.shape),
                                                   ", expected ", ShapeText(shape)));
  }
  if (info.dtype != kernels::DType::kF32 && info.dtype != kernels::DType::kF16 && info.dtype != kernels::DType::kBF16) {
    return absl::InvalidArgumentError(absl::StrCat("tensor \"", name, "\" has dtype ", std::string(kernels::DTypeName(info.dtype)),
                                                   ", expected F32, F16 or BF16"));
  }
  std::vector<uint8_t> host(info.num_bytes());
  if (absl::Status s = ref->shard->Read(info, host); !s.ok()) return s;
  *dtype = info.dtype;
  used_.insert(name);
  return host;
}

absl::StatusOr<kernels::TensorView> WeightLoader::Upload(const std::string& name, std::vector<uint8_t> host,
                                                         kernels::DType src, const std::vector<int64_t>& shape) {
  const kernels::DType dst = options_.dtype;
  int64_t numel = 1;
  for (int64_t d : shape) numel *= d;
  if (src != dst && backend_.kind() != kernels::BackendKind::kCpu) {
    // Convert on the host so device backends only ever receive bytes in the load dtype.
    std::vector<uint8_t> converted(static_cast<size_t>(numel) * kernels::DTypeSize(dst));
    for (int64_t i = 0; i < numel; ++i) {
      FromF32(ToF32(host.data() + i * static_cast<int64_t>(kernels::DTypeSize(src)), src), dst,
              converted.data() + i * static_cast<int64_t>(kernels::DTypeSize(dst)));
    }
    host = std::move(converted);
    src = dst;
  }
  auto buf = backend_.Allocate(static_cast<size_t>(numel) * kernels::DTypeSize(dst));
  if (!buf.ok()) return buf.status();
  kernels::TensorView view(buf->data(), dst, std::span<const int64_t>(shape), buf->device());
  absl::Status s = src == dst ? backend_.CopyFromHost(host.data(), view)
                              : backend_.Convert(kernels::TensorView(host.data(), src, std::span<const int64_t>(shape)), view);
  if (!s.ok()) return s;
  buffers_.push_back(std::move(*buf));
  ++tensors_done_;
  bytes_done_ += host.size();
  if (options_.progress) {
    options_.progress({name, tensors_done_, static_cast<int64_t>(checkpoint_.num_tensors()), bytes_done_,
                       checkpoint_.total_tensor_bytes()});
  }
  return view;
}

absl::StatusOr<kernels::TensorView> WeightLoader::Load(const std::string& name, std::vector<int64_t> shape) {
  kernels::DType src;
  auto host = ReadChecked(name, shape, &src);
  if (!host.ok()) return host.status();
  return Upload(name, std::move(*host), src, shape);
}

absl::StatusOr<kernels::TensorView> WeightLoader::LoadTransposed(const std::string& name, int64_t rows, int64_t cols) {
  kernels::DType src;
  auto host = ReadChecked(name, {rows, cols}, &src);
  if (!host.ok()) return host.status();
  const size_t es = kernels::DTypeSize(src);
  std::vector<uint8_t> t(host->size());
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      std::memcpy(&t[static_cast<size_t>(c * rows + r) * es], &(*host)[static_cast<size_t>(r * cols + c) * es], es);
    }
  }
  return Upload(name, std::move(t), src, {cols, rows});
}

absl::Status WeightLoader::CheckAllUsed(const std::function<bool(const std::string&)>& ignorable) const {
  for (const std::string& name : checkpoint_.TensorNames()) {
    if (used_.count(name) == 0 && !ignorable(name)) {
      return absl::InvalidArgumentError(absl::StrCat("checkpoint has unexpected tensor \"", name,
                                                     "\" (not part of this architecture and config)"));
    }
  }
  return absl::OkStatus();
}

size_t WeightLoader::bytes() const {
  size_t total = 0;
  for (const kernels::DeviceBuffer& b : buffers_) total += b.bytes();
  return total;
}

}  // namespace kiln::engine
