#include "kernels/cpu/cpu_backend.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string_view>
#include <vector>

#include "kernels/cpu/softmax_kernels.h"
#include "kernels/cpu/weight_repack.h"
#include "tensor/quant_blocks.h"
#include "util/error.h"
#include "util/thread_pool.h"

namespace retort {

namespace {

// The SIMD tile loop for a weight type; nullptr for block types that go through
// matmul_quantized (dequantize a row, then dot).
cpu::MatmulTileFn tile_for(const cpu::IsaKernels& kernels, DType dtype) {
  switch (dtype) {
    case DType::F32: return kernels.matmul_f32;
    case DType::F16: return kernels.matmul_f16;
    case DType::BF16: return kernels.matmul_bf16;
    case DType::Q8_0: return kernels.matmul_q8_0;
    default:
      require(is_block_quantized(dtype), ErrorKind::Unsupported, "matmul has no kernel for weights of type {}",
              dtype_name(dtype));
      return nullptr;
  }
}

// The integer dot-product kernel for a block-quantized weight type, if the CPU has one.
cpu::QuantMatmulFn integer_kernel_for(const cpu::IntegerDotKernels* kernels, const WeightMatrix& w) {
  if (kernels == nullptr) return nullptr;
  if (w.layout == WeightLayout::Interleaved) {
    switch (w.dtype) {
      case DType::Q8_0: return kernels->matmul_q8_0_x8;
      case DType::Q4_0: return kernels->matmul_q4_0_x8;
      case DType::Q4_K: return kernels->matmul_q4_k_x8;
      case DType::Q6_K: return kernels->matmul_q6_k_x8;
      default: fail(ErrorKind::Internal, "no kernel reads {} weights in the interleaved layout", dtype_name(w.dtype));
    }
  }
  switch (w.dtype) {
    case DType::Q8_0: return kernels->matmul_q8_0;
    case DType::Q4_0: return kernels->matmul_q4_0;
    case DType::Q4_K: return kernels->matmul_q4_k;
    case DType::Q6_K: return kernels->matmul_q6_k;
    default: return nullptr;
  }
}

// Rows per parallel chunk: enough work per chunk to amortise the hand-off, ~64 KiB of weights.
// Interleaved matrices are cut in multiples of 16 rows (the 512-bit kernels' groups), and of 32
// where a 16-row group is long enough that one token reads groups in pairs (kPairedGroupBytes),
// bf16 ones in the 8 rows of its decode tile (cut in 4s, a 1.5B decode ran a fifth of its bf16
// rows, and all of ffn_down's, through the one-row tail tile: 0.83x llama.cpp at 2 threads).
size_t row_grain(const WeightMatrix& w) {
  size_t row_bytes = dtype_row_bytes(w.dtype, w.cols);
  const bool paired = cpu::reads_groups_in_pairs(static_cast<int64_t>(row_bytes), 16);
  const size_t multiple = w.layout == WeightLayout::Interleaved ? (paired ? 32 : 16) : w.dtype == DType::BF16 ? 8 : 4;
  return std::max<size_t>(multiple, (64 * 1024) / std::max<size_t>(row_bytes, 1)) / multiple * multiple;
}

}  // namespace

void convert_to_f32(float* out, const void* in, DType dtype, int64_t count) {
  const auto& kernels = cpu::active_kernels();
  switch (dtype) {
    case DType::F32: std::memcpy(out, in, static_cast<size_t>(count) * sizeof(float)); return;
    case DType::F16: kernels.f16_to_f32(out, in, count); return;
    case DType::BF16: kernels.bf16_to_f32(out, in, count); return;
    case DType::Q8_0:
    case DType::Q4_0:
    case DType::Q4_K:
    case DType::Q6_K: dequantize_rows(block_type_of(dtype), in, out, 1, count); return;
    default: fail(ErrorKind::Unsupported, "cannot convert {} values to f32", dtype_name(dtype));
  }
}

ActivationPrecision activation_precision(std::string_view name) {
  if (name == "f32") return ActivationPrecision::F32;
  if (name == "bf16") return ActivationPrecision::Bf16;
  fail(ErrorKind::InvalidInput, "--act-type '{}' is not an activation type: use bf16 or f32", name);
}

CpuBackend::CpuBackend(ActivationPrecision precision) : CpuBackend(cpu::active_kernels(), precision) {}

CpuBackend::CpuBackend(const cpu::IsaKernels& kernels, ActivationPrecision precision)
    : kernels_(kernels),
      integer_kernels_(cpu::integer_kernels_for(kernels)),
      bf16_kernels_(precision == ActivationPrecision::Bf16 ? cpu::bf16_dot_kernels_for(kernels) : nullptr) {}

std::string CpuBackend::name() const {
  std::string name = std::string("cpu-") + kernels_.name;
  if (integer_kernels_ != nullptr && std::string_view(integer_kernels_->name) != kernels_.name)
    name += std::string("+") + integer_kernels_->name;
  if (bf16_kernels_ != nullptr) name += std::string("+") + bf16_kernels_->name;
  return name;
}

// Q8_0, Q4_0, Q4_K and Q6_K matrices whose rows come in whole groups of 8 go to the Interleaved layout when
// this CPU has integer kernels (the scalar set reads rows as they are).
bool CpuBackend::repack(WeightMatrix& w, void* bytes) {
  if (integer_kernels_ == nullptr || w.layout != WeightLayout::Rows || !cpu::has_interleaved_form(w.dtype, w.rows))
    return false;
  require(bytes == w.data, ErrorKind::Internal, "repack needs the matrix's own bytes");
  cpu::repack_interleaved(w.dtype, static_cast<uint8_t*>(bytes), w.rows, w.cols, integer_kernels_->interleaved_form());
  w.layout = WeightLayout::Interleaved;
  return true;
}

void CpuBackend::matmul(float* out, const float* in, const WeightMatrix& w, int64_t tokens) {
  const MatmulTarget target{out, w};
  matmuls(in, tokens, {&target, 1});
}

// Each target's rows are cut into pieces of about 64 KiB of weights, and all pieces of all targets
// run in one parallel loop. Block-quantized weights with an integer kernel read activations
// quantized to 8-bit blocks once, here, for every target (q/k/v or gate/up share them).
void CpuBackend::matmuls(const float* in, int64_t tokens, std::span<const MatmulTarget> targets) {
  struct Piece {
    const MatmulTarget* target;
    cpu::QuantMatmulFn integer;  // else bf16 pairs, else the float tile, else dequantize-and-dot
    bool bf16_pairs;
    cpu::MatmulTileFn tile;
    int64_t begin, end;
  };
  thread_local std::vector<Piece> pieces;
  thread_local cpu::QuantizedActivations quantized;
  thread_local std::vector<uint16_t> bf16_activations;
  pieces.clear();
  bool needs_quantized = false, needs_bf16 = false;
  const int64_t cols = targets[0].w.cols;
  for (const MatmulTarget& target : targets) {
    require(target.w.cols == cols, ErrorKind::Internal, "matmuls of one input need equal column counts");
    cpu::QuantMatmulFn integer = integer_kernel_for(integer_kernels_, target.w);
    const bool bf16_pairs = integer == nullptr && bf16_kernels_ != nullptr && target.w.dtype == DType::BF16;
    cpu::MatmulTileFn tile = integer || bf16_pairs ? nullptr : tile_for(kernels_, target.w.dtype);
    needs_quantized |= integer != nullptr;
    needs_bf16 |= bf16_pairs;
    const auto grain = static_cast<int64_t>(row_grain(target.w));
    for (int64_t begin = 0; begin < target.w.rows; begin += grain)
      pieces.push_back({&target, integer, bf16_pairs, tile, begin, std::min(target.w.rows, begin + grain)});
  }
  if (needs_quantized) quantize_for_integer_kernels(in, tokens, cols, quantized);
  if (needs_bf16) round_for_bf16_kernels(in, tokens * cols, bf16_activations);
  // Plain references for the workers: inside the lambda a thread_local's name would mean each
  // worker's own (empty) instance.
  const cpu::QuantizedActivations& activations = quantized;
  const uint16_t* bf16_in = bf16_activations.data();
  const std::vector<Piece>& work = pieces;
  thread_pool().parallel_for(work.size(), 1, [&](size_t first, size_t last) {
    for (size_t i = first; i < last; ++i) {
      const Piece& p = work[i];
      const WeightMatrix& w = p.target->w;
      if (p.integer != nullptr) {
        p.integer(p.target->out, w.rows, activations, w.data, p.begin, p.end);
      } else if (p.bf16_pairs) {
        bf16_kernels_->matmul_bf16(p.target->out, w.rows, bf16_in, tokens, w.data, w.cols, p.begin, p.end);
      } else if (p.tile != nullptr) {
        p.tile(p.target->out, w.rows, in, w.cols, w.data, w.cols, p.begin, p.end, tokens);
      } else {
        require(w.layout == WeightLayout::Rows, ErrorKind::Internal, "interleaved weights need the integer kernels");
        dequantize_and_dot(p.target->out, in, w, tokens, p.begin, p.end);
      }
    }
  });
}

void CpuBackend::quantize_for_integer_kernels(const float* in, int64_t tokens, int64_t cols,
                                              cpu::QuantizedActivations& out) {
  cpu::size_activations(tokens, cols, out);
  const cpu::QuantizeRowsFn quantize = integer_kernels_->quantize_rows;
  thread_pool().parallel_for(static_cast<size_t>(tokens), 4, [&](size_t begin, size_t end) {
    quantize(in, static_cast<int64_t>(begin), static_cast<int64_t>(end), out);
  });
}

void CpuBackend::round_for_bf16_kernels(const float* in, int64_t count, std::vector<uint16_t>& out) {
  out.resize(static_cast<size_t>(count));
  constexpr int64_t kGrain = 1 << 14;  // a multiple of every vector width
  thread_pool().parallel_for(static_cast<size_t>((count + kGrain - 1) / kGrain), 1, [&](size_t first, size_t last) {
    const int64_t begin = static_cast<int64_t>(first) * kGrain;
    const int64_t end = std::min(count, static_cast<int64_t>(last) * kGrain);
    bf16_kernels_->round_to_bf16(out.data() + begin, in + begin, end - begin);
  });
}

// Block-quantized weights without an integer kernel (the scalar set): each row is dequantized once
// into a small buffer and dotted with every token's activations.
void CpuBackend::dequantize_and_dot(float* out, const float* in, const WeightMatrix& w, int64_t tokens,
                                    int64_t row_begin, int64_t row_end) {
  const size_t row_bytes = dtype_row_bytes(w.dtype, w.cols);
  const BlockType type = block_type_of(w.dtype);
  thread_local std::vector<float> row_values;
  row_values.resize(static_cast<size_t>(w.cols));
  for (int64_t r = row_begin; r < row_end; ++r) {
    dequantize_rows(type, static_cast<const uint8_t*>(w.data) + static_cast<size_t>(r) * row_bytes,
                    row_values.data(), 1, w.cols);
    for (int64_t t = 0; t < tokens; ++t) out[t * w.rows + r] = kernels_.dot(row_values.data(), in + t * w.cols, w.cols);
  }
}

void CpuBackend::rmsnorm(float* out, const float* x, const float* weight, int64_t tokens, int64_t dim,
                         float eps) {
  thread_pool().parallel_for(static_cast<size_t>(tokens), 16, [&](size_t begin, size_t end) {
    for (size_t t = begin; t < end; ++t) {
      const float* row = x + t * dim;
      float* dst = out + t * dim;
      float mean_square = kernels_.dot(row, row, dim) / static_cast<float>(dim);
      float inv_rms = 1.0f / std::sqrt(mean_square + eps);
      for (int64_t i = 0; i < dim; ++i) dst[i] = row[i] * inv_rms * weight[i];
    }
  });
}

void CpuBackend::rope(float* x, const float* cos, const float* sin, int64_t tokens, int64_t heads,
                      int64_t head_dim, RopeLayout layout) {
  const int64_t half = head_dim / 2;
  // Offset of pair i's second element from its first, and the stride between pairs.
  const int64_t partner = layout == RopeLayout::RotateHalf ? half : 1;
  const int64_t stride = layout == RopeLayout::RotateHalf ? 1 : 2;
  thread_pool().parallel_for(static_cast<size_t>(tokens), 8, [&](size_t begin, size_t end) {
    for (size_t t = begin; t < end; ++t) {
      const float* c = cos + t * half;
      const float* s = sin + t * half;
      for (int64_t h = 0; h < heads; ++h) {
        float* v = x + (static_cast<int64_t>(t) * heads + h) * head_dim;
        for (int64_t i = 0; i < half; ++i) {
          float* pair = v + i * stride;
          const float first = pair[0];
          const float second = pair[partner];
          pair[0] = first * c[i] - second * s[i];
          pair[partner] = second * c[i] + first * s[i];
        }
      }
    }
  });
}

void CpuBackend::silu_mul(float* out, const float* gate, const float* up, int64_t count) {
  const cpu::SoftmaxKernels& kernels = cpu::softmax_kernels_for(kernels_);
  thread_pool().parallel_for(static_cast<size_t>(count), 4096, [&](size_t begin, size_t end) {
    kernels.silu_mul(out + begin, gate + begin, up + begin, static_cast<int64_t>(end - begin));
  });
}

namespace {

// One row of head_dim values as int8 levels and the scale that maps the largest magnitude to 127
// (rounding to nearest): symmetric, so a zero row stays zero and the kernels need no offset.
void quantize_kv_row(const float* row, int64_t head_dim, int8_t* levels, float& scale) {
  float largest = 0.0f;
  for (int64_t d = 0; d < head_dim; ++d) largest = std::max(largest, std::fabs(row[d]));
  scale = largest / 127.0f;
  const float inverse = largest > 0.0f ? 127.0f / largest : 0.0f;
  for (int64_t d = 0; d < head_dim; ++d) {
    levels[d] = static_cast<int8_t>(std::clamp(std::nearbyint(row[d] * inverse), -127.0f, 127.0f));
  }
}

void kv_write_int8(const KvCacheLayout& cache, const float* keys, const float* values, const int64_t* slots,
                   int64_t tokens) {
  require(cache.key_scales && cache.value_scales, ErrorKind::Internal, "an int8 KV cache needs its scale arrays");
  const int64_t kv_heads = cache.kv_dim / cache.head_dim;
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t h = 0; h < kv_heads; ++h) {
      const auto row = static_cast<size_t>(cache.row_offset(slots[t], h));
      const int64_t offset = t * cache.kv_dim + h * cache.head_dim;
      const size_t scale_index = static_cast<size_t>(slots[t] * kv_heads + h);
      quantize_kv_row(keys + offset, cache.head_dim, static_cast<int8_t*>(cache.keys) + row, cache.key_scales[scale_index]);
      quantize_kv_row(values + offset, cache.head_dim, static_cast<int8_t*>(cache.values) + row,
                      cache.value_scales[scale_index]);
    }
  }
}

}  // namespace

void CpuBackend::kv_write(const KvCacheLayout& cache, const float* keys, const float* values,
                          const int64_t* slots, int64_t tokens) {
  require(cache.head_dim > 0 && cache.kv_dim % cache.head_dim == 0, ErrorKind::Internal,
          "a KV cache needs its head size ({} does not divide {})", cache.head_dim, cache.kv_dim);
  if (cache.dtype == DType::I8) return kv_write_int8(cache, keys, values, slots, tokens);
  require(cache.dtype == DType::F32 || cache.dtype == DType::F16, ErrorKind::Unsupported,
          "the KV cache holds {} values; kv_write writes f32, f16 or int8", dtype_name(cache.dtype));
  const size_t element = dtype_size(cache.dtype);
  const int64_t kv_heads = cache.kv_dim / cache.head_dim;
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t h = 0; h < kv_heads; ++h) {
      const size_t row = static_cast<size_t>(cache.row_offset(slots[t], h)) * element;
      const float* key = keys + t * cache.kv_dim + h * cache.head_dim;
      const float* value = values + t * cache.kv_dim + h * cache.head_dim;
      auto* key_row = static_cast<uint8_t*>(cache.keys) + row;
      auto* value_row = static_cast<uint8_t*>(cache.values) + row;
      if (cache.dtype == DType::F16) {
        kernels_.f32_to_f16(key_row, key, cache.head_dim);
        kernels_.f32_to_f16(value_row, value, cache.head_dim);
      } else {
        std::memcpy(key_row, key, static_cast<size_t>(cache.head_dim) * element);
        std::memcpy(value_row, value, static_cast<size_t>(cache.head_dim) * element);
      }
    }
  }
}

void CpuBackend::embed(float* out, const WeightMatrix& table, const int32_t* ids, int64_t tokens) {
  const size_t row_bytes = dtype_row_bytes(table.dtype, table.cols);
  for (int64_t t = 0; t < tokens; ++t) {
    require(ids[t] >= 0 && ids[t] < table.rows, ErrorKind::OutOfRange,
            "token id {} is outside the embedding table (0..{})", ids[t], table.rows - 1);
    const auto* row = static_cast<const uint8_t*>(table.data) + static_cast<size_t>(ids[t]) * row_bytes;
    convert_to_f32(out + t * table.cols, row, table.dtype, table.cols);
  }
}

void CpuBackend::add(float* x, const float* y, int64_t count) {
  thread_pool().parallel_for(static_cast<size_t>(count), 1 << 14, [&](size_t begin, size_t end) {
    kernels_.axpy(x + begin, 1.0f, y + begin, static_cast<int64_t>(end - begin));
  });
}

void CpuBackend::add_bias(float* x, const float* bias, int64_t tokens, int64_t dim) {
  for (int64_t t = 0; t < tokens; ++t) kernels_.axpy(x + t * dim, 1.0f, bias, dim);
}

}  // namespace retort
