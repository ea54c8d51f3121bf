#include "model/model_loader.h"

#include <cstdlib>
#include <filesystem>
#include <string_view>

#include "io/gguf_config.h"
#include "util/error.h"
#include "util/mapped_file.h"

namespace retort {

namespace {

// Quantized matrices of a GGUF loaded into this process's own memory are rewritten in place into
// the layout the backend's kernels read fastest (same bytes; see Backend::repack). The embedding
// table stays in rows (it is read a row per token), and so does an LM head tied to it.
void repack_for_backend(ModelWeights& weights, GgufFile& gguf, Backend& backend) {
  MappedFile* file = gguf.mapped_file();
  if (file == nullptr || !file->is_private_copy()) return;  // a view of the file: used as it is
  if (const char* repack = std::getenv("RETORT_REPACK"); repack != nullptr && std::string_view(repack) == "0")
    return;  // the row layout's kernels, for side-by-side measurements
  file->begin_writing();
  auto repack = [&](WeightMatrix& w) { backend.repack(w, const_cast<void*>(w.data)); };
  for (LayerWeights& layer : weights.layers) {
    for (WeightMatrix* w : {&layer.wq, &layer.wk, &layer.wv, &layer.wo, &layer.w_gate, &layer.w_up, &layer.w_down})
      repack(*w);
  }
  if (weights.lm_head.data != weights.token_embedding.data) repack(weights.lm_head);
  file->seal();
}

}  // namespace

std::unique_ptr<LoadedModel> load_model(const std::string& path, Backend& backend) {
  namespace fs = std::filesystem;
  require(fs::exists(path), ErrorKind::NotFound, "model path '{}' does not exist", path);
  auto model = std::make_unique<LoadedModel>();
  model->path = path;
  if (!fs::is_directory(path)) {
    // Reading a FIFO would wait for a writer forever.
    require(fs::is_regular_file(path), ErrorKind::InvalidInput,
            "'{}' is not a regular file (a FIFO or device?); give a GGUF file or a model directory", path);
    require(looks_like_gguf(path), ErrorKind::InvalidInput,
            "'{}' is neither a model directory (config.json + *.safetensors) nor a GGUF file", path);
    model->gguf = std::make_unique<GgufFile>(path);
    model->config = model_config_from_gguf(*model->gguf);
    validate_model_config(model->config, path);
    ModelWeights weights = bind_weights(model->config, tensor_source(*model->gguf, model->config));
    repack_for_backend(weights, *model->gguf, backend);
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
