#pragma once
// The tensors each architecture expects, by Hugging Face name, with shapes derived from the
// config. This table is the one place that knows names: the loader, `retort info`, `retort init`
// and the checkpoint writer all read it.
#include <cstdint>
#include <string>
#include <vector>

#include "io/model_config.h"

namespace retort {

enum class TensorRole {
  TokenEmbedding, OutputNorm, LmHead,
  AttnNorm, Wq, Wk, Wv, Wo, Bq, Bk, Bv,
  MlpNorm, WGate, WUp, WDown,
};

struct ExpectedTensor {
  std::string name;            // HF name, e.g. "model.layers.3.self_attn.q_proj.weight"
  std::string gguf_name;       // llama.cpp name, e.g. "blk.3.attn_q.weight"
  TensorRole role;
  int layer = -1;              // -1 for whole-model tensors
  std::vector<int64_t> shape;  // HF (PyTorch) order: [out_features, in_features]
};

// Every tensor a checkpoint of this config must hold, in a stable order (embedding, layers, head).
std::vector<ExpectedTensor> expected_tensors(const ModelConfig& config);

}  // namespace retort
