#include "model/kv_cache.h"

#include <algorithm>

#include "util/error.h"

namespace retort {

DType kv_cache_type(std::string_view name) {
  if (name == "f16") return DType::F16;
  if (name == "f32") return DType::F32;
  if (name == "q8") return DType::I8;
  fail(ErrorKind::InvalidInput, "--kv-type '{}' is not a KV cache type: use f16, f32 or q8", name);
}

std::string_view kv_cache_type_name(DType dtype) { return dtype == DType::I8 ? "q8" : dtype_name(dtype); }

KvCache::KvCache(const ModelConfig& config, int64_t capacity_tokens, int64_t block_size, DType dtype)
    : num_layers_(config.num_layers), kv_dim_(config.kv_dim()), head_dim_(config.head_dim), block_size_(block_size), dtype_(dtype),
      element_bytes_(dtype_size(dtype)) {
  require(capacity_tokens > 0 && block_size > 0, ErrorKind::InvalidInput,
          "KV cache needs a positive capacity (got {} tokens, block size {})", capacity_tokens, block_size);
  require(dtype == DType::F32 || dtype == DType::F16 || dtype == DType::I8, ErrorKind::InvalidInput,
          "the KV cache type must be f32, f16 or q8, not {}", dtype_name(dtype));
  total_blocks_ = (capacity_tokens + block_size - 1) / block_size;
  const SideBytes side = side_bytes(config, static_cast<uint64_t>(num_layers_ * total_blocks_ * block_size_), dtype);
  keys_ = HugePageBuffer(side.rows);  // zeroed as pages are first written
  values_ = HugePageBuffer(side.rows);
  if (side.scales > 0) {
    key_scales_ = HugePageBuffer(side.scales);
    value_scales_ = HugePageBuffer(side.scales);
  }
  free_list_.reserve(static_cast<size_t>(total_blocks_));
  // Handed out from the back, so lower block ids go first.
  for (int64_t block = total_blocks_ - 1; block >= 0; --block) free_list_.push_back(static_cast<int32_t>(block));
  const auto blocks = static_cast<size_t>(total_blocks_);
  references_.assign(blocks, 0);
  block_hash_.assign(blocks, 0);
  parent_.assign(blocks, -1);
  block_tokens_.assign(blocks * static_cast<size_t>(block_size_), 0);
  evictable_tick_.assign(blocks, 0);
}

KvCache::SideBytes KvCache::side_bytes(const ModelConfig& config, uint64_t positions, DType dtype) {
  SideBytes side;
  side.rows = positions * static_cast<uint64_t>(config.kv_dim()) * dtype_size(dtype);
  if (dtype == DType::I8) side.scales = positions * static_cast<uint64_t>(config.num_kv_heads) * sizeof(float);
  return side;
}

uint64_t KvCache::bytes_for(const ModelConfig& config, int64_t capacity_tokens, int64_t block_size, DType dtype) {
  const int64_t blocks = (capacity_tokens + block_size - 1) / block_size;
  const SideBytes side = side_bytes(config, static_cast<uint64_t>(config.num_layers * blocks * block_size), dtype);
  return 2 * (side.rows + side.scales);  // keys and values
}

KvCacheLayout KvCache::layer(int64_t layer) {
  const auto first_position = static_cast<size_t>(layer * total_blocks_ * block_size_);
  const size_t offset = first_position * static_cast<size_t>(kv_dim_) * element_bytes_;
  KvCacheLayout layout{keys_.data() + offset, values_.data() + offset, block_size_, kv_dim_, dtype_, head_dim_};
  if (dtype_ == DType::I8) {
    const size_t scale_offset = first_position * static_cast<size_t>(kv_dim_ / head_dim_);
    layout.key_scales = reinterpret_cast<float*>(key_scales_.data()) + scale_offset;
    layout.value_scales = reinterpret_cast<float*>(value_scales_.data()) + scale_offset;
  }
  return layout;
}

int64_t KvCache::blocks_needed(const KvSequence& sequence, int64_t new_length) const {
  const int64_t needed = (new_length + block_size_ - 1) / block_size_;
  return std::max<int64_t>(0, needed - static_cast<int64_t>(sequence.blocks.size()));
}

bool KvCache::reserve(KvSequence& sequence, int64_t new_length) {
  const int64_t extra = blocks_needed(sequence, new_length);
  if (extra > free_blocks()) return false;
  for (int64_t i = 0; i < extra; ++i) sequence.blocks.push_back(take_block());
  return true;
}

// A never-used block if there is one, else the least recently used cached block, evicted.
int32_t KvCache::take_block() {
  int32_t block;
  if (!free_list_.empty()) {
    block = free_list_.back();
    free_list_.pop_back();
  } else {
    const auto oldest = evictable_.begin();
    block = oldest->second;
    evictable_.erase(oldest);
    evictable_tick_[size_t(block)] = 0;
    forget(block);
  }
  references_[size_t(block)] = 1;
  return block;
}

void KvCache::release(KvSequence& sequence) {
  // Last block first: a sequence's tail becomes evictable before its head, which more prompts share.
  for (auto it = sequence.blocks.rbegin(); it != sequence.blocks.rend(); ++it) {
    const auto b = size_t(*it);
    if (--references_[b] > 0) continue;
    if (block_hash_[b] != 0) {
      evictable_tick_[b] = ++tick_;
      evictable_.emplace(tick_, *it);
    } else {
      free_list_.push_back(*it);
    }
  }
  sequence = KvSequence{};
}

uint64_t KvCache::block_chain_hash(uint64_t parent_hash, std::span<const int32_t> tokens) const {
  uint64_t h = parent_hash ^ 0x9e3779b97f4a7c15ull;
  for (int32_t t : tokens) {
    h ^= uint32_t(t);
    h *= 0x100000001b3ull;
    h ^= h >> 29;
  }
  h ^= h >> 32;
  return h == 0 ? 1 : h;  // 0 means "not indexed"
}

int32_t KvCache::find_cached(uint64_t hash, int32_t parent, std::span<const int32_t> tokens) const {
  const auto [first, last] = index_.equal_range(hash);
  for (auto it = first; it != last; ++it) {
    const auto b = size_t(it->second);
    const auto stored = block_tokens_.begin() + std::ptrdiff_t(b * size_t(block_size_));
    if (parent_[b] == parent && std::equal(tokens.begin(), tokens.end(), stored)) return it->second;
  }
  return -1;
}

void KvCache::forget(int32_t block) {
  const auto b = size_t(block);
  if (block_hash_[b] == 0) return;
  const auto [first, last] = index_.equal_range(block_hash_[b]);
  for (auto it = first; it != last; ++it)
    if (it->second == block) {
      index_.erase(it);
      break;
    }
  block_hash_[b] = 0;
  parent_[b] = -1;
}

int64_t KvCache::attach_cached_prefix(KvSequence& sequence, std::span<const int32_t> tokens) {
  require(sequence.blocks.empty() && sequence.length == 0, ErrorKind::Internal,
          "a cached prefix can only start an empty sequence");
  if (!prefix_caching_ || tokens.empty()) return 0;
  const auto whole_blocks = int64_t(tokens.size() - 1) / block_size_;  // one token is always evaluated
  for (int64_t i = 0; i < whole_blocks; ++i) {
    const auto block_tokens = tokens.subspan(size_t(i * block_size_), size_t(block_size_));
    const uint64_t hash = block_chain_hash(sequence.chain_hash, block_tokens);
    const int32_t b = find_cached(hash, sequence.chain_block, block_tokens);
    if (b < 0) break;
    if (references_[size_t(b)]++ == 0) {
      evictable_.erase(evictable_tick_[size_t(b)]);
      evictable_tick_[size_t(b)] = 0;
    }
    sequence.blocks.push_back(b);
    sequence.chain_hash = hash;
    sequence.chain_block = b;
  }
  sequence.indexed_blocks = int64_t(sequence.blocks.size());
  sequence.length = sequence.indexed_blocks * block_size_;
  return sequence.length;
}

void KvCache::index_full_blocks(KvSequence& sequence, std::span<const int32_t> tokens) {
  if (!prefix_caching_) return;
  const int64_t full = std::min(sequence.length, int64_t(tokens.size())) / block_size_;
  for (int64_t i = sequence.indexed_blocks; i < full; ++i) {
    const auto block_tokens = tokens.subspan(size_t(i * block_size_), size_t(block_size_));
    const uint64_t hash = block_chain_hash(sequence.chain_hash, block_tokens);
    int32_t canonical = find_cached(hash, sequence.chain_block, block_tokens);
    const auto b = size_t(sequence.blocks[size_t(i)]);
    if (canonical < 0) {
      forget(int32_t(b));
      block_hash_[b] = hash;
      parent_[b] = sequence.chain_block;
      std::copy(block_tokens.begin(), block_tokens.end(), block_tokens_.begin() + std::ptrdiff_t(b * size_t(block_size_)));
      index_.emplace(hash, int32_t(b));
      canonical = int32_t(b);
    }
    // Another block already held these tokens: this one stays private and is freed, not cached.
    sequence.chain_hash = hash;
    sequence.chain_block = canonical;
  }
  sequence.indexed_blocks = std::max(sequence.indexed_blocks, full);
}

void KvCache::copy_prefix(const KvSequence& from, KvSequence& to, int64_t positions) {
  require(positions >= 0 && positions <= from.length, ErrorKind::Internal,
          "cannot copy {} positions of a sequence that holds {}", positions, from.length);
  require(blocks_needed(to, positions) == 0, ErrorKind::Internal,
          "KV cache space for the {} copied positions was not reserved", positions);
  // Each buffer holds [layers × blocks] blocks of `parts` runs of block_size positions (one run
  // per KV head for keys and values, since each head's rows are contiguous in a block; one run of
  // every head's scale per position for int8 scales). A partial last block copies the start of
  // each run.
  const auto copy_positions = [&](HugePageBuffer& buffer, int64_t parts, size_t position_bytes) {
    const size_t run_bytes = static_cast<size_t>(block_size_) * position_bytes;
    const size_t block_bytes = static_cast<size_t>(parts) * run_bytes;
    for (int64_t layer = 0; layer < num_layers_; ++layer) {
      const size_t layer_offset = static_cast<size_t>(layer * total_blocks_) * block_bytes;
      for (int64_t start = 0; start < positions; start += block_size_) {
        const auto b = static_cast<size_t>(start / block_size_);
        const size_t source = layer_offset + static_cast<size_t>(from.blocks[b]) * block_bytes;
        const size_t target = layer_offset + static_cast<size_t>(to.blocks[b]) * block_bytes;
        const size_t bytes = static_cast<size_t>(std::min(block_size_, positions - start)) * position_bytes;
        for (int64_t part = 0; part < parts; ++part) {
          const size_t run = static_cast<size_t>(part) * run_bytes;
          std::copy_n(buffer.data() + source + run, bytes, buffer.data() + target + run);
        }
      }
    }
  };
  const int64_t kv_heads = kv_dim_ / head_dim_;
  copy_positions(keys_, kv_heads, static_cast<size_t>(head_dim_) * element_bytes_);
  copy_positions(values_, kv_heads, static_cast<size_t>(head_dim_) * element_bytes_);
  if (dtype_ == DType::I8) {
    copy_positions(key_scales_, 1, static_cast<size_t>(kv_heads) * sizeof(float));
    copy_positions(value_scales_, 1, static_cast<size_t>(kv_heads) * sizeof(float));
  }
  to.length = positions;
}

int64_t KvCache::slot(const KvSequence& sequence, int64_t position) const {
  return static_cast<int64_t>(sequence.blocks[static_cast<size_t>(position / block_size_)]) * block_size_ +
         position % block_size_;
}

}  // namespace retort
