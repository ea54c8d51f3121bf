#pragma once
// A paged KV cache: every layer's keys and values live in fixed-size blocks of positions drawn from
// one pool, and each sequence holds the list of its blocks. Sequences grow a block at a time and
// give their blocks back when they end, so memory follows the tokens actually in flight and the
// scheduler can admit work by counting free blocks.
#include <cstdint>
#include <string_view>
#include <vector>

#include "io/model_config.h"
#include "kernels/backend.h"
#include "util/huge_page_buffer.h"

namespace retort {

struct KvSequence {
  std::vector<int32_t> blocks;
  int64_t length = 0;  // positions already in the cache
};

// The KV cache type a --kv-type value names ("f16" or "f32"), or an error saying which are accepted.
DType kv_cache_type(std::string_view name);

class KvCache {
 public:
  // dtype: F32 (exact; what the golden fixtures were made with) or F16 (half the memory and half
  // the bytes each decode step streams, llama.cpp's default too).
  KvCache(const ModelConfig& config, int64_t capacity_tokens, int64_t block_size = kDefaultBlockSize,
          DType dtype = DType::F32);
  static constexpr int64_t kDefaultBlockSize = 16;

  KvCacheLayout layer(int64_t layer);
  int64_t block_size() const { return block_size_; }
  int64_t total_blocks() const { return total_blocks_; }
  int64_t free_blocks() const { return static_cast<int64_t>(free_list_.size()); }
  int64_t capacity_tokens() const { return total_blocks_ * block_size_; }
  size_t bytes() const { return keys_.size() * 2; }
  int64_t blocks_needed(const KvSequence& sequence, int64_t new_length) const;

  // Grows the sequence's blocks to hold new_length positions; false (and no change) if the pool
  // has too few free blocks.
  bool reserve(KvSequence& sequence, int64_t new_length);
  // Returns all of the sequence's blocks to the pool and empties it.
  void release(KvSequence& sequence);
  // Copies the keys and values of `from`'s first `positions` positions, in every layer, into the
  // same positions of `to` (which must already have blocks for them) and sets to.length to
  // `positions`: several sequences can then continue from one evaluated prefix.
  void copy_prefix(const KvSequence& from, KvSequence& to, int64_t positions);
  // Flat slot index of a position, as kv_write expects.
  int64_t slot(const KvSequence& sequence, int64_t position) const;

 private:
  int64_t num_layers_;
  int64_t kv_dim_;
  int64_t block_size_;
  int64_t total_blocks_;
  DType dtype_;
  size_t element_bytes_;
  HugePageBuffer keys_;    // [layers × blocks × block_size × kv_dim] elements of dtype_
  HugePageBuffer values_;  // same
  std::vector<int32_t> free_list_;
};

}  // namespace retort
