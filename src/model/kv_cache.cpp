#include "model/kv_cache.h"

#include <algorithm>

#include "util/error.h"

namespace retort {

DType kv_cache_type(std::string_view name) {
  if (name == "f16") return DType::F16;
  if (name == "f32") return DType::F32;
  fail(ErrorKind::InvalidInput, "--kv-type '{}' is not a KV cache type: use f16 or f32", name);
}

KvCache::KvCache(const ModelConfig& config, int64_t capacity_tokens, int64_t block_size, DType dtype)
    : num_layers_(config.num_layers), kv_dim_(config.kv_dim()), block_size_(block_size), dtype_(dtype),
      element_bytes_(dtype_size(dtype)) {
  require(capacity_tokens > 0 && block_size > 0, ErrorKind::InvalidInput,
          "KV cache needs a positive capacity (got {} tokens, block size {})", capacity_tokens, block_size);
  require(dtype == DType::F32 || dtype == DType::F16, ErrorKind::InvalidInput,
          "the KV cache type must be f32 or f16, not {}", dtype_name(dtype));
  total_blocks_ = (capacity_tokens + block_size - 1) / block_size;
  const size_t bytes = static_cast<size_t>(num_layers_ * total_blocks_ * block_size_ * kv_dim_) * element_bytes_;
  keys_ = HugePageBuffer(bytes);  // zeroed by the kernel as pages are first written
  values_ = HugePageBuffer(bytes);
  free_list_.reserve(static_cast<size_t>(total_blocks_));
  // Handed out from the back, so lower block ids go first.
  for (int64_t block = total_blocks_ - 1; block >= 0; --block) free_list_.push_back(static_cast<int32_t>(block));
}

KvCacheLayout KvCache::layer(int64_t layer) {
  const size_t offset = static_cast<size_t>(layer * total_blocks_ * block_size_ * kv_dim_) * element_bytes_;
  return KvCacheLayout{keys_.data() + offset, values_.data() + offset, block_size_, kv_dim_, dtype_};
}

int64_t KvCache::blocks_needed(const KvSequence& sequence, int64_t new_length) const {
  const int64_t needed = (new_length + block_size_ - 1) / block_size_;
  return std::max<int64_t>(0, needed - static_cast<int64_t>(sequence.blocks.size()));
}

bool KvCache::reserve(KvSequence& sequence, int64_t new_length) {
  const int64_t extra = blocks_needed(sequence, new_length);
  if (extra > free_blocks()) return false;
  for (int64_t i = 0; i < extra; ++i) {
    sequence.blocks.push_back(free_list_.back());
    free_list_.pop_back();
  }
  return true;
}

void KvCache::release(KvSequence& sequence) {
  for (auto it = sequence.blocks.rbegin(); it != sequence.blocks.rend(); ++it) free_list_.push_back(*it);
  sequence.blocks.clear();
  sequence.length = 0;
}

void KvCache::copy_prefix(const KvSequence& from, KvSequence& to, int64_t positions) {
  require(positions >= 0 && positions <= from.length, ErrorKind::Internal,
          "cannot copy {} positions of a sequence that holds {}", positions, from.length);
  require(blocks_needed(to, positions) == 0, ErrorKind::Internal,
          "KV cache space for the {} copied positions was not reserved", positions);
  const auto block_bytes = static_cast<size_t>(block_size_ * kv_dim_) * element_bytes_;
  for (int64_t layer = 0; layer < num_layers_; ++layer) {
    const size_t layer_offset = static_cast<size_t>(layer * total_blocks_) * block_bytes;
    for (int64_t start = 0; start < positions; start += block_size_) {
      const auto b = static_cast<size_t>(start / block_size_);
      const size_t source = layer_offset + static_cast<size_t>(from.blocks[b]) * block_bytes;
      const size_t target = layer_offset + static_cast<size_t>(to.blocks[b]) * block_bytes;
      const auto bytes = static_cast<size_t>(std::min(block_size_, positions - start) * kv_dim_) * element_bytes_;
      std::copy_n(keys_.data() + source, bytes, keys_.data() + target);
      std::copy_n(values_.data() + source, bytes, values_.data() + target);
    }
  }
  to.length = positions;
}

int64_t KvCache::slot(const KvSequence& sequence, int64_t position) const {
  return static_cast<int64_t>(sequence.blocks[static_cast<size_t>(position / block_size_)]) * block_size_ +
         position % block_size_;
}

}  // namespace retort
