#include "train/parameters.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "kernels/cpu/cpu_backend.h"
#include "util/error.h"

namespace retort::train {

const ParameterInfo& ParameterLayout::find(TensorRole role, int layer) const {
  for (const auto& t : tensors)
    if (t.role == role && t.layer == layer) return t;
  fail(ErrorKind::Internal, "parameter layout has no tensor of role {} in layer {}", int(role), layer);
}

ParameterLayout parameter_layout(const ModelConfig& config) {
  ParameterLayout layout;
  for (const ExpectedTensor& e : expected_tensors(config)) {
    ParameterInfo info{e.name, e.role, e.layer, e.shape, layout.total, 1, e.shape.size() >= 2};
    for (int64_t dim : e.shape) info.count *= static_cast<size_t>(dim);
    layout.total += info.count;
    layout.tensors.push_back(std::move(info));
  }
  return layout;
}

template <typename T>
ParameterViews<T> parameter_views(const ParameterLayout& layout, const ModelConfig& config, T* base) {
  auto at = [&](TensorRole role, int layer) { return base + layout.find(role, layer).offset; };
  // The fused views rely on the table's order; check it rather than assume it.
  auto adjacent = [&](TensorRole first, TensorRole second, int layer) {
    const auto& a = layout.find(first, layer);
    require(a.offset + a.count == layout.find(second, layer).offset, ErrorKind::Internal,
            "parameter '{}' is not followed by its fused partner", a.name);
  };
  ParameterViews<T> views;
  views.wte = at(TensorRole::TokenEmbedding, -1);
  for (int l = 0; l < config.num_layers; ++l) {
    adjacent(TensorRole::Wq, TensorRole::Wk, l);
    adjacent(TensorRole::Wk, TensorRole::Wv, l);
    adjacent(TensorRole::WGate, TensorRole::WUp, l);
    LayerParameters<T> p{};
    p.attn_norm = at(TensorRole::AttnNorm, l);
    p.wqkv = at(TensorRole::Wq, l);
    if (config.attention_bias) {
      adjacent(TensorRole::Bq, TensorRole::Bk, l);
      adjacent(TensorRole::Bk, TensorRole::Bv, l);
      p.bqkv = at(TensorRole::Bq, l);
    } else {
      p.bqkv = nullptr;
    }
    p.wo = at(TensorRole::Wo, l);
    p.mlp_norm = at(TensorRole::MlpNorm, l);
    p.wgate_up = at(TensorRole::WGate, l);
    p.wdown = at(TensorRole::WDown, l);
    views.layers.push_back(p);
  }
  views.final_norm = at(TensorRole::OutputNorm, -1);
  views.lm_head = config.tie_word_embeddings ? views.wte : at(TensorRole::LmHead, -1);
  return views;
}

template <typename T>
void load_parameters(const ParameterLayout& layout, const Checkpoint& checkpoint, T* base) {
  std::vector<float> values;
  for (const ParameterInfo& info : layout.tensors) {
    const TensorView* tensor = checkpoint.find(info.name);
    require(tensor != nullptr, ErrorKind::InvalidInput,
            "{}: tensor '{}' [{}] is missing; the checkpoint does not match the model config",
            checkpoint.directory(), info.name, fmt::join(info.shape, ", "));
    require(tensor->shape == info.shape, ErrorKind::InvalidInput,
            "{}: tensor '{}' has shape [{}] but the model config needs [{}]; is this a checkpoint of another model?",
            checkpoint.directory(), info.name, fmt::join(tensor->shape, ", "), fmt::join(info.shape, ", "));
    require(is_float(tensor->dtype), ErrorKind::Unsupported, "{}: tensor '{}' is {}; training needs f32/f16/bf16 weights",
            checkpoint.directory(), info.name, dtype_name(tensor->dtype));
    values.resize(info.count);
    convert_to_f32(values.data(), tensor->data, tensor->dtype, static_cast<int64_t>(info.count));
    for (size_t i = 0; i < info.count; ++i) base[info.offset + i] = static_cast<T>(values[i]);
  }
}

std::vector<TensorToWrite> parameter_tensors(const ParameterLayout& layout, const float* base) {
  std::vector<TensorToWrite> tensors;
  for (const ParameterInfo& info : layout.tensors) {
    const auto* bytes = reinterpret_cast<const uint8_t*>(base + info.offset);
    tensors.push_back({info.name, DType::F32, info.shape, {bytes, info.count * sizeof(float)}});
  }
  return tensors;
}

template ParameterViews<float> parameter_views(const ParameterLayout&, const ModelConfig&, float*);
template ParameterViews<double> parameter_views(const ParameterLayout&, const ModelConfig&, double*);
template void load_parameters(const ParameterLayout&, const Checkpoint&, float*);
template void load_parameters(const ParameterLayout&, const Checkpoint&, double*);

}  // namespace retort::train
