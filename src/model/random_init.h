#pragma once
// A randomly initialised Hugging Face checkpoint for any config: weights ~ N(0, σ²) as
// transformers initialises them (σ = initializer_range, 0.02), norms 1, biases 0. For benchmarks
// on real shapes without real weights, and as the starting point of a student.
#include <cstdint>
#include <string>

#include "io/model_config.h"
#include "tensor/dtype.h"

namespace retort {

struct RandomInitOptions {
  uint64_t seed = 0;
  DType dtype = DType::BF16;
  double stddev = 0.02;
  uint64_t max_shard_bytes = 5ull << 30;  // as transformers' save_pretrained shards
};

// Writes DIR/config.json and DIR/model.safetensors (or shards); the same seed gives the same bytes
// whatever the thread count.
void write_random_checkpoint(const ModelConfig& config, const std::string& dir, const RandomInitOptions& options);

}  // namespace retort
