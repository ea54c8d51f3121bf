#pragma once
// Element types of weights and activations, with their byte sizes and names as the file formats
// spell them. The block-quantized GGUF types store `block_elements` values in `dtype_size` bytes.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

namespace retort {

enum class DType : uint8_t { F32, F16, BF16, F64, I32, I64, I16, I8, U8, Bool, Q8_0, Q4_0, Q4_K, Q6_K };

size_t dtype_size(DType type);            // bytes of one element, or of one block for block types
int64_t dtype_block_elements(DType type);  // 1 for plain types
size_t dtype_row_bytes(DType type, int64_t elements);  // elements must fill whole blocks
bool is_block_quantized(DType type);
std::string_view dtype_name(DType type);
// safetensors spells types "F32", "BF16", ...
std::optional<DType> dtype_from_safetensors(std::string_view name);
std::string_view dtype_safetensors_name(DType type);
bool is_float(DType type);

// bf16 is the upper half of an f32; rounding to nearest-even on the way down.
inline float bf16_to_f32(uint16_t bits) {
  uint32_t word = static_cast<uint32_t>(bits) << 16;
  float value;
  std::memcpy(&value, &word, sizeof value);
  return value;
}

inline uint16_t f32_to_bf16(float value) {
  uint32_t word;
  std::memcpy(&word, &value, sizeof word);
  if ((word & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((word >> 16) | 0x40);  // NaN
  uint32_t rounding = 0x7fffu + ((word >> 16) & 1u);
  return static_cast<uint16_t>((word + rounding) >> 16);
}

float f16_to_f32(uint16_t bits);
uint16_t f32_to_f16(float value);

}  // namespace retort
