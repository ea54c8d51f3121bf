#pragma once
// UTF-8 facts the tokenizer needs: where characters start and end, which byte runs are valid,
// and the Unicode classes (whitespace, word characters) that Hugging Face's added-token matching
// and Jinja's `trim` use.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace retort::utf8 {

// Length of the well-formed UTF-8 character starting at text[pos] (1..4), or 0 when the bytes
// there do not start one (stray continuation byte, overlong form, surrogate, past U+10FFFF, or cut
// off by the end of text).
size_t valid_char_length(std::string_view text, size_t pos);

bool is_valid(std::string_view text);

// Splits text into alternating maximal runs of valid UTF-8 and of bytes that are not part of any
// valid character; concatenating the runs gives back the text.
struct Run {
  std::string_view bytes;
  bool valid = true;
};
std::vector<Run> split_valid_runs(std::string_view text);

// The bytes with each maximal ill-formed subsequence replaced by U+FFFD, as Python's and Rust's
// lossy decoders do.
std::string replace_invalid(std::string_view bytes);

// Decodes the character at text[pos] (which must be valid); advances pos past it.
char32_t decode(std::string_view text, size_t& pos);
void append(std::string& out, char32_t code_point);

// Number of bytes at the end of `bytes` that form the start of a character whose remaining
// continuation bytes have not arrived yet (0 when the text ends on a character boundary).
size_t incomplete_tail_length(std::string_view bytes);

// Unicode White_Space property (what Rust's char::is_whitespace and Python's str.strip use).
bool is_whitespace(char32_t code_point);
// Letters, marks, decimal and letter numbers, connector punctuation ('_') and joiners: Unicode \w
// (what Hugging Face's single_word check uses).
bool is_word_char(char32_t code_point);

// Python's str.strip() with no argument: removes White_Space characters at both ends.
std::string_view trim_whitespace(std::string_view text);

}  // namespace retort::utf8
