#include "engine/token_constraint.h"

#include <algorithm>
#include <limits>
#include <nlohmann/json.hpp>

namespace retort {

namespace {
constexpr std::string_view kEndOfReasoning = "</think>";
}  // namespace

ConstraintVocabulary::ConstraintVocabulary(const Tokenizer& tokenizer, std::vector<int32_t> eos_ids,
                                           int64_t vocab_size)
    : bytes_(size_t(vocab_size)), eos_ids_(std::move(eos_ids)) {
  // A token is plain when, inside a free string, it leaves the matcher inside the string.
  const auto free_string = OutputGrammar::json_schema(nlohmann::json{{"type", "string"}});
  GrammarMatcher open(*free_string);
  open.feed(uint8_t('"'));
  for (int32_t id = 0; id < int32_t(vocab_size); ++id) {
    if (!tokenizer.is_token(id)) continue;
    bytes_[size_t(id)] = tokenizer.token_bytes(id);
    const std::string& bytes = bytes_[size_t(id)];
    if (tokenizer.is_special(id) || bytes.empty()) continue;  // spelled for "</think>", never allowed
    GrammarMatcher after = open;
    if (after.feed(bytes) && after.in_free_string()) {
      plain_.insert(bytes, id);
      plain_tokens_.push_back(id);
    } else {
      other_.insert(bytes, id);
    }
  }
  plain_.finish();
  other_.finish();
}

void ConstraintVocabulary::Trie::insert(const std::string& bytes, int32_t token) {
  int32_t node = 0;
  for (char c : bytes) {
    int32_t child = nodes_[size_t(node)].first_child;
    while (child >= 0 && nodes_[size_t(child)].byte != uint8_t(c)) child = nodes_[size_t(child)].next_sibling;
    if (child < 0) {
      child = int32_t(nodes_.size());
      Node fresh;
      fresh.byte = uint8_t(c);
      fresh.next_sibling = nodes_[size_t(node)].first_child;
      nodes_.push_back(fresh);
      nodes_[size_t(node)].first_child = child;
    }
    node = child;
  }
  ends_.emplace_back(node, token);
}

void ConstraintVocabulary::Trie::finish() {
  std::sort(ends_.begin(), ends_.end());
  tokens_.reserve(ends_.size());
  for (size_t i = 0; i < ends_.size(); ++i) {
    Node& n = nodes_[size_t(ends_[i].first)];
    if (i == 0 || ends_[i - 1].first != ends_[i].first) n.tokens_begin = int32_t(tokens_.size());
    tokens_.push_back(ends_[i].second);
    n.tokens_end = int32_t(tokens_.size());
  }
  ends_ = {};
}

void ConstraintVocabulary::Trie::walk(int32_t node, const GrammarMatcher& state, std::vector<int32_t>& out) const {
  for (int32_t child = nodes_[size_t(node)].first_child; child >= 0; child = nodes_[size_t(child)].next_sibling) {
    GrammarMatcher next = state;
    if (!next.feed(nodes_[size_t(child)].byte)) continue;
    const Node& n = nodes_[size_t(child)];
    out.insert(out.end(), tokens_.begin() + n.tokens_begin, tokens_.begin() + n.tokens_end);
    walk(child, next, out);
  }
}

void ConstraintVocabulary::allowed_tokens(const GrammarMatcher& state, std::vector<int32_t>& out) const {
  if (state.in_free_string()) {
    out.insert(out.end(), plain_tokens_.begin(), plain_tokens_.end());
  } else {
    plain_.walk(0, state, out);
  }
  other_.walk(0, state, out);
}

TokenConstraint::TokenConstraint(std::shared_ptr<const OutputGrammar> grammar,
                                 std::shared_ptr<const ConstraintVocabulary> vocabulary, bool armed)
    : grammar_(std::move(grammar)), vocabulary_(std::move(vocabulary)), matcher_(*grammar_), armed_(armed) {}

bool TokenConstraint::mask(std::span<float> logits) {
  if (!armed_) return true;
  allowed_.clear();
  if (!matcher_.finished()) vocabulary_->allowed_tokens(matcher_, allowed_);
  if (matcher_.complete())
    for (int32_t eos : vocabulary_->eos_ids())
      if (eos >= 0 && size_t(eos) < logits.size()) allowed_.push_back(eos);
  if (allowed_.empty()) return false;
  kept_.resize(allowed_.size());
  for (size_t i = 0; i < allowed_.size(); ++i) kept_[i] = logits[size_t(allowed_[i])];
  std::fill(logits.begin(), logits.end(), -std::numeric_limits<float>::infinity());
  for (size_t i = 0; i < allowed_.size(); ++i) logits[size_t(allowed_[i])] = kept_[i];
  return true;
}

void TokenConstraint::accept(int32_t token) {
  static const std::string kNone;
  const std::string& bytes = token >= 0 && token < vocabulary_->vocab_size() ? vocabulary_->bytes(token) : kNone;
  if (armed_) {
    matcher_.feed(bytes);  // mask() allowed only tokens it accepts (end-of-sequence has no bytes)
    return;
  }
  tail_ += bytes;
  if (tail_.find(kEndOfReasoning) != std::string::npos) {
    armed_ = true;
    tail_.clear();
  } else if (tail_.size() > kEndOfReasoning.size()) {
    tail_.erase(0, tail_.size() - kEndOfReasoning.size());
  }
}

}  // namespace retort
