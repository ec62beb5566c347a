// A read-only memory map of one regular file, plus a pread path that cannot fault.
//
// Hazard (safetensors attacks/README "Proposal 6"): if another process truncates the file
// while it is mapped, touching the vanished pages raises SIGBUS. kiln's answer:
//  - headers are never parsed from the map: they are read with pread (`Read`), so a file that
//    shrinks between fstat and parsing yields a clean error;
//  - `Read` copies any range with pread and returns INVALID_ARGUMENT on a short read (EIO is
//    an error too): loaders that convert or upload weights anyway should copy through it;
//  - `CheckUnchanged` re-fstats and fails if size/mtime/inode changed since Open, so a loader
//    calls it after streaming a shard and refuses a file that changed under it;
//  - zero-copy views (`data()`) stay valid only while the file is not truncated: model roots
//    and the hub cache (content-addressed blobs) are assumed immutable while a model is
//    resident. That residual hazard is documented, not handled with a SIGBUS handler.
//
// Thread-safety: immutable after Open; all methods are safe to call concurrently.
// Status codes: NOT_FOUND (missing), PERMISSION_DENIED (unreadable), INVALID_ARGUMENT (not a
// regular file, changed, short read, I/O error). Messages use `display_name`, never the path.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kiln::engine {

class MappedFile {
 public:
  // Opens `path` read-only (O_NONBLOCK, so FIFOs never block; only S_ISREG is accepted) and
  // maps it PROT_READ/MAP_SHARED. An empty file is accepted with an empty map.
  static absl::StatusOr<std::unique_ptr<MappedFile>> Open(const std::string& path,
                                                          std::string_view display_name);

  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  uint64_t size() const { return size_; }
  const std::string& display_name() const { return display_name_; }
  // The whole file; see the hazard note above. Empty span for an empty file.
  std::span<const uint8_t> data() const { return {base_, static_cast<size_t>(size_)}; }

  // Copies [offset, offset + dst.size()) into dst with pread. Fails (never faults) on an
  // out-of-range request, a short read (the file shrank) or an I/O error.
  absl::Status Read(uint64_t offset, std::span<uint8_t> dst) const;

  // INVALID_ARGUMENT when the file's size, mtime or inode differ from Open time.
  absl::Status CheckUnchanged() const;

 private:
  MappedFile(int fd, const uint8_t* base, uint64_t size, std::string display_name);

  int fd_;
  const uint8_t* base_;
  uint64_t size_;
  std::string display_name_;
  ino_t ino_ = 0;
  dev_t dev_ = 0;
  int64_t mtime_ns_ = 0;
};

}  // namespace kiln::engine
