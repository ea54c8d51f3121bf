#pragma once
// What a model will hold in memory once loaded, known before loading it: a server with a memory
// budget decides from this which models to unload first. The weights are the model's files (they
// are read whole into memory, or mapped whole and touched by every token), the KV cache its pool.
// Not counted: the tokenizer, activations and logits of one batch (a few MiB for 1.5B models).
#include <cstdint>
#include <string>

#include "io/model_config.h"
#include "tensor/dtype.h"

namespace retort {

struct ModelFootprint {
  ModelConfig config;
  uint64_t weights_bytes = 0;   // the files the loader reads: one GGUF, or the checkpoint's .safetensors
  uint64_t kv_cache_bytes = 0;  // KvCache::bytes_for(config, kv_tokens, …, kv_type)
  uint64_t total() const { return weights_bytes + kv_cache_bytes; }
};

// Reads only the model's configuration (config.json, or a GGUF's metadata through a mapping that
// touches no tensor data) and the weight files' sizes. Throws retort::Error as load_model would for
// a path that is not a model.
ModelFootprint estimate_model_footprint(const std::string& path, int64_t kv_tokens, DType kv_type);

}  // namespace retort
