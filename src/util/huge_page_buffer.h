#pragma once
// Zeroed anonymous memory advised to use transparent huge pages (2 MiB on x86-64), for large
// buffers that are read in long strided sweeps: the KV cache. With 4 KiB pages a depth-4096 decode
// of a 1.5B model touched ~28,000 pages per token, far past the TLB, and its attention waited on
// page walks. Pages are only resident once written, so an unused part of a large pool costs nothing.
#include <cstddef>
#include <cstdint>

namespace retort {

class HugePageBuffer {
 public:
  HugePageBuffer() = default;
  explicit HugePageBuffer(size_t bytes);  // a clear error when the memory cannot be had
  ~HugePageBuffer();
  HugePageBuffer(HugePageBuffer&& other) noexcept;
  HugePageBuffer& operator=(HugePageBuffer&& other) noexcept;
  HugePageBuffer(const HugePageBuffer&) = delete;
  HugePageBuffer& operator=(const HugePageBuffer&) = delete;

  uint8_t* data() { return data_; }
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  // Writes every page once, so that the memory is resident now instead of on first use: a memory
  // budget then counts what the buffer really holds, and a machine short of memory says so at load.
  void commit();

 private:
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace retort
