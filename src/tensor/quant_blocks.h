#pragma once
// GGUF/ggml block-quantized formats, byte-for-byte as llama.cpp lays them out, so that tensors
// quantized here load in llama.cpp and tensors from llama.cpp's files dequantize here.
//
// A quantized row of `cols` values is cols / block_elements blocks back to back; rows follow each
// other with no padding. Multi-byte fields are little-endian, as GGUF is.
//
//   Q8_0  (32 values, 34 bytes):  f16 d | int8 q[32]                         value = d*q
//   Q4_0  (32 values, 18 bytes):  f16 d | u8 nibbles[16]                     value = d*(q-8)
//         element j (0..15) is the low nibble of byte j, element j+16 its high nibble.
//   Q4_K  (256 values, 144 bytes): f16 d | f16 dmin | u8 scales[12] | u8 nibbles[128]
//         8 sub-blocks of 32, each with a 6-bit scale and 6-bit min packed into `scales`;
//         value = d*scale*q - dmin*min. Each 32 nibble bytes hold sub-block 2p in their low
//         nibbles and sub-block 2p+1 in their high nibbles.
//   Q6_K  (256 values, 210 bytes): u8 ql[128] | u8 qh[64] | int8 scales[16] | f16 d
//         16 sub-blocks of 16, value = d*scales[element/16]*(q-32) with q 6 bits split into ql
//         (low 4) and qh (high 2), interleaved as described in quant_k.cpp.
#include <cstdint>
#include <string_view>

#include "tensor/dtype.h"

namespace retort {

enum class BlockType { Q8_0, Q4_0, Q4_K, Q6_K };

struct BlockFormat {
  BlockType type;
  const char* name;  // as GGUF/llama.cpp spell the type in lower case: "q8_0", "q4_k", ...
  int64_t block_elements;
  int64_t block_bytes;
};

const BlockFormat& block_format(BlockType type);

// The block format a DType stores (Q8_0, Q4_0, Q4_K, Q6_K); an Internal error for plain types.
BlockType block_type_of(DType dtype);

// Bytes of one quantized row of `cols` values; cols must be a multiple of block_elements.
int64_t quantized_row_bytes(BlockType type, int64_t cols);

// Rows of `cols` values each, `in` and `out` dense. cols must be a multiple of the type's
// block_elements and every input finite, else retort::Error naming `tensor_name` (when given) and
// the dims. Output bytes depend only on the input (not on the thread count).
// Q8_0 and Q4_0 follow ggml's reference quantizers exactly; Q4_K and Q6_K search each
// sub-block's scale (see quant_k.cpp).
void quantize_rows(BlockType type, const float* in, void* out, int64_t rows, int64_t cols,
                   std::string_view tensor_name = {});
void dequantize_rows(BlockType type, const void* in, float* out, int64_t rows, int64_t cols,
                     std::string_view tensor_name = {});

// Dot product of one quantized row with `x` (cols values): dequantize, then multiply-add in
// double. A plain reference for the fast kernels' tests, not a fast path.
float dot_block_row_f32(BlockType type, const void* row, const float* x, int64_t cols);

}  // namespace retort
