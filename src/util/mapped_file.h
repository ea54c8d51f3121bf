#pragma once
// A whole file in memory, read-only. Two ways to get there:
//  - Map: mmap the file; zero-copy, pages come from the page cache on first touch.
//  - LoadHugePages (the default): read it into anonymous memory backed by transparent huge pages.
// Weights are streamed in full for every decoded token, and over 4 KiB page-cache pages the TLB
// misses cost more than the copy: measured 4.6x faster decode (1 thread) and 2x (2 threads) on a
// 3.5 GB model here. `retort ... --mmap` keeps the zero-copy mapping (less memory, slower decode).
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace retort {

enum class MapMode { Map, LoadHugePages };

// The mode new MappedFiles use; set once at start-up from the command line.
void set_default_map_mode(MapMode mode);
MapMode default_map_mode();

class MappedFile {
 public:
  explicit MappedFile(const std::string& path, MapMode mode = default_map_mode());
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::string& path() const { return path_; }
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  std::span<const uint8_t> bytes() const { return {data_, size_}; }

  // True when the bytes are this process's own copy (loaded into huge pages), not a view of the
  // file: only then can they be rewritten in place (a backend repacking weights for its kernels).
  bool is_private_copy() const { return private_copy_; }
  // Makes the copy's bytes (data()) writable until seal(); only for a private copy.
  void begin_writing();
  void seal();  // read-only again

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  bool private_copy_ = false;
};

std::string read_text_file(const std::string& path);

}  // namespace retort
