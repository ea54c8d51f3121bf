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

// Whether the page cache's copy of a file this large should be let go as it is copied: above a
// quarter of the machine's memory. The copy and the cache would otherwise hold the model twice: a
// 16 GB model on a 24 GiB machine, its file cached by an earlier run, found 2 MiB pages for 12.8–13.0
// of its 15.0 GiB (bench_inference's "in huge pages"), and 14.96 GiB with the cache let go. The price
// is that the next load of that file reads the disk; smaller files stay cached.
bool drops_page_cache(size_t file_bytes) {
  const long pages = ::sysconf(_SC_PHYS_PAGES), page_bytes = ::sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page_bytes <= 0) return false;
  return file_bytes > static_cast<size_t>(pages) * static_cast<size_t>(page_bytes) / 4;
}

// Reads the whole file into fresh anonymous memory advised to use huge pages; nullptr on failure
// (the caller falls back to mmap).
void* load_into_huge_pages(int fd, size_t size) {
  void* memory = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (memory == MAP_FAILED) return nullptr;
  ::madvise(memory, size, MADV_HUGEPAGE);
  const bool drop_cache = drops_page_cache(size);
  size_t done = 0;
  while (done < size) {
    ssize_t n = ::pread(fd, static_cast<char*>(memory) + done, std::min<size_t>(size - done, 64u << 20),
                        static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ::munmap(memory, size);
      return nullptr;
    }
    // A hint: freed behind the copy, the cached pages leave room for the rest of it in 2 MiB pages.
    if (drop_cache) ::posix_fadvise(fd, static_cast<off_t>(done), n, POSIX_FADV_DONTNEED);
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
