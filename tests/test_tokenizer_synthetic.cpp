// Tokenizer behaviour on small tokenizer.json files built here, where every expected id can be
// worked out by hand: merge order, both merge encodings, ignore_merges, added-token flags
// (lstrip, rstrip, single_word, normalized), BOS/EOS settings, and the errors for bad files.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "test_support.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace retort {
namespace {

using nlohmann::json;

constexpr const char* kQwenPattern =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"
    "\\s+(?!\\S)|\\s+";

// Ids 0..255 are the single bytes (id == byte value), then the merged tokens from 256 on:
// he=256, ll=257, hell=258, hello=259, and "abc"=260 which no merge produces.
json small_tokenizer(bool pair_merges = false) {
  json vocab = json::object();
  for (int byte = 0; byte < 256; ++byte) {
    vocab[byte_level::encode_bytes(std::string(1, static_cast<char>(byte)))] = byte;
  }
  vocab["he"] = 256;
  vocab["ll"] = 257;
  vocab["hell"] = 258;
  vocab["hello"] = 259;
  vocab["abc"] = 260;
  const std::vector<std::pair<std::string, std::string>> merges = {{"h", "e"}, {"l", "l"}, {"he", "ll"}, {"hell", "o"}};
  json merges_json = json::array();
  for (const auto& [left, right] : merges) {
    merges_json.push_back(pair_merges ? json::array({left, right}) : json(left + " " + right));
  }
  return {
      {"version", "1.0"},
      {"added_tokens", json::array()},
      {"normalizer", {{"type", "NFC"}}},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         {{{"type", "Split"}, {"pattern", {{"Regex", kQwenPattern}}}, {"behavior", "Isolated"}, {"invert", false}},
          {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}}},
      {"post_processor", nullptr},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model",
       {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"ignore_merges", false},
        {"vocab", vocab}, {"merges", merges_json}}},
  };
}

json added(int32_t id, const std::string& content, bool special, json flags = json::object()) {
  json token = {{"id", id},        {"content", content}, {"special", special}, {"single_word", false},
                {"lstrip", false}, {"rstrip", false},    {"normalized", false}};
  for (const auto& [key, value] : flags.items()) token[key] = value;
  return token;
}

std::unique_ptr<Tokenizer> build(const json& tokenizer, const json& config = json()) {
  return Tokenizer::from_json_text(tokenizer.dump(), config.is_null() ? "" : config.dump(), "test tokenizer.json");
}

using Ids = std::vector<int32_t>;

TEST(TokenizerBpe, MergesLowestRankFirstLeftmostOnTies) {
  auto tokenizer = build(small_tokenizer());
  EXPECT_EQ(tokenizer->encode("hello"), (Ids{259}));
  // h e l l o h e: both "he" pairs merge (rank 0, left first), then ll, hell, hello.
  EXPECT_EQ(tokenizer->encode("hellohe"), (Ids{259, 256}));
  EXPECT_EQ(tokenizer->encode("hel"), (Ids{256, 'l'}));
  EXPECT_EQ(tokenizer->encode("abc"), (Ids{'a', 'b', 'c'}));  // in the vocabulary, but no merge makes it
  EXPECT_EQ(tokenizer->encode(" hello"), (Ids{' ', 259}));    // no merge involves the space
  EXPECT_EQ(tokenizer->decode(Ids{259, ' ', 256}), "hello he");
}

TEST(TokenizerBpe, BothMergeEncodingsGiveTheSameIds) {
  auto strings = build(small_tokenizer(false));
  auto pairs = build(small_tokenizer(true));
  for (const char* text : {"hello", "hellohe", "shell hello", "llll"}) EXPECT_EQ(strings->encode(text), pairs->encode(text));
}

TEST(TokenizerBpe, IgnoreMergesTakesWholeWordsFromTheVocabulary) {
  json tokenizer = small_tokenizer();
  tokenizer["model"]["ignore_merges"] = true;
  EXPECT_EQ(build(tokenizer)->encode("abc"), (Ids{260}));
  EXPECT_EQ(build(tokenizer)->encode("abcd"), (Ids{'a', 'b', 'c', 'd'}));
}

TEST(TokenizerBpe, NfcNormalizerComposesBeforeEncoding) {
  auto tokenizer = build(small_tokenizer());
  EXPECT_EQ(tokenizer->encode("e\xCC\x81"), (Ids{0xC3, 0xA9}));  // é as two bytes
  json plain = small_tokenizer();
  plain["normalizer"] = nullptr;
  EXPECT_EQ(build(plain)->encode("e\xCC\x81"), (Ids{'e', 0xCC, 0x81}));
}

TEST(TokenizerAddedTokens, LstripAndRstripSwallowWhitespace) {
  json tokenizer = small_tokenizer();
  tokenizer["added_tokens"] = {added(300, "<x>", true, {{"lstrip", true}}), added(301, "[y]", false, {{"rstrip", true}})};
  auto built = build(tokenizer);
  EXPECT_EQ(built->encode("a <x> b"), (Ids{'a', 300, ' ', 'b'}));
  EXPECT_EQ(built->encode("[y]  c"), (Ids{301, 'c'}));
  EXPECT_EQ(built->encode("a<x>"), (Ids{'a', 300}));
  // The swallowed whitespace belongs to the token, which decodes to its content alone.
  EXPECT_EQ(built->decode(built->encode("a <x> b")), "a<x> b");
}

TEST(TokenizerAddedTokens, SingleWordOnlyMatchesWholeWords) {
  json tokenizer = small_tokenizer();
  tokenizer["added_tokens"] = {added(300, "tok", false, {{"single_word", true}})};
  auto built = build(tokenizer);
  EXPECT_EQ(built->encode("tok tokx xtok tok"),
            (Ids{300, ' ', 't', 'o', 'k', 'x', ' ', 'x', 't', 'o', 'k', ' ', 300}));
  EXPECT_EQ(built->encode("_tok"), (Ids{'_', 't', 'o', 'k'}));  // '_' is a word character
  EXPECT_EQ(built->encode("(tok)"), (Ids{'(', 300, ')'}));
}

TEST(TokenizerAddedTokens, LongestMatchWinsAndNormalizedTokensMatchNormalizedText) {
  json tokenizer = small_tokenizer();
  tokenizer["added_tokens"] = {added(300, "<a>", true), added(301, "<a><b>", true),
                               added(302, "\xC3\xA9!", false, {{"normalized", true}})};
  auto built = build(tokenizer);
  EXPECT_EQ(built->encode("<a><b><a>"), (Ids{301, 300}));
  // "e" + combining acute + "!" becomes "é!" under NFC, where the normalized token is found.
  EXPECT_EQ(built->encode("xe\xCC\x81!"), (Ids{'x', 302}));
  EXPECT_TRUE(built->is_special(300));
  EXPECT_FALSE(built->is_special(302));
  EXPECT_EQ(built->decode(Ids{300, 'h', 302}, /*skip_special=*/true), "h\xC3\xA9!");
  EXPECT_EQ(built->token_id("<a><b>"), 301);
  EXPECT_EQ(built->vocab_size(), 303);
}

TEST(TokenizerSpecialTokens, TemplateProcessingAddsBosOnlyWhenAsked) {
  json tokenizer = small_tokenizer();
  tokenizer["added_tokens"] = {added(300, "<s>", true), added(301, "</s>", true)};
  tokenizer["post_processor"] = {
      {"type", "TemplateProcessing"},
      {"single", {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
      {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {300}}, {"tokens", {"<s>"}}}}}}};
  auto built = build(tokenizer);
  EXPECT_EQ(built->encode("he"), (Ids{256}));
  EXPECT_EQ(built->encode("he", true), (Ids{300, 256}));
  EXPECT_EQ(built->bos_id(), 300);  // no tokenizer_config.json: taken from the template

  // A config in the LlamaTokenizerFast form decides from add_bos_token/add_eos_token; tokens may
  // be written as {"content": ...}.
  const json config = {{"tokenizer_class", "LlamaTokenizerFast"}, {"add_bos_token", true}, {"add_eos_token", true},
                       {"bos_token", {{"content", "<s>"}, {"lstrip", false}}}, {"eos_token", "</s>"}};
  auto configured = build(tokenizer, config);
  EXPECT_EQ(configured->encode("he", true), (Ids{300, 256, 301}));
  EXPECT_EQ(configured->eos_ids(), (Ids{301}));

  json no_template = small_tokenizer();
  no_template["added_tokens"] = tokenizer["added_tokens"];
  const json flags_only = {{"add_bos_token", true}, {"bos_token", "<s>"}, {"eos_token", "</s>"}, {"chat_template", "x"}};
  auto flagged = build(no_template, flags_only);
  EXPECT_EQ(flagged->encode("he", true), (Ids{300, 256}));
  EXPECT_EQ(flagged->chat_template_source(), "x");
}

// Every error is one line that names what was wrong.
template <typename Action>
void expect_error(Action action, ErrorKind kind, const std::string& mentions) {
  try {
    action();
    FAIL() << "expected an error mentioning \"" << mentions << "\"";
  } catch (const Error& error) {
    EXPECT_EQ(error.kind(), kind) << error.what();
    const std::string message = error.what();
    EXPECT_NE(message.find(mentions), std::string::npos) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  }
}

TEST(TokenizerErrors, InvalidJson) {
  expect_error([] { Tokenizer::from_json_text("{\"model\": [1, 2,", "", "broken.json"); }, ErrorKind::InvalidInput,
               "not valid JSON");
  expect_error([] { Tokenizer::from_json_text("{}", "", "empty.json"); }, ErrorKind::InvalidInput, "no \"model\"");
  expect_error([] { build(small_tokenizer(), json("not an object")); }, ErrorKind::InvalidInput,
               "tokenizer_config.json");
}

TEST(TokenizerErrors, MissingFiles) {
  expect_error([] { Tokenizer::load("/nonexistent/dir/tokenizer.json"); }, ErrorKind::NotFound, "does not exist");
  const auto empty_dir = std::filesystem::temp_directory_path() / "retort_tokenizer_empty_dir";
  std::filesystem::create_directories(empty_dir);
  expect_error([&] { Tokenizer::load(empty_dir.string()); }, ErrorKind::NotFound, "no tokenizer.json");
  std::filesystem::remove_all(empty_dir);
}

TEST(TokenizerErrors, UnsupportedModelsAndSteps) {
  json unigram = small_tokenizer();
  unigram["model"] = {{"type", "Unigram"}, {"vocab", json::array()}};
  expect_error([&] { build(unigram); }, ErrorKind::Unsupported, "\"Unigram\"");
  json wordpiece = small_tokenizer();
  wordpiece["model"] = {{"type", "WordPiece"}, {"vocab", json::object()}};
  expect_error([&] { build(wordpiece); }, ErrorKind::Unsupported, "\"WordPiece\"");
  json metaspace = small_tokenizer();
  metaspace["pre_tokenizer"] = {{"type", "Metaspace"}};
  expect_error([&] { build(metaspace); }, ErrorKind::Unsupported, "Metaspace");
  json fallback = small_tokenizer();
  fallback["model"]["byte_fallback"] = true;
  expect_error([&] { build(fallback); }, ErrorKind::Unsupported, "byte_fallback");
  json lowercase = small_tokenizer();
  lowercase["normalizer"] = {{"type", "Lowercase"}};
  expect_error([&] { build(lowercase); }, ErrorKind::Unsupported, "Lowercase");
}

TEST(TokenizerErrors, InconsistentFiles) {
  json bad_merge = small_tokenizer();
  bad_merge["model"]["merges"].push_back("x nosuchtoken");
  expect_error([&] { build(bad_merge); }, ErrorKind::InvalidInput, "not in the vocabulary");
  json bad_regex = small_tokenizer();
  bad_regex["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(unclosed";
  expect_error([&] { build(bad_regex); }, ErrorKind::InvalidInput, "does not compile");
  expect_error([] { build(small_tokenizer(), json{{"bos_token", "<nope>"}}); }, ErrorKind::InvalidInput,
               "not a token");
}

TEST(TokenizerErrors, DecodeRejectsIdsThatAreNotTokens) {
  json tokenizer = small_tokenizer();
  tokenizer["added_tokens"] = {added(300, "<s>", true)};  // leaves 261..299 unassigned
  auto built = build(tokenizer);
  expect_error([&] { built->decode(Ids{'a', -1}); }, ErrorKind::OutOfRange, "-1");
  expect_error([&] { built->decode(Ids{301}); }, ErrorKind::OutOfRange, "out of range");
  expect_error([&] { built->decode(Ids{2000000000}); }, ErrorKind::OutOfRange, "2000000000");
  expect_error([&] { built->decode(Ids{280}); }, ErrorKind::OutOfRange, "not assigned");
  expect_error([&] { built->token_bytes(301); }, ErrorKind::OutOfRange, "out of range");
}

}  // namespace
}  // namespace retort
