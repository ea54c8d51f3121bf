#include "model/weights.h"

#include <map>
#include <set>

#include "kernels/cpu/cpu_backend.h"
#include "model/tensor_table.h"
#include "util/error.h"

namespace retort {

namespace {

std::string shape_text(const std::vector<int64_t>& shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

// Buffers the model keeps alongside the checkpoint that carry no weights (HF saves them in some
// older checkpoints).
bool is_ignorable_buffer(const std::string& name) {
  return name.find("rotary_emb.inv_freq") != std::string::npos;
}

WeightMatrix as_matrix(const TensorView& tensor) {
  return WeightMatrix{tensor.dtype, tensor.data, tensor.shape[0], tensor.shape[1]};
}

std::vector<float> as_f32_vector(const TensorView& tensor) {
  std::vector<float> values(static_cast<size_t>(tensor.element_count()));
  convert_to_f32(values.data(), tensor.data, tensor.dtype, tensor.element_count());
  return values;
}

const TensorView& checked_tensor(const TensorSource& source, const ExpectedTensor& expected) {
  const TensorView* tensor = source.find(expected.name);
  require(tensor != nullptr, ErrorKind::InvalidInput,
          "{}: tensor '{}' {} is missing; the checkpoint does not match its config.json", source.label,
          expected.name, shape_text(expected.shape));
  require(tensor->shape == expected.shape, ErrorKind::InvalidInput,
          "{}: tensor '{}' has shape {} but the config implies {}; check config.json against the weights",
          source.label, expected.name, shape_text(tensor->shape), shape_text(expected.shape));
  const bool is_matrix = expected.shape.size() == 2;
  require(is_float(tensor->dtype) ? tensor->dtype != DType::F64 : (is_matrix && is_block_quantized(tensor->dtype)),
          ErrorKind::Unsupported,
          "{}: tensor '{}' is {}; retort runs f32, f16 and bf16 weights, and q8_0/q4_0/q4_k/q6_k matrices",
          source.label, expected.name, dtype_name(tensor->dtype));
  return *tensor;
}

void bind_one(ModelWeights& weights, const ExpectedTensor& expected, const TensorView& tensor) {
  LayerWeights* layer = expected.layer >= 0 ? &weights.layers[static_cast<size_t>(expected.layer)] : nullptr;
  switch (expected.role) {
    case TensorRole::TokenEmbedding: weights.token_embedding = as_matrix(tensor); break;
    case TensorRole::OutputNorm: weights.output_norm = as_f32_vector(tensor); break;
    case TensorRole::LmHead: weights.lm_head = as_matrix(tensor); break;
    case TensorRole::AttnNorm: layer->attn_norm = as_f32_vector(tensor); break;
    case TensorRole::Wq: layer->wq = as_matrix(tensor); break;
    case TensorRole::Wk: layer->wk = as_matrix(tensor); break;
    case TensorRole::Wv: layer->wv = as_matrix(tensor); break;
    case TensorRole::Wo: layer->wo = as_matrix(tensor); break;
    case TensorRole::Bq: layer->bq = as_f32_vector(tensor); break;
    case TensorRole::Bk: layer->bk = as_f32_vector(tensor); break;
    case TensorRole::Bv: layer->bv = as_f32_vector(tensor); break;
    case TensorRole::MlpNorm: layer->mlp_norm = as_f32_vector(tensor); break;
    case TensorRole::WGate: layer->w_gate = as_matrix(tensor); break;
    case TensorRole::WUp: layer->w_up = as_matrix(tensor); break;
    case TensorRole::WDown: layer->w_down = as_matrix(tensor); break;
  }
  if (tensor.shape.size() == 2) weights.matrix_bytes += tensor.size_bytes;
}

}  // namespace

TensorSource tensor_source(const Checkpoint& checkpoint) {
  return TensorSource{[&checkpoint](const std::string& name) { return checkpoint.find(name); },
                      checkpoint.names(), checkpoint.directory()};
}

TensorSource tensor_source(const GgufFile& gguf, const ModelConfig& config) {
  std::map<std::string, std::string> hf_of_gguf;
  for (const ExpectedTensor& expected : expected_tensors(config)) hf_of_gguf[expected.gguf_name] = expected.name;
  auto by_hf_name = std::make_shared<std::map<std::string, const TensorView*>>();
  TensorSource source;
  for (const TensorView& view : gguf.tensor_views()) {
    auto it = hf_of_gguf.find(view.name);
    const std::string hf_name = it == hf_of_gguf.end() ? view.name : it->second;
    (*by_hf_name)[hf_name] = &view;
  }
  for (const GgufTensorInfo& info : gguf.tensor_infos()) {
    if (info.name == "rope_freqs.weight") continue;  // read into the config's rope settings
    auto it = hf_of_gguf.find(info.name);
    source.names.push_back(it == hf_of_gguf.end() ? info.name : it->second);
    require(by_hf_name->count(source.names.back()), ErrorKind::Unsupported,
            "{}: tensor '{}' is {}; retort runs f32, f16, bf16, q8_0, q4_0, q4_k and q6_k GGUF tensors", gguf.path(), info.name,
            ggml_type_name(info.type));
  }
  source.find = [by_hf_name](const std::string& name) -> const TensorView* {
    auto it = by_hf_name->find(name);
    return it == by_hf_name->end() ? nullptr : it->second;
  };
  source.label = gguf.path();
  source.rope_layout = config.arch == Architecture::Llama ? RopeLayout::Interleaved : RopeLayout::RotateHalf;
  return source;
}

ModelWeights bind_weights(const ModelConfig& config, const TensorSource& source) {
  ModelWeights weights;
  weights.rope_layout = source.rope_layout;
  weights.layers.resize(static_cast<size_t>(config.num_layers));
  std::set<std::string> consumed;
  for (const ExpectedTensor& expected : expected_tensors(config)) {
    bind_one(weights, expected, checked_tensor(source, expected));
    consumed.insert(expected.name);
  }
  if (config.tie_word_embeddings) {
    weights.lm_head = weights.token_embedding;
    consumed.insert("lm_head.weight");  // some tied checkpoints still store a copy; it is unused
  }
  std::vector<std::string> unused;
  for (const std::string& name : source.names) {
    if (!consumed.count(name) && !is_ignorable_buffer(name)) unused.push_back(name);
  }
  require(unused.empty(), ErrorKind::InvalidInput,
          "{}: {} tensor(s) not used by a {} model of this config, e.g. '{}'; the checkpoint and config.json "
          "disagree (layer count? tied embeddings?)",
          source.label, unused.size(), architecture_name(config.arch), unused.empty() ? "" : unused.front());
  return weights;
}

}  // namespace retort
