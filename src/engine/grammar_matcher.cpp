// GrammarMatcher: the byte-level pushdown automaton of engine/output_grammar.h. Each frame steps on
// a byte: it consumes it, rejects it, or ends (Done: the byte belongs to the frame below; Retry: a
// child was pushed to take it). Where a frame could both end and go on (a number, a literal that
// prefixes another), going on wins; the grammars built here never need the other choice.
#include <algorithm>

#include "engine/output_grammar.h"

namespace retort {

namespace {
constexpr int kMaxSpaces = 32;
constexpr int kMaxDigits = 24;
bool is_space(uint8_t b) { return b == ' ' || b == '\n' || b == '\t' || b == '\r'; }
bool is_digit(uint8_t b) { return b >= '0' && b <= '9'; }
bool is_hex(uint8_t b) { return is_digit(b) || (b >= 'a' && b <= 'f') || (b >= 'A' && b <= 'F'); }
using Kind = OutputGrammar::Kind;
}  // namespace

GrammarMatcher::GrammarMatcher(const OutputGrammar& grammar) : grammar_(&grammar) {
  frames_[0] = Frame{grammar.root(), 0, 0, 0, 0, 0, 0};
  depth_ = 1;
}

bool GrammarMatcher::push(int32_t node) {
  if (depth_ == kMaxDepth) return false;
  const auto& n = grammar_->node(node);
  frames_[size_t(depth_++)] = Frame{node, 0, 0, 0, 0, int32_t(n.literals.size()), 0};
  return true;
}

bool GrammarMatcher::space(Frame& f, uint8_t byte) {
  if (!is_space(byte) || f.spaces >= kMaxSpaces) return false;
  ++f.spaces;
  return true;
}

bool GrammarMatcher::feed(std::string_view bytes) {
  for (char c : bytes)
    if (!feed(uint8_t(c))) return false;
  return true;
}

bool GrammarMatcher::feed(uint8_t byte) {
  while (depth_ > 0) {
    Frame& top = frames_[size_t(depth_ - 1)];
    const int before = depth_;
    const Step result = step(top, byte);
    if (result == Step::Consumed) return true;
    if (result == Step::Reject) {
      depth_ = 0;
      return false;
    }
    if (depth_ != before) continue;  // a child was pushed: it takes the byte
    const Frame child = top;
    --depth_;
    if (depth_ == 0) return false;
    child_done(frames_[size_t(depth_ - 1)], child);
    if (result == Step::DoneConsumed) return true;
  }
  return false;
}

bool GrammarMatcher::in_free_string() const {
  if (depth_ == 0) return false;
  const Frame& top = frames_[size_t(depth_ - 1)];
  const auto& n = grammar_->node(top.node);
  return n.kind == Kind::String && top.phase == 1 && n.max_items == INT64_MAX;
}

bool GrammarMatcher::can_end(const Frame& f) const {
  const auto& n = grammar_->node(f.node);
  switch (n.kind) {
    case Kind::Number:
    case Kind::Integer: return f.phase == 2 || f.phase == 3 || f.phase == 5 || f.phase == 8;
    case Kind::Literals: return f.a < f.b && int32_t(n.literals[size_t(f.a)].size()) == f.pos;
    case Kind::AnyValue:
    case Kind::Root: return f.phase >= 1;  // its child ends it
    default: return false;
  }
}

bool GrammarMatcher::complete() const {
  if (depth_ == 0) return false;
  for (int i = depth_ - 1; i >= 1; --i)
    if (!can_end(frames_[size_t(i)])) return false;
  return depth_ > 1 || frames_[0].phase == 2;
}

void GrammarMatcher::child_done(Frame& parent, const Frame& child) {
  const auto& n = grammar_->node(parent.node);
  switch (n.kind) {
    case Kind::Root: parent.phase = 2; break;
    case Kind::AnyValue: parent.phase = 2; break;
    case Kind::Array: ++parent.a, parent.phase = 3; break;
    case Kind::Object:
      if (parent.phase == 1) {  // the key: its literal's result is the property index
        const auto& keys = grammar_->node(child.node);
        parent.pos = keys.literal_result[size_t(child.a)];
        parent.a = parent.pos + 1;
        parent.phase = 2;
      } else {
        parent.phase = 5;
      }
      break;
    case Kind::AnyObject: parent.phase = parent.phase == 2 ? 3 : 6; break;
    default: break;
  }
  parent.spaces = 0;
}

GrammarMatcher::Step GrammarMatcher::step(Frame& f, uint8_t byte) {
  switch (grammar_->node(f.node).kind) {
    case Kind::Root: return step_root(f, byte);
    case Kind::Object: return step_object(f, byte);
    case Kind::AnyObject: return step_any_object(f, byte);
    case Kind::Array: return step_array(f, byte);
    case Kind::String: return step_string(f, byte);
    case Kind::Number: return step_number(f, byte, false);
    case Kind::Integer: return step_number(f, byte, true);
    case Kind::Literals: return step_literals(f, byte);
    case Kind::AnyValue: return step_any_value(f, byte);
  }
  return Step::Reject;
}

// A plain-text choice may open with one space (" card_arrival" after "Label:"), JSON with up to 32
// whitespace bytes.
GrammarMatcher::Step GrammarMatcher::step_root(Frame& f, uint8_t byte) {
  if (f.phase != 0) return Step::Reject;  // after the value nothing may follow
  if (grammar_->plain_text() ? (byte == ' ' && f.spaces++ == 0) : space(f, byte)) return Step::Consumed;
  if (!push(grammar_->node(f.node).child)) return Step::Reject;
  f.phase = 1;
  return Step::Done;  // with the child pushed, feed() hands it the byte
}

GrammarMatcher::Step GrammarMatcher::step_literals(Frame& f, uint8_t byte) {
  const auto& lits = grammar_->node(f.node).literals;
  // [a, b) share the matched prefix; sorted, so those with `byte` next are contiguous.
  int32_t lo = f.a;
  while (lo < f.b && (int32_t(lits[size_t(lo)].size()) <= f.pos || uint8_t(lits[size_t(lo)][size_t(f.pos)]) < byte)) ++lo;
  int32_t hi = lo;
  while (hi < f.b && int32_t(lits[size_t(hi)].size()) > f.pos && uint8_t(lits[size_t(hi)][size_t(f.pos)]) == byte) ++hi;
  if (lo == hi) return can_end(f) ? Step::Done : Step::Reject;
  f.a = lo, f.b = hi, ++f.pos;
  const bool only_this = hi - lo == 1 && int32_t(lits[size_t(lo)].size()) == f.pos;
  return only_this ? Step::DoneConsumed : Step::Consumed;
}

// Phases: 0 the opening quote; 1 characters; 2 after a backslash; 3 \u's hex digits; 4 inside a
// UTF-8 sequence (digits: continuation bytes left; a, b: the range the next one must fall in, which
// excludes overlong forms, surrogates and code points past U+10FFFF, as JSON parsers require).
// pos counts characters (an escape is one) against minLength/maxLength.
GrammarMatcher::Step GrammarMatcher::step_string(Frame& f, uint8_t byte) {
  const auto& n = grammar_->node(f.node);
  if (f.phase == 1 && byte != '"' && ++f.pos > n.max_items) return Step::Reject;
  auto sequence = [&](int continuation, int lo, int hi) {
    f.phase = 4, f.digits = uint16_t(continuation), f.a = lo, f.b = hi;
    return Step::Consumed;
  };
  switch (f.phase) {
    case 0: return byte == '"' ? (f.phase = 1, Step::Consumed) : Step::Reject;
    case 1:
      if (byte == '"') return f.pos >= n.min_items ? Step::DoneConsumed : Step::Reject;
      if (byte == '\\') return f.phase = 2, Step::Consumed;
      if (byte < 0x20) return Step::Reject;
      if (byte < 0x80) return Step::Consumed;
      if (byte >= 0xC2 && byte <= 0xDF) return sequence(1, 0x80, 0xBF);
      if (byte == 0xE0) return sequence(2, 0xA0, 0xBF);
      if (byte == 0xED) return sequence(2, 0x80, 0x9F);
      if (byte >= 0xE1 && byte <= 0xEF) return sequence(2, 0x80, 0xBF);
      if (byte == 0xF0) return sequence(3, 0x90, 0xBF);
      if (byte >= 0xF1 && byte <= 0xF3) return sequence(3, 0x80, 0xBF);
      if (byte == 0xF4) return sequence(3, 0x80, 0x8F);
      return Step::Reject;
    case 4:
      if (byte < f.a || byte > f.b) return Step::Reject;
      f.a = 0x80, f.b = 0xBF;
      if (--f.digits == 0) f.phase = 1;
      return Step::Consumed;
    case 2:
      if (byte == 'u') return f.phase = 3, f.digits = 0, Step::Consumed;
      return std::string_view("\"\\/bfnrt").find(char(byte)) != std::string_view::npos ? (f.phase = 1, Step::Consumed)
                                                                                       : Step::Reject;
    default:  // 3
      if (!is_hex(byte)) return Step::Reject;
      if (++f.digits == 4) f.phase = 1;
      return Step::Consumed;
  }
}

// JSON numbers: 0 start, 1 after '-', 2 a leading 0, 3 integer digits, 4 after '.', 5 fraction
// digits, 6 after 'e', 7 after the exponent's sign, 8 exponent digits.
GrammarMatcher::Step GrammarMatcher::step_number(Frame& f, uint8_t byte, bool integer) {
  auto go = [&](uint8_t phase) {
    f.phase = phase;
    return Step::Consumed;
  };
  const bool digit = is_digit(byte);
  if (digit && ++f.digits > kMaxDigits) return can_end(f) ? Step::Done : Step::Reject;
  switch (f.phase) {
    case 0: return byte == '-' ? go(1) : byte == '0' ? go(2) : digit ? go(3) : Step::Reject;
    case 1: return byte == '0' ? go(2) : digit ? go(3) : Step::Reject;
    case 2:
    case 3:
      if (digit && f.phase == 3) return go(3);
      if (!integer && byte == '.') return go(4);
      if (!integer && (byte == 'e' || byte == 'E')) return go(6);
      return Step::Done;
    case 4: return digit ? go(5) : Step::Reject;
    case 5: return digit ? go(5) : (!integer && (byte == 'e' || byte == 'E')) ? go(6) : Step::Done;
    case 6: return (byte == '+' || byte == '-') ? go(7) : digit ? go(8) : Step::Reject;
    case 7: return digit ? go(8) : Step::Reject;
    default: return digit ? go(8) : Step::Done;
  }
}

// Phases: 0 '{'; 1 a key next (b: after a comma, so '}' is not allowed); 2 ':'; 3 the value next;
// 4 the value; 5 ',' or '}'.
GrammarMatcher::Step GrammarMatcher::step_object(Frame& f, uint8_t byte) {
  const auto& n = grammar_->node(f.node);
  const auto required_left = [&] {
    return std::any_of(n.required.begin() + f.a, n.required.end(), [](bool r) { return r; });
  };
  const bool at_structure = f.phase != 0 && f.phase != 4;
  if (at_structure && space(f, byte)) return Step::Consumed;
  f.spaces = 0;
  switch (f.phase) {
    case 0: return byte == '{' ? (f.phase = 1, Step::Consumed) : Step::Reject;
    case 1:
      if (byte == '}' && f.b == 0 && !required_left()) return Step::DoneConsumed;
      if (byte != '"' || f.a >= int32_t(n.properties.size())) return Step::Reject;
      return push(n.key_choices[size_t(f.a)]) ? Step::Done : Step::Reject;
    case 2: return byte == ':' ? (f.phase = 3, Step::Consumed) : Step::Reject;
    case 3:
      f.phase = 4;
      return push(n.properties[size_t(f.pos)]) ? Step::Done : Step::Reject;
    case 5:
      if (byte == '}' && !required_left()) return Step::DoneConsumed;
      if (byte == ',' && f.a < int32_t(n.properties.size())) return f.phase = 1, f.b = 1, Step::Consumed;
      return Step::Reject;
    default: return Step::Reject;
  }
}

// Phases: 0 '{'; 1 a key or '}' (b: after a comma); 2 the key; 3 ':'; 4 the value next; 5 the
// value; 6 ',' or '}'.
GrammarMatcher::Step GrammarMatcher::step_any_object(Frame& f, uint8_t byte) {
  const auto& n = grammar_->node(f.node);
  const bool at_structure = f.phase == 1 || f.phase == 3 || f.phase == 4 || f.phase == 6;
  if (at_structure && space(f, byte)) return Step::Consumed;
  f.spaces = 0;
  switch (f.phase) {
    case 0: return byte == '{' ? (f.phase = 1, Step::Consumed) : Step::Reject;
    case 1: {
      if (byte == '}' && f.b == 0) return Step::DoneConsumed;
      if (byte != '"') return Step::Reject;
      f.phase = 2;
      // The any-value node's third alternative is the string node.
      return push(grammar_->node(n.child).properties[2]) ? Step::Done : Step::Reject;
    }
    case 3: return byte == ':' ? (f.phase = 4, Step::Consumed) : Step::Reject;
    case 4:
      f.phase = 5;
      return push(n.child) ? Step::Done : Step::Reject;
    case 6:
      if (byte == '}') return Step::DoneConsumed;
      if (byte == ',') return f.phase = 1, f.b = 1, Step::Consumed;
      return Step::Reject;
    default: return Step::Reject;
  }
}

// Phases: 0 '['; 1 an item or ']'; 2 the item; 3 ',' or ']'; 4 an item after a comma. a: items.
GrammarMatcher::Step GrammarMatcher::step_array(Frame& f, uint8_t byte) {
  const auto& n = grammar_->node(f.node);
  if (f.phase != 0 && f.phase != 2 && space(f, byte)) return Step::Consumed;
  f.spaces = 0;
  switch (f.phase) {
    case 0: return byte == '[' ? (f.phase = 1, Step::Consumed) : Step::Reject;
    case 1:
      if (byte == ']' && n.min_items == 0) return Step::DoneConsumed;
      [[fallthrough]];
    case 4:
      if (f.a >= n.max_items) return Step::Reject;
      f.phase = 2;
      return push(n.child) ? Step::Done : Step::Reject;
    case 3:
      if (byte == ']' && f.a >= n.min_items) return Step::DoneConsumed;
      if (byte == ',' && f.a < n.max_items) return f.phase = 4, Step::Consumed;
      return Step::Reject;
    default: return Step::Reject;
  }
}

// Phase 0: the first byte picks the alternative; 1: it is being matched; 2: it ended.
GrammarMatcher::Step GrammarMatcher::step_any_value(Frame& f, uint8_t byte) {
  if (f.phase == 2) return Step::Done;
  const auto& parts = grammar_->node(f.node).properties;  // { [ " number bool null
  int which = byte == '{' ? 0 : byte == '[' ? 1 : byte == '"' ? 2 : (byte == '-' || is_digit(byte)) ? 3
              : (byte == 't' || byte == 'f') ? 4 : byte == 'n' ? 5 : -1;
  if (which < 0 || !push(parts[size_t(which)])) return Step::Reject;
  f.phase = 1;
  return Step::Done;
}

}  // namespace retort
