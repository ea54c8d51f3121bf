// Causal grouped-query attention over the paged KV cache, flash-decoding style. Each query's
// visible positions are cut into chunks of a fixed number of blocks, and one work item is one
// chunk of one query for a slice of the KV heads: the query heads that share a KV head are
// processed together, so each cached key and value row is read once for the whole group. An item
// makes two passes over its chunk: the scores of every position (the ISA's tiled dot products),
// one softmax per head against the chunk's own maximum, then the values weighted by those
// unnormalised exponentials. A query with several chunks then merges them, each rescaled by
// exp(chunk max − overall max). Why chunks: a decode step has one query, and one item per KV head
// gave 2 threads 8 long items whose reads the memory could not keep up with; chunks of all heads
// read whole blocks (each KV head's rows are contiguous in a block, KvCacheLayout) in address
// order and bound an item's scores to L2. Chunks depend only on the query's own length, never
// on the batch or the threads, so a sequence's output is the same however it is batched; head
// slices (which change no arithmetic) spread short contexts over the threads. An int8 cache's
// rows are read unscaled: each position's key scale multiplies its scores, its value scale the
// weights of its value row.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/softmax_kernels.h"
#include "util/error.h"
#include "util/thread_pool.h"

namespace retort {

namespace {

struct AttentionContext {
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

// Positions per chunk (rounded to whole blocks): long enough that merging costs nothing next to the chunk, short
// enough that a decode step at a few thousand positions gives every thread several chunks and
// that an item's scores (heads × chunk) stay in L2.
constexpr int64_t kChunkPositions = 256;

// One work item: positions [begin, end) of query `token` for KV heads [kv_first, kv_last).
struct AttentionItem {
  int64_t token, chunk, begin, end, kv_first, kv_last;
};

// An int8 cache's scales of KV head `kv_head` from block `block` on, one per position, kv_heads apart.
inline const float* block_scales(const float* base, const AttentionContext& ctx, int64_t block, int64_t kv_head) {
  return base + block * ctx.cache.block_size * ctx.kv_heads + kv_head;
}

// scores[g · stride + p] *= key scale of position p, for the G query heads of one KV head.
void apply_key_scales(float* scores, int64_t stride, int64_t group, const float* scales, int64_t kv_heads,
                      int64_t positions) {
  for (int64_t g = 0; g < group; ++g)
    for (int64_t p = 0; p < positions; ++p) scores[g * stride + p] *= scales[p * kv_heads];
}

// Start of KV head `kv_head`'s rows in cache block `block` (contiguous, head_dim apart).
inline const void* block_rows(const void* base, const AttentionContext& ctx, int64_t block, int64_t kv_head) {
  const auto offset = static_cast<size_t>(ctx.cache.row_offset(block * ctx.cache.block_size, kv_head));
  return static_cast<const uint8_t*>(base) + offset * ctx.element_bytes;
}

// Reads one byte of each cache line of the item's rows in `base`, in address order, before the
// arithmetic on them. The chunk's rows (512 KiB of f16 keys for the 8B's 8 KV heads) then sit in
// L2 for the pass that uses them. Why: with the arithmetic in between, the loads of a pass reached
// the memory one tile at a time and the pass ran at the sum of its compute and memory times (a
// depth-4096 f16 layer took 1.06 ms from memory against 0.36 ms from L3); this loop keeps many
// lines in flight and lets the hardware prefetcher stream, and took it to 0.6-0.67 ms. Software
// prefetches of the next block, 1 to 8 blocks ahead, and reads interleaved with the tiles did not
// help (bench_kernels BM_AttentionDecode).
void load_into_cache(const void* base, const AttentionContext& ctx, const AttentionItem& item, const KvBlockTable& table) {
  const int64_t block_size = ctx.cache.block_size;
  uint32_t sink = 0;
  for (int64_t start = item.begin; start < item.end; start += block_size) {
    const int64_t block = table.blocks[start / block_size];
    const auto bytes = static_cast<int64_t>(std::min(block_size, item.end - start) * ctx.shape.head_dim * ctx.element_bytes);
    for (int64_t kv_head = item.kv_first; kv_head < item.kv_last; ++kv_head) {
      const auto* rows = static_cast<const volatile uint8_t*>(block_rows(base, ctx, block, kv_head));
      for (int64_t line = 0; line < bytes; line += 64) sink += rows[line];
    }
  }
  asm volatile("" : : "r"(sink));  // the reads are the point: keep them
}

// What one item leaves for its query's merge, per query head: the chunk's maximum score, the sum
// of its exponentials and the values weighted by them (head_dim floats).
struct ChunkPartials {
  float* max;
  double* total;
  float* weighted;
};

// Pass 1: scores of the item's positions for its heads, scores[(head − first head) · length + p].
void chunk_scores(const AttentionContext& ctx, float* scores, const float* query, const AttentionItem& item,
                  const KvBlockTable& table) {
  const int64_t head_dim = ctx.shape.head_dim, length = item.end - item.begin, block_size = ctx.cache.block_size;
  load_into_cache(ctx.cache.keys, ctx, item, table);
  for (int64_t start = item.begin; start < item.end; start += block_size) {
    const int64_t block = table.blocks[start / block_size], positions = std::min(block_size, item.end - start);
    for (int64_t kv_head = item.kv_first; kv_head < item.kv_last; ++kv_head) {
      float* s = scores + (kv_head - item.kv_first) * ctx.group * length + (start - item.begin);
      ctx.scores(s, length, query + kv_head * ctx.group * head_dim, ctx.group,
                 block_rows(ctx.cache.keys, ctx, block, kv_head), ctx.shape.head_dim, positions, head_dim, ctx.shape.scale);
      if (ctx.cache.key_scales != nullptr)
        apply_key_scales(s, length, ctx.group, block_scales(ctx.cache.key_scales, ctx, block, kv_head), ctx.kv_heads,
                         positions);
    }
  }
}

// Pass 2: weighted[(head − first head) · head_dim + d] = Σ_p weights[head, p] · V_p[d].
void chunk_values(const AttentionContext& ctx, float* weighted, const float* weights, const AttentionItem& item,
                  const KvBlockTable& table, std::vector<float>& scaled_weights) {
  const int64_t head_dim = ctx.shape.head_dim, length = item.end - item.begin, block_size = ctx.cache.block_size;
  std::fill(weighted, weighted + (item.kv_last - item.kv_first) * ctx.group * head_dim, 0.0f);
  load_into_cache(ctx.cache.values, ctx, item, table);
  for (int64_t start = item.begin; start < item.end; start += block_size) {
    const int64_t block = table.blocks[start / block_size], positions = std::min(block_size, item.end - start);
    for (int64_t kv_head = item.kv_first; kv_head < item.kv_last; ++kv_head) {
      const float* w = weights + (kv_head - item.kv_first) * ctx.group * length + (start - item.begin);
      int64_t w_stride = length;
      if (ctx.cache.value_scales != nullptr) {  // each weight times its value row's scale
        const float* scales = block_scales(ctx.cache.value_scales, ctx, block, kv_head);
        scaled_weights.resize(static_cast<size_t>(ctx.group * positions));
        for (int64_t g = 0; g < ctx.group; ++g)
          for (int64_t p = 0; p < positions; ++p)
            scaled_weights[static_cast<size_t>(g * positions + p)] = w[g * length + p] * scales[p * ctx.kv_heads];
        w = scaled_weights.data();
        w_stride = positions;
      }
      ctx.values(weighted + (kv_head - item.kv_first) * ctx.group * head_dim, w, w_stride, ctx.group,
                 block_rows(ctx.cache.values, ctx, block, kv_head), ctx.shape.head_dim, positions, head_dim);
    }
  }
}

// One item: its scores, a softmax per head against the chunk's maximum, its weighted values.
void attend_chunk(const AttentionContext& ctx, const ChunkPartials& partials, const float* query,
                  const AttentionItem& item, const KvBlockTable& table, std::vector<float>& scores,
                  std::vector<float>& scaled_weights) {
  const int64_t length = item.end - item.begin, heads = (item.kv_last - item.kv_first) * ctx.group;
  const int64_t first_head = item.kv_first * ctx.group;
  scores.resize(static_cast<size_t>(heads * length));
  chunk_scores(ctx, scores.data(), query, item, table);
  for (int64_t h = 0; h < heads; ++h) {
    float* row = scores.data() + h * length;
    const float row_max = ctx.softmax.row_max(row, length);
    partials.max[first_head + h] = row_max;
    partials.total[first_head + h] = ctx.softmax.exp_in_place(row, length, row_max);
  }
  chunk_values(ctx, partials.weighted + first_head * ctx.shape.head_dim, scores.data(), item, table, scaled_weights);
}


AttentionContext make_context(const cpu::IsaKernels& kernels, const KvCacheLayout& cache, const AttentionShape& shape) {
  const DType type = cache.dtype;
  require(type == DType::F32 || type == DType::F16 || (type == DType::I8 && cache.key_scales && cache.value_scales),
          ErrorKind::Unsupported, "the KV cache holds {} values; attention reads f32, f16 or int8 with row scales",
          dtype_name(type));
  return AttentionContext{kernels,
                          cpu::softmax_kernels_for(kernels),
                          cache,
                          shape,
                          shape.num_heads / shape.num_kv_heads,
                          type == DType::F16   ? kernels.attention_scores_f16
                          : type == DType::I8 ? kernels.attention_scores_i8
                                              : kernels.attention_scores_f32,
                          type == DType::F16   ? kernels.attention_values_f16
                          : type == DType::I8 ? kernels.attention_values_i8
                                              : kernels.attention_values_f32,
                          dtype_size(type),
                          shape.num_kv_heads};
}

// Positions per chunk: kChunkPositions rounded to whole blocks.
int64_t chunk_positions(const AttentionContext& ctx) {
  return std::max<int64_t>(1, kChunkPositions / ctx.cache.block_size) * ctx.cache.block_size;
}

// How many chunks a query that sees `visible` positions is cut into.
int64_t chunks_for(const AttentionContext& ctx, int64_t visible) {
  const int64_t chunk = chunk_positions(ctx);
  return (visible + chunk - 1) / chunk;
}

// The partials of at most this many chunks are held at once (8.5 MB for the 8B shape): a long
// prefill at depth is attended a group of queries at a time instead of holding every query's
// chunks (512 queries at depth 4096 would have been 150 MB).
constexpr int64_t kMaxChunksPerPass = 512;

// The buffers of one call, kept by the calling thread from call to call.
struct AttentionBuffers {
  std::vector<AttentionItem> items;
  std::vector<int64_t> chunk_first;  // chunk_first[t]: the index of query t's first chunk
  std::vector<float> partials;       // per chunk: the heads' maxima, then their weighted values
  std::vector<double> totals;        // per chunk: the heads' totals

  // Room for the partials of `chunks` chunks.
  void reserve_partials(int64_t chunks, const AttentionShape& shape) {
    partials.resize(static_cast<size_t>(chunks * shape.num_heads * (shape.head_dim + 1)));
    totals.resize(static_cast<size_t>(chunks * shape.num_heads));
  }
  ChunkPartials partials_of(int64_t chunk, const AttentionShape& shape) {
    float* base = partials.data() + chunk * shape.num_heads * (shape.head_dim + 1);
    return ChunkPartials{base, totals.data() + chunk * shape.num_heads, base + shape.num_heads};
  }
};

// out[h] = Σ_c e^(m_c − M) · weighted_c[h] ÷ Σ_c e^(m_c − M) · total_c over chunks
// [first, first + chunks) of one query (M their maximum).
void merge_chunks(const AttentionContext& ctx, float* out, AttentionBuffers& buffers, int64_t first, int64_t chunks) {
  const int64_t heads = ctx.shape.num_heads, head_dim = ctx.shape.head_dim;
  for (int64_t h = 0; h < heads; ++h) {
    float overall = buffers.partials_of(first, ctx.shape).max[h];
    for (int64_t c = 1; c < chunks; ++c) overall = std::max(overall, buffers.partials_of(first + c, ctx.shape).max[h]);
    float* o = out + h * head_dim;
    std::fill(o, o + head_dim, 0.0f);
    double total = 0.0;
    for (int64_t c = 0; c < chunks; ++c) {
      const ChunkPartials chunk = buffers.partials_of(first + c, ctx.shape);
      const float weight = std::exp(chunk.max[h] - overall);
      total += static_cast<double>(weight) * chunk.total[h];
      ctx.kernels.axpy(o, weight, chunk.weighted + h * head_dim, head_dim);
    }
    ctx.kernels.scale(o, static_cast<float>(1.0 / total), head_dim);
  }
}

// The items of a pass: each query's chunks; a query with fewer chunks than twice the threads also
// has its KV heads cut into slices (which changes no arithmetic) so that short contexts still
// spread over the threads.
void make_items(const AttentionContext& ctx, const AttentionQuery* queries, int64_t tokens, AttentionBuffers& buffers) {
  const int64_t chunk = chunk_positions(ctx);
  const int64_t wanted = 2 * static_cast<int64_t>(thread_pool().size());
  buffers.items.clear();
  buffers.chunk_first.assign(static_cast<size_t>(tokens) + 1, 0);
  for (int64_t t = 0; t < tokens; ++t) {
    const int64_t visible = queries[t].visible, chunks = chunks_for(ctx, visible);
    buffers.chunk_first[static_cast<size_t>(t) + 1] = buffers.chunk_first[static_cast<size_t>(t)] + chunks;
    const int64_t slices = std::clamp<int64_t>((wanted + chunks - 1) / chunks, 1, ctx.kv_heads);
    for (int64_t c = 0; c < chunks; ++c)
      for (int64_t s = 0; s < slices; ++s)
        buffers.items.push_back({t, c, c * chunk, std::min(visible, (c + 1) * chunk), s * ctx.kv_heads / slices,
                                 (s + 1) * ctx.kv_heads / slices});
  }
}

// Attention of `tokens` queries (out and queries start at the first one's rows): every item, then
// each query's merge.
void attend_queries(const AttentionContext& ctx, float* out, const float* queries, const AttentionQuery* query_info,
                    int64_t tokens, AttentionBuffers& buffers) {
  const int64_t q_stride = ctx.shape.num_heads * ctx.shape.head_dim;
  make_items(ctx, query_info, tokens, buffers);
  const std::vector<int64_t>& chunk_first = buffers.chunk_first;
  buffers.reserve_partials(chunk_first.back(), ctx.shape);
  thread_pool().parallel_for(buffers.items.size(), 1, [&](size_t begin, size_t end) {
    thread_local std::vector<float> scores, scaled_weights;
    for (size_t i = begin; i < end; ++i) {
      const AttentionItem& item = buffers.items[i];
      const ChunkPartials partials = buffers.partials_of(chunk_first[static_cast<size_t>(item.token)] + item.chunk, ctx.shape);
      attend_chunk(ctx, partials, queries + item.token * q_stride, item, query_info[item.token].table, scores,
                   scaled_weights);
    }
  });
  thread_pool().parallel_for(static_cast<size_t>(tokens), 1, [&](size_t begin, size_t end) {
    for (size_t t = begin; t < end; ++t)
      merge_chunks(ctx, out + static_cast<int64_t>(t) * q_stride, buffers, chunk_first[t], chunk_first[t + 1] - chunk_first[t]);
  });
}

}  // namespace

void CpuBackend::attention(float* out, const float* queries, const AttentionQuery* query_info, int64_t tokens,
                           const KvCacheLayout& cache, const AttentionShape& shape) {
  const AttentionContext ctx = make_context(kernels_, cache, shape);
  const int64_t q_stride = shape.num_heads * shape.head_dim;
  // Passed on by reference: a worker naming a thread_local would get its own, empty, copy.
  thread_local AttentionBuffers caller_buffers;
  AttentionBuffers& buffers = caller_buffers;
  const auto chunks_of = [&](int64_t t) { return chunks_for(ctx, query_info[t].visible); };
  for (int64_t first = 0; first < tokens;) {
    int64_t last = first + 1, chunks = chunks_of(first);
    for (; last < tokens && chunks + chunks_of(last) <= kMaxChunksPerPass; ++last) chunks += chunks_of(last);
    attend_queries(ctx, out + first * q_stride, queries + first * q_stride, query_info + first, last - first, buffers);
    first = last;
  }
}

}  // namespace retort
