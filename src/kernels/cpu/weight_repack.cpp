#include "kernels/cpu/weight_repack.h"

#include <cstring>
#include <vector>

#include "util/error.h"

namespace retort::cpu {

namespace {

constexpr int64_t kMinGroupRows = 8, kMaxGroupRows = 16;

enum class Field { Half, Bytes, Quants, OffsetQuants };  // OffsetQuants: int8 quants stored plus 128
struct FieldSpec {
  Field kind;
  int64_t offset;  // in the file's block
  int64_t bytes;
};

// The fields of each format's block: the first f16 field (d), the quant fields, the rest.
std::vector<FieldSpec> fields_of(DType dtype, bool unsigned_q8_0 = false) {
  switch (dtype) {
    case DType::Q8_0: return {{Field::Half, 0, 2}, {unsigned_q8_0 ? Field::OffsetQuants : Field::Quants, 2, 32}};
    case DType::Q4_0: return {{Field::Half, 0, 2}, {Field::Quants, 2, 16}};
    case DType::Q4_K: return {{Field::Half, 0, 2}, {Field::Quants, 16, 128}, {Field::Half, 2, 2}, {Field::Bytes, 4, 12}};
    case DType::Q6_K: return {{Field::Half, 208, 2}, {Field::Quants, 0, 128}, {Field::Quants, 128, 64}, {Field::Bytes, 192, 16}};
    default: return {};
  }
}

void interleave_field(const FieldSpec& f, const uint8_t* const* rows, int64_t group_rows, uint8_t* out) {
  for (int64_t r = 0; r < group_rows; ++r) {
    const uint8_t* field = rows[r] + f.offset;
    switch (f.kind) {
      case Field::Half: std::memcpy(out + 2 * r, field, 2); break;
      case Field::Bytes:
        for (int64_t k = 0; k < f.bytes; ++k) out[group_rows * k + r] = field[k];
        break;
      case Field::Quants:
        for (int64_t c = 0; c < f.bytes / 4; ++c) std::memcpy(out + 4 * group_rows * c + 4 * r, field + 4 * c, 4);
        break;
      case Field::OffsetQuants:  // q + 128 as a byte: the sign bit flipped
        for (int64_t k = 0; k < f.bytes; ++k) out[4 * group_rows * (k / 4) + 4 * r + k % 4] = field[k] ^ 0x80;
        break;
    }
  }
}

// Writes the group's block (row r's at rows[r], r < group_rows) as one interleaved block at `out`,
// whose final address is `home`: d before the quant fields or right after them, by that address.
void interleave_block(const std::vector<FieldSpec>& fields, const uint8_t* const* rows, int64_t group_rows,
                      const uint8_t* home, uint8_t* out) {
  const auto write = [&](const FieldSpec& f, int64_t at) {
    interleave_field(f, rows, group_rows, out + at);
    return group_rows * f.bytes;
  };
  const bool d_leads = interleaved_d_leads(home, group_rows);
  int64_t at = d_leads ? group_rows * fields[0].bytes : 0;
  size_t i = 1;
  for (; i < fields.size() && (fields[i].kind == Field::Quants || fields[i].kind == Field::OffsetQuants); ++i)
    at += write(fields[i], at);
  if (d_leads) write(fields[0], 0);
  else at += write(fields[0], at);
  for (; i < fields.size(); ++i) at += write(fields[i], at);
}

}  // namespace

bool has_interleaved_form(DType dtype, int64_t rows) {
  return !fields_of(dtype).empty() && rows > 0 && rows % kMinGroupRows == 0;
}

void repack_interleaved(DType dtype, uint8_t* bytes, int64_t rows, int64_t cols, InterleavedForm form) {
  const int64_t group_rows = form.group_rows;
  require(has_interleaved_form(dtype, rows), ErrorKind::Internal, "{} [{} × {}] has no interleaved form",
          dtype_name(dtype), rows, cols);
  require(group_rows == kMinGroupRows || group_rows == kMaxGroupRows, ErrorKind::Internal, "interleaved groups of {} rows", group_rows);
  const std::vector<FieldSpec> fields = fields_of(dtype, form.unsigned_q8_0);
  const auto block_bytes = static_cast<int64_t>(dtype_size(dtype));
  const int64_t blocks = cols / dtype_block_elements(dtype);
  const int64_t row_bytes = blocks * block_bytes;
  std::vector<uint8_t> group(static_cast<size_t>(group_rows * row_bytes));
  for (int64_t first = 0; first < rows;) {
    const int64_t n = first + group_rows <= rows ? group_rows : kMinGroupRows;
    uint8_t* source = bytes + first * row_bytes;
    for (int64_t b = 0; b < blocks; ++b) {
      const uint8_t* block_rows[kMaxGroupRows];
      for (int64_t r = 0; r < n; ++r) block_rows[r] = source + r * row_bytes + b * block_bytes;
      interleave_block(fields, block_rows, n, source + b * n * block_bytes, group.data() + b * n * block_bytes);
    }
    std::memcpy(source, group.data(), static_cast<size_t>(n * row_bytes));
    first += n;
  }
}

}  // namespace retort::cpu
