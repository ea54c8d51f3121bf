// Causal grouped-query attention over the paged KV cache. One work item is one query token and
// one KV head: the query heads that share that KV head are processed together, so each cached key
// and value row is read once for the whole group. Two passes over the sequence's blocks: scores of
// every visible position (the ISA's tiled dot products), one softmax per head, then the values
// weighted by the unnormalised exponentials, divided by their sum at the end. An int8 cache's
// rows are read unscaled: each position's key scale multiplies its scores, its value scale the
// weights of its value row.
#include <algorithm>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/softmax_kernels.h"
#include "util/error.h"
#include "util/thread_pool.h"

namespace retort {

namespace {

struct GroupContext {
  const cpu::IsaKernels& kernels;
  const cpu::SoftmaxKernels& softmax;
  const KvCacheLayout& cache;
  const AttentionShape& shape;
  int64_t group;  // query heads per KV head
  cpu::AttentionScoresFn scores;
  cpu::AttentionValuesFn values;
  size_t element_bytes;
  int64_t kv_heads;
};

// An int8 cache's scales of KV head `kv_head` from block `block` on, one per position, kv_heads apart.
inline const float* block_scales(const float* base, const GroupContext& ctx, int64_t block, int64_t kv_head) {
  return base + block * ctx.cache.block_size * ctx.kv_heads + kv_head;
}

// scores[g · stride + p] *= key scale of position p, for the G query heads of one KV head.
void apply_key_scales(float* scores, int64_t stride, int64_t group, const float* scales, int64_t kv_heads,
                      int64_t positions) {
  for (int64_t g = 0; g < group; ++g)
    for (int64_t p = 0; p < positions; ++p) scores[g * stride + p] *= scales[p * kv_heads];
}

// Start of KV head `kv_head`'s rows in cache block `block`.
inline const void* block_rows(const void* base, const GroupContext& ctx, int64_t block, int64_t kv_head) {
  const auto offset = static_cast<size_t>(block * ctx.cache.block_size * ctx.cache.kv_dim + kv_head * ctx.shape.head_dim);
  return static_cast<const uint8_t*>(base) + offset * ctx.element_bytes;
}

// Asks for the next block's rows of this KV head while the current one is worked on: the rows are
// half (or less) of each cached row, `kv_dim` apart, and without this the key and value loads
// waited on memory (a depth-4096 decode spent most of its attention time on the first load of a row).
void prefetch_block(const void* base, const GroupContext& ctx, const AttentionQuery& query, int64_t start,
                    int64_t kv_head) {
  const int64_t visible = query.visible, block_size = ctx.cache.block_size;
  if (start >= visible) return;
  const auto* rows = static_cast<const uint8_t*>(block_rows(base, ctx, query.table.blocks[start / block_size], kv_head));
  const int64_t positions = std::min(block_size, visible - start);
  const auto row_bytes = static_cast<int64_t>(ctx.shape.head_dim * ctx.element_bytes);
  const auto stride = static_cast<int64_t>(ctx.cache.kv_dim * ctx.element_bytes);
  for (int64_t p = 0; p < positions; ++p)
    for (int64_t line = 0; line < row_bytes; line += 64) __builtin_prefetch(rows + p * stride + line);
}

void attend_one_group(const GroupContext& ctx, float* out, const float* queries, const AttentionQuery& query,
                      int64_t kv_head, std::vector<float>& scores, std::vector<float>& inverse_totals,
                      std::vector<float>& scaled_weights) {
  const int64_t head_dim = ctx.shape.head_dim, block_size = ctx.cache.block_size, kv_dim = ctx.cache.kv_dim;
  const int64_t visible = query.visible;
  scores.resize(static_cast<size_t>(ctx.group * visible));
  const float* q_first = queries + kv_head * ctx.group * head_dim;
  float* out_first = out + kv_head * ctx.group * head_dim;

  for (int64_t start = 0; start < visible; start += block_size) {
    const int64_t block = query.table.blocks[start / block_size];
    const int64_t positions = std::min(block_size, visible - start);
    prefetch_block(ctx.cache.keys, ctx, query, start + block_size, kv_head);
    ctx.scores(scores.data() + start, visible, q_first, ctx.group, block_rows(ctx.cache.keys, ctx, block, kv_head),
               kv_dim, positions, head_dim, ctx.shape.scale);
    if (ctx.cache.key_scales != nullptr) {
      apply_key_scales(scores.data() + start, visible, ctx.group, block_scales(ctx.cache.key_scales, ctx, block, kv_head),
                       ctx.kv_heads, positions);
    }
  }
  inverse_totals.resize(static_cast<size_t>(ctx.group));
  for (int64_t g = 0; g < ctx.group; ++g) {
    float* row = scores.data() + g * visible;
    const double total = ctx.softmax.exp_in_place(row, visible, ctx.softmax.row_max(row, visible));
    inverse_totals[static_cast<size_t>(g)] = static_cast<float>(1.0 / total);
  }
  std::fill(out_first, out_first + ctx.group * head_dim, 0.0f);
  prefetch_block(ctx.cache.values, ctx, query, 0, kv_head);
  for (int64_t start = 0; start < visible; start += block_size) {
    const int64_t block = query.table.blocks[start / block_size];
    const int64_t positions = std::min(block_size, visible - start);
    prefetch_block(ctx.cache.values, ctx, query, start + block_size, kv_head);
    const float* weights = scores.data() + start;
    int64_t weight_stride = visible;
    if (ctx.cache.value_scales != nullptr) {  // each weight times its value row's scale
      const float* scales = block_scales(ctx.cache.value_scales, ctx, block, kv_head);
      scaled_weights.resize(static_cast<size_t>(ctx.group * positions));
      for (int64_t g = 0; g < ctx.group; ++g)
        for (int64_t p = 0; p < positions; ++p)
          scaled_weights[static_cast<size_t>(g * positions + p)] = weights[g * visible + p] * scales[p * ctx.kv_heads];
      weights = scaled_weights.data();
      weight_stride = positions;
    }
    ctx.values(out_first, weights, weight_stride, ctx.group, block_rows(ctx.cache.values, ctx, block, kv_head), kv_dim,
               positions, head_dim);
  }
  for (int64_t g = 0; g < ctx.group; ++g)
    ctx.kernels.scale(out_first + g * head_dim, inverse_totals[static_cast<size_t>(g)], head_dim);
}

}  // namespace

void CpuBackend::attention(float* out, const float* queries, const AttentionQuery* query_info, int64_t tokens,
                           const KvCacheLayout& cache, const AttentionShape& shape) {
  const DType type = cache.dtype;
  require(type == DType::F32 || type == DType::F16 || (type == DType::I8 && cache.key_scales && cache.value_scales),
          ErrorKind::Unsupported, "the KV cache holds {} values; attention reads f32, f16 or int8 with row scales",
          dtype_name(type));
  const GroupContext ctx{kernels_,
                         cpu::softmax_kernels_for(kernels_),
                         cache,
                         shape,
                         shape.num_heads / shape.num_kv_heads,
                         type == DType::F16   ? kernels_.attention_scores_f16
                         : type == DType::I8 ? kernels_.attention_scores_i8
                                             : kernels_.attention_scores_f32,
                         type == DType::F16   ? kernels_.attention_values_f16
                         : type == DType::I8 ? kernels_.attention_values_i8
                                             : kernels_.attention_values_f32,
                         dtype_size(type),
                         shape.num_kv_heads};
  const int64_t q_stride = shape.num_heads * shape.head_dim;
  const size_t items = static_cast<size_t>(tokens * shape.num_kv_heads);
  thread_pool().parallel_for(items, 1, [&](size_t begin, size_t end) {
    thread_local std::vector<float> scores, inverse_totals, scaled_weights;
    for (size_t item = begin; item < end; ++item) {
      const int64_t token = static_cast<int64_t>(item) / shape.num_kv_heads;
      const int64_t kv_head = static_cast<int64_t>(item) % shape.num_kv_heads;
      attend_one_group(ctx, out + token * q_stride, queries + token * q_stride, query_info[token], kv_head,
                       scores, inverse_totals, scaled_weights);
    }
  });
}

}  // namespace retort
