#pragma once
// Where each parameter lives in the one flat allocation that holds them all (and, at the same
// offsets, the gradients and the Adam moments), so the optimizer and a future allreduce are flat
// loops. The order is the tensor table's, which keeps q/k/v (and their biases) and gate/up
// adjacent: the training forward treats each adjacent group as one fused matrix.
#include <cstdint>
#include <string>
#include <vector>

#include "io/model_config.h"
#include "io/safetensors.h"
#include "model/tensor_table.h"

namespace retort::train {

struct ParameterInfo {
  std::string name;             // HF name
  TensorRole role;
  int layer = -1;
  std::vector<int64_t> shape;   // HF order
  size_t offset = 0;            // elements from the start of the flat allocation
  size_t count = 0;
  bool weight_decay = false;    // decoupled decay applies to tensors with two or more dimensions
};

struct ParameterLayout {
  std::vector<ParameterInfo> tensors;
  size_t total = 0;

  const ParameterInfo& find(TensorRole role, int layer) const;
};

ParameterLayout parameter_layout(const ModelConfig& config);

// Named views into one flat parameter (or gradient) allocation.
template <typename T>
struct LayerParameters {
  T* attn_norm;  // [C]
  T* wqkv;       // [q_dim + 2·kv_dim, C]: q_proj, k_proj, v_proj stacked
  T* bqkv;       // [q_dim + 2·kv_dim] or null (Llama)
  T* wo;         // [C, q_dim]
  T* mlp_norm;   // [C]
  T* wgate_up;   // [2F, C]: gate_proj then up_proj
  T* wdown;      // [C, F]
};

template <typename T>
struct ParameterViews {
  T* wte;          // [V, C]
  std::vector<LayerParameters<T>> layers;
  T* final_norm;   // [C]
  T* lm_head;      // [V, C]; the same memory as wte when the embeddings are tied
};

template <typename T>
ParameterViews<T> parameter_views(const ParameterLayout& layout, const ModelConfig& config, T* base);

// Copies every parameter out of a checkpoint (any float dtype) into `base`, checking names and
// shapes; errors name the checkpoint and what it should have held.
template <typename T>
void load_parameters(const ParameterLayout& layout, const Checkpoint& checkpoint, T* base);

// The parameters as safetensors tensors (f32 bytes viewing `base`), for writing a checkpoint.
std::vector<TensorToWrite> parameter_tensors(const ParameterLayout& layout, const float* base);

}  // namespace retort::train
