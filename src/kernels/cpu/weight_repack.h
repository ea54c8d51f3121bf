#pragma once
// The Interleaved8 layout of block-quantized matrices, which the integer kernels read 8 rows at a
// time. Each group of 8 rows keeps its bytes where they were, with the same size; within it, block
// b of the 8 rows is stored field by field, each field of the 8 rows together:
//   - an f16 field (a scale): the 8 rows' values, 16 bytes;
//   - a byte field of n bytes (Q4_K's packed 6-bit scales, Q6_K's int8 scales): byte k of row r
//     at 8k + r, so one 8-byte load holds field byte k of all 8 rows;
//   - a quant field of n bytes: cut in chunks of 4 bytes, chunk c of the 8 rows as 32 bytes with
//     row r's bytes 4c..4c+3 at 4r, so one 256-bit vector holds 4 consecutive quant bytes of each
//     of the 8 rows, which one int8 dot instruction takes against 4 broadcast activation bytes.
// The paired form (for kernels that take 16 rows per vector) also interleaves the blocks of each
// pair of groups (rows 16p..16p+7 and 16p+8..16p+15): block b of the first group, block b of the
// second, then block b + 1 of each, so the 16 rows are read as one stream. The pair's bytes stay
// where its two groups' were; a last group without a partner keeps its blocks in order.
// Per format, in this order:
//   Q8_0 (8 × 34 bytes):  d (f16) | qs[32] (quant)
//   Q4_0 (8 × 18):        d | qs[16] (quant: chunk c's low nibbles are columns 4c.., high 16 + 4c..)
//   Q4_K (8 × 144):       d | dmin | scales[12] (bytes) | qs[128] (quant)
//   Q6_K (8 × 210):       d | scales[16] (bytes) | ql[128] (quant) | qh[64] (quant)
#include <cstdint>

#include "tensor/dtype.h"

namespace retort::cpu {

// True when `dtype` with `rows` rows has an Interleaved8 form (the four types above, rows a
// multiple of 8).
bool has_interleaved8_form(DType dtype, int64_t rows);
// Rewrites rows × cols of `dtype` (as the file stores them) into Interleaved8, in place; in the
// paired form when `paired_groups` (IntegerDotKernels::paired_groups says which its kernels read).
void repack_interleaved8(DType dtype, uint8_t* bytes, int64_t rows, int64_t cols, bool paired_groups);

}  // namespace retort::cpu
