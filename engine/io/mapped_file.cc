#include "engine/io/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "engine/io/str_cat.h"

namespace kiln::engine {

using io_internal::Append;
using io_internal::Cat;
namespace {

int64_t MtimeNs(const struct stat& st) {
  return static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
}

}  // namespace

MappedFile::MappedFile(int fd, const uint8_t* base, uint64_t size, std::string display_name)
    : fd_(fd), base_(base), size_(size), display_name_(std::move(display_name)) {}

MappedFile::~MappedFile() {
  if (base_ != nullptr && size_ > 0) {
    ::munmap(const_cast<uint8_t*>(base_), static_cast<size_t>(size_));
  }
  if (fd_ >= 0) ::close(fd_);
}

absl::StatusOr<std::unique_ptr<MappedFile>> MappedFile::Open(const std::string& path,
                                                             std::string_view display_name) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT || err == ENOTDIR) {
      return absl::NotFoundError(Cat(display_name, ": file not found"));
    }
    if (err == EACCES || err == EPERM) {
      return absl::PermissionDeniedError(Cat(display_name, ": permission denied"));
    }
    return absl::InvalidArgumentError(
        Cat(display_name, ": cannot open: ", std::strerror(err)));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return absl::InvalidArgumentError(
        Cat(display_name, ": cannot stat: ", std::strerror(err)));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(Cat(display_name, ": not a regular file"));
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  const uint8_t* base = nullptr;
  if (size > 0) {
    if (size > SIZE_MAX) {
      ::close(fd);
      return absl::InvalidArgumentError(Cat(display_name, ": file too large to map"));
    }
    void* p = ::mmap(nullptr, static_cast<size_t>(size), PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      return absl::InvalidArgumentError(
          Cat(display_name, ": cannot map: ", std::strerror(err)));
    }
    base = static_cast<const uint8_t*>(p);
  }
  std::unique_ptr<MappedFile> f(new MappedFile(fd, base, size, std::string(display_name)));
  f->ino_ = st.st_ino;
  f->dev_ = st.st_dev;
  f->mtime_ns_ = MtimeNs(st);
  return f;
}

absl::Status MappedFile::Read(uint64_t offset, std::span<uint8_t> dst) const {
  if (offset > size_ || dst.size() > size_ - offset) {
    return absl::InvalidArgumentError(Cat(display_name_, ": read of ", dst.size(),
                                                   " bytes at offset ", offset,
                                                   " is past the end of the file (", size_,
                                                   " bytes)"));
  }
  size_t done = 0;
  while (done < dst.size()) {
    const ssize_t r = ::pread(fd_, dst.data() + done, dst.size() - done,
                              static_cast<off_t>(offset + done));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      return absl::InvalidArgumentError(
          Cat(display_name_, ": read error: ", std::strerror(errno)));
    }
    if (r == 0) {
      return absl::InvalidArgumentError(Cat(
          display_name_, ": file shrank while being read (expected ", size_, " bytes)"));
    }
    done += static_cast<size_t>(r);
  }
  return absl::OkStatus();
}

absl::Status MappedFile::CheckUnchanged() const {
  struct stat st;
  if (::fstat(fd_, &st) != 0) {
    return absl::InvalidArgumentError(
        Cat(display_name_, ": cannot stat: ", std::strerror(errno)));
  }
  if (static_cast<uint64_t>(st.st_size) != size_) {
    return absl::InvalidArgumentError(Cat(display_name_, ": file changed during load (",
                                                   size_, " bytes at open, now ", st.st_size,
                                                   ")"));
  }
  if (st.st_ino != ino_ || st.st_dev != dev_ || MtimeNs(st) != mtime_ns_) {
    return absl::InvalidArgumentError(
        Cat(display_name_, ": file was modified during load"));
  }
  return absl::OkStatus();
}

}  // namespace kiln::engine
