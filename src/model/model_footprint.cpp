#include "model/model_footprint.h"

#include <algorithm>
#include <filesystem>

#include "io/gguf.h"
#include "io/gguf_config.h"
#include "model/kv_cache.h"
#include "util/error.h"

namespace retort {

namespace {

namespace fs = std::filesystem;

// The .safetensors files Checkpoint::open_directory maps: model.safetensors when present (it wins
// over an index, as in transformers), else the shards, which are all the directory's others.
uint64_t checkpoint_weight_bytes(const fs::path& dir) {
  const fs::path single = dir / "model.safetensors";
  if (fs::exists(single)) return fs::file_size(single);
  uint64_t bytes = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.is_regular_file() && entry.path().extension() == ".safetensors") bytes += entry.file_size();
  }
  require(bytes > 0, ErrorKind::NotFound, "no weights in '{}': no .safetensors files; point at a Hugging Face checkpoint "
          "directory", dir.string());
  return bytes;
}

}  // namespace

ModelFootprint estimate_model_footprint(const std::string& path, int64_t kv_tokens, DType kv_type) {
  require(fs::exists(path), ErrorKind::NotFound, "model path '{}' does not exist", path);
  ModelFootprint footprint;
  if (fs::is_directory(path)) {
    const fs::path config_path = fs::path(path) / "config.json";
    require(fs::exists(config_path), ErrorKind::NotFound,
            "'{}' has no config.json; a Hugging Face checkpoint directory needs one", path);
    footprint.config = load_hf_config(config_path.string());
    validate_model_config(footprint.config, config_path.string());
    footprint.weights_bytes = checkpoint_weight_bytes(path);
  } else {
    require(fs::is_regular_file(path) && looks_like_gguf(path), ErrorKind::InvalidInput,
            "'{}' is neither a model directory (config.json + *.safetensors) nor a GGUF file", path);
    const GgufFile gguf(path, MapMode::Map);
    footprint.config = model_config_from_gguf(gguf);
    validate_model_config(footprint.config, path);
    footprint.weights_bytes = fs::file_size(path);
  }
  footprint.kv_cache_bytes = KvCache::bytes_for(footprint.config, kv_tokens, KvCache::kDefaultBlockSize, kv_type);
  return footprint;
}

}  // namespace retort
