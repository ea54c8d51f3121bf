#pragma once
// HF checkpoint → GGUF (llama.cpp's names, metadata and tokenizer), in one weight type or a mixed
// recipe; and GGUF → GGUF re-quantization.
#include <functional>
#include <string>

#include "tensor/dtype.h"

namespace retort {

// A weight-type recipe: what the matrices become. Norms and biases always stay f32.
enum class QuantRecipe { F32, F16, BF16, Q8_0, Q4_0, Q4_K_M };

QuantRecipe parse_quant_recipe(const std::string& name);  // f32|f16|bf16|q8_0|q4_0|q4_k (= q4_k_m)
std::string recipe_name(QuantRecipe recipe);

struct ConvertProgress {
  // Called as each tensor's data is ready: its name, index, the tensor count and its bytes in the output.
  std::function<void(const std::string& tensor, size_t index, size_t count, size_t bytes)> on_tensor;
};

void convert_hf_to_gguf(const std::string& hf_dir, const std::string& out_path, QuantRecipe recipe,
                        const ConvertProgress& progress = {});
void quantize_gguf(const std::string& in_path, const std::string& out_path, QuantRecipe recipe,
                   const ConvertProgress& progress = {});

}  // namespace retort
