#pragma once
// A compiled PCRE2 pattern in UTF + UCP mode (so \p{L}, \p{N} and \s follow Unicode, as the
// Oniguruma patterns in tokenizer.json expect), JIT-compiled when the platform allows. \s and \S
// are rewritten to Oniguruma's meaning (Unicode White_Space), which differs from PCRE2's in U+180E.
#include <memory>
#include <string>
#include <string_view>

namespace retort {

class Regex {
 public:
  // Throws InvalidInput with PCRE2's message and the offset of the problem.
  explicit Regex(const std::string& pattern);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Finds the first match starting at or after `start` in `subject` (valid UTF-8; lookbehinds may
  // see the bytes before `start`). Returns false when there is none.
  bool find(std::string_view subject, size_t start, size_t& match_begin, size_t& match_end) const;

  const std::string& pattern() const { return pattern_; }

 private:
  struct Compiled;
  std::string pattern_;
  std::unique_ptr<Compiled> compiled_;
};

// The pattern text that matches `literal` exactly.
std::string regex_escape(std::string_view literal);

}  // namespace retort
