#pragma once
// Added tokens (`added_tokens` of tokenizer.json): strings such as "<|im_start|>" or "<think>" that
// are cut out of the text before normalization and pre-tokenization and become one id each, as the
// Hugging Face library does: leftmost-longest match, honouring single_word, lstrip and rstrip.
// Tokens with normalized=true are looked for in the normalized text, the others in the raw text.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace retort {

struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool special = false;
  bool single_word = false;  // only when not touching word characters on either side
  bool lstrip = false;       // swallows the whitespace before it
  bool rstrip = false;       // swallows the whitespace after it
  bool normalized = false;   // matched against normalized text
};

// A piece of text after cutting out added tokens: either plain text to tokenize further, or the
// id of the added token that was found there.
struct TextSegment {
  size_t begin = 0;
  size_t end = 0;
  int32_t token_id = -1;  // -1: plain text
};

class AddedTokenMatcher {
 public:
  AddedTokenMatcher() = default;
  // `patterns[i]` is the text to look for on behalf of `tokens[i]` (its content, normalized for
  // normalized tokens).
  AddedTokenMatcher(std::vector<AddedToken> tokens, const std::vector<std::string>& patterns);

  bool empty() const { return tokens_.empty(); }
  // Cuts `text` into plain-text and token segments that cover it in order (empty text: none).
  std::vector<TextSegment> split(std::string_view text) const;

 private:
  struct Edge {
    uint8_t byte;
    int32_t node;
  };
  struct Node {
    std::vector<Edge> edges;  // sorted by byte
    int32_t token = -1;       // index into tokens_ of the token ending here
  };

  int32_t child(int32_t node, uint8_t byte) const;
  // The index of the longest token starting at text[pos] and its length, or -1.
  int32_t longest_match_at(std::string_view text, size_t pos, size_t& length) const;

  std::vector<AddedToken> tokens_;
  std::vector<Node> trie_;  // trie_[0] is the root
  bool may_start_[256] = {};
};

}  // namespace retort
