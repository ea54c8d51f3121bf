#include "model/model_loader.h"

#include <filesystem>

#include "io/gguf_config.h"
#include "util/error.h"

namespace retort {

std::unique_ptr<LoadedModel> load_model(const std::string& path, Backend& backend) {
  namespace fs = std::filesystem;
  require(fs::exists(path), ErrorKind::NotFound, "model path '{}' does not exist", path);
  auto model = std::make_unique<LoadedModel>();
  model->path = path;
  if (!fs::is_directory(path)) {
    require(looks_like_gguf(path), ErrorKind::InvalidInput,
            "'{}' is neither a model directory (config.json + *.safetensors) nor a GGUF file", path);
    model->gguf = std::make_unique<GgufFile>(path);
    model->config = model_config_from_gguf(*model->gguf);
    validate_model_config(model->config, path);
    ModelWeights weights = bind_weights(model->config, tensor_source(*model->gguf, model->config));
    model->transformer = std::make_unique<Transformer>(model->config, std::move(weights), backend);
    return model;
  }
  const fs::path config_path = fs::path(path) / "config.json";
  require(fs::exists(config_path), ErrorKind::NotFound,
          "'{}' has no config.json; a Hugging Face checkpoint directory needs one", path);
  model->config = load_hf_config(config_path.string());
  validate_model_config(model->config, config_path.string());
  model->checkpoint = Checkpoint::open_directory(path);
  ModelWeights weights = bind_weights(model->config, tensor_source(*model->checkpoint));
  model->transformer = std::make_unique<Transformer>(model->config, std::move(weights), backend);
  return model;
}

}  // namespace retort
