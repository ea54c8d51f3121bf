// Perplexity against a plain recomputation from the fixture's golden logits: the scoring rule
// (second half of each window, next-token NLL) stated independently.
#include <gtest/gtest.h>

#include <cmath>

#include "eval/perplexity.h"
#include "kernels/cpu/cpu_backend.h"
#include "model/model_loader.h"
#include "test_support.h"
#include "util/error.h"
#include "util/mapped_file.h"

namespace retort {
namespace {

TEST(Perplexity, OneWindowEqualsTheGoldenLogitsScoredByHand) {
  const std::string dir = test::shared_path("fixtures/tiny-r1-llama");
  RETORT_REQUIRE_PATH(dir, "fixture tiny-r1-llama");
  const test::GoldenFixture golden = test::read_golden_fixture(dir);
  const std::vector<int32_t>& prompt = golden.prompt;  // 64 tokens: one window of 64
  const float* logits = golden.logits.data();
  const int64_t vocab = 512, context = 64;
  double nll = 0;
  int scored = 0;
  for (int64_t position = context / 2; position + 1 < context; ++position) {
    const float* row = logits + position * vocab;
    double total = 0;
    for (int64_t v = 0; v < vocab; ++v) total += std::exp(double(row[v]));
    nll -= std::log(std::exp(double(row[prompt[position + 1]])) / total);
    ++scored;
  }
  CpuBackend backend;
  auto model = load_model(dir, backend);
  PerplexityResult result = measure_perplexity(*model->transformer, prompt, {context, 0, std::nullopt});
  EXPECT_EQ(result.scored_tokens, scored);
  EXPECT_EQ(result.chunks, 1);
  EXPECT_NEAR(std::log(result.perplexity), nll / scored, 1e-4);
  EXPECT_THROW(measure_perplexity(*model->transformer, std::span(prompt).first(10), {context, 0, std::nullopt}), Error);
}

}  // namespace
}  // namespace retort
