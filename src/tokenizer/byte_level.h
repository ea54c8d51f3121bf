#pragma once
// The GPT-2 byte-level alphabet: every byte 0..255 is written as one printable Unicode character
// (printable ASCII and Latin-1 stand for themselves, the rest are shifted to U+0100..U+0143), so a
// vocabulary stored as JSON strings can hold arbitrary bytes. retort keeps tokens as raw bytes and
// only uses this mapping to read `tokenizer.json`.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace retort::byte_level {

char32_t byte_to_char(uint8_t byte);
std::optional<uint8_t> char_to_byte(char32_t code_point);

// Raw bytes of a vocabulary entry written in the byte-level alphabet. Like the Hugging Face
// ByteLevel decoder, a string holding any character outside the alphabet is taken as its own
// UTF-8 bytes.
std::string decode_token(std::string_view token_text);

// The byte-level spelling of raw bytes (the inverse of decode_token for alphabet strings).
std::string encode_bytes(std::string_view bytes);

}  // namespace retort::byte_level
