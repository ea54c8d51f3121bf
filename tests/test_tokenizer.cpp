// Tokenizer exactness on the real Qwen2, Llama 3 and DeepSeek-V3 vocabularies: the 47 hard Qwen2
// cases produced by Hugging Face `tokenizers`, known ids, round trips of random text and of
// invalid UTF-8.
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "test_support.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"
#include "util/mapped_file.h"

namespace retort {
namespace {

// Loading a real tokenizer.json takes about a second: each is loaded once for the whole run.
const Tokenizer* real_tokenizer(const std::string& name) {
  static std::map<std::string, std::unique_ptr<Tokenizer>> loaded;
  auto it = loaded.find(name);
  if (it != loaded.end()) return it->second.get();
  const std::string path = test::cached_tokenizer(name);
  auto& slot = loaded[name];
  if (!path.empty()) slot = Tokenizer::load(path);
  return slot.get();
}

#define LOAD_TOKENIZER(variable, name)                               \
  RETORT_REQUIRE_PATH(test::cached_tokenizer(name), name " tokenizer"); \
  const Tokenizer& variable = *real_tokenizer(name)

struct TokenizerCase {
  std::string input;
  std::vector<int32_t> expected;
};

// Splits like Python's str.split(separator): n separators give n + 1 parts.
std::vector<std::string> split_on(const std::string& text, const std::string& separator) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (size_t end; (end = text.find(separator, start)) != std::string::npos; start = end + separator.size()) {
    parts.push_back(text.substr(start, end - start));
  }
  parts.push_back(text.substr(start));
  return parts;
}

// The llama.cpp test-tokenizer format: inputs separated by "\n__ggml_vocab_test__\n", one line of
// space-separated expected ids per input. Both files end with their separator, so the last of
// the 47 cases is the empty text, with no ids.
std::vector<TokenizerCase> read_cases(const std::string& inputs_path, const std::string& outputs_path) {
  const auto inputs = split_on(read_text_file(inputs_path), "\n__ggml_vocab_test__\n");
  const auto outputs = split_on(read_text_file(outputs_path), "\n");
  std::vector<TokenizerCase> cases;
  for (size_t i = 0; i < inputs.size() && i < outputs.size(); ++i) {
    TokenizerCase test_case{inputs[i], {}};
    std::istringstream line(outputs[i]);
    for (int32_t id; line >> id;) test_case.expected.push_back(id);
    cases.push_back(test_case);
  }
  EXPECT_EQ(inputs.size(), outputs.size());
  return cases;
}

std::string join_ids(const std::vector<int32_t>& ids) {
  std::string text;
  for (int32_t id : ids) {
    if (!text.empty()) text += ' ';
    text += std::to_string(id);
  }
  return text;
}

TEST(TokenizerQwen, AllHardCasesMatchHuggingFace) {
  LOAD_TOKENIZER(qwen, "qwen");
  const std::string inputs = test::shared_path("data/tokenizer-tests/qwen2.inp");
  const std::string outputs = test::shared_path("data/tokenizer-tests/qwen2.out");
  RETORT_REQUIRE_PATH(inputs, "../shared/data/tokenizer-tests/qwen2.inp");
  RETORT_REQUIRE_PATH(outputs, "../shared/data/tokenizer-tests/qwen2.out");
  const auto cases = read_cases(inputs, outputs);
  ASSERT_EQ(cases.size(), 47u);
  for (const TokenizerCase& test_case : cases) {
    EXPECT_EQ(join_ids(qwen.encode(test_case.input)), join_ids(test_case.expected)) << "input: " << test_case.input;
    EXPECT_EQ(qwen.decode(test_case.expected), test_case.input);
  }
}

TEST(TokenizerQwen, KnownIdsAndSettings) {
  LOAD_TOKENIZER(qwen, "qwen");
  EXPECT_EQ(qwen.encode("Hello world"), (std::vector<int32_t>{9707, 1879}));
  // Qwen2 splits numbers into single digits.
  EXPECT_EQ(qwen.encode("12345678"), (std::vector<int32_t>{16, 17, 18, 19, 20, 21, 22, 23}));
  EXPECT_EQ(qwen.encode("   leading spaces\n\n\nand newlines"),
            (std::vector<int32_t>{256, 6388, 12621, 1406, 437, 501, 7969}));
  // Qwen adds nothing around a sequence: no BOS in its tokenizer_config.json.
  EXPECT_EQ(qwen.encode("Hello world", true), qwen.encode("Hello world"));
  EXPECT_FALSE(qwen.bos_id().has_value());
  EXPECT_EQ(qwen.eos_ids(), (std::vector<int32_t>{151645}));
  EXPECT_EQ(qwen.token_id("<|im_start|>"), 151644);
  EXPECT_EQ(qwen.token_id("Ġworld"), 1879);  // tokenizer.json spelling
  EXPECT_EQ(qwen.token_id(" world"), 1879);  // raw bytes
  EXPECT_FALSE(qwen.token_id("no such token at all").has_value());
  EXPECT_EQ(qwen.token_bytes(1879), " world");
  EXPECT_TRUE(qwen.is_special(151643));   // <|endoftext|>
  EXPECT_FALSE(qwen.is_special(151667));  // <think> is added but not special
  EXPECT_FALSE(qwen.is_special(1879));
  EXPECT_EQ(qwen.vocab_size(), 151669);
  EXPECT_FALSE(qwen.chat_template_source().empty());
}

TEST(TokenizerQwen, AddedTokensAreMatchedBeforePreTokenization) {
  LOAD_TOKENIZER(qwen, "qwen");
  EXPECT_EQ(qwen.encode("<|im_start|>user\nHi<|im_end|>"), (std::vector<int32_t>{151644, 872, 198, 13048, 151645}));
  const std::vector<int32_t> ids = {151644, 872, 198, 13048, 151645, 151643};
  EXPECT_EQ(qwen.decode(ids), "<|im_start|>user\nHi<|im_end|><|endoftext|>");
  EXPECT_EQ(qwen.decode(ids, /*skip_special=*/true), "user\nHi");
}

TEST(TokenizerQwen, NfcNormalizesBeforeEncoding) {
  LOAD_TOKENIZER(qwen, "qwen");
  EXPECT_EQ(qwen.normalize("e\xCC\x81"), "\xC3\xA9");  // e + combining acute -> é
  EXPECT_EQ(qwen.encode("caf" "e\xCC\x81"), qwen.encode("caf\xC3\xA9"));
}

// Random text from pools that NFC leaves alone, so decode(encode(s)) must give s exactly.
std::string random_text(std::mt19937& random, bool with_combining_marks) {
  static const std::vector<std::string> pools[] = {
      {"a", "b", "z", "Q", "X", "the", "ing", "'s", "'LL"},
      {"0", "1", "7", "42", "2024", "3.14"},
      {" ", "  ", "    ", "\t", "\n", "\n\n", "\r\n", " \n "},
      {"!", "?", ".", ",", "(", ")", "{", "}", "<", ">", "|", "\\", "\"", "#", "~"},
      {"\xC3\xA9", "\xC3\x9F", "\xC3\xB1", "\xCE\xA9", "\xD0\xB6", "\xD9\xA3"},  // é ß ñ Ω ж ٣
      {"\xE4\xBD\xA0", "\xE5\xA5\xBD", "\xE4\xB8\x96", "\xE7\x95\x8C", "\xE3\x81\x82", "\xED\x95\x9C"},  // 你好世界あ한
      {"\xF0\x9F\x98\x80", "\xF0\x9F\xA6\x99", "\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD", "\xE2\x80\x8D", "\xE2\x9C\x85"},
      {"\xC2\xA0", "\xE3\x80\x80", "\xE2\x80\xA8", "\xE1\xA0\x8E", "\xC2\x85"},  // NBSP, ideographic space, LS, MVS, NEL
      {"<|im_start|>", "<|endoftext|>", "<think>", "<|im"},
  };
  static const std::vector<std::string> combining = {"\xCC\x81", "\xCC\x88", "\xCC\xA7"};
  std::string text;
  const int parts = std::uniform_int_distribution<int>(1, 20)(random);
  for (int i = 0; i < parts; ++i) {
    if (with_combining_marks && random() % 6 == 0) {
      text += combining[random() % combining.size()];
      continue;
    }
    const auto& pool = pools[random() % std::size(pools)];
    const int repeat = std::uniform_int_distribution<int>(1, 4)(random);
    for (int r = 0; r < repeat; ++r) text += pool[random() % pool.size()];
  }
  return text;
}

void expect_round_trips(const Tokenizer& tokenizer, uint32_t seed) {
  std::mt19937 random(seed);
  for (int i = 0; i < 400; ++i) {
    const std::string text = random_text(random, false);
    ASSERT_EQ(tokenizer.decode(tokenizer.encode(text)), text) << "text: " << text;
    // Combining marks may be composed by NFC: the round trip gives the normalized text.
    const std::string marked = random_text(random, true);
    ASSERT_EQ(tokenizer.decode(tokenizer.encode(marked)), tokenizer.normalize(marked)) << "text: " << marked;
  }
}

TEST(TokenizerQwen, RandomTextRoundTrips) {
  LOAD_TOKENIZER(qwen, "qwen");
  expect_round_trips(qwen, 1);
}

// Invalid UTF-8 is never an error: each byte outside a valid character becomes its single-byte
// token, so the bytes come back unchanged.
TEST(TokenizerQwen, InvalidUtf8IsEncodedByteWise) {
  LOAD_TOKENIZER(qwen, "qwen");
  const std::vector<std::string> inputs = {
      "\xFF", "\xFE\xFF", "\x80", "abc\xE4\xBD", "\xC0\xAF", "\xED\xA0\x80", "\xF4\x90\x80\x80",
      "Hello \xFF world", "\xE4\xBD\xA0\xE5\xA5", "ok\xC3", std::string("nul\0byte", 8),
  };
  for (const std::string& input : inputs) {
    const auto ids = qwen.encode(input);
    EXPECT_EQ(qwen.decode(ids), input);
  }
  const auto ids = qwen.encode("\xFF");
  ASSERT_EQ(ids.size(), 1u);
  EXPECT_EQ(qwen.token_bytes(ids[0]), "\xFF");
  // The valid text around invalid bytes is tokenized as usual.
  const auto mixed = qwen.encode("Hello world\xFF");
  EXPECT_EQ(std::vector<int32_t>(mixed.begin(), mixed.begin() + 2), (std::vector<int32_t>{9707, 1879}));

  std::mt19937 random(7);
  for (int i = 0; i < 300; ++i) {
    std::string bytes(random() % 40, '\0');
    for (char& byte : bytes) byte = static_cast<char>(random());
    EXPECT_EQ(qwen.decode(qwen.encode(bytes)), qwen.normalize(bytes));
  }
}

TEST(TokenizerLlama3, KnownIdsAndRoundTrips) {
  LOAD_TOKENIZER(llama, "llama3");
  EXPECT_EQ(llama.encode("Hello world"), (std::vector<int32_t>{9906, 1917}));
  // Its TemplateProcessing post-processor prepends <|begin_of_text|>.
  EXPECT_EQ(llama.encode("Hello world", true), (std::vector<int32_t>{128000, 9906, 1917}));
  // Numbers go in groups of up to three digits.
  EXPECT_EQ(llama.encode("12345678"), (std::vector<int32_t>{4513, 10961, 2495}));
  EXPECT_EQ(llama.encode("<|begin_of_text|>x<|eot_id|>"), (std::vector<int32_t>{128000, 87, 128009}));
  EXPECT_EQ(llama.encode("I'm here, you'RE not."), (std::vector<int32_t>{40, 2846, 1618, 11, 499, 95253, 539, 13}));
  EXPECT_EQ(llama.bos_id(), 128000);
  EXPECT_EQ(llama.eos_ids(), (std::vector<int32_t>{128009}));
  EXPECT_EQ(llama.vocab_size(), 128256);
  EXPECT_TRUE(llama.is_special(128000));
  expect_round_trips(llama, 2);
}

TEST(TokenizerDeepSeekV3, KnownIdsAndRoundTrips) {
  LOAD_TOKENIZER(deepseek, "deepseek-v3");
  EXPECT_EQ(deepseek.encode("Hello world"), (std::vector<int32_t>{19923, 2058}));
  // Its three Split steps: digits in threes, CJK runs, then the word pattern.
  EXPECT_EQ(deepseek.encode("\xE4\xBD\xA0\xE5\xA5\xBD\xEF\xBC\x8C\xE4\xB8\x96\xE7\x95\x8C\xEF\xBC\x81Hello 123456"),
            (std::vector<int32_t>{30594, 303, 3427, 1175, 19923, 223, 6895, 18009}));
  EXPECT_EQ(deepseek.encode("<｜begin▁of▁sentence｜>Hi<｜end▁of▁sentence｜>"), (std::vector<int32_t>{0, 23166, 1}));
  // LlamaTokenizerFast with add_bos_token: BOS is added although tokenizer.json has no template.
  EXPECT_EQ(deepseek.encode("Hello world", true), (std::vector<int32_t>{0, 19923, 2058}));
  EXPECT_EQ(deepseek.bos_id(), 0);
  EXPECT_EQ(deepseek.eos_ids(), (std::vector<int32_t>{1}));
  expect_round_trips(deepseek, 3);
}

}  // namespace
}  // namespace retort
