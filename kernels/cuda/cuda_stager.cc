#include "kernels/cuda/cuda_stager.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"

namespace kiln::kernels::cuda {
namespace {

constexpr size_t kMinCapacity = 4096;

size_t AlignUp(size_t n) { return (n + kStageAlignment - 1) / kStageAlignment * kStageAlignment; }

size_t Grown(size_t current, size_t needed) {
  size_t capacity = std::max(current, kMinCapacity);
  while (capacity < needed) capacity *= 2;
  return capacity;
}

class PinnedRingStager final : public MetadataStager {
 public:
  PinnedRingStager(int device_index, cudaStream_t stream) : device_index_(device_index), stream_(stream) {}

  ~PinnedRingStager() override {
    // Pending copies may still read the pinned buffers and write the arena.
    if (stream_ != nullptr) cudaStreamSynchronize(stream_);
    for (Slot& slot : slots_) {
      if (slot.host != nullptr) cudaFreeHost(slot.host);
      if (slot.copied != nullptr) cudaEventDestroy(slot.copied);
    }
    if (arena_ != nullptr) cudaFree(arena_);
  }

  absl::Status Init() {
    if (auto s = CudaCheck(cudaSetDevice(device_index_), "cudaSetDevice(stager)"); !s.ok()) return s;
    for (Slot& slot : slots_) {
      if (auto s = CudaCheck(cudaEventCreateWithFlags(&slot.copied, cudaEventDisableTiming),
                             "cudaEventCreate(stager)");
          !s.ok()) {
        return s;
      }
    }
    return absl::OkStatus();
  }

  absl::Status Stage(std::span<const HostArray> arrays, std::span<const void*> device_ptrs) override {
    if (arrays.size() != device_ptrs.size()) {
      return absl::InvalidArgumentError(absl::StrCat("Stage: ", arrays.size(), " arrays but ",
                                                     device_ptrs.size(), " device pointers"));
    }
    size_t total = 0;
    for (size_t i = 0; i < arrays.size(); ++i) {
      if (arrays[i].bytes > 0 && arrays[i].data == nullptr) {
        return absl::InvalidArgumentError(absl::StrCat("Stage: array ", i, " has ", arrays[i].bytes,
                                                       " bytes but no data"));
      }
      total = AlignUp(total) + arrays[i].bytes;
    }
    if (total == 0) {
      std::fill(device_ptrs.begin(), device_ptrs.end(), nullptr);
      return absl::OkStatus();
    }
    Slot& slot = slots_[next_];
    // The copy that last read this buffer (two Stage calls ago) must be done before we refill it.
    if (auto s = CudaCheck(cudaEventSynchronize(slot.copied), "cudaEventSynchronize(stager)"); !s.ok()) {
      return s;
    }
    if (auto s = EnsureCapacity(slot, total); !s.ok()) return s;
    size_t offset = 0;
    for (size_t i = 0; i < arrays.size(); ++i) {
      offset = AlignUp(offset);
      if (arrays[i].bytes == 0) {
        device_ptrs[i] = nullptr;
        continue;
      }
      std::memcpy(slot.host + offset, arrays[i].data, arrays[i].bytes);
      device_ptrs[i] = arena_ + offset;
      offset += arrays[i].bytes;
    }
    if (auto s = CudaCheck(cudaMemcpyAsync(arena_, slot.host, total, cudaMemcpyHostToDevice, stream_),
                           "cudaMemcpyAsync(stager)");
        !s.ok()) {
      return s;
    }
    if (auto s = CudaCheck(cudaEventRecord(slot.copied, stream_), "cudaEventRecord(stager)"); !s.ok()) {
      return s;
    }
    next_ = 1 - next_;
    return absl::OkStatus();
  }

 private:
  struct Slot {
    char* host = nullptr;  // pinned
    size_t capacity = 0;
    cudaEvent_t copied = nullptr;  // recorded after the copy that reads `host`
  };

  absl::Status EnsureCapacity(Slot& slot, size_t bytes) {
    if (slot.capacity < bytes) {
      const size_t capacity = Grown(slot.capacity, bytes);
      // This slot's event has completed, so no copy reads the old buffer any more.
      if (slot.host != nullptr) cudaFreeHost(slot.host);
      slot.host = nullptr;
      slot.capacity = 0;
      void* p = nullptr;
      if (auto s = CudaCheck(cudaMallocHost(&p, capacity),
                             absl::StrCat("cudaMallocHost(stager, ", capacity, " bytes)"));
          !s.ok()) {
        return s;
      }
      slot.host = static_cast<char*>(p);
      slot.capacity = capacity;
    }
    if (arena_capacity_ < bytes) {
      const size_t capacity = Grown(arena_capacity_, bytes);
      // Kernels enqueued since the last Stage may still read the old arena.
      if (auto s = CudaCheck(cudaStreamSynchronize(stream_), "cudaStreamSynchronize(stager)"); !s.ok()) {
        return s;
      }
      if (arena_ != nullptr) cudaFree(arena_);
      arena_ = nullptr;
      arena_capacity_ = 0;
      void* p = nullptr;
      if (auto s = CudaCheck(cudaMalloc(&p, capacity),
                             absl::StrCat("cudaMalloc(stager, ", capacity, " bytes on cuda:", device_index_, ")"));
          !s.ok()) {
        return s;
      }
      arena_ = static_cast<char*>(p);
      arena_capacity_ = capacity;
    }
    return absl::OkStatus();
  }

  const int device_index_;
  const cudaStream_t stream_;
  std::array<Slot, 2> slots_;
  int next_ = 0;
  char* arena_ = nullptr;  // device
  size_t arena_capacity_ = 0;
};

}  // namespace

absl::StatusOr<std::unique_ptr<MetadataStager>> CreateMetadataStager(int device_index,
                                                                     cudaStream_t stream) {
  auto stager = std::make_unique<PinnedRingStager>(device_index, stream);
  if (auto s = stager->Init(); !s.ok()) return s;
  return std::unique_ptr<MetadataStager>(std::move(stager));
}

}  // namespace kiln::kernels::cuda
