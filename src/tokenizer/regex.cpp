#include "tokenizer/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "util/error.h"

namespace retort {
namespace {

// Match data and a JIT stack are per thread, so one Regex can serve many threads at once.
struct MatchScratch {
  pcre2_match_data* match_data = nullptr;
  pcre2_match_context* match_context = nullptr;
  pcre2_jit_stack* jit_stack = nullptr;

  MatchScratch() {
    match_data = pcre2_match_data_create(1, nullptr);
    match_context = pcre2_match_context_create(nullptr);
    // The default 32 KiB JIT stack can run out on long runs of one character class.
    jit_stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr);
    if (match_context != nullptr && jit_stack != nullptr) {
      pcre2_jit_stack_assign(match_context, nullptr, jit_stack);
    }
  }
  ~MatchScratch() {
    pcre2_match_data_free(match_data);
    pcre2_match_context_free(match_context);
    pcre2_jit_stack_free(jit_stack);
  }
};

MatchScratch& scratch() {
  thread_local MatchScratch per_thread;
  return per_thread;
}

std::string pcre2_message(int code) {
  PCRE2_UCHAR buffer[256];
  int length = pcre2_get_error_message(code, buffer, sizeof(buffer));
  return length < 0 ? "unknown PCRE2 error" : std::string(reinterpret_cast<const char*>(buffer), length);
}

// Unicode White_Space, which is what Oniguruma (the engine of Hugging Face `tokenizers`) matches
// with \s. PCRE2's \s in UCP mode also matches U+180E, which would split text differently.
constexpr const char* kWhiteSpaceClassBody = "\\t\\n\\x{0B}\\f\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}"
                                             "\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}";

// Rewrites \s and \S into explicit classes (kept as they are inside a class, where \S has no
// simple spelling: no tokenizer pattern uses that).
std::string with_oniguruma_whitespace(const std::string& pattern) {
  std::string translated;
  translated.reserve(pattern.size() + 64);
  bool in_class = false;
  size_t i = 0;
  while (i < pattern.size()) {
    const char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      const char next = pattern[i + 1];
      if (next == 'Q') {  // \Q...\E is literal text: copy it untouched
        size_t end = pattern.find("\\E", i + 2);
        end = end == std::string::npos ? pattern.size() : end + 2;
        translated.append(pattern, i, end - i);
        i = end;
        continue;
      }
      if (next == 's' && in_class) {
        translated += kWhiteSpaceClassBody;
      } else if (next == 's' || next == 'S') {
        translated += next == 's' ? "[" : "[^";
        translated += kWhiteSpaceClassBody;
        translated += "]";
      } else {
        translated.append(pattern, i, 2);
      }
      i += 2;
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      translated += c;
      ++i;
      // A ']' right after '[' or '[^' is a literal member, not the end of the class.
      if (i < pattern.size() && pattern[i] == '^') translated += pattern[i++];
      if (i < pattern.size() && pattern[i] == ']') translated += pattern[i++];
      continue;
    }
    if (in_class && c == '[' && i + 1 < pattern.size() && pattern[i + 1] == ':') {
      size_t end = pattern.find(":]", i + 2);
      end = end == std::string::npos ? pattern.size() : end + 2;
      translated.append(pattern, i, end - i);
      i = end;
      continue;
    }
    if (in_class && c == ']') in_class = false;
    translated += c;
    ++i;
  }
  return translated;
}

}  // namespace

struct Regex::Compiled {
  pcre2_code* code = nullptr;
  ~Compiled() { pcre2_code_free(code); }
};

Regex::Regex(const std::string& pattern) : pattern_(pattern), compiled_(std::make_unique<Compiled>()) {
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  const std::string translated = with_oniguruma_whitespace(pattern);
  compiled_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()), translated.size(),
                                  PCRE2_UTF | PCRE2_UCP, &error_code, &error_offset, nullptr);
  require(compiled_->code != nullptr, ErrorKind::InvalidInput,
          "tokenizer.json: the pre-tokenizer regex /{}/ does not compile: {} at offset {}", pattern,
          pcre2_message(error_code), error_offset);
  // JIT is an optimisation only: without it (e.g. an unsupported CPU) the interpreter still matches.
  pcre2_jit_compile(compiled_->code, PCRE2_JIT_COMPLETE);
}

Regex::~Regex() = default;

bool Regex::find(std::string_view subject, size_t start, size_t& match_begin, size_t& match_end) const {
  MatchScratch& local = scratch();
  require(local.match_data != nullptr, ErrorKind::Internal, "out of memory for PCRE2 match data");
  int rc = pcre2_match(compiled_->code, reinterpret_cast<PCRE2_SPTR>(subject.data()), subject.size(), start,
                       PCRE2_NO_UTF_CHECK, local.match_data, local.match_context);
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  // rc == 0 only says the ovector is too short for the capture groups; the whole match is there.
  require(rc >= 0, ErrorKind::Internal, "regex /{}/ failed on input of {} bytes: {}", pattern_, subject.size(),
          pcre2_message(rc));
  const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(local.match_data);
  match_begin = ovector[0];
  match_end = ovector[1];
  return true;
}

std::string regex_escape(std::string_view literal) {
  // \Q...\E quotes everything except a literal "\E", which is spelled out separately.
  std::string pattern = "\\Q";
  for (size_t i = 0; i < literal.size(); ++i) {
    if (literal[i] == '\\' && i + 1 < literal.size() && literal[i + 1] == 'E') {
      pattern += "\\E\\\\\\Q";
      continue;
    }
    pattern += literal[i];
  }
  pattern += "\\E";
  return pattern;
}

}  // namespace retort
