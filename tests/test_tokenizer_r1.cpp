// The DeepSeek-R1-Distill-Qwen tokenizer, rebuilt as ../shared/data/r1-distill-qwen/README.md
// describes (Qwen's vocabulary with DeepSeek's added tokens and post-processor), and the
// `retort tokenize` command run as a user would.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "test_support.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"
#include "util/mapped_file.h"

namespace retort {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using Ids = std::vector<int32_t>;

void write_file(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  ASSERT_TRUE(out.good()) << path;
}

// A temporary model directory holding the rebuilt tokenizer.json and tokenizer_config.json;
// removed when the test program ends.
class R1DistillQwenDir {
 public:
  R1DistillQwenDir() : dir_(fs::temp_directory_path() / (std::string("retort_r1_tokenizer_") + std::to_string(::getpid()))) {
    const std::string qwen = test::cached_tokenizer("qwen");
    const std::string facts = test::shared_path("data/r1-distill-qwen");
    const std::string chat_template = test::shared_path("data/chat-templates/deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja");
    if (qwen.empty() || facts.empty() || chat_template.empty()) return;
    json tokenizer = json::parse(read_text_file(qwen));
    tokenizer["added_tokens"] = json::parse(read_text_file(facts + "/added_tokens.json"));
    tokenizer["post_processor"] = json::parse(read_text_file(facts + "/post_processor.json"));
    const json config = {
        {"add_bos_token", true},
        {"add_eos_token", false},
        {"bos_token", {{"__type", "AddedToken"}, {"content", "<｜begin▁of▁sentence｜>"}, {"normalized", true}}},
        {"eos_token", {{"__type", "AddedToken"}, {"content", "<｜end▁of▁sentence｜>"}, {"normalized", true}}},
        {"pad_token", {{"__type", "AddedToken"}, {"content", "<｜end▁of▁sentence｜>"}, {"normalized", true}}},
        {"model_max_length", 16384},
        {"tokenizer_class", "LlamaTokenizerFast"},
        {"chat_template", read_text_file(chat_template)},
    };
    fs::create_directories(dir_);
    write_file(dir_ / "tokenizer.json", tokenizer.dump());
    write_file(dir_ / "tokenizer_config.json", config.dump(1));
    ready_ = true;
  }
  ~R1DistillQwenDir() {
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }
  bool ready() const { return ready_; }
  std::string path() const { return dir_.string(); }

 private:
  fs::path dir_;
  bool ready_ = false;
};

const R1DistillQwenDir& r1_dir() {
  static R1DistillQwenDir dir;
  return dir;
}

const Tokenizer& r1_tokenizer() {
  static std::unique_ptr<Tokenizer> tokenizer = Tokenizer::load(r1_dir().path());
  return *tokenizer;
}

#define REQUIRE_R1_FILES()                                                                           \
  RETORT_REQUIRE_PATH(test::cached_tokenizer("qwen"), "qwen tokenizer");                             \
  RETORT_REQUIRE_PATH(test::shared_path("data/r1-distill-qwen/added_tokens.json"), "r1-distill-qwen facts"); \
  ASSERT_TRUE(r1_dir().ready())

TEST(TokenizerR1DistillQwen, AddedTokensAndBos) {
  REQUIRE_R1_FILES();
  const Tokenizer& r1 = r1_tokenizer();
  EXPECT_EQ(r1.token_id("<｜User｜>"), 151644);
  EXPECT_EQ(r1.token_id("<｜Assistant｜>"), 151645);
  EXPECT_EQ(r1.token_id("<think>"), 151648);
  EXPECT_EQ(r1.token_id("</think>"), 151649);
  EXPECT_EQ(r1.bos_id(), 151646);
  EXPECT_EQ(r1.eos_ids(), (Ids{151643}));
  EXPECT_EQ(r1.vocab_size(), 151665);
  EXPECT_EQ(r1.encode("Hello world"), (Ids{9707, 1879}));
  EXPECT_EQ(r1.encode("Hello world", true), (Ids{151646, 9707, 1879}));
  EXPECT_TRUE(r1.is_special(151646));
  EXPECT_FALSE(r1.is_special(151648));
}

TEST(TokenizerR1DistillQwen, SkipSpecialKeepsThinkTags) {
  REQUIRE_R1_FILES();
  const Tokenizer& r1 = r1_tokenizer();
  const Ids ids = r1.encode("<think>\nhmm\n</think>\n\nYes.<｜end▁of▁sentence｜>", true);
  EXPECT_EQ(ids.front(), 151646);
  EXPECT_EQ(ids[1], 151648);
  EXPECT_EQ(ids.back(), 151643);
  EXPECT_EQ(r1.decode(ids, /*skip_special=*/true), "<think>\nhmm\n</think>\n\nYes.");
  EXPECT_EQ(r1.decode(ids), "<｜begin▁of▁sentence｜><think>\nhmm\n</think>\n\nYes.<｜end▁of▁sentence｜>");
}

TEST(TokenizerR1DistillQwen, ChatPromptTokens) {
  REQUIRE_R1_FILES();
  const Tokenizer& r1 = r1_tokenizer();
  const ChatTemplateKind kind = detect_chat_template(r1.chat_template_source());
  EXPECT_EQ(kind, ChatTemplateKind::DeepSeekR1);
  const std::string prompt = render_chat(kind, {{"user", "Hi"}}, true);
  // The rendered BOS text becomes the BOS id; the prompt ends by opening the reasoning.
  EXPECT_EQ(r1.encode(prompt), (Ids{151646, 151644, 13048, 151645, 151648, 198}));
}

struct VocabCase {
  std::string input;
  std::string expected;  // ids, space-separated
};

// ../shared/data/tokenizer-tests/qwen2.{inp,out}: inputs separated by "\n__ggml_vocab_test__\n",
// one line of ids per input (after a space). Both files end with their separator, so the last of
// the 47 cases is the empty text, with no ids.
std::vector<VocabCase> qwen2_cases() {
  const std::string inputs = read_text_file(test::shared_path("data/tokenizer-tests/qwen2.inp"));
  const std::string outputs = read_text_file(test::shared_path("data/tokenizer-tests/qwen2.out"));
  const std::string separator = "\n__ggml_vocab_test__\n";
  std::vector<VocabCase> cases;
  size_t input_start = 0, output_start = 0;
  while (input_start <= inputs.size() && output_start <= outputs.size()) {
    const size_t input_end = std::min(inputs.find(separator, input_start), inputs.size());
    const size_t output_end = std::min(outputs.find('\n', output_start), outputs.size());
    VocabCase vocab_case{inputs.substr(input_start, input_end - input_start),
                         outputs.substr(output_start, output_end - output_start)};
    vocab_case.expected.erase(0, std::min(vocab_case.expected.find_first_not_of(' '), vocab_case.expected.size()));
    cases.push_back(vocab_case);
    input_start = input_end + separator.size();
    output_start = output_end + 1;
  }
  return cases;
}

std::string join_ids(const Ids& ids) {
  std::string text;
  for (int32_t id : ids) {
    if (!text.empty()) text += ' ';
    text += std::to_string(id);
  }
  return text;
}

#define REQUIRE_QWEN2_CASES() \
  RETORT_REQUIRE_PATH(test::shared_path("data/tokenizer-tests/qwen2.inp"), "../shared/data/tokenizer-tests")

// The byte-level part is Qwen's: the hard cases hold for the rebuilt tokenizer too.
TEST(TokenizerR1DistillQwen, QwenHardCasesStillMatch) {
  REQUIRE_R1_FILES();
  REQUIRE_QWEN2_CASES();
  const auto cases = qwen2_cases();
  ASSERT_EQ(cases.size(), 47u);
  for (const VocabCase& vocab_case : cases) {
    EXPECT_EQ(join_ids(r1_tokenizer().encode(vocab_case.input)), vocab_case.expected) << vocab_case.input;
  }
}

// `retort tokenize` with stdin from a file; returns stdout.
test::CommandResult run_tokenize(const std::string& arguments, const std::string& input) {
  const fs::path input_file = fs::temp_directory_path() / (std::string("retort_tokenize_input_") + std::to_string(::getpid()));
  std::ofstream(input_file, std::ios::binary) << input;
  auto result = test::run_command(test::retort_binary() + " tokenize " + arguments + " < " + input_file.string() +
                                  " 2>/dev/null");
  fs::remove(input_file);
  return result;
}

TEST(TokenizeCommand, EncodesQwenHardCases) {
  const std::string qwen = test::cached_tokenizer("qwen");
  RETORT_REQUIRE_PATH(qwen, "qwen tokenizer");
  REQUIRE_QWEN2_CASES();
  const auto cases = qwen2_cases();
  ASSERT_EQ(cases.size(), 47u);
  // Each run loads the 11 MB tokenizer.json, so a spread of cases rather than all 47; the model
  // directory form is tried too.
  const std::string qwen_dir = fs::path(qwen).parent_path().string();
  for (size_t index : {0u, 2u, 5u, 9u, 18u, 20u, 30u, 46u}) {
    const auto result = run_tokenize(index % 2 == 0 ? qwen : qwen_dir, cases[index].input);
    EXPECT_EQ(result.status, 0);
    EXPECT_EQ(result.output, cases[index].expected + "\n") << "case " << index;
  }
}

TEST(TokenizeCommand, AddSpecialDecodeAndErrors) {
  REQUIRE_R1_FILES();
  const auto encoded = run_tokenize(r1_dir().path() + " --add-special", "Hello world");
  EXPECT_EQ(encoded.status, 0);
  EXPECT_EQ(encoded.output, "151646 9707 1879\n");
  EXPECT_EQ(run_tokenize(r1_dir().path(), "Hello world").output, "9707 1879\n");

  const auto decoded = run_tokenize(r1_dir().path() + " --decode", "151646 9707\n1879 151648\n");
  EXPECT_EQ(decoded.status, 0);
  EXPECT_EQ(decoded.output, "<｜begin▁of▁sentence｜>Hello world<think>");
  EXPECT_EQ(run_tokenize(r1_dir().path() + " --decode --skip-special", "151646 9707 151648").output, "Hello<think>");

  const auto out_of_range = test::run_command("echo 9707 999999 | " + test::retort_binary() + " tokenize " +
                                              r1_dir().path() + " --decode 2>&1");
  EXPECT_EQ(out_of_range.status, 1);
  EXPECT_NE(out_of_range.output.find("error: token id 999999 is out of range"), std::string::npos)
      << out_of_range.output;
  EXPECT_EQ(run_tokenize(r1_dir().path() + " --decode", "12 abc").status, 1);
  EXPECT_EQ(run_tokenize("/nonexistent/model", "x").status, 1);
}

}  // namespace
}  // namespace retort
