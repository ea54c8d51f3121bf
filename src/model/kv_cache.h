#pragma once
// A paged KV cache: every layer's keys and values live in fixed-size blocks of positions drawn from
// one pool, and each sequence holds the list of its blocks. Sequences grow a block at a time and
// give their blocks back when they end, so memory follows the tokens actually in flight and the
// scheduler can admit work by counting free blocks.
//
// With the prefix cache on, a full block keeps its keys and values after its sequence ends, indexed
// by the tokens it holds and every token before them (a hash chained over whole blocks, checked
// against the stored tokens and the parent block, so a hash collision cannot share wrong data). A
// new sequence whose tokens start with cached blocks takes them (reference-counted, read-only: a
// sequence writes only past its cached prefix, into blocks of its own, so nothing is copied on
// write) and skips their prefill. Unreferenced cached blocks count as free and are evicted least
// recently used, the tail of a sequence before its head, when the pool needs them.
#include <cstdint>
#include <map>
#include <span>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "io/model_config.h"
#include "kernels/backend.h"
#include "util/huge_page_buffer.h"

namespace retort {

struct KvSequence {
  std::vector<int32_t> blocks;
  int64_t length = 0;  // positions already in the cache
  // Prefix cache: how many leading blocks are indexed (or were found already cached elsewhere),
  // and the chained hash of those blocks' tokens.
  int64_t indexed_blocks = 0;
  uint64_t chain_hash = 0;
  int32_t chain_block = -1;  // the cached block that holds the last indexed block's tokens
};

// The KV cache type a --kv-type value names ("f16", "f32", or "q8": 8-bit integers with one f32
// scale per position and KV head), or an error saying which are accepted; and back.
DType kv_cache_type(std::string_view name);
std::string_view kv_cache_type_name(DType dtype);

class KvCache {
 public:
  // dtype: F32 (exact; what the golden fixtures were made with), F16 (half the memory and half
  // the bytes each decode step streams, llama.cpp's default too) or I8 (a quarter, plus a scale
  // per KV head row: --kv-type q8).
  KvCache(const ModelConfig& config, int64_t capacity_tokens, int64_t block_size = kDefaultBlockSize,
          DType dtype = DType::F32);
  static constexpr int64_t kDefaultBlockSize = 16;

  KvCacheLayout layer(int64_t layer);
  int64_t block_size() const { return block_size_; }
  int64_t total_blocks() const { return total_blocks_; }
  // Blocks a reservation can take: never used, or cached but held by no sequence (evictable).
  int64_t free_blocks() const { return static_cast<int64_t>(free_list_.size() + evictable_.size()); }
  // Cached blocks held by no sequence, kept for a later prompt that starts with their tokens.
  int64_t cached_blocks() const { return static_cast<int64_t>(evictable_.size()); }
  int64_t capacity_tokens() const { return total_blocks_ * block_size_; }
  size_t bytes() const { return (keys_.size() + key_scales_.size()) * 2; }
  // Makes all of the pool resident now (HugePageBuffer::commit), for a server counting memory.
  void commit() {
    keys_.commit();
    values_.commit();
    key_scales_.commit();
    value_scales_.commit();
  }
  // What bytes() will be for a cache of this shape, before making one (a memory budget plans
  // with it); keys and values together.
  static uint64_t bytes_for(const ModelConfig& config, int64_t capacity_tokens, int64_t block_size = kDefaultBlockSize,
                            DType dtype = DType::F32);
  int64_t blocks_needed(const KvSequence& sequence, int64_t new_length) const;

  // Grows the sequence's blocks to hold new_length positions; false (and no change) if the pool
  // has too few free blocks.
  bool reserve(KvSequence& sequence, int64_t new_length);
  // Returns all of the sequence's blocks to the pool and empties it (indexed blocks stay cached).
  void release(KvSequence& sequence);

  // Prefix cache (off by default). While on, full blocks are indexed as sequences fill them.
  void set_prefix_caching(bool on) { prefix_caching_ = on; }
  bool prefix_caching() const { return prefix_caching_; }
  // An empty sequence that will hold `tokens` takes the longest run of cached blocks they start
  // with, leaving at least one token to evaluate (its logits are needed); returns the positions it
  // now holds (0 when caching is off or nothing matches).
  int64_t attach_cached_prefix(KvSequence& sequence, std::span<const int32_t> tokens);
  // After a forward pass: indexes the sequence's blocks that became full (tokens: at least its
  // length of them, the ones its positions hold).
  void index_full_blocks(KvSequence& sequence, std::span<const int32_t> tokens);
  // Copies the keys and values of `from`'s first `positions` positions, in every layer, into the
  // same positions of `to` (which must already have blocks for them) and sets to.length to
  // `positions`: several sequences can then continue from one evaluated prefix.
  void copy_prefix(const KvSequence& from, KvSequence& to, int64_t positions);
  // Flat slot index of a position, as kv_write expects.
  int64_t slot(const KvSequence& sequence, int64_t position) const;

 private:
  // Bytes of one side (keys or values) of a pool of `positions` across all layers: the rows, and
  // for I8 their f32 scales. The constructor allocates these and bytes_for() plans with them.
  struct SideBytes {
    uint64_t rows = 0, scales = 0;
  };
  static SideBytes side_bytes(const ModelConfig& config, uint64_t positions, DType dtype);

  int64_t num_layers_;
  int64_t kv_dim_;
  int64_t head_dim_;
  int64_t block_size_;
  int64_t total_blocks_;
  DType dtype_;
  size_t element_bytes_;
  HugePageBuffer keys_;    // [layers × blocks × kv_heads × block_size × head_dim] elements of dtype_
  HugePageBuffer values_;  // same
  HugePageBuffer key_scales_;    // I8 only: [layers × blocks × block_size × kv_heads] f32
  HugePageBuffer value_scales_;  // same
  std::vector<int32_t> free_list_;

  // Prefix cache. Per block: references from sequences, its index hash (0: not indexed), its parent
  // (the chain's previous block, -1 for the first) and the tokens it holds.
  int32_t take_block();
  uint64_t block_chain_hash(uint64_t parent_hash, std::span<const int32_t> tokens) const;
  int32_t find_cached(uint64_t hash, int32_t parent, std::span<const int32_t> tokens) const;
  void forget(int32_t block);
  bool prefix_caching_ = false;
  std::vector<int32_t> references_;
  std::vector<uint64_t> block_hash_;
  std::vector<int32_t> parent_;
  std::vector<int32_t> block_tokens_;
  std::unordered_multimap<uint64_t, int32_t> index_;
  std::map<uint64_t, int32_t> evictable_;  // by last use (a tick): the first is evicted first
  std::vector<uint64_t> evictable_tick_;   // per block, its key in evictable_ (0: not evictable)
  uint64_t tick_ = 0;
};

}  // namespace retort
