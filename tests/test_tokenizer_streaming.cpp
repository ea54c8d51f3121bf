// StreamingDecoder: text comes out only at UTF-8 character boundaries, although byte-level tokens
// can end inside a multi-byte character.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "test_support.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"
#include "util/error.h"

namespace retort {
namespace {

using Ids = std::vector<int32_t>;

// Single bytes only (id == byte value) plus one special token: every multi-byte character is
// split across tokens, which is the case the streaming decoder exists for.
std::unique_ptr<Tokenizer> byte_tokenizer() {
  nlohmann::json vocab = nlohmann::json::object();
  for (int byte = 0; byte < 256; ++byte) vocab[byte_level::encode_bytes(std::string(1, static_cast<char>(byte)))] = byte;
  const nlohmann::json tokenizer = {
      {"added_tokens", {{{"id", 256}, {"content", "<eos>"}, {"special", true}}}},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", nlohmann::json::array()}}},
  };
  return Tokenizer::from_json_text(tokenizer.dump(), "", "bytes tokenizer.json");
}

TEST(StreamingDecoder, HoldsBytesUntilTheCharacterIsComplete) {
  auto tokenizer = byte_tokenizer();
  StreamingDecoder stream(*tokenizer);
  EXPECT_EQ(stream.push('a'), "a");
  EXPECT_EQ(stream.push(0xF0), "");  // 😀 = F0 9F 98 80
  EXPECT_EQ(stream.push(0x9F), "");
  EXPECT_EQ(stream.push(0x98), "");
  EXPECT_EQ(stream.push(0x80), "\xF0\x9F\x98\x80");
  EXPECT_EQ(stream.push(0xC3), "");  // é = C3 A9
  EXPECT_EQ(stream.push(0xA9), "\xC3\xA9");
  EXPECT_EQ(stream.flush(), "");
}

TEST(StreamingDecoder, ReplacesBytesThatCanNeverFormACharacter) {
  auto tokenizer = byte_tokenizer();
  StreamingDecoder stream(*tokenizer);
  EXPECT_EQ(stream.push(0xFF), "\xEF\xBF\xBD");
  EXPECT_EQ(stream.push(0xE4), "");
  EXPECT_EQ(stream.push('a'), "\xEF\xBF\xBD" "a");  // the character was cut off by 'a'
  EXPECT_EQ(stream.push(0x80), "\xEF\xBF\xBD");     // a continuation byte with no lead
  EXPECT_EQ(stream.push(0xE4), "");
  EXPECT_EQ(stream.push(0xBD), "");
  EXPECT_EQ(stream.flush(), "\xEF\xBF\xBD");  // the stream ended inside a character
}

TEST(StreamingDecoder, SkipsSpecialTokensWhenAsked) {
  auto tokenizer = byte_tokenizer();
  StreamingDecoder keep(*tokenizer);
  StreamingDecoder skip(*tokenizer, /*skip_special=*/true);
  EXPECT_EQ(keep.push(256), "<eos>");
  EXPECT_EQ(skip.push(256), "");
  EXPECT_THROW(keep.push(257), Error);
}

TEST(StreamingDecoder, ConcatenationEqualsDecodeAndEveryPieceIsValid) {
  auto tokenizer = byte_tokenizer();
  const std::string text = "na\xC3\xAFve \xE4\xBD\xA0\xE5\xA5\xBD \xF0\x9F\xA6\x99\xE2\x80\x8D\xF0\x9F\x94\xA5 done";
  StreamingDecoder stream(*tokenizer);
  std::string streamed;
  int held_back = 0;
  for (int32_t id : tokenizer->encode(text)) {
    const std::string piece = stream.push(id);
    EXPECT_TRUE(utf8::is_valid(piece));
    held_back += piece.empty() ? 1 : 0;
    streamed += piece;
  }
  streamed += stream.flush();
  EXPECT_EQ(streamed, text);
  EXPECT_GT(held_back, 5);
}

TEST(StreamingDecoder, QwenTokensEndingInsideCharacters) {
  RETORT_REQUIRE_PATH(test::cached_tokenizer("qwen"), "qwen tokenizer");
  auto qwen = Tokenizer::load(test::cached_tokenizer("qwen"));
  // Rare emoji and CJK are split by Qwen's BPE at byte level, not at character boundaries.
  const std::string text =
      "\xF0\x9F\xA6\x99\xF0\x9F\x98\xB6\xE2\x80\x8D\xF0\x9F\x8C\xAB\xEF\xB8\x8F \xE1\x80\x80\xE1\x80\xAD "
      "\xE4\xB8\xAD\xE6\x96\x87 r\xC3\xA9sum\xC3\xA9 \xF0\x9D\x94\x98";
  const Ids ids = qwen->encode(text);
  int partial_tokens = 0;
  for (int32_t id : ids) partial_tokens += utf8::is_valid(qwen->token_bytes(id)) ? 0 : 1;
  EXPECT_GT(partial_tokens, 0) << "the text should contain tokens that end inside a character";
  StreamingDecoder stream(*qwen);
  std::string streamed;
  for (int32_t id : ids) {
    const std::string piece = stream.push(id);
    EXPECT_TRUE(utf8::is_valid(piece));
    streamed += piece;
  }
  streamed += stream.flush();
  EXPECT_EQ(streamed, text);
}

TEST(Utf8, IncompleteTailAndReplacement) {
  EXPECT_EQ(utf8::incomplete_tail_length("abc"), 0u);
  EXPECT_EQ(utf8::incomplete_tail_length("a\xE4\xBD"), 2u);
  EXPECT_EQ(utf8::incomplete_tail_length("a\xF0\x9F\x98"), 3u);
  EXPECT_EQ(utf8::incomplete_tail_length("a\xE0\x80"), 0u);  // overlong: can never complete
  EXPECT_EQ(utf8::incomplete_tail_length("a\xED\xA0"), 0u);  // surrogate
  EXPECT_EQ(utf8::replace_invalid("a\xE4\xBD" "b"), "a\xEF\xBF\xBD" "b");
  EXPECT_EQ(utf8::replace_invalid("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(utf8::trim_whitespace(" \t\xE3\x80\x80x y\n\xC2\xA0"), "x y");
}

}  // namespace
}  // namespace retort
