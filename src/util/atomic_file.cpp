#include "util/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

#include "util/error.h"
#include "util/output_path.h"

namespace retort {

AtomicFile::AtomicFile(std::string target_path) : target_(std::move(target_path)) {
  // The rename in commit() would replace whatever is at the target: only a regular file may be.
  check_output_file(target_);
  temp_ = target_ + ".tmp." + std::to_string(::getpid());
  fd_ = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) {
    fail(ErrorKind::Io, "cannot create '{}': {} (is the directory there and writable?)", temp_,
         std::strerror(errno));
  }
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(temp_.c_str());
}

void AtomicFile::write(const void* data, size_t size) {
  const auto* bytes = static_cast<const uint8_t*>(data);
  while (size > 0) {
    ssize_t n = ::write(fd_, bytes, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail(ErrorKind::Io, "cannot write '{}': {}", temp_, std::strerror(errno));
    }
    bytes += n;
    size -= static_cast<size_t>(n);
    written_ += static_cast<uint64_t>(n);
  }
}

void AtomicFile::write_zeros(size_t count) {
  static const std::vector<uint8_t> zeros(4096, 0);
  while (count > 0) {
    size_t chunk = std::min(count, zeros.size());
    write(zeros.data(), chunk);
    count -= chunk;
  }
}

void AtomicFile::commit() {
  if (::fsync(fd_) != 0) fail(ErrorKind::Io, "cannot fsync '{}': {}", temp_, std::strerror(errno));
  ::close(fd_);
  fd_ = -1;
  if (::rename(temp_.c_str(), target_.c_str()) != 0) {
    fail(ErrorKind::Io, "cannot rename '{}' to '{}': {}", temp_, target_, std::strerror(errno));
  }
  committed_ = true;
  // Make the rename itself durable.
  std::string dir = std::filesystem::path(target_).parent_path().string();
  int dir_fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    ::fsync(dir_fd);
    ::close(dir_fd);
  }
}

void write_file_atomically(const std::string& path, std::string_view contents) {
  AtomicFile file(path);
  file.write(contents);
  file.commit();
}

}  // namespace retort
