#pragma once
// The byte-level BPE model: a vocabulary of byte strings and a ranked list of merges. A word
// starts as one symbol per byte; the pair of neighbours with the lowest merge rank (leftmost on a
// tie) is merged until no listed pair is left, which gives the ids Hugging Face `tokenizers` gives.
// Results are cached per word, since natural text repeats its words.
#include <cstdint>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace retort {

struct BpeOptions {
  bool ignore_merges = false;        // a word that is itself in the vocabulary becomes that one token
  std::optional<int32_t> unk_id;     // stands for a byte without a token; without it such bytes are dropped
  bool fuse_unk = false;             // consecutive unknown bytes become one unk
  size_t cache_capacity = 1 << 17;   // words remembered; 0 disables the cache
};

class BpeModel {
 public:
  // vocab: raw bytes -> id. merges: pairs of ids in rank order (rank 0 first); the merged token is
  // looked up by the concatenated bytes, which must be in the vocabulary (checked by the caller).
  struct Merge {
    int32_t left;
    int32_t right;
    int32_t merged;
  };
  BpeModel() = default;
  BpeModel(std::unordered_map<std::string, int32_t> vocab, const std::vector<Merge>& merges, BpeOptions options);
  BpeModel(BpeModel&& other) noexcept;
  BpeModel& operator=(BpeModel&& other) noexcept;

  // Appends the ids of one pre-tokenized word (raw bytes).
  void encode_word(std::string_view word, std::vector<int32_t>& ids) const;

  std::optional<int32_t> find(std::string_view bytes) const;
  // The id of the single-byte token for `byte`, or -1 when the vocabulary has none.
  int32_t byte_id(uint8_t byte) const { return byte_ids_[byte]; }

 private:
  struct TransparentHash {
    using is_transparent = void;
    size_t operator()(std::string_view text) const { return std::hash<std::string_view>{}(text); }
  };
  using WordMap = std::unordered_map<std::string, int32_t, TransparentHash, std::equal_to<>>;
  using WordCache = std::unordered_map<std::string, std::vector<int32_t>, TransparentHash, std::equal_to<>>;
  struct MergeResult {
    int32_t rank;
    int32_t merged;
  };

  std::optional<MergeResult> find_merge(int32_t left, int32_t right) const;
  void merge_word(std::string_view word, std::vector<int32_t>& ids) const;

  WordMap vocab_;
  std::unordered_map<uint64_t, MergeResult> merges_;
  int32_t byte_ids_[256] = {};
  BpeOptions options_;

  mutable std::shared_mutex cache_mutex_;
  mutable WordCache cache_;
};

}  // namespace retort
