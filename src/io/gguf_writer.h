#pragma once
// Writes GGUF v3 files llama.cpp loads: typed metadata, the tensor table with aligned offsets,
// then the data, all through an atomic file (temp + fsync + rename).
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/gguf.h"

namespace retort {

class GgufWriter {
 public:
  void add_string(const std::string& key, const std::string& value);
  void add_u32(const std::string& key, uint32_t value);
  void add_i32(const std::string& key, int32_t value);
  void add_f32(const std::string& key, float value);
  void add_bool(const std::string& key, bool value);
  void add_string_array(const std::string& key, const std::vector<std::string>& values);
  void add_i32_array(const std::string& key, const std::vector<int32_t>& values);
  void add_metadata(const std::string& key, const GgufMetadata& entry);  // e.g. copied from another file

  // Fills `out` (already sized) with a tensor's bytes; called during write(), one tensor at a time,
  // so a converter holds one tensor in memory, not the model.
  using TensorProducer = std::function<void(std::vector<uint8_t>& out)>;

  // `dims` in GGUF order (innermost first).
  void add_tensor(const std::string& name, GgmlType type, std::vector<uint64_t> dims, TensorProducer produce);

  // Writes everything; `on_tensor` is told each tensor as its data is written (progress bars).
  void write(const std::string& path, const std::function<void(const std::string&)>& on_tensor = {}) const;

 private:
  struct Tensor {
    GgufTensorInfo info;
    TensorProducer produce;
  };
  std::vector<std::pair<std::string, GgufMetadata>> metadata_;
  std::vector<Tensor> tensors_;
};

}  // namespace retort
