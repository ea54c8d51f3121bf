#include "io/gguf_writer.h"

#include <future>
#include <set>

#include "util/atomic_file.h"
#include "util/error.h"

namespace retort {

namespace {

// Serialises into memory first: the header is small next to the tensors.
class HeaderBytes {
 public:
  template <typename T>
  void put(T value) {
    const auto* bytes = reinterpret_cast<const uint8_t*>(&value);
    data_.insert(data_.end(), bytes, bytes + sizeof(T));
  }
  void put_string(const std::string& text) {
    put<uint64_t>(text.size());
    data_.insert(data_.end(), text.begin(), text.end());
  }
  void put_value(GgufType type, const nlohmann::json& value) {
    switch (type) {
      case GgufType::U8: put<uint8_t>(value.get<uint8_t>()); break;
      case GgufType::I8: put<int8_t>(value.get<int8_t>()); break;
      case GgufType::U16: put<uint16_t>(value.get<uint16_t>()); break;
      case GgufType::I16: put<int16_t>(value.get<int16_t>()); break;
      case GgufType::U64: put<uint64_t>(value.get<uint64_t>()); break;
      case GgufType::I64: put<int64_t>(value.get<int64_t>()); break;
      case GgufType::F64: put<double>(value.get<double>()); break;
      case GgufType::U32: put<uint32_t>(value.get<uint32_t>()); break;
      case GgufType::I32: put<int32_t>(value.get<int32_t>()); break;
      case GgufType::F32: put<float>(value.get<float>()); break;
      case GgufType::Bool: put<uint8_t>(value.get<bool>() ? 1 : 0); break;
      case GgufType::String: put_string(value.get<std::string>()); break;
      default: fail(ErrorKind::Internal, "GgufWriter cannot write value type {}", static_cast<uint32_t>(type));
    }
  }
  const std::vector<uint8_t>& bytes() const { return data_; }
  void pad_to(uint64_t alignment) {
    while (data_.size() % alignment != 0) data_.push_back(0);
  }

 private:
  std::vector<uint8_t> data_;
};

uint64_t align_up(uint64_t value, uint64_t alignment) { return (value + alignment - 1) / alignment * alignment; }

}  // namespace

void GgufWriter::add_string(const std::string& key, const std::string& value) {
  metadata_.push_back({key, {GgufType::String, GgufType::String, value}});
}
void GgufWriter::add_u32(const std::string& key, uint32_t value) {
  metadata_.push_back({key, {GgufType::U32, GgufType::U32, value}});
}
void GgufWriter::add_i32(const std::string& key, int32_t value) {
  metadata_.push_back({key, {GgufType::I32, GgufType::I32, value}});
}
void GgufWriter::add_f32(const std::string& key, float value) {
  metadata_.push_back({key, {GgufType::F32, GgufType::F32, value}});
}
void GgufWriter::add_bool(const std::string& key, bool value) {
  metadata_.push_back({key, {GgufType::Bool, GgufType::Bool, value}});
}
void GgufWriter::add_string_array(const std::string& key, const std::vector<std::string>& values) {
  metadata_.push_back({key, {GgufType::Array, GgufType::String, values}});
}
void GgufWriter::add_i32_array(const std::string& key, const std::vector<int32_t>& values) {
  metadata_.push_back({key, {GgufType::Array, GgufType::I32, values}});
}

void GgufWriter::add_metadata(const std::string& key, const GgufMetadata& entry) {
  metadata_.push_back({key, entry});
}

void GgufWriter::add_tensor(const std::string& name, GgmlType type, std::vector<uint64_t> dims,
                            TensorProducer produce) {
  uint64_t elements = 1;
  for (uint64_t d : dims) elements *= d;
  const uint64_t size_bytes = ggml_type_bytes(type, elements, name);
  tensors_.push_back({GgufTensorInfo{name, std::move(dims), type, 0, size_bytes}, std::move(produce)});
}

void GgufWriter::write(const std::string& path, const std::function<void(const std::string&)>& on_tensor) const {
  std::set<std::string> names;
  HeaderBytes header;
  header.put<uint32_t>(0x46554747);  // "GGUF"
  header.put<uint32_t>(3);
  header.put<uint64_t>(tensors_.size());
  header.put<uint64_t>(metadata_.size() + 1);  // + general.alignment
  header.put_string("general.alignment");
  header.put<uint32_t>(static_cast<uint32_t>(GgufType::U32));
  header.put<uint32_t>(static_cast<uint32_t>(kGgufDefaultAlignment));
  for (const auto& [key, entry] : metadata_) {
    require(names.insert(key).second, ErrorKind::Internal, "GGUF metadata key '{}' added twice", key);
    header.put_string(key);
    header.put<uint32_t>(static_cast<uint32_t>(entry.type));
    if (entry.type == GgufType::Array) {
      header.put<uint32_t>(static_cast<uint32_t>(entry.array_type));
      header.put<uint64_t>(entry.value.size());
      for (const auto& item : entry.value) header.put_value(entry.array_type, item);
    } else {
      header.put_value(entry.type, entry.value);
    }
  }
  uint64_t offset = 0;
  for (const auto& tensor : tensors_) {
    header.put_string(tensor.info.name);
    header.put<uint32_t>(static_cast<uint32_t>(tensor.info.dims.size()));
    for (uint64_t d : tensor.info.dims) header.put<uint64_t>(d);
    header.put<uint32_t>(static_cast<uint32_t>(tensor.info.type));
    header.put<uint64_t>(offset);
    offset = align_up(offset + tensor.info.size_bytes, kGgufDefaultAlignment);
  }
  header.pad_to(kGgufDefaultAlignment);

  AtomicFile file(path);
  file.write(header.bytes().data(), header.bytes().size());
  // Tensor k is written (copied into the page cache, 10 % of a quantize run) on a second thread
  // while tensor k + 1 is produced, so each of the two buffers is refilled only after its write.
  std::vector<uint8_t> buffers[2];
  std::future<void> writing;
  for (size_t k = 0; k < tensors_.size(); ++k) {
    const Tensor& tensor = tensors_[k];
    std::vector<uint8_t>& bytes = buffers[k % 2];
    bytes.assign(tensor.info.size_bytes, 0);
    tensor.produce(bytes);
    if (writing.valid()) writing.get();  // the other buffer's write, rethrowing its error
    const uint64_t padding = align_up(tensor.info.size_bytes, kGgufDefaultAlignment) - tensor.info.size_bytes;
    writing = std::async(std::launch::async, [&file, &bytes, padding] {
      file.write(bytes.data(), bytes.size());
      file.write_zeros(padding);
    });
    if (on_tensor) on_tensor(tensor.info.name);
  }
  if (writing.valid()) writing.get();
  file.commit();
}

}  // namespace retort
