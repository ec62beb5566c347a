// Strict reader for one .safetensors file (huggingface/safetensors README "Format").
//
//   [8 bytes: N, u64 little-endian][N bytes: UTF-8 JSON header][data buffer]
//
// Every rule of the format is enforced before any tensor byte is used (reliability.md §1.1,
// test matrix A1-A9): N in (0, min(file - 8, limit)]; the header starts with '{' and may only
// be padded with trailing spaces (0x20); valid UTF-8; a JSON object whose members are tensor
// entries {"dtype", "shape", "data_offsets"} (exactly those keys) plus an optional
// "__metadata__" string->string object; duplicate keys anywhere are rejected; dtype known;
// shape = at most 8 non-negative integers whose product (x dtype size) is overflow-checked and
// equals end - begin; the data_offsets ranges, sorted, tile the data buffer exactly (start at
// 0, contiguous, no holes, no overlaps, no trailing bytes: no polyglot files). Zero-size and
// 0-rank tensors are accepted. Values are never checked for NaN/Inf (the format allows them).
//
// The header is read with pread, never through the map, and parsed by a streaming handler that
// builds TensorInfos directly (no DOM), so a 100 MB header with 10^5 tensors costs
// O(header) time and O(tensors) memory; caps in SafetensorsLimits bound both.
//
// Alignment: tensor data starts at 8 + N + begin, which the format does not align. Views from
// Data() may be unaligned for their dtype: copy (memcpy) or check before reinterpreting.
//
// Thread-safety: immutable after Open; safe to share across threads.
// Status codes: INVALID_ARGUMENT for any malformed file (message: "<display_name>: tensor
// \"<name>\": <what> <value> <limit>"), UNIMPLEMENTED for a dtype that the format defines but
// kiln does not support (F8_*, U16/U32/U64, ...), NOT_FOUND / PERMISSION_DENIED from opening.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/io/mapped_file.h"
#include "kernels/dtype.h"

namespace kiln::engine {

struct SafetensorsLimits {
  uint64_t max_header_bytes = 100'000'000;  // the reference implementation's MAX_HEADER_SIZE
  size_t max_tensors = 1u << 18;            // per file; real shards hold a few thousand
  size_t max_name_bytes = 1024;             // tensor names and metadata keys
  size_t max_metadata_value_bytes = 1u << 20;
  size_t max_rank = 8;
};

struct TensorInfo {
  std::string name;
  kernels::DType dtype = kernels::DType::kF32;
  std::vector<int64_t> shape;  // empty for a 0-rank scalar
  uint64_t num_elements = 0;   // 1 for a scalar, 0 when any dimension is 0
  uint64_t data_begin = 0;     // offsets relative to the data buffer (after the header)
  uint64_t data_end = 0;

  uint64_t num_bytes() const { return data_end - data_begin; }
};

// The validated content of a header, independent of any file. Exposed for tests and fuzzing.
struct SafetensorsHeader {
  std::vector<TensorInfo> tensors;  // in the order written in the header
  std::map<std::string, std::string> metadata;
  uint64_t data_bytes = 0;  // the size of the data buffer the offsets tile
};

// Parses and validates header JSON bytes (exactly the N bytes after the size field) against a
// data buffer of `data_bytes` bytes.
absl::StatusOr<SafetensorsHeader> ParseSafetensorsHeader(std::string_view header,
                                                         uint64_t data_bytes,
                                                         std::string_view display_name,
                                                         const SafetensorsLimits& limits = {});

class SafetensorsFile {
 public:
  // `display_name` (usually the file name relative to the model dir) prefixes every message.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(
      const std::string& path, std::string_view display_name,
      const SafetensorsLimits& limits = {});

  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& display_name() const { return file_->display_name(); }
  // In the order written in the header.
  const std::vector<TensorInfo>& tensors() const { return header_.tensors; }
  const std::map<std::string, std::string>& metadata() const { return header_.metadata; }
  // nullptr when absent. The pointer lives as long as this file.
  const TensorInfo* Find(std::string_view name) const;

  // A zero-copy view of the tensor's bytes in the map (see mapped_file.h for the truncation
  // hazard). `info` must come from this file.
  std::span<const uint8_t> Data(const TensorInfo& info) const;
  // Copies the tensor's bytes with pread; never faults. dst.size() must equal num_bytes().
  absl::Status Read(const TensorInfo& info, std::span<uint8_t> dst) const;

  uint64_t file_bytes() const { return file_->size(); }
  uint64_t data_offset() const { return data_offset_; }  // 8 + N
  const MappedFile& file() const { return *file_; }

 private:
  SafetensorsFile(std::unique_ptr<MappedFile> file, SafetensorsHeader header, uint64_t data_offset);

  std::unique_ptr<MappedFile> file_;
  SafetensorsHeader header_;
  uint64_t data_offset_;
  std::unordered_map<std::string_view, size_t> index_;  // keys view header_.tensors names
};

}  // namespace kiln::engine
