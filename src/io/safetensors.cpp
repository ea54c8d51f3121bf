#include "io/safetensors.h"

#include <algorithm>
#include <filesystem>
#include <set>

#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "util/atomic_file.h"
#include "util/error.h"
#include "util/input_limits.h"

namespace retort {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr uint64_t kHeaderLengthBytes = 8;
// The reference implementation refuses headers past 100 MB; a real checkpoint's header is a few
// hundred KB, so anything larger is corruption or an attack on the JSON parser.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
constexpr const char* kMetadataKey = "__metadata__";
constexpr const char* kSingleFileName = "model.safetensors";
constexpr const char* kIndexFileName = "model.safetensors.index.json";

uint64_t read_u64_le(const uint8_t* bytes) {
  uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = (value << 8) | bytes[i];
  return value;
}

std::string known_dtype_names() {
  std::vector<std::string_view> names;
  for (DType type : {DType::BF16, DType::F16, DType::F32, DType::F64, DType::I64, DType::I32,
                     DType::I16, DType::I8, DType::U8, DType::Bool}) {
    names.push_back(dtype_safetensors_name(type));
  }
  return fmt::format("{}", fmt::join(names, ", "));
}

// A JSON number that is a whole, non-negative value fitting int64 (shape entries, offsets).
std::optional<int64_t> as_non_negative_int(const json& value) {
  if (value.is_number_unsigned()) {
    uint64_t number = value.get<uint64_t>();
    if (number > static_cast<uint64_t>(INT64_MAX)) return std::nullopt;
    return static_cast<int64_t>(number);
  }
  if (value.is_number_integer()) {
    int64_t number = value.get<int64_t>();
    if (number < 0) return std::nullopt;
    return number;
  }
  return std::nullopt;
}

json parse_header_json(std::span<const uint8_t> header, const std::string& file) {
  try {
    const std::string_view text(reinterpret_cast<const char*>(header.data()), header.size());
    json parsed = parse_json_bounded(text, fmt::format("'{}': the safetensors header", file));
    require(parsed.is_object(), ErrorKind::InvalidInput,
            "'{}': the safetensors header should be a JSON object, found a JSON {}; the file is "
            "not a safetensors checkpoint or is corrupt",
            file, parsed.type_name());
    return parsed;
  } catch (const json::exception& error) {
    // parse_error for malformed text; out_of_range for a number past what JSON numbers hold here
    // (e.g. 166e6666666666666666666, found by fuzz_safetensors).
    fail(ErrorKind::InvalidInput,
         "'{}': the safetensors header is not valid JSON ({}); the file is corrupt or not "
         "safetensors — re-download or re-export it",
         file, echo_excerpt(error.what()));
  }
}

std::map<std::string, std::string> parse_metadata(const json& value, const std::string& file) {
  require(value.is_object(), ErrorKind::InvalidInput,
          "'{}': '{}' should be an object of string values, found a JSON {}", file, kMetadataKey,
          value.type_name());
  std::map<std::string, std::string> metadata;
  for (const auto& [key, entry] : value.items()) {
    require(entry.is_string(), ErrorKind::InvalidInput,
            "'{}': '{}' entry '{}' should be a string, found a JSON {}", file, kMetadataKey, key,
            entry.type_name());
    metadata[key] = entry.get<std::string>();
  }
  return metadata;
}

struct TensorEntry {
  TensorView view;
  uint64_t begin = 0;  // offsets within the data area
  uint64_t end = 0;
};

std::vector<int64_t> parse_shape(const json& entry, const std::string& name, const std::string& file) {
  auto shape_field = entry.find("shape");
  require(shape_field != entry.end() && shape_field->is_array(), ErrorKind::InvalidInput,
          "'{}': tensor '{}' should have a 'shape' array, found {}", file, name,
          shape_field == entry.end() ? "none" : shape_field->type_name());
  std::vector<int64_t> shape;
  for (const json& dimension : *shape_field) {
    auto size = as_non_negative_int(dimension);
    require(size.has_value(), ErrorKind::InvalidInput,
            "'{}': tensor '{}' has shape entry {}, expected a non-negative integer", file, echo_excerpt(name),
            echo_excerpt(dimension.dump()));
    shape.push_back(*size);
  }
  return shape;
}

// Bytes that `shape` of `dtype` occupies, or nullopt when that overflows 64 bits.
std::optional<uint64_t> byte_size_of(const std::vector<int64_t>& shape, DType dtype) {
  uint64_t bytes = dtype_size(dtype);
  for (int64_t dimension : shape) {
    if (__builtin_mul_overflow(bytes, static_cast<uint64_t>(dimension), &bytes)) return std::nullopt;
  }
  return bytes;
}

TensorEntry parse_tensor_entry(const std::string& name, const json& entry, const std::string& file) {
  require(entry.is_object(), ErrorKind::InvalidInput,
          "'{}': tensor '{}' should be described by a JSON object, found a JSON {}", file, name,
          entry.type_name());
  auto dtype_field = entry.find("dtype");
  require(dtype_field != entry.end() && dtype_field->is_string(), ErrorKind::InvalidInput,
          "'{}': tensor '{}' should have a 'dtype' string such as \"BF16\"", file, name);
  const auto dtype_text = dtype_field->get<std::string>();
  auto dtype = dtype_from_safetensors(dtype_text);
  require(dtype.has_value(), ErrorKind::Unsupported,
          "tensor '{}' in '{}' has dtype '{}', retort reads {}; convert the checkpoint to bf16 "
          "(or f16/f32) first",
          name, file, dtype_text, known_dtype_names());

  TensorEntry parsed;
  parsed.view.name = name;
  parsed.view.dtype = *dtype;
  parsed.view.shape = parse_shape(entry, name, file);
  parsed.view.file = file;

  auto offsets = entry.find("data_offsets");
  require(offsets != entry.end() && offsets->is_array() && offsets->size() == 2,
          ErrorKind::InvalidInput, "'{}': tensor '{}' should have 'data_offsets' [begin, end]", file,
          name);
  auto begin = as_non_negative_int((*offsets)[0]);
  auto end = as_non_negative_int((*offsets)[1]);
  require(begin && end && *begin <= *end, ErrorKind::InvalidInput,
          "'{}': tensor '{}' has data_offsets {}, expected two non-negative integers begin <= end",
          file, name, offsets->dump());
  parsed.begin = static_cast<uint64_t>(*begin);
  parsed.end = static_cast<uint64_t>(*end);

  auto expected_bytes = byte_size_of(parsed.view.shape, *dtype);
  require(expected_bytes.has_value() && *expected_bytes == parsed.end - parsed.begin,
          ErrorKind::InvalidInput,
          "'{}': tensor '{}' of dtype {} and shape [{}] needs {} bytes but its data_offsets span {} "
          "bytes; the header is inconsistent, re-export the file",
          file, name, dtype_text, fmt::join(parsed.view.shape, ", "),
          expected_bytes ? fmt::to_string(*expected_bytes) : std::string("more than 2^64"),
          parsed.end - parsed.begin);
  parsed.view.size_bytes = static_cast<size_t>(parsed.end - parsed.begin);
  return parsed;
}

// Spans must lie inside the data area and, sorted by begin, must not overlap.
void check_spans(std::vector<TensorEntry>& entries, uint64_t data_bytes, const std::string& file) {
  std::sort(entries.begin(), entries.end(), [](const TensorEntry& a, const TensorEntry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  const TensorEntry* previous = nullptr;
  for (const TensorEntry& entry : entries) {
    require(entry.end <= data_bytes, ErrorKind::InvalidInput,
            "'{}': tensor '{}' spans bytes [{}, {}) of the data area but the data area holds only {} "
            "bytes; the file is truncated, re-download it",
            file, entry.view.name, entry.begin, entry.end, data_bytes);
    if (previous != nullptr) {
      require(entry.begin >= previous->end, ErrorKind::InvalidInput,
              "'{}': tensors '{}' [{}, {}) and '{}' [{}, {}) overlap; the header is corrupt",
              file, previous->view.name, previous->begin, previous->end, entry.view.name,
              entry.begin, entry.end);
    }
    if (previous == nullptr || entry.end >= previous->end) previous = &entry;
  }
}

}  // namespace

int64_t TensorView::element_count() const {
  int64_t count = 1;
  for (int64_t dimension : shape) count *= dimension;
  return count;
}

std::vector<TensorView> SafetensorsFile::parse(std::span<const uint8_t> bytes, const std::string& name,
                                               std::map<std::string, std::string>* metadata) {
  require(bytes.size() >= kHeaderLengthBytes, ErrorKind::InvalidInput,
          "'{}' is {} bytes, too short for a safetensors file (8-byte header length, JSON header, "
          "data); it is truncated or not safetensors",
          name, bytes.size());
  const uint64_t header_bytes = read_u64_le(bytes.data());
  const uint64_t available = bytes.size() - kHeaderLengthBytes;
  require(header_bytes >= 2 && header_bytes <= available && header_bytes <= kMaxHeaderBytes,
          ErrorKind::InvalidInput,
          "'{}': the header length field says {} bytes, expected 2 to {} (the file has {} bytes "
          "after the length field); the file is truncated or not safetensors",
          name, header_bytes, std::min(available, kMaxHeaderBytes), available);

  const json header = parse_header_json(bytes.subspan(kHeaderLengthBytes, header_bytes), name);
  std::vector<TensorEntry> entries;
  for (const auto& [key, value] : header.items()) {
    if (key == kMetadataKey) {
      auto parsed_metadata = parse_metadata(value, name);
      if (metadata != nullptr) *metadata = std::move(parsed_metadata);
      continue;
    }
    entries.push_back(parse_tensor_entry(key, value, name));
  }

  const uint64_t data_begin = kHeaderLengthBytes + header_bytes;
  check_spans(entries, bytes.size() - data_begin, name);
  std::vector<TensorView> views;
  views.reserve(entries.size());
  for (TensorEntry& entry : entries) {
    entry.view.data = bytes.data() + data_begin + entry.begin;
    views.push_back(std::move(entry.view));
  }
  return views;
}

SafetensorsFile::SafetensorsFile(const std::string& path) : file_(path) {
  tensors_ = parse(file_.bytes(), path, &metadata_);
}

// ---------------------------------------------------------------------------------------------
// Checkpoint directories

namespace {

std::map<std::string, std::string> read_weight_map(const std::string& index_path) {
  json index;
  try {
    index = parse_json_bounded(read_text_file(index_path), "'" + index_path + "'");
  } catch (const json::exception& error) {
    fail(ErrorKind::InvalidInput, "'{}' is not valid JSON ({}); re-download the checkpoint's index",
         index_path, echo_excerpt(error.what()));
  }
  require(index.is_object() && index.contains("weight_map") && index["weight_map"].is_object(),
          ErrorKind::InvalidInput,
          "'{}' should be an object with a 'weight_map' object (tensor name → shard file)",
          index_path);
  std::map<std::string, std::string> weight_map;
  for (const auto& [tensor, shard] : index["weight_map"].items()) {
    require(shard.is_string(), ErrorKind::InvalidInput,
            "'{}': weight_map entry '{}' should name a shard file, found a JSON {}", index_path,
            tensor, shard.type_name());
    const auto shard_name = shard.get<std::string>();
    // Shards live beside the index; a path that climbs out is not a checkpoint we should follow.
    require(!shard_name.empty() && shard_name != "." && shard_name != ".." &&
                fs::path(shard_name).filename() == shard_name,
            ErrorKind::InvalidInput,
            "'{}': weight_map entry '{}' names '{}', expected a file name in the same directory",
            index_path, tensor, shard_name);
    weight_map[tensor] = shard_name;
  }
  return weight_map;
}

}  // namespace

std::unique_ptr<Checkpoint> Checkpoint::open_directory(const std::string& dir) {
  require(fs::is_directory(dir), ErrorKind::NotFound,
          "model directory '{}' does not exist (or is not a directory); pass the folder that holds "
          "config.json and the .safetensors files",
          dir);
  auto checkpoint = std::unique_ptr<Checkpoint>(new Checkpoint());
  checkpoint->directory_ = dir;
  const fs::path single = fs::path(dir) / kSingleFileName;
  const fs::path index = fs::path(dir) / kIndexFileName;

  // Like transformers, a single model.safetensors wins over an index.
  if (fs::exists(single)) {
    checkpoint->add_file(single.string());
    return checkpoint;
  }
  require(fs::exists(index), ErrorKind::NotFound,
          "no weights in '{}': looked for {} and {}; point at a Hugging Face checkpoint directory",
          dir, kSingleFileName, kIndexFileName);

  const auto weight_map = read_weight_map(index.string());
  std::set<std::string> shard_names;
  for (const auto& [tensor, shard] : weight_map) shard_names.insert(shard);
  for (const auto& shard : shard_names) {
    const fs::path shard_path = fs::path(dir) / shard;
    require(fs::exists(shard_path), ErrorKind::NotFound,
            "'{}' lists shard '{}' but '{}' does not exist; the download is incomplete", index.string(),
            shard, shard_path.string());
    checkpoint->add_file(shard_path.string());
  }
  for (const auto& [tensor, shard] : weight_map) {
    const TensorView* view = checkpoint->find(tensor);
    const std::string expected_file = (fs::path(dir) / shard).string();
    require(view != nullptr && view->file == expected_file, ErrorKind::InvalidInput,
            "'{}' places tensor '{}' in '{}' but {}; the index and the shards disagree, re-download",
            index.string(), tensor, shard,
            view == nullptr ? "'" + expected_file + "' does not hold it"
                            : "it is in '" + view->file + "'");
  }
  return checkpoint;
}

void Checkpoint::add_file(const std::string& path) {
  files_.push_back(std::make_unique<SafetensorsFile>(path));
  for (const TensorView& view : files_.back()->tensors()) {
    auto [existing, inserted] = by_name_.emplace(view.name, &view);
    require(inserted, ErrorKind::InvalidInput,
            "tensor '{}' is in both '{}' and '{}'; a checkpoint holds each tensor once", view.name,
            existing->second->file, view.file);
  }
}

const TensorView* Checkpoint::find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

const TensorView& Checkpoint::get(const std::string& name) const {
  const TensorView* view = find(name);
  require(view != nullptr, ErrorKind::NotFound,
          "checkpoint '{}' has no tensor '{}'; is it a checkpoint of the architecture config.json "
          "names?",
          directory_, name);
  return *view;
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> result;
  result.reserve(by_name_.size());
  for (const auto& [name, view] : by_name_) result.push_back(name);
  return result;
}

std::vector<std::string> Checkpoint::file_paths() const {
  std::vector<std::string> paths;
  for (const auto& file : files_) paths.push_back(file->path());
  return paths;
}

uint64_t Checkpoint::total_bytes() const {
  uint64_t total = 0;
  for (const auto& [name, view] : by_name_) total += view->size_bytes;
  return total;
}

// ---------------------------------------------------------------------------------------------
// Writing

namespace {

void check_tensors_to_write(const std::vector<TensorToWrite>& tensors, const std::string& path) {
  std::set<std::string> seen;
  for (const TensorToWrite& tensor : tensors) {
    require(tensor.name != kMetadataKey, ErrorKind::InvalidInput,
            "cannot write '{}': '{}' is reserved for metadata and cannot name a tensor", path,
            kMetadataKey);
    require(seen.insert(tensor.name).second, ErrorKind::InvalidInput,
            "cannot write '{}': tensor '{}' is given twice", path, tensor.name);
    for (int64_t dimension : tensor.shape) {
      require(dimension >= 0, ErrorKind::InvalidInput,
              "cannot write '{}': tensor '{}' has negative dimension {}", path, tensor.name, dimension);
    }
    auto bytes = byte_size_of(tensor.shape, tensor.dtype);
    require(bytes.has_value() && *bytes == tensor.size(), ErrorKind::InvalidInput,
            "cannot write '{}': tensor '{}' of dtype {} and shape [{}] needs {} bytes but {} were given",
            path, tensor.name, dtype_safetensors_name(tensor.dtype), fmt::join(tensor.shape, ", "),
            bytes ? fmt::to_string(*bytes) : std::string("more than 2^64"), tensor.size());
  }
}

// The header JSON, padded with spaces so the data area starts 8-byte aligned (as the reference
// writer does): readers can then view f32/f64 tensors in place without misaligned loads.
std::string make_header(const std::vector<TensorToWrite>& tensors,
                        const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header[kMetadataKey] = metadata;
  uint64_t offset = 0;
  for (const TensorToWrite& tensor : tensors) {
    const uint64_t end = offset + tensor.size();
    header[tensor.name] = {{"dtype", dtype_safetensors_name(tensor.dtype)},
                           {"shape", tensor.shape},
                           {"data_offsets", {offset, end}}};
    offset = end;
  }
  std::string text = header.dump();
  text.append((8 - (kHeaderLengthBytes + text.size()) % 8) % 8, ' ');
  return text;
}

uint64_t total_size(const std::vector<TensorToWrite>& tensors) {
  uint64_t total = 0;
  for (const TensorToWrite& tensor : tensors) total += tensor.size();
  return total;
}

// Greedy: a shard takes tensors in order until the next would push it past the limit. A tensor
// larger than the limit gets a shard of its own, as transformers does.
std::vector<std::vector<TensorToWrite>> split_into_shards(const std::vector<TensorToWrite>& tensors,
                                                          uint64_t max_shard_bytes) {
  std::vector<std::vector<TensorToWrite>> shards(1);
  uint64_t shard_bytes = 0;
  for (const TensorToWrite& tensor : tensors) {
    if (!shards.back().empty() && shard_bytes + tensor.size() > max_shard_bytes) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back().push_back(tensor);
    shard_bytes += tensor.size();
  }
  return shards;
}

void remove_if_present(const fs::path& path) {
  std::error_code ignored;
  fs::remove(path, ignored);
}

}  // namespace

void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  check_tensors_to_write(tensors, path);
  const std::string header = make_header(tensors, metadata);
  uint8_t length_field[kHeaderLengthBytes];
  uint64_t length = header.size();
  for (uint8_t& byte : length_field) {
    byte = static_cast<uint8_t>(length & 0xff);
    length >>= 8;
  }
  AtomicFile file(path);
  file.write(length_field, sizeof length_field);
  file.write(header);
  std::vector<uint8_t> generated;
  for (const TensorToWrite& tensor : tensors) {
    if (!tensor.generate) {
      file.write(tensor.bytes.data(), tensor.bytes.size());
      continue;
    }
    generated.resize(tensor.generated_bytes);
    tensor.generate(generated);
    file.write(generated.data(), generated.size());
  }
  file.commit();
}

void write_safetensors_checkpoint(const std::string& dir, const std::vector<TensorToWrite>& tensors,
                                  uint64_t max_shard_bytes,
                                  const std::map<std::string, std::string>& metadata) {
  std::error_code error;
  fs::create_directories(dir, error);
  require(!error, ErrorKind::Io, "cannot create checkpoint directory '{}': {}", dir, error.message());
  check_tensors_to_write(tensors, dir);
  // transformers refuses safetensors files whose metadata lacks a "format" it knows.
  auto file_metadata = metadata;
  file_metadata.emplace("format", "pt");

  const fs::path single = fs::path(dir) / kSingleFileName;
  const fs::path index = fs::path(dir) / kIndexFileName;
  const uint64_t total = total_size(tensors);
  if (total <= max_shard_bytes) {
    write_safetensors(single.string(), tensors, file_metadata);
    remove_if_present(index);  // a stale index from an earlier sharded save would mislead readers
    return;
  }

  const auto shards = split_into_shards(tensors, max_shard_bytes);
  nlohmann::ordered_json weight_map = nlohmann::ordered_json::object();
  for (size_t i = 0; i < shards.size(); ++i) {
    const std::string shard_name =
        fmt::format("model-{:05d}-of-{:05d}.safetensors", i + 1, shards.size());
    write_safetensors((fs::path(dir) / shard_name).string(), shards[i], file_metadata);
    for (const TensorToWrite& tensor : shards[i]) weight_map[tensor.name] = shard_name;
  }
  // The index goes last, so a crash midway never leaves an index naming shards that are not there.
  nlohmann::ordered_json index_json = {{"metadata", {{"total_size", total}}},
                                       {"weight_map", weight_map}};
  write_file_atomically(index.string(), index_json.dump(2) + "\n");
  remove_if_present(single);  // it would shadow the shards we just wrote
}

}  // namespace retort
