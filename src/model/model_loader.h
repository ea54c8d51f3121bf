#pragma once
// Opens a model from disk, whatever its format, and binds it to a backend.
#include <memory>
#include <string>

#include "io/gguf.h"
#include "io/model_config.h"
#include "io/safetensors.h"
#include "model/transformer.h"

namespace retort {

struct LoadedModel {
  std::string path;
  ModelConfig config;
  std::unique_ptr<Checkpoint> checkpoint;  // owns the mmap'd weights of a HF directory ...
  std::unique_ptr<GgufFile> gguf;          // ... or of a GGUF file
  std::unique_ptr<Transformer> transformer;
};

// PATH is a Hugging Face checkpoint directory (config.json + safetensors) or a GGUF file.
std::unique_ptr<LoadedModel> load_model(const std::string& path, Backend& backend);

}  // namespace retort
