#pragma once
// The model's weights, bound by role from any tensor source (a safetensors checkpoint today, a
// GGUF file later). Matrices stay where the source keeps them (mmap'd); norms and biases, a few KB
// each, are converted to f32 once.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "io/model_config.h"
#include "io/gguf.h"
#include "io/safetensors.h"
#include "kernels/backend.h"

namespace retort {

struct LayerWeights {
  std::vector<float> attn_norm;  // [hidden]
  WeightMatrix wq, wk, wv, wo;   // [q_dim × hidden], [kv_dim × hidden] ×2, [hidden × q_dim]
  std::vector<float> bq, bk, bv; // empty when the architecture has no biases
  std::vector<float> mlp_norm;   // [hidden]
  WeightMatrix w_gate, w_up;     // [ffn × hidden]
  WeightMatrix w_down;           // [hidden × ffn]
};

struct ModelWeights {
  WeightMatrix token_embedding;    // [vocab × hidden]
  std::vector<LayerWeights> layers;
  std::vector<float> output_norm;  // [hidden]
  WeightMatrix lm_head;            // [vocab × hidden]; the embedding when tied
  uint64_t matrix_bytes = 0;       // bytes of all matrices, as stored (what decode reads per token)
  RopeLayout rope_layout = RopeLayout::RotateHalf;
};

// Where tensors come from: look-up by HF name, the list of all names, and a label for errors.
struct TensorSource {
  std::function<const TensorView*(const std::string&)> find;  // by HF name
  std::vector<std::string> names;                             // HF names of everything the source holds
  std::string label;
  RopeLayout rope_layout = RopeLayout::RotateHalf;            // how q/k rows pair up for rotation
};

TensorSource tensor_source(const Checkpoint& checkpoint);
// llama.cpp names mapped to HF ones through the tensor table; its llama files keep q/k rows in
// the interleaved rope layout, used as they are (no copy).
TensorSource tensor_source(const GgufFile& gguf, const ModelConfig& config);

// Binds every expected tensor, checking each shape and dtype and that none is left unused.
ModelWeights bind_weights(const ModelConfig& config, const TensorSource& source);

}  // namespace retort
