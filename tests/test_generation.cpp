// The generation loop and `retort logits` on the golden fixtures.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "engine/generation.h"
#include "kernels/cpu/cpu_backend.h"
#include "model/model_loader.h"
#include "test_support.h"
#include "util/error.h"
#include "util/mapped_file.h"

namespace retort {
namespace {

class Generation : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test::shared_path("fixtures/tiny-r1-qwen");
    RETORT_REQUIRE_PATH(dir_, "fixture tiny-r1-qwen");
    model_ = load_model(dir_, backend_);
    tokenizer_ = Tokenizer::load(dir_ + "/tokenizer.json");
    golden_ = test::read_golden_fixture(dir_);
  }

  GenerationOptions greedy(int max_tokens) {
    GenerationOptions options;
    options.sampling.temperature = 0;
    options.max_tokens = max_tokens;
    options.prefill_chunk = 13;
    return options;
  }

  // The ids the stream produced, recovered by re-encoding is lossy; so compare via the sequence.
  std::vector<int32_t> generated_ids(const CachedSequence& sequence, size_t prompt_size) {
    return {sequence.tokens.begin() + static_cast<long>(prompt_size), sequence.tokens.end()};
  }

  CpuBackend backend_;
  std::string dir_;
  std::unique_ptr<LoadedModel> model_;
  std::unique_ptr<Tokenizer> tokenizer_;
  test::GoldenFixture golden_;
};

TEST_F(Generation, GreedyMatchesFixtureAndStopsAtMaxTokens) {
  KvCache cache(model_->config, 256);
  CachedSequence sequence;
  std::string text;
  const int max_tokens = static_cast<int>(golden_.greedy.size());
  auto stats = generate(*model_->transformer, cache, sequence, *tokenizer_, golden_.prompt, greedy(max_tokens),
                        [&](std::string_view piece) { text += piece; });
  EXPECT_EQ(stats.reason, StopReason::MaxTokens);
  EXPECT_EQ(stats.generated_tokens, max_tokens);
  // The last sampled token is not evaluated, so the sequence holds all but the final one.
  std::vector<int32_t> want(golden_.greedy.begin(), golden_.greedy.end() - 1);
  EXPECT_EQ(generated_ids(sequence, golden_.prompt.size()), want);
}

TEST_F(Generation, SecondTurnReusesTheCachedPrefixAndGivesTheSameTokens) {
  KvCache cache(model_->config, 256);
  CachedSequence sequence;
  auto noop = [](std::string_view) {};
  generate(*model_->transformer, cache, sequence, *tokenizer_, golden_.prompt, greedy(5), noop);
  auto stats = generate(*model_->transformer, cache, sequence, *tokenizer_, golden_.prompt, greedy(8), noop);
  EXPECT_EQ(stats.reused_tokens, static_cast<int64_t>(golden_.prompt.size()) - 1);
  std::vector<int32_t> want(golden_.greedy.begin(), golden_.greedy.begin() + 7);
  EXPECT_EQ(generated_ids(sequence, golden_.prompt.size()), want);
}

TEST_F(Generation, PromptLongerThanContextSaysBothNumbers) {
  KvCache cache(model_->config, 32);
  CachedSequence sequence;
  try {
    generate(*model_->transformer, cache, sequence, *tokenizer_, golden_.prompt, greedy(4), [](std::string_view) {});
    FAIL() << "expected an error";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("64"), std::string::npos) << error.what();
    EXPECT_NE(std::string(error.what()).find("32"), std::string::npos) << error.what();
  }
}

TEST_F(Generation, EmptyPromptAndOutOfRangeTokenAreErrors) {
  KvCache cache(model_->config, 64);
  CachedSequence sequence;
  auto noop = [](std::string_view) {};
  EXPECT_THROW(generate(*model_->transformer, cache, sequence, *tokenizer_, {}, greedy(1), noop), Error);
  std::vector<int32_t> bad{1, 2, 100000};
  EXPECT_THROW(generate(*model_->transformer, cache, sequence, *tokenizer_, bad, greedy(1), noop), Error);
}

TEST_F(Generation, SeededSamplingIsReproducible) {
  auto run = [&](uint64_t seed) {
    KvCache cache(model_->config, 256);
    CachedSequence sequence;
    GenerationOptions options;
    options.sampling.seed = seed;
    options.sampling.temperature = 1.0f;
    options.max_tokens = 16;
    generate(*model_->transformer, cache, sequence, *tokenizer_, golden_.prompt, options, [](std::string_view) {});
    return sequence.tokens;
  };
  EXPECT_EQ(run(7), run(7));
  EXPECT_NE(run(7), run(8));
}

TEST_F(Generation, LogitsCommandWritesEveryPositionAndGreedyIds) {
  namespace fs = std::filesystem;
  fs::path tmp = fs::temp_directory_path() / ("retort-logits-" + std::to_string(::getpid()));
  fs::create_directories(tmp);
  {
    std::ofstream tokens(tmp / "prompt.txt");
    for (int32_t id : golden_.prompt) tokens << id << ' ';
  }
  auto result = test::run_command(test::retort_binary() + " logits " + dir_ + " --tokens " + (tmp / "prompt.txt").string() +
                                  " --out " + (tmp / "out.f32").string() + " --generate 32");
  ASSERT_EQ(result.status, 0) << result.output;
  std::string want_ids;
  for (int32_t id : golden_.greedy) want_ids += (want_ids.empty() ? "" : " ") + std::to_string(id);
  EXPECT_EQ(result.output, want_ids + "\n");
  MappedFile got(( tmp / "out.f32").string()), want(dir_ + "/logits.f32");
  ASSERT_EQ(got.size(), want.size());
  const auto* g = reinterpret_cast<const float*>(got.data());
  const auto* w = reinterpret_cast<const float*>(want.data());
  for (size_t i = 0; i < got.size() / 4; ++i) ASSERT_NEAR(g[i], w[i], 1e-3 * golden_.logits_std) << i;

  auto bad = test::run_command(test::retort_binary() + " logits " + dir_ + " --tokens " + dir_ + "/config.json --out " +
                               (tmp / "x.f32").string() + " 2>&1");
  EXPECT_NE(bad.status, 0);
  EXPECT_NE(bad.output.find("not a token id"), std::string::npos) << bad.output;
  EXPECT_FALSE(fs::exists(tmp / "x.f32"));
  fs::remove_all(tmp);
}

}  // namespace
}  // namespace retort
