#include "util/huge_page_buffer.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "util/error.h"

namespace retort {

HugePageBuffer::HugePageBuffer(size_t bytes) : size_(bytes) {
  if (bytes == 0) return;
  void* memory = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  require(memory != MAP_FAILED, ErrorKind::Io, "cannot reserve {:.1f} MiB of memory: {}; ask for a smaller context or KV pool",
          bytes / 1048576.0, std::strerror(errno));
  ::madvise(memory, bytes, MADV_HUGEPAGE);  // advice only: without THP the pages are 4 KiB
  data_ = static_cast<uint8_t*>(memory);
}

void HugePageBuffer::commit() {
  constexpr size_t kPageBytes = 4096;  // the smallest page: a huge page is faulted by its first byte
  for (size_t offset = 0; offset < size_; offset += kPageBytes) data_[offset] = 0;
}

HugePageBuffer::~HugePageBuffer() {
  if (data_ != nullptr) ::munmap(data_, size_);
}

HugePageBuffer::HugePageBuffer(HugePageBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

HugePageBuffer& HugePageBuffer::operator=(HugePageBuffer&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) ::munmap(data_, size_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

}  // namespace retort
