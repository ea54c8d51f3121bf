#pragma once
// The Interleaved8 layout of Q8_0 and Q4_0 matrices, which the integer kernels read 8 rows at a
// time. Within each group of 8 rows (the group's bytes stay where they were, same size), block b
// of the 8 rows is stored as
//   8 × f16 scales (row 0..7)  |  the quants: chunk c of 32 bytes holds, at byte 4r + j, row r's
//                                 quant byte 4c + j (j < 4)
// Q8_0: 8 chunks (272 bytes a block); byte 4c + j of a row is its value at column 4c + j.
// Q4_0: 4 chunks (144 bytes); byte 4c + j holds column 4c + j in its low nibble and 16 + 4c + j in
// its high one, so the low nibbles of chunk c are columns 4c..4c+3 of all 8 rows and the high ones
// columns 16 + 4c.. — each a set of 8 rows × 4 columns that one int8 dot instruction takes whole.
#include <cstdint>

#include "tensor/dtype.h"

namespace retort::cpu {

// True when `dtype` with `rows` rows has an Interleaved8 form (Q8_0/Q4_0, rows a multiple of 8).
bool has_interleaved8_form(DType dtype, int64_t rows);
// Rewrites rows × cols of `dtype` (as the file stores them) into Interleaved8, in place.
void repack_interleaved8(DType dtype, uint8_t* bytes, int64_t rows, int64_t cols);

}  // namespace retort::cpu
