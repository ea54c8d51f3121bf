#pragma once
// Structured output: what a reply must look like, compiled into a byte-level matcher that decoding
// consults token by token (engine/token_constraint.h), so the text always parses and validates.
//
//   OutputGrammar::json_schema(schema)  objects (properties in name order, the required ones
//                                       present), arrays (minItems/maxItems), strings, numbers,
//                                       integers, booleans, null, enum, const, nesting
//   OutputGrammar::any_json_object()    response_format {"type": "json_object"}: any JSON object
//   OutputGrammar::choice(strings)      exactly one of the given strings (an intent label)
//
// Unsupported schema keywords are refused at compile time naming the keyword (the server answers
// 400). Between JSON tokens up to 32 whitespace bytes in a row are allowed, enough for indentation
// and few enough that a model cannot loop on spaces; a number has at most 24 digits. A choice may
// open with one space.
//
// The matcher is a pushdown automaton over a fixed array of frames, so copying its state is a
// small memcpy: the vocabulary walk copies it at every trie node it visits.
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace retort {

class OutputGrammar {
 public:
  static std::shared_ptr<const OutputGrammar> json_schema(const nlohmann::json& schema);
  static std::shared_ptr<const OutputGrammar> any_json_object();
  static std::shared_ptr<const OutputGrammar> choice(const std::vector<std::string>& strings);

  enum class Kind : uint8_t { Root, Object, AnyObject, Array, String, Number, Integer, Literals, AnyValue };
  struct Node {
    Kind kind = Kind::Root;
    int32_t child = -1;                  // Root: the value; Array/AnyObject: the item/value node
    int64_t min_items = 0, max_items = INT64_MAX;  // Array: items; String: characters
    std::vector<int32_t> properties;     // Object: value node per property, in order
    std::vector<bool> required;          // Object: per property
    std::vector<int32_t> key_choices;    // Object: the Literals node of the keys allowed from property i
    std::vector<std::string> literals;   // Literals: the byte strings, sorted
    std::vector<int32_t> literal_result; // Literals: what each reports to its parent (a property index)
  };
  const Node& node(int32_t id) const { return nodes_[size_t(id)]; }
  int32_t root() const { return 0; }
  bool plain_text() const { return plain_text_; }  // a choice: no JSON whitespace rules

  // Builders for the compiler (output_grammar.cpp).
  int32_t add(Node node);
  Node& mutable_node(int32_t id) { return nodes_[size_t(id)]; }
  void set_plain_text(bool plain) { plain_text_ = plain; }

 private:
  std::vector<Node> nodes_;
  bool plain_text_ = false;
};

// The state of matching bytes against a grammar. Cheap to copy.
class GrammarMatcher {
 public:
  explicit GrammarMatcher(const OutputGrammar& grammar);
  // Consumes one byte; false (and the state unusable) when no continuation of the grammar has it.
  bool feed(uint8_t byte);
  bool feed(std::string_view bytes);
  // Whether the bytes so far are a complete reply (end of sequence may come now).
  bool complete() const;
  // Whether no byte can follow (complete and nothing may be appended).
  bool finished() const { return depth_ == 1 && frames_[0].phase == 2; }
  // Inside a string without a length bound, between characters: any run of plain characters
  // (no quote, backslash or control byte; whole UTF-8 characters) leaves the state as it is.
  bool in_free_string() const;

 private:
  struct Frame {
    int32_t node;
    uint8_t phase;
    uint8_t spaces;  // whitespace bytes in a row here
    uint16_t digits;
    int32_t a, b;    // per kind: Literals [a, b) still matching; Object property index / key; Array items
    int32_t pos;     // Literals: bytes matched; Object: chosen key
  };
  enum class Step { Consumed, Reject, Done, DoneConsumed };
  Step step(Frame& frame, uint8_t byte);
  Step step_root(Frame& f, uint8_t byte);
  Step step_object(Frame& f, uint8_t byte);
  Step step_any_object(Frame& f, uint8_t byte);
  Step step_array(Frame& f, uint8_t byte);
  Step step_string(Frame& f, uint8_t byte);
  Step step_number(Frame& f, uint8_t byte, bool integer);
  Step step_literals(Frame& f, uint8_t byte);
  Step step_any_value(Frame& f, uint8_t byte);
  bool can_end(const Frame& frame) const;
  void child_done(Frame& parent, const Frame& child);
  bool push(int32_t node);
  bool space(Frame& f, uint8_t byte);

  static constexpr int kMaxDepth = 24;
  const OutputGrammar* grammar_;
  std::array<Frame, kMaxDepth> frames_;
  int depth_ = 0;
};

}  // namespace retort
