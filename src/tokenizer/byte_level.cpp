#include "tokenizer/byte_level.h"

#include <array>

#include "tokenizer/utf8.h"

namespace retort::byte_level {
namespace {

struct Alphabet {
  std::array<char32_t, 256> char_of_byte{};
  // Every alphabet character is below U+0144, so a flat table covers the reverse direction.
  std::array<int16_t, 0x144> byte_of_char{};

  Alphabet() {
    byte_of_char.fill(-1);
    const auto stands_for_itself = [](int byte) {
      return (byte >= '!' && byte <= '~') || (byte >= 0xA1 && byte <= 0xAC) || (byte >= 0xAE && byte <= 0xFF);
    };
    char32_t next_shifted = 0x100;
    for (int byte = 0; byte < 256; ++byte) {
      char32_t c = stands_for_itself(byte) ? static_cast<char32_t>(byte) : next_shifted++;
      char_of_byte[byte] = c;
      byte_of_char[c] = static_cast<int16_t>(byte);
    }
  }
};

const Alphabet& alphabet() {
  static const Alphabet table;
  return table;
}

}  // namespace

char32_t byte_to_char(uint8_t byte) { return alphabet().char_of_byte[byte]; }

std::optional<uint8_t> char_to_byte(char32_t code_point) {
  if (code_point >= alphabet().byte_of_char.size()) return std::nullopt;
  int16_t byte = alphabet().byte_of_char[code_point];
  if (byte < 0) return std::nullopt;
  return static_cast<uint8_t>(byte);
}

std::string decode_token(std::string_view token_text) {
  if (!utf8::is_valid(token_text)) return std::string(token_text);
  std::string bytes;
  bytes.reserve(token_text.size());
  size_t pos = 0;
  while (pos < token_text.size()) {
    auto byte = char_to_byte(utf8::decode(token_text, pos));
    if (!byte) return std::string(token_text);
    bytes += static_cast<char>(*byte);
  }
  return bytes;
}

std::string encode_bytes(std::string_view bytes) {
  std::string text;
  text.reserve(bytes.size() * 2);
  for (char byte : bytes) utf8::append(text, byte_to_char(static_cast<uint8_t>(byte)));
  return text;
}

}  // namespace retort::byte_level
