#pragma once
// GGUF v3, the single-file format of llama.cpp: a header of typed key/value metadata, a table of
// tensors (name, dims, ggml type, offset) and the aligned tensor data. Read by mmap with every
// count, length, type, offset and size bounds-checked against the file.
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/safetensors.h"
#include "util/mapped_file.h"

namespace retort {

enum class GgufType : uint32_t {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, Bool = 7, String = 8, Array = 9, U64 = 10,
  I64 = 11, F64 = 12,
};

// ggml tensor types as GGUF numbers them.
enum class GgmlType : uint32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9, Q2_K = 10, Q3_K = 11,
  Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15, BF16 = 30,
};

struct GgufMetadata {
  GgufType type = GgufType::U32;
  GgufType array_type = GgufType::U32;  // element type when type is Array
  nlohmann::json value;                 // numbers, bools, strings, arrays of them
};

constexpr uint64_t kGgufDefaultAlignment = 32;

struct GgufTensorInfo {
  std::string name;
  std::vector<uint64_t> dims;  // GGUF order: dims[0] is the innermost (contiguous) dimension
  GgmlType type = GgmlType::F32;
  uint64_t offset = 0;         // from the start of the data section
  uint64_t size_bytes = 0;
};

// Bytes of a tensor of `elements` values of `type`; errors for types retort cannot read and for
// an element count that does not fill whole blocks.
uint64_t ggml_type_bytes(GgmlType type, uint64_t elements, const std::string& tensor_name);
std::string ggml_type_name(GgmlType type);
// The DType a ggml type is read as (nullopt for types retort has no kernels for), and back.
std::optional<DType> dtype_of_ggml(GgmlType type);
GgmlType ggml_of_dtype(DType dtype);

class GgufFile {
 public:
  // `mode`: MapMode::Map reads only the pages parsed (metadata, tensor table) until tensors are used.
  explicit GgufFile(const std::string& path, MapMode mode = default_map_mode());
  // Parses a buffer (fuzzing, tests); `bytes` must outlive the object.
  GgufFile(std::span<const uint8_t> bytes, std::string name);

  const std::string& path() const { return name_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  const std::vector<std::pair<std::string, GgufMetadata>>& metadata() const { return metadata_; }
  const GgufMetadata* find(const std::string& key) const;
  // Typed look-ups: an error naming the key when it is absent or of another kind.
  std::string get_string(const std::string& key) const;
  int64_t get_int(const std::string& key) const;
  double get_float(const std::string& key) const;
  std::optional<int64_t> find_int(const std::string& key) const;

  const std::vector<GgufTensorInfo>& tensor_infos() const { return tensors_; }
  // Views of the tensors whose types map onto DType (f32/f16/bf16/q8_0/q4_0/q4_k/q6_k), in HF
  // dim order (reversed).
  const std::vector<TensorView>& tensor_views() const { return views_; }
  const uint8_t* tensor_data(const GgufTensorInfo& info) const { return data_start_ + info.offset; }
  // The file's bytes in memory; nullptr when parsed from a caller's buffer.
  MappedFile* mapped_file() { return file_.get(); }

 private:
  void parse(std::span<const uint8_t> bytes);

  std::unique_ptr<MappedFile> file_;
  std::string name_;
  uint32_t version_ = 0;
  uint64_t alignment_ = kGgufDefaultAlignment;
  std::vector<std::pair<std::string, GgufMetadata>> metadata_;
  std::map<std::string, size_t> metadata_index_;
  std::vector<GgufTensorInfo> tensors_;
  std::vector<TensorView> views_;
  const uint8_t* data_start_ = nullptr;
};

bool looks_like_gguf(const std::string& path);

}  // namespace retort
