#pragma once
// The GGUF metadata llama.cpp expects for a model: architecture hyper-parameters and the
// tokenizer (tokens, types, merges, special ids, pre-tokenizer name, chat template), written from a
// ModelConfig and a HF tokenizer.json.
#include <string>

#include "io/gguf_writer.h"
#include "io/model_config.h"

namespace retort {

void write_model_metadata(GgufWriter& writer, const ModelConfig& config, const std::string& name, uint32_t file_type);
// Reads DIR/tokenizer.json (+ tokenizer_config.json) and writes the tokenizer.ggml.* keys.
void write_tokenizer_metadata(GgufWriter& writer, const std::string& hf_dir, int64_t vocab_size);

}  // namespace retort
