#include "tokenizer/utf8.h"

#include <utf8proc.h>

namespace retort::utf8 {

size_t valid_char_length(std::string_view text, size_t pos) {
  const auto byte = [&](size_t i) { return static_cast<uint8_t>(text[i]); };
  const uint8_t lead = byte(pos);
  if (lead < 0x80) return 1;
  size_t length;
  uint8_t second_min = 0x80, second_max = 0xBF;  // tighter bounds exclude overlongs and surrogates
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    if (lead == 0xE0) second_min = 0xA0;
    if (lead == 0xED) second_max = 0x9F;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    if (lead == 0xF0) second_min = 0x90;
    if (lead == 0xF4) second_max = 0x8F;
  } else {
    return 0;
  }
  if (pos + length > text.size()) return 0;
  if (byte(pos + 1) < second_min || byte(pos + 1) > second_max) return 0;
  for (size_t i = 2; i < length; ++i) {
    if ((byte(pos + i) & 0xC0) != 0x80) return 0;
  }
  return length;
}

bool is_valid(std::string_view text) {
  size_t pos = 0;
  while (pos < text.size()) {
    if (static_cast<uint8_t>(text[pos]) < 0x80) {
      ++pos;
      continue;
    }
    size_t length = valid_char_length(text, pos);
    if (length == 0) return false;
    pos += length;
  }
  return true;
}

std::vector<Run> split_valid_runs(std::string_view text) {
  std::vector<Run> runs;
  size_t run_start = 0;
  bool run_valid = true;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t length = valid_char_length(text, pos);
    bool valid = length > 0;
    if (valid != run_valid && pos > run_start) {
      runs.push_back({text.substr(run_start, pos - run_start), run_valid});
      run_start = pos;
    }
    run_valid = valid;
    pos += valid ? length : 1;
  }
  if (pos > run_start) runs.push_back({text.substr(run_start, pos - run_start), run_valid});
  return runs;
}

namespace {
// Length of the longest prefix at text[pos] that could start a valid character but does not
// complete one (at least 1): it is replaced as a whole by one U+FFFD.
size_t ill_formed_length(std::string_view text, size_t pos) {
  const uint8_t lead = static_cast<uint8_t>(text[pos]);
  if (lead < 0xC2 || lead > 0xF4) return 1;
  const size_t needed = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;
  uint8_t low = 0x80, high = 0xBF;
  if (lead == 0xE0) low = 0xA0;
  if (lead == 0xED) high = 0x9F;
  if (lead == 0xF0) low = 0x90;
  if (lead == 0xF4) high = 0x8F;
  size_t length = 1;
  while (length < needed && pos + length < text.size()) {
    const uint8_t byte = static_cast<uint8_t>(text[pos + length]);
    if (byte < low || byte > high) break;
    low = 0x80;
    high = 0xBF;
    ++length;
  }
  return length;
}
}  // namespace

std::string replace_invalid(std::string_view bytes) {
  std::string text;
  text.reserve(bytes.size());
  size_t pos = 0;
  while (pos < bytes.size()) {
    size_t length = valid_char_length(bytes, pos);
    if (length > 0) {
      text.append(bytes, pos, length);
      pos += length;
    } else {
      text += "\xEF\xBF\xBD";
      pos += ill_formed_length(bytes, pos);
    }
  }
  return text;
}

char32_t decode(std::string_view text, size_t& pos) {
  const uint8_t lead = static_cast<uint8_t>(text[pos]);
  if (lead < 0x80) {
    ++pos;
    return lead;
  }
  size_t length = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;
  char32_t code_point = lead & (0x7F >> length);
  for (size_t i = 1; i < length && pos + i < text.size(); ++i) {
    code_point = (code_point << 6) | (static_cast<uint8_t>(text[pos + i]) & 0x3F);
  }
  pos += length;
  return code_point;
}

void append(std::string& out, char32_t code_point) {
  if (code_point < 0x80) {
    out += static_cast<char>(code_point);
  } else if (code_point < 0x800) {
    out += static_cast<char>(0xC0 | (code_point >> 6));
    out += static_cast<char>(0x80 | (code_point & 0x3F));
  } else if (code_point < 0x10000) {
    out += static_cast<char>(0xE0 | (code_point >> 12));
    out += static_cast<char>(0x80 | ((code_point >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (code_point & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (code_point >> 18));
    out += static_cast<char>(0x80 | ((code_point >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((code_point >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (code_point & 0x3F));
  }
}

size_t incomplete_tail_length(std::string_view bytes) {
  // A character is at most 4 bytes, so only the last 3 bytes can hold an unfinished one.
  const size_t earliest = bytes.size() > 3 ? bytes.size() - 3 : 0;
  for (size_t start = bytes.size(); start-- > earliest;) {
    const uint8_t byte = static_cast<uint8_t>(bytes[start]);
    if ((byte & 0xC0) == 0x80) continue;  // continuation byte: keep looking for the lead
    if (byte < 0xC2 || byte > 0xF4) return 0;
    const size_t needed = byte >= 0xF0 ? 4 : byte >= 0xE0 ? 3 : 2;
    const size_t have = bytes.size() - start;
    if (have >= needed) return 0;
    // Hold the bytes back only if they can still become a valid character.
    return ill_formed_length(bytes, start) == have ? have : 0;
  }
  return 0;
}

bool is_whitespace(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

bool is_word_char(char32_t c) {
  if (c < 0x80) return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
  if (c == 0x200C || c == 0x200D) return true;  // Join_Control
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(c))) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC: case UTF8PROC_CATEGORY_ME: case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_PC:
      return true;
    default:
      return false;
  }
}

namespace {
// Python's str.isspace also counts the information separators U+001C..U+001F.
bool is_python_space(char32_t c) { return is_whitespace(c) || (c >= 0x1C && c <= 0x1F); }
}  // namespace

std::string_view trim_whitespace(std::string_view text) {
  size_t begin = 0;
  size_t end = text.size();
  while (begin < end) {
    size_t pos = begin;
    if (valid_char_length(text, pos) == 0 || !is_python_space(decode(text, pos))) break;
    begin = pos;
  }
  while (end > begin) {
    size_t start = end - 1;
    while (start > begin && (static_cast<uint8_t>(text[start]) & 0xC0) == 0x80) --start;
    size_t pos = start;
    if (valid_char_length(text, pos) == 0 || !is_python_space(decode(text, pos))) break;
    end = start;
  }
  return text.substr(begin, end - begin);
}

}  // namespace retort::utf8
