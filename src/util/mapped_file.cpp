#include "util/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <cstring>
#include <fstream>
#include <sstream>

#include "util/error.h"

namespace retort {

namespace {
MapMode g_default_map_mode = MapMode::LoadHugePages;

// Reads the whole file into fresh anonymous memory advised to use huge pages; nullptr on failure
// (the caller falls back to mmap).
void* load_into_huge_pages(int fd, size_t size) {
  void* memory = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (memory == MAP_FAILED) return nullptr;
  ::madvise(memory, size, MADV_HUGEPAGE);
  size_t done = 0;
  while (done < size) {
    ssize_t n = ::pread(fd, static_cast<char*>(memory) + done, std::min<size_t>(size - done, 64u << 20),
                        static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ::munmap(memory, size);
      return nullptr;
    }
    done += static_cast<size_t>(n);
  }
  ::mprotect(memory, size, PROT_READ);  // weights are read-only, as with the mapping
  return memory;
}
}  // namespace

void set_default_map_mode(MapMode mode) { g_default_map_mode = mode; }
MapMode default_map_mode() { return g_default_map_mode; }

MappedFile::MappedFile(const std::string& path, MapMode mode) : path_(path) {
  // O_NONBLOCK: opening a FIFO would otherwise wait for a writer forever (fstat refuses it below);
  // on a regular file it changes nothing.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    fail(errno == ENOENT ? ErrorKind::NotFound : ErrorKind::Io, "cannot open '{}': {}", path,
         std::strerror(errno));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(ErrorKind::InvalidInput, "'{}' is not a regular file (a directory, FIFO or device?); give the path of a file",
         path);
  }
  size_ = static_cast<size_t>(st.st_size);
  if (size_ > 0 && mode == MapMode::LoadHugePages) {
    data_ = static_cast<const uint8_t*>(load_into_huge_pages(fd, size_));
    private_copy_ = data_ != nullptr;
  }
  if (size_ > 0 && data_ == nullptr) {
    void* mapped = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (mapped == MAP_FAILED) {
      int err = errno;
      ::close(fd);
      fail(ErrorKind::Io, "cannot mmap '{}' ({} bytes): {}", path, size_, std::strerror(err));
    }
    data_ = static_cast<const uint8_t*>(mapped);
  }
  ::close(fd);
}

void MappedFile::begin_writing() {
  require(private_copy_, ErrorKind::Internal, "'{}' is a view of the file, not a copy to rewrite", path_);
  require(::mprotect(const_cast<uint8_t*>(data_), size_, PROT_READ | PROT_WRITE) == 0, ErrorKind::Io,
          "cannot make the loaded copy of '{}' writable: {}", path_, std::strerror(errno));
}

void MappedFile::seal() {
  if (private_copy_) ::mprotect(const_cast<uint8_t*>(data_), size_, PROT_READ);
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), size_);
}

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(ErrorKind::NotFound, "cannot open '{}': {}", path, std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) fail(ErrorKind::Io, "error while reading '{}'", path);
  return text.str();
}

}  // namespace retort
