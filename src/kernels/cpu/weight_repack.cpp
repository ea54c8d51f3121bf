#include "kernels/cpu/weight_repack.h"

#include <cstring>
#include <vector>

#include "util/error.h"

namespace retort::cpu {

namespace {
constexpr int64_t kGroupRows = 8;
}

bool has_interleaved8_form(DType dtype, int64_t rows) {
  return (dtype == DType::Q8_0 || dtype == DType::Q4_0) && rows > 0 && rows % kGroupRows == 0;
}

void repack_interleaved8(DType dtype, uint8_t* bytes, int64_t rows, int64_t cols) {
  require(has_interleaved8_form(dtype, rows), ErrorKind::Internal, "{} [{} × {}] has no interleaved form",
          dtype_name(dtype), rows, cols);
  const int64_t block_bytes = static_cast<int64_t>(dtype_size(dtype));  // 34 or 18: f16 scale + quants
  const int64_t quant_bytes = block_bytes - 2;
  const int64_t blocks = cols / dtype_block_elements(dtype);
  const int64_t row_bytes = blocks * block_bytes;
  std::vector<uint8_t> group(static_cast<size_t>(kGroupRows * row_bytes));
  for (int64_t g = 0; g < rows; g += kGroupRows) {
    uint8_t* source = bytes + g * row_bytes;
    for (int64_t b = 0; b < blocks; ++b) {
      uint8_t* target = group.data() + b * kGroupRows * block_bytes;
      for (int64_t r = 0; r < kGroupRows; ++r) {
        const uint8_t* block = source + r * row_bytes + b * block_bytes;
        std::memcpy(target + 2 * r, block, 2);
        for (int64_t c = 0; c < quant_bytes / 4; ++c)
          std::memcpy(target + 2 * kGroupRows + 32 * c + 4 * r, block + 2 + 4 * c, 4);
      }
    }
    std::memcpy(source, group.data(), group.size());
  }
}

}  // namespace retort::cpu
