#pragma once
// safetensors: an 8-byte little-endian header length, a JSON header naming each tensor's dtype,
// shape and [begin, end) byte span, then the data. Read by mmap with zero-copy views; a checkpoint
// may be sharded through model.safetensors.index.json. Written atomically.
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "tensor/dtype.h"
#include "util/mapped_file.h"

namespace retort {

struct TensorView {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;  // points into the mapped file
  size_t size_bytes = 0;
  std::string file;               // which file it lives in, for error messages

  int64_t element_count() const;
};

// One .safetensors file, validated strictly on open.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);
  // Parses an in-memory buffer (used by the fuzz target and tests); `bytes` must outlive this.
  static std::vector<TensorView> parse(std::span<const uint8_t> bytes, const std::string& name,
                                       std::map<std::string, std::string>* metadata);

  const std::vector<TensorView>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::string& path() const { return file_.path(); }

 private:
  MappedFile file_;
  std::vector<TensorView> tensors_;
  std::map<std::string, std::string> metadata_;
};

// All tensors of a checkpoint directory (model.safetensors, or shards via the index), by name.
class Checkpoint {
 public:
  static std::unique_ptr<Checkpoint> open_directory(const std::string& dir);

  const TensorView* find(const std::string& name) const;
  const TensorView& get(const std::string& name) const;  // error naming the checkpoint if absent
  std::vector<std::string> names() const;
  const std::string& directory() const { return directory_; }
  std::vector<std::string> file_paths() const;  // the .safetensors files, in the order opened
  uint64_t total_bytes() const;                 // sum of the tensors' data bytes

 private:
  void add_file(const std::string& path);  // errors if a tensor name repeats across files

  std::string directory_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const TensorView*> by_name_;
};

struct TensorToWrite {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  std::span<const uint8_t> bytes;
  // Instead of `bytes`: a tensor made as it is written, `generated_bytes` long, so a writer holds
  // one such tensor in memory at a time (`retort init` of a 70B config).
  std::function<void(std::span<uint8_t>)> generate;
  uint64_t generated_bytes = 0;
  uint64_t size() const { return generate ? generated_bytes : bytes.size(); }
};

// Writes one file atomically (temp + fsync + rename).
void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata = {});
// Writes `dir`/model.safetensors, or model-0000i-of-0000n.safetensors shards plus
// model.safetensors.index.json when the total exceeds max_shard_bytes.
void write_safetensors_checkpoint(const std::string& dir, const std::vector<TensorToWrite>& tensors,
                                  uint64_t max_shard_bytes,
                                  const std::map<std::string, std::string>& metadata = {});

}  // namespace retort
