#pragma once
// Constrained decoding: which tokens may come next so that the reply still matches its
// OutputGrammar. The vocabulary is laid out once per tokenizer as a byte trie (ConstraintVocabulary);
// each step walks it from the matcher's state and prunes a subtree at the first byte the grammar
// refuses, so a step costs in proportion to the tokens that fit, not to the 151,936 in the
// vocabulary. Special tokens are never allowed, end-of-sequence only where the reply is complete.
//
// For reasoning models the constraint applies after "</think>": the reasoning stays free.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "engine/output_grammar.h"
#include "tokenizer/tokenizer.h"

namespace retort {

// Tokens made only of plain string characters (most of a vocabulary) fit wherever a free string
// is open, whatever came before: they are listed once, and only the others are walked there, which
// is what keeps a step inside a string cheap.
class ConstraintVocabulary {
 public:
  ConstraintVocabulary(const Tokenizer& tokenizer, std::vector<int32_t> eos_ids, int64_t vocab_size);
  // Appends every token whose bytes `state` accepts (not end-of-sequence) to `out`.
  void allowed_tokens(const GrammarMatcher& state, std::vector<int32_t>& out) const;
  const std::vector<int32_t>& eos_ids() const { return eos_ids_; }
  const std::string& bytes(int32_t token) const { return bytes_[size_t(token)]; }
  int64_t vocab_size() const { return int64_t(bytes_.size()); }

 private:
  // A byte trie of tokens: walking it from a matcher state prunes at the first refused byte.
  class Trie {
   public:
    Trie() : nodes_(1) {}
    void insert(const std::string& bytes, int32_t token);
    void finish();  // groups the tokens by node
    void walk(int32_t node, const GrammarMatcher& state, std::vector<int32_t>& out) const;

   private:
    struct Node {
      int32_t first_child = -1, next_sibling = -1;
      uint8_t byte = 0;
      int32_t tokens_begin = 0, tokens_end = 0;  // tokens spelled by the path to here, in tokens_
    };
    std::vector<Node> nodes_;
    std::vector<std::pair<int32_t, int32_t>> ends_;  // (node, token) until finish()
    std::vector<int32_t> tokens_;
  };
  Trie plain_, other_;                 // tokens of plain string characters, and the rest
  std::vector<int32_t> plain_tokens_;  // plain_'s tokens as a list
  std::vector<std::string> bytes_;  // per token id (special ones too, though never allowed); empty if unknown
  std::vector<int32_t> eos_ids_;
};

class TokenConstraint {
 public:
  // armed: false when the prompt opened a reasoning block; "</think>" in the output arms it.
  TokenConstraint(std::shared_ptr<const OutputGrammar> grammar, std::shared_ptr<const ConstraintVocabulary> vocabulary,
                  bool armed);
  // Sets the logits of tokens that may not come next to -inf. False when none may (a dead end).
  bool mask(std::span<float> logits);
  // After `token` was chosen.
  void accept(int32_t token);
  // The reply is complete and nothing may follow it: end the sequence now.
  bool finished() const { return armed_ && matcher_.finished(); }

 private:
  std::shared_ptr<const OutputGrammar> grammar_;
  std::shared_ptr<const ConstraintVocabulary> vocabulary_;
  GrammarMatcher matcher_;
  bool armed_;
  std::string tail_;  // the output's last bytes while not armed, to find "</think>"
  std::vector<int32_t> allowed_;
  std::vector<float> kept_;
};

}  // namespace retort
