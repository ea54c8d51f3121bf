#include "tokenizer/bpe.h"

#include <algorithm>
#include <mutex>

namespace retort {
namespace {

uint64_t pair_key(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

// Words longer than this are merged every time rather than cached: they are rare, and caching
// them would let one long input fill memory.
constexpr size_t kMaxCachedWordBytes = 256;

struct Symbol {
  int32_t id;
  int32_t prev;
  int32_t next;
  bool alive;
};

struct Candidate {
  int32_t rank;
  int32_t position;  // index of the left symbol
  int32_t merged;
};

// Orders a max-heap so that the lowest rank, then the leftmost position, is on top.
bool lower_priority(const Candidate& a, const Candidate& b) {
  return a.rank != b.rank ? a.rank > b.rank : a.position > b.position;
}

}  // namespace

BpeModel::BpeModel(std::unordered_map<std::string, int32_t> vocab, const std::vector<Merge>& merges,
                   BpeOptions options)
    : options_(options) {
  vocab_.reserve(vocab.size());
  for (auto& [bytes, id] : vocab) vocab_.emplace(bytes, id);
  merges_.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const Merge& merge = merges[rank];
    // A pair listed twice keeps its first (lowest) rank.
    merges_.emplace(pair_key(merge.left, merge.right), MergeResult{static_cast<int32_t>(rank), merge.merged});
  }
  for (int byte = 0; byte < 256; ++byte) {
    auto it = vocab_.find(std::string_view(reinterpret_cast<const char*>(&byte), 1));
    byte_ids_[byte] = it == vocab_.end() ? -1 : it->second;
  }
}

BpeModel::BpeModel(BpeModel&& other) noexcept { *this = std::move(other); }

BpeModel& BpeModel::operator=(BpeModel&& other) noexcept {
  vocab_ = std::move(other.vocab_);
  merges_ = std::move(other.merges_);
  std::copy(std::begin(other.byte_ids_), std::end(other.byte_ids_), byte_ids_);
  options_ = other.options_;
  cache_ = std::move(other.cache_);
  return *this;
}

std::optional<int32_t> BpeModel::find(std::string_view bytes) const {
  auto it = vocab_.find(bytes);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

std::optional<BpeModel::MergeResult> BpeModel::find_merge(int32_t left, int32_t right) const {
  auto it = merges_.find(pair_key(left, right));
  if (it == merges_.end()) return std::nullopt;
  return it->second;
}

void BpeModel::encode_word(std::string_view word, std::vector<int32_t>& ids) const {
  if (word.empty()) return;
  if (options_.ignore_merges) {
    if (auto id = find(word)) {
      ids.push_back(*id);
      return;
    }
  }
  const bool cacheable = options_.cache_capacity > 0 && word.size() <= kMaxCachedWordBytes;
  if (cacheable) {
    std::shared_lock lock(cache_mutex_);
    auto it = cache_.find(word);
    if (it != cache_.end()) {
      ids.insert(ids.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t first_new = ids.size();
  merge_word(word, ids);
  if (cacheable) {
    std::unique_lock lock(cache_mutex_);
    if (cache_.size() < options_.cache_capacity) {
      cache_.emplace(std::string(word), std::vector<int32_t>(ids.begin() + first_new, ids.end()));
    }
  }
}

void BpeModel::merge_word(std::string_view word, std::vector<int32_t>& ids) const {
  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  for (char c : word) {
    int32_t id = byte_ids_[static_cast<uint8_t>(c)];
    if (id < 0) {
      if (!options_.unk_id) continue;
      id = *options_.unk_id;
      if (options_.fuse_unk && !symbols.empty() && symbols.back().id == id) continue;
    }
    const auto index = static_cast<int32_t>(symbols.size());
    symbols.push_back({id, index - 1, index + 1, true});
  }
  if (symbols.empty()) return;
  symbols.back().next = -1;

  std::vector<Candidate> heap;
  for (size_t i = 0; i + 1 < symbols.size(); ++i) {
    if (auto merge = find_merge(symbols[i].id, symbols[i + 1].id)) {
      heap.push_back({merge->rank, static_cast<int32_t>(i), merge->merged});
    }
  }
  std::make_heap(heap.begin(), heap.end(), lower_priority);
  const auto push = [&](int32_t position) {
    const Symbol& left = symbols[position];
    if (left.next < 0) return;
    if (auto merge = find_merge(left.id, symbols[left.next].id)) {
      heap.push_back({merge->rank, position, merge->merged});
      std::push_heap(heap.begin(), heap.end(), lower_priority);
    }
  };
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), lower_priority);
    const Candidate top = heap.back();
    heap.pop_back();
    Symbol& left = symbols[top.position];
    // Entries go stale when a neighbour was merged since they were pushed: check the pair again.
    if (!left.alive || left.next < 0) continue;
    Symbol& right = symbols[left.next];
    auto merge = find_merge(left.id, right.id);
    if (!merge || merge->merged != top.merged) continue;
    left.id = top.merged;
    left.next = right.next;
    right.alive = false;
    if (right.next >= 0) symbols[right.next].prev = top.position;
    if (left.prev >= 0) push(left.prev);
    push(top.position);
  }
  for (int32_t i = 0; i >= 0; i = symbols[i].next) ids.push_back(symbols[i].id);
}

}  // namespace retort
