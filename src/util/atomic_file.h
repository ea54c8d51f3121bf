#pragma once
// Writes that never leave a half-written file behind: data goes to a temporary file beside the
// target, is fsync'ed, then renamed over the target (and the directory fsync'ed). If anything fails
// or the writer is destroyed without commit(), the temporary file is removed and the target is
// untouched.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace retort {

class AtomicFile {
 public:
  explicit AtomicFile(std::string target_path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t size);
  void write(std::string_view text) { write(text.data(), text.size()); }
  void write_zeros(size_t count);
  uint64_t bytes_written() const { return written_; }
  void commit();  // fsync + rename; the file is in place when this returns

 private:
  std::string target_;
  std::string temp_;
  int fd_ = -1;
  uint64_t written_ = 0;
  bool committed_ = false;
};

// Convenience for small files (configs, JSON reports).
void write_file_atomically(const std::string& path, std::string_view contents);

}  // namespace retort
