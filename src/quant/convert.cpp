#include "quant/convert.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string_view>

#include "io/gguf.h"
#include "io/gguf_config.h"
#include "io/gguf_writer.h"
#include "io/safetensors.h"
#include "kernels/cpu/cpu_backend.h"
#include "model/tensor_table.h"
#include "model/transformer.h"
#include "model/weights.h"
#include "quant/gguf_metadata.h"
#include "tensor/quant_blocks.h"
#include "tokenizer/gguf_vocab.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/log.h"
#include "util/thread_pool.h"

namespace retort {

namespace {

struct RecipeInfo {
  QuantRecipe recipe;
  const char* name;
  DType matrix_type;
  uint32_t llama_file_type;  // general.file_type as llama.cpp numbers it
};

constexpr RecipeInfo kRecipes[] = {
    {QuantRecipe::F32, "f32", DType::F32, 0},       {QuantRecipe::F16, "f16", DType::F16, 1},
    {QuantRecipe::BF16, "bf16", DType::BF16, 32},   {QuantRecipe::Q8_0, "q8_0", DType::Q8_0, 7},
    {QuantRecipe::Q4_0, "q4_0", DType::Q4_0, 2},    {QuantRecipe::Q4_K_M, "q4_k", DType::Q4_K, 15},
};

const RecipeInfo& recipe_info(QuantRecipe recipe) {
  for (const auto& info : kRecipes)
    if (info.recipe == recipe) return info;
  fail(ErrorKind::Internal, "unknown recipe");
}

// llama.cpp's Q4_K_M gives these layers' attn_v and ffn_down more bits: the first and last
// eighth of the stack and every third layer between.
bool layer_gets_more_bits(int layer, int64_t layers) {
  return layer < layers / 8 || layer >= 7 * layers / 8 || (layer - layers / 8) % 3 == 2;
}

// The storage type of one tensor under a recipe. Vectors stay f32. A block type that does not
// divide the row is an error for the plain recipes; Q4_K_M falls back to q8_0 there.
DType tensor_type(QuantRecipe recipe, const ExpectedTensor& tensor, int64_t layers) {
  if (tensor.shape.size() < 2) return DType::F32;
  DType type = recipe_info(recipe).matrix_type;
  if (recipe == QuantRecipe::Q4_K_M) {
    const bool sensitive = tensor.role == TensorRole::LmHead ||
                           ((tensor.role == TensorRole::Wv || tensor.role == TensorRole::WDown) &&
                            layer_gets_more_bits(tensor.layer, layers));
    if (sensitive) type = DType::Q6_K;
    if (tensor.shape[1] % dtype_block_elements(type) != 0) type = DType::Q8_0;
  }
  require(tensor.shape[1] % dtype_block_elements(type) == 0, ErrorKind::InvalidInput,
          "tensor '{}' has rows of {} values, not a multiple of the {}-value {} block; choose f16 or bf16 (or a type "
          "with smaller blocks)",
          tensor.name, tensor.shape[1], dtype_block_elements(type), dtype_name(type));
  return type;
}

// llama.cpp stores llama q/k rows so that rotary pairs are adjacent: within each head, row i of
// the first half goes to 2i and row i of the second half to 2i + 1.
std::vector<float> interleave_rotary_rows(const float* rows, int64_t count, int64_t heads, int64_t head_dim, int64_t cols) {
  std::vector<float> out(static_cast<size_t>(count));
  const int64_t half = head_dim / 2;
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t i = 0; i < head_dim; ++i) {
      const int64_t to = i < half ? 2 * i : 2 * (i - half) + 1;
      std::copy_n(rows + (h * head_dim + i) * cols, cols, out.data() + (h * head_dim + to) * cols);
    }
  return out;
}

void encode(const float* values, int64_t count, DType type, int64_t rows, int64_t cols, std::vector<uint8_t>& out) {
  if (type == DType::F32) {
    std::memcpy(out.data(), values, out.size());
  } else if (type == DType::F16 || type == DType::BF16) {
    auto* dst = reinterpret_cast<uint16_t*>(out.data());
    for (int64_t i = 0; i < count; ++i) dst[i] = type == DType::F16 ? f32_to_f16(values[i]) : f32_to_bf16(values[i]);
  } else {
    quantize_rows(block_type_of(type), values, out.data(), rows, cols);
  }
}

std::vector<uint64_t> gguf_dims(const std::vector<int64_t>& shape) {
  return {shape.rbegin(), shape.rend()};
}

// The f32 values of one tensor at a time, in one buffer that only grows: a fresh zero-filled
// vector per tensor made the kernel fault in and clear 7 GB for the 1.5B model, a third of
// `quantize --type q8_0`'s time.
class ValueBuffer {
 public:
  float* reserve(size_t count) {
    if (count > capacity_) {
      values_ = std::make_unique_for_overwrite<float[]>(count);
      capacity_ = count;
    }
    return values_.get();
  }

 private:
  std::unique_ptr<float[]> values_;
  size_t capacity_ = 0;
};

// The tensor's values as f32 in `buffer`, rows converted in parallel.
float* to_f32(const TensorView& view, ValueBuffer& buffer) {
  float* values = buffer.reserve(static_cast<size_t>(view.element_count()));
  const int64_t cols = view.shape.back();
  const int64_t rows = view.element_count() / cols;
  const size_t row_bytes = dtype_row_bytes(view.dtype, cols);
  thread_pool().parallel_for(static_cast<size_t>(rows), 16, [&](size_t begin, size_t end) {
    for (auto r = static_cast<int64_t>(begin); r < static_cast<int64_t>(end); ++r) {
      convert_to_f32(values + r * cols, view.data + r * row_bytes, view.dtype, cols);
    }
  });
  return values;
}

}  // namespace

QuantRecipe parse_quant_recipe(const std::string& name) {
  for (const auto& info : kRecipes)
    if (name == info.name) return info.recipe;
  if (name == "q4_k_m") return QuantRecipe::Q4_K_M;
  fail(ErrorKind::InvalidInput, "unknown type '{}'; choose f32, f16, bf16, q8_0, q4_0 or q4_k", name);
}

std::string recipe_name(QuantRecipe recipe) { return recipe_info(recipe).name; }

namespace {

// A config with fewer layers than the checkpoint would convert into a smaller model without a
// word: refuse tensors of layers past num_hidden_layers.
void refuse_layers_past_config(const Checkpoint& checkpoint, const ModelConfig& config, const std::string& hf_dir) {
  constexpr std::string_view kPrefix = "model.layers.";
  for (const std::string& name : checkpoint.names()) {
    if (name.rfind(kPrefix, 0) != 0) continue;
    const size_t digits_end = name.find('.', kPrefix.size());
    const std::string index = name.substr(kPrefix.size(), digits_end - kPrefix.size());
    const bool number = !index.empty() && index.size() <= 6 &&
                        std::all_of(index.begin(), index.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (!number) continue;
    require(std::stoll(index) < config.num_layers, ErrorKind::InvalidInput,
            "{}: config.json says num_hidden_layers {}, but the checkpoint has tensors of layer {} ('{}'); fix "
            "num_hidden_layers (converting would silently drop layers)",
            hf_dir, config.num_layers, index, name);
  }
}

// What `run` checks before it uses a GGUF, so quantize never writes a file run would refuse.
void check_loadable_gguf(const GgufFile& gguf, const ModelConfig& config, const std::string& path) {
  validate_model_config(config, path);
  bind_weights(config, tensor_source(gguf, config));  // every tensor there, with its shape and type
  tokenizer_from_gguf(gguf);
}

}  // namespace

void convert_hf_to_gguf(const std::string& hf_dir, const std::string& out_path, QuantRecipe recipe,
                        const ConvertProgress& progress) {
  const ModelConfig config = load_hf_config((std::filesystem::path(hf_dir) / "config.json").string());
  validate_model_config(config, hf_dir);
  auto checkpoint = Checkpoint::open_directory(hf_dir);
  refuse_layers_past_config(*checkpoint, config, hf_dir);
  // The tokenizer as run would load it, before anything is written (a malformed tokenizer.json
  // gave internal errors here, or a GGUF run refused).
  Tokenizer::load(hf_dir);
  const auto expected = expected_tensors(config);
  ValueBuffer buffer;
  GgufWriter writer;
  write_model_metadata(writer, config, std::filesystem::path(hf_dir).filename().string(), recipe_info(recipe).llama_file_type);
  write_tokenizer_metadata(writer, hf_dir, config.vocab_size);
  for (size_t i = 0; i < expected.size(); ++i) {
    const ExpectedTensor& tensor = expected[i];
    const TensorView& view = checkpoint->get(tensor.name);
    require(view.shape == tensor.shape, ErrorKind::InvalidInput, "{}: tensor '{}' does not have the shape its config implies",
            hf_dir, tensor.name);
    const DType type = tensor_type(recipe, tensor, config.num_layers);
    writer.add_tensor(tensor.gguf_name, ggml_of_dtype(type), gguf_dims(tensor.shape), [&, tensor, type, i](std::vector<uint8_t>& out) {
      const TensorView& source = checkpoint->get(tensor.name);
      const float* values = to_f32(source, buffer);
      const int64_t count = source.element_count();
      const int64_t cols = tensor.shape.back();
      const bool rotary = tensor.role == TensorRole::Wq || tensor.role == TensorRole::Wk ||
                          tensor.role == TensorRole::Bq || tensor.role == TensorRole::Bk;
      std::vector<float> interleaved;
      if (config.arch == Architecture::Llama && rotary) {
        const int64_t heads = tensor.role == TensorRole::Wq || tensor.role == TensorRole::Bq ? config.num_heads : config.num_kv_heads;
        interleaved = interleave_rotary_rows(values, count, heads, config.head_dim, tensor.shape.size() == 2 ? cols : 1);
        values = interleaved.data();
      }
      encode(values, count, type, count / cols, cols, out);
      if (progress.on_tensor) progress.on_tensor(tensor.gguf_name, i, expected.size(), out.size());
    });
  }
  if (config.rope.scaling == RopeScaling::Llama3) {
    // llama.cpp carries llama3 scaling as per-dimension divisors of the inverse frequencies.
    ModelConfig plain = config;
    plain.rope.scaling = RopeScaling::None;
    auto base = rope_inverse_frequencies(plain);
    auto scaled = rope_inverse_frequencies(config);
    writer.add_tensor("rope_freqs.weight", GgmlType::F32, {static_cast<uint64_t>(base.size())}, [base, scaled](std::vector<uint8_t>& out) {
      auto* factors = reinterpret_cast<float*>(out.data());
      for (size_t i = 0; i < base.size(); ++i) factors[i] = static_cast<float>(base[i] / scaled[i]);
    });
  }
  writer.write(out_path);
}

void quantize_gguf(const std::string& in_path, const std::string& out_path, QuantRecipe recipe,
                   const ConvertProgress& progress) {
  const GgufFile input(in_path);
  const ModelConfig config = model_config_from_gguf(input);
  // Before expected_tensors(): a block_count of 4294967295 allocated until memory ran out.
  check_loadable_gguf(input, config, in_path);
  GgufWriter writer;
  for (const auto& [key, entry] : input.metadata()) {
    if (key == "general.alignment") continue;
    if (key == "general.file_type") writer.add_u32(key, recipe_info(recipe).llama_file_type);
    else writer.add_metadata(key, entry);
  }
  ValueBuffer buffer;
  std::map<std::string, ExpectedTensor> by_gguf_name;
  for (const auto& tensor : expected_tensors(config)) by_gguf_name[tensor.gguf_name] = tensor;
  const auto& views = input.tensor_views();
  for (size_t i = 0; i < input.tensor_infos().size(); ++i) {
    const GgufTensorInfo& info = input.tensor_infos()[i];
    auto view = std::find_if(views.begin(), views.end(), [&](const TensorView& v) { return v.name == info.name; });
    require(view != views.end(), ErrorKind::Unsupported, "{}: tensor '{}' is {}, which retort cannot re-quantize",
            in_path, info.name, ggml_type_name(info.type));
    auto known = by_gguf_name.find(info.name);
    const DType type = known == by_gguf_name.end() ? DType::F32 : tensor_type(recipe, known->second, config.num_layers);
    writer.add_tensor(info.name, ggml_of_dtype(type), info.dims, [&, view, type, i](std::vector<uint8_t>& out) {
      const float* values = to_f32(*view, buffer);
      const int64_t cols = view->shape.back();
      encode(values, view->element_count(), type, view->element_count() / cols, cols, out);
      if (progress.on_tensor) progress.on_tensor(view->name, i, input.tensor_infos().size(), out.size());
    });
  }
  writer.write(out_path);
}

}  // namespace retort
