// GGUF parsing. Every read goes through ByteReader, which refuses to step past the end, so a
// truncated or lying file becomes an error naming the field, never a wild read.
#include <cstring>
#include <fstream>

#include "io/gguf.h"
#include "util/error.h"

namespace retort {

namespace {

constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" little-endian
constexpr uint64_t kMaxDims = 4;
constexpr int kMaxArrayDepth = 2;

struct BlockLayout {
  GgmlType type;
  const char* name;
  uint64_t block_elements;
  uint64_t block_bytes;
};

constexpr BlockLayout kLayouts[] = {
    {GgmlType::F32, "f32", 1, 4},        {GgmlType::F16, "f16", 1, 2},        {GgmlType::BF16, "bf16", 1, 2},
    {GgmlType::Q4_0, "q4_0", 32, 18},    {GgmlType::Q4_1, "q4_1", 32, 20},    {GgmlType::Q5_0, "q5_0", 32, 22},
    {GgmlType::Q5_1, "q5_1", 32, 24},    {GgmlType::Q8_0, "q8_0", 32, 34},    {GgmlType::Q8_1, "q8_1", 32, 36},
    {GgmlType::Q2_K, "q2_k", 256, 84},   {GgmlType::Q3_K, "q3_k", 256, 110}, {GgmlType::Q4_K, "q4_k", 256, 144},
    {GgmlType::Q5_K, "q5_k", 256, 176},  {GgmlType::Q6_K, "q6_k", 256, 210}, {GgmlType::Q8_K, "q8_k", 256, 292},
};

const BlockLayout* layout_of(GgmlType type) {
  for (const auto& layout : kLayouts)
    if (layout.type == type) return &layout;
  return nullptr;
}

class ByteReader {
 public:
  ByteReader(std::span<const uint8_t> bytes, const std::string& file) : bytes_(bytes), file_(file) {}

  template <typename T>
  T read(const char* what) {
    need(sizeof(T), what);
    T value;
    std::memcpy(&value, bytes_.data() + at_, sizeof(T));
    at_ += sizeof(T);
    return value;
  }

  std::string read_string(const char* what) {
    const auto length = read<uint64_t>(what);
    need(length, what);
    std::string text(reinterpret_cast<const char*>(bytes_.data() + at_), length);
    at_ += length;
    return text;
  }

  void need(uint64_t count, const char* what) const {
    require(count <= bytes_.size() - at_, ErrorKind::InvalidInput,
            "{}: truncated GGUF: {} needs {} bytes at offset {} but the file has {} left; re-download or re-convert it",
            file_, what, count, at_, bytes_.size() - at_);
  }
  uint64_t position() const { return at_; }
  uint64_t remaining() const { return bytes_.size() - at_; }

 private:
  std::span<const uint8_t> bytes_;
  const std::string& file_;
  uint64_t at_ = 0;
};

nlohmann::json read_value(ByteReader& in, GgufType type, GgufType* array_type, int depth, const std::string& file,
                          const std::string& key) {
  switch (type) {
    case GgufType::U8: return in.read<uint8_t>("a u8 value");
    case GgufType::I8: return in.read<int8_t>("an i8 value");
    case GgufType::U16: return in.read<uint16_t>("a u16 value");
    case GgufType::I16: return in.read<int16_t>("an i16 value");
    case GgufType::U32: return in.read<uint32_t>("a u32 value");
    case GgufType::I32: return in.read<int32_t>("an i32 value");
    case GgufType::F32: return in.read<float>("an f32 value");
    case GgufType::U64: return in.read<uint64_t>("a u64 value");
    case GgufType::I64: return in.read<int64_t>("an i64 value");
    case GgufType::F64: return in.read<double>("an f64 value");
    case GgufType::Bool: {
      const auto byte = in.read<uint8_t>("a bool value");
      require(byte <= 1, ErrorKind::InvalidInput, "{}: metadata '{}' holds bool byte {}, expected 0 or 1", file, key, byte);
      return byte == 1;
    }
    case GgufType::String: return in.read_string("a string value");
    case GgufType::Array: {
      require(depth < kMaxArrayDepth, ErrorKind::InvalidInput, "{}: metadata '{}' nests arrays too deeply", file, key);
      const auto element_type = static_cast<GgufType>(in.read<uint32_t>("an array's element type"));
      const auto count = in.read<uint64_t>("an array's length");
      // Every element takes at least one byte: a count beyond the bytes left is a lie.
      require(count <= in.remaining(), ErrorKind::InvalidInput,
              "{}: metadata '{}' claims {} array elements but only {} bytes remain", file, key, count, in.remaining());
      if (array_type != nullptr) *array_type = element_type;
      nlohmann::json items = nlohmann::json::array();
      for (uint64_t i = 0; i < count; ++i) items.push_back(read_value(in, element_type, nullptr, depth + 1, file, key));
      return items;
    }
  }
  fail(ErrorKind::InvalidInput, "{}: metadata '{}' has unknown value type {}; is this a GGUF file from a newer writer?",
       file, key, static_cast<uint32_t>(type));
}

}  // namespace

std::optional<DType> dtype_of_ggml(GgmlType type) {
  switch (type) {
    case GgmlType::F32: return DType::F32;
    case GgmlType::F16: return DType::F16;
    case GgmlType::BF16: return DType::BF16;
    case GgmlType::Q8_0: return DType::Q8_0;
    case GgmlType::Q4_0: return DType::Q4_0;
    case GgmlType::Q4_K: return DType::Q4_K;
    case GgmlType::Q6_K: return DType::Q6_K;
    default: return std::nullopt;
  }
}

GgmlType ggml_of_dtype(DType dtype) {
  for (GgmlType type : {GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_K,
                        GgmlType::Q6_K}) {
    if (dtype_of_ggml(type) == dtype) return type;
  }
  fail(ErrorKind::Unsupported, "{} has no GGUF tensor type", dtype_name(dtype));
}

uint64_t ggml_type_bytes(GgmlType type, uint64_t elements, const std::string& tensor_name) {
  const BlockLayout* layout = layout_of(type);
  require(layout != nullptr, ErrorKind::Unsupported, "tensor '{}' has ggml type {}, which retort does not read",
          tensor_name, static_cast<uint32_t>(type));
  require(elements % layout->block_elements == 0, ErrorKind::InvalidInput,
          "tensor '{}' has {} elements, not a whole number of {}-element {} blocks", tensor_name, elements,
          layout->block_elements, layout->name);
  return elements / layout->block_elements * layout->block_bytes;
}

std::string ggml_type_name(GgmlType type) {
  const BlockLayout* layout = layout_of(type);
  return layout ? layout->name : "type#" + std::to_string(static_cast<uint32_t>(type));
}

GgufFile::GgufFile(const std::string& path, MapMode mode) : file_(std::make_unique<MappedFile>(path, mode)), name_(path) {
  parse(file_->bytes());
}

GgufFile::GgufFile(std::span<const uint8_t> bytes, std::string name) : name_(std::move(name)) { parse(bytes); }

void GgufFile::parse(std::span<const uint8_t> bytes) {
  ByteReader in(bytes, name_);
  require(in.read<uint32_t>("the magic number") == kGgufMagic, ErrorKind::InvalidInput,
          "{}: not a GGUF file (the first four bytes are not 'GGUF')", name_);
  version_ = in.read<uint32_t>("the version");
  require(version_ == 2 || version_ == 3, ErrorKind::Unsupported, "{}: GGUF version {}; retort reads versions 2 and 3",
          name_, version_);
  const auto tensor_count = in.read<uint64_t>("the tensor count");
  const auto metadata_count = in.read<uint64_t>("the metadata count");
  // Each entry needs well over 8 bytes; counts past the file size are lies, caught before allocating.
  require(tensor_count <= bytes.size() / 8 && metadata_count <= bytes.size() / 8, ErrorKind::InvalidInput,
          "{}: header claims {} tensors and {} metadata entries, more than a {}-byte file can hold", name_,
          tensor_count, metadata_count, bytes.size());
  for (uint64_t i = 0; i < metadata_count; ++i) {
    std::string key = in.read_string("a metadata key");
    GgufMetadata entry;
    entry.type = static_cast<GgufType>(in.read<uint32_t>("a metadata value type"));
    entry.value = read_value(in, entry.type, &entry.array_type, 0, name_, key);
    require(metadata_index_.emplace(key, metadata_.size()).second, ErrorKind::InvalidInput,
            "{}: metadata key '{}' appears twice", name_, key);
    metadata_.emplace_back(std::move(key), std::move(entry));
  }
  if (auto alignment = find_int("general.alignment")) {
    require(*alignment > 0 && (*alignment & (*alignment - 1)) == 0, ErrorKind::InvalidInput,
            "{}: general.alignment is {}, expected a power of two", name_, *alignment);
    alignment_ = static_cast<uint64_t>(*alignment);
  }
  for (uint64_t i = 0; i < tensor_count; ++i) {
    GgufTensorInfo info;
    info.name = in.read_string("a tensor name");
    const auto dim_count = in.read<uint32_t>("a tensor's dimension count");
    require(dim_count >= 1 && dim_count <= kMaxDims, ErrorKind::InvalidInput,
            "{}: tensor '{}' has {} dimensions, expected 1 to {}", name_, info.name, dim_count, kMaxDims);
    uint64_t elements = 1;
    for (uint32_t d = 0; d < dim_count; ++d) {
      const auto dim = in.read<uint64_t>("a tensor dimension");
      require(dim > 0 && dim <= (uint64_t{1} << 40) && elements <= (uint64_t{1} << 62) / dim, ErrorKind::InvalidInput,
              "{}: tensor '{}' has an impossible dimension {}", name_, info.name, dim);
      elements *= dim;
      info.dims.push_back(dim);
    }
    info.type = static_cast<GgmlType>(in.read<uint32_t>("a tensor type"));
    info.offset = in.read<uint64_t>("a tensor offset");
    info.size_bytes = ggml_type_bytes(info.type, elements, info.name);
    tensors_.push_back(std::move(info));
  }
  const uint64_t data_offset = (in.position() + alignment_ - 1) / alignment_ * alignment_;
  require(data_offset <= bytes.size(), ErrorKind::InvalidInput, "{}: the data section starts past the end of the file",
          name_);
  data_start_ = bytes.data() + data_offset;
  const uint64_t data_size = bytes.size() - data_offset;
  std::map<std::string, bool> seen;
  for (const auto& info : tensors_) {
    require(!seen[info.name], ErrorKind::InvalidInput, "{}: tensor '{}' appears twice", name_, info.name);
    seen[info.name] = true;
    require(info.offset % alignment_ == 0, ErrorKind::InvalidInput,
            "{}: tensor '{}' starts at offset {}, not a multiple of the alignment {}", name_, info.name, info.offset,
            alignment_);
    require(info.offset <= data_size && info.size_bytes <= data_size - info.offset, ErrorKind::InvalidInput,
            "{}: tensor '{}' spans bytes [{}, {}) of a {}-byte data section; the file is truncated or corrupt", name_,
            info.name, info.offset, info.offset + info.size_bytes, data_size);
    std::optional<DType> dtype = dtype_of_ggml(info.type);
    if (!dtype) continue;
    TensorView view{info.name, *dtype, {}, data_start_ + info.offset, info.size_bytes, name_};
    for (auto it = info.dims.rbegin(); it != info.dims.rend(); ++it) view.shape.push_back(static_cast<int64_t>(*it));
    views_.push_back(std::move(view));
  }
}

const GgufMetadata* GgufFile::find(const std::string& key) const {
  auto it = metadata_index_.find(key);
  return it == metadata_index_.end() ? nullptr : &metadata_[it->second].second;
}

std::string GgufFile::get_string(const std::string& key) const {
  const GgufMetadata* entry = find(key);
  require(entry != nullptr && entry->value.is_string(), ErrorKind::InvalidInput,
          "{}: metadata '{}' is {}; expected a string", name_, key, entry ? "not a string" : "missing");
  return entry->value.get<std::string>();
}

std::optional<int64_t> GgufFile::find_int(const std::string& key) const {
  const GgufMetadata* entry = find(key);
  if (entry == nullptr) return std::nullopt;
  require(entry->value.is_number_integer(), ErrorKind::InvalidInput, "{}: metadata '{}' should be an integer",
          name_, key);
  return entry->value.get<int64_t>();
}

int64_t GgufFile::get_int(const std::string& key) const {
  auto value = find_int(key);
  require(value.has_value(), ErrorKind::InvalidInput, "{}: metadata '{}' is missing; expected an integer", name_, key);
  return *value;
}

double GgufFile::get_float(const std::string& key) const {
  const GgufMetadata* entry = find(key);
  require(entry != nullptr && entry->value.is_number(), ErrorKind::InvalidInput,
          "{}: metadata '{}' is {}; expected a number", name_, key, entry ? "not a number" : "missing");
  return entry->value.get<double>();
}

bool looks_like_gguf(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  return in.read(magic, 4) && std::memcmp(magic, "GGUF", 4) == 0;
}

}  // namespace retort
