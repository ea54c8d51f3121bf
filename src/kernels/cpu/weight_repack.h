#pragma once
// The Interleaved layout of block-quantized matrices, which the integer kernels read R rows at a
// time (R = 8, or 16 for 512-bit kernels). Each group of R rows keeps its bytes where they were,
// with the same size; within it, block b of the R rows is stored field by field, each field of
// the R rows together:
//   - an f16 field (a scale): the R rows' values, 2R bytes;
//   - a byte field of n bytes (Q4_K's packed 6-bit scales, Q6_K's int8 scales): byte k of row r
//     at R·k + r, so one R-byte load holds field byte k of all R rows;
//   - a quant field of n bytes: cut in chunks of 4 bytes, chunk c of the R rows as 4R bytes with
//     row r's bytes 4c..4c+3 at 4r, so one vector holds 4 consecutive quant bytes of each of the
//     R rows, which one int8 dot instruction takes against 4 broadcast activation bytes.
// With R = 16, a last 8 rows (the rows not a multiple of 16) form a group of 8.
// The quant chunks are what the kernels load most, so they sit on whole vectors (4R bytes) of the
// address: a block that starts 2R bytes past a vector boundary (blocks are an odd number of 2R
// bytes in most formats, and GGUF aligns tensors to 32 bytes only) stores d, its first field,
// before the quants (interleaved_d_leads); any other block right after them. A matrix is thus
// read where it was repacked. Per format (sizes for R rows; d's place as said):
//   Q8_0 (R × 34 bytes):  d (f16) | qs[32] (quant; plus 128, as unsigned bytes, for kernels whose
//                         dot takes one unsigned side: InterleavedForm::unsigned_q8_0)
//   Q4_0 (R × 18):        d | qs[16] (quant: chunk c's low nibbles are columns 4c.., high 16 + 4c..)
//   Q4_K (R × 144):       d | qs[128] (quant) | dmin | scales[12] (bytes)
//   Q6_K (R × 210):       d | ql[128] (quant) | qh[64] (quant) | scales[16] (bytes)
#include <cstdint>

#include "tensor/dtype.h"

namespace retort::cpu {

// A group of rows longer than this (its blocks for the whole row) is read by one token's kernel in
// pairs of groups, block by block, so that each activation block is read once for both: a group
// of this size or more pushes the activations, read again by the next group, out of a 48 KiB L1.
constexpr int64_t kPairedGroupBytes = 32 * 1024;
inline bool reads_groups_in_pairs(int64_t row_bytes, int64_t group_rows) {
  return row_bytes * group_rows > kPairedGroupBytes;
}

// Whether the interleaved block of `group_rows` rows at `block` stores d before its quants.
inline bool interleaved_d_leads(const void* block, int64_t group_rows) {
  return reinterpret_cast<uintptr_t>(block) % static_cast<uintptr_t>(4 * group_rows) != 0;
}

// How a kernel set reads the layout: groups of group_rows rows (8, or 16 for 512-bit kernels), and
// whether Q8_0 quants are stored plus 128. With them unsigned, dpbusd takes the weights as they are
// and the 128 comes off through the activation block's Σa once per block, as Q4_0's 8 does; signed,
// each 64 weight bytes cost an abs, a sign mask and a masked negate besides the dot (maddubs, whose
// int16 pair sums would saturate on 255 · 127 · 2, needs that form).
struct InterleavedForm {
  int64_t group_rows;
  bool unsigned_q8_0;
};

// True when `dtype` with `rows` rows has an Interleaved form (the four types above, rows a
// multiple of 8).
bool has_interleaved_form(DType dtype, int64_t rows);
// Rewrites rows × cols of `dtype` (as the file stores them) into the Interleaved layout in the form
// a kernel set reads (IntegerDotKernels::interleaved_form), in place.
void repack_interleaved(DType dtype, uint8_t* bytes, int64_t rows, int64_t cols, InterleavedForm form);

}  // namespace retort::cpu
