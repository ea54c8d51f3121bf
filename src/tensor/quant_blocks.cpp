#include "tensor/quant_blocks.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cmath>
#include <string>

#include "tensor/dtype.h"
#include "tensor/quant_k.h"
#include "util/error.h"
#include "util/thread_pool.h"

namespace retort {
namespace {

using quant_detail::load_u16;
using quant_detail::store_u16;

static_assert(std::endian::native == std::endian::little,
              "the block codecs read GGUF's little-endian fields in place");

constexpr int kQ8_0Elements = 32;
constexpr int kQ4_0Elements = 32;
constexpr float kF16Max = 65504.0f;

// ggml's reference Q8_0 quantizer: d = amax/127 and q = round(x/d) with d still in f32, so the
// bytes are the ones llama.cpp writes; only the stored d is rounded to f16.
// roundf's rounding (half away from zero, as ggml's q8_0 quantizer rounds) for |value| < 2^31,
// without branches: std::round is a library call on the baseline ISA (6 % of `quantize --type
// q8_0`), and a branch on the fraction mispredicts half the time. Written so the loop below
// vectorizes; every step is exact (truncation, the fraction, adding one).
float round_half_away(float value) {
  const float magnitude = std::fabs(value);
  const float whole = static_cast<float>(static_cast<int32_t>(magnitude));
  const float rounded = whole + (magnitude - whole >= 0.5f ? 1.0f : 0.0f);
  return std::copysign(rounded, value);
}

// The largest magnitude of `count` values (a multiple of 8) in 8 independent lanes, which the
// compiler vectorizes; max is exact, so the order does not change the result.
float largest_magnitude(const float* values, int count) {
  float lanes[8] = {};
  for (int i = 0; i < count; i += 8) {
    for (int lane = 0; lane < 8; ++lane) {
      const float magnitude = std::fabs(values[i + lane]);
      lanes[lane] = lanes[lane] < magnitude ? magnitude : lanes[lane];
    }
  }
  return *std::max_element(lanes, lanes + 8);
}

void quantize_block_q8_0(const float* values, uint8_t* block) {
  const float amax = largest_magnitude(values, kQ8_0Elements);
  const float d = amax / 127.0f;
  const float inverse_d = d != 0.0f ? 1.0f / d : 0.0f;
  store_u16(block, f32_to_f16(d));
  for (int i = 0; i < kQ8_0Elements; ++i) {
    block[2 + i] = static_cast<uint8_t>(static_cast<int8_t>(static_cast<int32_t>(round_half_away(values[i] * inverse_d))));
  }
}

void dequantize_block_q8_0(const uint8_t* block, float* values) {
  const float d = f16_to_f32(load_u16(block));
  for (int i = 0; i < kQ8_0Elements; ++i) values[i] = static_cast<int8_t>(block[2 + i]) * d;
}

// ggml's reference Q4_0 quantizer: the value of largest magnitude (sign kept, first one on ties)
// maps to level 0, i.e. d = max/-8, which spends the asymmetric level range [-8, 7] on the side
// that needs it. Levels are floor(x/d + 8.5) capped at 15, the same arithmetic as llama.cpp's.
void quantize_block_q4_0(const float* values, uint8_t* block) {
  float amax = 0.0f;
  float signed_max = 0.0f;
  for (int i = 0; i < kQ4_0Elements; ++i) {
    if (amax < std::fabs(values[i])) {
      amax = std::fabs(values[i]);
      signed_max = values[i];
    }
  }
  const float d = signed_max / -8.0f;
  const float inverse_d = d != 0.0f ? 1.0f / d : 0.0f;
  store_u16(block, f32_to_f16(d));
  auto level = [inverse_d](float value) {
    return static_cast<uint8_t>(std::clamp(std::floor(value * inverse_d + 8.5f), 0.0f, 15.0f));
  };
  constexpr int half = kQ4_0Elements / 2;
  for (int j = 0; j < half; ++j) {
    block[2 + j] = static_cast<uint8_t>(level(values[j]) | (level(values[j + half]) << 4));
  }
}

void dequantize_block_q4_0(const uint8_t* block, float* values) {
  const float d = f16_to_f32(load_u16(block));
  constexpr int half = kQ4_0Elements / 2;
  for (int j = 0; j < half; ++j) {
    values[j] = static_cast<float>((block[2 + j] & 0x0F) - 8) * d;
    values[j + half] = static_cast<float>((block[2 + j] >> 4) - 8) * d;
  }
}

struct BlockCodec {
  BlockFormat format;
  // Largest input magnitude whose block scale still fits in f16 (with margin for the k-quants'
  // least-squares scales, which can exceed range/levels slightly).
  float max_magnitude;
  void (*quantize_block)(const float* values, uint8_t* block);
  void (*dequantize_block)(const uint8_t* block, float* values);
};

const std::array<BlockCodec, 4> kCodecs{{
    {{BlockType::Q8_0, "q8_0", kQ8_0Elements, 34}, kF16Max * 127.0f, quantize_block_q8_0,
     dequantize_block_q8_0},
    {{BlockType::Q4_0, "q4_0", kQ4_0Elements, 18}, kF16Max * 8.0f, quantize_block_q4_0,
     dequantize_block_q4_0},
    {{BlockType::Q4_K, "q4_k", quant_detail::kSuperBlockElements, quant_detail::kQ4KBlockBytes},
     kF16Max * 63.0f * 6.0f, quant_detail::quantize_block_q4_k, quant_detail::dequantize_block_q4_k},
    {{BlockType::Q6_K, "q6_k", quant_detail::kSuperBlockElements, quant_detail::kQ6KBlockBytes},
     kF16Max * 128.0f * 30.0f, quant_detail::quantize_block_q6_k, quant_detail::dequantize_block_q6_k},
}};

const BlockCodec& codec_for(BlockType type) {
  for (const auto& codec : kCodecs) {
    if (codec.format.type == type) return codec;
  }
  fail(ErrorKind::Internal, "unknown block type {}", static_cast<int>(type));
}

std::string describe_tensor(std::string_view tensor_name) {
  return tensor_name.empty() ? std::string("tensor") : fmt::format("tensor '{}'", tensor_name);
}

// Number of blocks in `rows` rows of `cols` values, after checking that rows fill whole blocks.
int64_t checked_block_count(const BlockFormat& format, int64_t rows, int64_t cols,
                            std::string_view tensor_name, std::string_view action) {
  require(rows >= 0 && cols >= 0, ErrorKind::InvalidInput,
          "cannot {} {} as {}: expected non-negative dims, got {} rows x {} columns", action,
          describe_tensor(tensor_name), format.name, rows, cols);
  require(cols % format.block_elements == 0, ErrorKind::InvalidInput,
          "cannot {} {} ({} rows x {} columns) as {}: each row must hold a whole number of "
          "{}-value blocks, but {} is not a multiple of {}; keep this tensor in f16/f32 or pick a "
          "type whose block size divides {}",
          action, describe_tensor(tensor_name), rows, cols, format.name, format.block_elements, cols,
          format.block_elements, cols);
  return rows * (cols / format.block_elements);
}

// Enough values per chunk that handing a chunk to a thread costs little next to encoding it.
size_t grain_in_blocks(const BlockFormat& format) {
  constexpr int64_t kValuesPerChunk = 16384;
  return static_cast<size_t>(std::max<int64_t>(1, kValuesPerChunk / format.block_elements));
}

bool block_is_quantizable(const float* values, int64_t count, float max_magnitude) {
  for (int64_t i = 0; i < count; ++i) {
    if (!(std::fabs(values[i]) <= max_magnitude)) return false;  // also false for NaN
  }
  return true;
}

[[noreturn]] void fail_unquantizable(const BlockCodec& codec, const float* in, int64_t block,
                                     int64_t cols, std::string_view tensor_name) {
  const int64_t first = block * codec.format.block_elements;
  int64_t element = first;
  while (std::fabs(in[element]) <= codec.max_magnitude) ++element;
  fail(ErrorKind::InvalidInput,
       "cannot quantize {} to {}: element [{}, {}] is {}, expected a finite value of magnitude at "
       "most {:g} (the largest the format's f16 scales can hold); check the checkpoint for "
       "damaged weights or keep this tensor in f32",
       describe_tensor(tensor_name), codec.format.name, element / cols, element % cols, in[element],
       codec.max_magnitude);
}

}  // namespace

BlockType block_type_of(DType dtype) {
  switch (dtype) {
    case DType::Q8_0: return BlockType::Q8_0;
    case DType::Q4_0: return BlockType::Q4_0;
    case DType::Q4_K: return BlockType::Q4_K;
    case DType::Q6_K: return BlockType::Q6_K;
    default: fail(ErrorKind::Internal, "{} is not a block-quantized type", dtype_name(dtype));
  }
}

const BlockFormat& block_format(BlockType type) { return codec_for(type).format; }

int64_t quantized_row_bytes(BlockType type, int64_t cols) {
  const BlockFormat& format = block_format(type);
  return checked_block_count(format, 1, cols, {}, "size") * format.block_bytes;
}

void quantize_rows(BlockType type, const float* in, void* out, int64_t rows, int64_t cols,
                   std::string_view tensor_name) {
  const BlockCodec& codec = codec_for(type);
  const BlockFormat& format = codec.format;
  const int64_t blocks = checked_block_count(format, rows, cols, tensor_name, "quantize");
  auto* out_bytes = static_cast<uint8_t*>(out);
  // Workers must not throw, so a bad block is zero-filled and reported after the loop; the
  // lowest bad block wins so the message does not depend on thread timing.
  std::atomic<int64_t> first_bad_block{blocks};
  thread_pool().parallel_for(static_cast<size_t>(blocks), grain_in_blocks(format),
                             [&](size_t begin, size_t end) {
    for (auto block = static_cast<int64_t>(begin); block < static_cast<int64_t>(end); ++block) {
      const float* values = in + block * format.block_elements;
      uint8_t* bytes = out_bytes + block * format.block_bytes;
      if (block_is_quantizable(values, format.block_elements, codec.max_magnitude)) {
        codec.quantize_block(values, bytes);
        continue;
      }
      std::fill_n(bytes, format.block_bytes, uint8_t{0});
      int64_t seen = first_bad_block.load();
      while (block < seen && !first_bad_block.compare_exchange_weak(seen, block)) {
      }
    }
  });
  if (first_bad_block.load() < blocks) {
    fail_unquantizable(codec, in, first_bad_block.load(), cols, tensor_name);
  }
}

void dequantize_rows(BlockType type, const void* in, float* out, int64_t rows, int64_t cols,
                     std::string_view tensor_name) {
  const BlockCodec& codec = codec_for(type);
  const BlockFormat& format = codec.format;
  const int64_t blocks = checked_block_count(format, rows, cols, tensor_name, "dequantize");
  const auto* in_bytes = static_cast<const uint8_t*>(in);
  thread_pool().parallel_for(static_cast<size_t>(blocks), grain_in_blocks(format),
                             [&](size_t begin, size_t end) {
    for (auto block = static_cast<int64_t>(begin); block < static_cast<int64_t>(end); ++block) {
      codec.dequantize_block(in_bytes + block * format.block_bytes,
                             out + block * format.block_elements);
    }
  });
}

float dot_block_row_f32(BlockType type, const void* row, const float* x, int64_t cols) {
  const BlockCodec& codec = codec_for(type);
  const BlockFormat& format = codec.format;
  const int64_t blocks = checked_block_count(format, 1, cols, {}, "take a dot product of");
  const auto* row_bytes = static_cast<const uint8_t*>(row);
  std::array<float, quant_detail::kSuperBlockElements> values{};
  double sum = 0.0;
  for (int64_t block = 0; block < blocks; ++block) {
    codec.dequantize_block(row_bytes + block * format.block_bytes, values.data());
    const float* x_block = x + block * format.block_elements;
    for (int64_t i = 0; i < format.block_elements; ++i) {
      sum += static_cast<double>(values[i]) * static_cast<double>(x_block[i]);
    }
  }
  return static_cast<float>(sum);
}

}  // namespace retort
