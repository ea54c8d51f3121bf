// HF → GGUF conversion and re-quantization, checked by running what was written: an f32 or bf16
// GGUF written by retort must reproduce the golden logits (for llama this exercises the q/k row
// interleaving and rope_freqs), and every quantized type must load and stay close.
#include <gtest/gtest.h>

#include <filesystem>

#include "io/gguf.h"
#include "kernels/cpu/cpu_backend.h"
#include "model/model_loader.h"
#include "model/random_init.h"
#include "quant/convert.h"
#include "test_support.h"
#include "util/error.h"
#include "util/mapped_file.h"

namespace retort {
namespace {

namespace fs = std::filesystem;

struct RoundTrip {
  double max_abs_diff = 0;
  double top1_agreement = 0;
  double logits_std = 0;
};

RoundTrip run_gguf(const std::string& fixture_dir, const std::string& gguf_path) {
  const test::GoldenFixture golden = test::read_golden_fixture(fixture_dir);
  const std::vector<int32_t>& prompt = golden.prompt;
  const float* want = golden.logits.data();
  CpuBackend backend;
  auto model = load_model(gguf_path, backend);
  KvCache cache(model->config, 128);
  KvSequence sequence;
  EXPECT_TRUE(cache.reserve(sequence, static_cast<int64_t>(prompt.size())));
  SequenceChunk chunk{&sequence, prompt, LogitsWanted::All};
  std::vector<float> got;
  model->transformer->forward({&chunk, 1}, cache, got);
  const int64_t vocab = model->config.vocab_size;
  RoundTrip result;
  result.logits_std = golden.logits_std;
  int agree = 0;
  for (size_t t = 0; t < prompt.size(); ++t) {
    const float* g = got.data() + t * vocab;
    const float* w = want + t * vocab;
    for (int64_t v = 0; v < vocab; ++v) result.max_abs_diff = std::max(result.max_abs_diff, double(std::fabs(g[v] - w[v])));
    agree += std::max_element(g, g + vocab) - g == std::max_element(w, w + vocab) - w;
  }
  result.top1_agreement = double(agree) / static_cast<double>(prompt.size());
  return result;
}

class ConvertFixture : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    dir_ = test::shared_path("fixtures/" + GetParam());
    RETORT_REQUIRE_PATH(dir_, "fixture " + GetParam());
    out_ = fs::temp_directory_path() / ("retort-convert-" + std::to_string(::getpid()));
    fs::create_directories(out_);
  }
  void TearDown() override { fs::remove_all(out_); }
  std::string dir_;
  fs::path out_;
};

TEST_P(ConvertFixture, LosslessTypesReproduceTheGoldenLogits) {
  for (const char* type : {"f32", "bf16"}) {  // the fixture weights are bf16 values: both are exact
    const std::string path = (out_ / (std::string(type) + ".gguf")).string();
    convert_hf_to_gguf(dir_, path, parse_quant_recipe(type));
    RoundTrip result = run_gguf(dir_, path);
    EXPECT_LE(result.max_abs_diff, 1e-3 * result.logits_std) << type;
  }
}

TEST_P(ConvertFixture, QuantizedTypesLoadAndStayClose) {
  const std::string f32 = (out_ / "f32.gguf").string();
  convert_hf_to_gguf(dir_, f32, QuantRecipe::F32);
  // Random tiny models have flat logits, the hardest case for top-1 agreement; the floors are
  // what 8 and 4 bits keep on them (measured 0.97, 0.52-0.56, 0.91-0.97).
  for (auto [type, floor] : {std::pair{"q8_0", 0.9}, std::pair{"q4_0", 0.4}, std::pair{"q4_k", 0.8}}) {
    const std::string direct = (out_ / (std::string(type) + ".gguf")).string();
    const std::string requantized = (out_ / (std::string(type) + "-from-f32.gguf")).string();
    convert_hf_to_gguf(dir_, direct, parse_quant_recipe(type));
    quantize_gguf(f32, requantized, parse_quant_recipe(type));
    for (const auto& path : {direct, requantized}) {
      RoundTrip result = run_gguf(dir_, path);
      EXPECT_GE(result.top1_agreement, floor) << path;
      EXPECT_LT(result.max_abs_diff, 5 * result.logits_std) << path;
    }
    // Converting directly and re-quantizing the f32 file give the same bytes of weights.
    EXPECT_EQ(fs::file_size(direct), fs::file_size(requantized)) << type;
  }
}

TEST_P(ConvertFixture, BlockTypeThatCannotApplyIsAClearErrorAndWritesNothing) {
  // A model whose rows are 48 values wide cannot be stored in 32-value q8_0 blocks.
  ModelConfig config = load_hf_config(dir_ + "/config.json");
  config.hidden_size = 48;
  config.num_heads = 4;
  config.num_kv_heads = 2;
  config.head_dim = 12;
  const fs::path model_dir = out_ / "narrow";
  write_random_checkpoint(config, model_dir.string(), RandomInitOptions{});
  fs::copy_file(fs::path(dir_) / "tokenizer.json", model_dir / "tokenizer.json");
  const std::string path = (out_ / "narrow.gguf").string();
  try {
    convert_hf_to_gguf(model_dir.string(), path, QuantRecipe::Q8_0);
    FAIL() << "expected an error";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("not a multiple of the 32-value q8_0 block"), std::string::npos)
        << error.what();
  }
  EXPECT_FALSE(fs::exists(path));
  EXPECT_THROW(parse_quant_recipe("q3_xs"), Error);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ConvertFixture, ::testing::Values("tiny-r1-qwen", "tiny-r1-llama"),
                         [](const auto& info) { return info.param == "tiny-r1-qwen" ? "qwen" : "llama"; });

}  // namespace
}  // namespace retort
