// Causal grouped-query attention over the paged KV cache. One work item is one query token and
// one KV head: the query heads that share that KV head are processed together, so each cached key
// and value row is read once for the whole group.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "util/thread_pool.h"

namespace retort {

namespace {

struct GroupContext {
  const cpu::IsaKernels& kernels;
  const KvCacheLayout& cache;
  const AttentionShape& shape;
  int64_t group;  // query heads per KV head
};

// Address of cached row `position` of a sequence, at KV head `kv_head`.
inline const float* cached_row(const float* base, const KvCacheLayout& cache, const KvBlockTable& table,
                               int64_t position, int64_t kv_head, int64_t head_dim) {
  const int64_t block = table.blocks[position / cache.block_size];
  const int64_t slot = block * cache.block_size + position % cache.block_size;
  return base + slot * cache.kv_dim + kv_head * head_dim;
}

void attend_one_group(const GroupContext& ctx, float* out, const float* queries, const AttentionQuery& query,
                      int64_t kv_head, std::vector<float>& scores) {
  const int64_t head_dim = ctx.shape.head_dim;
  const int64_t visible = query.visible;
  scores.resize(static_cast<size_t>(ctx.group * visible));
  const float* q_first = queries + kv_head * ctx.group * head_dim;
  float* out_first = out + kv_head * ctx.group * head_dim;

  for (int64_t pos = 0; pos < visible; ++pos) {
    const float* key = cached_row(ctx.cache.keys, ctx.cache, query.table, pos, kv_head, head_dim);
    for (int64_t g = 0; g < ctx.group; ++g) {
      scores[g * visible + pos] = ctx.kernels.dot(q_first + g * head_dim, key, head_dim) * ctx.shape.scale;
    }
  }
  for (int64_t g = 0; g < ctx.group; ++g) {
    float* row = scores.data() + g * visible;
    float max_score = -std::numeric_limits<float>::infinity();
    for (int64_t pos = 0; pos < visible; ++pos) max_score = std::max(max_score, row[pos]);
    float total = 0.0f;
    for (int64_t pos = 0; pos < visible; ++pos) {
      row[pos] = std::exp(row[pos] - max_score);
      total += row[pos];
    }
    const float inv_total = 1.0f / total;
    for (int64_t pos = 0; pos < visible; ++pos) row[pos] *= inv_total;
    std::fill(out_first + g * head_dim, out_first + (g + 1) * head_dim, 0.0f);
  }
  for (int64_t pos = 0; pos < visible; ++pos) {
    const float* value = cached_row(ctx.cache.values, ctx.cache, query.table, pos, kv_head, head_dim);
    for (int64_t g = 0; g < ctx.group; ++g) {
      ctx.kernels.axpy(out_first + g * head_dim, scores[g * visible + pos], value, head_dim);
    }
  }
}

}  // namespace

void CpuBackend::attention(float* out, const float* queries, const AttentionQuery* query_info, int64_t tokens,
                           const KvCacheLayout& cache, const AttentionShape& shape) {
  const GroupContext ctx{kernels_, cache, shape, shape.num_heads / shape.num_kv_heads};
  const int64_t q_stride = shape.num_heads * shape.head_dim;
  const size_t items = static_cast<size_t>(tokens * shape.num_kv_heads);
  thread_pool().parallel_for(items, 1, [&](size_t begin, size_t end) {
    thread_local std::vector<float> scores;
    for (size_t item = begin; item < end; ++item) {
      const int64_t token = static_cast<int64_t>(item) / shape.num_kv_heads;
      const int64_t kv_head = static_cast<int64_t>(item) % shape.num_kv_heads;
      attend_one_group(ctx, out + token * q_stride, queries + token * q_stride, query_info[token], kv_head,
                       scores);
    }
  });
}

}  // namespace retort
