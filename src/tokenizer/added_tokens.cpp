#include "tokenizer/added_tokens.h"

#include <algorithm>

#include "tokenizer/utf8.h"

namespace retort {
namespace {

// The last character of text[0, end), or 0 when there is none or it is not valid UTF-8.
char32_t char_before(std::string_view text, size_t end) {
  if (end == 0) return 0;
  size_t start = end - 1;
  while (start > 0 && end - start < 4 && (static_cast<uint8_t>(text[start]) & 0xC0) == 0x80) --start;
  if (utf8::valid_char_length(text, start) != end - start) return 0;
  return utf8::decode(text, start);
}

char32_t char_at(std::string_view text, size_t pos) {
  if (pos >= text.size() || utf8::valid_char_length(text, pos) == 0) return 0;
  return utf8::decode(text, pos);
}

// Start of the whitespace run that ends at `end`.
size_t whitespace_run_start(std::string_view text, size_t end) {
  while (end > 0) {
    size_t start = end - 1;
    while (start > 0 && end - start < 4 && (static_cast<uint8_t>(text[start]) & 0xC0) == 0x80) --start;
    if (utf8::valid_char_length(text, start) != end - start) break;
    size_t pos = start;
    if (!utf8::is_whitespace(utf8::decode(text, pos))) break;
    end = start;
  }
  return end;
}

// End of the whitespace run that starts at `begin`.
size_t whitespace_run_end(std::string_view text, size_t begin) {
  while (begin < text.size()) {
    size_t length = utf8::valid_char_length(text, begin);
    if (length == 0) break;
    size_t pos = begin;
    if (!utf8::is_whitespace(utf8::decode(text, pos))) break;
    begin += length;
  }
  return begin;
}

}  // namespace

AddedTokenMatcher::AddedTokenMatcher(std::vector<AddedToken> tokens, const std::vector<std::string>& patterns)
    : tokens_(std::move(tokens)) {
  trie_.emplace_back();
  for (size_t index = 0; index < tokens_.size(); ++index) {
    const std::string& pattern = patterns[index];
    if (pattern.empty()) continue;  // an empty token can never be found in text
    may_start_[static_cast<uint8_t>(pattern[0])] = true;
    int32_t node = 0;
    for (char c : pattern) {
      const auto byte = static_cast<uint8_t>(c);
      int32_t next = child(node, byte);
      if (next < 0) {
        next = static_cast<int32_t>(trie_.size());
        trie_.emplace_back();
        auto& edges = trie_[node].edges;
        auto at = std::lower_bound(edges.begin(), edges.end(), byte,
                                   [](const Edge& edge, uint8_t value) { return edge.byte < value; });
        edges.insert(at, Edge{byte, next});
      }
      node = next;
    }
    // Two tokens with the same text: the first listed wins, as it does in Hugging Face's map.
    if (trie_[node].token < 0) trie_[node].token = static_cast<int32_t>(index);
  }
}

int32_t AddedTokenMatcher::child(int32_t node, uint8_t byte) const {
  const auto& edges = trie_[node].edges;
  auto it = std::lower_bound(edges.begin(), edges.end(), byte,
                             [](const Edge& edge, uint8_t value) { return edge.byte < value; });
  return it != edges.end() && it->byte == byte ? it->node : -1;
}

int32_t AddedTokenMatcher::longest_match_at(std::string_view text, size_t pos, size_t& length) const {
  int32_t best = -1;
  int32_t node = 0;
  for (size_t i = pos; i < text.size(); ++i) {
    node = child(node, static_cast<uint8_t>(text[i]));
    if (node < 0) break;
    if (trie_[node].token >= 0) {
      best = trie_[node].token;
      length = i + 1 - pos;
    }
  }
  return best;
}

std::vector<TextSegment> AddedTokenMatcher::split(std::string_view text) const {
  std::vector<TextSegment> segments;
  size_t plain_start = 0;  // where the text not yet given to a segment begins
  size_t pos = 0;
  while (pos < text.size()) {
    if (!may_start_[static_cast<uint8_t>(text[pos])]) {
      ++pos;
      continue;
    }
    size_t length = 0;
    const int32_t index = longest_match_at(text, pos, length);
    if (index < 0) {
      ++pos;
      continue;
    }
    const AddedToken& token = tokens_[index];
    size_t begin = pos;
    size_t end = pos + length;
    // Like the Aho-Corasick scan of the Hugging Face library, a rejected match is still skipped over.
    pos = end;
    if (token.single_word && (utf8::is_word_char(char_before(text, begin)) || utf8::is_word_char(char_at(text, end)))) {
      continue;
    }
    if (token.lstrip) begin = std::max(whitespace_run_start(text, begin), plain_start);
    if (token.rstrip) end = whitespace_run_end(text, end);
    if (begin > plain_start) segments.push_back({plain_start, begin, -1});
    segments.push_back({begin, end, token.id});
    plain_start = end;
    pos = std::max(pos, end);
  }
  if (plain_start < text.size()) segments.push_back({plain_start, text.size(), -1});
  return segments;
}

}  // namespace retort
