// GGUF reading: the fixtures' llama.cpp-written files (metadata, config, embedded tokenizer) and
// corrupt files, each a clear error.
#include <gtest/gtest.h>

#include <cstring>

#include "io/gguf.h"
#include "io/gguf_config.h"
#include "io/model_config.h"
#include "test_support.h"
#include "tokenizer/gguf_vocab.h"
#include "util/error.h"
#include "util/mapped_file.h"

namespace retort {
namespace {

class GgufFixture : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    dir_ = test::shared_path("fixtures/" + GetParam());
    RETORT_REQUIRE_PATH(dir_, "fixture " + GetParam());
  }
  std::string dir_;
};

TEST_P(GgufFixture, ConfigMatchesTheHuggingFaceConfig) {
  GgufFile gguf(dir_ + "/model.f32.gguf");
  ModelConfig from_gguf = model_config_from_gguf(gguf);
  ModelConfig from_hf = load_hf_config(dir_ + "/config.json");
  EXPECT_EQ(from_gguf.arch, from_hf.arch);
  EXPECT_EQ(from_gguf.hidden_size, from_hf.hidden_size);
  EXPECT_EQ(from_gguf.intermediate_size, from_hf.intermediate_size);
  EXPECT_EQ(from_gguf.num_layers, from_hf.num_layers);
  EXPECT_EQ(from_gguf.num_heads, from_hf.num_heads);
  EXPECT_EQ(from_gguf.num_kv_heads, from_hf.num_kv_heads);
  EXPECT_EQ(from_gguf.head_dim, from_hf.head_dim);
  EXPECT_EQ(from_gguf.vocab_size, from_hf.vocab_size);
  EXPECT_EQ(from_gguf.tie_word_embeddings, from_hf.tie_word_embeddings);
  EXPECT_EQ(from_gguf.attention_bias, from_hf.attention_bias);
  EXPECT_NEAR(from_gguf.rms_norm_eps, from_hf.rms_norm_eps, 1e-12);
  EXPECT_EQ(from_gguf.rope.theta, from_hf.rope.theta);
  EXPECT_EQ(!from_gguf.rope.freq_factors.empty(), from_hf.rope.scaling == RopeScaling::Llama3);
}

TEST_P(GgufFixture, EmbeddedTokenizerEncodesLikeTokenizerJson) {
  GgufFile gguf(dir_ + "/model.f32.gguf");
  auto embedded = tokenizer_from_gguf(gguf);
  auto reference = Tokenizer::load(dir_ + "/tokenizer.json");
  for (const char* text : {"Hello world, 123 tokens!", "  multiple   spaces\n\nand lines", "ünïcödé 你好 🙂",
                           "<|endoftext|>special<|eot|>"}) {
    EXPECT_EQ(embedded->encode(text), reference->encode(text)) << text;
  }
  EXPECT_EQ(embedded->eos_ids(), reference->eos_ids());
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GgufFixture, ::testing::Values("tiny-r1-qwen", "tiny-r1-llama"),
                         [](const auto& info) { return info.param == "tiny-r1-qwen" ? "qwen" : "llama"; });

std::vector<uint8_t> fixture_bytes() {
  std::string path = test::shared_path("fixtures/tiny-r1-qwen/model.f32.gguf");
  if (path.empty()) return {};
  MappedFile file(path);
  return {file.data(), file.data() + file.size()};
}

std::string parse_error(const std::vector<uint8_t>& bytes) {
  try {
    GgufFile gguf(std::span<const uint8_t>(bytes), "test.gguf");
  } catch (const Error& error) {
    return error.what();
  }
  return "(parsed)";
}

TEST(GgufCorrupt, EveryTruncationIsACleanError) {
  auto bytes = fixture_bytes();
  RETORT_REQUIRE_PATH(std::string(bytes.empty() ? "" : "x"), "fixture tiny-r1-qwen");
  // Every cut inside the header, and a few inside the data, fails with a message, never a crash.
  for (size_t cut = 0; cut < bytes.size(); cut += cut < 20000 ? 7 : 100003) {
    std::vector<uint8_t> truncated(bytes.begin(), bytes.begin() + static_cast<long>(cut));
    EXPECT_NE(parse_error(truncated), "(parsed)") << "cut at " << cut;
  }
}

TEST(GgufCorrupt, LyingCountsAndTypesAreNamed) {
  auto bytes = fixture_bytes();
  RETORT_REQUIRE_PATH(std::string(bytes.empty() ? "" : "x"), "fixture tiny-r1-qwen");
  auto patched = bytes;
  uint64_t huge = uint64_t{1} << 60;
  std::memcpy(patched.data() + 8, &huge, 8);  // tensor count
  EXPECT_NE(parse_error(patched).find("more than"), std::string::npos) << parse_error(patched);
  patched = bytes;
  patched[0] = 'X';
  EXPECT_NE(parse_error(patched).find("not a GGUF"), std::string::npos);
  patched = bytes;
  uint32_t version = 9;
  std::memcpy(patched.data() + 4, &version, 4);
  EXPECT_NE(parse_error(patched).find("version 9"), std::string::npos);
  patched = bytes;
  // First metadata entry: key length (8 bytes) at 24, the key, then its value type.
  uint64_t key_length;
  std::memcpy(&key_length, patched.data() + 24, 8);
  uint32_t bad_type = 77;
  std::memcpy(patched.data() + 32 + key_length, &bad_type, 4);
  EXPECT_NE(parse_error(patched).find("unknown value type 77"), std::string::npos) << parse_error(patched);
}

}  // namespace
}  // namespace retort
