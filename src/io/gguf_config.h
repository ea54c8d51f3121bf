#pragma once
// GGUF metadata → ModelConfig, for the llama.cpp architectures retort runs (qwen2, llama).
#include "io/gguf.h"
#include "io/model_config.h"

namespace retort {

ModelConfig model_config_from_gguf(const GgufFile& gguf);

}  // namespace retort
