#pragma once
// The numeric ops the model needs, behind one interface so a device backend (CUDA today, Ascend
// later) can stand in for the CPU one. Pointers are device memory of the backend that owns them;
// on the CPU that is ordinary memory. Shapes are given as comments: [rows × cols], row-major.
#include <cstdint>
#include <span>
#include <string>

#include "tensor/dtype.h"

namespace retort {

// How a matrix's bytes are ordered. Rows: as the file stores them, row after row. Interleaved:
// rewritten by a backend for its kernels (Backend::repack): each group of 8 or 16 rows keeps its
// bytes (the same size) but block by block, the group's scales together, then their quants
// interleaved 4 bytes at a time, so one pass of the activations feeds the whole group (layout in
// weight_repack.h).
enum class WeightLayout : uint8_t { Rows, Interleaved };

// A weight matrix W [rows × cols] (rows = output features), in any storage type; y = x Wᵀ.
struct WeightMatrix {
  DType dtype = DType::F32;
  const void* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  WeightLayout layout = WeightLayout::Rows;
};

// Where one sequence's keys and values live in a paged cache: its block ids, in order.
struct KvBlockTable {
  const int32_t* blocks = nullptr;
  int64_t block_count = 0;
};

// One query token of an attention call: which sequence's cache it reads and how many positions
// (its own included) it sees.
struct AttentionQuery {
  KvBlockTable table;
  int64_t visible = 0;  // positions [0, visible) are attended to
};

// How a head's dimensions pair up for rotation: HF checkpoints rotate dimension i with i + d/2
// ("rotate half"); llama.cpp's llama files permute the q/k rows so that pairs are adjacent (2i, 2i+1).
enum class RopeLayout { RotateHalf, Interleaved };

// One layer's keys and values, [blocks × kv_heads × block_size × head_dim] each: within a block
// each KV head's rows are contiguous, because attention reads one KV head's rows at a time and
// a position-major block made it read 256 of every 2,048 bytes, a pattern the hardware
// prefetcher cannot follow. Stored as F32, F16 (the default of run/chat/serve: half the bytes that
// a long reasoning context streams every step) or I8 (`--kv-type q8`: a quarter, each position's
// row of each KV head scaled by its own f32, stored in key_scales / value_scales as
// [blocks × block_size × kv_heads]).
struct KvCacheLayout {
  void* keys = nullptr;
  void* values = nullptr;
  int64_t block_size = 0;
  int64_t kv_dim = 0;
  DType dtype = DType::F32;
  int64_t head_dim = 0;
  float* key_scales = nullptr;  // I8 only
  float* value_scales = nullptr;

  // Element offset of KV head `kv_head`'s row for cache slot `slot` (block · block_size + position).
  int64_t row_offset(int64_t slot, int64_t kv_head) const {
    return (slot / block_size) * block_size * kv_dim + kv_head * block_size * head_dim + (slot % block_size) * head_dim;
  }
};

struct AttentionShape {
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  float scale = 1.0f;
};

// One product of a group that shares its input: out [tokens × w.rows] = in · Wᵀ.
struct MatmulTarget {
  float* out = nullptr;
  WeightMatrix w;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;

  // out [tokens × w.rows] = in [tokens × w.cols] · Wᵀ
  virtual void matmul(float* out, const float* in, const WeightMatrix& w, int64_t tokens) = 0;
  // Rewrites w's bytes in place (`bytes` is w.data, writable) into the layout this backend's kernels
  // read fastest and updates w.layout; false, and nothing touched, when it keeps the rows as they are.
  virtual bool repack(WeightMatrix& w, void* bytes) {
    (void)w;
    (void)bytes;
    return false;
  }
  // Every target's product with the same input [tokens × cols] (q/k/v, gate/up). A backend can
  // share work across them: the CPU quantizes the activations once and runs one parallel loop.
  virtual void matmuls(const float* in, int64_t tokens, std::span<const MatmulTarget> targets) {
    for (const MatmulTarget& target : targets) matmul(target.out, in, target.w, tokens);
  }
  // out[t] = x[t] / rms(x[t]) * weight, per row of [tokens × dim]; out may alias x
  virtual void rmsnorm(float* out, const float* x, const float* weight, int64_t tokens, int64_t dim,
                       float eps) = 0;
  // Rotary embedding in place on [tokens × heads × head_dim]; cos and sin are [tokens × head_dim/2],
  // computed once per forward for the tokens' positions; pair i rotates by angle i.
  virtual void rope(float* x, const float* cos, const float* sin, int64_t tokens, int64_t heads,
                    int64_t head_dim, RopeLayout layout) = 0;
  // out [tokens × dim] = silu(gate) * up
  virtual void silu_mul(float* out, const float* gate, const float* up, int64_t count) = 0;
  // Writes rows [tokens × kv_dim] of keys/values to the cache slots given as flat slot indices
  // (block * block_size + offset).
  virtual void kv_write(const KvCacheLayout& cache, const float* keys, const float* values,
                        const int64_t* slots, int64_t tokens) = 0;
  // out [tokens × heads × head_dim]: causal GQA attention of each query over its sequence's cache.
  virtual void attention(float* out, const float* queries, const AttentionQuery* query_info, int64_t tokens,
                         const KvCacheLayout& cache, const AttentionShape& shape) = 0;
  // out [tokens × dim] = embedding rows of the given ids (any float dtype table)
  virtual void embed(float* out, const WeightMatrix& table, const int32_t* ids, int64_t tokens) = 0;
  // x += y over count floats
  virtual void add(float* x, const float* y, int64_t count) = 0;
  // x[t] += bias over [tokens × dim]
  virtual void add_bias(float* x, const float* bias, int64_t tokens, int64_t dim) = 0;
};

}  // namespace retort
