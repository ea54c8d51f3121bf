#include "kernels/cpu/weight_repack.h"

#include <cstring>
#include <vector>

#include "util/error.h"

namespace retort::cpu {

namespace {

constexpr int64_t kGroupRows = 8;

enum class Field { Half, Bytes, Quants };
struct FieldSpec {
  Field kind;
  int64_t offset;  // in the file's block
  int64_t bytes;
};

// The fields of each format's block, in the order the interleaved block stores them.
std::vector<FieldSpec> fields_of(DType dtype) {
  switch (dtype) {
    case DType::Q8_0: return {{Field::Half, 0, 2}, {Field::Quants, 2, 32}};
    case DType::Q4_0: return {{Field::Half, 0, 2}, {Field::Quants, 2, 16}};
    case DType::Q4_K: return {{Field::Half, 0, 2}, {Field::Half, 2, 2}, {Field::Bytes, 4, 12}, {Field::Quants, 16, 128}};
    case DType::Q6_K: return {{Field::Half, 208, 2}, {Field::Bytes, 192, 16}, {Field::Quants, 0, 128}, {Field::Quants, 128, 64}};
    default: return {};
  }
}

// Writes the 8 rows' block (row r's at rows[r]) as one interleaved block at `out`.
void interleave_block(const std::vector<FieldSpec>& fields, const uint8_t* const* rows, uint8_t* out) {
  for (const FieldSpec& f : fields) {
    for (int64_t r = 0; r < kGroupRows; ++r) {
      const uint8_t* field = rows[r] + f.offset;
      switch (f.kind) {
        case Field::Half: std::memcpy(out + 2 * r, field, 2); break;
        case Field::Bytes:
          for (int64_t k = 0; k < f.bytes; ++k) out[kGroupRows * k + r] = field[k];
          break;
        case Field::Quants:
          for (int64_t c = 0; c < f.bytes / 4; ++c) std::memcpy(out + 32 * c + 4 * r, field + 4 * c, 4);
          break;
      }
    }
    out += kGroupRows * f.bytes;
  }
}

}  // namespace

bool has_interleaved8_form(DType dtype, int64_t rows) {
  return !fields_of(dtype).empty() && rows > 0 && rows % kGroupRows == 0;
}

void repack_interleaved8(DType dtype, uint8_t* bytes, int64_t rows, int64_t cols, bool paired_groups) {
  require(has_interleaved8_form(dtype, rows), ErrorKind::Internal, "{} [{} × {}] has no interleaved form",
          dtype_name(dtype), rows, cols);
  const std::vector<FieldSpec> fields = fields_of(dtype);
  const auto block_bytes = static_cast<int64_t>(dtype_size(dtype));
  const int64_t blocks = cols / dtype_block_elements(dtype);
  const int64_t row_bytes = blocks * block_bytes;
  const int64_t group_block_bytes = kGroupRows * block_bytes;
  std::vector<uint8_t> span(static_cast<size_t>(2 * kGroupRows * row_bytes));
  for (int64_t first = 0; first < rows;) {
    // One group, or a pair of them whose blocks alternate: group j's block b at 2b + j.
    const int64_t groups = paired_groups && first + 2 * kGroupRows <= rows ? 2 : 1;
    uint8_t* source = bytes + first * row_bytes;
    for (int64_t j = 0; j < groups; ++j)
      for (int64_t b = 0; b < blocks; ++b) {
        const uint8_t* block_rows[kGroupRows];
        for (int64_t r = 0; r < kGroupRows; ++r)
          block_rows[r] = source + (j * kGroupRows + r) * row_bytes + b * block_bytes;
        interleave_block(fields, block_rows, span.data() + (groups * b + j) * group_block_bytes);
      }
    std::memcpy(source, span.data(), static_cast<size_t>(groups * kGroupRows * row_bytes));
    first += groups * kGroupRows;
  }
}

}  // namespace retort::cpu
