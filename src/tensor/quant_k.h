#pragma once
// One-block codecs of the 256-value "k-quant" super-block formats; quant_blocks.cpp runs them
// over rows. Internal to the tensor layer: use quantize_rows / dequantize_rows.
#include <cstdint>
#include <cstring>

namespace retort::quant_detail {

constexpr int kSuperBlockElements = 256;
constexpr int kQ4KBlockBytes = 144;
constexpr int kQ6KBlockBytes = 210;
constexpr int kQ4KSubBlocks = 8;
constexpr int kQ4KSubBlockElements = 32;
constexpr int kQ4KMaxLevel = 15;
constexpr int kQ6KSubBlocks = 16;
constexpr int kQ6KSubBlockElements = 16;
constexpr int kQ6KLowestLevel = -32;
constexpr int kQ6KHighestLevel = 31;

void quantize_block_q4_k(const float* values /* [256] */, uint8_t* block /* [144] */);
void dequantize_block_q4_k(const uint8_t* block /* [144] */, float* values /* [256] */);
void quantize_block_q6_k(const float* values /* [256] */, uint8_t* block /* [210] */);
void dequantize_block_q6_k(const uint8_t* block /* [210] */, float* values /* [256] */);

// GGUF is little-endian and so are the hosts retort runs on (x86-64, arm64).
inline uint16_t load_u16(const uint8_t* bytes) {
  uint16_t value;
  std::memcpy(&value, bytes, sizeof value);
  return value;
}

inline void store_u16(uint8_t* bytes, uint16_t value) { std::memcpy(bytes, &value, sizeof value); }

}  // namespace retort::quant_detail
