#include "tensor/dtype.h"

#include <array>
#include <cmath>

#include "util/error.h"

namespace retort {

namespace {
struct DTypeInfo {
  DType type;
  size_t size;
  std::string_view name;
  std::string_view safetensors_name;  // empty: not a safetensors type
  bool is_float;
  int64_t block_elements;
};

constexpr std::array<DTypeInfo, 14> kDTypes{{
    {DType::F32, 4, "f32", "F32", true, 1},
    {DType::F16, 2, "f16", "F16", true, 1},
    {DType::BF16, 2, "bf16", "BF16", true, 1},
    {DType::F64, 8, "f64", "F64", true, 1},
    {DType::I32, 4, "i32", "I32", false, 1},
    {DType::I64, 8, "i64", "I64", false, 1},
    {DType::I16, 2, "i16", "I16", false, 1},
    {DType::I8, 1, "i8", "I8", false, 1},
    {DType::U8, 1, "u8", "U8", false, 1},
    {DType::Bool, 1, "bool", "BOOL", false, 1},
    {DType::Q8_0, 34, "q8_0", "", false, 32},
    {DType::Q4_0, 18, "q4_0", "", false, 32},
    {DType::Q4_K, 144, "q4_k", "", false, 256},
    {DType::Q6_K, 210, "q6_k", "", false, 256},
}};

const DTypeInfo& info(DType type) {
  for (const auto& entry : kDTypes) {
    if (entry.type == type) return entry;
  }
  fail(ErrorKind::Internal, "unknown dtype {}", static_cast<int>(type));
}
}  // namespace

size_t dtype_size(DType type) { return info(type).size; }
std::string_view dtype_name(DType type) { return info(type).name; }
std::string_view dtype_safetensors_name(DType type) { return info(type).safetensors_name; }
bool is_float(DType type) { return info(type).is_float; }

int64_t dtype_block_elements(DType type) { return info(type).block_elements; }
bool is_block_quantized(DType type) { return info(type).block_elements > 1; }

size_t dtype_row_bytes(DType type, int64_t elements) {
  const DTypeInfo& entry = info(type);
  require(elements % entry.block_elements == 0, ErrorKind::InvalidInput,
          "{} values do not fill whole {}-value {} blocks", elements, entry.block_elements, entry.name);
  return static_cast<size_t>(elements / entry.block_elements) * entry.size;
}

std::optional<DType> dtype_from_safetensors(std::string_view name) {
  for (const auto& entry : kDTypes) {
    if (!entry.safetensors_name.empty() && entry.safetensors_name == name) return entry.type;
  }
  return std::nullopt;
}

float f16_to_f32(uint16_t bits) {
  uint32_t sign = static_cast<uint32_t>(bits & 0x8000u) << 16;
  uint32_t exponent = (bits >> 10) & 0x1fu;
  uint32_t mantissa = bits & 0x3ffu;
  uint32_t word;
  if (exponent == 0) {
    if (mantissa == 0) {
      word = sign;
    } else {  // subnormal: value = mantissa * 2^-24
      float value = std::ldexp(static_cast<float>(mantissa), -24);
      return sign ? -value : value;
    }
  } else if (exponent == 31) {
    word = sign | 0x7f800000u | (mantissa << 13);
  } else {
    word = sign | ((exponent + 112) << 23) | (mantissa << 13);
  }
  float value;
  std::memcpy(&value, &word, sizeof value);
  return value;
}

uint16_t f32_to_f16(float value) {
  uint32_t word;
  std::memcpy(&word, &value, sizeof word);
  uint32_t sign = (word >> 16) & 0x8000u;
  uint32_t abs = word & 0x7fffffffu;
  if (abs > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);  // NaN
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // overflow -> inf
  if (abs < 0x38800000u) {  // subnormal or zero in f16: round to nearest multiple of 2^-24
    float magnitude;
    std::memcpy(&magnitude, &abs, sizeof magnitude);
    auto scaled = static_cast<uint32_t>(std::nearbyint(std::ldexp(magnitude, 24)));
    return static_cast<uint16_t>(sign | scaled);
  }
  // Normal: rebias exponent, round mantissa to nearest-even.
  uint32_t rounded = abs + 0xfffu + ((abs >> 13) & 1u);
  return static_cast<uint16_t>(sign | ((rounded - 0x38000000u) >> 13));
}

}  // namespace retort
